# Each app's traffic on a web server (see src/traffic/mod.rs).

# traffic_read WINDOW APP=FROM...: for each APP (a valid app name; others
# are skipped) the requests in its access log in root's per-app log
# directory from byte FROM (`tail`: its last 64 MiB, counting only the
# last WINDOW seconds), as `traffic APP END REQUESTS 5XX 4XX BUCKET...`
# (see traffic_count).
traffic_read() {
  local window=$1 spec app from
  local -a counts
  shift
  for spec in "$@"; do
    app=${spec%%=*} from=${spec#*=}
    [[ $app =~ ^[a-z][a-z0-9-]{0,31}$ ]] || continue
    read -r -a counts <<<"$(traffic_count "$LOG_ROOT/$app/access.log" "$from" "$window")"
    record traffic "$app" "${counts[@]}"
  done
  report done traffic ""
}
