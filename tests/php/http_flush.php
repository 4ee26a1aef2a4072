<?php
header('X-Accel-Buffering: no');
while (ob_get_level()) {
    ob_end_flush();
}
echo "first";
flush();
usleep(300000);
echo "second";
