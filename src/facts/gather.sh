# reconciler's fact gathering: one run per host per plan, read-only.
# Prepended by reconciler: the layout's paths (STATE, MANIFEST, ...,
# CONFIG_PATHS), then the arrays FILES (with SUMS, the sha256 each file
# should have), DIRS and APPS, each value single-quoted.
# Output is line-framed; see facts/parse.rs. Speed matters (this runs on
# every plan): no subshell or process per file, and file content is only
# sent for files whose hash differs from the wanted one.
set -u
export LC_ALL=C
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
max_content=1048576  # larger files are compared by hash only

echo "@facts 1"
if [ -r /etc/os-release ]; then
  . /etc/os-release
  echo "@os ${ID:-unknown} ${VERSION_ID:-unknown}"
fi
if [ -d /run/systemd/system ]; then echo "@init systemd"; else echo "@init service"; fi
echo "@uid $EUID"

# `command -v` prints the path itself: no subshell to capture it.
for dir in /etc/php/*/; do
  [ -d "$dir" ] || continue
  v=${dir%/}; v=${v##*/}
  printf '@php %s\n@php-fpm ' "$v"; command -v "php-fpm$v" || echo -
  printf '@php-cli '; command -v "php$v" || echo -
done
# OPcache figures of each running php-fpm (the CLI has a cache of its own),
# asked of reconciler's status pool over FastCGI by the PHP CLI: no package
# beyond PHP itself. The client prints the response body, one JSON line.
fastcgi_client='
[$sock, $script] = [$argv[1], $argv[2]];
$s = @stream_socket_client("unix://$sock", $errno, $err, 3);
if (!$s) { exit(1); }
stream_set_timeout($s, 5);
$record = fn($type, $body) => pack("CCnnCx", 1, $type, 1, strlen($body), 0) . $body;
$params = "";
foreach (["SCRIPT_FILENAME" => $script, "SCRIPT_NAME" => "/status.php", "REQUEST_METHOD" => "GET",
    "REQUEST_URI" => "/status.php", "QUERY_STRING" => "", "SERVER_PROTOCOL" => "HTTP/1.1",
    "GATEWAY_INTERFACE" => "CGI/1.1", "REMOTE_ADDR" => "127.0.0.1", "SERVER_NAME" => "localhost",
    "SERVER_PORT" => "80", "CONTENT_LENGTH" => "0"] as $k => $v) {
  $params .= chr(strlen($k)) . chr(strlen($v)) . $k . $v;
}
fwrite($s, $record(1, pack("nCxxxxx", 1, 0)) . $record(4, $params) . $record(4, "") . $record(5, ""));
$out = "";
while (!feof($s)) {
  $head = fread($s, 8);
  if (strlen($head) < 8) break;
  $h = unpack("Cversion/Ctype/nid/nlength/Cpadding", $head);
  $body = $h["length"] ? stream_get_contents($s, $h["length"]) : "";
  if ($h["padding"]) fread($s, $h["padding"]);
  if ($h["type"] == 6) $out .= $body; elseif ($h["type"] == 3) break;
}
$at = strpos($out, "\r\n\r\n");
echo $at === false ? $out : substr($out, $at + 4), "\n";
'
for dir in /etc/php/*/; do
  [ -d "$dir" ] || continue
  v=${dir%/}; v=${v##*/}
  printf -v socket "$FPM_STATUS_SOCKET" "$v"
  [ -S "$socket" ] && command -v "php$v" >/dev/null || continue
  status=$(timeout 5 "php$v" -n -r "$fastcgi_client" "$socket" "$OPCACHE_STATUS" 2>/dev/null) &&
    [[ $status == "{"* ]] && echo "@opcache $v $status"
done

for tool in nginx supervisorctl cron; do
  printf '@tool %s ' "$tool"; command -v "$tool" || echo -
done

# Installed Debian packages, for `provision` and the plan's notes.
dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' 2>/dev/null | awk '$1 == "ii" { print "@package " $2 }'

# Every user and group: the parser maps the numeric owners below to names
# (find's %u would look each one up in /etc/passwd again).
awk -F: '{ print "@user", $1, $3, $4, $6, ($7 == "" ? "-" : $7) }' /etc/passwd
awk -F: '{ gsub(",", " ", $4); print "@group", $1, $3, $4 }' /etc/group

# Sudo rights of the apps' users, in one grep (names are validated: they
# hold no regex syntax).
if [ ${#APPS[@]} -gt 0 ]; then
  apps_pattern=$(IFS='|'; echo "${APPS[*]}")
  grep -hsoE "^[[:space:]]*($apps_pattern)([[:space:],]|\$)" /etc/sudoers /etc/sudoers.d/* |
    while read -r name _; do echo "@sudoer ${name%,}"; done
fi
[ -r "$USERS_FILE" ] && while read -r name; do echo "@created-user $name"; done < "$USERS_FILE"

# The manifest: only paths reconciler could have written. Anything else in
# it (a planted /root/secret.txt) is neither read nor reported.
manifest=()
if [ -r "$MANIFEST" ]; then
  mapfile -t lines < "$MANIFEST"
  mapfile -t manifest < <(grep -xE -- "$CONFIG_PATHS" "$MANIFEST" | grep -vF -- ..)
  ignored=$((${#lines[@]} - ${#manifest[@]}))
  [ $ignored = 0 ] || echo "@manifest-ignored $ignored"
  line=$(sha256sum -- "$MANIFEST")
  echo "@manifest-sha256 ${line%% *}"
fi
[ ${#manifest[@]} -gt 0 ] && printf '@manifest %s\n' "${manifest[@]}"
pending=()
[ -r "$PENDING" ] && mapfile -t pending < "$PENDING"
[ ${#pending[@]} -gt 0 ] && printf '@pending %s\n' "${pending[@]}"

# An apply that was killed before it finished, and one running now.
if [ -r "$JOURNAL" ]; then
  while read -r kind value; do echo "@journal-$kind $value"; done < "$JOURNAL"
fi
generation=
[ -r "$GENERATION" ] && read -r generation <"$GENERATION"
[[ $generation =~ ^[0-9]{1,18}$ ]] && echo "@generation $generation"
if [ -e "$LOCK" ] && exec 8<"$LOCK"; then
  if ! flock -n -s 8; then
    echo "@lock $(lock_holder)"
  fi
  exec 8<&-
fi

for app in "${APPS[@]}"; do
  for release in "$HOME_ROOT/$app/releases/"*/; do
    [ -d "$release" ] || continue
    release=${release%/}
    echo "@release $app ${release##*/}"
  done
done

# Every path at once: one find for type, owner, mode, size and link
# target, one sha256sum for the files; content only where the hash is not
# the wanted one. Missing paths are simply absent.
declare -A want=()
for i in "${!FILES[@]}"; do want[${FILES[$i]}]=${SUMS[$i]}; done
unwanted=()  # managed files no unit wants any more
for path in "${manifest[@]}"; do
  [ -z "${want[$path]+set}" ] && unwanted+=("$path")
done
currents=()
for app in "${APPS[@]}"; do currents+=("$HOME_ROOT/$app/current"); done
paths=("${FILES[@]}" "${unwanted[@]}" "${DIRS[@]}" "${currents[@]}")
if [ ${#paths[@]} -gt 0 ]; then
  find "${paths[@]}" -maxdepth 0 -printf '@path\t%y\t%U\t%G\t%m\t%s\t%p\t%l\t%T@\n' 2>/dev/null
fi
sums=()
files=("${FILES[@]}" "${unwanted[@]}")
if [ ${#files[@]} -gt 0 ]; then
  mapfile -t sums < <(sha256sum -- "${files[@]}" 2>/dev/null)
fi
differ=()
for line in "${sums[@]}"; do
  sum=${line%% *}
  path=${line#*  }
  echo "@sha256 $sum $path"
  [ "${want[$path]:-}" != "$sum" ] && differ+=("$path")
done
for path in "${differ[@]}"; do
  [ -r "$path" ] || continue
  content=
  IFS= read -r -d '' -N $((max_content + 1)) content < "$path"
  [ ${#content} -gt $max_content ] && continue
  printf '@content %d %s\n%s\n' "${#content}" "$path" "$content"
done
echo "@end"
