<?php
usleep(100000);
echo "slept\n";
