#!/usr/bin/env bash
# Installs the benchmark sink (nginx) and load tool (wrk) from Debian's packages.
# Idempotent and quiet: does nothing when both are already installed; prints apt's output
# only when it fails.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }

if have nginx && have wrk; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_deps: no apt-get here; install nginx and wrk with your package manager" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
apt() { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get "$@" >>"$log" 2>&1; }

echo "installing nginx and wrk (Debian packages)"
if ! { apt update -qq && { apt install -y -qq --no-install-recommends nginx-light wrk \
        || apt install -y -qq --no-install-recommends nginx wrk; }; }; then
    cat "$log" >&2
    echo "install_deps: apt-get failed" >&2
    exit 1
fi
# The package may start a system nginx on port 80; the benchmarks run their own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet nginx 2>/dev/null; then
    $SUDO systemctl stop nginx >/dev/null 2>&1 || true
fi
have nginx && have wrk
