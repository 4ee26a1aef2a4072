<?php
// Sleeps ?ms= milliseconds (default 300, at most 10000), then answers: the request of the
// burst workload in scripts/bench.sh (a slow request that holds a child, using no CPU).
$ms = min(max((int) ($_GET['ms'] ?? 300), 0), 10000);
usleep($ms * 1000);
echo "slept $ms ms\n";
