<?php
// Compiled into OPcache by whichever child runs it first.
echo "target\n";
