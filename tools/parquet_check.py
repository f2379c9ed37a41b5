#!/usr/bin/env python3
"""Compares every row of a `tickcap export` Parquet file with the JSONL
lines it came from, value by value, through pyarrow (and pandas and
DuckDB when installed).

    .venv/bin/pip install pyarrow pandas zstandard
    tickcap export market_data_2026-11-25.jsonl.zst --out pq/
    .venv/bin/python tools/parquet_check.py pq/market_data_2026-11-25.parquet market_data_2026-11-25.jsonl.zst

Each JSONL key must equal the Parquet column of the same name (absent keys
are null; prices compared as floats exactly; times as instants); the row
count and order must match — the file's order, or, when the Parquet file
says `tickcap.order = instrument` (the default export), the lines ordered
by instrument with each instrument's lines in file order; then the row
groups must also hold ascending, non-overlapping instrument ranges (so a
filter on one instrument reads only its row groups). Exit 0 when every row
matches.
"""
import datetime
import io
import json
import sys

import pyarrow.parquet as pq


def jsonl_lines(path):
    if path.endswith(".zst"):
        import zstandard

        with open(path, "rb") as f:
            data = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True).read()
        text = io.StringIO(data.decode("utf-8"))
    else:
        text = open(path, encoding="utf-8")
    for line in text:
        if line.strip():
            yield json.loads(line)


TIMES = ("last_trade_time", "exchange_timestamp", "timestamp")


def same(key, want, got):
    if key in TIMES:
        if want is None or got is None:
            return want is None and got is None
        return datetime.datetime.fromisoformat(want) == got
    if isinstance(want, float) or isinstance(got, float):
        return want is not None and got is not None and float(want) == float(got)
    return want == got


def main(parquet_path, *jsonl_paths):
    table = pq.read_table(parquet_path)
    rows = table.to_pylist()
    names = table.schema.names
    problems = []
    meta = pq.ParquetFile(parquet_path).metadata
    order = (meta.metadata or {}).get(b"tickcap.order", b"receive").decode()
    lines = (l for p in jsonl_paths for l in jsonl_lines(p))
    if order == "instrument":
        lines = sorted(lines, key=lambda l: l["instrument_token"])  # stable
        col = names.index("instrument_token")
        last_max = None
        for g in range(meta.num_row_groups):
            st = meta.row_group(g).column(col).statistics
            if st is None or not st.has_min_max:
                problems.append(f"row group {g}: no instrument_token statistics")
                continue
            if last_max is not None and st.min < last_max:
                problems.append(f"row group {g}: instruments {st.min}..{st.max} overlap the previous group's (max {last_max})")
            last_max = st.max
        # Each instrument lies in as few row groups as its rows need (+1 at
        # a boundary): a filter on it reads those alone.
        per = {}
        for g in range(meta.num_row_groups):
            st = meta.row_group(g).column(col).statistics
            if st is not None and st.has_min_max:
                for t in {r["instrument_token"] for r in rows} if meta.num_row_groups <= 64 else ():
                    if st.min <= t <= st.max:
                        per.setdefault(t, []).append(g)
        size = max((meta.row_group(g).num_rows for g in range(meta.num_row_groups)), default=1)
        counts = {}
        for r in rows:
            counts[r["instrument_token"]] = counts.get(r["instrument_token"], 0) + 1
        for t, groups in per.items():
            if len(groups) > counts[t] // size + 2:
                problems.append(f"instrument {t}: {counts[t]} rows in {len(groups)} row groups of {size}")
    n = 0
    for n, line in enumerate(lines, start=1):
        if n > len(rows):
            problems.append(f"row {n}: missing from the Parquet file")
            break
        row = rows[n - 1]
        if "depth" not in names:
            line.pop("depth", None)  # exported with --no-depth
        for key in set(line) | {k for k in names if row.get(k) is not None}:
            if not same(key, line.get(key), row.get(key)):
                problems.append(f"row {n}: {key}: JSONL {line.get(key)!r} != Parquet {row.get(key)!r}")
        if len(problems) > 10:
            break
    if n != len(rows):
        problems.append(f"{len(rows)} Parquet rows for {n} JSONL lines")
    try:
        import pandas as pd

        df = pd.read_parquet(parquet_path)
        if len(df) != len(rows):
            problems.append(f"pandas reads {len(df)} rows")
        elif len(df) and str(df["timestamp"].dt.tz) in ("None", ""):
            problems.append("pandas: timestamp has no zone")
    except ImportError:
        pass
    try:
        import duckdb

        c = duckdb.sql(f"select count(*) from '{parquet_path}'").fetchall()[0][0]
        if c != len(rows):
            problems.append(f"DuckDB counts {c} rows")
    except ImportError:
        pass
    for p in problems:
        print("PROBLEM", p, file=sys.stderr)
    print(json.dumps({"parquet": parquet_path, "rows": len(rows), "jsonl_lines": n, "columns": len(names), "ok": not problems}))
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: parquet_check.py FILE.parquet FILE.jsonl[.zst]...")
    sys.exit(main(*sys.argv[1:]))
