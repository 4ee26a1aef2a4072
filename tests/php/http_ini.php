<?php
foreach (['memory_limit', 'display_errors', 'ignore_user_abort'] as $k) {
    echo $k, '=', var_export(ini_get($k), true), "\n";
}
