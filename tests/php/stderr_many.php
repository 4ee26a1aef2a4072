<?php
// 300 messages in records of 5, then one message far longer than php-cgi's
// output buffer (it spans several records). Output is unbuffered, so STDOUT
// records come between the STDERR ones.
while (ob_get_level() > 0) {
    ob_end_flush();
}
echo "start\n";
flush();
for ($i = 0; $i < 300; $i++) {
    trigger_error("msg-$i " . str_repeat('x', 40), E_USER_WARNING);
    if ($i % 5 == 4) {
        echo "line $i\n";
        flush();
    }
}
error_log("long-start " . str_repeat('y', 100000) . " long-end");
echo "done\n";
