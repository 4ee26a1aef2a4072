<?php
// "pid start_time target_cached": this child's view of OPcache ("off" when not running).
// target_cached: whether http_opcache_target.php (run once by some child) is in this child's cache.
$s = function_exists('opcache_get_status') ? opcache_get_status(false) : false;
if (!$s) {
    echo getmypid(), ' off off';
    return;
}
$cached = opcache_is_script_cached(__DIR__ . '/http_opcache_target.php') ? 'yes' : 'no';
echo getmypid(), ' ', $s['opcache_statistics']['start_time'], ' ', $cached;
usleep(50000);
