<?php
session_save_path(__DIR__ . '/../scratch');
session_start();
$_SESSION['n'] = ($_SESSION['n'] ?? 0) + 1;
echo $_SESSION['n'];
