#!/usr/bin/env bash
# Run the Autobahn|Testsuite against wsreactor.
#
#   autobahn/run.sh server [--tls] [--all] [--update]
#       Builds target/release/wsreactor, starts `wsreactor echo` on
#       127.0.0.1:$AUTOBAHN_PORT, runs `wstest -m fuzzingclient` against it,
#       stops the server and summarizes reports/servers/index.json.
#       --all     run every case (no exclude-cases from fuzzingclient.json);
#                 compared against expected-results-all.json instead
#       --update  write this run's results as the new expected file
#       --tls     over wss://: a throwaway CA and certificate are made with
#                 tls-certs.sh in reports/tls-MODE, the server gets --tls-cert and
#                 --tls-key (built with --features tls), and wstest connects
#                 with SNI localhost, verifying the certificate against that
#                 CA (SSL_CERT_FILE); the expected results are the same
#   autobahn/run.sh client [--tls] [--all] [--update]
#       Builds the release binary, starts `wstest -m fuzzingserver` on
#       127.0.0.1:$AUTOBAHN_PORT (web UI off; spec from fuzzingserver.json),
#       runs `wsreactor autobahn-client` against it (case count, every case,
#       report update), stops the fuzzing server and summarizes
#       reports/clients/index.json against expected-results-client.json
#       (expected-results-client-all.json with --all). With --tls the
#       fuzzing server serves wss:// with the throwaway certificate and the
#       client trusts the CA with --ca.
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
#                            target/release/wsreactor echo --deflate --threads $AUTOBAHN_THREADS --addr 127.0.0.1:$AUTOBAHN_PORT
#   AUTOBAHN_THREADS         server mode: reactors of the server under test
#                            (default 1, a single reactor; .ci/run runs the
#                            plain suite with 2, so that its connections land
#                            on both reactors, and the wss:// one with 1)
#   AUTOBAHN_START_TIMEOUT   seconds to wait for the server's port (default 10)
#   AUTOBAHN_SUITE_TIMEOUT   seconds before the suite is aborted (default 1800)
#
# Exit status: the summarizer's (0 = all cases OK and matching the expected
# results), 1 on harness/server failure, 2 on usage errors.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
REPORTS="$HERE/reports"
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
TLS=0
SUMMARY_ARGS=()
for arg in "$@"; do
    case "$arg" in
        --all) ALL=1 ;;
        --tls) TLS=1 ;;
        --update) SUMMARY_ARGS+=(--update) ;;
        -h|--help) usage ;;
        *) log "unknown option: $arg"; usage ;;
    esac
done

case "$MODE" in
    server) PORT="${AUTOBAHN_PORT:-9001}" ;;
    client) PORT="${AUTOBAHN_PORT:-9002}" ;;
    -h|--help) usage ;;
    *) log "unknown mode: $MODE"; usage ;;
esac

[[ "$PORT" =~ ^[0-9]+$ ]] || die "AUTOBAHN_PORT must be a number (got '$PORT')"

port_open() { (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; }

# Processes we started; cleaned up on any exit. BG_PID is the background
# process (server under test / fuzzing server) in its own session, killed as a
# process group; DRIVER_PID is the suite driver (wstest / wsreactor client).
BG_PID=
DRIVER_PID=
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
    if [ -n "$DRIVER_PID" ]; then stop_pid "$DRIVER_PID"; fi
    if [ -n "$BG_PID" ]; then stop_pid "$BG_PID" group; fi
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

# --- shared steps ----------------------------------------------------------------

build_binary() { # sets BIN to the release build (under $CARGO_TARGET_DIR if set)
    local features=deflate
    [ "$TLS" = 1 ] && features=deflate,tls
    log "cargo build --release --features $features"
    (cd "$ROOT" && cargo build --release --features "$features")
    BIN="${CARGO_TARGET_DIR:-target}/release/wsreactor"
    case "$BIN" in /*) ;; *) BIN="$ROOT/$BIN" ;; esac
    [ -x "$BIN" ] || die "$BIN was not built"
}

refuse_busy_port() {
    if port_open; then
        die "something is already listening on $HOST:$PORT; stop it or set AUTOBAHN_PORT"
    fi
}

write_spec() { # TEMPLATE DST: the template with host/port (and --all) applied
    python3 - "$1" "$2" "$MODE" "$HOST" "$PORT" "$ALL" "$TLS" "$TLS_DIR" <<'PY'
import json, sys
src, dst, mode, host, port, run_all, tls, tls_dir = sys.argv[1:]
with open(src) as f:
    spec = json.load(f)
url = "%s://%s:%s" % ("wss" if tls == "1" else "ws", host, port)
if mode == "server":  # fuzzingclient: the servers under test
    for s in spec["servers"]:
        s["url"] = url
        if tls == "1":
            # SNI, and verification of the certificate for this name.
            s["hostname"] = "localhost"
else:  # fuzzingserver: where it listens
    spec["url"] = url
    spec["outdir"] = "./reports/clients"
    if tls == "1":
        spec["cert"] = tls_dir + "/cert.pem"
        spec["key"] = tls_dir + "/key.pem"
if run_all == "1":
    spec["exclude-cases"] = []
    spec["exclude-agent-cases"] = {}
with open(dst, "w") as f:
    json.dump(spec, f, indent=2)
PY
}

start_background() { # LOG DIR CMD...: own session/process group, pid in BG_PID
    local log=$1 dir=$2
    shift 2
    # Own session/process group so the whole tree can be killed by its PID.
    (cd "$dir" && exec setsid "${PDEATH[@]}" "$@") </dev/null >"$log" 2>&1 &
    BG_PID=$!
}

wait_for_port() { # NAME LOG: until BG_PID listens on $HOST:$PORT, else exit 1
    local name=$1 log=$2 deadline=$((SECONDS + START_TIMEOUT)) status
    until port_open; do
        if ! kill -0 "$BG_PID" 2>/dev/null; then
            status=0; wait "$BG_PID" || status=$?
            BG_PID=
            log "$name exited with status $status before listening on $HOST:$PORT; last lines of its log:"
            tail -n 30 "$log" >&2 || true
            exit 1
        fi
        if [ $SECONDS -ge $deadline ]; then
            log "$name did not listen on $HOST:$PORT within ${START_TIMEOUT}s; last lines of its log:"
            tail -n 30 "$log" >&2 || true
            exit 1
        fi
        sleep 0.1
    done
    log "$name is up (pid $BG_PID)"
}

run_driver() { # DIR CMD...: with the suite timeout; sets DRIVER_STATUS, WALL
    local dir=$1 t0 t1
    shift
    t0=$(date +%s.%N)
    # In the background + wait, so INT/TERM to this script are handled at once.
    (cd "$dir" && exec "${PDEATH[@]}" timeout "$SUITE_TIMEOUT" "$@") &
    DRIVER_PID=$!
    DRIVER_STATUS=0
    wait "$DRIVER_PID" || DRIVER_STATUS=$?
    DRIVER_PID=
    t1=$(date +%s.%N)
    WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
}

finish_and_summarize() { # INDEX EXPECTED: stop BG_PID, report, summarize, exit
    local index=$1 expected=$2 bg_died=0 summary_status=0
    if ! kill -0 "$BG_PID" 2>/dev/null; then
        bg_died=1
    fi
    stop_pid "$BG_PID" group
    BG_PID=

    log "suite wall time: ${WALL}s"
    [ "$DRIVER_STATUS" = 124 ] && log "$DRIVER_NAME timed out after ${SUITE_TIMEOUT}s (AUTOBAHN_SUITE_TIMEOUT)"
    [ "$DRIVER_STATUS" = 0 ] || log "$DRIVER_NAME exited with status $DRIVER_STATUS"
    if [ "$bg_died" = 1 ]; then
        log "the $BG_NAME exited during the suite; last lines of its log:"
        tail -n 30 "$BG_LOG" >&2 || true
    fi
    [ -f "$index" ] || die "no ${index#"$HERE"/} produced"

    python3 "$HERE/summarize.py" --index "$index" \
        --expected "$expected" ${SUMMARY_ARGS[@]+"${SUMMARY_ARGS[@]}"} || summary_status=$?

    if [ "$DRIVER_STATUS" != 0 ] || [ "$bg_died" = 1 ]; then
        exit 1
    fi
    exit "$summary_status"
}

# --- wstest ----------------------------------------------------------------------
if [ ! -x "$HERE/.venv/bin/python" ] || ! "$HERE/wstest" --help >/dev/null 2>&1; then
    log "wstest missing; running install-wstest.sh"
    "$HERE/install-wstest.sh"
fi

# --- TLS -------------------------------------------------------------------------
TLS_DIR="$REPORTS/tls-$MODE"  # per mode: the two modes may run at once
SCHEME=ws
SERVER_TLS=""
CLIENT_TLS=()
DRIVER_ENV=()
if [ "$TLS" = 1 ]; then
    "$HERE/tls-certs.sh" "$TLS_DIR"
    SCHEME=wss
    SERVER_TLS=" --tls-cert $TLS_DIR/cert.pem --tls-key $TLS_DIR/key.pem"
    CLIENT_TLS=(--ca "$TLS_DIR/ca.pem")
    # wstest (OpenSSL) verifies against this file in place of the system's.
    DRIVER_ENV=(env "SSL_CERT_FILE=$TLS_DIR/ca.pem")
fi

# --- what differs between the modes ------------------------------------------------
# BG_*: the background process that listens on $HOST:$PORT (run in BG_DIR);
# DRIVER_*: what runs the suite against it (run in DRIVER_DIR).
case "$MODE" in
server)
    # The server under test (`wsreactor echo`, or WSREACTOR_CMD) is the
    # background process; wstest -m fuzzingclient drives the suite.
    if [ -n "${WSREACTOR_CMD:-}" ]; then
        SERVER_CMD="$WSREACTOR_CMD"
        log "WSREACTOR_CMD set; skipping cargo build"
    else
        build_binary
        SERVER_CMD="$BIN echo --deflate --threads ${AUTOBAHN_THREADS:-1} --addr $HOST:$PORT$SERVER_TLS"
    fi
    KIND=servers; TEMPLATE=fuzzingclient.json; EXPECTED="expected-results"
    BG_NAME=server; BG_LOG="$REPORTS/server.log"; BG_DIR=$ROOT
    BG_DESC="server: $SERVER_CMD"
    BG_CMD=(bash -c "exec $SERVER_CMD")
    DRIVER_NAME=wstest; DRIVER_DIR=$HERE
    DRIVER_DESC="wstest -m fuzzingclient"
    DRIVER_CMD=(${DRIVER_ENV[@]+"${DRIVER_ENV[@]}"} ./wstest -m fuzzingclient -s "$REPORTS/fuzzingclient.run.json")
    ;;
client)
    # wstest -m fuzzingserver is the background process; `wsreactor
    # autobahn-client` connects to /getCaseCount, runs /runCase?case=N for
    # every case (echoing every message) and finally calls /updateReports.
    if [ -n "${WSREACTOR_BIN:-}" ]; then
        BIN="$WSREACTOR_BIN"
        log "WSREACTOR_BIN set; skipping cargo build"
        [ -x "$BIN" ] || die "$BIN was not built"
    else
        build_binary
    fi
    KIND=clients; TEMPLATE=fuzzingserver.json; EXPECTED="expected-results-client"
    BG_NAME=fuzzingserver; BG_LOG="$REPORTS/fuzzingserver.log"; BG_DIR=$HERE
    BG_DESC="wstest -m fuzzingserver on $HOST:$PORT"
    # wstest-loopback.py binds it to 127.0.0.1 (wstest itself binds every
    # interface); -u 0 turns the embedded web server off. The environment is
    # the one the wstest wrapper sets.
    BG_CMD=(env -u PYTHONHOME -u PYTHONPATH PYTHONNOUSERSITE=1
        "LD_LIBRARY_PATH=$HERE/.py27/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        "$HERE/.venv/bin/python" "$HERE/wstest-loopback.py"
        -m fuzzingserver -s "$REPORTS/fuzzingserver.run.json" -u 0)
    DRIVER_NAME="the client"; DRIVER_DIR=$ROOT
    DRIVER_DESC="$BIN autobahn-client"
    DRIVER_CMD=("$BIN" autobahn-client --deflate --url "$SCHEME://$HOST:$PORT" --agent wsreactor
        ${CLIENT_TLS[@]+"${CLIENT_TLS[@]}"})
    ;;
esac
[ "$ALL" = 1 ] && EXPECTED="$EXPECTED-all"

# --- run ---------------------------------------------------------------------------
refuse_busy_port
mkdir -p "$REPORTS"
rm -rf "${REPORTS:?}/$KIND"
write_spec "$HERE/$TEMPLATE" "$REPORTS/${TEMPLATE%.json}.run.json"

log "starting $BG_DESC (log: ${BG_LOG#"$ROOT"/})"
start_background "$BG_LOG" "$BG_DIR" "${BG_CMD[@]}"
wait_for_port "$BG_NAME" "$BG_LOG"

log "running $DRIVER_DESC over $SCHEME:// (cases: $([ "$ALL" = 1 ] && echo all || echo "per $TEMPLATE"))"
run_driver "$DRIVER_DIR" "${DRIVER_CMD[@]}"
finish_and_summarize "$REPORTS/$KIND/index.json" "$HERE/$EXPECTED.json"
