# reconciler's apply, as shell functions over data; part 1 of 3 (then
# steps.sh, then worker.sh).
#
# The builder (src/apply/script.rs, src/remote) puts the layout's paths
# (STATE, MANIFEST, JOURNAL, ...) and the shared library first, then this
# file and the other two, then data lines: calls of the plan_* functions
# below, which only fill arrays, then `apply_main`. Reports are records
# (src/remote); see apply/report.rs.
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
