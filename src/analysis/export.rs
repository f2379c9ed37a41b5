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
    BooleanBuilder, Float64Builder, StringBuilder, StringDictionaryBuilder,
    TimestampMicrosecondBuilder, UInt32Builder, UInt8Builder,
};
use arrow_array::types::Int8Type;
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
    /// Stopped by its caller (a service shutting down); nothing was left.
    #[error("cancelled")]
    Cancelled,
}

#[derive(Deserialize, Debug, PartialEq)]
struct Ohlc {
    open: f64,
    high: f64,
    low: f64,
    close: f64,
}

#[derive(Deserialize, Debug, PartialEq)]
struct Level {
    price: f64,
    quantity: u32,
    orders: u32,
}

#[derive(Deserialize, Debug, PartialEq)]
struct Depth {
    buy: Vec<Level>,
    sell: Vec<Level>,
}

#[derive(Deserialize, Debug, PartialEq)]
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

impl<'a> Row<'a> {
    /// A line read the fast way ([`crate::analysis::fastline`]): the
    /// writer's own lines, each key once, nothing escaped; `None` for
    /// anything else, which serde then reads (the reference: a property
    /// test holds the two equal).
    fn fast(line: &'a [u8]) -> Option<Row<'a>> {
        let mut c = crate::analysis::fastline::Cur::new(line);
        c.eat(b'{')?;
        let (mut tradable, mut mode, mut token, mut last_price) = (None, None, None, None);
        let (mut ltq, mut atp, mut vol, mut tbq, mut tsq) = (None, None, None, None, None);
        let (mut ohlc, mut change, mut ltt, mut oi, mut oih, mut oil) =
            (None, None, None, None, None, None);
        let (mut ets, mut depth, mut ts, mut conn) = (None, None, None, None);
        /// Sets a field once: a repeated key is serde's case.
        fn once<T>(slot: &mut Option<T>, v: Option<T>) -> Option<()> {
            if slot.is_some() {
                return None;
            }
            *slot = Some(v?);
            Some(())
        }
        let mut first = true;
        loop {
            if !first && !c.next_or_end()? {
                break;
            }
            first = false;
            match c.key()? {
                b"tradable" => once(&mut tradable, c.bool())?,
                b"mode" => once(&mut mode, c.string())?,
                b"instrument_token" => once(&mut token, c.u32())?,
                b"last_price" => once(&mut last_price, c.f64())?,
                b"last_traded_quantity" => once(&mut ltq, c.u32())?,
                b"average_traded_price" => once(&mut atp, c.f64())?,
                b"volume_traded" => once(&mut vol, c.u32())?,
                b"total_buy_quantity" => once(&mut tbq, c.u32())?,
                b"total_sell_quantity" => once(&mut tsq, c.u32())?,
                b"ohlc" => once(
                    &mut ohlc,
                    c.ohlc().map(|[open, high, low, close]| Ohlc {
                        open,
                        high,
                        low,
                        close,
                    }),
                )?,
                b"change" => once(&mut change, c.f64())?,
                b"last_trade_time" => once(&mut ltt, c.string())?,
                b"oi" => once(&mut oi, c.u32())?,
                b"oi_day_high" => once(&mut oih, c.u32())?,
                b"oi_day_low" => once(&mut oil, c.u32())?,
                b"exchange_timestamp" => once(&mut ets, c.string())?,
                b"depth" => {
                    let side = |c: &mut crate::analysis::fastline::Cur<'a>| {
                        let mut v = Vec::with_capacity(5);
                        c.levels(|price, quantity, orders| {
                            v.push(Level {
                                price,
                                quantity,
                                orders,
                            })
                        })
                        .map(|()| v)
                    };
                    let d = (|| {
                        c.eat(b'{')?;
                        if c.key()? != b"buy" {
                            return None;
                        }
                        let buy = side(&mut c)?;
                        c.eat(b',')?;
                        if c.key()? != b"sell" {
                            return None;
                        }
                        let sell = side(&mut c)?;
                        c.eat(b'}')?;
                        Some(Depth { buy, sell })
                    })();
                    once(&mut depth, d)?;
                }
                b"timestamp" => once(&mut ts, c.string())?,
                b"connection_id" => once(&mut conn, c.u32().and_then(|v| u8::try_from(v).ok()))?,
                _ => return None,
            }
        }
        Some(Row {
            tradable: tradable?,
            mode: mode?,
            instrument_token: token?,
            last_price: last_price?,
            last_traded_quantity: ltq,
            average_traded_price: atp,
            volume_traded: vol,
            total_buy_quantity: tbq,
            total_sell_quantity: tsq,
            ohlc,
            change,
            last_trade_time: ltt,
            oi,
            oi_day_high: oih,
            oi_day_low: oil,
            exchange_timestamp: ets,
            depth,
            timestamp: ts?,
            connection_id: conn?,
        })
    }

    /// A line as a row: fast, else serde.
    fn read(line: &'a [u8]) -> Result<Row<'a>, String> {
        match Row::fast(line) {
            Some(r) => Ok(r),
            None => serde_json::from_slice::<Row<'_>>(line).map_err(|e| e.to_string()),
        }
    }
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

/// The export's schema, times in `zone` (an IANA name); `depth` false
/// leaves the depth column out. `mode` is dictionary-encoded (pandas reads
/// a category; Parquet stores three values once per row group).
pub fn schema(zone: &str, depth: bool) -> Schema {
    let tz: Arc<str> = Arc::from(zone);
    let ts = |unit| DataType::Timestamp(unit, Some(Arc::clone(&tz)));
    let mut fields = vec![
        Field::new("tradable", DataType::Boolean, false),
        Field::new(
            "mode",
            DataType::Dictionary(Box::new(DataType::Int8), Box::new(DataType::Utf8)),
            false,
        ),
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
    ];
    if !depth {
        fields.retain(|f| f.name() != "depth");
    }
    Schema::new(fields)
}

/// One side of the book being filled: list offsets, then the flattened
/// levels' price, quantity and orders.
type Side = (Vec<i32>, Vec<f64>, Vec<u32>, Vec<u32>);

/// Columns being filled for one batch.
struct Columns {
    /// Whether the depth column is built.
    with_depth: bool,
    tradable: BooleanBuilder,
    mode: StringDictionaryBuilder<Int8Type>,
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
    fn new(zone: &str, with_depth: bool) -> Self {
        let z: Arc<str> = Arc::from(zone);
        Columns {
            with_depth,
            tradable: BooleanBuilder::new(),
            mode: StringDictionaryBuilder::new(),
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
        if self.with_depth {
            self.push_depth(r);
        }
        self.ts.append_value(ts);
        self.conn.append_value(r.connection_id);
        self.rows += 1;
        Ok(())
    }

    fn push_depth(&mut self, r: &Row<'_>) {
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
        let mut cols: Vec<ArrayRef> = vec![
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
        if !self.with_depth {
            cols.remove(16);
        }
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
        for l in crate::analysis::fastline::lines(text) {
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
        // Frames are decompressed on a second thread while this one reads
        // their lines (four in flight at most; buffers come back for reuse).
        let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<std::io::Result<Vec<u8>>>(4);
        let (empty_tx, empty_rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let out = std::thread::scope(|scope| -> Result<(), ExportError> {
            let frames = &fr.frames;
            let map = &map;
            scope.spawn(move || {
                let mut released = 0;
                for r in frames {
                    // Done with a stretch of the file: out of memory.
                    if r.start - released >= 64 << 20 {
                        crate::util::release_mapped(map, released..r.start);
                        released = r.start;
                    }
                    let mut buf = empty_rx.try_recv().unwrap_or_default();
                    let res = crate::zst::decompress_frame(&map[r.clone()], &mut buf).map(|()| buf);
                    let failed = res.is_err();
                    if full_tx.send(res).is_err() || failed {
                        return;
                    }
                }
            });
            for res in full_rx {
                let buf = res.map_err(io)?;
                lines(&buf, &mut no)?;
                let _ = empty_tx.send(buf);
            }
            Ok(())
        });
        out?;
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
    /// Lines that are not tick lines: skipped, counted.
    pub bad_lines: u64,
    /// The first of them, `file:line: why`.
    pub problems: Vec<String>,
}

type Encoder = std::thread::JoinHandle<Result<ArrowWriter<std::fs::File>, ExportError>>;

/// A Parquet file being written under a temporary name (`.parquet.part`)
/// until [`Sink::finish`] renames it: a reader never sees half a file.
/// Batches are encoded and compressed on a thread of their own
/// (`tickcap-parquet`) while the caller parses the next ones: two cores, two
/// halves of the work (two batches wait at most: memory stays bounded).
struct Sink {
    tx: Option<std::sync::mpsc::SyncSender<RecordBatch>>,
    encoder: Option<Encoder>,
    tmp: PathBuf,
    out: PathBuf,
    /// Renamed into place: the temporary name is gone.
    done: bool,
}

impl Drop for Sink {
    fn drop(&mut self) {
        if !self.done {
            // A failed export leaves no half file behind.
            self.tx = None;
            if let Some(e) = self.encoder.take() {
                let _ = e.join();
            }
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

impl Sink {
    fn create(
        out: &Path,
        schema: &Arc<Schema>,
        row_group: Option<usize>,
    ) -> Result<Sink, ExportError> {
        Sink::create_with(out, schema, row_group, None)
    }

    fn create_with(
        out: &Path,
        schema: &Arc<Schema>,
        row_group: Option<usize>,
        order: Option<Order>,
    ) -> Result<Sink, ExportError> {
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()));
        if let Some(o) = order {
            props =
                props.set_key_value_metadata(Some(vec![parquet::file::metadata::KeyValue::new(
                    "tickcap.order".to_owned(),
                    o.name().to_owned(),
                )]));
        }
        if let Some(n) = row_group {
            props = props.set_max_row_group_row_count(Some(n));
        }
        let tmp = out.with_extension("parquet.part");
        let file = std::fs::File::create(&tmp).map_err(|error| ExportError::Io {
            path: tmp.clone(),
            error,
        })?;
        let mut w = ArrowWriter::try_new(file, Arc::clone(schema), Some(props.build()))
            .map_err(|e| parquet_error(out, &e))?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<RecordBatch>(2);
        let o = out.to_owned();
        let encoder = std::thread::Builder::new()
            .name("tickcap-parquet".into())
            .spawn(move || {
                for b in rx {
                    w.write(&b).map_err(|e| parquet_error(&o, &e))?;
                }
                Ok(w)
            })
            .map_err(|error| ExportError::Io {
                path: tmp.clone(),
                error,
            })?;
        Ok(Sink {
            tx: Some(tx),
            encoder: Some(encoder),
            tmp,
            out: out.to_owned(),
            done: false,
        })
    }

    /// The encoder's result (it ended: finished or failed).
    fn join(&mut self) -> Result<ArrowWriter<std::fs::File>, ExportError> {
        self.tx = None;
        match self.encoder.take().map(std::thread::JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(parquet_error(&self.out, &"the encoder thread panicked")),
            None => Err(parquet_error(&self.out, &"the encoder already ended")),
        }
    }

    fn write(&mut self, b: &RecordBatch) -> Result<(), ExportError> {
        let sent = self
            .tx
            .as_ref()
            .is_some_and(|tx| tx.send(b.clone()).is_ok());
        if sent {
            return Ok(());
        }
        // The encoder stopped: its error.
        self.join().map(drop)
    }

    fn finish(mut self, rows: u64) -> Result<Exported, ExportError> {
        let w = self.join()?;
        w.close().map_err(|e| parquet_error(&self.out, &e))?;
        std::fs::rename(&self.tmp, &self.out).map_err(|error| ExportError::Io {
            path: self.out.clone(),
            error,
        })?;
        self.done = true;
        Ok(Exported {
            path: self.out.clone(),
            rows,
            bad_lines: 0,
            problems: Vec::new(),
        })
    }
}

fn parquet_error(out: &Path, e: &dyn std::fmt::Display) -> ExportError {
    ExportError::Parquet {
        path: out.to_owned(),
        message: e.to_string(),
    }
}

/// The order of an export's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// By instrument, then by receive order (stable): one instrument's
    /// rows are together, in a row group or two whose `instrument_token`
    /// statistics let a filter skip every other row group.
    Instrument,
    /// The file's order (receive time): replay-like use.
    Receive,
}

impl Order {
    /// Its name (`--order`, and the file's `tickcap.order` metadata).
    pub fn name(self) -> &'static str {
        match self {
            Order::Instrument => "instrument",
            Order::Receive => "receive",
        }
    }
}

/// How a day is exported.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Row order.
    pub order: Order,
    /// Keep the depth column.
    pub depth: bool,
    /// Rows per row group.
    pub row_group_rows: usize,
    /// With [`Order::Instrument`]: the most text (bytes) sorted in memory
    /// at a time; the day is split into instrument ranges of about this
    /// size in temporary LZ4 files beside the output.
    pub sort_bytes: usize,
    /// Set by the caller to stop the export (checked every batch).
    pub cancel: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            order: Order::Instrument,
            depth: true,
            row_group_rows: ROW_GROUP,
            sort_bytes: 256 << 20,
            cancel: None,
        }
    }
}

/// The `instrument_token` of a tick line (near its start: `tradable`,
/// `mode`, then the token), without parsing the line.
fn token_of(line: &[u8]) -> Option<u32> {
    const KEY: &[u8] = b"\"instrument_token\":";
    let head = &line[..line.len().min(256)];
    let at = memchr::memmem::find(head, KEY)? + KEY.len();
    let digits = &line[at..];
    let end = digits.iter().position(|b| !b.is_ascii_digit())?;
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

/// Exports `inputs` (the same day: a plain and a compressed file of one
/// day are read in the order given) to `out` as one Parquet file.
pub fn export_day(
    inputs: &[PathBuf],
    out: &Path,
    zone: &str,
    opts: &ExportOptions,
) -> Result<Exported, ExportError> {
    crate::time::ZoneFormatter::new(zone)?;
    let schema = Arc::new(schema(zone, opts.depth));
    let mut w = Sink::create_with(out, &schema, Some(opts.row_group_rows), Some(opts.order))?;
    let mut rows = Rows {
        cols: Columns::new(zone, opts.depth),
        schema: &schema,
        out,
        rows: 0,
        batch: BATCH.min(opts.row_group_rows),
        cancel: opts.cancel.clone(),
        bad: 0,
        problems: Vec::new(),
    };
    match opts.order {
        Order::Receive => {
            for input in inputs {
                for_each_line(input, |no, line| rows.push(&mut w, input, no, line))?;
            }
        }
        Order::Instrument => sorted(inputs, out, opts, &mut rows, &mut w)?,
    }
    rows.flush(&mut w)?;
    let n = rows.rows;
    let mut e = w.finish(n)?;
    e.bad_lines = rows.bad;
    e.problems = rows.problems;
    Ok(e)
}

/// Rows on their way into a Parquet file, a batch at a time.
struct Rows<'a> {
    cols: Columns,
    schema: &'a Arc<Schema>,
    out: &'a Path,
    rows: u64,
    batch: usize,
    cancel: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// Lines skipped: not tick lines (a torn or hostile line, a 100 MB one).
    bad: u64,
    /// The first ten, `file:line: why`.
    problems: Vec<String>,
}

impl Rows<'_> {
    fn cancelled(&self) -> Result<(), ExportError> {
        match &self.cancel {
            Some(c) if c.load(std::sync::atomic::Ordering::Relaxed) => Err(ExportError::Cancelled),
            _ => Ok(()),
        }
    }

    /// Adds a line's row; a line that is not a tick line is skipped and
    /// counted (the first ten kept with their file and line number). A
    /// failed row adds nothing: every fallible step comes before the first
    /// append.
    fn push(
        &mut self,
        w: &mut Sink,
        input: &Path,
        no: usize,
        line: &[u8],
    ) -> Result<(), ExportError> {
        let parsed = Row::read(line).and_then(|r| self.cols.push(&r));
        if let Err(why) = parsed {
            self.bad += 1;
            if self.problems.len() < 10 {
                self.problems.push(format!(
                    "{}:{no}: {} (line skipped)",
                    input.display(),
                    crate::util::log_text(&why, 200)
                ));
            }
            return Ok(());
        }
        self.rows += 1;
        if self.cols.rows >= self.batch {
            self.flush(w)?;
        }
        Ok(())
    }

    fn flush(&mut self, w: &mut Sink) -> Result<(), ExportError> {
        self.cancelled()?;
        if self.cols.rows == 0 {
            return Ok(());
        }
        let b = self
            .cols
            .finish(self.schema)
            .map_err(|e| parquet_error(self.out, &e))?;
        w.write(&b)
    }
}

/// The instrument-ordered export, in bounded memory: (1) the day's lines
/// go, as they are, into temporary LZ4 files, one per instrument range
/// (ranges of about `sort_bytes` of text each, cut from the first million
/// lines' mix of instruments); (2) each range in turn is read back, its
/// lines ordered by instrument (stable: receive order within one) and
/// parsed into the Parquet file. A line is parsed once, as in file order.
fn sorted(
    inputs: &[PathBuf],
    out: &Path,
    opts: &ExportOptions,
    rows: &mut Rows<'_>,
    w: &mut Sink,
) -> Result<(), ExportError> {
    use std::io::Write as _;
    let tmp_dir = out.with_extension("parquet.sort");
    let io = |path: &Path| {
        let path = path.to_owned();
        move |error| ExportError::Io { path, error }
    };
    // The text's size: a `.zst` day is about 6 times its size in text.
    let text_bytes: u64 = inputs
        .iter()
        .map(|p| {
            let n = std::fs::metadata(p).map_or(0, |m| m.len());
            if crate::zst::is_zst(p) {
                n * 8
            } else {
                n
            }
        })
        .sum();
    let ranges = (text_bytes / opts.sort_bytes.max(1) as u64 + 1).min(1024) as usize;
    // Bounds from a sample: each range gets about as many lines.
    let mut sample: Vec<u32> = Vec::new();
    'sample: for input in inputs {
        let r = for_each_line(input, |_, line| {
            if let Some(t) = token_of(line) {
                sample.push(t);
            }
            if sample.len() >= 1_000_000 {
                return Err(ExportError::Line {
                    path: PathBuf::new(),
                    line: 0,
                    message: String::new(),
                });
            }
            Ok(())
        });
        match r {
            Ok(_) => {}
            Err(ExportError::Line { path, .. }) if path.as_os_str().is_empty() => break 'sample,
            Err(e) => return Err(e),
        }
    }
    sample.sort_unstable();
    let mut bounds: Vec<u32> = (1..ranges)
        .filter_map(|i| sample.get(i * sample.len() / ranges).copied())
        .collect();
    bounds.dedup();
    let range_of = |t: u32| bounds.partition_point(|b| *b <= t);
    std::fs::create_dir_all(&tmp_dir).map_err(io(&tmp_dir))?;
    let _cleanup = RemoveOnDrop(tmp_dir.clone());
    let path_of = |i: usize| tmp_dir.join(format!("range-{i:04}.lz4"));
    // (1) split. Lines gather per range in memory (`SPLIT_BUFFER` each)
    // and go whole to a second thread that LZ4-compresses them into the
    // range's file: compression was a sixth of the export, and it need
    // not wait for the reading.
    const SPLIT_BUFFER: usize = 256 << 10;
    let n = bounds.len() + 1;
    std::thread::scope(|sc| -> Result<(), ExportError> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, Vec<u8>)>(16);
        let compressor = std::thread::Builder::new()
            .name("tickcap-sort".into())
            .spawn_scoped(sc, move || -> Result<(), ExportError> {
                let mut writers = Vec::with_capacity(n);
                for i in 0..n {
                    let p = path_of(i);
                    let f = std::fs::File::create(&p).map_err(io(&p))?;
                    // LZ4 frames: 3–4 times faster than zstd's fastest
                    // level both ways, and an encoder is a 64 KiB block:
                    // hundreds of ranges open at once stay small.
                    writers.push(lz4_flex::frame::FrameEncoder::new(
                        std::io::BufWriter::with_capacity(64 << 10, f),
                    ));
                }
                for (i, buf) in rx {
                    writers[i].write_all(&buf).map_err(io(&path_of(i)))?;
                }
                for (i, e) in writers.into_iter().enumerate() {
                    let p = path_of(i);
                    e.finish()
                        .map_err(std::io::Error::other)
                        .and_then(|b| b.into_inner().map_err(|e| e.into_error()))
                        .map_err(io(&p))?;
                }
                Ok(())
            })
            .map_err(io(&tmp_dir))?;
        let mut bufs: Vec<Vec<u8>> = vec![Vec::new(); n];
        // The compressor stopped (its error is the one to report).
        let gone = || ExportError::Cancelled;
        let mut read = || -> Result<(), ExportError> {
            for (input_no, input) in inputs.iter().enumerate() {
                for_each_line(input, |no, line| {
                    if no % 65_536 == 0 {
                        rows.cancelled()?;
                    }
                    // A line without a token is not a tick: its range's
                    // reading reports it with its place, as file order would.
                    let i = range_of(token_of(line).unwrap_or(0));
                    // Where the line came from, for a report: "FILE LINE ".
                    let b = &mut bufs[i];
                    b.extend_from_slice(&itoa_pair(input_no, no));
                    b.push(b' ');
                    b.extend_from_slice(line);
                    b.push(b'\n');
                    if b.len() >= SPLIT_BUFFER {
                        let full = std::mem::replace(b, Vec::with_capacity(SPLIT_BUFFER + 4096));
                        tx.send((i, full)).map_err(|_| gone())?;
                    }
                    Ok(())
                })?;
            }
            for (i, b) in bufs.iter_mut().enumerate() {
                if !b.is_empty() {
                    tx.send((i, std::mem::take(b))).map_err(|_| gone())?;
                }
            }
            Ok(())
        };
        let reading = read();
        drop(tx);
        let compressing = compressor
            .join()
            .map_err(|_| io(&tmp_dir)(std::io::Error::other("the sort thread panicked")))?;
        match (reading, compressing) {
            (_, Err(e)) => Err(e),
            (r, Ok(())) => r,
        }
    })?;
    // (2) each range, ordered by instrument: a second thread reads,
    // decompresses and orders the next range while this one parses the
    // current one (two ranges in memory at most).
    std::thread::scope(|sc| -> Result<(), ExportError> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<SortedRange, ExportError>>(0);
        sc.spawn(move || {
            for i in 0..n {
                let r = read_range(&path_of(i));
                let failed = r.is_err();
                if tx.send(r).is_err() || failed {
                    break;
                }
            }
        });
        for r in rx {
            let r = r?;
            for (_, at, len) in &r.index {
                let l = &r.text[*at..*at + *len];
                let (input_no, no, line) = split_origin(l);
                let input = inputs.get(input_no).unwrap_or(&inputs[0]);
                rows.push(w, input, no, line)?;
            }
        }
        Ok(())
    })?;
    Ok(())
}

/// A sort range read back: its text and its lines' (token, start, length)
/// in instrument order (stable: file order within one instrument).
struct SortedRange {
    text: Vec<u8>,
    index: Vec<(u32, usize, usize)>,
}

/// Reads a sort range's LZ4 file (removing it) and orders its lines.
fn read_range(p: &Path) -> Result<SortedRange, ExportError> {
    let io = |error| ExportError::Io {
        path: p.to_owned(),
        error,
    };
    let mut text = Vec::new();
    let f = std::fs::File::open(p).map_err(io)?;
    // A range no line fell into has no frame at all.
    if f.metadata().map_err(io)?.len() > 0 {
        std::io::Read::read_to_end(&mut lz4_flex::frame::FrameDecoder::new(f), &mut text)
            .map_err(io)?;
    }
    std::fs::remove_file(p).map_err(io)?;
    let mut index: Vec<(u32, usize, usize)> = Vec::new();
    let mut at = 0;
    for l in crate::analysis::fastline::lines(&text) {
        if !l.is_empty() {
            index.push((token_of(l).unwrap_or(u32::MAX), at, l.len()));
        }
        at += l.len() + 1;
    }
    // (token, position): stable within an instrument.
    index.sort_unstable();
    Ok(SortedRange { text, index })
}

/// `"FILE LINE"` as ASCII digits.
fn itoa_pair(a: usize, b: usize) -> Vec<u8> {
    format!("{a} {b}").into_bytes()
}

/// A sort range's line: (input index, line number, the tick line).
fn split_origin(l: &[u8]) -> (usize, usize, &[u8]) {
    let num = |x: &[u8]| {
        std::str::from_utf8(x)
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0)
    };
    let mut parts = l.splitn(3, |b| *b == b' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(b), Some(rest)) => (num(a), num(b), rest),
        _ => (0, 0, l),
    }
}

/// Removes a temporary directory however the export ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    #[test]
    fn every_kind_of_line_the_writer_makes_is_read_fast_as_serde_reads_it() {
        for (mode, line) in crate::sink::line::sample_lines(20) {
            let fast = super::Row::fast(&line).unwrap_or_else(|| {
                panic!(
                    "{mode:?}: not read fast: {}",
                    String::from_utf8_lossy(&line)
                )
            });
            let serde: super::Row<'_> = serde_json::from_slice(&line).unwrap();
            assert_eq!(fast, serde, "{mode:?}");
        }
    }

    proptest! {
        /// A damaged line (anywhere, depth included) is declined by the
        /// fast reading or read as serde reads it.
        #[test]
        fn a_damaged_line_is_declined_or_read_as_serde_reads_it(
            case in crate::sink::line::line_and_edits(),
        ) {
            let (mut line, edits) = case;
            crate::sink::line::damage(&mut line, &edits, 0..0);
            if let Some(fast) = super::Row::fast(&line) {
                let serde = serde_json::from_slice::<super::Row<'_>>(&line);
                prop_assert!(serde.is_ok(), "serde refuses what was read fast: {}", String::from_utf8_lossy(&line));
                prop_assert_eq!(fast, serde.unwrap());
            }
        }
    }
}
