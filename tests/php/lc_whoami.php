<?php
echo posix_getuid(), "\n";
