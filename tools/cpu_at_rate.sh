#!/usr/bin/env bash
# CPU cost of `tickcap run` at a real full subscription: 9,000 instruments
# (3 connections × 3,000) fed by `tickcap replay --synthetic --rate RATE` on
# loopback, measured from /proc over a window after a warm-up. Prints the
# share of one core used by the whole process and by its threads, and the
# CPU time per tick. Then measures the replay feed itself while idle (after
# --count, and between paced sends).
#
#   tools/cpu_at_rate.sh [RATE=9000] [SECONDS=20]
#   SERVE=1 tools/cpu_at_rate.sh ...   # the same with the hub ([serve]) on, no client
#   CANDLES=1 tools/cpu_at_rate.sh ... # the same with [candles] 1m, 5m, 15m built live
#   SEND_EVERY=100 tools/cpu_at_rate.sh ... # the feed sends each connection's due ticks together
#                                          # every 100 ms (Kite's shape: many packets a message)
set -euo pipefail
rate=${1:-9000}
secs=${2:-20}
cd "$(dirname "$0")/.."
cargo build --release --bin tickcap -q
bin=target/release/tickcap
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
hz=$(getconf CLK_TCK)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
thread_ticks() { # name -> ticks
  local pid=$1 name=$2 sum=0
  for t in /proc/$pid/task/*; do
    if [ "$(cat "$t/comm" 2>/dev/null)" = "$name" ]; then
      sum=$((sum + $(awk '{print $14+$15}' "$t/stat")))
    fi
  done
  echo $sum
}

feed_port=$(free_port)
status_port=$(free_port)
"$bin" replay --listen "127.0.0.1:$feed_port" --synthetic --rate "$rate" ${SEND_EVERY:+--send-every "$SEND_EVERY" --batch 65535} > "$work/replay.json" 2>/dev/null &
feed=$!
list() { seq -s, "$1" "$2"; }
cat > "$work/tickcap.toml" <<TOML
[kite]
url = "ws://127.0.0.1:$feed_port"
api_key = "k"
access_token = "t"
[storage]
data_dir = "$work/md"
[status]
listen = "127.0.0.1:$status_port"
[primary]
mode = "quote"
instruments = [$(list 1000 3999)]
[secondary]
mode = "full"
instruments = [$(list 4000 6999)]
[tertiary]
mode = "quote"
instruments = [$(list 7000 9999)]
TOML
if [ -n "${CANDLES:-}" ]; then
  printf '[candles]\nintervals = ["1m", "5m", "15m"]\n' >> "$work/tickcap.toml"
fi
if [ -n "${SERVE:-}" ]; then
  printf '[serve]\nlisten = "127.0.0.1:%s"\n' "$(free_port)" >> "$work/tickcap.toml"
fi
"$bin" run --config "$work/tickcap.toml" 2> "$work/run.log" &
run=$!
sleep 5 # connect, subscribe 9,000 instruments, reach the steady rate
t0=$(cpu_ticks $run); l0=$(thread_ticks $run tickcap-loop); w0=$(thread_ticks $run tickcap-writer); h0=$(thread_ticks $run tickcap-hub); j0=$(thread_ticks $run tickcap-journal)
metric() { curl -s "http://127.0.0.1:$status_port/metrics" | python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
n0=$(metric '["ticks_received"]'); fr0=$(metric '["frames"]')
sleep "$secs"
t1=$(cpu_ticks $run); l1=$(thread_ticks $run tickcap-loop); w1=$(thread_ticks $run tickcap-writer); h1=$(thread_ticks $run tickcap-hub); j1=$(thread_ticks $run tickcap-journal)
n1=$(metric '["ticks_received"]'); fr1=$(metric '["frames"]')
p99=$(metric '["latency"]["receive_to_ring_us"]["p99"]')
w99=$(metric '["latency"]["receive_to_written_us"]["p99"]'); wmax=$(metric '["latency"]["receive_to_written_us"]["max"]' 2>/dev/null || echo 0)
ticks=$((n1 - n0))
python3 - "$hz" "$secs" "$ticks" "$((t1 - t0))" "$((l1 - l0))" "$((w1 - w0))" "$p99" "$((fr1 - fr0))" "$w99" "$((h1 - h0))" "$((j1 - j0))" "$wmax" <<'PY'
import sys
hz, secs, ticks, total, loop, writer, p99, frames, w99, hub, journal, wmax = (float(x) for x in sys.argv[1:])
pct = lambda t: 100.0 * t / hz / secs
print(f"tickcap run: {ticks / secs:,.0f} ticks/s in {frames / secs:,.0f} frames/s over 9,000 instruments for {secs:.0f} s")
print(f"  CPU: {pct(total):.1f}% of one core (event loop {pct(loop):.1f}%, writer {pct(writer):.1f}%, journal {pct(journal):.1f}%, hub {pct(hub):.1f}%)")
print(f"  CPU per tick: {total / hz / max(ticks, 1) * 1e6:.2f} µs; receive→ring p99 {p99} µs; receive→written p99 {w99 / 1000:.1f} ms, max {wmax / 1000:.1f} ms")
PY
kill -TERM $run; wait $run || true
# The feed, idle: no client at all for a few seconds.
f0=$(cpu_ticks $feed); sleep 5; f1=$(cpu_ticks $feed)
python3 -c "import sys; print(f'tickcap replay idle (no client): {100.0*($f1-$f0)/$hz/5:.1f}% of one core')"
kill $feed 2>/dev/null; wait $feed 2>/dev/null || true
# The feed after --count with a client connected (heartbeats only).
feed_port=$(free_port)
"$bin" replay --listen "127.0.0.1:$feed_port" --synthetic --rate 100000 --count 1000 > /dev/null 2>&1 &
feed=$!
sed -i "s/127.0.0.1:[0-9]*\"$/127.0.0.1:$feed_port\"/" "$work/tickcap.toml"
sed -i "s|^url = .*|url = \"ws://127.0.0.1:$feed_port\"|" "$work/tickcap.toml"
status_port=$(free_port); sed -i "s|^listen = .*|listen = \"127.0.0.1:$status_port\"|" "$work/tickcap.toml"
"$bin" run --config "$work/tickcap.toml" 2> "$work/run2.log" &
run=$!
sleep 4
f0=$(cpu_ticks $feed); sleep 5; f1=$(cpu_ticks $feed)
python3 -c "print(f'tickcap replay after --count, 3 clients connected: {100.0*($f1-$f0)/$hz/5:.1f}% of one core')"
r0=$(cpu_ticks $run); sleep 5; r1=$(cpu_ticks $run)
python3 -c "print(f'tickcap run with a silent feed (heartbeats only): {100.0*($r1-$r0)/$hz/5:.1f}% of one core')"
kill -TERM $run; wait $run || true
