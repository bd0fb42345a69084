# reconciler's fact gathering: one run per host per plan, read-only.
#
# The header (src/facts/gather.rs) holds the layout's paths, the arrays
# FILES (with SUMS, the sha256 each file should have), DIRS and APPS,
# LIST_PROGRAMS (1 where apps run workers) and FASTCGI_CLIENT
# (src/facts/fastcgi-client.php). Every fact is a record
# (src/remote/protocol.rs): an app-made name, a link target or a release
# directory's name is a field, whatever bytes it holds. Speed matters (this
# runs on every plan): no process per file, and file content is only sent
# for files whose hash differs from the wanted one.

gather_main() {
  local max_content=1048576 # larger files are compared by hash only
  record facts 2
  if [ -r /etc/os-release ]; then
    # A subshell: os-release's variables stay out of this script.
    record os "$(. /etc/os-release && printf '%s %s' "${ID:-unknown}" "${VERSION_ID:-unknown}")"
  fi
  if [ -d /run/systemd/system ]; then record init systemd; else record init service; fi
  record uid "$EUID"

  local dir v fpm cli status socket
  for dir in /etc/php/*/; do
    [ -d "$dir" ] || continue
    v=${dir%/}
    v=${v##*/}
    fpm=$(command -v "php-fpm$v") || fpm=
    cli=$(command -v "php$v") || cli=
    record php "$v" "$fpm" "$cli"
    # OPcache figures of the running php-fpm (the CLI has a cache of its
    # own), asked of reconciler's status pool over FastCGI: one JSON line.
    printf -v socket "$FPM_STATUS_SOCKET" "$v"
    [ -S "$socket" ] && [ -n "$cli" ] || continue
    status=$(fastcgi 5 "$cli" "$socket" "$OPCACHE_STATUS") &&
      [[ $status == "{"* ]] && record opcache "$v" "$status"
  done

  local tool path services=()
  for tool in nginx supervisorctl cron; do
    path=$(command -v "$tool") || path=
    record tool "$tool" "$path"
    [ -n "$path" ] && services+=("${tool/supervisorctl/supervisor}")
  done

  # Whether each installed service runs (a service stopped by hand is
  # drift: the plan starts it), as the init system says.
  for dir in /etc/php/*/; do
    v=${dir%/}
    v=${v##*/}
    command -v "php-fpm$v" >/dev/null && services+=("php$v-fpm")
  done
  local service
  for service in "${services[@]}"; do
    if service_running "$service"; then
      record service "$service" running
    else
      record service "$service" stopped
    fi
  done

  # Every supervisor process and its state, on a server with workers
  # ($LIST_PROGRAMS), when supervisord answers (`status` exits 0, or 3
  # when some process is not running). Names are fields of records,
  # whatever bytes they hold; the parser keeps only names it reads.
  local listing status name state
  if [ -n "$LIST_PROGRAMS" ] && [ -n "$(command -v supervisorctl)" ]; then
    listing=$(timeout -k 2 10 supervisorctl status </dev/null 2>/dev/null)
    status=$?
    if [ $status = 0 ] || [ $status = 3 ]; then
      record programs
      while read -r name state _; do
        [ -n "$name" ] && record program "$name" "$state"
      done <<<"$listing"
    fi
  fi

  # Installed Debian packages, for `provision` and the plan's notes: names
  # hold no spaces.
  record packages "$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' 2>/dev/null |
    awk '$1 == "ii" { printf "%s ", $2 }')"

  # Every user and group: numeric owners below map to names through them.
  local name uid gid home shell members
  while IFS=: read -r name _ uid gid _ home shell; do
    record user "$name" "$uid" "$gid" "$home" "$shell"
  done </etc/passwd
  while IFS=: read -r name _ gid members; do
    record group "$name" "$gid" "$members"
  done </etc/group

  # Sudo rights of the apps' users, in one grep (names are validated: they
  # hold no regex syntax).
  if [ ${#APPS[@]} -gt 0 ]; then
    local pattern
    pattern=$(IFS='|' && echo "${APPS[*]}")
    grep -hsoE "^[[:space:]]*($pattern)([[:space:],]|\$)" /etc/sudoers /etc/sudoers.d/* |
      while read -r name _; do record sudoer "${name%,}"; done
  fi
  [ -r "$USERS_FILE" ] && while read -r name; do record created-user "$name"; done <"$USERS_FILE"

  # The manifest: only paths reconciler could have written. Anything else in
  # it (a planted /root/secret.txt) is neither read nor reported.
  local manifest=() lines=()
  if [ -r "$MANIFEST" ]; then
    mapfile -t lines <"$MANIFEST"
    mapfile -t manifest < <(grep -xE -- "$CONFIG_PATHS" "$MANIFEST" | grep -vF -- ..)
    record manifest-ignored $((${#lines[@]} - ${#manifest[@]}))
    local line
    line=$(sha256sum -- "$MANIFEST")
    record manifest-sha256 "${line%% *}"
  fi
  record manifest "${manifest[@]}"
  local pending=()
  [ -r "$PENDING" ] && mapfile -t pending <"$PENDING"
  record pending "${pending[@]}"

  # An apply that was killed before it finished, and one running now.
  local kind value generation=
  if [ -r "$JOURNAL" ]; then
    while read -r kind value; do record "journal-$kind" "$value"; done <"$JOURNAL"
  fi
  [ -r "$GENERATION" ] && read -r generation <"$GENERATION"
  [[ $generation =~ ^[0-9]{1,18}$ ]] && record generation "$generation"
  if [ -e "$LOCK" ] && exec 8<"$LOCK"; then
    flock -n -s 8 || record lock "$(lock_holder "$LOCK_HOLDER")"
    exec 8<&-
  fi

  # Each app's release directories: app-made names, listed without
  # following a link (find -P), whatever they hold; the plan keeps only
  # commit ids.
  local releases=() app
  for app in "${APPS[@]}"; do releases+=("$HOME_ROOT/$app/releases"); done
  if [ ${#releases[@]} -gt 0 ]; then
    find -P "${releases[@]}" -mindepth 1 -maxdepth 1 -type d \
      -printf '@release\0002\0%h\0%f\0\n' 2>/dev/null >&5
  fi

  # Every path at once: one find for type, owner, mode, size, link target
  # and time (starting points are not followed either), one sha256sum for
  # the files; content only where the hash is not the wanted one. Missing
  # paths are simply absent.
  local -A want=()
  local i
  for i in "${!FILES[@]}"; do want[${FILES[$i]}]=${SUMS[$i]}; done
  local unwanted=() # managed files no unit wants any more
  for path in "${manifest[@]}"; do
    [ -z "${want[$path]+set}" ] && unwanted+=("$path")
  done
  local currents=()
  for app in "${APPS[@]}"; do currents+=("$HOME_ROOT/$app/current"); done
  local paths=("${FILES[@]}" "${unwanted[@]}" "${DIRS[@]}" "${currents[@]}")
  if [ ${#paths[@]} -gt 0 ]; then
    find -P "${paths[@]}" -maxdepth 0 \
      -printf '@path\0008\0%y\0%U\0%G\0%m\0%s\0%p\0%l\0%T@\0\n' 2>/dev/null >&5
  fi
  local sums=() files=("${FILES[@]}" "${unwanted[@]}") differ=() sum
  # Config paths (validated, root's places): sha256sum's lines parse.
  [ ${#files[@]} -gt 0 ] && mapfile -t sums < <(sha256sum -- "${files[@]}" 2>/dev/null)
  for line in "${sums[@]}"; do
    sum=${line%% *}
    path=${line#*  }
    record sha256 "$sum" "$path"
    [ "${want[$path]:-}" != "$sum" ] && differ+=("$path")
  done
  local size
  for path in "${differ[@]}"; do
    [ -f "$path" ] && [ -r "$path" ] || continue
    size=$(stat -c %s -- "$path") || continue
    [ "$size" -le $max_content ] || continue
    record content "$path" "$(head -c $max_content -- "$path" | base64 -w0)"
  done
  record end
}
