# lock_holder: who holds the host lock ($LOCK_HOLDER's record), if that
# apply still runs: its foreground, or the worker that took over its
# record. An apply writes its record just after it takes the lock, so a
# record of a finished apply is read again for up to half a second before
# the holder is called unknown.
lock_holder() {
  local line pid tries
  for ((tries = 0; tries < 10; tries++)); do
    line=$(head -n1 -- "$LOCK_HOLDER" 2>/dev/null)
    pid=${line##*server pid }
    if [ -n "$line" ] && [ "$pid" != "$line" ] && kill -0 "$pid" 2>/dev/null; then
      printf '%s\n' "${line%; server pid *}"
      return
    fi
    sleep 0.05
  done
  echo "a process that is not a reconciler apply"
}

# hold_record LINE: the lock record, replaced whole (never seen half-written).
hold_record() {
  printf '%s\n' "$1" >"$LOCK_HOLDER.new" && mv -f -- "$LOCK_HOLDER.new" "$LOCK_HOLDER"
}
