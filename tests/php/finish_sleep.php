<?php
// Runs on for 2 s after finishing the request, then writes its result file.
echo "done\n";
fastcgi_finish_request();
sleep(2);
file_put_contents($_GET['result'], 'ran on');
