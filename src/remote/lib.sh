# reconciler's shell library: what every script run on a server shares.
# The builder (src/remote/script.rs) puts it after the script's quoted
# header and before its body. Records go to fd 5, the report stream (the
# script's stdout); everything else a script or its commands print goes
# to stderr, so nothing but `record` can ever write a record.

# record KIND FIELD...: one record of the report protocol
# (src/remote/protocol.rs): `@KIND`, NUL, the field count, NUL, each field
# and a NUL, a newline. A bash string holds no NUL, so no field can break
# the framing. One printf: a record is written whole.
record() {
  local kind=$1 format='' i
  shift
  for ((i = 0; i < $#; i++)); do format+='%s\0'; done
  # shellcheck disable=SC2059 # the format is built from '%s\0' only
  printf "@%s\\0%d\\0${format}\\n" "$kind" "$#" "$@" >&5
}

# report KIND NAME [TEXT]: a step's result (done, failed, skipped, ...),
# what it was about, and its output.
report() { record "$1" "$2" "${3:-}"; }

# run_step LIMIT WHAT COMMAND...: COMMAND with a time limit; the last
# $OUTPUT_LIMIT bytes (a header variable) of what it printed (stdout and
# stderr) are in $out, whatever it prints: an app's build may print
# gigabytes. A step that hangs says so. Its stdin is the caller's (the
# runner gives /dev/null).
run_step() {
  local limit=$1 what=$2 status
  shift 2
  out=$(
    timeout -k 5 "$limit" "$@" 2>&1 | tail -c $((OUTPUT_LIMIT + 1))
    exit "${PIPESTATUS[0]}"
  )
  status=$?
  if [ ${#out} -gt $OUTPUT_LIMIT ]; then
    out="[only the last $OUTPUT_LIMIT bytes of the output are shown]"$'\n'"${out: -OUTPUT_LIMIT}"
  fi
  if [ $status = 124 ] || [ $status = 137 ]; then
    out="$what did not finish within ${limit}s${out:+: $out}"
  fi
  return $status
}

# service_running NAME: whether the system service NAME (nginx,
# php8.2-fpm, supervisor, cron) runs, as its init system says: systemd's
# is-active where systemd runs, else the `service` script's status. At
# most 10 s; its output is dropped.
service_running() {
  if [ -d /run/systemd/system ]; then
    timeout -k 2 10 systemctl is-active --quiet -- "$1" </dev/null >/dev/null 2>&1
  else
    timeout -k 2 10 service "$1" status </dev/null >/dev/null 2>&1
  fi
}

# app_argv USER: sets APP_ARGV to the command prefix that runs a command
# as USER (an app's user) with a clean environment: the app's home, and
# its PHP version's `php` first in PATH when the script knows it
# ($APP_PATH). An array, so that `timeout` (run_step) can run it too.
app_argv() {
  APP_ARGV=(setpriv --reuid="$1" --regid="$1" --init-groups --reset-env --
    env -i HOME="$HOME_ROOT/$1" USER="$1" LOGNAME="$1" PATH="${APP_PATH:-$SYSTEM_PATH}"
    LANG=C.UTF-8 COMPOSER_NO_INTERACTION=1)
}

# as_app USER COMMAND...: COMMAND as the app's user, so that whatever the
# app planted in its home (a link to /etc) gives it nothing it could not
# do already.
as_app() {
  local APP_ARGV
  app_argv "$1"
  shift
  "${APP_ARGV[@]}" "$@"
}

# fastcgi LIMIT CLI SOCKET SCRIPT [SECONDS [NAME=VALUE...]]: the body the
# php-fpm pool listening at SOCKET answers for SCRIPT, as reconciler's
# FastCGI client ($FASTCGI_CLIENT, src/facts/fastcgi-client.php, a header
# variable of the scripts that call this) asks it, run by the PHP CLI CLI
# without a php.ini; killed after LIMIT seconds, its stderr dropped.
# SECONDS (the client's wait for each read) and each NAME=VALUE (one more
# FastCGI parameter) go to the client. Fails when the pool does not
# answer. The callers: the fact gathering (OPcache status) and a release's
# OPcache warm.
fastcgi() {
  local limit=$1 cli=$2
  shift 2
  timeout -k 2 "$limit" "$cli" -n -r "$FASTCGI_CLIENT" "$@" 2>/dev/null
}

# replace_file PATH: what comes on stdin becomes PATH, whole: a new file
# beside it (mode 0600) renamed over it, so that no reader ever sees it
# half-written, and a failure leaves PATH as it was.
replace_file() {
  local tmp
  tmp=$(mktemp "$1.XXXXXX") || return 1
  if cat >"$tmp" && mv -f -- "$tmp" "$1"; then
    return 0
  fi
  rm -f -- "$tmp"
  return 1
}

# hold_record FILE TOKEN WHO REASON: the record of who holds a lock (this
# shell, $$), replaced whole: TOKEN, WHO, REASON, since when, pid; tab
# separated (WHO and REASON come from reconciler, without tabs).
hold_record() {
  printf '%s\t%s\t%s\t%s\t%s\n' "$2" "$3" "$4" "$(date -u +%FT%TZ)" "$$" | replace_file "$1"
}

# lock_holder FILE: who holds the lock whose record is FILE, if that
# process still runs: `WHO (REASON since TIME)`. A holder writes its
# record just after it takes the lock, so the record of a finished one
# is read again for up to half a second before the holder is unknown.
lock_holder() {
  local tries
  for ((tries = 0; tries < 10; tries++)); do
    held_by "$1" && return
    sleep 0.05
  done
  echo "a process that is not reconciler's"
}

# held_by FILE: `WHO (REASON since TIME)` when the process of the lock
# record FILE still runs; fails otherwise. Tells whether a lock is held
# without taking it, even for an instant: a probe with `flock -n` would
# make a holder that takes the lock at that instant find it busy.
held_by() {
  local token who reason since pid
  IFS=$'\t' read -r token who reason since pid <"$1" 2>/dev/null || return 1
  [[ ${pid:-} =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  printf '%s (%s since %s)\n' "$who" "$reason" "$since"
}

# lock_token FILE: the token of the lock record FILE.
lock_token() {
  local token
  IFS=$'\t' read -r token _ <"$1" 2>/dev/null
  printf '%s' "${token:-}"
}

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

# traffic_count LOG FROM WINDOW: the requests in an access log of
# reconciler's format (each line `msec status request_time upstream_time`,
# written by nginx in root's per-app log directory) from byte FROM (`tail`:
# the log's last 64 MiB; a log shorter than FROM was rotated: from its
# start), at most 64 MiB, counting only the lines of the last WINDOW
# seconds (0: all). Prints `END REQUESTS 5XX 4XX`, twelve counts of
# request times up to 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10 s and
# above, and the sum of the request times in milliseconds (nginx writes
# them to the millisecond, so the sum is exact): END is the byte to read
# from next.
traffic_count() {
  local log=$1 from=$2 window=$3 size since=0
  size=$(stat -c %s -- "$log" 2>/dev/null) || size=0
  [ "$from" = tail ] && from=$((size > 67108864 ? size - 67108864 : 0))
  [[ $from =~ ^[0-9]{1,18}$ ]] && [ "$from" -le "$size" ] || from=0
  [[ $window =~ ^[0-9]{1,9}$ ]] && [ "$window" -gt 0 ] && since=$(($(date +%s) - window))
  # Whole lines only: nginx appends each line with one write, so the size
  # read first ends one; what comes meanwhile is read next time.
  tail -c +$((from + 1)) -- "$log" 2>/dev/null | head -c $((size - from > 67108864 ? 67108864 : size - from)) |
    LC_ALL=C awk -v from="$from" -v since="$since" '
      BEGIN { split("0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10", le, " ") }
      { bytes += length($0) + 1 }
      $1 + 0 >= since && $2 ~ /^[0-9][0-9][0-9]$/ {
        n++
        if ($2 >= 500) e++; else if ($2 >= 400) c++
        for (i = 1; i <= 11 && $3 + 0 > le[i] + 0; i++) {}
        b[i]++
        ms += int($3 * 1000 + 0.5)
      }
      END {
        printf "%d %d %d %d", from + bytes, n, e, c
        for (i = 1; i <= 12; i++) printf " %d", b[i]
        printf " %.0f\n", ms
      }'
}
