# reconciler's apply, part 2 of 3 (after prelude.sh, before worker.sh):
# the steps that touch services: validators, reloads, supervisor updates
# and restarts, starts of services and programs, and the web check that
# follows a php-fpm reload.

# ---- Validation and reloads ----------------------------------------------
validate_one() {
  case $1 in
    nginx) run_step "$STEP_LIMIT" 'nginx -t' nginx -t ;;
    supervisor)
      # reread parses every program file; it starts and stops nothing.
      run_step "$STEP_LIMIT" 'supervisorctl reread' supervisorctl reread || return 1
      case $out in *ERROR*) return 1 ;; esac
      ;;
    php*-fpm) run_step "$STEP_LIMIT" "$2 -t" "$2" -t ;;
    *) out="no validation for $1"; return 1 ;;
  esac
}

reload_one() {
  local label=$1 limit=$2
  case $INIT in
    systemd) run_step "$limit" "systemctl reload $label" systemctl reload "$label" ;;
    *) run_step "$limit" "service $label reload" service "$label" reload ;;
  esac
}

# supervisor_update LIMIT APP...: `supervisorctl update` for the process
# groups of these apps (G_NAME, from the plan) that supervisord finds
# changed, new or gone (`reread`), and for no other: update stops and
# starts a changed group whole, so a worker whose program did not change
# keeps running and no one waits for its stop. The groups updated are in
# UPDATED, each one's app in UPDATED_APP. A group still stopping (an
# earlier update, perhaps of a killed apply, waits for its workers) is
# asked again until it is done or time is up.
supervisor_update() {
  local deadline=$((SECONDS + $1)) app i line name
  shift
  local -A wanted=()
  for app; do
    for i in "${!G_NAME[@]}"; do
      [ "${G_APP[$i]}" = "$app" ] && wanted[${G_NAME[$i]}]=$app
    done
  done
  UPDATED=() UPDATED_APP=()
  run_step "$STEP_LIMIT" 'supervisorctl reread' supervisorctl reread || return 1
  while IFS= read -r line; do
    case $line in *': changed' | *': available' | *': disappeared') ;; *) continue ;; esac
    name=${line%: *}
    [ -n "$name" ] || continue
    if [ -n "${wanted[$name]+set}" ]; then
      UPDATED+=("$name") UPDATED_APP+=("${wanted[$name]}")
      continue
    fi
    # A program of the app's that no file names any more, left running by
    # an update that failed (the plan no longer knows it): it goes too.
    for app; do
      case $line in "$app-"*': disappeared') UPDATED+=("$name") UPDATED_APP+=("$app") && break ;; esac
    done
  done <<<"$out"
  if [ ${#UPDATED[@]} = 0 ]; then
    out='no program changed'
    return 0
  fi
  while :; do
    if run_step "$((deadline - SECONDS > 1 ? deadline - SECONDS : 1))" 'supervisorctl update' \
      supervisorctl update "${UPDATED[@]}"; then
      case $out in *ERROR* | *Fault*) ;; *) return 0 ;; esac
    fi
    case $out in
      *STILL_RUNNING*) if [ $SECONDS -lt "$deadline" ]; then sleep 1; continue; fi ;;
    esac
    return 1
  done
}

# restart_groups LABEL LIMIT: `supervisorctl restart <group>:*` for the
# groups of this restart of workers (W_NAME), but those an update of this
# apply just restarted; they are in RESTARTED.
restart_groups() {
  local label=$1 limit=$2 i name updated args=()
  RESTARTED=()
  for i in "${!W_NAME[@]}"; do
    [ "${W_LABEL[$i]}" = "$label" ] || continue
    name=${W_NAME[$i]}
    for updated in "${UPDATED[@]}"; do [ "$updated" = "$name" ] && continue 2; done
    RESTARTED+=("$name") args+=("$name:*")
  done
  if [ ${#args[@]} = 0 ]; then
    out='each program was restarted by its update'
    return 0
  fi
  run_step "$limit" "supervisorctl restart ${args[*]}" supervisorctl restart "${args[@]}" || return 1
  case $out in *ERROR*) return 1 ;; esac
}

# start_service NAME: starts a system service that should run and does
# not, then waits up to 5 s for its init system to say it runs
# (service_running, src/remote/lib.sh). Its output is in $out.
start_service() {
  local name=$1 status tries
  case $INIT in
    systemd) capture start_clean systemctl start -- "$name" ;;
    *) capture start_clean service "$name" start ;;
  esac
  status=$?
  if [ $status != 0 ]; then
    [ $status = 124 ] && out="starting $name did not finish within ${STEP_LIMIT}s${out:+: $out}"
    return 1
  fi
  for ((tries = 0; tries < 50; tries++)); do
    service_running "$name" && return 0
    sleep 0.1
  done
  out="${out:+$out$'\n'}$name does not run after it was started"
  return 1
}

# start_clean COMMAND...: COMMAND, with a time limit, as a daemon should
# start: the signals this worker ignores back to their defaults, and none
# of its descriptors but stdout and stderr (a daemon would keep the host
# lock, fd 9, or the report, fd 5, open for as long as it runs).
start_clean() (
  trap - HUP TERM PIPE
  exec timeout -k 5 "$STEP_LIMIT" "$@" </dev/null 4>&- 5>&- 8>&- 9>&-
)

# start_program NAME STATE: starts a supervisor process that does not
# run, then asks supervisord whether it runs. supervisor counts a process
# in BACKOFF as started (it retries on its own and refuses `start`): that
# one is stopped first. NAME was checked by the facts' parser
# (facts::is_program_name): letters, digits, `_-.:` only.
start_program() {
  local name=$1 said line state tries
  if [ "$2" = BACKOFF ]; then
    run_step "$STEP_LIMIT" "supervisorctl stop $name" supervisorctl stop "$name"
  fi
  run_step "$STEP_LIMIT" "supervisorctl start $name" supervisorctl start "$name"
  said=$out
  # A process still on its way (a release's restart of the group may be
  # under way too) is given up to 10 s to get there.
  for ((tries = 0; tries < 10; tries++)); do
    line=$(timeout -k 2 10 supervisorctl status "$name" </dev/null 2>&1)
    read -r _ state _ <<<"$line"
    case $state in STARTING | STOPPING) sleep 1 ;; *) break ;; esac
  done
  out=$said
  [ "$state" = RUNNING ] && return 0
  out="${said:+$said$'\n'}$name is ${state:-unknown} after \`supervisorctl start\`"
  return 1
}

# programs_of APP: the groups of APP among UPDATED, one a line.
programs_of() {
  local i
  for i in "${!UPDATED[@]}"; do
    [ "${UPDATED_APP[$i]}" = "$1" ] && printf '%s\n' "${UPDATED[$i]}"
  done
  return 0
}

pend() { grep -qxF -- "$1" "$PENDING" 2>/dev/null || echo "$1" >>"$PENDING"; }
unpend() {
  [ -f "$PENDING" ] || return 0
  { grep -vxF -- "$1" "$PENDING" || true; } | replace_file "$PENDING"
}

# http_status: see src/remote/lib.sh.

# check_web WHAT: after php-fpm reloaded (or nginx or php-fpm started,
# WHAT says which), every web app answers (not 5xx) within 15 s, or the
# rolling reload across the cluster stops here.
check_web() {
  local i code tries
  for i in "${!H_DOMAIN[@]}"; do
    for ((tries = 0; tries < WEB_TRIES; tries++)); do
      http_status "${H_DOMAIN[$i]}" "${H_PATH[$i]}"
      code=$CODE
      [[ $code =~ ^[1-4][0-9][0-9]$ ]] && break
      sleep 0.1
    done
    if [[ $code =~ ^[1-4][0-9][0-9]$ ]]; then
      report answered "${H_DOMAIN[$i]}" "$code"
    else
      report unanswered "${H_DOMAIN[$i]}" "GET ${H_PATH[$i]} answered ${code:-nothing} for $((WEB_TRIES / 10)) s after $1"
    fi
  done
}
