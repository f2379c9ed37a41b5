//! Fixed-size tick values: what one Kite packet carries, as raw integers.
//!
//! Prices stay the integers Kite sent; they are divided only when written
//! ([`Tick::price`]), so a tick round-trips through encode/decode bit for bit
//! and the JSONL writer can print prices exactly (see `sink::number`).

use std::fmt;
use std::str::FromStr;

/// Number of market-depth entries in a full packet: 5 bids, then 5 asks.
pub const DEPTH_LEVELS: usize = 10;

/// A subscription mode, as Kite names it in `mode` messages and in ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    /// Last traded price only (8-byte packets).
    Ltp,
    /// OHLC, volumes and quantities (44-byte packets, 28 for indices).
    Quote,
    /// Quote plus times, open interest and 5+5 depth (184 bytes, 32 for indices).
    Full,
}

impl Mode {
    /// The name Kite uses on the wire and the official client puts in `"mode"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Ltp => "ltp",
            Mode::Quote => "quote",
            Mode::Full => "full",
        }
    }

    /// The packet kind Kite sends for an instrument of `token` in this mode.
    pub const fn packet_kind(self, token: u32) -> PacketKind {
        let index = segment(token).0 == Segment::INDICES.0;
        match (self, index) {
            (Mode::Ltp, _) => PacketKind::Ltp,
            (Mode::Quote, true) => PacketKind::IndexQuote,
            (Mode::Quote, false) => PacketKind::Quote,
            (Mode::Full, true) => PacketKind::IndexFull,
            (Mode::Full, false) => PacketKind::Full,
        }
    }
}

/// As Kite names it (`"ltp"`, `"quote"`, `"full"`).
impl serde::Serialize for Mode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mode name that is not `ltp`, `quote` or `full`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown mode {0:?}: expected \"ltp\", \"quote\" or \"full\"")]
pub struct UnknownMode(pub String);

impl FromStr for Mode {
    type Err = UnknownMode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ltp" => Ok(Mode::Ltp),
            "quote" => Ok(Mode::Quote),
            "full" => Ok(Mode::Full),
            other => Err(UnknownMode(other.to_owned())),
        }
    }
}

/// The packet layouts Kite sends, told apart by their length alone (as the
/// official client does).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketKind {
    /// 8 bytes: token, last price. Any segment.
    Ltp,
    /// 28 bytes: an index in quote mode.
    IndexQuote,
    /// 32 bytes: an index in full mode (adds the exchange timestamp).
    IndexFull,
    /// 44 bytes: a tradable instrument in quote mode.
    Quote,
    /// 184 bytes: a tradable instrument in full mode, with depth.
    Full,
}

impl PacketKind {
    /// Every kind, for tables and property tests.
    pub const ALL: [PacketKind; 5] = [
        PacketKind::Ltp,
        PacketKind::IndexQuote,
        PacketKind::IndexFull,
        PacketKind::Quote,
        PacketKind::Full,
    ];

    /// The packet length in bytes.
    #[allow(clippy::len_without_is_empty)] // a packet kind is never empty
    pub const fn len(self) -> usize {
        match self {
            PacketKind::Ltp => 8,
            PacketKind::IndexQuote => 28,
            PacketKind::IndexFull => 32,
            PacketKind::Quote => 44,
            PacketKind::Full => 184,
        }
    }

    /// The kind of a packet of `len` bytes, or `None` for a length the
    /// official client does not decode.
    pub const fn from_len(len: usize) -> Option<Self> {
        match len {
            8 => Some(PacketKind::Ltp),
            28 => Some(PacketKind::IndexQuote),
            32 => Some(PacketKind::IndexFull),
            44 => Some(PacketKind::Quote),
            184 => Some(PacketKind::Full),
            _ => None,
        }
    }

    /// The `"mode"` the official client reports for this kind.
    pub const fn mode(self) -> Mode {
        match self {
            PacketKind::Ltp => Mode::Ltp,
            PacketKind::IndexQuote | PacketKind::Quote => Mode::Quote,
            PacketKind::IndexFull | PacketKind::Full => Mode::Full,
        }
    }
}

/// An exchange segment: the low byte of an instrument token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Segment(pub u8);

impl Segment {
    /// NSE equity.
    pub const NSE: Segment = Segment(1);
    /// NSE currency derivatives: prices in units of 1e-7.
    pub const CDS: Segment = Segment(3);
    /// BSE currency derivatives: prices in units of 1e-4.
    pub const BCD: Segment = Segment(6);
    /// Indices: not tradable, index packet layouts.
    pub const INDICES: Segment = Segment(9);
    /// NCDEX commodities: prices in units of 1e-4.
    pub const NCO: Segment = Segment(12);
}

/// The segment of an instrument: `token & 0xff`.
pub const fn segment(token: u32) -> Segment {
    Segment((token & 0xff) as u8)
}

/// What Kite's integer prices for `token` are divided by.
pub const fn price_divisor(token: u32) -> u32 {
    match segment(token).0 {
        3 => 10_000_000,
        6 | 12 => 10_000,
        _ => 100,
    }
}

/// Whether the official client reports the instrument as `tradable`
/// (everything but indices).
pub const fn is_tradable(token: u32) -> bool {
    segment(token).0 != Segment::INDICES.0
}

/// One level of market depth, as sent (price undivided).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DepthEntry {
    /// Quantity at this level.
    pub quantity: u32,
    /// Price, in the segment's integer units.
    pub price: u32,
    /// Number of orders at this level.
    pub orders: u16,
}

/// One decoded packet. Fields a packet kind does not carry are zero.
///
/// `Copy` and fixed-size (no heap), so it moves through the SPSC rings by value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tick {
    /// Which layout it came in (and so which keys it has).
    pub kind: PacketKind,
    /// Instrument token; its low byte is the segment.
    pub instrument_token: u32,
    /// Last traded price (integer units).
    pub last_price: u32,
    /// Last traded quantity.
    pub last_traded_quantity: u32,
    /// Average traded price (integer units).
    pub average_traded_price: u32,
    /// Volume traded today.
    pub volume_traded: u32,
    /// Total pending buy quantity.
    pub total_buy_quantity: u32,
    /// Total pending sell quantity.
    pub total_sell_quantity: u32,
    /// Day open (integer units).
    pub open: u32,
    /// Day high (integer units).
    pub high: u32,
    /// Day low (integer units).
    pub low: u32,
    /// Previous close (integer units).
    pub close: u32,
    /// Index packets' bytes 24..28 ("price change"), which the official client
    /// ignores; kept so that encode(decode(x)) == x.
    pub index_change: u32,
    /// Last trade time, epoch seconds (full packets).
    pub last_trade_time: u32,
    /// Open interest (full packets).
    pub oi: u32,
    /// Open interest day high (full packets).
    pub oi_day_high: u32,
    /// Open interest day low (full packets).
    pub oi_day_low: u32,
    /// Exchange timestamp, epoch seconds (full and index full packets).
    pub exchange_timestamp: u32,
    /// 5 bids then 5 asks (full packets).
    pub depth: [DepthEntry; DEPTH_LEVELS],
}

impl Tick {
    /// The tick as a subscriber in `mode` receives it: the packet layout
    /// of that mode for this instrument, with only the fields that layout
    /// carries (a full tick asked in quote mode loses its depth, OI and
    /// times; in LTP mode keeps only the price). Asked in a richer mode
    /// than it came in, it takes that layout with the missing fields zero
    /// (the replay feed's recorded ticks); the hub never asks that.
    pub fn in_mode(&self, mode: Mode) -> Tick {
        let t = self;
        let kind = mode.packet_kind(t.instrument_token);
        if kind == t.kind {
            return *t;
        }
        let mut out = *t;
        out.kind = kind;
        let blank = Tick::new(kind, t.instrument_token);
        match kind {
            PacketKind::Ltp => {
                return Tick {
                    last_price: t.last_price,
                    ..blank
                }
            }
            PacketKind::IndexQuote => out.exchange_timestamp = 0,
            PacketKind::Quote => {
                out.last_trade_time = 0;
                out.oi = 0;
                out.oi_day_high = 0;
                out.oi_day_low = 0;
                out.exchange_timestamp = 0;
                out.depth = blank.depth;
            }
            PacketKind::IndexFull | PacketKind::Full => {}
        }
        out
    }

    /// A tick of `kind` for `instrument_token` with every other field zero.
    pub const fn new(kind: PacketKind, instrument_token: u32) -> Self {
        const ZERO: DepthEntry = DepthEntry {
            quantity: 0,
            price: 0,
            orders: 0,
        };
        Tick {
            kind,
            instrument_token,
            last_price: 0,
            last_traded_quantity: 0,
            average_traded_price: 0,
            volume_traded: 0,
            total_buy_quantity: 0,
            total_sell_quantity: 0,
            open: 0,
            high: 0,
            low: 0,
            close: 0,
            index_change: 0,
            last_trade_time: 0,
            oi: 0,
            oi_day_high: 0,
            oi_day_low: 0,
            exchange_timestamp: 0,
            depth: [ZERO; DEPTH_LEVELS],
        }
    }

    /// The mode the official client reports for this tick.
    pub const fn mode(&self) -> Mode {
        self.kind.mode()
    }

    /// A raw price of this instrument as the official client computes it:
    /// `raw / divisor` in double precision.
    pub fn price(&self, raw: u32) -> f64 {
        f64::from(raw) / f64::from(price_divisor(self.instrument_token))
    }

    /// `change` as the official client computes it: `None` where it writes the
    /// integer `0` (close is zero), else `(last - close) * 100 / close`.
    pub fn change(&self) -> Option<f64> {
        if self.close == 0 {
            return None;
        }
        let close = self.price(self.close);
        Some((self.price(self.last_price) - close) * 100.0 / close)
    }

    /// The 5 bid levels (full packets).
    pub fn bids(&self) -> &[DepthEntry] {
        &self.depth[..DEPTH_LEVELS / 2]
    }

    /// The 5 ask levels (full packets).
    pub fn asks(&self) -> &[DepthEntry] {
        &self.depth[DEPTH_LEVELS / 2..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn divisors_by_segment_as_the_official_client() {
        // (token, divisor, tradable)
        let table = [
            (408065, 100, true),             // NSE (segment 1)
            (12_345_602, 100, true),         // NFO (2)
            (0x0001_0003, 10_000_000, true), // CDS (3)
            (0x0001_0006, 10_000, true),     // BCD (6)
            (0x0001_000c, 10_000, true),     // NCO (12)
            (256_265, 100, false),           // NIFTY 50 (9): an index
            (0x0001_0007, 100, true),        // MCX (7)
        ];
        for (i, (token, div, tradable)) in table.into_iter().enumerate() {
            assert_eq!(price_divisor(token), div, "row {i}");
            assert_eq!(is_tradable(token), tradable, "row {i}");
        }
    }

    #[test]
    fn mode_names_round_trip() {
        for m in [Mode::Ltp, Mode::Quote, Mode::Full] {
            assert_eq!(m.as_str().parse::<Mode>(), Ok(m));
        }
        assert!("FULL".parse::<Mode>().is_err());
    }

    #[test]
    fn an_index_gets_index_layouts() {
        assert_eq!(Mode::Quote.packet_kind(256_265), PacketKind::IndexQuote);
        assert_eq!(Mode::Full.packet_kind(256_265), PacketKind::IndexFull);
        assert_eq!(Mode::Full.packet_kind(408_065), PacketKind::Full);
        assert_eq!(Mode::Ltp.packet_kind(256_265), PacketKind::Ltp);
    }

    #[test]
    fn change_is_absent_when_close_is_zero() {
        let mut t = Tick::new(PacketKind::Quote, 408_065);
        t.last_price = 250_050;
        assert_eq!(t.change(), None);
        t.close = 250_000;
        assert_eq!(t.change(), Some((2500.5 - 2500.0) * 100.0 / 2500.0));
    }
}
