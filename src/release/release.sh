# reconciler's releases, as shell functions over data.
#
# Rust prepends the paths (HOME_DIR, RELEASES, SHARED, CURRENT, APP_STATE)
# and the release's data (APP, SHA, TOKEN, ...), then calls one step. A
# release is several round trips, one per step, so that progress shows;
# every step but `release_lock` checks that the app lock is still held
# with this release's token. Reports are lines `@kind<TAB>name<TAB>base64`
# on stdout, as in the apply.
#
# What a release promises, and how:
# - Root never follows a path the app can write. Everything in the app's
#   home (unpacking, shared links, `current`, pruning) runs as the app's
#   user; root keeps its records in $APP_STATE, which is root's alone.
# - One release of an app at a time: `release_lock` holds $APP_STATE/lock
#   (flock) until the client lets go or dies; its holder record names who.
# - Nothing half-done is ever live: a release directory counts only with
#   root's record $APP_STATE/complete/<sha>, written last; an incomplete
#   one is removed before it is unpacked again, and by pruning.
set -u
export LC_ALL=C
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
umask 022

# report and run_step: see src/steps.sh, appended by Rust.

# AS_APP COMMAND...: COMMAND as the app's user, with the environment of
# its release commands: its PHP version's `php` first in PATH. An array,
# not a function, so that `timeout` can run it too.
AS_APP=(setpriv --reuid="$APP" --regid="$APP" --init-groups --reset-env --
  env -i HOME="$HOME_DIR" USER="$APP" LOGNAME="$APP" PATH="$APP_PATH" LANG=C.UTF-8
  COMPOSER_NO_INTERACTION=1)
as_app() { "${AS_APP[@]}" "$@"; }
# Nothing runs in a directory the app could have given us.
cd /

# ---- The app lock ----------------------------------------------------------
holder_line() { head -n1 -- "$APP_STATE/lock.holder" 2>/dev/null; }

# Whether this release still holds the lock: the record names its token
# and the lock is taken.
lock_is_ours() {
  [ "$(holder_line | cut -f1)" = "$TOKEN" ] && ! flock -n "$APP_STATE/lock" true
}

ensure_state() {
  mkdir -p -- "$APP_STATE/complete" && chmod 700 -- "$APP_STATE" ||
    { report failed lock "cannot create $APP_STATE"; exit 0; }
}

# release_lock: takes the app lock and holds it until fd 3 ends (the client
# let go or died); reports what the server has, then `@held`.
release_lock() {
  ensure_state
  exec 9>>"$APP_STATE/lock"
  if ! flock -n 9; then
    local line
    line=$(holder_line)
    report busy "$APP" "$(printf '%s' "$line" | cut -f2-)"
    exit 0
  fi
  # Replaced whole: a reader never sees it half-written.
  printf '%s\t%s\t%s\t%s\n' "$TOKEN" "$WHO" "$REASON since $(date -u +%FT%TZ)" "$$" >"$APP_STATE/lock.holder.new" &&
    mv -f -- "$APP_STATE/lock.holder.new" "$APP_STATE/lock.holder"
  release_state
  echo @held
  # The lock is this shell's fd 9; `cat` waits for the end of fd 3.
  cat <&3 >/dev/null 9>&-
  rm -f -- "$APP_STATE/lock.holder"
}

# force_unlock: ends whatever holds the app lock.
force_unlock() {
  ensure_state
  local line pid
  line=$(holder_line)
  pid=$(printf '%s' "$line" | cut -f4)
  if flock -n "$APP_STATE/lock" true; then
    report unlocked "$APP" "not locked"
    return
  fi
  if [[ $pid =~ ^[0-9]+$ ]]; then
    pkill -KILL -P "$pid" 2>/dev/null
    kill -KILL "$pid" 2>/dev/null
  fi
  sleep 0.2
  if flock -n "$APP_STATE/lock" true; then
    rm -f -- "$APP_STATE/lock.holder"
    report unlocked "$APP" "$(printf '%s' "$line" | cut -f2-)"
  else
    report failed unlock "the lock is still held by $(fuser "$APP_STATE/lock" 2>&1)"
  fi
}

# What the server has: the live release, the complete ones, the log's tail.
release_state() {
  local live sha
  live=$(as_app readlink -- "$CURRENT" 2>/dev/null)
  report live - "${live##*/}"
  for sha in $(ls -- "$APP_STATE/complete" 2>/dev/null); do
    [[ $sha =~ ^[0-9a-f]{40}$ ]] || continue
    as_app test -d "$RELEASES/$sha" && report complete "$sha" ""
  done
  [ -f "$APP_STATE/release.log" ] && report log - "$(tail -n 200 -- "$APP_STATE/release.log")"
}

check_lock() {
  lock_is_ours || { report failed lock "the app lock is not held by this release any more"; exit 0; }
}

# ---- Preparing a release -----------------------------------------------------
# release_upload SIZE SHA256: the gzipped tar on fd 3 becomes releases/$SHA.
release_upload() {
  check_lock
  local size=$1 sum=$2 file="$APP_STATE/upload.tar.gz" got
  head -c "$size" <&3 >"$file"
  got=$(stat -c %s -- "$file")
  if [ "$got" != "$size" ] || [ "$(sha256sum <"$file" | cut -d' ' -f1)" != "$sum" ]; then
    rm -f -- "$file"
    report failed upload "received $got of $size bytes, or not the bytes that were sent"
    exit 0
  fi
  rm -f -- "$APP_STATE/complete/$SHA"
  # An earlier attempt's leftovers, then the new directory, as the app.
  if ! run_step 600 unpacking "${AS_APP[@]}" sh -c 'rm -rf -- "$1" && mkdir -m 755 -- "$1" && tar -xzf - -C "$1" --no-same-owner --no-same-permissions' _ "$RELEASES/$SHA" <"$file"; then
    rm -f -- "$file"
    report failed upload "$out"
    exit 0
  fi
  rm -f -- "$file"
  report done upload ""
}

# release_shared PATH...: links each shared path into the release. What the
# release brings for a path seeds shared/: whatever shared/ lacks of it is
# moved there (directories both have are merged), and nothing shared/ has
# already is replaced, so a first release fills `shared/storage` that an
# apply made with only `logs/` in it. A path neither has is a file when its
# name has a dot (.env), a directory otherwise.
release_shared() {
  check_lock
  if ! run_step 120 "linking shared paths" "${AS_APP[@]}" bash -c '
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
    for path in "$@"; do
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
        case ${path##*/} in
          *.*) : >"$in_shared" ;;
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

# release_commands STEP LIMIT COMMAND...: each COMMAND in the release, as
# the app, with bash; the first that fails ends the step with its output.
release_commands() {
  local step=$1 limit=$2
  shift 2
  app_commands "$step" "$limit" "$RELEASES/$SHA" "$@"
}

# app_commands STEP LIMIT DIR COMMAND...: the same in DIR.
app_commands() {
  check_lock
  local step=$1 limit=$2 dir=$3 command
  shift 3
  for command in "$@"; do
    if ! run_step "$limit" "\`$command\`" "${AS_APP[@]}" bash -c 'cd -- "$1" && eval "$2"' _ "$dir" "$command"; then
      report failed "$step" "\$ $command"$'\n'"$out"
      exit 0
    fi
    report ran "$step" "$command"
  done
  report done "$step" ""
}

# release_complete: root's record that the release is whole.
release_complete() {
  check_lock
  : >"$APP_STATE/complete/$SHA"
  report done complete ""
}

# release_discard: a release that failed somewhere goes everywhere it is
# not live.
release_discard() {
  check_lock
  [ "$(as_app readlink -- "$CURRENT" 2>/dev/null)" = "releases/$SHA" ] && return 0
  rm -f -- "$APP_STATE/complete/$SHA"
  as_app rm -rf -- "$RELEASES/$SHA"
  report done discard ""
}

# ---- Going live --------------------------------------------------------------
# release_switch SHA: `current` names releases/SHA, atomically (a new link,
# renamed over the old one); then the app's workers restart. SHA `-` takes
# `current` away (the app had no release before).
release_switch() {
  check_lock
  local sha=$1
  if [ "$sha" = - ]; then
    as_app rm -f -- "$CURRENT"
  else
    [ -f "$APP_STATE/complete/$sha" ] && as_app test -d "$RELEASES/$sha" ||
      { report failed switch "release $sha is not complete on this server"; exit 0; }
    if ! run_step 30 "switching current" "${AS_APP[@]}" sh -c \
      'ln -sfn -- "releases/$2" "$1/.current.new" && mv -fT -- "$1/.current.new" "$1/current"' _ "$HOME_DIR" "$sha"; then
      report failed switch "$out"
      exit 0
    fi
  fi
  report done switch "$sha"
  if [ "$WORKERS" = 1 ]; then
    if run_step "$WORKER_LIMIT" "restarting the workers" supervisorctl restart "$APP:*"; then
      report done workers "$out"
    else
      report failed workers "$out"
    fi
  fi
}

# http_status: see src/http_status.sh, appended by Rust.

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

# ---- After: the log and pruning ------------------------------------------
# release_finish RESULT PREVIOUS DURATION_MS KEEP: a line in the release log,
# then releases beyond KEEP go: never the live one nor the previous good.
release_finish() {
  check_lock
  local result=$1 previous=$2 duration=$3 keep=$4
  printf '{"sha":"%s","time":"%s","trigger":"%s","result":"%s","duration_ms":%s,"who":"%s","previous":"%s"}\n' \
    "$SHA" "$(date -u +%FT%T.%3NZ)" "$TRIGGER" "$result" "$duration" "$WHO_JSON" "$previous" >>"$APP_STATE/release.log"
  release_prune "$keep"
  report done finish ""
}

release_prune() {
  local keep=$1 live sha good=() all=() seen=" "
  live=$(as_app readlink -- "$CURRENT" 2>/dev/null)
  live=${live##*/}
  # Releases that went live, newest first, from the log.
  if [ -f "$APP_STATE/release.log" ]; then
    while read -r sha; do
      [ -n "$sha" ] && [[ $seen != *" $sha "* ]] && { good+=("$sha"); seen+="$sha "; }
    done < <(tac -- "$APP_STATE/release.log" | sed -n 's/^{"sha":"\([0-9a-f]*\)".*"result":"\(live\|rollback\)".*/\1/p')
  fi
  local -A kept=()
  [ -n "$live" ] && kept[$live]=1
  local n=${#kept[@]}
  for sha in "${good[@]}"; do
    if [ -z "${kept[$sha]+set}" ] && [ "$n" -lt "$keep" ] && as_app test -d "$RELEASES/$sha"; then
      kept[$sha]=1
      n=$((n + 1))
    fi
  done
  # The previous good release stays whatever `keep` says.
  for sha in "${good[@]}"; do
    [ "$sha" != "$live" ] && { kept[$sha]=1; break; }
  done
  for sha in $(as_app ls -- "$RELEASES" 2>/dev/null); do
    [[ $sha =~ ^[0-9a-f]{40}$ ]] || continue
    [ -n "${kept[$sha]+set}" ] && continue
    rm -f -- "$APP_STATE/complete/$sha"
    as_app rm -rf -- "$RELEASES/$sha"
    report pruned "$sha" ""
  done
}

# ---- The environment file -------------------------------------------------
# env_pull: shared/.env, base64 in one report (its values never reach a
# log: only `reconciler env pull` prints them, on its stdout).
env_pull() {
  if ! as_app test -f "$SHARED/.env"; then
    report failed env "there is no $SHARED/.env"
    exit 0
  fi
  local content
  if ! content=$(as_app base64 -w0 -- "$SHARED/.env" 2>/dev/null); then
    report failed env "$APP cannot read $SHARED/.env"
    exit 0
  fi
  printf '@env\t-\t%s\n' "$content"
  report done env ""
}

# env_push SIZE SHA256: the file on fd 3 becomes shared/.env (0600, the
# app's), atomically: a new file renamed over the old one. Then
# `env_commands` run in `current`, when there is one.
env_push() {
  check_lock
  local size=$1 sum=$2 file="$APP_STATE/env.new" got
  (umask 077 && head -c "$size" <&3 >"$file")
  got=$(stat -c %s -- "$file")
  if [ "$got" != "$size" ] || [ "$(sha256sum <"$file" | cut -d' ' -f1)" != "$sum" ]; then
    rm -f -- "$file"
    report failed env "received $got of $size bytes, or not the bytes that were sent"
    exit 0
  fi
  if ! run_step 30 "writing .env" "${AS_APP[@]}" sh -c \
    'umask 077 && cat >"$1/.env.new" && chmod 600 -- "$1/.env.new" && mv -f -- "$1/.env.new" "$1/.env"' _ "$SHARED" <"$file"; then
    rm -f -- "$file"
    report failed env "$out"
    exit 0
  fi
  rm -f -- "$file"
  report done env ""
  as_app test -d "$CURRENT" || report skipped env_commands "no release is live"
}

# ---- Logs --------------------------------------------------------------------
# logs_read LINES [PATH=OFFSET...]: what the app's logs hold past OFFSET
# (a file not named: its last LINES lines; a file that shrank: from its
# start), at most 1 MiB a file a call. Laravel's and PHP's logs are in the
# app's home and read as the app; the others are in root's directory for
# the app, which the app cannot write. Reports `@size PATH SIZE` and
# `@chunk PATH BASE64`.
logs_read() {
  local lines=$1 spec path size offset
  shift
  local -A offsets=()
  for spec in "$@"; do offsets[${spec%=*}]=${spec##*=}; done
  {
    as_app find "$SHARED/storage/logs" -maxdepth 1 -type f -name '*.log' 2>/dev/null
    find "$LOG_DIR" -maxdepth 1 -type f -name '*.log' 2>/dev/null
  } | sort | while IFS= read -r path; do
    local -a reader=()
    [[ $path == "$SHARED"/* ]] && reader=("${AS_APP[@]}")
    size=$("${reader[@]}" stat -c %s -- "$path") || continue
    offset=${offsets[$path]:-}
    if [ -z "$offset" ]; then
      printf '@chunk\t%s\t%s\n' "$path" "$("${reader[@]}" tail -n "$lines" -- "$path" | base64 -w0)"
    else
      [ "$size" -lt "$offset" ] && offset=0
      size=$((offset + $("${reader[@]}" tail -c +$((offset + 1)) -- "$path" | head -c 1048576 | wc -c)))
      printf '@chunk\t%s\t%s\n' "$path" "$("${reader[@]}" tail -c +$((offset + 1)) -- "$path" | head -c $((size - offset)) | base64 -w0)"
    fi
    printf '@size\t%s\t%s\n' "$path" "$size"
  done
  report done logs ""
}

# release_list: what `reconciler releases` shows.
release_list() {
  ensure_state
  release_state
  local sha
  for sha in $(as_app ls -- "$RELEASES" 2>/dev/null); do
    [[ $sha =~ ^[0-9a-f]{40}$ ]] || continue
    report present "$sha" "$(as_app stat -c %Y -- "$RELEASES/$sha")"
  done
}
