<?php
// Streams a line every 100 ms for 10 s; records in scratch/NAME when it sees
// that the client went away (or how it ended).
ignore_user_abort(false);
header('X-Accel-Buffering: no');
header('Content-Type: text/plain');
$marker = __DIR__ . '/../scratch/' . basename($_GET['name'] ?? 'abort');
register_shutdown_function(function () use ($marker) {
    file_put_contents($marker, 'shutdown status=' . connection_status()
        . ' aborted=' . (int)connection_aborted() . "\n", FILE_APPEND);
});
while (ob_get_level() > 0) {
    ob_end_flush();
}
for ($i = 0; $i < 100; $i++) {
    echo "tick $i ", str_repeat('.', 1024), "\n";
    flush();
    if (connection_aborted()) {
        file_put_contents($marker, "aborted at $i\n", FILE_APPEND);
        exit;
    }
    usleep(100000);
}
file_put_contents($marker, "finished\n", FILE_APPEND);
