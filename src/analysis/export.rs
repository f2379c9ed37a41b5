//! `tickcap export --format parquet`: captured days as Parquet, one file a
//! day, with a typed schema — what pandas, polars and DuckDB read fastest.
//!
//! Schema (every JSONL key, in the contract's order; absent keys are null):
//! `tradable` bool, `mode` string, `instrument_token` uint32, `last_price`
//! float64, `last_traded_quantity` uint32, `average_traded_price` float64,
//! `volume_traded`, `total_buy_quantity`, `total_sell_quantity` uint32,
//! `ohlc` struct<open, high, low, close: float64>, `change` float64,
//! `last_trade_time` timestamp[µs, zone] (whole seconds, as Kite sends
//! them; Parquet has no second unit), `oi`, `oi_day_high`, `oi_day_low`
//! uint32, `exchange_timestamp` timestamp[µs, zone], `depth`
//! struct<buy, sell: list<struct<price float64, quantity uint32, orders
//! uint32>>>, `timestamp` timestamp[µs, zone], `connection_id` uint8.
//!
//! Values are the JSONL's, parsed as JSON numbers (so a price is the same
//! float64 pandas reads from the line); rows stay in file order; row groups
//! of 256 Ki rows; columns zstd-compressed. The input is read line by line
//! (a `.jsonl.zst` frame by frame) and written a batch at a time, so memory
//! stays bounded by a row group whatever the day's size.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, StringBuilder, TimestampMicrosecondBuilder, UInt32Builder,
    UInt8Builder,
};
use arrow_array::{
    Array, ArrayRef, Float64Array, ListArray, RecordBatch, StructArray, UInt32Array,
};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::Deserialize;

use super::scan::parse_timestamp;

/// Rows per batch handed to the writer (and per row group, times 4).
const BATCH: usize = 65_536;
/// Rows per row group: big enough for column scans, small enough to bound memory.
const ROW_GROUP: usize = 262_144;

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading or writing a file.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A line that is not a tick line.
    #[error("{path}:{line}: {message}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Arrow or Parquet refused the data.
    #[error("{path}: parquet: {message}")]
    Parquet {
        /// The output file.
        path: PathBuf,
        /// Its message.
        message: String,
    },
    /// An unknown zone.
    #[error(transparent)]
    Zone(#[from] crate::time::UnknownZone),
}

#[derive(Deserialize)]
struct Ohlc {
    open: f64,
    high: f64,
    low: f64,
    close: f64,
}

#[derive(Deserialize)]
struct Level {
    price: f64,
    quantity: u32,
    orders: u32,
}

#[derive(Deserialize)]
struct Depth {
    buy: Vec<Level>,
    sell: Vec<Level>,
}

#[derive(Deserialize)]
struct Row<'a> {
    tradable: bool,
    mode: &'a str,
    instrument_token: u32,
    last_price: f64,
    last_traded_quantity: Option<u32>,
    average_traded_price: Option<f64>,
    volume_traded: Option<u32>,
    total_buy_quantity: Option<u32>,
    total_sell_quantity: Option<u32>,
    ohlc: Option<Ohlc>,
    change: Option<f64>,
    last_trade_time: Option<&'a str>,
    oi: Option<u32>,
    oi_day_high: Option<u32>,
    oi_day_low: Option<u32>,
    exchange_timestamp: Option<&'a str>,
    depth: Option<Depth>,
    timestamp: &'a str,
    connection_id: u8,
}

fn level_fields() -> Fields {
    Fields::from(vec![
        Field::new("price", DataType::Float64, false),
        Field::new("quantity", DataType::UInt32, false),
        Field::new("orders", DataType::UInt32, false),
    ])
}

fn list_field() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Struct(level_fields()), false))
}

fn ohlc_fields() -> Fields {
    Fields::from(
        ["open", "high", "low", "close"]
            .map(|n| Field::new(n, DataType::Float64, false))
            .to_vec(),
    )
}

fn depth_fields() -> Fields {
    Fields::from(vec![
        Field::new("buy", DataType::List(list_field()), false),
        Field::new("sell", DataType::List(list_field()), false),
    ])
}

/// The export's schema, times in `zone` (an IANA name).
pub fn schema(zone: &str) -> Schema {
    let tz: Arc<str> = Arc::from(zone);
    let ts = |unit| DataType::Timestamp(unit, Some(Arc::clone(&tz)));
    Schema::new(vec![
        Field::new("tradable", DataType::Boolean, false),
        Field::new("mode", DataType::Utf8, false),
        Field::new("instrument_token", DataType::UInt32, false),
        Field::new("last_price", DataType::Float64, false),
        Field::new("last_traded_quantity", DataType::UInt32, true),
        Field::new("average_traded_price", DataType::Float64, true),
        Field::new("volume_traded", DataType::UInt32, true),
        Field::new("total_buy_quantity", DataType::UInt32, true),
        Field::new("total_sell_quantity", DataType::UInt32, true),
        Field::new("ohlc", DataType::Struct(ohlc_fields()), true),
        Field::new("change", DataType::Float64, true),
        Field::new("last_trade_time", ts(TimeUnit::Microsecond), true),
        Field::new("oi", DataType::UInt32, true),
        Field::new("oi_day_high", DataType::UInt32, true),
        Field::new("oi_day_low", DataType::UInt32, true),
        Field::new("exchange_timestamp", ts(TimeUnit::Microsecond), true),
        Field::new("depth", DataType::Struct(depth_fields()), true),
        Field::new("timestamp", ts(TimeUnit::Microsecond), false),
        Field::new("connection_id", DataType::UInt8, false),
    ])
}

/// One side of the book being filled: list offsets, then the flattened
/// levels' price, quantity and orders.
type Side = (Vec<i32>, Vec<f64>, Vec<u32>, Vec<u32>);

/// Columns being filled for one batch.
struct Columns {
    tradable: BooleanBuilder,
    mode: StringBuilder,
    token: UInt32Builder,
    last_price: Float64Builder,
    ltq: UInt32Builder,
    atp: Float64Builder,
    volume: UInt32Builder,
    buy_qty: UInt32Builder,
    sell_qty: UInt32Builder,
    ohlc: [Vec<f64>; 4],
    ohlc_valid: Vec<bool>,
    change: Float64Builder,
    ltt: TimestampMicrosecondBuilder,
    oi: [UInt32Builder; 3],
    exch_ts: TimestampMicrosecondBuilder,
    /// buy, sell: offsets and the flattened levels.
    depth: [Side; 2],
    depth_valid: Vec<bool>,
    ts: TimestampMicrosecondBuilder,
    conn: UInt8Builder,
    rows: usize,
}

impl Columns {
    fn new(zone: &str) -> Self {
        let z: Arc<str> = Arc::from(zone);
        Columns {
            tradable: BooleanBuilder::new(),
            mode: StringBuilder::new(),
            token: UInt32Builder::new(),
            last_price: Float64Builder::new(),
            ltq: UInt32Builder::new(),
            atp: Float64Builder::new(),
            volume: UInt32Builder::new(),
            buy_qty: UInt32Builder::new(),
            sell_qty: UInt32Builder::new(),
            ohlc: Default::default(),
            ohlc_valid: Vec::new(),
            change: Float64Builder::new(),
            ltt: TimestampMicrosecondBuilder::new().with_timezone(Arc::clone(&z)),
            oi: Default::default(),
            exch_ts: TimestampMicrosecondBuilder::new().with_timezone(Arc::clone(&z)),
            depth: [
                (vec![0], vec![], vec![], vec![]),
                (vec![0], vec![], vec![], vec![]),
            ],
            depth_valid: Vec::new(),
            ts: TimestampMicrosecondBuilder::new().with_timezone(Arc::clone(&z)),
            conn: UInt8Builder::new(),
            rows: 0,
        }
    }

    fn push(&mut self, r: &Row<'_>) -> Result<(), String> {
        let secs = |t: Option<&str>, key: &str| -> Result<Option<i64>, String> {
            t.map(|s| parse_timestamp(s).ok_or_else(|| format!("{key} {s:?} is not a time")))
                .transpose()
        };
        let ltt = secs(r.last_trade_time, "last_trade_time")?;
        let exch = secs(r.exchange_timestamp, "exchange_timestamp")?;
        let ts = parse_timestamp(r.timestamp)
            .ok_or_else(|| format!("timestamp {:?} is not a time", r.timestamp))?;
        self.tradable.append_value(r.tradable);
        self.mode.append_value(r.mode);
        self.token.append_value(r.instrument_token);
        self.last_price.append_value(r.last_price);
        self.ltq.append_option(r.last_traded_quantity);
        self.atp.append_option(r.average_traded_price);
        self.volume.append_option(r.volume_traded);
        self.buy_qty.append_option(r.total_buy_quantity);
        self.sell_qty.append_option(r.total_sell_quantity);
        match &r.ohlc {
            Some(o) => {
                for (c, v) in self.ohlc.iter_mut().zip([o.open, o.high, o.low, o.close]) {
                    c.push(v);
                }
                self.ohlc_valid.push(true);
            }
            None => {
                for c in &mut self.ohlc {
                    c.push(0.0);
                }
                self.ohlc_valid.push(false);
            }
        }
        self.change.append_option(r.change);
        self.ltt.append_option(ltt);
        for (b, v) in self.oi.iter_mut().zip([r.oi, r.oi_day_high, r.oi_day_low]) {
            b.append_option(v);
        }
        self.exch_ts.append_option(exch);
        let sides: [&[Level]; 2] = match &r.depth {
            Some(d) => [&d.buy, &d.sell],
            None => [&[], &[]],
        };
        for ((offsets, price, qty, orders), levels) in self.depth.iter_mut().zip(sides) {
            for l in levels {
                price.push(l.price);
                qty.push(l.quantity);
                orders.push(l.orders);
            }
            offsets.push(price.len() as i32);
        }
        self.depth_valid.push(r.depth.is_some());
        self.ts.append_value(ts);
        self.conn.append_value(r.connection_id);
        self.rows += 1;
        Ok(())
    }

    /// The batch, and the columns emptied for the next one.
    fn finish(&mut self, schema: &Arc<Schema>) -> Result<RecordBatch, String> {
        let ohlc_cols: Vec<ArrayRef> = self
            .ohlc
            .iter_mut()
            .map(|c| Arc::new(Float64Array::from(std::mem::take(c))) as ArrayRef)
            .collect();
        let ohlc = StructArray::try_new(
            ohlc_fields(),
            ohlc_cols,
            Some(NullBuffer::from(std::mem::take(&mut self.ohlc_valid))),
        )
        .map_err(|e| e.to_string())?;
        let mut lists: Vec<ArrayRef> = Vec::new();
        for (offsets, price, qty, orders) in &mut self.depth {
            let levels = StructArray::try_new(
                level_fields(),
                vec![
                    Arc::new(Float64Array::from(std::mem::take(price))) as ArrayRef,
                    Arc::new(UInt32Array::from(std::mem::take(qty))),
                    Arc::new(UInt32Array::from(std::mem::take(orders))),
                ],
                None,
            )
            .map_err(|e| e.to_string())?;
            let off = std::mem::replace(offsets, vec![0]);
            let list = ListArray::try_new(
                list_field(),
                OffsetBuffer::new(off.into()),
                Arc::new(levels),
                None,
            )
            .map_err(|e| e.to_string())?;
            lists.push(Arc::new(list));
        }
        let depth = StructArray::try_new(
            depth_fields(),
            lists,
            Some(NullBuffer::from(std::mem::take(&mut self.depth_valid))),
        )
        .map_err(|e| e.to_string())?;
        let [oi, oih, oil] = &mut self.oi;
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.tradable.finish()),
            Arc::new(self.mode.finish()),
            Arc::new(self.token.finish()),
            Arc::new(self.last_price.finish()),
            Arc::new(self.ltq.finish()),
            Arc::new(self.atp.finish()),
            Arc::new(self.volume.finish()),
            Arc::new(self.buy_qty.finish()),
            Arc::new(self.sell_qty.finish()),
            Arc::new(ohlc),
            Arc::new(self.change.finish()),
            Arc::new(self.ltt.finish()),
            Arc::new(oi.finish()),
            Arc::new(oih.finish()),
            Arc::new(oil.finish()),
            Arc::new(self.exch_ts.finish()),
            Arc::new(depth),
            Arc::new(self.ts.finish()),
            Arc::new(self.conn.finish()),
        ];
        self.rows = 0;
        debug_assert!(cols.iter().all(|c| c.len() == cols[0].len()));
        RecordBatch::try_new(Arc::clone(schema), cols).map_err(|e| e.to_string())
    }
}

/// Calls `each` with every line of a capture, in order (a `.jsonl.zst`
/// frame by frame); returns the number of lines.
pub fn for_each_line(
    path: &Path,
    mut each: impl FnMut(usize, &[u8]) -> Result<(), ExportError>,
) -> Result<usize, ExportError> {
    let io = |error| ExportError::Io {
        path: path.to_owned(),
        error,
    };
    crate::util::regular_file(path).map_err(io)?;
    let file = std::fs::File::open(path).map_err(io)?;
    if file.metadata().map_err(io)?.len() == 0 {
        return Ok(0);
    }
    // SAFETY: read-only map; see `analysis::scan`.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    let mut no = 0;
    let mut lines = |text: &[u8], no: &mut usize| -> Result<(), ExportError> {
        for l in text.split(|&b| b == b'\n') {
            *no += 1;
            if !l.iter().all(u8::is_ascii_whitespace) {
                each(*no, l)?;
            }
        }
        *no -= 1;
        Ok(())
    };
    if crate::zst::is_zst(path) {
        let fr = crate::zst::frames_of_map(&map);
        let mut buf = Vec::new();
        let mut released = 0;
        for r in &fr.frames {
            // Done with a stretch of the file: out of memory.
            if r.start - released >= 64 << 20 {
                crate::util::release_mapped(&map, released..r.start);
                released = r.start;
            }
            crate::zst::decompress_frame(&map[r.clone()], &mut buf).map_err(io)?;
            lines(&buf, &mut no)?;
        }
        for c in &fr.corrupt {
            tracing::warn!(
                "{}: bytes {}..{} are no whole zstd frame (skipped; reading went on at the next frame)",
                path.display(),
                c.start,
                c.end
            );
        }
        if let Some(at) = fr.torn_at {
            tracing::warn!(
                "{}: torn zstd frame at byte {at} (a crash mid-write) skipped",
                path.display()
            );
        }
    } else {
        // A plain day: in 64 MiB stretches of whole lines, each given back
        // once read.
        let mut at = 0;
        while at < map.len() {
            let mut end = (at + (64 << 20)).min(map.len());
            if end < map.len() {
                end = map[end..]
                    .iter()
                    .position(|b| *b == b'\n')
                    .map_or(map.len(), |i| end + i + 1);
            }
            let chunk = &map[at..end];
            let chunk = chunk.strip_suffix(b"\n").unwrap_or(chunk);
            lines(chunk, &mut no)?;
            no += 1;
            crate::util::release_mapped(&map, at..end);
            at = end;
        }
    }
    Ok(no)
}

/// What one export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    /// The Parquet file.
    pub path: PathBuf,
    /// Rows.
    pub rows: u64,
}

/// A Parquet file being written under a temporary name (`.parquet.part`)
/// until [`Sink::finish`] renames it: a reader never sees half a file.
struct Sink {
    w: ArrowWriter<std::fs::File>,
    tmp: PathBuf,
    out: PathBuf,
}

impl Sink {
    fn create(
        out: &Path,
        schema: &Arc<Schema>,
        row_group: Option<usize>,
    ) -> Result<Sink, ExportError> {
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()));
        if let Some(n) = row_group {
            props = props.set_max_row_group_row_count(Some(n));
        }
        let tmp = out.with_extension("parquet.part");
        let file = std::fs::File::create(&tmp).map_err(|error| ExportError::Io {
            path: tmp.clone(),
            error,
        })?;
        let w = ArrowWriter::try_new(file, Arc::clone(schema), Some(props.build()))
            .map_err(|e| parquet_error(out, &e))?;
        Ok(Sink {
            w,
            tmp,
            out: out.to_owned(),
        })
    }

    fn write(&mut self, b: &RecordBatch) -> Result<(), ExportError> {
        self.w.write(b).map_err(|e| parquet_error(&self.out, &e))
    }

    fn finish(self, rows: u64) -> Result<Exported, ExportError> {
        self.w.close().map_err(|e| parquet_error(&self.out, &e))?;
        std::fs::rename(&self.tmp, &self.out).map_err(|error| ExportError::Io {
            path: self.out.clone(),
            error,
        })?;
        Ok(Exported {
            path: self.out,
            rows,
        })
    }
}

fn parquet_error(out: &Path, e: &dyn std::fmt::Display) -> ExportError {
    ExportError::Parquet {
        path: out.to_owned(),
        message: e.to_string(),
    }
}

/// Exports `inputs` (the same day: a plain and a compressed file of one
/// day are read in the order given) to `out` as one Parquet file.
pub fn export_day(inputs: &[PathBuf], out: &Path, zone: &str) -> Result<Exported, ExportError> {
    crate::time::ZoneFormatter::new(zone)?;
    let schema = Arc::new(schema(zone));
    let perr = |e: &dyn std::fmt::Display| parquet_error(out, e);
    let mut w = Sink::create(out, &schema, Some(ROW_GROUP))?;
    let mut cols = Columns::new(zone);
    let mut rows = 0u64;
    for input in inputs {
        for_each_line(input, |no, line| {
            let r: Row<'_> = serde_json::from_slice(line).map_err(|e| ExportError::Line {
                path: input.clone(),
                line: no,
                message: e.to_string(),
            })?;
            cols.push(&r).map_err(|message| ExportError::Line {
                path: input.clone(),
                line: no,
                message,
            })?;
            rows += 1;
            if cols.rows == BATCH {
                let b = cols.finish(&schema).map_err(|e| perr(&e))?;
                w.write(&b)?;
            }
            Ok(())
        })?;
    }
    let b = cols.finish(&schema).map_err(|e| perr(&e))?;
    if b.num_rows() > 0 {
        w.write(&b)?;
    }
    w.finish(rows)
}

/// The candle files' schema (`candles_<interval>_DAY.parquet`).
pub fn candle_schema(zone: &str) -> Schema {
    let tz: Arc<str> = Arc::from(zone);
    Schema::new(vec![
        Field::new("instrument_token", DataType::UInt32, false),
        Field::new("interval", DataType::Utf8, false),
        Field::new(
            "date",
            DataType::Timestamp(TimeUnit::Microsecond, Some(tz)),
            false,
        ),
        Field::new("open", DataType::Float64, false),
        Field::new("high", DataType::Float64, false),
        Field::new("low", DataType::Float64, false),
        Field::new("close", DataType::Float64, false),
        Field::new("volume", DataType::UInt64, true),
        Field::new("oi", DataType::UInt32, true),
        Field::new("ticks", DataType::UInt32, false),
        Field::new("complete", DataType::Boolean, false),
        Field::new("source", DataType::Utf8, false),
    ])
}

/// One candle line.
#[derive(Debug, Deserialize)]
struct CandleRow<'a> {
    instrument_token: u32,
    #[serde(borrow)]
    interval: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    date: std::borrow::Cow<'a, str>,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: Option<u64>,
    oi: Option<u32>,
    #[serde(default)]
    ticks: u32,
    complete: bool,
    #[serde(borrow)]
    source: std::borrow::Cow<'a, str>,
}

/// Exports a day's candle files (`candles_<interval>_DAY.jsonl[.zst]`) to
/// one Parquet file, rows in file order.
pub fn export_candles(inputs: &[PathBuf], out: &Path, zone: &str) -> Result<Exported, ExportError> {
    use arrow_array::builder::UInt64Builder;
    crate::time::ZoneFormatter::new(zone)?;
    let schema = Arc::new(candle_schema(zone));
    let perr = |e: &dyn std::fmt::Display| parquet_error(out, e);
    let mut w = Sink::create(out, &schema, None)?;
    struct Cols {
        token: UInt32Builder,
        interval: StringBuilder,
        date: TimestampMicrosecondBuilder,
        ohlc: [Float64Builder; 4],
        volume: UInt64Builder,
        oi: UInt32Builder,
        ticks: UInt32Builder,
        complete: BooleanBuilder,
        source: StringBuilder,
        rows: usize,
    }
    let new = || Cols {
        token: UInt32Builder::new(),
        interval: StringBuilder::new(),
        date: TimestampMicrosecondBuilder::new(),
        ohlc: std::array::from_fn(|_| Float64Builder::new()),
        volume: UInt64Builder::new(),
        oi: UInt32Builder::new(),
        ticks: UInt32Builder::new(),
        complete: BooleanBuilder::new(),
        source: StringBuilder::new(),
        rows: 0,
    };
    let flush = |c: &mut Cols| -> Result<RecordBatch, arrow_schema::ArrowError> {
        let tz: Arc<str> = Arc::from(zone);
        let [o, h, l, cl] = &mut c.ohlc;
        let cols: Vec<ArrayRef> = vec![
            Arc::new(c.token.finish()),
            Arc::new(c.interval.finish()),
            Arc::new(c.date.finish().with_timezone(tz)),
            Arc::new(o.finish()),
            Arc::new(h.finish()),
            Arc::new(l.finish()),
            Arc::new(cl.finish()),
            Arc::new(c.volume.finish()),
            Arc::new(c.oi.finish()),
            Arc::new(c.ticks.finish()),
            Arc::new(c.complete.finish()),
            Arc::new(c.source.finish()),
        ];
        c.rows = 0;
        RecordBatch::try_new(Arc::clone(&schema), cols)
    };
    let mut cols = new();
    let mut rows = 0u64;
    // A later line for a bar replaces an earlier one (the service's own
    // repair appends Kite's): a first reading finds each bar's last line.
    let mut last = crate::candles::stored::LastLines::default();
    for input in inputs {
        for_each_line(input, |_, line| {
            last.count(line);
            Ok(())
        })?;
    }
    for input in inputs {
        for_each_line(input, |no, line| {
            if !last.keep(line) {
                return Ok(());
            }
            let bad = |message: String| ExportError::Line {
                path: input.clone(),
                line: no,
                message,
            };
            let r: CandleRow<'_> = serde_json::from_slice(line).map_err(|e| bad(e.to_string()))?;
            let at = crate::candles::parse_kite_date(&r.date)
                .ok_or_else(|| bad(format!("date {:?} is not Kite's candle time", r.date)))?;
            cols.token.append_value(r.instrument_token);
            cols.interval.append_value(&r.interval);
            cols.date.append_value(at);
            for (b, v) in cols.ohlc.iter_mut().zip([r.open, r.high, r.low, r.close]) {
                b.append_value(v);
            }
            cols.volume.append_option(r.volume);
            cols.oi.append_option(r.oi);
            cols.ticks.append_value(r.ticks);
            cols.complete.append_value(r.complete);
            cols.source.append_value(&r.source);
            cols.rows += 1;
            rows += 1;
            if cols.rows == BATCH {
                let b = flush(&mut cols).map_err(|e| perr(&e))?;
                w.write(&b)?;
            }
            Ok(())
        })?;
    }
    let b = flush(&mut cols).map_err(|e| perr(&e))?;
    if b.num_rows() > 0 {
        w.write(&b)?;
    }
    w.finish(rows)
}

/// The Parquet name for a capture: `market_data_DAY.parquet` for a daily
/// file (plain or `.zst`), else the file's stem.
pub fn parquet_name(input: &Path) -> String {
    let name = input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match crate::sink::files::date_of_name(&name) {
        Some(d) => format!("market_data_{d}.parquet"),
        None => format!(
            "{}.parquet",
            name.trim_end_matches(".zst").trim_end_matches(".jsonl")
        ),
    }
}
