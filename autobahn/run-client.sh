# shellcheck shell=bash disable=SC2153  # ALL, PORT... are set by run.sh
# Client mode of run.sh (sourced by it after argument parsing and the wstest
# install check; uses its HERE, ROOT, HOST, PORT, ALL, SUMMARY_ARGS,
# START_TIMEOUT, SUITE_TIMEOUT, PDEATH, log/die/port_open/stop_pid, and its
# cleanup trap through SERVER_PID / CLIENT_PID).
#
# wstest -m fuzzingserver is the server; `wsreactor autobahn-client` connects
# to /getCaseCount, runs /runCase?case=N for every case (echoing every
# message) and finally calls /updateReports.

# --- the client under test -----------------------------------------------------
if [ -n "${WSREACTOR_BIN:-}" ]; then
    BIN="$WSREACTOR_BIN"
    log "WSREACTOR_BIN set; skipping cargo build"
else
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release)
    TARGET_DIR="${CARGO_TARGET_DIR:-target}"
    case "$TARGET_DIR" in
        /*) ;;
        *) TARGET_DIR="$ROOT/$TARGET_DIR" ;;
    esac
    BIN="$TARGET_DIR/release/wsreactor"
fi
[ -x "$BIN" ] || die "$BIN was not built"

if port_open; then
    die "something is already listening on $HOST:$PORT; stop it or set AUTOBAHN_PORT"
fi

REPORTS="$HERE/reports"
mkdir -p "$REPORTS"
rm -rf "$REPORTS/clients"
FUZZ_LOG="$REPORTS/fuzzingserver.log"

# --- fuzzingserver spec (port / --all applied to the template) ---------------
SPEC="$REPORTS/fuzzingserver.run.json"
python3 - "$HERE/fuzzingserver.json" "$SPEC" "$HOST" "$PORT" "$ALL" <<'EOF'
import json, sys
src, dst, host, port, run_all = sys.argv[1:]
with open(src) as f:
    spec = json.load(f)
spec["url"] = "ws://%s:%s" % (host, port)
spec["outdir"] = "./reports/clients"
if run_all == "1":
    spec["exclude-cases"] = []
    spec["exclude-agent-cases"] = {}
with open(dst, "w") as f:
    json.dump(spec, f, indent=2)
EOF

# --- the fuzzing server ---------------------------------------------------------
# wstest-loopback.py binds it to 127.0.0.1 (wstest itself binds every
# interface); -u 0 turns the embedded web server off. The environment is the
# one the wstest wrapper sets.
log "starting wstest -m fuzzingserver on $HOST:$PORT (log: ${FUZZ_LOG#"$ROOT"/})"
(
    cd "$HERE" || exit 1
    export LD_LIBRARY_PATH="$HERE/.py27/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export PYTHONNOUSERSITE=1
    unset PYTHONHOME PYTHONPATH
    exec setsid "${PDEATH[@]}" "$HERE/.venv/bin/python" "$HERE/wstest-loopback.py" \
        -m fuzzingserver -s "$SPEC" -u 0
) </dev/null >"$FUZZ_LOG" 2>&1 &
SERVER_PID=$!

deadline=$((SECONDS + START_TIMEOUT))
until port_open; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        status=0; wait "$SERVER_PID" || status=$?
        SERVER_PID=
        log "fuzzingserver exited with status $status before listening on $HOST:$PORT; last lines of its log:"
        tail -n 30 "$FUZZ_LOG" >&2 || true
        exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
        log "fuzzingserver did not listen on $HOST:$PORT within ${START_TIMEOUT}s; last lines of its log:"
        tail -n 30 "$FUZZ_LOG" >&2 || true
        exit 1
    fi
    sleep 0.1
done
log "fuzzingserver is up (pid $SERVER_PID)"

# --- run the suite -------------------------------------------------------------
log "running $BIN autobahn-client (cases: $([ "$ALL" = 1 ] && echo all || echo 'per fuzzingserver.json'))"
t0=$(date +%s.%N)
# In the background + wait, so INT/TERM to this script are handled at once.
(cd "$ROOT" && exec "${PDEATH[@]}" timeout "$SUITE_TIMEOUT" "$BIN" autobahn-client \
    --url "ws://$HOST:$PORT" --agent wsreactor) &
CLIENT_PID=$!
client_status=0
wait "$CLIENT_PID" || client_status=$?
CLIENT_PID=
t1=$(date +%s.%N)
WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')

server_died=0
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    server_died=1
fi
stop_pid "$SERVER_PID" group
SERVER_PID=

log "suite wall time: ${WALL}s"
[ "$client_status" = 124 ] && log "the client timed out after ${SUITE_TIMEOUT}s (AUTOBAHN_SUITE_TIMEOUT)"
[ "$client_status" = 0 ] || log "the client exited with status $client_status"
if [ "$server_died" = 1 ]; then
    log "the fuzzing server exited during the suite; last lines of its log:"
    tail -n 30 "$FUZZ_LOG" >&2 || true
fi
[ -f "$REPORTS/clients/index.json" ] || die "no reports/clients/index.json produced"

EXPECTED="$HERE/expected-results-client.json"
[ "$ALL" = 1 ] && EXPECTED="$HERE/expected-results-client-all.json"
summary_status=0
python3 "$HERE/summarize.py" --index "$REPORTS/clients/index.json" \
    --expected "$EXPECTED" ${SUMMARY_ARGS[@]+"${SUMMARY_ARGS[@]}"} || summary_status=$?

if [ "$client_status" != 0 ] || [ "$server_died" = 1 ]; then
    exit 1
fi
exit "$summary_status"
