<?php
// reconciler's FastCGI client: asks a php-fpm pool's socket for one script
// and prints the response body, with no package beyond PHP itself. The
// fact-gathering script runs it with the PHP CLI as `php -n -r CODE SOCKET
// SCRIPT` (this file without its first line) to read reconciler's OPcache
// status pool.
//
// Usage: php fastcgi-client.php SOCKET SCRIPT_FILENAME
// Exit status 1 when the socket does not answer; the body otherwise.

[$socket, $script] = [$argv[1], $argv[2]];
$s = @stream_socket_client("unix://$socket", $errno, $error, 3);
if (!$s) {
    exit(1);
}
stream_set_timeout($s, 5);

// A FastCGI record: version 1, type, request id 1, content, no padding.
$record = fn(int $type, string $body): string => pack('CCnnCx', 1, $type, 1, strlen($body), 0) . $body;

$params = '';
foreach ([
    'SCRIPT_FILENAME' => $script, 'SCRIPT_NAME' => '/status.php', 'REQUEST_METHOD' => 'GET',
    'REQUEST_URI' => '/status.php', 'QUERY_STRING' => '', 'SERVER_PROTOCOL' => 'HTTP/1.1',
    'GATEWAY_INTERFACE' => 'CGI/1.1', 'REMOTE_ADDR' => '127.0.0.1', 'SERVER_NAME' => 'localhost',
    'SERVER_PORT' => '80', 'CONTENT_LENGTH' => '0',
] as $name => $value) {
    // Names and values here are shorter than 128 bytes: one-byte lengths.
    $params .= chr(strlen($name)) . chr(strlen($value)) . $name . $value;
}
// BEGIN_REQUEST (responder, no keep-alive), PARAMS, end of PARAMS, empty STDIN.
fwrite($s, $record(1, pack('nCxxxxx', 1, 0)) . $record(4, $params) . $record(4, '') . $record(5, ''));

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
    if ($h['type'] == 6) {        // STDOUT
        $out .= $body;
    } elseif ($h['type'] == 3) {  // END_REQUEST
        break;
    }
}
// The body follows the CGI headers.
$at = strpos($out, "\r\n\r\n");
echo $at === false ? $out : substr($out, $at + 4), "\n";
