<?php
// Managed by reconciler: run by its own php-fpm pool to report this
// php-fpm's OPcache figures as JSON (changes here are overwritten): the
// status without its list of scripts, and how many scripts each release
// directory (/home/<app>/releases/<sha>) has in the cache.
//
// The list of scripts gives each one's last use as a date, which PHP makes
// with the C library's localtime(): with no TZ in the environment (FPM's
// workers have none), glibc then checks /etc/localtime again at every call,
// a stat() per script. On a server's overlay filesystem that took 7-10 s
// for 12,000 scripts, past the fact gathering's 5 s: the plan lost its
// OPcache figures, and the worker, still busy, made the next ask wait too.
// With TZ set (to the same zone), glibc reads the zone once: 50-100 ms.
// putenv lasts this request only.
putenv('TZ=:/etc/localtime');
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
