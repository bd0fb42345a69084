# reconciler's fact gathering: one run per host per plan, read-only.
# Prepended by reconciler: the arrays FILES (with SUMS, the sha256 each
# file should have), DIRS, USERS and APPS, each value single-quoted.
# Output is line-framed; see facts/parse.rs. Speed matters (this runs on
# every plan): no subshell or process per file, and file content is only
# sent for files whose hash differs from the wanted one.
export LC_ALL=C
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
state=/var/lib/reconciler
max_content=1048576  # larger files are compared by hash only

echo "@facts 1"
if [ -r /etc/os-release ]; then
  . /etc/os-release
  echo "@os ${ID:-unknown} ${VERSION_ID:-unknown}"
fi
if [ -d /run/systemd/system ]; then echo "@init systemd"; else echo "@init service"; fi
echo "@uid $EUID"

# `command -v` prints the path itself: no subshell to capture it.
for dir in /etc/php/*/; do
  [ -d "$dir" ] || continue
  v=${dir%/}; v=${v##*/}
  printf '@php %s\n@php-fpm ' "$v"; command -v "php-fpm$v" || echo -
  printf '@php-cli '; command -v "php$v" || echo -
done
for tool in nginx supervisorctl cron; do
  printf '@tool %s ' "$tool"; command -v "$tool" || echo -
done

declare -A wanted_user=()
for u in "${USERS[@]}"; do wanted_user[$u]=1; done
while IFS=: read -r name _ uid gid _ home _; do
  [ -n "${wanted_user[$name]:-}" ] && echo "@user $name $uid $gid $home"
done < /etc/passwd
while IFS=: read -r name _ _ members; do
  [ -n "${wanted_user[$name]:-}" ] && echo "@group $name ${members//,/ }"
done < /etc/group

manifest=()
if [ -r "$state/manifest" ]; then
  while IFS= read -r line; do
    [ -n "$line" ] && manifest+=("$line") && echo "@manifest $line"
  done < "$state/manifest"
fi
if [ -r "$state/pending-reloads" ]; then
  while IFS= read -r line; do [ -n "$line" ] && echo "@pending $line"; done < "$state/pending-reloads"
fi

for app in "${APPS[@]}"; do
  for release in "/home/$app/releases/"*/; do
    [ -d "$release" ] || continue
    release=${release%/}
    echo "@release $app ${release##*/}"
  done
done

# Every path at once: one find for ownership, mode, type and link target,
# one sha256sum for content hashes, and bash's own read for content.
declare -A seen=() want=()
for i in "${!FILES[@]}"; do want[${FILES[$i]}]=${SUMS[$i]}; done
paths=()
for p in "${FILES[@]}" "${manifest[@]}" "${DIRS[@]}"; do
  [ -n "${seen[$p]:-}" ] && continue
  seen[$p]=1
  paths+=("$p")
done
for app in "${APPS[@]}"; do paths+=("/home/$app/current"); done
regular=()
declare -A small=()
if [ ${#paths[@]} -gt 0 ]; then
  while IFS=$'\t' read -r path user group mode size kind target; do
    printf '@path\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$user" "$group" "$mode" "$size" "$path" "$target"
    if [ "$kind" = f ]; then
      regular+=("$path")
      [ "$size" -le $max_content ] && small[$path]=1
    fi
  done < <(find "${paths[@]}" -maxdepth 0 -printf '%p\t%u\t%g\t%m\t%s\t%y\t%l\n' 2>/dev/null)
fi
differ=()
if [ ${#regular[@]} -gt 0 ]; then
  while read -r sum path; do
    echo "@sha256 $sum $path"
    [ "${want[$path]:-}" != "$sum" ] && [ -n "${small[$path]:-}" ] && differ+=("$path")
  done < <(sha256sum -- "${regular[@]}" 2>/dev/null)
fi
for path in "${differ[@]}"; do
  [ -r "$path" ] || continue
  content=
  IFS= read -r -d '' content < "$path"
  printf '@content %d %s\n%s\n' "${#content}" "$path" "$content"
done
echo "@end"
