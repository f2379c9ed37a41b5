//! Kite's daily instruments dump: the CSV at `{api_root}/instruments` that
//! names every instrument, and the symbol table built from it.
//!
//! Users think in `EXCHANGE:TRADINGSYMBOL` (`NSE:INFY`, Kite's own notation
//! in its quote APIs); the ticker speaks numeric `instrument_token`s, and
//! F&O tokens are reassigned after expiry. [`Directory`] maps both ways,
//! searches, and suggests the closest symbols for a misspelt one. Parsing
//! is a pure function over the dump's bytes.

use std::collections::HashMap;

/// The columns of Kite's dump, in its order.
pub const COLUMNS: [&str; 12] = [
    "instrument_token",
    "exchange_token",
    "tradingsymbol",
    "name",
    "last_price",
    "expiry",
    "strike",
    "tick_size",
    "lot_size",
    "instrument_type",
    "segment",
    "exchange",
];

/// Why a dump could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DumpError {
    /// The header is not Kite's.
    #[error("not Kite's instruments dump: the header lacks {0:?}")]
    Header(&'static str),
    /// A row is malformed.
    #[error("instruments dump line {line}: {message}")]
    Row {
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// No instrument at all (an empty or truncated reply).
    #[error("the instruments dump lists no instrument")]
    Empty,
}

/// One row of the dump (the fields tickcap shows; prices as Kite prints them).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Instrument {
    /// The ticker's token.
    pub instrument_token: u32,
    /// `EXCHANGE:TRADINGSYMBOL`, e.g. `NSE:INFY`.
    pub symbol: String,
    /// The trading symbol alone, e.g. `INFY`.
    pub tradingsymbol: String,
    /// The company or underlying name (may be empty for derivatives).
    pub name: String,
    /// Expiry date `YYYY-MM-DD`, empty for instruments that do not expire.
    pub expiry: String,
    /// Strike price as printed, empty or `0` where none.
    pub strike: String,
    /// `EQ`, `FUT`, `CE`, `PE`, …
    pub instrument_type: String,
    /// `NSE`, `NFO-OPT`, `INDICES`, …
    pub segment: String,
    /// `NSE`, `NFO`, `BSE`, `MCX`, …
    pub exchange: String,
    /// Lot size.
    pub lot_size: u32,
    /// Tick size as printed (`0.05`, `0.0025`, `1`).
    pub tick_size: String,
}

impl Instrument {
    /// Decimals a price of this instrument needs: those of its tick size
    /// (`0.05` → 2, `0.0025` → 4, `1` → 0), at most 7.
    pub fn price_decimals(&self) -> Option<u32> {
        decimals_of(&self.tick_size)
    }
}

/// The decimals of a tick size as Kite prints it (`0.05` → 2), at most 7;
/// `None` for text that is not a positive number.
pub fn decimals_of(tick_size: &str) -> Option<u32> {
    let t = tick_size.trim();
    if !t.parse::<f64>().is_ok_and(|v| v > 0.0) {
        return None;
    }
    Some(match t.split_once('.') {
        Some((_, frac)) => frac.trim_end_matches('0').len().min(7) as u32,
        None => 0,
    })
}

/// The instruments of one dump, by token and by symbol.
#[derive(Debug, Default, Clone)]
pub struct Directory {
    list: Vec<Instrument>,
    by_token: HashMap<u32, usize>,
    by_symbol: HashMap<String, usize>,
}

/// `EXCHANGE:TRADINGSYMBOL` in the form the directory keys it (upper case,
/// no surrounding blanks); `None` if `text` has no `:` between two parts.
pub fn normalize_symbol(text: &str) -> Option<String> {
    let (ex, sym) = text.trim().split_once(':')?;
    let (ex, sym) = (ex.trim(), sym.trim());
    (!ex.is_empty() && !sym.is_empty()).then(|| format!("{ex}:{sym}").to_ascii_uppercase())
}

impl Directory {
    /// Parses the dump's CSV bytes (plain, already decompressed).
    pub fn parse(bytes: &[u8]) -> Result<Directory, DumpError> {
        let mut rd = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .from_reader(bytes);
        let header = rd.headers().map_err(|e| DumpError::Row {
            line: 1,
            message: e.to_string(),
        })?;
        let mut col = [0usize; COLUMNS.len()];
        for (i, name) in COLUMNS.iter().enumerate() {
            col[i] = header
                .iter()
                .position(|h| h.trim() == *name)
                .ok_or(DumpError::Header(name))?;
        }
        let mut dir = Directory::default();
        for rec in rd.records() {
            let rec = rec.map_err(|e| DumpError::Row {
                line: e.position().map_or(0, |p| p.line()),
                message: e.to_string(),
            })?;
            let line = rec.position().map_or(0, |p| p.line());
            let get = |i: usize| rec.get(col[i]).unwrap_or("").trim();
            let token = get(0).parse::<u32>().map_err(|_| DumpError::Row {
                line,
                message: format!("instrument_token {:?} is not a number", get(0)),
            })?;
            let (tradingsymbol, exchange) = (get(2).to_owned(), get(11).to_owned());
            let inst = Instrument {
                instrument_token: token,
                symbol: format!("{exchange}:{tradingsymbol}").to_ascii_uppercase(),
                tradingsymbol,
                name: get(3).to_owned(),
                expiry: get(5).to_owned(),
                strike: get(6).to_owned(),
                lot_size: get(8).parse().unwrap_or(0),
                tick_size: get(7).to_owned(),
                instrument_type: get(9).to_owned(),
                segment: get(10).to_owned(),
                exchange,
            };
            dir.insert(inst);
        }
        if dir.list.is_empty() {
            return Err(DumpError::Empty);
        }
        Ok(dir)
    }

    fn insert(&mut self, inst: Instrument) {
        let i = self.list.len();
        self.by_token.insert(inst.instrument_token, i);
        self.by_symbol.entry(inst.symbol.clone()).or_insert(i);
        self.list.push(inst);
    }

    /// How many instruments the dump lists.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// No instruments (only for a default, never for a parsed dump).
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The token of `EXCHANGE:TRADINGSYMBOL` (any case).
    pub fn token(&self, symbol: &str) -> Option<u32> {
        let key = normalize_symbol(symbol)?;
        self.by_symbol
            .get(&key)
            .map(|&i| self.list[i].instrument_token)
    }

    /// The instrument of `token`.
    pub fn get(&self, token: u32) -> Option<&Instrument> {
        self.by_token.get(&token).map(|&i| &self.list[i])
    }

    /// `EXCHANGE:TRADINGSYMBOL` of `token`.
    pub fn symbol(&self, token: u32) -> Option<&str> {
        self.get(token).map(|i| i.symbol.as_str())
    }

    /// Up to `n` symbols closest to `symbol` (Jaro-Winkler on the whole
    /// `EXCHANGE:SYMBOL`, the same exchange first), for "did you mean".
    pub fn suggest(&self, symbol: &str, n: usize) -> Vec<String> {
        let want = normalize_symbol(symbol).unwrap_or_else(|| symbol.trim().to_ascii_uppercase());
        let exchange = want.split_once(':').map(|(e, _)| e.to_owned());
        let mut scored: Vec<(f64, &str)> = self
            .list
            .iter()
            .map(|i| {
                let mut s = strsim::jaro_winkler(&want, &i.symbol);
                if exchange.as_deref() == Some(i.exchange.as_str()) {
                    s += 0.05;
                }
                (s, i.symbol.as_str())
            })
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        let mut out: Vec<String> = Vec::with_capacity(n);
        for (_, s) in scored {
            if out.len() == n {
                break;
            }
            if !out.iter().any(|o| o == s) {
                out.push(s.to_owned());
            }
        }
        out
    }

    /// Instruments whose symbol, trading symbol or name contains every word
    /// of `text` (any case), exact symbol matches first, then by symbol.
    pub fn search(&self, text: &str, limit: usize) -> Vec<&Instrument> {
        let words: Vec<String> = text
            .split_whitespace()
            .map(|w| w.to_ascii_uppercase())
            .collect();
        if words.is_empty() {
            return Vec::new();
        }
        let exact = normalize_symbol(text);
        let mut hits: Vec<&Instrument> = self
            .list
            .iter()
            .filter(|i| {
                let hay = format!("{} {}", i.symbol, i.name.to_ascii_uppercase());
                words.iter().all(|w| hay.contains(w.as_str()))
            })
            .collect();
        hits.sort_by(|a, b| {
            let rank = |i: &Instrument| {
                if Some(&i.symbol) == exact.as_ref() || words.contains(&i.tradingsymbol) {
                    0
                } else {
                    1
                }
            };
            rank(a)
                .cmp(&rank(b))
                .then_with(|| a.tradingsymbol.len().cmp(&b.tradingsymbol.len()))
                .then_with(|| a.symbol.cmp(&b.symbol))
        });
        hits.truncate(limit);
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows in the exact shape of Kite's dump (quoted names, empty fields).
    const SAMPLE: &str = "instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,instrument_type,segment,exchange\n\
408065,1594,INFY,\"INFOSYS\",0,,,0.05,1,EQ,NSE,NSE\n\
738561,2885,RELIANCE,\"RELIANCE INDUSTRIES\",0,,,0.05,1,EQ,NSE,NSE\n\
256265,1001,NIFTY 50,\"NIFTY 50\",0,,,0,0,EQ,INDICES,NSE\n\
128053508,500209,INFY,\"INFOSYS\",0,,,0.05,1,EQ,BSE,BSE\n\
12345602,48225,NIFTY25DEC24000CE,\"NIFTY\",0,2025-12-30,24000,0.05,75,CE,NFO-OPT,NFO\n";

    #[test]
    fn symbols_and_tokens_map_both_ways() {
        let d = Directory::parse(SAMPLE.as_bytes()).unwrap();
        assert_eq!(d.len(), 5);
        assert_eq!(d.token("NSE:INFY"), Some(408_065));
        assert_eq!(d.token(" bse:infy "), Some(128_053_508));
        assert_eq!(d.token("NSE:NIFTY 50"), Some(256_265));
        assert_eq!(d.token("INFY"), None, "an exchange is required");
        assert_eq!(d.symbol(738_561), Some("NSE:RELIANCE"));
        let opt = d.get(12_345_602).unwrap();
        assert_eq!(
            (opt.expiry.as_str(), opt.strike.as_str(), opt.lot_size),
            ("2025-12-30", "24000", 75)
        );
        assert_eq!(d.get(408_065).unwrap().name, "INFOSYS");
    }

    #[test]
    fn a_misspelt_symbol_gets_the_closest_ones() {
        let d = Directory::parse(SAMPLE.as_bytes()).unwrap();
        let s = d.suggest("NSE:INFI", 2);
        assert_eq!(s[0], "NSE:INFY", "{s:?}");
        assert_eq!(d.suggest("NSE:RELIANC", 1), ["NSE:RELIANCE"]);
    }

    #[test]
    fn search_matches_every_word_exact_symbols_first() {
        let d = Directory::parse(SAMPLE.as_bytes()).unwrap();
        let hits: Vec<&str> = d
            .search("infy", 10)
            .iter()
            .map(|i| i.symbol.as_str())
            .collect();
        assert_eq!(hits, ["BSE:INFY", "NSE:INFY"]);
        let hits: Vec<u32> = d
            .search("nifty ce", 10)
            .iter()
            .map(|i| i.instrument_token)
            .collect();
        assert_eq!(hits, [12_345_602]);
        assert!(d.search("  ", 10).is_empty());
    }

    #[test]
    fn price_decimals_follow_the_tick_size() {
        for (t, d) in [
            ("0.05", Some(2)),
            ("0.0025", Some(4)),
            ("1", Some(0)),
            ("0.10", Some(1)),
            ("0", None),
            ("x", None),
        ] {
            assert_eq!(decimals_of(t), d, "{t}");
        }
    }

    #[test]
    fn what_is_not_a_dump_is_an_error() {
        assert_eq!(
            Directory::parse(b"a,b\n1,2\n").unwrap_err(),
            DumpError::Header("instrument_token")
        );
        let header = SAMPLE.lines().next().unwrap();
        assert_eq!(
            Directory::parse(format!("{header}\n").as_bytes()).unwrap_err(),
            DumpError::Empty
        );
        let bad = format!("{header}\nx,1,A,,0,,,0,1,EQ,NSE,NSE\n");
        assert!(matches!(
            Directory::parse(bad.as_bytes()),
            Err(DumpError::Row { line: 2, .. })
        ));
        let short = format!("{header}\n1,2,3\n");
        assert!(Directory::parse(short.as_bytes()).is_err());
    }
}
