# Sourced by the Laravel benchmarks (bench/laravel, bench/prewarm): the
# real Laravel app (tests/fixtures/laravel) with a one-line ping.php,
# released by reconciler to one fleet web server (the running fleet, or
# one it starts and removes on exit). Defines: bin, work, app, sha (the
# commit released), defs, ssh_args, container, http_port, cluster EXTRA
# (rewrites the cluster file), run ARGS... (reconciler against the
# definitions, its output in $work/out, shown and fatal on failure).
# `app_extra` (YAML lines for the app, before `servers:`) may be set first.
# $RECONCILER_BIN: a binary built already (what the figures measure runs
# on the server, not in reconciler); else a release build.
if [ -n "${RECONCILER_BIN:-}" ]; then
  bin=$RECONCILER_BIN
else
  cargo build --release --quiet
  bin=$PWD/target/release/reconciler
fi

work=$(mktemp -d)
started=0
container=
cleanup() {
  if [ -n "$container" ]; then
    docker exec "$container" sh -c 'rm -rf /srv/repo /etc/apt/sources.list.d/reconciler-fixture.list;
      mv /root/apt-saved/* /etc/apt/sources.list.d/ 2>/dev/null; rm -rf /root/apt-saved' || true
  fi
  rm -rf "$work"
  if [ $started = 1 ]; then tests/fleet/fleet down >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
if [ -z "${RECONCILER_FLEET:-}" ] || [ ! -f "$RECONCILER_FLEET" ]; then
  started=1
  tests/fleet/fleet up 1
  eval "$(tests/fleet/fleet env)"
fi
state=$(dirname "$RECONCILER_FLEET")
ssh_args=(--known-hosts "$state/known_hosts" --ssh-key "$state/id_ed25519" --color never)
inventory() { python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["servers"][0]; print(s[sys.argv[2]])' "$RECONCILER_FLEET" "$1"; }
container=$(inventory container)
http_port=$(inventory http_port)
image=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["image"])' "$RECONCILER_FLEET")

FLEET_IMAGE=$image tests/fixtures/laravel/build "$work" 2>/dev/null
app=$work/app
echo '<?php echo "pong";' > "$app/public/ping.php"
git -C "$app" add -A && git -C "$app" -c user.name=b -c user.email=b@b commit -q -m ping
sha=$(git -C "$app" rev-parse HEAD)
docker exec "$container" sh -c 'mkdir -p /srv/repo /root/apt-saved; mv /etc/apt/sources.list.d/* /root/apt-saved/ 2>/dev/null;
  echo "deb [trusted=yes] file:/srv/repo ./" > /etc/apt/sources.list.d/reconciler-fixture.list'
docker cp "$work/apt/." "$container:/srv/repo/" >/dev/null

defs=$work/defs
mkdir -p "$defs/clusters" "$defs/apps"
cluster() {
  {
    echo 'name: bench'
    echo 'php: ["8.2"]'
    echo 'extensions: [xml, bcmath]'
    echo "$1"
    echo 'servers:'
    tests/fleet/fleet servers-yaml | grep -m1 -- '- {'
  } > "$defs/clusters/bench.yaml"
}
cluster ''
cat > "$defs/apps/shop.yaml" <<EOF
name: shop
cluster: bench
repo: $app
php: "8.2"
domains: [shop.test]
release_commands: [php artisan config:cache, php artisan route:cache, php artisan view:cache]
shared: [storage, .env]
health_check: { path: /up, status: 200 }
${app_extra:-}
servers:
  - name: fleet-1
    web: { max_workers: 4, min_spare_workers: 2, initial_workers: 2, max_spare_workers: 4 }
EOF
run() { RECONCILER_CACHE_DIR=$work/cache "$bin" "$@" -d "$defs" "${ssh_args[@]}" >"$work/out" 2>&1 || { cat "$work/out"; exit 1; }; }
run provision
run apply --yes --now
printf 'APP_NAME=Bench\nREDIS_HOST=redis\nREDIS_PREFIX=bench:\n' > "$work/shop.env"
run env push shop "$work/shop.env"
run release shop
