# reconciler's releases, as shell functions over data: after app.sh (the
# app lock, the app's header and paths), with SHA in the header. Every
# step checks first that the app lock is still held by this release. The
# decisions (where to prepare, what to switch back to, what to keep) are
# made in Rust (src/release/plan.rs); these functions carry them out.
#
# Nothing half-done is ever live: a release directory counts only with
# root's record $APP_STATE/complete/<sha>, written last; an incomplete one
# is removed before it is unpacked again, and by pruning.
#
# With `release_layout: ab` ($LAYOUT), a release is unpacked and its
# shared paths linked in releases/<sha> as always, then written into the
# one of $HOME_DIR/a and b that is not live (release_side), where it is
# built; root's record of it is $APP_STATE/side-<a|b> (its sha), written
# last, and `current` links to `a` or `b`.

# idle_side: the side a release of the `ab` layout is written into: the
# one `current` does not link to.
idle_side() {
  if [ "$(as_app "$APP" readlink -- "$CURRENT" 2>/dev/null)" = a ]; then echo b; else echo a; fi
}

# release_dir SHA: where the complete release SHA lies, relative to
# $HOME_DIR (`a`, `b` or `releases/SHA`), as root's records say; fails
# when it is not complete here.
release_dir() {
  local side
  for side in a b; do
    if [ "$(head -c 41 -- "$APP_STATE/side-$side" 2>/dev/null)" = "$1" ] && as_app "$APP" test -d "$HOME_DIR/$side"; then
      echo "$side"
      return 0
    fi
  done
  [ -f "$APP_STATE/complete/$1" ] && as_app "$APP" test -d "$RELEASES/$1" && echo "releases/$1"
}

# prepare_dir: where the release being prepared is built: the idle side,
# or releases/$SHA.
prepare_dir() {
  if [ "$LAYOUT" = ab ]; then echo "$HOME_DIR/$(idle_side)"; else echo "$RELEASES/$SHA"; fi
}

# ---- Preparing a release -----------------------------------------------------
# release_upload SIZE SHA256: the gzipped tar on fd 3 becomes releases/$SHA.
release_upload() {
  check_lock
  local size=$1 sum=$2 file="$APP_STATE/upload.tar.gz" got APP_ARGV
  head -c "$size" <&3 >"$file"
  got=$(stat -c %s -- "$file")
  if [ "$got" != "$size" ] || [ "$(sha256sum <"$file" | cut -d' ' -f1)" != "$sum" ]; then
    rm -f -- "$file"
    report failed upload "received $got of $size bytes, or not the bytes that were sent"
    exit 0
  fi
  rm -f -- "$APP_STATE/complete/$SHA"
  # An earlier attempt's leftovers, then the new directory, as the app.
  app_argv "$APP"
  if ! run_step 600 unpacking "${APP_ARGV[@]}" sh -c 'rm -rf -- "$1" && mkdir -m 755 -- "$1" && tar -xzf - -C "$1" --no-same-owner --no-same-permissions' _ "$RELEASES/$SHA" <"$file"; then
    rm -f -- "$file"
    report failed upload "$out"
    exit 0
  fi
  rm -f -- "$file"
  report done upload ""
}

# release_shared KIND PATH...: links each shared path into the release
# (KIND is `dir` or `file`, as the definitions say). What the release
# brings for a path seeds shared/: whatever shared/ lacks of it is moved
# there (directories both have are merged), and nothing shared/ has
# already is replaced, so a first release fills `shared/storage` that an
# apply made with only `logs/` in it. A path neither has is made of its
# kind: an empty file, or a directory.
release_shared() {
  check_lock
  local APP_ARGV
  app_argv "$APP"
  if ! run_step 120 "linking shared paths" "${APP_ARGV[@]}" bash -c '
    set -e
    shopt -s dotglob nullglob
    absent() { [ ! -e "$1" ] && [ ! -L "$1" ]; }
    real_dir() { [ -d "$1" ] && [ ! -L "$1" ]; }
    # seed FROM TO: moves into TO what it lacks of FROM.
    seed() {
      local entry
      for entry in "$1"/*; do
        if absent "$2/${entry##*/}"; then
          mv -- "$entry" "$2/${entry##*/}"
        elif real_dir "$entry" && real_dir "$2/${entry##*/}"; then
          seed "$entry" "$2/${entry##*/}"
        fi
      done
    }
    release=$1 shared=$2
    shift 2
    while [ $# -ge 2 ]; do
      kind=$1 path=$2
      shift 2
      in_release=$release/$path in_shared=$shared/$path
      mkdir -p -- "$(dirname -- "$in_shared")" "$(dirname -- "$in_release")"
      if [ -e "$in_release" ] && [ ! -L "$in_release" ]; then
        if absent "$in_shared"; then
          mv -- "$in_release" "$in_shared"
        elif real_dir "$in_release" && real_dir "$in_shared"; then
          seed "$in_release" "$in_shared"
        fi
        rm -rf -- "$in_release"
      fi
      if absent "$in_shared"; then
        case $kind in
          file) : >"$in_shared" ;;
          *) mkdir -p -- "$in_shared" ;;
        esac
      fi
      rm -f -- "$in_release"
      ln -s -- "$in_shared" "$in_release"
    done' _ "$RELEASES/$SHA" "$SHARED" "$@"; then
    report failed shared "$out"
    exit 0
  fi
  report done shared ""
}

# release_side PHP WAIT: (`ab`) releases/$SHA, unpacked and linked,
# written into the idle side by reconciler's writer ($AB_SYNC, run with
# the app's PHP CLI as the app: only changed files rewritten, see
# ab-sync.php), then removed. The side was live until root recorded when
# `current` left it ($APP_STATE/left-<side>): it is rewritten only WAIT
# seconds after that, once no request that started there runs and OPcache
# compares each of its scripts' times again. Its record goes first: a
# side half written is no release.
release_side() {
  check_lock
  local php=$1 wait=$2 side left now APP_ARGV
  side=$(idle_side)
  left=$(head -c 20 -- "$APP_STATE/left-$side" 2>/dev/null)
  [[ $left =~ ^[0-9]+$ ]] || left=0
  now=$(date +%s)
  if ((left + wait > now)); then
    record waited "$side" "$((left + wait - now))"
    sleep "$((left + wait - now))"
  fi
  rm -f -- "$APP_STATE/side-$side"
  app_argv "$APP"
  if ! run_step 600 "writing $side" "${APP_ARGV[@]}" "$php" -n -r "$AB_SYNC" \
    "$RELEASES/$SHA" "$HOME_DIR/$side" "$HOME_DIR/.$side.files"; then
    report failed side "$out"
    exit 0
  fi
  json_line "${out##*$'\n'}" && record written "$side" "${out##*$'\n'}"
  as_app "$APP" rm -rf -- "$RELEASES/$SHA"
  report done side ""
}

# release_commands STEP LIMIT COMMAND...: each COMMAND in the release (see
# app_commands).
release_commands() {
  local step=$1 limit=$2
  shift 2
  app_commands "$step" "$limit" "$(prepare_dir)" "$@"
}

# release_complete: root's record that the release is whole.
release_complete() {
  check_lock
  if [ "$LAYOUT" = ab ]; then
    printf '%s\n' "$SHA" >"$APP_STATE/side-$(idle_side)"
  else
    : >"$APP_STATE/complete/$SHA"
  fi
  report done complete ""
}

# release_discard: a release that failed somewhere goes where it was
# being prepared, unless it is live there.
release_discard() {
  check_lock
  [ "$(as_app "$APP" readlink -- "$CURRENT" 2>/dev/null)" = "releases/$SHA" ] && { report done discard ""; return 0; }
  rm -f -- "$APP_STATE/complete/$SHA"
  as_app "$APP" rm -rf -- "$RELEASES/$SHA"
  report done discard ""
}

# json_line TEXT: TEXT is one line of a JSON object (serialized by serde on
# the client), fit to be one line of a record file.
json_line() {
  [[ $1 == "{"*"}" && $1 != *$'\n'* ]]
}

# ---- Warming OPcache ---------------------------------------------------------
# release_warm CLI SOCKET SECONDS GLOBS: before the switch, the release's
# PHP files compiled into the OPcache of the php-fpm that will serve them,
# through the app's own pool (SOCKET, root's and nginx's alone) by
# reconciler's warm script ($OPCACHE_WARM: only scripts in reconciler's
# directory may use OPcache's API), so that OPcache gives them to this
# app's pool alone. CLI is the PHP CLI that runs the FastCGI client
# ($FASTCGI_CLIENT); SECONDS bounds each request, GLOBS (newline-
# separated) narrow it. OPcache keeps no file modified within
# opcache.file_update_protection seconds (it says how many) of a request's
# start, such as what the build wrote just now: when some were left so, a
# second request once that has passed. Each request's one JSON line is a
# `warmed` record (what it compiled, skipped, failed or left, OPcache's
# fill before and after); or `failed warm WHY`: warming is never a reason
# not to switch.
release_warm() {
  check_lock
  local cli=$1 socket=$2 seconds=$3 globs=$4 body pass protection
  local dir
  dir=$(release_dir "$SHA") || { report failed warm "release $SHA is not complete on this server"; exit 0; }
  [ -S "$socket" ] || { report failed warm "the app's php-fpm pool does not listen at $socket"; exit 0; }
  [ -f "$OPCACHE_WARM" ] || { report failed warm "$OPCACHE_WARM is missing: apply installs it"; exit 0; }
  for pass in 1 2; do
    body=$(fastcgi $((seconds + 15)) "$cli" "$socket" "$OPCACHE_WARM" $((seconds + 10)) \
      "RECONCILER_RELEASE=$HOME_DIR/$dir" "RECONCILER_SECONDS=$seconds" "RECONCILER_GLOBS=$globs" |
      head -c 65536)
    json_line "$body" || { report failed warm "the app's php-fpm pool gave no answer to the warm script"; exit 0; }
    record warmed "$body"
    [[ $body =~ \"skipped\":([0-9]+).*\"stopped\":null.*\"protection\":([1-5])[,}] ]] || break
    protection=${BASH_REMATCH[2]}
    [ "${BASH_REMATCH[1]}" != 0 ] && [ "$pass" = 1 ] || break
    sleep "$protection.2"
  done
  report done warm ""
}

# ---- Going live --------------------------------------------------------------
# release_switch SHA [INTENT]: `current` names releases/SHA (this release,
# or the one a failed release goes back to), atomically: a new link,
# renamed over the old one. Then the app's workers restart. INTENT (one
# JSON line: the release, what was live before, who) is kept in
# $APP_STATE/in-flight first, until release_finish: a release whose client
# stops after switching leaves that record, and the next release, or the
# daemon's check, puts the server right.
release_switch() {
  check_lock
  local sha=$1 intent=${2:-} dir old APP_ARGV
  dir=$(release_dir "$sha") || { report failed switch "release $sha is not complete on this server"; exit 0; }
  if [ -n "$intent" ]; then
    json_line "$intent" || { report failed switch "not one JSON line"; exit 0; }
    printf '%s\n' "$intent" | replace_file "$APP_STATE/in-flight" ||
      { report failed switch "cannot write $APP_STATE/in-flight"; exit 0; }
  fi
  # When `current` leaves a side, the time: release_side waits from it.
  old=$(as_app "$APP" readlink -- "$CURRENT" 2>/dev/null)
  if [[ $old == [ab] ]] && [ "$old" != "$dir" ]; then
    date +%s | replace_file "$APP_STATE/left-$old"
  fi
  app_argv "$APP"
  if ! run_step 30 "switching current" "${APP_ARGV[@]}" sh -c \
    'ln -sfn -- "$2" "$1/.current.new" || exit 1
     mv -fT -- "$1/.current.new" "$1/current" && exit 0
     rm -f -- "$1/.current.new"; exit 1' _ "$HOME_DIR" "$dir"; then
    report failed switch "$out"
    exit 0
  fi
  report switched "$sha" ""
  restart_workers
}

# release_unswitch: no release is live any more (the app had none before
# this one): `current` goes; then the app's workers restart. A switch
# back, so no in-flight record is written.
release_unswitch() {
  check_lock
  as_app "$APP" rm -f -- "$CURRENT"
  if as_app "$APP" test -e "$CURRENT" || as_app "$APP" test -L "$CURRENT"; then
    report failed switch "$CURRENT is still there (not a link reconciler made)"
    exit 0
  fi
  report switched "" ""
  restart_workers
}

# restart_workers: the app's supervisor programs (restart_programs,
# app.sh), on what is live now. The switch happened whatever they do: a
# failure is reported as such, not as a failed switch.
restart_workers() {
  if [ "$WORKERS" = 1 ]; then
    if restart_programs; then
      report restarted workers "$out"
    else
      report workers-failed workers "$out"
    fi
  fi
  report done switch ""
}

# release_health DOMAIN PATH STATUS: the release answers PATH with STATUS
# (`-`: anything but a 5xx) within $HEALTH_TRIES tenths of a second.
release_health() {
  check_lock
  local domain=$1 path=$2 want=$3 tries
  for ((tries = 0; tries < HEALTH_TRIES; tries++)); do
    http_status "$domain" "$path"
    if [ "$want" = - ]; then
      [[ $CODE =~ ^[1-4][0-9][0-9]$ ]] && break
    else
      [ "$CODE" = "$want" ] && break
    fi
    sleep 0.1
  done
  if [ "$want" = - ] && [[ $CODE =~ ^[1-4][0-9][0-9]$ ]] || [ "$CODE" = "$want" ]; then
    report done health "$CODE"
  else
    report failed health "GET $path for $domain answered ${CODE:-nothing}, not ${want/-/a status below 500}, for $((HEALTH_TRIES / 10)) s"
  fi
}

# ---- Guarding: the app's traffic ---------------------------------------------
# release_traffic FROM WINDOW: the app's requests in its access log
# ($LOG_DIR/access.log; see traffic_count) from byte FROM (`tail`: its
# last 64 MiB), of the last WINDOW seconds (0: all): `traffic END REQUESTS
# 5XX 4XX BUCKET...`, END the byte to read from next.
release_traffic() {
  local -a counts
  read -r -a counts <<<"$(traffic_count "$LOG_DIR/access.log" "$1" "$2")"
  record traffic "${counts[@]}"
  report done traffic ""
}

# ---- After: the log and pruning ------------------------------------------
# release_finish COUNT LINE... KEEP...: the COUNT LINEs (each one JSON
# line, serialized by serde) go to the release log, and the in-flight
# record goes; then every release directory not in KEEP is removed (as the
# app: made writable first, removed, then checked gone), and each is
# reported pruned, or not, with why.
release_finish() {
  check_lock
  local count=$1 line sha kept=" " APP_ARGV
  shift
  [[ $count =~ ^[0-9]$ ]] || { report failed finish "not a count of lines"; exit 0; }
  for line in "${@:1:count}"; do
    json_line "$line" || { report failed finish "not one JSON line"; exit 0; }
  done
  for line in "${@:1:count}"; do printf '%s\n' "$line"; done >>"$APP_STATE/release.log"
  rm -f -- "$APP_STATE/in-flight"
  shift "$count"
  for sha in "$@"; do kept+="$sha "; done
  app_argv "$APP"
  while IFS= read -r -d '' sha; do
    [[ $sha =~ ^[0-9a-f]{40}$ ]] || continue
    [[ $kept == *" $sha "* ]] && continue
    rm -f -- "$APP_STATE/complete/$sha"
    run_step 300 "pruning $sha" "${APP_ARGV[@]}" sh -c \
      'chmod -R u+w -- "$1" 2>/dev/null; rm -rf -- "$1"' _ "$RELEASES/$sha"
    if as_app "$APP" test -e "$RELEASES/$sha"; then
      report prune-failed "$sha" "${out:-it is still there}"
    else
      report pruned "$sha" ""
    fi
  done < <(as_app "$APP" find -P "$RELEASES" -mindepth 1 -maxdepth 1 -printf '%f\0' 2>/dev/null)
  report done finish ""
}

# release_list: what `reconciler releases` shows: the app's state, and
# every release directory with its time (names made by the app are fields,
# whatever they hold).
release_list() {
  ensure_state
  app_state
  local holder APP_ARGV
  holder=$(held_by "$APP_STATE/lock.holder") && record locked "$holder"
  app_argv "$APP"
  "${APP_ARGV[@]}" find -P "$RELEASES" -mindepth 1 -maxdepth 1 -type d \
    -printf '@present\0002\0%f\0%T@\0\n' 2>/dev/null >&5
  report done list ""
}
