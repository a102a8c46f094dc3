#!/usr/bin/env bash
# Two sip2d builds side by side, with the canned responder (and the durable floor) as
# ceilings, cell after cell in alternation: the before-and-after measure on a machine whose
# speed drifts from minute to minute (each round compares like with like within a minute).
# Usage: A=/path/to/old/sip2d [B=target/release/sip2d] [ROUNDS=3] [CONN=16] [MIX=status]
#        [FLOOR=1] [DURATION=4s] [THREADS=1] benches/ab.sh
# The floor needs `cargo bench --bench floor --no-run` first. Each cell: 1 s warm-up, DURATION (4 s)
# measured, and the server's CPU per request over the measured window; THREADS=1 shares it out
# among the server's threads (by name), as their part of its CPU over the cell.
set -euo pipefail
cd "$(dirname "$0")/.."
GEN=target/release/sip2d
A="${A:?A= the sip2d binary to compare with}"
B="${B:-$GEN}"
PORT="${PORT:-16450}"
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
"$GEN" bench --write-register "$work/bench.jsonl" --register-patrons 2000 --register-items 2000 >/dev/null
conf() {
  printf '[[listen]]\naddress = "127.0.0.1:%s"\n[limits]\nmax_connections = 12000\nmax_connections_per_address = 12000\nlogin_timeout = "10m"\n' "$1" >"$work/c$1.toml"
  echo "$work/c$1.toml"
}
for x in a b; do
  bin=$A; [ $x = b ] && bin=$B
  "$bin" --data "$work/$x" init >/dev/null
  "$bin" --data "$work/$x" import "$work/bench.jsonl" >/dev/null
done
"$A" --data "$work/a" serve --config "$(conf "$PORT")" >/dev/null 2>"$work/a.log" & sa=$!
"$B" --data "$work/b" serve --config "$(conf $((PORT + 1)))" >/dev/null 2>"$work/b.log" & sb=$!
"$GEN" serve --null --listen "127.0.0.1:$((PORT + 2))" --config "$(conf $((PORT + 3)))" >/dev/null 2>&1 & canned=$!
pids=("$sa" "$sb" "$canned")
if [ -n "${FLOOR:-}" ]; then
  floor_bin=$(ls -t target/release/deps/floor-* | grep -v '\.d$' | head -n 1)
  "$floor_bin" "127.0.0.1:$((PORT + 4))" "$work/floor" >/dev/null & floor=$!
  pids+=("$floor")
fi
sleep 2
# shellcheck source=benches/threads.sh
. benches/threads.sh
cell() {
  [ -n "${THREADS:-}" ] && threads "$3" >"$work/t0"
  # shellcheck disable=SC2086
  line=$("$GEN" bench --port "$2" --duration "${DURATION:-4s}" --warmup 1s --json --server-pid "$3" --connections "${CONN:-16}" --mix "${MIX:-status}")
  rps=$(printf '%s' "$line" | grep -o '"throughput":[0-9.]*' | cut -d: -f2)
  cpu=$(printf '%s' "$line" | grep -o '"server_cpu_us_per_request":[0-9.]*' | cut -d: -f2)
  printf '%-7s %9.0f req/s %6.1f µs CPU/req\n' "$1" "$rps" "${cpu:-0}"
  if [ -n "${THREADS:-}" ]; then
    # The server's CPU a request shared out by the threads' part of it over the cell.
    threads "$3" >"$work/t1"
    join "$work/t0" "$work/t1" | awk -v c="${cpu:-0}" '{d[$1] = $3 - $2; s += $3 - $2}
      END {for (k in d) if (d[k] > 0) printf "  %-18s %5.1f µs\n", k, c * d[k] / s}' | sort
  fi
}
echo "connections ${CONN:-16}, mix ${MIX:-status}"
for _ in $(seq "${ROUNDS:-3}"); do
  cell A "$PORT" "$sa"
  cell B $((PORT + 1)) "$sb"
  cell canned $((PORT + 2)) "$canned"
  if [ -n "${FLOOR:-}" ]; then cell floor $((PORT + 4)) "$floor"; fi
done
