//! A fast reading of tick lines as tickcap's writer makes them: the keys in
//! the writer's order, numbers and strings without escapes, depth skipped
//! by a jump to the line's tail instead of being parsed.
//!
//! Why: a whole day is 200–400 M lines of ~600 bytes, and a general JSON
//! parse of each (serde, ~1.5 µs a full line) was most of `tickcap
//! candles`' time. The candle book needs eight fields; this reads them in
//! one forward pass over the bytes before depth and the receive time from
//! the line's tail. It is an *accelerator*, never a second meaning: it
//! answers `None` on anything it does not expect (another key order, an
//! escape, a `null`, white space, a number out of range) and the caller
//! then asks serde, which stays the reference ([`super::candles`] tests
//! that both give the same ticks on every kind of line the writer makes).
//! Depth is not checked here (its bytes are skipped): checking lines is
//! `tickcap verify`'s job.

use crate::kite::{price_divisor, Mode, PacketKind, Tick};

/// The lines of `text` (split at `\n`, the last one unterminated or
/// empty), as `text.split(|b| *b == b'\n')` gives them, found with SIMD:
/// a byte-by-byte split was a tenth of a whole-day tool's time.
pub fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut at = 0;
    let mut ends = memchr::memchr_iter(b'\n', text);
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        match ends.next() {
            Some(e) => {
                let l = &text[at..e];
                at = e + 1;
                Some(l)
            }
            None => {
                done = true;
                Some(&text[at..])
            }
        }
    })
}

/// A forward cursor over one line: the pieces the fast readers (here and
/// the Parquet export's) are made of. Every method answers `None` where the
/// bytes are not what the writer writes.
pub(crate) struct Cur<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cur<'a> {
    /// At the start of `line`.
    pub(crate) fn new(line: &'a [u8]) -> Self {
        Cur { b: line, i: 0 }
    }

    /// After the first key: `,` before the next one (true), or the closing
    /// `}` as the line's last byte (false).
    #[inline]
    pub(crate) fn next_or_end(&mut self) -> Option<bool> {
        match *self.b.get(self.i)? {
            b',' => {
                self.i += 1;
                Some(true)
            }
            b'}' if self.i + 1 == self.b.len() => Some(false),
            _ => None,
        }
    }

    /// `{"open":F,"high":F,"low":F,"close":F}`, the four in any order
    /// (indices' come as the official client orders them: high, low,
    /// open, close), each once.
    #[inline]
    pub(crate) fn ohlc(&mut self) -> Option<[f64; 4]> {
        let mut v = [None; 4];
        for k in 0..4 {
            self.eat(if k == 0 { b'{' } else { b',' })?;
            let slot = match self.key()? {
                b"open" => &mut v[0],
                b"high" => &mut v[1],
                b"low" => &mut v[2],
                b"close" => &mut v[3],
                _ => return None,
            };
            if slot.replace(self.f64()?).is_some() {
                return None;
            }
        }
        self.eat(b'}')?;
        Some([v[0]?, v[1]?, v[2]?, v[3]?])
    }

    /// `[{"quantity":Q,"price":P,"orders":O},…]` (any key order, each
    /// once), each level handed to `each` as (price, quantity, orders).
    #[cfg(feature = "parquet")]
    #[inline]
    pub(crate) fn levels(&mut self, mut each: impl FnMut(f64, u32, u32)) -> Option<()> {
        self.eat(b'[')?;
        if self.eat(b']').is_some() {
            return Some(());
        }
        loop {
            let (mut p, mut q, mut o) = (None, None, None);
            for k in 0..3 {
                self.eat(if k == 0 { b'{' } else { b',' })?;
                match self.key()? {
                    b"price" if p.is_none() => p = Some(self.f64()?),
                    b"quantity" if q.is_none() => q = Some(self.u32()?),
                    b"orders" if o.is_none() => o = Some(self.u32()?),
                    _ => return None,
                }
            }
            self.eat(b'}')?;
            each(p?, q?, o?);
            match *self.b.get(self.i)? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// `true` or `false`.
    #[cfg(feature = "parquet")]
    #[inline]
    pub(crate) fn bool(&mut self) -> Option<bool> {
        match *self.b.get(self.i)? {
            b't' => self.lit(b"true").map(|()| true),
            b'f' => self.lit(b"false").map(|()| false),
            _ => None,
        }
    }

    #[inline]
    pub(crate) fn eat(&mut self, c: u8) -> Option<()> {
        (*self.b.get(self.i)? == c).then(|| self.i += 1)
    }

    /// The bytes up to the next `"` (keys, times: a few dozen bytes, where
    /// a plain loop beats a SIMD search's setup), the cursor after it.
    #[inline]
    fn through_quote(&mut self) -> Option<&'a [u8]> {
        let s = self.i;
        let n = self.b[s..].iter().position(|&c| c == b'"')?;
        self.i = s + n + 1;
        Some(&self.b[s..s + n])
    }

    /// `"key":` → key.
    #[inline]
    pub(crate) fn key(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let k = self.through_quote()?;
        self.eat(b':')?;
        Some(k)
    }

    /// A string value without escapes, as bytes.
    #[inline]
    fn string_bytes(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let v = self.through_quote()?;
        (!v.contains(&b'\\')).then_some(v)
    }

    /// A string value without escapes (ASCII: the writer's strings are).
    #[inline]
    pub(crate) fn string(&mut self) -> Option<&'a str> {
        let v = self.string_bytes()?;
        if !v.is_ascii() {
            return None;
        }
        std::str::from_utf8(v).ok()
    }

    /// The bytes of a number as JSON's grammar has it (`-`? int frac? exp?):
    /// Rust's float parser also takes `+1`, `.5` and `1.`, which are not JSON.
    #[inline]
    fn number_text(&mut self) -> Option<&'a [u8]> {
        let s = self.i;
        let digits = |c: &mut Self| {
            let d = c.i;
            while c.b.get(c.i).is_some_and(u8::is_ascii_digit) {
                c.i += 1;
            }
            c.i - d
        };
        let _ = self.eat(b'-');
        let int_start = self.i;
        let n = digits(self);
        if n == 0 || (n > 1 && self.b[int_start] == b'0') {
            return None;
        }
        if self.eat(b'.').is_some() && digits(self) == 0 {
            return None;
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if digits(self) == 0 {
                return None;
            }
        }
        Some(&self.b[s..self.i])
    }

    /// An unsigned integer that fits a u32 (plain digits, as JSON writes it).
    #[inline]
    pub(crate) fn u32(&mut self) -> Option<u32> {
        let s = self.i;
        let mut v: u64 = 0;
        while let Some(c @ b'0'..=b'9') = self.b.get(self.i).copied() {
            v = v * 10 + u64::from(c - b'0');
            if v > u64::from(u32::MAX) {
                return None;
            }
            self.i += 1;
        }
        let digits = self.i - s;
        // JSON has no leading zeros; a fraction or exponent is serde's case.
        if digits == 0
            || (digits > 1 && self.b[s] == b'0')
            || matches!(self.b.get(self.i), Some(b'.' | b'e' | b'E'))
        {
            return None;
        }
        Some(v as u32)
    }

    /// A number as f64, correctly rounded. Prices as the writer writes
    /// them (`-`? digits `.` digits, under 2^53 as an integer) take
    /// Clinger's fast path: the integer and the power of ten are exact, so
    /// their quotient is the correctly rounded value; anything else goes
    /// through Rust's parser.
    #[inline]
    pub(crate) fn f64(&mut self) -> Option<f64> {
        const POW10: [f64; 16] = [
            1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
        ];
        let t = self.number_text()?;
        let (neg, digits) = match t.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, t),
        };
        let mut m: u64 = 0;
        let mut frac: Option<usize> = None;
        let mut fast = digits.len() <= 16;
        for (k, &c) in digits.iter().enumerate() {
            match c {
                b'0'..=b'9' => m = m * 10 + u64::from(c - b'0'),
                b'.' => frac = Some(digits.len() - k - 1),
                _ => {
                    fast = false;
                    break;
                }
            }
        }
        if fast && m < (1 << 53) {
            let x = m as f64 / POW10[frac.unwrap_or(0)];
            return Some(if neg { -x } else { x });
        }
        // JSON has no infinities: serde refuses `1e999`, Rust reads `inf`.
        std::str::from_utf8(t)
            .ok()?
            .parse()
            .ok()
            .filter(|x: &f64| x.is_finite())
    }

    /// Skips a scalar value (number, string without escapes, true/false).
    #[inline]
    pub(crate) fn skip_scalar(&mut self) -> Option<()> {
        match *self.b.get(self.i)? {
            b'"' => self.string_bytes().map(|_| ()),
            b't' => self.lit(b"true"),
            b'f' => self.lit(b"false"),
            _ => self.number_text().map(|_| ()),
        }
    }

    #[inline]
    pub(crate) fn lit(&mut self, s: &[u8]) -> Option<()> {
        self.b[self.i..].starts_with(s).then(|| self.i += s.len())
    }
}

/// The tick fields the candle book uses and the receive time, read the
/// fast way; `None`: not a line as the writer writes it (ask serde).
pub fn book(line: &[u8]) -> Option<(Tick, i64)> {
    let mut c = Cur::new(line);
    c.eat(b'{')?;
    let mut mode: Option<Mode> = None;
    let mut token: Option<u32> = None;
    let mut last_price: Option<f64> = None;
    let mut ohlc: Option<[f64; 4]> = None;
    let mut volume: Option<u32> = None;
    let mut ltt: Option<&str> = None;
    let mut oi: Option<u32> = None;
    let mut at: Option<i64> = None;
    let mut first = true;
    loop {
        if !first && !c.next_or_end()? {
            break;
        }
        first = false;
        let key = c.key()?;
        // Each key once: a repeated key is serde's case (it refuses it).
        match key {
            b"mode" if mode.is_none() => mode = Some(c.string()?.parse().ok()?),
            b"instrument_token" if token.is_none() => token = Some(c.u32()?),
            b"last_price" if last_price.is_none() => last_price = Some(c.f64()?),
            b"volume_traded" if volume.is_none() => volume = Some(c.u32()?),
            b"oi" if oi.is_none() => oi = Some(c.u32()?),
            b"last_trade_time" if ltt.is_none() => ltt = Some(c.string()?),
            b"timestamp" if at.is_none() => at = Some(crate::time::parse_timestamp(c.string()?)?),
            b"ohlc" if ohlc.is_none() => ohlc = Some(c.ohlc()?),
            b"depth" => {
                // Jump to the receive time: the writer puts `timestamp` and
                // `connection_id` after depth, and depth has no strings
                // that could hold the key.
                let rest = &c.b[c.i..];
                if !rest.starts_with(b"{\"buy\":[") {
                    return None;
                }
                let tail = memchr::memmem::rfind(rest, b"]},\"timestamp\":\"")?;
                c.i += tail + 2;
            }
            b"tradable"
            | b"last_traded_quantity"
            | b"average_traded_price"
            | b"total_buy_quantity"
            | b"total_sell_quantity"
            | b"change"
            | b"oi_day_high"
            | b"oi_day_low"
            | b"exchange_timestamp"
            | b"connection_id" => c.skip_scalar()?,
            _ => return None,
        }
    }
    let (mode, token, at) = (mode?, token?, at?);
    let div = f64::from(price_divisor(token));
    let raw = |x: f64| -> Option<u32> {
        let r = (x * div).round();
        (0.0..=f64::from(u32::MAX)).contains(&r).then_some(r as u32)
    };
    let kind = mode.packet_kind(token);
    let mut t = Tick::new(kind, token);
    t.last_price = raw(last_price?)?;
    if kind != PacketKind::Ltp {
        let [o, h, l, cl] = ohlc?;
        t.open = raw(o)?;
        t.high = raw(h)?;
        t.low = raw(l)?;
        t.close = raw(cl)?;
    }
    if matches!(kind, PacketKind::Quote | PacketKind::Full) {
        t.volume_traded = volume?;
    }
    if kind == PacketKind::Full {
        let micros = crate::time::parse_timestamp(ltt?)?;
        t.last_trade_time = u32::try_from(micros.div_euclid(1_000_000)).ok()?;
        t.oi = oi?;
    }
    Some((t, at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::candles::parse_for_book_serde;
    use proptest::prelude::*;

    #[test]
    fn lines_are_what_split_gives() {
        for text in [&b""[..], b"\n", b"a", b"a\n", b"a\n\nbc", b"a\nb\n"] {
            let want: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
            assert_eq!(lines(text).collect::<Vec<_>>(), want);
        }
    }

    #[test]
    fn every_kind_of_line_the_writer_makes_reads_fast_and_as_serde_reads_it() {
        for (mode, line) in crate::sink::line::sample_lines(40) {
            let fast = book(&line).unwrap_or_else(|| {
                panic!(
                    "{mode:?}: not read fast: {}",
                    String::from_utf8_lossy(&line)
                )
            });
            assert_eq!(Ok(fast), parse_for_book_serde(&line), "{mode:?}");
        }
    }

    #[test]
    fn what_json_allows_and_the_writer_does_not_write_is_left_to_serde() {
        let line = crate::sink::line::sample_lines(1)
            .into_iter()
            .find(|(m, _)| *m == Mode::Quote)
            .unwrap()
            .1;
        let text = String::from_utf8(line).unwrap();
        for (what, changed) in [
            ("white space", text.replacen(",\"mode\"", ", \"mode\"", 1)),
            (
                "an escape",
                text.replacen("\"quote\"", "\"q\\u0075ote\"", 1),
            ),
            (
                "a null",
                text.replacen("\"volume_traded\":", "\"volume_traded\":null,\"x\":", 1),
            ),
            (
                "a repeated key",
                text.replacen("{", "{\"mode\":\"ltp\",", 1),
            ),
            ("an unknown key", text.replacen("{", "{\"extra\":[1],", 1)),
            ("a trailing comma", text.replacen("}", ",}", 1)),
        ] {
            assert_eq!(book(changed.as_bytes()), None, "{what}: {changed}");
        }
        for bad in [
            "+1", ".5", "1.", "01", "1e", "-", "1.5e+", "1e999", "-2e400",
        ] {
            let changed = text.replacen(
                "\"last_price\":",
                &format!("\"last_price\":{bad},\"y\":"),
                1,
            );
            assert_eq!(book(changed.as_bytes()), None, "{bad}");
            assert!(parse_for_book_serde(changed.as_bytes()).is_err(), "{bad}");
        }
    }

    proptest! {
        /// The fast path of numbers is Rust's (correctly rounded) parse.
        #[test]
        fn numbers_read_as_rusts_parser_reads_them(int in 0u64..10_000_000_000, frac in 0u32..100_000_000, digits in 0usize..9, neg: bool) {
            let f = format!("{frac:08}");
            let text = match digits {
                0 => format!("{}{int}", if neg { "-" } else { "" }),
                d => format!("{}{int}.{}", if neg { "-" } else { "" }, &f[..d]),
            };
            let mut c = Cur { b: text.as_bytes(), i: 0 };
            prop_assert_eq!(c.f64(), Some(text.parse::<f64>().unwrap()), "{}", text);
        }

        /// Whatever a damaged line holds outside depth, the fast reading
        /// either declines or reads what serde reads.
        #[test]
        fn a_damaged_line_is_declined_or_read_as_serde_reads_it(
            case in crate::sink::line::line_and_edits(),
        ) {
            let (mut line, edits) = case;
            let depth = match (
                memchr::memmem::find(&line, b"\"depth\":"),
                memchr::memmem::rfind(&line, b"]},\"timestamp\""),
            ) {
                (Some(s), Some(e)) => s..e + 2,
                _ => 0..0,
            };
            crate::sink::line::damage(&mut line, &edits, depth);
            if let Some(fast) = book(&line) {
                prop_assert_eq!(Ok(fast), parse_for_book_serde(&line), "{}", String::from_utf8_lossy(&line));
            }
        }
    }
}
