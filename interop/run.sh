#!/usr/bin/env bash
# Interop over wss://: three independent clients against `wsreactor echo
# --deflate` serving TLS with a throwaway CA (autobahn/tls-certs.sh):
#
#   Python  websockets (asyncio client), trusting the CA via its ssl context
#   Node    ws, trusting the CA via its `ca` option
#   Chromium (Debian's, headless, driven by playwright-core), trusting the CA
#           through an NSS database in a private $HOME
#
# Each echoes text, 1 MiB of binary and 200 pipelined messages (with
# permessage-deflate where the client offers it) and closes with 1000.
# Installs what it needs (pip into interop/.venv, npm into
# interop/node_modules, apt for chromium and certutil). Prints
# "N passed, N failed"; exits non-zero on any failure.
#
#   interop/run.sh [python|node|chromium ...]   (default: all three)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
CLIENTS=("$@")
[ ${#CLIENTS[@]} -gt 0 ] || CLIENTS=(python node chromium)

log() { printf '[interop] %s\n' "$*" >&2; }
WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

apt_install() { # PACKAGE...: install the missing ones
    local missing=()
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    if [ ${#missing[@]} -gt 0 ]; then
        log "apt-get install ${missing[*]}"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

"$ROOT/autobahn/tls-certs.sh" "$WORK/tls"
log "cargo build --release --features tls,deflate"
(cd "$ROOT" && cargo build --release --features tls,deflate)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/wsreactor"
"$BIN" echo --deflate --addr 127.0.0.1:0 --tls-cert "$WORK/tls/cert.pem" \
    --tls-key "$WORK/tls/key.pem" 2>"$WORK/server.log" &
SERVER_PID=$!
for _ in $(seq 100); do
    ADDR=$(grep -o 'listening on wss://[0-9.:]*' "$WORK/server.log" | sed 's|.*wss://||' || true)
    [ -n "$ADDR" ] && break
    sleep 0.1
done
[ -n "$ADDR" ] || { log "the server did not start"; cat "$WORK/server.log" >&2; exit 1; }
URL="wss://localhost:${ADDR##*:}/interop"
log "server on $ADDR; clients connect to $URL"

need_node_modules() {
    [ -d "$HERE/node_modules/ws" ] && [ -d "$HERE/node_modules/playwright-core" ] && return
    log "npm install (ws, playwright-core)"
    (cd "$HERE" && npm install --no-audit --no-fund --silent >/dev/null)
}

run_python() {
    if ! "$HERE/.venv/bin/python" -c 'import websockets' 2>/dev/null; then
        log "pip install websockets into interop/.venv"
        python3 -m venv "$HERE/.venv"
        "$HERE/.venv/bin/pip" install -q 'websockets>=14,<18'
    fi
    "$HERE/.venv/bin/python" "$HERE/python_client.py" "$URL" "$WORK/tls/ca.pem"
}

run_node() {
    need_node_modules
    node "$HERE/node_client.mjs" "$URL" "$WORK/tls/ca.pem"
}

run_chromium() {
    apt_install chromium libnss3-tools
    need_node_modules
    # A private NSS database that trusts the test CA for servers.
    local home="$WORK/home"
    mkdir -p "$home/.pki/nssdb"
    certutil -d "sql:$home/.pki/nssdb" -N --empty-password
    certutil -d "sql:$home/.pki/nssdb" -A -t "C,," -n wsreactor-test-ca -i "$WORK/tls/ca.pem"
    HOME="$home" node "$HERE/chromium_client.mjs" "$URL"
}

passed=0
failed=0
for c in "${CLIENTS[@]}"; do
    log "--- $c"
    if "run_$c"; then passed=$((passed + 1)); else failed=$((failed + 1)); log "$c FAILED"; fi
done
kill -0 "$SERVER_PID" 2>/dev/null || { log "the server died"; failed=$((failed + 1)); }
echo "interop: $passed passed, $failed failed"
[ "$failed" = 0 ]
