#!/usr/bin/env bash
# The console's browser tests (tests/console) drive a real Chromium: Debian's chromium and
# chromium-driver. Installs them when missing (apt-get, as root or with sudo); fails loudly
# when it cannot, so that a run never skips those tests silently.
set -euo pipefail

need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
echo "ensure-browser: installing ${need[*]} for tests/console" >&2
if [ "$(id -u)" -eq 0 ]; then
  apt=(apt-get)
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  apt=(sudo apt-get)
else
  echo "ensure-browser: ERROR: ${need[*]} missing and neither root nor passwordless sudo;" \
       "install them: apt-get install chromium chromium-driver" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! "${apt[@]}" install -y -q "${need[@]}" >&2; then
  if ! { "${apt[@]}" update -q >&2 && "${apt[@]}" install -y -q "${need[@]}" >&2; }; then
    echo "ensure-browser: ERROR: could not install ${need[*]}" >&2
    exit 1
  fi
fi
for bin in /usr/bin/chromium /usr/bin/chromedriver; do
  [ -x "$bin" ] || { echo "ensure-browser: ERROR: $bin still missing" >&2; exit 1; }
done
