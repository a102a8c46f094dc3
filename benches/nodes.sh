#!/usr/bin/env bash
# Issue 18's benchmark: the mix (23, 11, 09 per connection on its own item) at 16 and 128
# connections on one node with sled, one node on PostgreSQL, and three nodes on one PostgreSQL
# database (the connections spread evenly, each node's share on items of its own). For each
# cell: requests/s, p99, errors, the sip2d servers' CPU per request (over the measured window)
# and PostgreSQL's (every postgres process's user + system time over the whole run, warm-up
# included, divided by the requests that rate makes in that time).
# Usage: [MIX=status] benches/nodes.sh [OUT.txt]   (needs target/release/sip2d and psql; the PostgreSQL
# server in SIP2D_BENCH_POSTGRES, default "host=127.0.0.1 user=postgres"; about 2 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/sip2d
PG="${SIP2D_BENCH_POSTGRES:-host=127.0.0.1 user=postgres}"
DURATION="${DURATION:-5s}"
MIX="${MIX:-status,checkout,checkin}"
WARMUP="${WARMUP:-2s}"
OUT="${1:-/dev/stdout}"
work=$(mktemp -d)
servers=()
db="sip2d_bench_$$"
cleanup() {
  for s in "${servers[@]}"; do kill "$s" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$PG dbname=postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# One register, three item ranges (IA…, IB…, IC…), 200 patrons.
for p in A B C; do
  "$BIN" bench --write-register "$work/r$p.jsonl" --register-patrons 200 --register-items 200 --item-prefix "I$p" >/dev/null
done
cat "$work/rA.jsonl" "$work/rB.jsonl" "$work/rC.jsonl" >"$work/register.jsonl"

# CPU seconds (user + system) of every process named postgres.
pg_cpu() {
  local total=0 pid
  for pid in $(pgrep -x postgres || true); do
    [ -r "/proc/$pid/stat" ] || continue
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
ticks=$(getconf CLK_TCK)

# Starts a node: serve_node NAME DATA CONFIG PORT
serve_node() {
  printf '[[listen]]\naddress = "127.0.0.1:%s"\n[limits]\nmax_connections = 2000\nmax_connections_per_address = 2000\n%s' \
    "$4" "$(cat "$3")" >"$work/$1.toml"
  "$BIN" --data "$2" serve --config "$work/$1.toml" >/dev/null 2>"$work/$1.log" &
  servers+=($!)
}

# Runs the mix against PORTS (one per node) with CONNECTIONS spread over them; prints a row.
cell() {
  local label=$1 connections=$2; shift 2
  local ports=("$@") n=${#ports[@]} i pids=() before after
  before=$(pg_cpu)
  for i in "${!ports[@]}"; do
    local c=$(((connections + n - 1 - i) / n)) prefix
    prefix=$(printf 'I%s' "$(echo ABC | cut -c$((i + 1)))")
    "$BIN" bench --port "${ports[$i]}" --connections "$c" --duration "$DURATION" --warmup "$WARMUP" \
      --item-prefix "$prefix" --login bench:bench-password --mix "$MIX" --json \
      --server-pid "${servers[$((${#servers[@]} - n + i))]}" >"$work/cell$i.json" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  after=$(pg_cpu)
  python3 - "$label" "$connections" "$((after - before))" "$ticks" "$work" "$n" "${DURATION%s}" "${WARMUP%s}" <<'PY' >>"$OUT"
import json, sys
label, conns, pg_ticks, hz, work, n, dur, warm = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[6]), float(sys.argv[7]), float(sys.argv[8])
cells = [json.load(open(f"{work}/cell{i}.json")) for i in range(n)]
rps = sum(c["throughput"] for c in cells)
errors = sum(c["errors"] for c in cells)
cpu = sum((c["server_cpu_us_per_request"] or 0) * c["throughput"] for c in cells) / rps if rps else 0
p99 = max(c["latency"]["p99_us"] for c in cells)
pg = pg_ticks / hz * 1e6 / (rps * (dur + warm)) if rps and pg_ticks else 0
print(f"| {label} | {conns} | {rps:,.0f} | {p99:,} | {errors} | {cpu:.1f} | {pg:.1f} |")
PY
}

echo "| setup | connections | requests/s | p99 µs | errors | sip2d CPU µs/req | PostgreSQL CPU µs/req |" >>"$OUT"
echo "|---|---:|---:|---:|---:|---:|---:|" >>"$OUT"

# One node, sled.
"$BIN" --data "$work/sled" init >/dev/null
"$BIN" --data "$work/sled" import "$work/register.jsonl" >/dev/null
: >"$work/none.toml"
serve_node sled "$work/sled" "$work/none.toml" 16201
sleep 2
for c in 16 128; do cell "one node, sled" "$c" 16201; done
kill "${servers[-1]}"; wait "${servers[-1]}" 2>/dev/null || true

# PostgreSQL: one database, migrated and imported once.
psql "$PG dbname=postgres" -qc "CREATE DATABASE $db" >/dev/null
printf '[store]\nengine = "postgres"\nurl = "%s dbname=%s"\n' "$PG" "$db" >"$work/pg.toml"
"$BIN" --config "$work/pg.toml" migrate >/dev/null
"$BIN" --config "$work/pg.toml" --data "$work/n0" init >/dev/null
"$BIN" --config "$work/pg.toml" --data "$work/n0" import "$work/register.jsonl" >/dev/null
"$BIN" --config "$work/pg.toml" --data "$work/n0" key export -o "$work/key" >/dev/null
for n in 1 2; do "$BIN" --config "$work/pg.toml" --data "$work/n$n" key import "$work/key" >/dev/null; done

serve_node pg1 "$work/n0" "$work/pg.toml" 16211
sleep 2
for c in 16 128; do cell "one node, PostgreSQL" "$c" 16211; done
kill "${servers[-1]}"; wait "${servers[-1]}" 2>/dev/null || true

for n in 0 1 2; do serve_node "pg3-$n" "$work/n$n" "$work/pg.toml" $((16221 + n)); done
sleep 2
for c in 16 128; do cell "three nodes, PostgreSQL" "$c" 16221 16222 16223; done
