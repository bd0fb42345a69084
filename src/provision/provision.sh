# reconciler's provision: install what is missing of the packages given as
# arguments, never removing or upgrading one. DRY_RUN is in the header;
# report and run_step come from src/remote/lib.sh.

provision_main() {
  export DEBIAN_FRONTEND=noninteractive
  local package missing=()
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
  if ! run_step 900 "apt-get update" apt-get "${lock[@]}" update -q; then
    report failed "apt-get update" "$out"
    return
  fi
  if ! run_step 1800 "apt-get install" apt-get "${lock[@]}" install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -- "${missing[@]}"; then
    report failed "apt-get install" "$out"
    return
  fi
  report installed - "${missing[*]}"
  report done provision ""
}
