<?php
// Managed by reconciler: run by its own php-fpm pool to report this
// php-fpm's OPcache figures as JSON (changes here are overwritten).
$status = function_exists('opcache_get_status') ? opcache_get_status(false) : false;
echo json_encode($status === false ? ['opcache_enabled' => false] : $status);
