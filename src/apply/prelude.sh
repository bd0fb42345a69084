# reconciler's apply: stage every change with a backup, validate, then
# reload, or restore the backups and reload nothing. Reports are lines
# `@kind<TAB>name<TAB>base64(output)`; see apply/report.rs.
set -u
export LC_ALL=C
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
umask 022
state=/var/lib/reconciler
staged=()

report() { printf '@%s\t%s\t%s\n' "$1" "$2" "$(printf '%s' "${3:-}" | base64 -w0)"; }

# Puts back what stood at each staged path before this apply.
restore() {
  local i path
  for ((i = ${#staged[@]} - 1; i >= 0; i--)); do
    path=${staged[$i]}
    if [ -e "$backup$path" ] || [ -L "$backup$path" ]; then
      mv -f "$backup$path" "$path"
    else
      rm -f "$path"
    fi
  done
}

fail() { restore; rm -rf "$backup"; report failed "$1" "${2:-}"; exit 0; }

# Keeps a copy of what stands at $1 before it changes.
keep() {
  if [ -e "$1" ]; then
    mkdir -p "$backup$(dirname "$1")" && cp -a "$1" "$backup$1" || return 1
  fi
  staged+=("$1")
}

# write_file PATH OWNER GROUP MODE, base64 content on stdin: a temporary
# file next to PATH, then a rename, so PATH is never half-written.
write_file() {
  local tmp
  tmp=$(mktemp "$(dirname "$1")/.reconciler.XXXXXX") || return 1
  if base64 -d > "$tmp" && chown "$2:$3" "$tmp" && chmod "$4" "$tmp" && keep "$1" && mv -f "$tmp" "$1"; then
    return 0
  fi
  rm -f "$tmp"
  return 1
}

remove_file() { keep "$1" && rm -f "$1"; }

mkdir -p "$state/backup" && chmod 700 "$state" || { report failed "create $state" ""; exit 0; }
backup=$(mktemp -d "$state/backup/apply.XXXXXX") || { report failed "create a backup directory" ""; exit 0; }

# The list of reloads waiting for a window, one label a line.
pend() { grep -qxF "$1" "$state/pending-reloads" 2>/dev/null || echo "$1" >> "$state/pending-reloads"; }
unpend() {
  [ -f "$state/pending-reloads" ] || return 0
  grep -vxF "$1" "$state/pending-reloads" > "$state/pending-reloads.new"
  mv -f "$state/pending-reloads.new" "$state/pending-reloads"
}
