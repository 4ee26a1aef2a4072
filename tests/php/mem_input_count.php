<?php
// Reads the request body (php://input) to its end in 1 MiB pieces, never holding it whole,
// and prints how many bytes it read.
$in = fopen('php://input', 'rb');
$n = 0;
while (!feof($in)) {
    $piece = fread($in, 1 << 20);
    if ($piece === false) {
        break;
    }
    $n += strlen($piece);
}
echo $n, "\n";
