<?php
// Finishes the request, then waits for the test's go file before writing
// what it saw: the response must be complete while the script still runs.
$go = $_GET['go'];
$result = $_GET['result'];
header('X-Before: yes');
echo "before\n";
$first = fastcgi_finish_request();
$second = fastcgi_finish_request();
echo "after\n";
trigger_error("after finish", E_USER_WARNING);
for ($i = 0; $i < 3000 && !file_exists($go); $i++) {
    usleep(10000);
}
file_put_contents($result . '.tmp', json_encode([
    'first' => $first,
    'second' => $second,
    'exists' => function_exists('fastcgi_finish_request'),
    'go' => file_exists($go),
]));
rename($result . '.tmp', $result);
