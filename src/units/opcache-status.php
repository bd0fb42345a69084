<?php
// Managed by reconciler: run by its own php-fpm pool to report this
// php-fpm's OPcache figures as JSON (changes here are overwritten): the
// status without its list of scripts, and how many scripts each release
// directory (/home/<app>/releases/<sha>) has in the cache.
$status = function_exists('opcache_get_status') ? opcache_get_status(true) : false;
if ($status === false) {
    echo json_encode(['opcache_enabled' => false]);
    return;
}
$releases = [];
foreach ($status['scripts'] ?? [] as $path => $_) {
    if (preg_match('~^(/home/[a-z][a-z0-9-]{0,31}/releases/[0-9a-f]{40})/~', $path, $found)) {
        $releases[$found[1]] = ($releases[$found[1]] ?? 0) + 1;
    }
}
unset($status['scripts']);
$status['reconciler_release_scripts'] = (object) $releases;
echo json_encode($status);
