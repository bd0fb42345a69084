# An app's logs, after app.sh: Laravel's and PHP's in shared/storage/logs
# (the app's: listed and read as the app), and what root's daemons write
# for the app in $LOG_DIR (root's, which the app cannot write: listed and
# read as root). Every read is bounded: a line count is a byte bound too.

# logs_read LINES [PATH=OFFSET...]: what each log holds past OFFSET (a file
# not named: its last LINES lines, from at most its last $LOG_LIMIT bytes;
# a file that shrank: from its start), at most $LOG_LIMIT bytes a file a
# call. One `chunk` record per file: its path (a field, whatever bytes its
# name holds), the bytes base64, the offset read up to, and whether the
# limit cut the read short (1) or not (0).
logs_read() {
  local lines=$1 spec path size offset end chunk cut dir APP_ARGV
  shift
  local -A offsets=()
  for spec in "$@"; do offsets[${spec%=*}]=${spec##*=}; done
  app_argv "$APP"
  for dir in "$SHARED/storage/logs" "$LOG_DIR"; do
    local -a reader=() skip=()
    # nginx's access log is figures (guarded releases), not messages.
    [ "$dir" = "$LOG_DIR" ] && skip=(-not -name access.log)
    [ "$dir" = "$LOG_DIR" ] || reader=("${APP_ARGV[@]}")
    while IFS= read -r -d '' path; do
      size=$("${reader[@]}" stat -c %s -- "$path" 2>/dev/null) || continue
      offset=${offsets[$path]:-}
      cut=0
      if [ -z "$offset" ]; then
        [ "$size" -gt "$LOG_LIMIT" ] && cut=1
        chunk=$("${reader[@]}" tail -c "$LOG_LIMIT" -- "$path" | tail -n "$lines" | base64 -w0)
        end=$size
      else
        [[ $offset =~ ^[0-9]{1,18}$ ]] || offset=0
        [ "$size" -lt "$offset" ] && offset=0
        end=$((offset + LOG_LIMIT))
        if [ "$end" -lt "$size" ]; then cut=1; else end=$size; fi
        chunk=$("${reader[@]}" tail -c +$((offset + 1)) -- "$path" | head -c $((end - offset)) | base64 -w0)
      fi
      record chunk "$path" "$chunk" "$end" "$cut"
    done < <("${reader[@]}" find -P "$dir" -mindepth 1 -maxdepth 1 -type f -name '*.log' "${skip[@]}" -print0 2>/dev/null)
  done
  report done logs ""
}
