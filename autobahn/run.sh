#!/usr/bin/env bash
# Run the Autobahn|Testsuite against wsreactor.
#
#   autobahn/run.sh server [--all] [--update]
#       Builds target/release/wsreactor, starts `wsreactor echo` on
#       127.0.0.1:$AUTOBAHN_PORT, runs `wstest -m fuzzingclient` against it,
#       stops the server and summarizes reports/servers/index.json.
#       --all     run every case (no exclude-cases from fuzzingclient.json);
#                 compared against expected-results-all.json instead
#       --update  write this run's results as the new expected file
#   autobahn/run.sh client [--all] [--update]
#       Builds the release binary, starts `wstest -m fuzzingserver` on
#       127.0.0.1:$AUTOBAHN_PORT (web UI off; spec from fuzzingserver.json),
#       runs `wsreactor autobahn-client` against it (case count, every case,
#       report update), stops the fuzzing server and summarizes
#       reports/clients/index.json against expected-results-client.json
#       (expected-results-client-all.json with --all).
#
# Environment:
#   AUTOBAHN_PORT            port for the server under test (default 9001), or
#                            for the fuzzing server in client mode (default 9002)
#   WSREACTOR_BIN            client mode: the wsreactor binary to run; when set,
#                            cargo build is skipped. Default: the release build
#                            (under $CARGO_TARGET_DIR if set, else target/)
#   WSREACTOR_CMD            command line that starts the server under test,
#                            run from the repo root with bash; it must listen on
#                            127.0.0.1:$AUTOBAHN_PORT. When set, cargo build is
#                            skipped. Default:
#                            target/release/wsreactor echo --addr 127.0.0.1:$AUTOBAHN_PORT
#   AUTOBAHN_START_TIMEOUT   seconds to wait for the server's port (default 10)
#   AUTOBAHN_SUITE_TIMEOUT   seconds before the suite is aborted (default 1800)
#
# Exit status: the summarizer's (0 = all cases OK and matching the expected
# results), 1 on harness/server failure, 2 on usage errors.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PORT="${AUTOBAHN_PORT:-9001}"
HOST=127.0.0.1
START_TIMEOUT="${AUTOBAHN_START_TIMEOUT:-10}"
SUITE_TIMEOUT="${AUTOBAHN_SUITE_TIMEOUT:-1800}"

log() { printf '[autobahn] %s\n' "$*" >&2; }
die() { printf '[autobahn] ERROR: %s\n' "$*" >&2; exit 1; }
usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | grep '^#' | sed 's/^# \{0,1\}//' >&2
    exit 2
}

[ $# -ge 1 ] || usage
MODE=$1; shift
ALL=0
SUMMARY_ARGS=()
for arg in "$@"; do
    case "$arg" in
        --all) ALL=1 ;;
        --update) SUMMARY_ARGS+=(--update) ;;
        -h|--help) usage ;;
        *) log "unknown option: $arg"; usage ;;
    esac
done

case "$MODE" in
    server) ;;
    client) PORT="${AUTOBAHN_PORT:-9002}" ;;
    -h|--help) usage ;;
    *) log "unknown mode: $MODE"; usage ;;
esac

[[ "$PORT" =~ ^[0-9]+$ ]] || die "AUTOBAHN_PORT must be a number (got '$PORT')"

port_open() { (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; }

# Processes we started; cleaned up on any exit.
SERVER_PID=
WSTEST_PID=
CLIENT_PID=
stop_pid() { # pid [group]: TERM, wait up to 5 s, then KILL
    local pid=$1 target=$1
    [ "${2:-}" = group ] && target="-$1"
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM -- "$target" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "$target" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
# shellcheck disable=SC2317  # invoked via trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    if [ -n "$WSTEST_PID" ]; then stop_pid "$WSTEST_PID"; fi
    if [ -n "$CLIENT_PID" ]; then stop_pid "$CLIENT_PID"; fi
    if [ -n "$SERVER_PID" ]; then stop_pid "$SERVER_PID" group; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM HUP

# Make a child die with us even if we are SIGKILLed (util-linux setpriv).
PDEATH=()
if setpriv --help 2>/dev/null | grep -q pdeathsig; then
    PDEATH=(setpriv --pdeathsig TERM --)
fi

# --- wstest ----------------------------------------------------------------
if [ ! -x "$HERE/.venv/bin/python" ] || ! "$HERE/wstest" --help >/dev/null 2>&1; then
    log "wstest missing; running install-wstest.sh"
    "$HERE/install-wstest.sh"
fi

if [ "$MODE" = client ]; then
    # Runs the whole client mode and exits.
    # shellcheck source=autobahn/run-client.sh
    . "$HERE/run-client.sh"
    # shellcheck disable=SC2317  # only if run-client.sh ever returned
    exit 1
fi

# --- server under test -------------------------------------------------------
if [ -n "${WSREACTOR_CMD:-}" ]; then
    SERVER_CMD="$WSREACTOR_CMD"
    log "WSREACTOR_CMD set; skipping cargo build"
else
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release)
    BIN="${CARGO_TARGET_DIR:-target}/release/wsreactor"
    case "$BIN" in /*) ;; *) BIN="$ROOT/$BIN" ;; esac
    [ -x "$BIN" ] || die "$BIN was not built"
    SERVER_CMD="$BIN echo --addr $HOST:$PORT"
fi

if port_open; then
    die "something is already listening on $HOST:$PORT; stop it or set AUTOBAHN_PORT"
fi

REPORTS="$HERE/reports"
mkdir -p "$REPORTS"
rm -rf "$REPORTS/servers"
SERVER_LOG="$REPORTS/server.log"

log "starting server: $SERVER_CMD (log: ${SERVER_LOG#"$ROOT"/})"
# Own session/process group so the whole tree can be killed by the server's PID.
(cd "$ROOT" && exec setsid "${PDEATH[@]}" bash -c "exec $SERVER_CMD") \
    </dev/null >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!

deadline=$((SECONDS + START_TIMEOUT))
until port_open; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        status=0; wait "$SERVER_PID" || status=$?
        SERVER_PID=
        log "server exited with status $status before listening on $HOST:$PORT; last lines of its log:"
        tail -n 30 "$SERVER_LOG" >&2 || true
        exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
        log "server did not listen on $HOST:$PORT within ${START_TIMEOUT}s; last lines of its log:"
        tail -n 30 "$SERVER_LOG" >&2 || true
        exit 1
    fi
    sleep 0.1
done
log "server is up (pid $SERVER_PID)"

# --- fuzzingclient spec (port / --all applied to the template) ---------------
SPEC="$REPORTS/fuzzingclient.run.json"
python3 - "$HERE/fuzzingclient.json" "$SPEC" "$HOST" "$PORT" "$ALL" <<'EOF'
import json, sys
src, dst, host, port, run_all = sys.argv[1:]
with open(src) as f:
    spec = json.load(f)
for s in spec["servers"]:
    s["url"] = "ws://%s:%s" % (host, port)
if run_all == "1":
    spec["exclude-cases"] = []
    spec["exclude-agent-cases"] = {}
with open(dst, "w") as f:
    json.dump(spec, f, indent=2)
EOF

# --- run the suite -------------------------------------------------------------
log "running wstest -m fuzzingclient (cases: $([ $ALL = 1 ] && echo all || echo 'per fuzzingclient.json'))"
t0=$(date +%s.%N)
# In the background + wait, so INT/TERM to this script are handled at once.
(cd "$HERE" && exec "${PDEATH[@]}" timeout "$SUITE_TIMEOUT" ./wstest -m fuzzingclient -s "$SPEC") &
WSTEST_PID=$!
wstest_status=0
wait "$WSTEST_PID" || wstest_status=$?
WSTEST_PID=
t1=$(date +%s.%N)
WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')

server_died=0
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    server_died=1
fi
stop_pid "$SERVER_PID" group
SERVER_PID=

log "suite wall time: ${WALL}s"
[ "$wstest_status" = 124 ] && log "wstest timed out after ${SUITE_TIMEOUT}s (AUTOBAHN_SUITE_TIMEOUT)"
[ "$wstest_status" = 0 ] || log "wstest exited with status $wstest_status"
if [ "$server_died" = 1 ]; then
    log "the server exited during the suite; last lines of its log:"
    tail -n 30 "$SERVER_LOG" >&2 || true
fi
[ -f "$REPORTS/servers/index.json" ] || die "no reports/servers/index.json produced"

EXPECTED="$HERE/expected-results.json"
[ "$ALL" = 1 ] && EXPECTED="$HERE/expected-results-all.json"
summary_status=0
python3 "$HERE/summarize.py" --index "$REPORTS/servers/index.json" \
    --expected "$EXPECTED" ${SUMMARY_ARGS[@]+"${SUMMARY_ARGS[@]}"} || summary_status=$?

if [ "$wstest_status" != 0 ] || [ "$server_died" = 1 ]; then
    exit 1
fi
exit "$summary_status"
