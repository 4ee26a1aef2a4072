<?php
// Prints pid, parent pid and getcwd(), one per line.
echo getmypid(), "\n", posix_getppid(), "\n", getcwd(), "\n";
