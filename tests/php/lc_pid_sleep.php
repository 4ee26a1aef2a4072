<?php
// Publishes its pid in scratch/NAME, then sleeps 5 s (the test kills it meanwhile).
$name = basename($_GET['name'] ?? 'pid');
file_put_contents(__DIR__ . "/../scratch/$name.tmp", (string)getmypid());
rename(__DIR__ . "/../scratch/$name.tmp", __DIR__ . "/../scratch/$name");
sleep(5);
echo "survived\n";
