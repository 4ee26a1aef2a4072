<?php
echo "body\n";
$a = $undefined_a;
$b = $undefined_b;
echo "end\n";
