<?php
// No output before the call: the headers must still reach the client.
$go = $_GET['go'];
header('Location: /elsewhere');
// Big enough that the headers travel in two pieces.
header('X-Big: ' . str_repeat('b', 3000));
setcookie('finished', 'yes');
fastcgi_finish_request();
echo "never seen";
for ($i = 0; $i < 3000 && !file_exists($go); $i++) {
    usleep(10000);
}
file_put_contents($_GET['result'], 'ok');
