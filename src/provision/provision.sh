# reconciler's provision: install what is missing of the packages given as
# arguments, never removing or upgrading one. Rust prepends DRY_RUN.
set -u
export LC_ALL=C DEBIAN_FRONTEND=noninteractive
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# report: see src/steps.sh, appended by Rust.

provision_main() {
  local package missing=() out
  command -v apt-get >/dev/null || { report failed provision "apt-get is not installed: not a Debian server"; return; }
  for package in "$@"; do
    dpkg-query -W -f='${db:Status-Abbrev}' "$package" 2>/dev/null | grep -q '^ii' || missing+=("$package")
  done
  report missing - "${missing[*]}"
  if [ ${#missing[@]} -eq 0 ] || [ "$DRY_RUN" = 1 ]; then
    report done provision ""
    return
  fi
  # Another apt (unattended-upgrades) is waited for, two minutes at most.
  local lock=(-o DPkg::Lock::Timeout=120)
  if ! out=$(timeout 900 apt-get "${lock[@]}" update -q 2>&1); then
    report failed "apt-get update" "$out"
    return
  fi
  if ! out=$(timeout 1800 apt-get "${lock[@]}" install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -- "${missing[@]}" 2>&1); then
    report failed "apt-get install" "$out"
    return
  fi
  report installed - "${missing[*]}"
  report done provision ""
}
