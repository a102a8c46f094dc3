#!/usr/bin/env bash
# Reproduces the published server benchmark in docs/BENCHMARKS.md: sip2d serve and the
# generator (`sip2d bench`) on one machine, each cell measured next to the --null ceiling in
# the same run. Usage: cargo build --release && benches/published.sh [OUT.jsonl]
# DURATION and WARMUP (default 5s, 2s) set the time per cell; BIN another sip2d to measure.
# Each sip2d cell also says the server's CPU per request (user + system time of the server
# process over the cell, logins and warm-up included, divided by the requests measured).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${BIN:-target/release/sip2d}"
DURATION="${DURATION:-5s}"
WARMUP="${WARMUP:-2s}"
OUT="${1:-/tmp/sip2d-published.jsonl}"
PORT="${PORT:-16100}"
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

"$BIN" bench --write-register "$work/bench.jsonl" --register-patrons 2000 --register-items 2000 >/dev/null
"$BIN" --data "$work/data" init >/dev/null
"$BIN" --data "$work/data" import "$work/bench.jsonl" >/dev/null
cat >"$work/sip2d.toml" <<TOML
[[listen]]
address = "127.0.0.1:$PORT"
[limits]
max_connections = 12000
max_connections_per_address = 12000
login_timeout = "10m"
TOML
"$BIN" --data "$work/data" serve --config "$work/sip2d.toml" >/dev/null 2>"$work/server.log" &
server=$!
sleep 2
: >"$OUT"
ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }
hz=$(getconf CLK_TCK)
run() { # label, then bench arguments
  local label=$1; shift
  local before after line
  before=$(ticks)
  line=$("$BIN" bench --duration "$DURATION" --warmup "$WARMUP" --json "$@" || true)
  after=$(ticks)
  local requests cpu
  requests=$(printf '%s' "$line" | grep -o '"requests":[0-9]*' | head -n 1 | cut -d: -f2)
  cpu=$(awk -v t="$((after - before))" -v hz="$hz" -v n="${requests:-0}" 'BEGIN { printf "%.1f", (n > 0 ? t * 1e6 / hz / n : 0) }')
  printf '%s\n' "$line" | sed "s/^{/{\"label\":\"$label\",\"server_cpu_us_per_request\":$cpu,/" >>"$OUT"
}
for c in 1 16 128 1024; do
  run "null mixed" --null --connections "$c"
  run "sip2d mixed" --port "$PORT" --connections "$c"
  run "null status" --null --connections "$c" --mix status
  run "sip2d status" --port "$PORT" --connections "$c" --mix status
done
run "null writes" --null --connections 128 --mix checkout,checkin
run "sip2d writes" --port "$PORT" --connections 128 --mix checkout,checkin
rss() { awk '/VmRSS/ {print $2}' "/proc/$server/status"; }
echo "{\"label\":\"rss before idle\",\"kib\":$(rss)}" >>"$OUT"
run "sip2d status, 16 busy" --port "$PORT" --connections 16 --mix status
"$BIN" bench --port "$PORT" --connections 16 --mix status --duration "$DURATION" --warmup "$WARMUP" --json --idle 10000 \
  | sed 's/^{/{"label":"sip2d status, 16 busy + 10000 idle",/' >>"$OUT" &
bench=$!
sleep $(( ${WARMUP%s} + 1 ))
echo "{\"label\":\"rss with 10000 idle\",\"kib\":$(rss)}" >>"$OUT"
wait "$bench"
echo "results in $OUT"
