# reconciler's work on one app's servers: the app lock and what the
# server has of the app. The builder (src/app/mod.rs) puts the header (APP,
# HOME_DIR, RELEASES, SHARED, CURRENT, APP_STATE, APP_PATH, TOKEN, WHO,
# REASON, ...) and the shared library first, then this file, then the
# caller's own functions (release.sh, env.sh, logs.sh), then one call.
#
# What every step promises:
# - Root never follows a path the app can write. Everything in the app's
#   home runs as the app's user (as_app); root keeps its records in
#   $APP_STATE, which is root's alone.
# - One release, rollback or `env push` of an app at a time: `app_lock`
#   holds $APP_STATE/lock (flock) until the client lets go or dies; its
#   record names who. Every step under the lock checks first that the lock
#   is still held with this client's token.

# ---- The app lock ----------------------------------------------------------
# Whether this client still holds the lock: the record names its token and
# the lock is taken.
lock_is_ours() {
  [ "$(lock_token "$APP_STATE/lock.holder")" = "$TOKEN" ] && ! flock -n "$APP_STATE/lock" true
}

check_lock() {
  lock_is_ours || { report failed lock "the app lock is not held by this client any more"; exit 0; }
}

ensure_state() {
  mkdir -p -- "$APP_STATE/complete" && chmod 700 -- "$APP_STATE" ||
    { report failed lock "cannot create $APP_STATE"; exit 0; }
}

# app_lock: takes the app lock and holds it until fd 3 ends (the client let
# go or died); reports what the server has, then `held`.
app_lock() {
  ensure_state
  exec 9>>"$APP_STATE/lock"
  if ! flock -n 9; then
    report busy "$APP" "$(lock_holder "$APP_STATE/lock.holder")"
    exit 0
  fi
  hold_record "$APP_STATE/lock.holder" "$TOKEN" "$WHO" "$REASON"
  app_state
  record held
  # The lock is this shell's fd 9; `cat` waits for the end of fd 3.
  cat <&3 >/dev/null 9>&-
  rm -f -- "$APP_STATE/lock.holder"
}

# force_unlock: ends whatever holds the app lock.
force_unlock() {
  ensure_state
  local holder pid
  if flock -n "$APP_STATE/lock" true; then
    report unlocked "$APP" ""
    report done unlock ""
    return
  fi
  holder=$(lock_holder "$APP_STATE/lock.holder")
  IFS=$'\t' read -r _ _ _ _ pid <"$APP_STATE/lock.holder" 2>/dev/null
  if [[ ${pid:-} =~ ^[0-9]+$ ]]; then
    pkill -KILL -P "$pid" 2>/dev/null
    kill -KILL "$pid" 2>/dev/null
  fi
  sleep 0.2
  if flock -n "$APP_STATE/lock" true; then
    rm -f -- "$APP_STATE/lock.holder"
    report unlocked "$APP" "$holder"
    report done unlock ""
  else
    report failed unlock "the lock is still held by $(fuser "$APP_STATE/lock" 2>&1)"
  fi
}

# ---- What the server has -------------------------------------------------
# app_state: where `current` points (as the app wrote it: the client
# judges it), or what stands there when it is no link (find's %y letter: a
# directory of an adopted app, which no release replaces), the releases
# root recorded complete (and, for `release_layout: ab`, which release
# each side holds: `side a|b SHA TIME`), the release log's last 200 lines, and the record
# of a release that switched and did not finish.
app_state() {
  local live sha kind time
  live=$(as_app "$APP" readlink -- "$CURRENT" 2>/dev/null) || live=
  record live "$live"
  if [ -z "$live" ]; then
    kind=$(as_app "$APP" find -P "$CURRENT" -maxdepth 0 -printf '%y' 2>/dev/null) || kind=
    [ -n "$kind" ] && [ "$kind" != l ] && record current-kind "$kind"
  fi
  for sha in $(ls -- "$APP_STATE/complete" 2>/dev/null); do
    [[ $sha =~ ^[0-9a-f]{40}$ ]] || continue
    as_app "$APP" test -d "$RELEASES/$sha" && record complete "$sha"
  done
  for kind in a b; do
    sha=$(head -c 41 -- "$APP_STATE/side-$kind" 2>/dev/null) || continue
    [[ $sha =~ ^[0-9a-f]{40}$ ]] || continue
    time=$(as_app "$APP" find -P "$HOME_DIR/$kind" -maxdepth 0 -type d -printf '%T@' 2>/dev/null) &&
      [ -n "$time" ] && record side "$kind" "$sha" "$time"
  done
  [ -f "$APP_STATE/release.log" ] && record log "$(tail -n 200 -- "$APP_STATE/release.log")"
  [ -f "$APP_STATE/in-flight" ] && record in-flight "$(head -c 4096 -- "$APP_STATE/in-flight")"
  record done state
}

# ---- Commands in a release -------------------------------------------------
# app_commands STEP LIMIT DIR COMMAND...: each COMMAND in DIR as the app,
# with bash and the app's PHP first in PATH; the first that fails ends the
# step with its output.
app_commands() {
  check_lock
  local step=$1 limit=$2 dir=$3 command APP_ARGV
  shift 3
  app_argv "$APP"
  for command in "$@"; do
    if ! run_step "$limit" "\`$command\`" "${APP_ARGV[@]}" bash -c 'cd -- "$1" && eval "$2"' _ "$dir" "$command"; then
      report failed "$step" "\$ $command"$'\n'"$out"
      exit 0
    fi
    report ran "$step" "$command"
  done
  report done "$step" ""
}

# ---- The app's workers -----------------------------------------------------
# app_programs: the app's supervisor process groups as its program file
# ($SUPERVISOR_CONF, root's) names them: each `[program:<name>]` is a group
# of its own; a file of an earlier reconciler has one `[group:<app>]`. In
# PROGRAMS.
app_programs() {
  local name section
  PROGRAMS=()
  for section in group program; do
    while IFS= read -r name; do PROGRAMS+=("$name"); done < <(
      sed -n "s/^\[$section:\([A-Za-z0-9_.-]*\)\]\$/\1/p" "$SUPERVISOR_CONF" 2>/dev/null
    )
    [ ${#PROGRAMS[@]} -gt 0 ] && break
  done
  return 0
}

# restart_programs: `supervisorctl restart <group>:*` for each of PROGRAMS
# (app_programs), each stopping within its stop_wait ($WORKER_LIMIT in
# all); its output in $out.
restart_programs() {
  local name groups=()
  app_programs
  for name in "${PROGRAMS[@]}"; do groups+=("$name:*"); done
  if [ ${#groups[@]} = 0 ]; then
    out="$SUPERVISOR_CONF names no program: apply the definitions first"
    return 1
  fi
  run_step "$WORKER_LIMIT" "restarting the workers" supervisorctl restart "${groups[@]}" || return 1
  case $out in *ERROR*) return 1 ;; esac
}
