#!/usr/bin/env bash
# Login storms and wrong-login floods against one sip2d server (docs/BENCHMARKS.md, issue 14).
# Usage: benches/logins.sh [BIN]
# BIN (default target/release/sip2d) is the server measured; the generator is always this
# checkout's target/release/sip2d. The register has the bench account and 50 more
# (bench-00..bench-49, same password). Runs, in order:
#   1. 500 logins at once over one account, the first since start;
#   2. (restart) 500 at once over 50 accounts, the first of each since start;
#   3. the same again, each account having logged in once;
#   4. (restart, login_failure_delay = 0s, the worst case) 10,000 wrong logins from 127.0.0.2
#      for an account that has logged in, then 2,000 for one that has not, while a correct
#      login from 127.0.0.1 probes every 100 ms; the server's resident memory is sampled.
set -euo pipefail
cd "$(dirname "$0")/.."
GEN=target/release/sip2d
BIN="${1:-$GEN}"
PORT="${PORT:-16160}"
work=$(mktemp -d)
server=
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"' EXIT
"$GEN" bench --write-register "$work/bench.jsonl" --register-patrons 10 --register-items 10 \
  --register-accounts 50 >/dev/null
"$BIN" --data "$work/data" init >/dev/null
"$BIN" --data "$work/data" import "$work/bench.jsonl" >/dev/null
limits='[limits]\nmax_connections = 2000\nmax_connections_per_address = 2000\n'
printf "[[listen]]\naddress = \"127.0.0.1:$PORT\"\n$limits" >"$work/storm.toml"
printf "[[listen]]\naddress = \"127.0.0.1:$PORT\"\n${limits}login_failure_delay = \"0s\"\n" >"$work/flood.toml"
start() {
  "$BIN" --data "$work/data" serve --config "$1" >/dev/null 2>"$work/server.log" &
  server=$!
  sleep 2
}
stop() {
  echo "   server CPU over the run: $(ps -o times= -p "$server" | tr -d ' ') s"
  kill "$server"
  wait "$server" 2>/dev/null || true
  server=
}
start "$work/storm.toml"
echo "== 500 logins at once, one account, its first login since start"
"$GEN" bench --port "$PORT" --login-storm --connections 500 --accounts 1 || true
stop
start "$work/storm.toml"
echo "== 500 logins at once over 50 accounts, the first of each since start"
"$GEN" bench --port "$PORT" --login-storm --connections 500 --accounts 50 || true
echo "== the same again: each account has logged in once"
"$GEN" bench --port "$PORT" --login-storm --connections 500 --accounts 50 || true
stop
start "$work/flood.toml"
"$GEN" bench --port "$PORT" --login-storm --connections 1 >/dev/null || true
echo "== 10,000 wrong logins for an account that has logged in (bench), from 127.0.0.2"
"$GEN" bench --port "$PORT" --wrong-logins 10000 --flood-from 127.0.0.2 --server-pid "$server" || true
echo "== 2,000 wrong logins for an account that has not logged in since start (bench-07)"
"$GEN" bench --port "$PORT" --wrong-logins 2000 --flood-account bench-07 --flood-from 127.0.0.2 \
  --server-pid "$server" || true
stop
