<?php
// Prints "PID BEFORE_KB AFTER_KB": this child's private memory (resident minus
// shared pages, /proc/self/statm) when the request started and when it ends.
// With ?mb=N it first builds about N MB of small strings (freed at the end of
// the request; the Zend allocator keeps the chunks cached for the next one).
function pm_private_kb(): int
{
    $f = explode(' ', trim(file_get_contents('/proc/self/statm')));
    return intdiv(((int)$f[1] - (int)$f[2]) * 4096, 1024);
}
$before = pm_private_kb();
$mb = (int)($_GET['mb'] ?? 0);
if ($mb > 0) {
    ini_set('memory_limit', '1G');
    $keep = [];
    for ($i = 0, $n = intdiv($mb * 1024 * 1024, 64); $i < $n; $i++) {
        $keep[] = str_repeat('m', 24) . $i;
    }
}
echo getmypid(), " $before ", pm_private_kb(), "\n";
