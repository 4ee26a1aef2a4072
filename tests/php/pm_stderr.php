<?php
// Writes the marker M (letters, digits, '-') to the process's own stderr:
// outside the CLI, php://stderr is a dup of fd 2 (not the FastCGI stderr
// stream, which error_log() uses). Then prints its pid.
$m = preg_replace('/[^A-Za-z0-9-]/', '', $_GET['m'] ?? 'marker');
$fd = fopen('php://stderr', 'w');
fwrite($fd, "$m\n");
fclose($fd);
echo getmypid(), "\n";
