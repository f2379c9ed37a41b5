#!/usr/bin/env bash
# Size and CPU of compressed capture: the same synthetic day (replay
# --synthetic --seed 1, 400 instruments: 200 quote + 200 full, COUNT ticks at
# RATE ticks/s) captured by `tickcap run` plain and with zstd at levels 1, 3
# and 9. Prints the file size, the ratio to plain, and the writer thread's
# CPU per million ticks (from /proc).
#
#   tools/zstd_sizes.sh [COUNT=1600000] [RATE=200000] [KEEP_DIR]
#
# With KEEP_DIR, the plain capture is kept there (for the pandas/Parquet runs).
set -euo pipefail
count=${1:-1600000}
rate=${2:-200000}
keep=${3:-}
cd "$(dirname "$0")/.."
cargo build --release --bin tickcap -q
bin=$PWD/target/release/tickcap
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
hz=$(getconf CLK_TCK)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
thread_ticks() {
  local sum=0
  for t in /proc/$1/task/*; do
    if [ "$(cat "$t/comm" 2>/dev/null)" = "$2" ]; then sum=$((sum + $(awk '{print $14+$15}' "$t/stat"))); fi
  done
  echo $sum
}
plain_size=0
printf '%-8s %14s %8s %22s %10s\n' level bytes ratio "writer CPU s/M ticks" lossless
for level in none 1 3 9; do
  port=$(free_port)
  sport=$(free_port)
  "$bin" replay --listen "127.0.0.1:$port" --synthetic --seed 1 --rate "$rate" --count "$count" > "$work/replay.json" 2>/dev/null &
  feed=$!
  dir="$work/$level"
  comp=""
  [ "$level" != none ] && comp=$'compression = "zstd"\nzstd_level = '"$level"
  cat > "$work/t.toml" <<TOML
[kite]
url = "ws://127.0.0.1:$port"
api_key = "k"
access_token = "t"
[storage]
data_dir = "$dir"
$comp
[status]
listen = "127.0.0.1:$sport"
[primary]
mode = "quote"
instruments = [$(seq -s, 257 256 51200)]
[secondary]
mode = "full"
instruments = [$(seq -s, 51457 256 102400)]
TOML
  "$bin" run --config "$work/t.toml" 2> "$work/run.log" &
  run=$!
  # until the writer has written COUNT lines
  for _ in $(seq 1 1200); do
    sleep 0.5
    n=$(curl -s "http://127.0.0.1:$sport/metrics" | python3 -c 'import json,sys; print(json.load(sys.stdin)["lines_written"])' 2>/dev/null || echo 0)
    [ "$n" -ge "$count" ] && break
  done
  w=$(thread_ticks $run tickcap-writer)
  kill -TERM $run; wait $run || true
  kill $feed 2>/dev/null; wait $feed 2>/dev/null || true
  file=$(ls "$dir"/market_data_* | head -1)
  bytes=$(stat -c %s "$file")
  if [ "$level" = none ]; then
    plain_size=$bytes
    lines=$(wc -l < "$file")
    [ -n "$keep" ] && mkdir -p "$keep" && cp "$file" "$keep/"
  else
    lines=$("$bin" storage --json --data-dir "$dir" | python3 -c 'import json,sys; print(json.load(sys.stdin)["files"][0]["ticks"])')
  fi
  python3 - "$level" "$bytes" "$plain_size" "$w" "$hz" "$lines" "$count" <<'PY'
import sys
level, b, plain, w, hz, lines, count = sys.argv[1], *map(float, sys.argv[2:])
print(f"{level:<8} {b:>14,.0f} {plain / b:>7.2f}x {w / hz / (lines / 1e6):>22.2f} {'yes' if lines >= count else f'NO ({lines:.0f})':>10}")
PY
done
