#!/usr/bin/env bash
# Debian packages for the real services that the tests and `make server` start (PostgreSQL,
# MariaDB for SLURM accounting, munge, SLURM with slurmdbd). Idempotent: when every package is
# installed it only checks and exits (well under a second). Needs root (CI and this VM run as root).
# Daemons are never started here: the project's own scripts start them as their children.
set -euo pipefail

PACKAGES=(postgresql mariadb-server munge slurm-wlm slurmdbd)
APT=(apt-get -y -q -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

missing=()
for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "services: Debian packages present (${PACKAGES[*]})"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "services: missing Debian packages ${missing[*]}; run as root: bash $0" >&2
    exit 1
fi

# Keep the packages' maintainer scripts from starting system daemons (invoke-rc.d asks this hook):
# with no init system that reaps, they would outlive every test. Docker images ship the same hook.
created_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
fi
trap '[ -n "$created_policy" ] && rm -f /usr/sbin/policy-rc.d' EXIT

export DEBIAN_FRONTEND=noninteractive
echo "services: installing ${missing[*]}"
if ! "${APT[@]}" install --no-install-recommends "${missing[@]}"; then
    echo "services: apt-get install failed; refreshing the package lists and retrying"
    "${APT[@]}" update
    "${APT[@]}" install --no-install-recommends "${missing[@]}"
fi
