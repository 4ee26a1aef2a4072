<?php
// Writes a marker (scratch/NAME) when it starts, sleeps MS milliseconds, then
// sends BYTES 'x' followed by "END\n".
$name = basename($_GET['name'] ?? 'sleep');
$ms = (int)($_GET['ms'] ?? 1000);
$bytes = (int)($_GET['bytes'] ?? 0);
file_put_contents(__DIR__ . "/../scratch/$name", (string)getmypid());
usleep($ms * 1000);
echo str_repeat('x', $bytes), "END\n";
