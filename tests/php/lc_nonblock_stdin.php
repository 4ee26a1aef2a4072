<?php
// In php-cgi's FastCGI mode fd 0 is the children's shared listening socket:
// this sets O_NONBLOCK on it for every child of the same parent.
$f = fopen('php://stdin', 'r');
$ok = stream_set_blocking($f, false);
$killed = 0;
$kill = (int)($_GET['kill_siblings'] ?? 0);
if ($kill > 0) {
    // Right away, make the parent fork children that accept() on the now
    // non-blocking listener with no connection pending.
    $ppid = posix_getppid();
    $kids = preg_split('/\s+/', trim((string)@file_get_contents("/proc/$ppid/task/$ppid/children")));
    foreach ($kids as $kid) {
        if ($killed < $kill && (int)$kid > 0 && (int)$kid !== getmypid()) {
            posix_kill((int)$kid, 9);
            $killed++;
        }
    }
}
echo $ok ? "nonblocking " : "failed ", getmypid(), " killed=$killed\n";
