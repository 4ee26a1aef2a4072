<?php
// The process environment ("KEY=value" lines), then the lookups the test needs.
foreach (getenv() as $k => $v) {
    echo 'env ', $k, '=', str_replace("\n", ' ', $v), "\n";
}
echo 'server HTTP_PROXY=', var_export($_SERVER['HTTP_PROXY'] ?? null, true), "\n";
echo 'getenv HTTP_PROXY=', var_export(getenv('HTTP_PROXY'), true), "\n";
echo 'getenv FOO=', var_export(getenv('FOO'), true), "\n";
