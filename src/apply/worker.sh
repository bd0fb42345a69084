# reconciler's apply, part 3 of 3 (after prelude.sh and steps.sh): the
# apply log, the detached worker that does the work, and the foreground
# that takes the lock, checks, detaches the worker and waits for it.

# ---- The apply log: one JSON line per apply ---------------------------------
# Every string in it was serialized by serde in Rust (LOG_FIELDS: who, the
# commit, the files; L_JSON: each reload's label; S_JSON and P_JSON: what
# a start is about); the shell adds times from `date` and one word of its
# own: applied, invalid or failed.
json_join() { local IFS=,; printf '%s' "$*"; }
log_line() {
  printf '{"started":"%s","time":"%s","result":"%s",%s,"reloaded":[%s],"deferred":[%s],"started_services":[%s],"not_started":[%s]}\n' \
    "$STARTED" "$(date -u +%FT%T.%3NZ)" "$1" "$LOG_FIELDS" \
    "$(json_join "${LOG_RELOADED[@]}")" "$(json_join "${LOG_DEFERRED[@]}")" \
    "$(json_join "${LOG_STARTED[@]}")" "$(json_join "${LOG_NOT_STARTED[@]}")" >>"$APPLY_LOG"
}

# ---- The worker ------------------------------------------------------------
apply_work() {
  trap '' HUP INT TERM PIPE
  rm -f -- "${BASH_SOURCE[0]}"
  local i label name groups=() group_indexes=() worker_indexes=()
  # The worker's own state: it starts from the plan's data and functions
  # only, so everything else is set here.
  STARTED=$(date -u +%FT%T.%3NZ)
  # The lock is this worker's now (its foreground may end first).
  hold_record "$LOCK_HOLDER" - "$HOLDER" apply
  out=
  staged=()
  declare -gA is_staged=()
  backup=
  LOG_RELOADED=()
  LOG_DEFERRED=()
  LOG_STARTED=()
  LOG_NOT_STARTED=()
  CAPTURE=$(mktemp "$RUN_DIR/capture.XXXXXX") || { report failed "create a temporary file" ""; exit 0; }
  trap 'rm -f -- "$CAPTURE"' EXIT

  # Adopt an interrupted apply: its staged paths and backups are ours now.
  if [ "$REPAIR" = 1 ] && [ -f "$JOURNAL" ]; then
    local kind value
    while read -r kind value; do
      case $kind in
        backup) [[ $value == "$BACKUPS"/apply.* ]] && backup=$value ;;
        staged) staged+=("$value"); is_staged[$value]=1 ;;
      esac
    done <"$JOURNAL"
  fi
  if [ -z "$backup" ]; then
    backup=$(mktemp -d "$BACKUPS/apply.XXXXXX") || { report failed "create a backup directory" ""; exit 0; }
  fi
  {
    echo "started $STARTED"
    echo "holder $HOLDER"
    echo "backup $backup"
    for i in "${staged[@]}"; do echo "staged $i"; done
  } | replace_file "$JOURNAL" || { report failed "write the journal" ""; exit 0; }

  # Users, groups and directories: created, never removed.
  for i in "${!U_NAME[@]}"; do
    if ! id -u -- "${U_NAME[$i]}" >/dev/null 2>&1; then
      run_step "$STEP_LIMIT" "useradd ${U_NAME[$i]}" useradd --system --user-group --create-home \
        --home-dir "${U_HOME[$i]}" --shell /usr/sbin/nologin -- "${U_NAME[$i]}" ||
        fail "create user ${U_NAME[$i]}" "$out"
      grep -qxF -- "${U_NAME[$i]}" "$USERS_FILE" 2>/dev/null || echo "${U_NAME[$i]}" >>"$USERS_FILE"
    fi
  done
  for i in "${!J_USER[@]}"; do
    run_step "$STEP_LIMIT" "usermod ${J_USER[$i]}" usermod -a -G "${J_GROUP[$i]}" -- "${J_USER[$i]}" ||
      fail "add ${J_USER[$i]} to group ${J_GROUP[$i]}" "$out"
  done
  for i in "${!D_PATH[@]}"; do
    if [ -n "${D_APP[$i]}" ]; then
      capture dir_in_home "${D_APP[$i]}" "${D_PATH[$i]}" "${D_OWNER[$i]}" "${D_GROUP[$i]}" "${D_MODE[$i]}"
    else
      capture dir_root "${D_PATH[$i]}" "${D_OWNER[$i]}" "${D_GROUP[$i]}" "${D_MODE[$i]}"
    fi || fail "create directory ${D_PATH[$i]}" "$out"
  done

  # Files: each staged with a backup, recorded in the journal first.
  for i in "${!F_PATH[@]}"; do
    capture write_file "${F_PATH[$i]}" "${F_OWNER[$i]}" "${F_GROUP[$i]}" "${F_MODE[$i]}" "${F_DATA[$i]}" ||
      fail "write ${F_PATH[$i]}" "$out"
  done
  for i in "${!R_PATH[@]}"; do
    capture remove_file "${R_PATH[$i]}" || fail "remove ${R_PATH[$i]}" "$out"
  done

  # Validate every service whose files changed (or that the interrupted
  # apply touched): all of them, then decide.
  local invalid=0 supervisor_checked=0
  for i in "${!V_NAME[@]}"; do
    if validate_one "${V_NAME[$i]}" "${V_ARG[$i]}"; then
      report valid "${V_NAME[$i]}" "$out"
    else
      invalid=1
      report invalid "${V_NAME[$i]}" "$out"
    fi
    [ "${V_NAME[$i]}" = supervisor ] && supervisor_checked=1
  done
  if [ $invalid = 1 ]; then
    restore
    # Forget the configuration reread just parsed.
    [ $supervisor_checked = 1 ] && timeout -k 5 "$STEP_LIMIT" supervisorctl reread >/dev/null 2>&1
    log_line invalid
    finish
    report restored - ''
    exit 0
  fi

  # Valid: the new files stay.
  if [ ${#M_PATHS[@]} -gt 0 ]; then printf '%s\n' "${M_PATHS[@]}"; fi | replace_file "$MANIFEST" ||
    fail 'write the manifest' ''

  # Services that should run and do not: started, then asked whether
  # they run. A service started here read its configuration as it
  # started: its reload is moot, and no longer pending.
  local -A started=()
  local web_started=
  for i in "${!S_NAME[@]}"; do
    if start_service "${S_NAME[$i]}"; then
      started[${S_NAME[$i]}]=1
      case ${S_NAME[$i]} in nginx | php*-fpm) web_started="${S_NAME[$i]} started" ;; esac
      LOG_STARTED+=("${S_JSON[$i]}")
      report started "${S_NAME[$i]}" "$out"
    else
      LOG_NOT_STARTED+=("${S_JSON[$i]}")
      report start-failed "${S_NAME[$i]}" "$out"
    fi
  done

  # Reloads: at most one per service; the apps' supervisor programs in one
  # update.
  for i in "${!L_LABEL[@]}"; do
    label=${L_LABEL[$i]}
    if [ -n "${started[$label]+set}" ]; then
      unpend "$label"
      continue
    fi
    case $label in
      supervisor:*)
        groups+=("${label#supervisor:}")
        group_indexes+=("$i")
        ;;
      workers:*) worker_indexes+=("$i") ;;
      *)
        if [ "${L_WHEN[$i]}" = window ]; then
          pend "$label"
          LOG_DEFERRED+=("${L_JSON[$i]}")
          report deferred "$label" ''
        elif reload_one "$label" "${L_LIMIT[$i]}"; then
          unpend "$label"
          LOG_RELOADED+=("${L_JSON[$i]}")
          report reloaded "$label" "$out"
        else
          report reload-failed "$label" "$out"
        fi
        ;;
    esac
  done
  if [ ${#groups[@]} -gt 0 ]; then
    local limit=$STEP_LIMIT
    for i in "${!L_LABEL[@]}"; do
      case ${L_LABEL[$i]} in supervisor:*) [ "${L_LIMIT[$i]}" -gt "$limit" ] && limit=${L_LIMIT[$i]} ;; esac
    done
    if supervisor_update "$limit" "${groups[@]}"; then
      for i in "${group_indexes[@]}"; do
        label=${L_LABEL[$i]}
        unpend "$label"
        LOG_RELOADED+=("${L_JSON[$i]}")
        report reloaded "$label" "$out"
        report programs "$label" "$(programs_of "${label#supervisor:}")"
      done
    else
      for i in "${group_indexes[@]}"; do report reload-failed "${L_LABEL[$i]}" "$out"; done
    fi
  fi
  # Workers that must read a changed CLI php.ini again. A restart that
  # fails stays pending: the next plan shows it again.
  for i in "${worker_indexes[@]}"; do
    label=${L_LABEL[$i]}
    if restart_groups "$label" "${L_LIMIT[$i]}"; then
      unpend "$label"
      LOG_RELOADED+=("${L_JSON[$i]}")
      report reloaded "$label" "$out"
      report programs "$label" "$(for name in "${RESTARTED[@]}"; do echo "$name"; done)"
    else
      pend "$label"
      report reload-failed "$label" "$out"
    fi
  done
  # Worker processes that should run and do not (their group's update,
  # if any, is done).
  for i in "${!P_NAME[@]}"; do
    if start_program "${P_NAME[$i]}" "${P_STATE[$i]}"; then
      LOG_STARTED+=("${P_JSON[$i]}")
      report started "program ${P_NAME[$i]}" "$out"
    else
      LOG_NOT_STARTED+=("${P_JSON[$i]}")
      report start-failed "program ${P_NAME[$i]}" "$out"
    fi
  done
  case " ${LOG_RELOADED[*]} " in
    *'"php'*'-fpm" '*) check_web "php-fpm reloaded" ;;
    *) [ -n "$web_started" ] && check_web "$web_started" ;;
  esac
  log_line applied
  finish
  report done - ''
}

# ---- The foreground: lock, check, detach, wait --------------------------------
# lock_holder and hold_record: see src/remote/lib.sh.

# heartbeat PID: a line a second while PID waits; once nobody reads them
# (the client is gone), PID is ended: waiting for the lock or for the
# worker is then pointless, and the SSH connection can close. The worker,
# in its own session, goes on.
heartbeat() {
  trap '' PIPE
  # The sleep must not hold the output open: when the heartbeat is killed
  # the session ends at once, not when its last sleep would have.
  while sleep 1 </dev/null >/dev/null 2>&1 && kill -0 "$1" 2>/dev/null; do
    record alive 2>/dev/null || { kill -TERM "$1" 2>/dev/null; exit 0; }
  done
}

apply_main() {
  if [ -n "${RECONCILER_WORKER:-}" ]; then
    apply_work
    return
  fi
  mkdir -p -- "$STATE" "$RUN_DIR" "$BACKUPS" && chmod 700 -- "$STATE" "$RUN_DIR" "$BACKUPS" ||
    { report failed "create $STATE" ""; return 0; }
  heartbeat $$ &
  local beating=$!
  # Waited for here, not by `flock -w`: a killed shell stops waiting.
  exec 9>>"$LOCK"
  local tries=$((LOCK_WAIT * 5))
  until flock -n 9; do
    if [ $tries -le 0 ]; then
      kill "$beating" 2>/dev/null
      report locked - "$(lock_holder "$LOCK_HOLDER")"
      return 0
    fi
    tries=$((tries - 1))
    sleep 0.2
  done
  hold_record "$LOCK_HOLDER" - "$HOLDER" apply
  check_expectations || { kill "$beating" 2>/dev/null; return 0; }
  # Reports of workers whose client went away, kept a day for a person.
  find "$RUN_DIR" -maxdepth 1 -type f -mmin +1440 -delete 2>/dev/null

  local worker status
  worker=$(mktemp "$RUN_DIR/apply.XXXXXX") || { report failed "create a worker script" ""; return 0; }
  {
    declare -p "${HEADER_VARS[@]}" "${PLAN_VARS[@]}"
    declare -f
    echo 'eval "$PREAMBLE"'
    echo apply_work
  } >"$worker"
  # Its own session: the end of the SSH session signals nothing to it. It
  # inherits the lock (fd 9) and keeps it until it ends. Its records (fd 5)
  # go to a file of their own, whatever else it prints to another.
  setsid -w bash "$worker" 5>"$worker.report" >"$worker.log" 2>&1 </dev/null &
  wait $!
  status=$?
  kill "$beating" 2>/dev/null
  wait "$beating" 2>/dev/null
  cat -- "$worker.report" >&5
  rm -f -- "$worker.report" "$worker.log"
  [ $status = 0 ] || report failed "finish the apply (the worker exited with $status)" ""
  return 0
}
