#!/usr/bin/env python3
"""Checks that a tickcap capture loads in pandas and that the seed service's
analysis code runs on it unchanged.

    python3 -m venv .venv && .venv/bin/pip install pandas pyarrow zstandard
    tickcap demo --duration 5 --data-dir /tmp/md [--compression zstd]
    .venv/bin/python tools/pandas_check.py /tmp/md/market_data_*.jsonl[.zst]
    tickcap export /tmp/md/market_data_*.jsonl.zst --out /tmp/pq
    .venv/bin/python tools/pandas_check.py --parquet /tmp/pq/market_data_DAY.parquet /tmp/md/market_data_DAY.jsonl.zst

A `.jsonl.zst` capture loads with `read_json(lines=True, compression="zstd")`
(pandas needs the `zstandard` package). With `--parquet`, the export is read
with `read_parquet` and its values compared with the JSONL's, column by
column.

`read_jsonl_to_dataframe` and `analyze_tick_data` are written the way the
seed service's analysis helpers are used: `pandas.read_json(lines=True)`,
timestamps through `pd.to_datetime`, per-instrument statistics. Exit 0 when
every check holds.
"""
import json
import sys

import pandas as pd


def read_jsonl_to_dataframe(path):
    if path.endswith(".zst"):
        df = pd.read_json(path, lines=True, compression="zstd", precise_float=True)
    else:
        df = pd.read_json(path, lines=True, precise_float=True)
    if df.empty:
        return df
    df["timestamp"] = pd.to_datetime(df["timestamp"])
    for col in ("last_trade_time", "exchange_timestamp"):
        if col in df:
            df[col] = pd.to_datetime(df[col])
    return df


def analyze_tick_data(df):
    by = df.groupby("instrument_token")
    out = {
        "total_ticks": int(len(df)),
        "unique_instruments": int(df["instrument_token"].nunique()),
        "time_range": {"start": str(df["timestamp"].min()), "end": str(df["timestamp"].max())},
        "modes": {str(k): int(v) for k, v in df["mode"].value_counts().items()},
        "connections": {str(k): int(v) for k, v in df["connection_id"].value_counts().items()},
        "price_stats": {
            str(tok): {
                "count": int(len(g)),
                "min": float(g["last_price"].min()),
                "max": float(g["last_price"].max()),
                "mean": float(g["last_price"].mean()),
            }
            for tok, g in by
        },
    }
    if "volume_traded" in df:
        vol = by["volume_traded"].agg(["min", "max"]).dropna()
        out["volume"] = {str(k): int(r["max"] - r["min"]) for k, r in vol.iterrows()}
    per_second = df.set_index("timestamp").resample("1s").size()
    out["ticks_per_second"] = {"mean": float(per_second.mean()), "peak": int(per_second.max())}
    return out


def export_order(parquet):
    """The row order the export wrote (`tickcap.order` in the file's
    metadata): "instrument" (the default: by instrument, receive order
    within one) or "receive" (the capture's order)."""
    import pyarrow.parquet as papq

    meta = papq.ParquetFile(parquet).metadata.metadata or {}
    return meta.get(b"tickcap.order", b"receive").decode()


def compare_parquet(parquet, jsonl):
    """read_parquet against read_json of the same day: every value equal,
    row for row in the export's order."""
    problems = []
    pq = pd.read_parquet(parquet)
    js = read_jsonl_to_dataframe(jsonl)
    if len(pq) != len(js):
        return [f"{parquet}: {len(pq)} rows, {jsonl}: {len(js)}"]
    order = export_order(parquet)
    if order == "instrument":
        # Stable: within an instrument the capture's order stays.
        js = js.sort_values("instrument_token", kind="stable").reset_index(drop=True)
    elif order != "receive":
        return [f"{parquet}: unknown tickcap.order {order!r}"]
    for col in ("instrument_token", "last_price", "connection_id", "mode", "tradable"):
        if not (pq[col].to_numpy() == js[col].to_numpy()).all():
            problems.append(f"{parquet}: column {col} differs from the JSONL")
    if not (pq["timestamp"] == js["timestamp"]).all():
        problems.append(f"{parquet}: timestamps differ from the JSONL")
    for col in ("volume_traded", "average_traded_price", "change"):
        if col in js:
            a, b = pq[col].astype("float64"), js[col].astype("float64")
            same = (a == b) | (a.isna() & b.isna())
            if not same.all():
                problems.append(f"{parquet}: column {col} differs from the JSONL")
    if "ohlc" in js:
        a = pq["ohlc"].map(lambda o: None if o is None else dict(o))
        b = js["ohlc"].map(lambda o: o if isinstance(o, dict) else None)
        if not all((x == y) for x, y in zip(a, b)):
            problems.append(f"{parquet}: ohlc differs from the JSONL")
    print(json.dumps({"parquet": parquet, "jsonl": jsonl, "rows": len(pq), "order": order, "columns_compared": True}))
    return problems


def main(paths):
    if paths[:1] == ["--parquet"] and len(paths) == 3:
        problems = compare_parquet(paths[1], paths[2])
        for p in problems:
            print("PROBLEM", p, file=sys.stderr)
        return 1 if problems else 0
    if not paths:
        print("usage: pandas_check.py FILE.jsonl...", file=sys.stderr)
        return 2
    problems = []
    for path in paths:
        df = read_jsonl_to_dataframe(path)
        if df.empty:
            problems.append(f"{path}: no rows")
            continue
        if str(df["timestamp"].dt.tz) in ("None", ""):
            problems.append(f"{path}: timestamps lost their offset")
        for col in ("tradable", "mode", "instrument_token", "last_price", "timestamp", "connection_id"):
            if col not in df:
                problems.append(f"{path}: column {col} missing")
        if not df["connection_id"].isin([1, 2, 3]).all():
            problems.append(f"{path}: connection_id outside 1..3")
        full = df[df["mode"] == "full"]
        if len(full) and "depth" in df:
            d = full.iloc[0]["depth"]
            if not (isinstance(d, dict) and len(d.get("buy", [])) == 5 and len(d.get("sell", [])) == 5):
                problems.append(f"{path}: depth is not 5 + 5 levels")
        if "ohlc" in df and not isinstance(df.iloc[0]["ohlc"], dict):
            problems.append(f"{path}: ohlc is not an object")
        report = analyze_tick_data(df)
        if report["total_ticks"] != len(df) or report["unique_instruments"] < 1:
            problems.append(f"{path}: analysis is inconsistent")
        print(json.dumps({"file": path, **{k: report[k] for k in ("total_ticks", "unique_instruments", "time_range", "modes", "ticks_per_second")}}))
    for p in problems:
        print("PROBLEM", p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
