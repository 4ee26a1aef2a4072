<?php
foreach (['pcntl_fork', 'exec', 'getmypid'] as $f) {
    echo $f, '=', var_export(function_exists($f), true), "\n";
}
