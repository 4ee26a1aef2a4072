<?php
// Run by scripts/bench.sh (not served): php-cgi -q -d register_argc_argv=1 calibrate.php N
// Prints the median wall time in ms of the cpu.php loop with N iterations (over 101 runs).
$n = (int) ($argv[1] ?? 6500);
$times = [];
for ($r = 0; $r < 101; $r++) {
    $t = hrtime(true);
    $x = 'rustfpm';
    for ($i = 0; $i < $n; $i++) {
        $x = md5($x);
    }
    $times[] = (hrtime(true) - $t) / 1e6;
}
sort($times);
printf("%.3f\n", $times[50]);
