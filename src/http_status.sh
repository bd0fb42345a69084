# http_status DOMAIN PATH: sets CODE to the status code this host's nginx
# answers to `GET PATH` for DOMAIN (at 127.0.0.1:$WEB_PORT), or to nothing.
# bash's /dev/tcp, in this shell: no curl needed, and no process per
# request (a 50-app server is checked in tens of milliseconds). Loopback
# connects do not hang; the answer is waited for 5 s at most. Uses fd 4.
http_status() {
  CODE=
  { exec 4<>"/dev/tcp/127.0.0.1/$WEB_PORT"; } 2>/dev/null || return 0
  printf 'GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n' "$2" "$1" >&4 2>/dev/null &&
    read -r -t 5 _ CODE _ <&4
  exec 4<&-
}
