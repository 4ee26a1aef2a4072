<?php
// Echoes the request id the test put in the query string and the body length.
echo 'id=', $_GET['id'] ?? '', ' body=', strlen(file_get_contents('php://input')), "\n";
