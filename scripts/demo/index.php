<?php
// rustfpm demo page: which PHP answered, and a per-session visit counter.
declare(strict_types=1);

session_start();
if (isset($_GET['reset'])) {
    $_SESSION = [];
}
$_SESSION['visits'] = ($_SESSION['visits'] ?? 0) + 1;

$user = function_exists('posix_geteuid')
    ? (posix_getpwuid(posix_geteuid())['name'] ?? (string) posix_geteuid())
    : get_current_user();
$opcache = function_exists('opcache_get_status') && is_array($s = @opcache_get_status(false))
    ? ($s['opcache_enabled'] ? 'enabled' : 'disabled')
    : 'not loaded';

$rows = [
    'PHP version'      => PHP_VERSION,
    'SAPI'             => PHP_SAPI,
    'Process id'       => (string) getmypid(),
    'Running as'       => $user,
    'Visits (session)' => (string) $_SESSION['visits'],
    'Session id'       => session_id(),
    'OPcache'          => $opcache,
    'memory_limit'     => (string) ini_get('memory_limit'),
    'Peak memory'      => sprintf('%.1f KiB', memory_get_peak_usage() / 1024),
    'Server'           => (string) ($_SERVER['SERVER_SOFTWARE'] ?? ''),
    'Gateway'          => (string) ($_SERVER['GATEWAY_INTERFACE'] ?? ''),
    'Request time'     => date('Y-m-d H:i:s T'),
];

header('Content-Type: text/html; charset=utf-8');
header('Cache-Control: no-store');
$h = static fn (string $s): string => htmlspecialchars($s, ENT_QUOTES | ENT_SUBSTITUTE, 'UTF-8');
?>
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>rustfpm demo</title>
<style>
  body { font: 15px/1.5 system-ui, sans-serif; margin: 2rem auto; max-width: 40rem; color: #222; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid #ddd; }
  th { width: 12rem; color: #555; font-weight: normal; }
  td { font-family: ui-monospace, monospace; }
</style>
</head>
<body>
<h1>rustfpm demo</h1>
<p>This page was run by a php-cgi child managed by rustfpm, behind nginx.
Reload it a few times: the process id may change as different children answer, while the
session counter keeps counting.</p>
<table>
<?php foreach ($rows as $k => $v): ?>
  <tr><th><?= $h($k) ?></th><td><?= $h($v) ?></td></tr>
<?php endforeach; ?>
</table>
<p><a href="?">Reload</a> · <a href="?reset=1">Reset the counter</a></p>
</body>
</html>
