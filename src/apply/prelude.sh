# reconciler's apply, as shell functions over data.
#
# The builder (src/apply/script.rs, src/remote) puts the layout's paths
# (STATE, MANIFEST, JOURNAL, ...) and the shared library first, then this
# file, then data lines: calls of the plan_* functions below, which only
# fill arrays, then `apply_main`. Reports are records (src/remote); see
# apply/report.rs.
#
# What an apply promises, and how:
# - Nothing half-done. The work runs in a worker detached from the SSH
#   session (its own session, signals ignored), so a client that dies or a
#   runner that is killed does not stop it: it validates and reloads, or
#   restores. A worker killed with SIGKILL leaves $JOURNAL (its backups
#   and every path it staged); the next plan shows it and the next apply
#   adopts it, validating those files too, or restoring them.
# - One apply at a time. The worker holds the host lock ($LOCK, flock); a
#   dead holder's lock is released by the kernel. The plan was made without
#   the lock, so before touching anything every file is checked to be what
#   the plan saw: if another apply (or a person) changed it, nothing is
#   done and the report says which files changed.
# - Root never follows a path an app can write. Directories in an app's
#   home are created and chmod-ed as the app's user; a chown there walks
#   the path without following links. Config files live in root's places.
# - Every external step has a time limit, and a step that hangs or fails is
#   reported with its output.
# ---- The plan, as data -------------------------------------------------
HOLDER=unknown        # who applies
LOG_FIELDS='"holder":"unknown"'  # JSON members of the apply log known before it runs, from serde
LOCK_WAIT=0           # seconds to wait for the host lock
INIT=service          # service or systemd
REPAIR=0              # adopt an interrupted apply's journal
EXPECT_MANIFEST=-     # sha256 of the manifest the plan saw; - for none
EXPECT_GENERATION=0   # applies the host had seen when the plan was made
BUSY=                 # the apply that was running when the plan was made
WEB_PORT=80           # where this host's nginx answers the web checks
WEB_TRIES=150         # web checks a tenth of a second apart: 15 s
STEP_LIMIT=60         # seconds for a validation or a user change
U_NAME=() U_HOME=()                       # users to create
J_USER=() J_GROUP=()                      # users joining groups
D_PATH=() D_OWNER=() D_GROUP=() D_MODE=() D_APP=()  # directories
F_PATH=() F_OWNER=() F_GROUP=() F_MODE=() F_EXPECT=() F_DATA=()  # files to write
R_PATH=() R_EXPECT=()                     # files to remove
V_NAME=() V_ARG=()                        # validations: nginx, php8.2-fpm BINARY, supervisor
L_LABEL=() L_WHEN=() L_LIMIT=() L_JSON=() # reloads: label, now|window, seconds, label as JSON
G_APP=() G_NAME=()                        # supervisor process groups an app's update may touch
W_LABEL=() W_NAME=()                      # workers:APP restarts: the process groups each restarts
UPDATED=() UPDATED_APP=()                 # (run time) the groups supervisor_update updated
H_DOMAIN=() H_PATH=()                     # what must answer after php-fpm reloads or starts
S_NAME=() S_JSON=()                       # services to start (nginx, php8.2-fpm, supervisor, cron), as JSON
P_NAME=() P_STATE=() P_JSON=()            # supervisor processes to start, the state the plan saw, `program NAME` as JSON
M_PATHS=()                                # the manifest after this apply
# Everything above, handed to the detached worker with the header's
# variables (HEADER_VARS).
PLAN_VARS=(HOLDER LOG_FIELDS INIT REPAIR STEP_LIMIT WEB_PORT WEB_TRIES U_NAME U_HOME J_USER J_GROUP
  D_PATH D_OWNER D_GROUP D_MODE D_APP F_PATH F_OWNER F_GROUP F_MODE F_EXPECT F_DATA R_PATH R_EXPECT
  V_NAME V_ARG L_LABEL L_WHEN L_LIMIT L_JSON G_APP G_NAME W_LABEL W_NAME M_PATHS H_DOMAIN H_PATH S_NAME S_JSON P_NAME P_STATE P_JSON)

plan_holder() { HOLDER=$1; LOG_FIELDS=$2; }
plan_lock_wait() { LOCK_WAIT=$1; }
plan_init() { INIT=$1; }
plan_repair() { REPAIR=1; }
plan_manifest_expect() { EXPECT_MANIFEST=$1; }
plan_generation_expect() { EXPECT_GENERATION=$1; }
plan_busy() { BUSY=$1; }
plan_user() { U_NAME+=("$1"); U_HOME+=("$2"); }
plan_join() { J_USER+=("$1"); J_GROUP+=("$2"); }
plan_dir() { D_PATH+=("$1"); D_OWNER+=("$2"); D_GROUP+=("$3"); D_MODE+=("$4"); D_APP+=("$5"); }
plan_file() { F_PATH+=("$1"); F_OWNER+=("$2"); F_GROUP+=("$3"); F_MODE+=("$4"); F_EXPECT+=("$5"); F_DATA+=("$6"); }
plan_remove() { R_PATH+=("$1"); R_EXPECT+=("$2"); }
plan_validate() { V_NAME+=("$1"); V_ARG+=("${2:-}"); }
plan_reload() { L_LABEL+=("$1"); L_WHEN+=("$2"); L_LIMIT+=("$3"); L_JSON+=("$4"); }
plan_supervisor_groups() {
  local app=$1 name
  shift
  for name; do G_APP+=("$app") G_NAME+=("$name"); done
}
plan_restart_groups() {
  local label=$1 name
  shift
  for name; do W_LABEL+=("$label") W_NAME+=("$name"); done
}
plan_manifest() { M_PATHS+=("$@"); }
plan_web_check() { H_DOMAIN+=("$1"); H_PATH+=("$2"); }
plan_start() { S_NAME+=("$1"); S_JSON+=("$2"); }
plan_start_program() { P_NAME+=("$1"); P_STATE+=("$2"); P_JSON+=("$3"); }

# ---- Reports -------------------------------------------------------------
# record, report and run_step: see src/remote/lib.sh.

# capture COMMAND...: runs COMMAND in this shell (so what it records stays
# recorded) with its output in $out.
capture() {
  local status
  "$@" >"$CAPTURE" 2>&1
  status=$?
  out=$(tail -c "$OUTPUT_LIMIT" -- "$CAPTURE")
  return $status
}

# ---- Safe paths in app homes --------------------------------------------
# as_app USER COMMAND...: see src/remote/lib.sh.

# enter_nofollow DIR: cd into DIR one component at a time, refusing
# symlinks, then checks where it arrived (a component swapped for a link
# between the check and the cd is caught there).
enter_nofollow() {
  local dir=$1 part
  local -a parts
  cd / || return 1
  IFS=/ read -ra parts <<<"${dir#/}"
  for part in "${parts[@]}"; do
    [ -n "$part" ] || continue
    if [ -L "$part" ]; then
      echo "$dir: $part is a symbolic link" >&2
      return 1
    fi
    cd -P -- "$part" || return 1
  done
  [ "$(pwd -P)" = "$dir" ] || { echo "$dir moved while entering it" >&2; return 1; }
}

# chown_nofollow PATH OWNER:GROUP: chown of the last component only, in a
# parent entered without following links.
chown_nofollow() (
  enter_nofollow "$(dirname -- "$1")" && chown -h -- "$2" "$(basename -- "$1")"
)

# dir_root PATH OWNER GROUP MODE: a directory in root's places (/home/<app>,
# /var/log/reconciler/<app>): the parent is root's, so only the path itself
# needs checking.
dir_root() {
  if [ -L "$1" ]; then
    echo "$1 is a symbolic link" >&2
    return 1
  fi
  mkdir -p -- "$1" && chown -h -- "$2:$3" "$1" && chmod -- "$4" "$1"
}

# dir_in_home APP PATH OWNER GROUP MODE: a directory inside an app's home.
dir_in_home() {
  local app=$1 path=$2 owner=$3 group=$4 mode=$5 now
  if [ -e "$path" ] || [ -L "$path" ]; then
    now=$(stat -c '%U:%G' -- "$path") || return 1
    if [ "$now" != "$owner:$group" ]; then
      chown_nofollow "$path" "$owner:$group" || return 1
    fi
  fi
  as_app "$app" mkdir -p -m "$mode" -- "$path" && as_app "$app" chmod -- "$mode" "$path"
}

# ---- Staging with backups, journaled ---------------------------------------
# (staged, is_staged and backup are the worker's; see apply_work.)

journal_add() { printf '%s %s\n' "$1" "$2" >>"$JOURNAL"; }

# keep PATH: a copy of what stands at PATH before it first changes.
keep() {
  [ -n "${is_staged[$1]+set}" ] && return 0
  if [ -e "$1" ] || [ -L "$1" ]; then
    mkdir -p -- "$backup$(dirname -- "$1")" && cp -a -- "$1" "$backup$1" || return 1
  fi
  journal_add staged "$1" || return 1
  staged+=("$1")
  is_staged[$1]=1
}

# Puts back what stood at each staged path before this apply (and before
# the interrupted one it adopted).
restore() {
  local i path
  for ((i = ${#staged[@]} - 1; i >= 0; i--)); do
    path=${staged[$i]}
    if [ -e "$backup$path" ] || [ -L "$backup$path" ]; then
      mv -f -- "$backup$path" "$path"
    else
      rm -f -- "$path"
    fi
  done
}

# The journal goes first, then the backups: a journal must never point at
# backups that are gone.
finish() {
  rm -f -- "$JOURNAL"
  [ -n "$backup" ] && rm -rf -- "$backup"
}

fail() {
  restore
  log_line failed
  finish
  report failed "$1" "${2:-}"
  exit 0
}

# write_file PATH OWNER GROUP MODE BASE64: a temporary file next to PATH,
# then a rename, so PATH is never half-written.
write_file() {
  local tmp
  tmp=$(mktemp "$(dirname -- "$1")/.reconciler.XXXXXX") || return 1
  if printf '%s' "$5" | base64 -d >"$tmp" && chown -- "$2:$3" "$tmp" && chmod -- "$4" "$tmp" &&
    keep "$1" && mv -f -- "$tmp" "$1"; then
    return 0
  fi
  rm -f -- "$tmp"
  return 1
}

remove_file() { keep "$1" && rm -f -- "$1"; }

# What stands at each path now: its sha256, `-` when nothing does, `!` for
# anything but a regular file.
sums_of() {
  local path line
  declare -gA SUM=()
  local -a files=()
  for path in "$@"; do
    if [ -L "$path" ] || { [ -e "$path" ] && [ ! -f "$path" ]; }; then
      SUM[$path]='!'
    elif [ -e "$path" ]; then
      files+=("$path")
    else
      SUM[$path]=-
    fi
  done
  [ ${#files[@]} -gt 0 ] || return 0
  while IFS= read -r line; do
    SUM[${line#*  }]=${line%% *}
  done < <(sha256sum -- "${files[@]}" 2>/dev/null)
}

# Every file as the plan saw it, and no apply since, or nothing is done.
check_expectations() {
  local i changed=() generation=
  [ -r "$GENERATION" ] && read -r generation <"$GENERATION"
  [[ $generation =~ ^[0-9]{1,18}$ ]] || generation=0
  if [ -n "$BUSY" ]; then
    # Its files may have been half-written when the plan read them.
    changed+=("an apply was running when the plan was made: $BUSY")
  elif [ "$generation" != "$EXPECT_GENERATION" ]; then
    changed+=("another apply ran since the plan was made")
  fi
  sums_of "${F_PATH[@]}" "${R_PATH[@]}" "$MANIFEST"
  for i in "${!F_PATH[@]}"; do
    [ "${SUM[${F_PATH[$i]}]:-}" = "${F_EXPECT[$i]}" ] || changed+=("${F_PATH[$i]}")
  done
  for i in "${!R_PATH[@]}"; do
    [ "${SUM[${R_PATH[$i]}]:-}" = "${R_EXPECT[$i]}" ] || changed+=("${R_PATH[$i]}")
  done
  [ "${SUM[$MANIFEST]:-}" = "$EXPECT_MANIFEST" ] || changed+=("$MANIFEST")
  if [ ${#changed[@]} -gt 0 ]; then
    report stale - "$(printf '%s\n' "${changed[@]}")"
    return 1
  fi
  printf '%s\n' $((generation + 1)) | replace_file "$GENERATION"
}

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
