#!/usr/bin/env python3
"""Regenerate tests/data/golden/: raw Kite binary messages and what the
official Python client (kiteconnect's KiteTicker._parse_binary) decodes from
them, written as tickcap writes the official keys (compact JSON, datetimes as
ISO 8601 in Asia/Kolkata).

    pip install kiteconnect && python3 tools/golden.py

The output is committed; the Rust tests compare `tickcap decode` against it
byte for byte, so CI does not need Python for this.
"""
import json
import os
import random
import struct
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

os.environ["TZ"] = "Asia/Kolkata"
time.tzset()
from kiteconnect import KiteTicker  # noqa: E402

KOLKATA = ZoneInfo("Asia/Kolkata")
OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "golden"
MAX = 0xFFFFFFFF
NSE, CDS, BCD, NCO, MCX, INDEX = 1, 3, 6, 12, 7, 9


def token(n, seg):
    return (n << 8) | seg


def ltp(tok, price):
    return struct.pack(">II", tok, price)


def index(tok, lp, high, low, open_, close, chg, ts=None):
    p = struct.pack(">7I", tok, lp, high, low, open_, close, chg)
    return p + (struct.pack(">I", ts) if ts is not None else b"")


def quote(tok, vals):
    return struct.pack(">11I", tok, *vals)


def full(tok, vals, times, depth):
    p = quote(tok, vals) + struct.pack(">5I", *times)
    for q, pr, o in depth:
        p += struct.pack(">IIH", q, pr, o) + b"\0\0"
    return p


def message(packets):
    m = struct.pack(">H", len(packets))
    for p in packets:
        m += struct.pack(">H", len(p)) + p
    return m


def rnd_quote_vals(r, lo=1, hi=5_000_000):
    close = r.randint(lo, hi)
    return [r.randint(lo, hi), r.randint(0, 10_000), r.randint(lo, hi), r.randint(0, MAX),
            r.randint(0, MAX), r.randint(0, MAX), r.randint(lo, hi), r.randint(lo, hi),
            r.randint(lo, hi), close]


def rnd_depth(r, lo=1, hi=5_000_000):
    return [(r.randint(0, MAX), r.randint(lo, hi), r.randint(0, 65535)) for _ in range(10)]


def cases():
    r = random.Random(20261125)
    ts = 1_764_046_523
    d = {}
    d["ltp_nse"] = [ltp(408065, 250050)]
    d["ltp_segments"] = [ltp(token(7, s), 123456789) for s in (NSE, CDS, BCD, NCO, MCX, INDEX)]
    d["ltp_cds_tiny"] = [ltp(token(1, CDS), v) for v in (1, 5, 999, 1000, 12345)]
    d["quote_nse"] = [quote(408065, [157315, 1, 157033, 1175986, 256511, 360503, 156915, 157500, 156105, 156780])]
    d["quote_zero_close"] = [quote(408065, [157315, 1, 157033, 1175986, 256511, 360503, 156915, 157500, 156105, 0])]
    d["quote_max"] = [quote(token(0xFFFFFF, NSE), [MAX] * 10), quote(token(0xFFFFFF, CDS), [MAX] * 10)]
    d["quote_cds"] = [quote(token(2, CDS), [835012500, 10, 834000000, 99, 1, 2, 830000000, 840000000, 829000000, 832500000])]
    d["quote_bcd_nco"] = [quote(token(3, BCD), [825025, 1, 825000, 5, 6, 7, 820000, 830000, 810000, 824000]),
                          quote(token(4, NCO), [4567890, 2, 4560000, 5, 6, 7, 4500000, 4600000, 4400000, 4550000])]
    d["index_quote"] = [index(256265, 2_412_345, 2_420_000, 2_400_000, 2_405_000, 2_398_765, 13_580)]
    d["index_full"] = [index(256265, 2_412_345, 2_420_000, 2_400_000, 2_405_000, 2_398_765, 13_580, ts)]
    d["index_zero_close"] = [index(260105, 5_000_000, 0, 0, 0, 0, 0, ts)]
    d["full_nse"] = [full(408065, [157370, 7, 157037, 1192471, 256443, 363009, 156915, 157500, 156105, 156780],
                          [1625461887, 0, 0, 0, 1625461887], rnd_depth(r))]
    d["full_max"] = [full(token(0xFFFFFF, BCD), [MAX] * 10, [MAX] * 5, [(MAX, MAX, 65535)] * 10)]
    d["full_zero"] = [full(token(5, NSE), [0] * 10, [0] * 5, [(0, 0, 0)] * 10)]
    mixed = []
    for i in range(300):
        seg = r.choice((NSE, NSE, NSE, 2, CDS, 4, 5, BCD, MCX, INDEX, NCO))
        tok = token(r.randint(1, 0xFFFFFF), seg)
        hi = 9_000_000_000 if seg == CDS else 5_000_000
        hi = min(hi, MAX)
        if seg == INDEX:
            kind = r.choice(("ltp", "iq", "if"))
        else:
            kind = r.choice(("ltp", "quote", "full"))
        if kind == "ltp":
            mixed.append(ltp(tok, r.randint(0, hi)))
        elif kind == "iq":
            mixed.append(index(tok, *[r.randint(0, hi) for _ in range(6)]))
        elif kind == "if":
            mixed.append(index(tok, *[r.randint(0, hi) for _ in range(6)], r.randint(0, MAX)))
        elif kind == "quote":
            mixed.append(quote(tok, rnd_quote_vals(r, 0, hi)))
        else:
            mixed.append(full(tok, rnd_quote_vals(r, 0, hi), [r.randint(0, MAX) for _ in range(5)], rnd_depth(r, 0, hi)))
    d["mixed_300"] = mixed
    return d


def to_json(tick):
    def conv(v):
        if isinstance(v, datetime):
            return v.replace(tzinfo=KOLKATA).isoformat()
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        if isinstance(v, list):
            return [conv(x) for x in v]
        return v
    return json.dumps(conv(tick), separators=(",", ":"))


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    kt = KiteTicker("golden", "golden")
    for name, packets in cases().items():
        msg = message(packets)
        ticks = kt._parse_binary(msg)
        assert len(ticks) == len(packets), name
        (OUT / f"{name}.bin").write_bytes(msg)
        (OUT / f"{name}.expected.jsonl").write_text("".join(to_json(t) + "\n" for t in ticks))
    print(f"wrote {len(cases())} golden messages to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
