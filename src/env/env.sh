# An app's environment file, shared/.env, after app.sh.

# env_pull: shared/.env, base64 in one record (its values never reach a
# log: only `reconciler env pull` prints them, on its stdout). Read as the
# app, and never more than $ENV_LIMIT bytes: a larger file (a sparse one
# the app made, say) is refused by its size, unread.
env_pull() {
  local size content
  if ! as_app "$APP" test -f "$SHARED/.env"; then
    report failed env "there is no $SHARED/.env"
    exit 0
  fi
  if ! size=$(as_app "$APP" stat -L -c %s -- "$SHARED/.env" 2>/dev/null); then
    report failed env "$APP cannot read $SHARED/.env"
    exit 0
  fi
  if [ "$size" -gt "$ENV_LIMIT" ]; then
    report failed env "$SHARED/.env is $size bytes, more than an environment file may be ($ENV_LIMIT)"
    exit 0
  fi
  if ! content=$(as_app "$APP" head -c "$ENV_LIMIT" -- "$SHARED/.env" | base64 -w0; exit "${PIPESTATUS[0]}"); then
    report failed env "$APP cannot read $SHARED/.env"
    exit 0
  fi
  record env "$content"
  report done env ""
}

# env_push SIZE SHA256: the file on fd 3 becomes shared/.env (0600, the
# app's), whole: written as the app beside it, renamed over it. Then
# `env_commands` run in `current` (a separate step), when one is live.
env_push() {
  check_lock
  local size=$1 sum=$2 file="$APP_STATE/env.new" got APP_ARGV
  (umask 077 && head -c "$size" <&3 >"$file")
  got=$(stat -c %s -- "$file")
  if [ "$got" != "$size" ] || [ "$(sha256sum <"$file" | cut -d' ' -f1)" != "$sum" ]; then
    rm -f -- "$file"
    report failed env "received $got of $size bytes, or not the bytes that were sent"
    exit 0
  fi
  app_argv "$APP"
  if ! run_step 30 "writing .env" "${APP_ARGV[@]}" bash -c "$(declare -f replace_file)"'
    replace_file "$1/.env"' _ "$SHARED" <"$file"; then
    rm -f -- "$file"
    report failed env "$out"
    exit 0
  fi
  rm -f -- "$file"
  report done env ""
  as_app "$APP" test -d "$CURRENT" || report skipped env_commands "no release is live"
}

# env_restart FPM: what read the old .env reads the new one. The app's
# workers restart, as a release restarts them (restart_programs, app.sh);
# FPM (`php<v>-fpm`, given on a web server) reloads gracefully, which
# empties its OPcache: with opcache.validate_timestamps off, a config
# `env_commands` compiled (Laravel's config:cache) is otherwise served
# as OPcache compiled it before, indefinitely.
env_restart() {
  check_lock
  local fpm=$1
  if [ "$WORKERS" = 1 ]; then
    restart_programs || { report failed workers "$out"; exit 0; }
    report restarted workers "${PROGRAMS[*]}"
  fi
  if [ -n "$fpm" ]; then
    if [ -d /run/systemd/system ]; then
      run_step 60 "systemctl reload $fpm" systemctl reload "$fpm"
    else
      run_step 60 "service $fpm reload" service "$fpm" reload
    fi || { report failed fpm "$out"; exit 0; }
    report reloaded fpm "$fpm"
  fi
  report done restart ""
}
