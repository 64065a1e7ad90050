#!/usr/bin/env bash
# Debian's PostgreSQL server binaries (initdb, pg_ctl): the tests start a throwaway cluster of their own
# (tests/pg_server.py); nothing here starts or configures a system-wide server. Installed only when
# missing; needs root or sudo.
set -euo pipefail
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "Installing postgresql with apt-get…"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null
# The package may start its own cluster; the tests do not use it.
$SUDO service postgresql stop >/dev/null 2>&1 || true
