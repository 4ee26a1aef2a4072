<?php
switch ($_GET['case'] ?? '') {
    case 'created':
        header('X-A: 1');
        http_response_code(201);
        echo "created\n";
        break;
    case 'redirect':
        header('Location: /elsewhere.php?x=1', true, 302);
        break;
    case 'teapot':
        http_response_code(418);
        echo "teapot\n";
        break;
    case 'cookies':
        setcookie('c1', 'one');
        setcookie('c2', 'two');
        setcookie('c3', 'three');
        echo "cookies\n";
        break;
}
