#!/usr/bin/env bash
# Where a sip2d build's CPU goes over a long run, by thread: the load generator drives one
# server for DURATION (long enough to take in checkpoints, which the 4 s cells of ab.sh mostly
# miss), then each thread's CPU seconds are read from /proc.
# Usage: BIN=/path/to/sip2d [DURATION=60s] [CONN=16] [MIX=status,checkout,checkin] benches/threads.sh
set -euo pipefail
cd "$(dirname "$0")/.."
GEN=target/release/sip2d
BIN="${BIN:-$GEN}"
PORT="${PORT:-16460}"
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"' EXIT
"$GEN" bench --write-register "$work/bench.jsonl" --register-patrons 2000 --register-items 2000 >/dev/null
"$BIN" --data "$work/d" init >/dev/null
"$BIN" --data "$work/d" import "$work/bench.jsonl" >/dev/null
printf '[[listen]]\naddress = "127.0.0.1:%s"\n[limits]\nmax_connections = 12000\nmax_connections_per_address = 12000\nlogin_timeout = "10m"\n' "$PORT" >"$work/c.toml"
"$BIN" --data "$work/d" serve --config "$work/c.toml" >/dev/null 2>"$work/log" & pid=$!
sleep 2
threads() {
  for t in /proc/"$pid"/task/*; do
    echo "$(tr ' ' _ <"$t/comm") $(awk '{print $14 + $15}' "$t/stat")"
  done | awk '{a[$1] += $2} END {for (k in a) print k, a[k]}' | sort
}
threads >"$work/t0"
"$GEN" bench --port "$PORT" --duration "${DURATION:-60s}" --warmup 1s --connections "${CONN:-16}" \
  --mix "${MIX:-status,checkout,checkin}" --server-pid "$pid" | tail -n 2
threads >"$work/t1"
ticks=$(getconf CLK_TCK)
join "$work/t0" "$work/t1" | awk -v t="$ticks" '$3 > $2 {printf "%-18s %7.2f s\n", $1, ($3 - $2) / t}'
