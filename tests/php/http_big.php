<?php
// $_GET['mb'] MiB of a deterministic pattern the test rebuilds: each MiB is
// "0123456789abcdef" x 65536 with its first byte replaced by chr(65 + i % 26).
while (ob_get_level()) {
    ob_end_clean();
}
$mib = str_repeat('0123456789abcdef', 65536);
$n = (int)$_GET['mb'];
for ($i = 0; $i < $n; $i++) {
    $mib[0] = chr(65 + $i % 26);
    echo $mib;
}
