#!/usr/bin/env bash
# The gateway's browser test: start `wsreactor serve` on a free loopback
# port, run gateway_e2e.mjs against it in headless Chromium, stop the
# server by its PID.
#
#   tests/browser/run.sh [path/to/wsreactor]     # default: target/release/wsreactor
#
# Installs what is missing (as CI does, as root): Debian's chromium, Node
# and npm, and playwright-core from tests/browser/package-lock.json.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${1:-$root/target/release/wsreactor}

need=()
command -v chromium >/dev/null || need+=(chromium)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
(cd "$here" && npm ci --no-audit --no-fund --silent)

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin" serve --addr "127.0.0.1:$port" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    if curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; then break; fi
    sleep 0.1
done
node "$here/gateway_e2e.mjs" "http://127.0.0.1:$port/"
