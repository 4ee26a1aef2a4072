<?php
// About 1 ms of CPU per request: N chained md5() calls, N from ?n= (default 6500, which is
// ~1 ms with PHP 8.2 on the 2-core reference machine). scripts/bench.sh passes n=CPU_ITERS
// and reports what that many iterations cost on the machine it runs on (calibrate.php).
$n = min(max((int) ($_GET['n'] ?? 6500), 0), 10000000);
$x = 'rustfpm';
for ($i = 0; $i < $n; $i++) {
    $x = md5($x);
}
echo $x, "\n";
