#!/usr/bin/env bash
# Installs the benchmark sink (nginx) and load tool (wrk) from Debian's packages.
# Idempotent: does nothing when both binaries are already on PATH.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

if have nginx && have wrk; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
if ! $SUDO apt-get install -y -qq --no-install-recommends nginx-light wrk >/dev/null; then
    $SUDO apt-get install -y -qq --no-install-recommends nginx wrk >/dev/null
fi
# The Debian package starts a system nginx on port 80; the benchmarks run their own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
    $SUDO systemctl stop nginx >/dev/null 2>&1 || true
fi
have nginx && have wrk
