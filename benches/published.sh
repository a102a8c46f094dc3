#!/usr/bin/env bash
# Reproduces the published server benchmark in docs/BENCHMARKS.md: sip2d serve, and two
# ceilings that pay the same costs, each in a process of its own beside the generator
# (`sip2d bench`) on one machine:
#   - canned: `sip2d serve --null`, a fixed success reply per request (no register, no disk);
#   - floor:  benches/floor.rs, the least a durable server can do (one writer decides 11 and 09
#             in memory, appends the batch to a file and fdatasyncs it before replying).
# Every cell reports the server's CPU per request over the measured window (`--server-pid`).
# Usage: cargo build --release && cargo bench --bench floor --no-run && benches/published.sh [OUT.jsonl]
# DURATION and WARMUP (default 5s, 2s) set the time per cell; BIN another sip2d to measure.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${BIN:-target/release/sip2d}"
GEN="${GEN:-target/release/sip2d}"
FLOOR="${FLOOR:-$(ls -t target/release/deps/floor-* 2>/dev/null | grep -v '\.d$' | head -n 1)}"
[ -x "$FLOOR" ] || { echo "build the floor first: cargo bench --bench floor --no-run"; exit 2; }
DURATION="${DURATION:-5s}"
WARMUP="${WARMUP:-2s}"
OUT="${1:-/tmp/sip2d-published.jsonl}"
PORT="${PORT:-16100}"
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

"$GEN" bench --write-register "$work/bench.jsonl" --register-patrons 2000 --register-items 2000 >/dev/null
"$BIN" --data "$work/data" init >/dev/null
"$BIN" --data "$work/data" import "$work/bench.jsonl" >/dev/null
cat >"$work/sip2d.toml" <<TOML
ops_listen = "127.0.0.1:$((PORT + 3))"
[[listen]]
address = "127.0.0.1:$PORT"
[limits]
max_connections = 12000
max_connections_per_address = 12000
login_timeout = "10m"
TOML
"$BIN" --data "$work/data" serve --config "$work/sip2d.toml" >/dev/null 2>"$work/server.log" &
sip2d=$!
"$GEN" serve --null --listen "127.0.0.1:$((PORT + 1))" --config "$work/sip2d.toml" >/dev/null 2>&1 &
canned=$!
"$FLOOR" "127.0.0.1:$((PORT + 2))" "$work/floor" >/dev/null &
floor=$!
pids=("$sip2d" "$canned" "$floor")
sleep 2
: >"$OUT"

run() { # label, server pid, port, then bench arguments
  local label=$1 pid=$2 port=$3; shift 3
  "$GEN" bench --port "$port" --duration "$DURATION" --warmup "$WARMUP" --json --server-pid "$pid" "$@" \
    | sed "s/^{/{\"label\":\"$label\",/" >>"$OUT" || true
}
# Requests per log sync, from the server's metrics (sum and count of units per sync).
syncs() { curl -s "http://127.0.0.1:$((PORT + 3))/metrics" 2>/dev/null \
  | awk '/^sip2d_store_sync_batch_(sum|count)/ {printf "%s ", $2}'; }

for c in 1 16 128 1024; do
  run "canned mixed" "$canned" $((PORT + 1)) --connections "$c"
  run "floor mixed" "$floor" $((PORT + 2)) --connections "$c"
  run "sip2d mixed" "$sip2d" "$PORT" --connections "$c"
done
for c in 16 128; do
  run "canned status" "$canned" $((PORT + 1)) --connections "$c" --mix status
  run "sip2d status" "$sip2d" "$PORT" --connections "$c" --mix status
done
run "floor writes" "$floor" $((PORT + 2)) --connections 128 --mix checkout,checkin
before=$(syncs)
run "sip2d writes" "$sip2d" "$PORT" --connections 128 --mix checkout,checkin
after=$(syncs)
echo "{\"label\":\"sip2d writes syncs\",\"before\":\"$before\",\"after\":\"$after\"}" >>"$OUT"

rss() { awk '/VmRSS/ {print $2}' "/proc/$sip2d/status"; }
echo "{\"label\":\"rss before idle\",\"kib\":$(rss)}" >>"$OUT"
run "sip2d status, 16 busy" "$sip2d" "$PORT" --connections 16 --mix status
"$GEN" bench --port "$PORT" --connections 16 --mix status --duration "$DURATION" --warmup "$WARMUP" --json --idle 10000 \
  | sed 's/^{/{"label":"sip2d status, 16 busy + 10000 idle",/' >>"$OUT" &
bench=$!
sleep $(( ${WARMUP%s} + 1 ))
echo "{\"label\":\"rss with 10000 idle\",\"kib\":$(rss)}" >>"$OUT"
wait "$bench"
echo "results in $OUT"
