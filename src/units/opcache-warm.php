<?php
// Managed by reconciler: run in an app's own php-fpm pool (as the app's
// user) before a release's switch, to compile the release's PHP files into
// this php-fpm's OPcache, so that the first requests after the switch find
// them compiled (changes here are overwritten).
//
// FastCGI parameters (set by root's client, never by a web request: the
// pool's socket is nginx's and root's alone):
//   RECONCILER_RELEASE   /home/<app>/releases/<sha>, or the side
//                        /home/<app>/a or b (`release_layout: ab`): the
//                        paths requests will use after the switch
//                        ($realpath_root)
//   RECONCILER_GLOBS     newline-separated globs relative to the release
//                        (`*` one name, `**` any depth); empty: every file
//   RECONCILER_SECONDS   when to stop, whatever is left
// Prints one JSON object: counts (compiled, cached already, skipped by
// OPcache, failed, left when stopped), why it stopped early, the time
// taken and OPcache's fill before and after. Links are never followed:
// what a release links to (shared paths) is not its code.
//
// In a side, first every PHP file's OPcache entry whose file changed
// (opcache_invalidate without force compares its time) is discarded,
// globs or not, while no request can use the side: left for the first
// requests after the switch, the discard happens under load, where a
// worker that looked the old entry up as another discarded it can run the
// old script (the fleet test saw `r7 r5`: one file new, one from the
// side's release before).
$started = microtime(true);
$release = $_SERVER['RECONCILER_RELEASE'] ?? '';
if (!preg_match('~^/home/[a-z][a-z0-9-]{0,31}/(?:releases/[0-9a-f]{40}|a|b)$~', $release) || !is_dir($release)) {
    echo json_encode(['error' => 'no such release directory']);
    return;
}
if (!function_exists('opcache_compile_file') || !(opcache_get_status(false)['opcache_enabled'] ?? false)) {
    echo json_encode(['error' => 'OPcache is not enabled in php-fpm']);
    return;
}
// php-fpm ends a request after the pool's request_terminate_timeout,
// which reconciler sets like max_execution_time (request.duration):
// warming stops 2 s before either.
$seconds = max(1, (int) ($_SERVER['RECONCILER_SECONDS'] ?? 20));
$limit = (int) ini_get('max_execution_time');
if ($limit > 0) {
    $seconds = max(1, min($seconds, $limit - 2));
}
$patterns = [];
foreach (explode("\n", $_SERVER['RECONCILER_GLOBS'] ?? '') as $glob) {
    if ($glob === '') {
        continue;
    }
    $regex = '';
    foreach (preg_split('~(\*\*/?|\*|\?)~', $glob, -1, PREG_SPLIT_DELIM_CAPTURE) as $part) {
        $regex .= match ($part) {
            '**/' => '(?:.*/)?', '**' => '.*', '*' => '[^/]*', '?' => '[^/]',
            default => preg_quote($part, '~'),
        };
    }
    $patterns[] = "~^$regex$~";
}

$fill = function (): array {
    $s = opcache_get_status(false);
    return [
        'used' => $s['memory_usage']['used_memory'] ?? 0,
        'free' => $s['memory_usage']['free_memory'] ?? 0,
        'wasted' => $s['memory_usage']['wasted_memory'] ?? 0,
        'keys' => $s['opcache_statistics']['num_cached_keys'] ?? 0,
        'max_keys' => $s['opcache_statistics']['max_cached_keys'] ?? 0,
        'oom_restarts' => $s['opcache_statistics']['oom_restarts'] ?? 0,
    ];
};
$before = $fill();
// Never used by warming: a twentieth of OPcache's memory, at least 4 MiB.
$reserve = max(4 << 20, intdiv($before['used'] + $before['free'] + $before['wasted'], 20));
$counts = ['compiled' => 0, 'cached' => 0, 'skipped' => 0, 'failed' => 0, 'left' => 0];
$stopped = null;
$paths = [];
$files = new RecursiveIteratorIterator(
    new RecursiveDirectoryIterator($release, FilesystemIterator::SKIP_DOTS | FilesystemIterator::CURRENT_AS_FILEINFO),
    RecursiveIteratorIterator::LEAVES_ONLY,
    RecursiveIteratorIterator::CATCH_GET_CHILD
);
$prefix = strlen($release) + 1;
$side = !str_contains($release, '/releases/');
foreach ($files as $path => $file) {
    if ($file->isLink() || !$file->isFile() || !str_ends_with($path, '.php')) {
        continue;
    }
    if ($side) {
        opcache_invalidate($path, false);
    }
    if ($patterns) {
        $relative = substr($path, $prefix);
        $wanted = false;
        foreach ($patterns as $pattern) {
            if (preg_match($pattern, $relative)) {
                $wanted = true;
                break;
            }
        }
        if (!$wanted) {
            continue;
        }
    }
    $paths[] = $path;
}

// warm PATHS: compiles each; returns those OPcache compiled but did not
// keep (modified within opcache.file_update_protection seconds of this
// request's start, or blacklisted).
$checked = 0;
$warm = function (array $paths) use (&$counts, &$stopped, &$checked, $fill, $reserve, $seconds, $started): array {
    $young = [];
    foreach ($paths as $path) {
        if ($stopped !== null) {
            $counts['left']++;
            continue;
        }
        if (opcache_is_script_cached($path)) {
            $counts['cached']++;
            continue;
        }
        // Room first: OPcache restarts (and drops every app's scripts)
        // when it runs out of memory or keys; warming stops short of that.
        if ($checked++ % 16 == 0) {
            $now = $fill();
            if ($now['free'] < $reserve) {
                $stopped = 'memory';
            } elseif ($now['max_keys'] > 0 && $now['keys'] + 32 >= $now['max_keys']) {
                $stopped = 'keys';
            } elseif (microtime(true) - $started > $seconds) {
                $stopped = 'time';
            }
            if ($stopped !== null) {
                $counts['left']++;
                continue;
            }
        }
        try {
            $ok = @opcache_compile_file($path);
        } catch (Throwable) {
            $ok = false;
        }
        if (!$ok) {
            $counts['failed']++;
        } elseif (opcache_is_script_cached($path)) {
            $counts['compiled']++;
        } else {
            $young[] = $path;
        }
    }
    return $young;
};
$young = $warm($paths);
$counts['skipped'] = count($young);
echo json_encode($counts + [
    'stopped' => $stopped,
    // OPcache keeps no file modified within this many seconds of the
    // request's start (what the release's build just wrote: composer's
    // autoloader, Laravel's caches): a second request after them warms it.
    'protection' => (int) ini_get('opcache.file_update_protection'),
    'ms' => (int) round((microtime(true) - $started) * 1000),
    'before' => $before,
    'after' => $fill(),
]);
