<?php
// Writes its pid in scratch/NAME when it starts, then waits (up to 60 s) until the test
// creates scratch/NAME.go, and sends BYTES 'x' followed by "END\n": busy for exactly as
// long as the test needs, however slow the machine.
$name = basename($_GET['name'] ?? 'gate');
$bytes = (int)($_GET['bytes'] ?? 0);
$scratch = __DIR__ . "/../scratch";
file_put_contents("$scratch/$name.tmp", (string)getmypid());
rename("$scratch/$name.tmp", "$scratch/$name");
$end = microtime(true) + 60;
while (!file_exists("$scratch/$name.go") && microtime(true) < $end) {
    usleep(10000);
}
echo str_repeat('x', $bytes), "END\n";
