#!/usr/bin/env bash
# Patron status against a register of 1 M patrons and 2 M items, next to the same run against
# a small one (2,000 patrons): the p99 ratio is the published figure. For each register it
# also says how long the import took (and its peak memory), how long `sip2d serve` took from
# start to answering on its port, and the server's resident memory then.
# Usage: cargo build --release && benches/large-register.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/sip2d
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
cfg() {
  cat >"$work/$1.toml" <<TOML
[[listen]]
address = "127.0.0.1:$2"
[limits]
max_connections_per_address = 1000
TOML
}
for size in small large; do
  if [ $size = small ]; then p=2000; i=2000; port=16201; else p=1000000; i=2000000; port=16202; fi
  "$BIN" bench --write-register "$work/$size.jsonl" --register-patrons $p --register-items $i >/dev/null
  "$BIN" --data "$work/$size" init >/dev/null
  /usr/bin/time -f "import $size: %e s, %M KiB peak" "$BIN" --data "$work/$size" import "$work/$size.jsonl" >/dev/null
  rm -f "$work/$size.jsonl"
  cfg $size $port
  started=$(date +%s.%N)
  "$BIN" --data "$work/$size" serve --config "$work/$size.toml" >/dev/null 2>&1 &
  server=$!
  # Opening a large register (the log read back, the working set loaded) takes a while.
  for _ in $(seq 6000); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
  echo "start $size: $(echo "$(date +%s.%N) - $started" | bc) s to answer; resident $(awk '/VmRSS/ {print $2}' "/proc/$server/status") KiB"
  # 16 connections spread their patrons over the whole register (--patrons), status only.
  "$BIN" bench --port $port --connections 16 --patrons $p --mix status --duration 10s --warmup 3s --json \
    | sed "s/^{/{\"label\":\"$size register ($p patrons)\",/"
  kill "$server"; wait "$server" 2>/dev/null || true
done
