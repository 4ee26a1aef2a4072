<?php
// Publishes its pid in scratch/NAME (when NAME is given), then waits MS
// milliseconds: asleep, or with spin=1 burning CPU in a loop; then prints its pid.
$name = basename($_GET['name'] ?? '');
if ($name !== '') {
    file_put_contents(__DIR__ . "/../scratch/$name.tmp", (string)getmypid());
    rename(__DIR__ . "/../scratch/$name.tmp", __DIR__ . "/../scratch/$name");
}
$ms = (int)($_GET['ms'] ?? 0);
if (!empty($_GET['spin'])) {
    $end = microtime(true) + $ms / 1000;
    $n = 0;
    while (microtime(true) < $end) {
        $n++;
    }
} else {
    usleep($ms * 1000);
}
echo getmypid(), "\n";
