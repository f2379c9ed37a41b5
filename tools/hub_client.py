#!/usr/bin/env python3
"""One official Kite client (kiteconnect.KiteTicker) pointed at tickcap's
hub, recording what it receives.

    python3 tools/hub_client.py ws://127.0.0.1:9001 OUT.jsonl MODE TOKEN[,TOKEN...] [--seconds S] [--stop-file F]

It changes nothing but the root URL: it connects, subscribes TOKENs, sets
MODE (ltp, quote or full), and writes one JSON line per tick it receives
(instrument_token, mode, last_price, volume_traded when the mode has it)
to OUT.jsonl, plus {"texts": [...]} for text frames, until S seconds pass
or the stop file appears. A line {"connected": true} is written when the
connection opens (tests wait for it). Exit 0 when it connected and
received at least one tick.
"""
import json
import os
import sys
import threading
import time

from kiteconnect import KiteTicker

url, out_path, mode, tokens = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
tokens = [int(t) for t in tokens.split(",")]
seconds = 30.0
stop_file = None
args = sys.argv[5:]
while args:
    if args[0] == "--seconds":
        seconds = float(args[1])
        args = args[2:]
    elif args[0] == "--stop-file":
        stop_file = args[1]
        args = args[2:]
    else:
        sys.exit(f"unknown argument {args[0]}")

out = open(out_path, "w", buffering=1)
lock = threading.Lock()
count = [0]
connected = threading.Event()

kws = KiteTicker("hub-client", os.environ.get("HUB_TOKEN", "any"), root=url, reconnect=False)


def on_connect(ws, response):
    ws.subscribe(tokens)
    ws.set_mode(mode, tokens)
    with lock:
        out.write(json.dumps({"connected": True}) + "\n")
    connected.set()


def on_ticks(ws, ticks):
    with lock:
        for t in ticks:
            row = {"instrument_token": t["instrument_token"], "mode": t["mode"], "last_price": t["last_price"]}
            if "volume_traded" in t:
                row["volume_traded"] = t["volume_traded"]
            out.write(json.dumps(row) + "\n")
            count[0] += 1


def on_message(ws, payload, is_binary):
    if not is_binary:
        with lock:
            out.write(json.dumps({"text": payload.decode("utf-8", "replace")}) + "\n")


def on_error(ws, code, reason):
    with lock:
        out.write(json.dumps({"error": f"{code}: {reason}"}) + "\n")


kws.on_connect = on_connect
kws.on_ticks = on_ticks
kws.on_message = on_message
kws.on_error = on_error
kws.connect(threaded=True)
end = time.time() + seconds
while time.time() < end and not (stop_file and os.path.exists(stop_file)):
    time.sleep(0.05)
kws.close()
time.sleep(0.2)
with lock:
    out.write(json.dumps({"done": True, "ticks": count[0]}) + "\n")
    out.close()
sys.exit(0 if connected.is_set() and count[0] > 0 else 1)
