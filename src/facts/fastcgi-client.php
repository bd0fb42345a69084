<?php
// reconciler's FastCGI client: asks a php-fpm pool's socket for one script
// and prints the response body, with no package beyond PHP itself. The
// remote scripts run it with the PHP CLI as `php -n -r CODE SOCKET SCRIPT
// [SECONDS [NAME=VALUE...]]` (this file without its first line): the fact
// gathering to read reconciler's OPcache status pool, a release to warm
// OPcache through the app's own pool.
//
// Usage: php fastcgi-client.php SOCKET SCRIPT_FILENAME [SECONDS [NAME=VALUE...]]
// SECONDS (default 5) bounds each wait for the pool; each NAME=VALUE is one
// more FastCGI parameter. Exit status 1 when the socket does not answer;
// the body otherwise.

[$socket, $script] = [$argv[1], $argv[2]];
$seconds = (int) ($argv[3] ?? 5);
$s = @stream_socket_client("unix://$socket", $errno, $error, 3);
if (!$s) {
    exit(1);
}
stream_set_timeout($s, max(1, $seconds));

// A FastCGI record: version 1, type, request id 1, content, no padding.
$record = fn(int $type, string $body): string => pack('CCnnCx', 1, $type, 1, strlen($body), 0) . $body;
// A length in a name-value pair: one byte below 128, else four with the top bit set.
$length = fn(string $text): string => strlen($text) < 128 ? chr(strlen($text)) : pack('N', strlen($text) | 0x80000000);

$params = '';
$pairs = [
    'SCRIPT_FILENAME' => $script, 'SCRIPT_NAME' => '/status.php', 'REQUEST_METHOD' => 'GET',
    'REQUEST_URI' => '/status.php', 'QUERY_STRING' => '', 'SERVER_PROTOCOL' => 'HTTP/1.1',
    'GATEWAY_INTERFACE' => 'CGI/1.1', 'REMOTE_ADDR' => '127.0.0.1', 'SERVER_NAME' => 'localhost',
    'SERVER_PORT' => '80', 'CONTENT_LENGTH' => '0',
];
foreach (array_slice($argv, 4) as $pair) {
    [$name, $value] = explode('=', $pair, 2) + [1 => ''];
    $pairs[$name] = $value;
}
foreach ($pairs as $name => $value) {
    $params .= $length($name) . $length($value) . $name . $value;
}
// BEGIN_REQUEST (responder, no keep-alive), PARAMS, end of PARAMS, empty
// STDIN. A record holds at most 65535 bytes: the parameters take as many
// as they need.
$request = $record(1, pack('nCxxxxx', 1, 0));
foreach (str_split($params, 65535) as $chunk) {
    $request .= $record(4, $chunk);
}
fwrite($s, $request . $record(4, '') . $record(5, ''));

$out = '';
while (!feof($s)) {
    $head = fread($s, 8);
    if (strlen($head) < 8) {
        break;
    }
    $h = unpack('Cversion/Ctype/nid/nlength/Cpadding', $head);
    $body = $h['length'] ? stream_get_contents($s, $h['length']) : '';
    if ($h['padding']) {
        fread($s, $h['padding']);
    }
    if ($h['type'] == 6) {        // STDOUT, of which 1 MiB is more than enough
        $out .= $body;
        if (strlen($out) > 1 << 20) {
            exit(1);
        }
    } elseif ($h['type'] == 3) {  // END_REQUEST
        break;
    }
}
// The body follows the CGI headers.
$at = strpos($out, "\r\n\r\n");
echo $at === false ? $out : substr($out, $at + 4), "\n";
