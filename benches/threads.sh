# Sourced by benches/ab.sh and benches/cells.sh: `threads PID` prints each thread name's CPU
# ticks so far, threads of one name (or numbered alike, as sled's I/O threads) summed, sorted
# for `join`. A thread that ends while it is read is left out.
threads() {
  for t in /proc/"$1"/task/*; do
    echo "$(tr ' ' _ <"$t/comm" 2>/dev/null | sed 's/-[0-9]*$//') $(awk '{print $14 + $15}' "$t/stat" 2>/dev/null)"
  done | awk 'NF == 2 {a[$1] += $2} END {for (k in a) print k, a[k]}' | sort
}
