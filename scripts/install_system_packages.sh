#!/usr/bin/env bash
# System (Debian) packages that the tests need beyond Python: Chromium and its WebDriver for the
# browser test of the MLflow UI (tests/test_ui.py). Idempotent: installs only what is missing, so
# CI can call it before every run. No browser is ever downloaded at test time.
#   scripts/install_system_packages.sh          install what is missing (root, or sudo without a password)
#   scripts/install_system_packages.sh --check  exit 1 and name what is missing, install nothing
set -euo pipefail

PACKAGES=(chromium chromium-driver)

missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "${1:-}" = "--check" ]; then
  echo "missing system packages: ${missing[*]} (run scripts/install_system_packages.sh)" >&2
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "sbilab: need root to install ${missing[*]}: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "sbilab: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -q -o DPkg::Lock::Timeout=300
"${as_root[@]}" apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 "${missing[@]}"
