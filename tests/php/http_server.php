<?php
// One "KEY=value" line per scalar $_SERVER entry (tests/http.rs parses it).
foreach ($_SERVER as $k => $v) {
    if (is_scalar($v)) {
        echo $k, '=', $v, "\n";
    }
}
