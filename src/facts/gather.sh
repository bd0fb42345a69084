# reconciler's fact gathering: one run per host per plan, read-only.
# Prepended by reconciler: the arrays FILES (with SUMS, the sha256 each
# file should have), DIRS and APPS, each value single-quoted.
# Output is line-framed; see facts/parse.rs. Speed matters (this runs on
# every plan): no subshell or process per file, and file content is only
# sent for files whose hash differs from the wanted one.
set -u
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

# Every user and group: the parser maps the numeric owners below to names
# (find's %u would look each one up in /etc/passwd again).
while IFS=: read -r name _ uid gid _ home _; do
  echo "@user $name $uid $gid $home"
done < /etc/passwd
while IFS=: read -r name _ gid members; do
  echo "@group $name $gid ${members//,/ }"
done < /etc/group

manifest=()
[ -r "$state/manifest" ] && mapfile -t manifest < "$state/manifest"
[ ${#manifest[@]} -gt 0 ] && printf '@manifest %s\n' "${manifest[@]}"
pending=()
[ -r "$state/pending-reloads" ] && mapfile -t pending < "$state/pending-reloads"
[ ${#pending[@]} -gt 0 ] && printf '@pending %s\n' "${pending[@]}"

for app in "${APPS[@]}"; do
  for release in "/home/$app/releases/"*/; do
    [ -d "$release" ] || continue
    release=${release%/}
    echo "@release $app ${release##*/}"
  done
done

# Every path at once: one find for type, owner, mode, size and link
# target, one sha256sum for the files; content only where the hash is not
# the wanted one. Missing paths are simply absent.
declare -A want=()
for i in "${!FILES[@]}"; do want[${FILES[$i]}]=${SUMS[$i]}; done
unwanted=()  # managed files no unit wants any more
for path in "${manifest[@]}"; do
  [ -z "${want[$path]+set}" ] && unwanted+=("$path")
done
currents=()
for app in "${APPS[@]}"; do currents+=("/home/$app/current"); done
paths=("${FILES[@]}" "${unwanted[@]}" "${DIRS[@]}" "${currents[@]}")
if [ ${#paths[@]} -gt 0 ]; then
  find "${paths[@]}" -maxdepth 0 -printf '@path\t%y\t%U\t%G\t%m\t%s\t%p\t%l\n' 2>/dev/null
fi
sums=()
files=("${FILES[@]}" "${unwanted[@]}")
if [ ${#files[@]} -gt 0 ]; then
  mapfile -t sums < <(sha256sum -- "${files[@]}" 2>/dev/null)
fi
differ=()
for line in "${sums[@]}"; do
  sum=${line%% *}
  path=${line#*  }
  echo "@sha256 $sum $path"
  [ "${want[$path]:-}" != "$sum" ] && differ+=("$path")
done
for path in "${differ[@]}"; do
  [ -r "$path" ] || continue
  content=
  IFS= read -r -d '' -N $((max_content + 1)) content < "$path"
  [ ${#content} -gt $max_content ] && continue
  printf '@content %d %s\n%s\n' "${#content}" "$path" "$content"
done
echo "@end"
