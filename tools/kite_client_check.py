#!/usr/bin/env python3
"""Point the official Python client (kiteconnect.KiteTicker) at a running
`tickcap replay --synthetic` feed and check what it sees.

    pip install kiteconnect
    tickcap replay --listen 127.0.0.1:9001 --synthetic --rate 2000 &
    python3 tools/kite_client_check.py ws://127.0.0.1:9001 [seconds]

It connects, subscribes an NSE stock, a CDS pair, a BCD pair and an index,
sets the stock to full mode and the index to full, the CDS pair to ltp, then
receives for a few seconds and checks: only subscribed instruments arrive,
each in its mode (after the mode switch), prices inside the day's range,
volume_traded rising by exactly one per tick, depth best bid < best ask.
Exit 0 when everything holds; prints a summary either way.
"""
import sys
import threading
from collections import defaultdict

from kiteconnect import KiteTicker

URL = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:9001"
SECONDS = float(sys.argv[2]) if len(sys.argv) > 2 else 4.0
NSE, CDS, BCD, INDEX = 408065, (7 << 8) | 3, (9 << 8) | 6, 256265
MODES = {NSE: "full", CDS: "ltp", BCD: "quote", INDEX: "full"}

ticks = []
problems = []
switched = threading.Event()
done = threading.Event()

kws = KiteTicker("replay", "replay", root=URL, reconnect=False)


def on_connect(ws, response):
    ws.subscribe(list(MODES))
    ws.set_mode(ws.MODE_FULL, [NSE, INDEX])
    ws.set_mode(ws.MODE_LTP, [CDS])
    # ticks already in flight may still be in quote mode
    threading.Timer(0.5, switched.set).start()


def on_ticks(ws, batch):
    if switched.is_set():
        ticks.extend(batch)


def on_error(ws, code, reason):
    problems.append(f"error {code}: {reason}")


kws.on_connect = on_connect
kws.on_ticks = on_ticks
kws.on_error = on_error
kws.connect(threaded=True)
threading.Timer(SECONDS + 0.5, done.set).start()
done.wait()
kws.close()

last_volume = {}
per = defaultdict(int)
for t in ticks:
    tok = t["instrument_token"]
    per[tok] += 1
    if tok not in MODES:
        problems.append(f"unsubscribed instrument {tok}")
        continue
    if t["mode"] != MODES[tok]:
        problems.append(f"{tok}: mode {t['mode']}, expected {MODES[tok]}")
    if t["tradable"] == (tok == INDEX):
        problems.append(f"{tok}: tradable={t['tradable']}")
    if "ohlc" in t and not (t["ohlc"]["low"] <= t["last_price"] <= t["ohlc"]["high"]):
        problems.append(f"{tok}: last {t['last_price']} outside {t['ohlc']}")
    if "volume_traded" in t:
        prev = last_volume.get(tok)
        if prev is not None and t["volume_traded"] != prev + 1:
            problems.append(f"{tok}: volume {prev} -> {t['volume_traded']}")
        last_volume[tok] = t["volume_traded"]
    if "depth" in t:
        if not t["depth"]["buy"][0]["price"] < t["depth"]["sell"][0]["price"]:
            problems.append(f"{tok}: crossed book")
    if tok == CDS and t["last_price"] > 200:
        problems.append(f"CDS price {t['last_price']} not divided by 1e7")
for tok in MODES:
    if per[tok] == 0:
        problems.append(f"no tick for {tok}")

print(f"ticks: {len(ticks)} " + " ".join(f"{k}:{v}" for k, v in sorted(per.items())))
for p in problems[:20]:
    print("PROBLEM", p)
sys.exit(1 if problems else 0)
