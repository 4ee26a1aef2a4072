<?php
// Prints the pid of the php-cgi child serving the request.
echo getmypid(), "\n";
