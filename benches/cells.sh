#!/usr/bin/env bash
# A few bench cells against one sip2d server, each with the server's CPU per request: the quick
# before-and-after measure behind docs/BENCHMARKS.md's step-by-step table.
# Usage: benches/cells.sh [BIN] -- "--connections 16" "--connections 128 --mix checkout,checkin" ...
# BIN (default target/release/sip2d) is the server measured; the generator is always this
# checkout's target/release/sip2d. Each cell: 1 s warm-up, DURATION (4s) measured. THREADS=1
# also prints each of the server's threads' CPU seconds over the cell (with DURATION=60s, a
# cell takes in checkpoints, which 4 s cells mostly miss). EXTRA is appended to the server's
# configuration (printf format), e.g. EXTRA='[store]\ncheckpoint_nice = 0'.
set -euo pipefail
cd "$(dirname "$0")/.."
GEN=target/release/sip2d
BIN=$GEN
if [ "${1:-}" != "--" ]; then BIN="${1:-$GEN}"; shift || true; fi
[ "${1:-}" = "--" ] && shift
PORT="${PORT:-16150}"
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
"$GEN" bench --write-register "$work/bench.jsonl" --register-patrons 2000 --register-items 2000 >/dev/null
"$BIN" --data "$work/data" init >/dev/null
"$BIN" --data "$work/data" import "$work/bench.jsonl" >/dev/null
printf '[[listen]]\naddress = "127.0.0.1:%s"\n[limits]\nmax_connections = 12000\nmax_connections_per_address = 12000\nlogin_timeout = "10m"\n'"${EXTRA:-}"'\n' "$PORT" >"$work/c.toml"
"$BIN" --data "$work/data" serve --config "$work/c.toml" >/dev/null 2>"$work/server.log" &
server=$!
sleep 2
# shellcheck source=benches/threads.sh
. benches/threads.sh
for args in "$@"; do
  threads "$server" >"$work/t0"
  # shellcheck disable=SC2086
  line=$("$GEN" bench --port "$PORT" --duration "${DURATION:-4s}" --warmup 1s --json --server-pid "$server" $args)
  rps=$(printf '%s' "$line" | grep -o '"throughput":[0-9.]*' | cut -d: -f2)
  cpu=$(printf '%s' "$line" | grep -o '"server_cpu_us_per_request":[0-9.]*' | cut -d: -f2)
  p99=$(printf '%s' "$line" | grep -o '"latency":{[^}]*}' | grep -o '"p99_us":[0-9]*' | cut -d: -f2)
  printf '%-45s %10.0f req/s  %6.1f µs CPU/req  p99 %s µs\n' "$args" "$rps" "${cpu:-0}" "$p99"
  if [ -n "${THREADS:-}" ]; then
    threads "$server" >"$work/t1"
    join "$work/t0" "$work/t1" | awk -v t="$(getconf CLK_TCK)" '$3 > $2 {printf "  %-18s %7.2f s\n", $1, ($3 - $2) / t}'
  fi
done
