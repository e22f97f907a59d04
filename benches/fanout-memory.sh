#!/usr/bin/env bash
# benches/fanout-memory.sh [COUNT]: what a connection and a subscriber cost
# the server, as RSS differences over COUNT (default 10,000) connections.
#
#   1. `wsreactor echo`: RSS with COUNT idle connections (handshake done)
#      minus RSS before, / COUNT: memory per idle connection.
#   2. `wsreactor broadcast` (every connection subscribes to one topic): the
#      same: memory per idle connection with its subscription.
#   3. Then one 20-byte message is published to all of them: memory per
#      subscriber once it has had a delivery (its queue keeps its memory so
#      that later deliveries allocate nothing). The idle connections never
#      read; one message each stays in the kernel's buffers, not in RSS.
#
# Connections come from 127.0.0.2-11 (benches/peers idle-conns). Needs the
# release binary (cargo build --release) and the peers
# (cargo build --release --manifest-path benches/peers/Cargo.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${1:-10000}
WSR=target/release/wsreactor
IDLE=benches/peers/target/release/idle-conns
[[ -x $WSR && -x $IDLE ]] || { echo "build wsreactor and benches/peers first" >&2; exit 2; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

measure() {  # subcommand
  local p; p=$(port)
  "$WSR" "$1" --addr "127.0.0.1:$p" --max-connections 200000 >/dev/null 2>&1 &
  local pid=$!
  sleep 0.5
  local before; before=$(rss "$pid")
  coproc IDLEC { "$IDLE" --addr "127.0.0.1:$p" --count "$COUNT" --hold 120; }
  read -r line <&"${IDLEC[0]}"
  [[ $line == ready* ]] || { echo "idle-conns: $line" >&2; exit 1; }
  sleep 1
  local held; held=$(rss "$pid")
  printf '%-10s %6d connections: %8d KiB before, %8d KiB held: %6.1f B per connection\n' \
    "$1" "$COUNT" "$before" "$held" "$(echo "($held - $before) * 1024 / $COUNT" | bc -l)"
  if [[ $1 == broadcast ]]; then
    # One publish to every subscriber, from one more client.
    python3 - "$p" <<'PY'
import os, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
buf = b""
while b"\r\n\r\n" not in buf:
    buf += s.recv(4096)
payload = b"x" * 20
mask = os.urandom(4)
s.sendall(bytes([0x82, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
s.recv(64)
PY
    sleep 1
    local after; after=$(rss "$pid")
    printf '%-10s after one delivery to each: %8d KiB: %6.1f B more per subscriber\n' \
      "$1" "$after" "$(echo "($after - $held) * 1024 / $COUNT" | bc -l)"
  fi
  kill "$IDLEC_PID" 2>/dev/null || true
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

measure echo
measure broadcast
