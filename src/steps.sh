# Reports and time-limited steps, shared by the apply, release and
# provision scripts. Reports are lines `@kind<TAB>name<TAB>base64` on
# stdout.
report() { printf '@%s\t%s\t%s\n' "$1" "$2" "$(printf '%s' "${3:-}" | base64 -w0)"; }

# run_step LIMIT WHAT COMMAND...: runs COMMAND with a time limit; its output
# is in $out. A step that hangs says so. Its stdin is the caller's (the
# runner gives scripts /dev/null).
run_step() {
  local limit=$1 what=$2 status
  shift 2
  out=$(timeout -k 5 "$limit" "$@" 2>&1)
  status=$?
  if [ $status = 124 ] || [ $status = 137 ]; then
    out="$what did not finish within ${limit}s${out:+: $out}"
  fi
  return $status
}
