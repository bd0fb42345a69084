<?php
// reconciler's A/B release writer (`release_layout: ab`), run as the app's
// user by `release_side` (release.sh) with `php -n -r`:
//
//   STAGING SIDE MANIFEST
//
// makes SIDE (/home/<app>/a or b, not live) hold what STAGING (the release
// unpacked, its shared paths linked) holds, like a checkout: a file whose
// bytes and mode are the same is left alone (its inode and modification
// time stay, so OPcache keeps its compiled script); a changed one is
// written beside it and renamed over it (a new inode, modified now, so
// OPcache, which compares modification times, compiles it again). A path
// the previous release written here had (MANIFEST, one NUL-ended path per
// entry) and this one does not is removed; what neither names (what the
// build made: vendor/, bootstrap/cache/...) is left for the build, which
// runs in SIDE next. MANIFEST is then this release's paths.
//
// Links are never followed: each is compared and made as a link. Prints
// one JSON line: {"written":N,"unchanged":N,"removed":N}.

[, $staging, $side, $manifest] = $argv;

/** Removes PATH, whatever it is (a directory with what it holds). */
function remove_path(string $path): void {
    if (is_dir($path) && !is_link($path)) {
        foreach (scandir($path) ?: [] as $name) {
            if ($name !== '.' && $name !== '..') {
                remove_path("$path/$name");
            }
        }
        @rmdir($path);
    } elseif (file_exists($path) || is_link($path)) {
        @unlink($path);
    }
}

/** Whether files A and B hold the same bytes. */
function same_bytes(string $a, string $b): bool {
    if (filesize($a) !== filesize($b)) {
        return false;
    }
    $fa = fopen($a, 'rb');
    $fb = fopen($b, 'rb');
    if ($fa === false || $fb === false) {
        return false;
    }
    $same = true;
    while ($same && !feof($fa)) {
        $same = fread($fa, 1 << 16) === fread($fb, 1 << 16);
    }
    fclose($fa);
    fclose($fb);
    return $same;
}

function fail(string $why): never {
    fwrite(STDERR, "$why\n");
    exit(1);
}

$counts = ['written' => 0, 'unchanged' => 0, 'removed' => 0];
$paths = [];
if (!is_dir($side) && !mkdir($side, 0755)) {
    fail("cannot create $side");
}

/** Brings SIDE/REL in line with STAGING/REL, and below it. */
function sync(string $rel): void {
    global $staging, $side, $counts, $paths;
    foreach (scandir("$staging/$rel") ?: fail("cannot read $staging/$rel") as $name) {
        if ($name === '.' || $name === '..') {
            continue;
        }
        $path = $rel === '' ? $name : "$rel/$name";
        $from = "$staging/$path";
        $to = "$side/$path";
        $paths[$path] = true;
        $tmp = "$side/" . ($rel === '' ? '' : "$rel/") . ".$name.reconciler-new";
        if (is_link($from)) {
            $target = readlink($from);
            if (is_link($to) && readlink($to) === $target) {
                $counts['unchanged']++;
                continue;
            }
            @unlink($tmp);
            if (is_dir($to) && !is_link($to)) {
                remove_path($to);
            }
            symlink($target, $tmp) && rename($tmp, $to) || fail("cannot link $to");
            $counts['written']++;
        } elseif (is_dir($from)) {
            if (is_link($to) || (file_exists($to) && !is_dir($to))) {
                unlink($to);
            }
            if (!is_dir($to) && !mkdir($to)) {
                fail("cannot create $to");
            }
            chmod($to, fileperms($from) & 07777);
            sync($path);
        } elseif (is_file($from)) {
            $mode = fileperms($from) & 07777;
            if (is_file($to) && !is_link($to) && (fileperms($to) & 07777) === $mode
                && same_bytes($from, $to)) {
                $counts['unchanged']++;
                continue;
            }
            if (is_dir($to) && !is_link($to)) {
                remove_path($to);
            }
            @unlink($tmp);
            copy($from, $tmp) && chmod($tmp, $mode) && rename($tmp, $to) || fail("cannot write $to");
            $counts['written']++;
        }
    }
}

sync('');

// What the previous release had and this one does not: deepest first, so
// that a directory is empty when its turn comes (one that is not, holding
// what the build made, stays).
$old = is_file($manifest) ? explode("\0", (string) file_get_contents($manifest)) : [];
rsort($old);
foreach ($old as $path) {
    $parts = explode('/', $path);
    if ($path === '' || isset($paths[$path]) || in_array('..', $parts, true) || in_array('', $parts, true)) {
        continue;
    }
    $to = "$side/$path";
    if (is_dir($to) && !is_link($to)) {
        if (@rmdir($to)) {
            $counts['removed']++;
        }
    } elseif (file_exists($to) || is_link($to)) {
        unlink($to) && $counts['removed']++;
    }
}

$list = '';
foreach (array_keys($paths) as $path) {
    $list .= "$path\0";
}
file_put_contents("$manifest.new", $list) !== false && rename("$manifest.new", $manifest)
    || fail("cannot write $manifest");
echo json_encode($counts), "\n";
