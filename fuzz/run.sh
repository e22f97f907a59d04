#!/usr/bin/env bash
# Build and run every fuzz target for SECONDS each (default 60), then print
# a summary table (executions per second, coverage, features, crashes).
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# Each target runs on fuzz/seeds/<target> (committed, read only) plus
# fuzz/corpus/<target> (git-ignored; new inputs go there). A crashing input
# is left under fuzz/artifacts/<target>/ and makes the script exit 1; libFuzzer's
# full output is kept in fuzz/target/run-logs/<target>.log.
#
# Needs only stable Rust and a C++ compiler (libFuzzer is built from source
# by libfuzzer-sys): RUSTC_BOOTSTRAP=1 lets stable rustc accept the
# -Zsanitizer and -C llvm-args flags cargo-fuzz passes. See fuzz/README.md.
#
# FUZZ_SANITIZER=address (or leak, memory, thread) builds with that
# sanitizer; the default is none: the crate's few `unsafe` uses are listed
# in fuzz/README.md, and AddressSanitizer costs about 3.4x in executions per
# second.
set -euo pipefail

secs=${1:-60}
shift || true
if ! [[ $secs =~ ^[0-9]+$ ]] || [ "$secs" -eq 0 ]; then
    echo "usage: $0 [SECONDS] [TARGET...]" >&2
    exit 2
fi

fuzz_dir=$(cd "$(dirname "$0")" && pwd)
cd "$fuzz_dir/.."

export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
if ! command -v "${CXX:-c++}" >/dev/null 2>&1; then
    echo "no C++ compiler (${CXX:-c++}): libFuzzer needs one (apt-get install g++)" >&2
    exit 2
fi

all_targets=(
    frame_header
    decoder_chunked
    connection_server
    connection_client
    handshake_request
    handshake_response
    utf8_differential
    mask_differential
    deflate_roundtrip
    inflate_bounded
    negotiate
    topics_fanout
    request_fields
    gateway
    shared_broker
)
if [ $# -gt 0 ]; then
    targets=("$@")
else
    targets=("${all_targets[@]}")
fi

# Longest input per target: enough for every path, small enough to stay fast.
# The handshake targets go past the default 8192-byte header limit.
max_len_of() {
    case $1 in
        frame_header) echo 32 ;;
        decoder_chunked | connection_server | connection_client) echo 4096 ;;
        handshake_request | handshake_response) echo 10240 ;;
        utf8_differential) echo 1024 ;;
        mask_differential) echo 256 ;;
        deflate_roundtrip | inflate_bounded) echo 4096 ;;
        negotiate) echo 1024 ;;
        topics_fanout) echo 3072 ;;
        request_fields) echo 512 ;;
        gateway) echo 4096 ;;
        shared_broker) echo 1024 ;;
        *)
            echo "unknown target $1" >&2
            exit 2
            ;;
    esac
}

sanitizer=${FUZZ_SANITIZER:-none}
echo "== building ${#targets[@]} target(s), sanitizer: $sanitizer"
build_start=$(date +%s)
if [ $# -gt 0 ]; then
    for t in "${targets[@]}"; do
        cargo fuzz build --sanitizer "$sanitizer" "$t"
    done
else
    cargo fuzz build --sanitizer "$sanitizer"
fi
build_secs=$(($(date +%s) - build_start))
echo "== build took ${build_secs}s"
# Run the binaries just built (not `cargo fuzz run`, which rebuilds first):
# every target then fuzzes the same build even if the tree changes meanwhile.
host=$(rustc -vV | sed -n 's/^host: //p')
bin_dir=fuzz/target/$host/release

logs=fuzz/target/run-logs
mkdir -p "$logs"
failed=0
rows=()
new_artifacts=()
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    args=(
        "-max_total_time=$secs"
        "-max_len=$(max_len_of "$t")"
        -rss_limit_mb=2048
        -timeout=10
        -print_final_stats=1
    )
    case $t in
        handshake_*) args+=("-dict=fuzz/ws.dict") ;;
        negotiate) args+=("-dict=fuzz/deflate.dict") ;;
        gateway) args+=("-dict=fuzz/gateway.dict") ;;
    esac
    before=$(find "fuzz/artifacts/$t" -type f | sort)
    echo "== $t: ${secs}s"
    result=ok
    if ! "$bin_dir/$t" "-artifact_prefix=fuzz/artifacts/$t/" "${args[@]}" \
        "fuzz/corpus/$t" "fuzz/seeds/$t" >"$logs/$t.log" 2>&1; then
        result=FAILED
        failed=1
        grep -E "panicked|ERROR: libFuzzer|SUMMARY|Test unit written|deadly signal" \
            "$logs/$t.log" | head -20 || true
    fi
    found=$(comm -13 <(echo "$before") <(find "fuzz/artifacts/$t" -type f | sort) | sed '/^$/d')
    crashes=0
    if [ -n "$found" ]; then
        crashes=$(wc -l <<<"$found")
        mapfile -t -O "${#new_artifacts[@]}" new_artifacts <<<"$found"
    fi
    # The final stats, and cov/ft/corpus from the last status line.
    execs=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logs/$t.log" | tail -1)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log" | tail -1)
    last=$(grep -E '^#[0-9]+.* cov: ' "$logs/$t.log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
    rows+=("$(printf '%-20s %9s %11s %6s %7s %7s %8s  %s' "$t" "${execs:-?}" "${runs:-?}" \
        "${cov:-?}" "${ft:-?}" "${corp:-?}" "$crashes" "$result")")
done

echo
echo "== summary: ${secs}s per target, sanitizer $sanitizer, build ${build_secs}s"
printf '%-20s %9s %11s %6s %7s %7s %8s  %s\n' \
    target execs/s runs cov ft corpus crashes result
for r in "${rows[@]}"; do
    echo "$r"
done
if [ "$failed" -ne 0 ]; then
    echo
    echo "failing inputs (libFuzzer output in $logs/):"
    for a in "${new_artifacts[@]}"; do
        echo "  $a"
    done
    echo "reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run -s $sanitizer <target> <input>"
    echo "minimize:  RUSTC_BOOTSTRAP=1 cargo fuzz tmin -s $sanitizer <target> <input>"
    exit 1
fi
