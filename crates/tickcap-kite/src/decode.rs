//! Binary message → ticks. Pure functions over `&[u8]`: no allocation, no
//! clock, no panic on any input.
//!
//! A message is `u16 count` then `count × (u16 length, packet)`, big-endian.
//! Messages of 4 bytes or fewer (the 1-byte heartbeat) carry no ticks: the
//! official client ignores them.
//!
//! Errors are per packet. An unknown packet length is skipped and decoding
//! goes on with the next packet (the framing still holds); a length prefix
//! that runs past the end of the message ends the message (the framing is
//! lost).

/// Why a packet (or the rest of a message) could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The message ended inside packet `index`'s 2-byte length prefix.
    /// Nothing after it can be framed: count it and drop the rest.
    #[error("message ends inside the length prefix of packet {index} (of {count})")]
    TruncatedPrefix {
        /// Zero-based packet position.
        index: u16,
        /// Packets the header announced.
        count: u16,
    },
    /// Packet `index` claims more bytes than the message has left. The
    /// framing is lost: count it and drop the rest of the message.
    #[error("packet {index} claims {claimed} bytes but only {available} remain")]
    LengthPastEnd {
        /// Zero-based packet position.
        index: u16,
        /// The length the prefix announced.
        claimed: u16,
        /// Bytes left in the message.
        available: usize,
    },
    /// Packet `index` has a length that is no Kite layout. It is skipped;
    /// the next packet is still decoded.
    #[error("packet {index} has length {len}, which is no Kite packet layout (token {token:?})")]
    UnknownLength {
        /// Zero-based packet position.
        index: u16,
        /// Its length in bytes.
        len: u16,
        /// The instrument token, when the packet has at least 4 bytes.
        token: Option<u32>,
    },
    /// Bytes follow the last packet the header announced.
    #[error("{extra} bytes follow the {count} packets the header announced")]
    TrailingBytes {
        /// Packets the header announced.
        count: u16,
        /// Bytes left over.
        extra: usize,
    },
}

impl DecodeError {
    /// Whether decoding of the message stopped at this error (the framing is
    /// lost) rather than skipping one packet.
    pub fn ends_message(&self) -> bool {
        !matches!(self, DecodeError::UnknownLength { .. })
    }
}

use super::tick::{DepthEntry, PacketKind, Tick, DEPTH_LEVELS};

#[inline(always)]
fn be32(p: &[u8], at: usize) -> u32 {
    match p.get(at..at + 4) {
        Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
        _ => 0,
    }
}

#[inline(always)]
fn be16(p: &[u8], at: usize) -> u16 {
    match p.get(at..at + 2) {
        Some(&[a, b]) => u16::from_be_bytes([a, b]),
        _ => 0,
    }
}

/// Decodes one packet (without its length prefix). `index` is its position
/// in the message, used only for the error.
///
/// ```
/// // 408065 (NSE) in LTP mode at 1573.15
/// let packet = [0x00, 0x06, 0x3a, 0x01, 0x00, 0x02, 0x66, 0x83];
/// let tick = tickcap_kite::decode_packet(&packet, 0).unwrap();
/// assert_eq!(tick.instrument_token, 408_065);
/// assert_eq!(tick.price(tick.last_price), 1573.15);
/// ```
#[inline]
pub fn decode_packet(p: &[u8], index: u16) -> Result<Tick, DecodeError> {
    let Some(kind) = PacketKind::from_len(p.len()) else {
        return Err(DecodeError::UnknownLength {
            index,
            len: p.len() as u16,
            token: (p.len() >= 4).then(|| be32(p, 0)),
        });
    };
    let mut t = Tick::new(kind, be32(p, 0));
    t.last_price = be32(p, 4);
    match kind {
        PacketKind::Ltp => {}
        PacketKind::IndexQuote | PacketKind::IndexFull => {
            t.high = be32(p, 8);
            t.low = be32(p, 12);
            t.open = be32(p, 16);
            t.close = be32(p, 20);
            t.index_change = be32(p, 24);
            if kind == PacketKind::IndexFull {
                t.exchange_timestamp = be32(p, 28);
            }
        }
        PacketKind::Quote | PacketKind::Full => {
            t.last_traded_quantity = be32(p, 8);
            t.average_traded_price = be32(p, 12);
            t.volume_traded = be32(p, 16);
            t.total_buy_quantity = be32(p, 20);
            t.total_sell_quantity = be32(p, 24);
            t.open = be32(p, 28);
            t.high = be32(p, 32);
            t.low = be32(p, 36);
            t.close = be32(p, 40);
            if kind == PacketKind::Full {
                t.last_trade_time = be32(p, 44);
                t.oi = be32(p, 48);
                t.oi_day_high = be32(p, 52);
                t.oi_day_low = be32(p, 56);
                t.exchange_timestamp = be32(p, 60);
                for (i, level) in t.depth.iter_mut().enumerate().take(DEPTH_LEVELS) {
                    let at = 64 + i * 12;
                    *level = DepthEntry {
                        quantity: be32(p, at),
                        price: be32(p, at + 4),
                        orders: be16(p, at + 8),
                    };
                }
            }
        }
    }
    Ok(t)
}

/// The ticks of one binary message, in order, as an iterator of
/// per-packet results. Borrowing: nothing is copied but the tick values.
#[derive(Debug, Clone)]
pub struct Packets<'a> {
    msg: &'a [u8],
    pos: usize,
    count: u16,
    index: u16,
    done: bool,
}

/// Decodes one WebSocket binary message.
///
/// ```
/// let heartbeat = [0u8];
/// assert_eq!(tickcap_kite::decode_message(&heartbeat).count(), 0);
/// ```
pub fn decode_message(msg: &[u8]) -> Packets<'_> {
    let ignored = msg.len() <= 4;
    Packets {
        msg,
        pos: 2,
        count: if ignored { 0 } else { be16(msg, 0) },
        index: 0,
        done: ignored,
    }
}

impl Iterator for Packets<'_> {
    type Item = Result<Tick, DecodeError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.index == self.count {
            self.done = true;
            let extra = self.msg.len().saturating_sub(self.pos);
            return (extra > 0).then_some(Err(DecodeError::TrailingBytes {
                count: self.count,
                extra,
            }));
        }
        let index = self.index;
        self.index += 1;
        let Some(prefix) = self.msg.get(self.pos..self.pos + 2) else {
            self.done = true;
            return Some(Err(DecodeError::TruncatedPrefix {
                index,
                count: self.count,
            }));
        };
        let len = u16::from_be_bytes([prefix[0], prefix[1]]);
        let start = self.pos + 2;
        let Some(packet) = self.msg.get(start..start + usize::from(len)) else {
            self.done = true;
            return Some(Err(DecodeError::LengthPastEnd {
                index,
                claimed: len,
                available: self.msg.len() - start.min(self.msg.len()),
            }));
        };
        self.pos = start + usize::from(len);
        Some(decode_packet(packet, index))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.done {
            (0, Some(0))
        } else {
            // every remaining packet yields one item, plus maybe trailing bytes
            (0, Some(usize::from(self.count - self.index) + 1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ticker_quote.packet` from Zerodha's published mocks: 408065 in quote mode.
    const QUOTE: [u8; 44] = [
        0x00, 0x06, 0x3a, 0x01, 0x00, 0x02, 0x66, 0x83, 0x00, 0x00, 0x00, 0x01, 0x00, 0x02, 0x65,
        0x69, 0x00, 0x11, 0xf1, 0xb2, 0x00, 0x03, 0xe9, 0xff, 0x00, 0x05, 0x80, 0x37, 0x00, 0x02,
        0x64, 0xf3, 0x00, 0x02, 0x67, 0x3c, 0x00, 0x02, 0x61, 0xc9, 0x00, 0x02, 0x64, 0x6c,
    ];

    fn message(packets: &[&[u8]]) -> Vec<u8> {
        let mut m = (packets.len() as u16).to_be_bytes().to_vec();
        for p in packets {
            m.extend_from_slice(&(p.len() as u16).to_be_bytes());
            m.extend_from_slice(p);
        }
        m
    }

    #[test]
    fn tc0_quote_packet_fields_at_their_offsets() {
        let t = decode_packet(&QUOTE, 0).unwrap();
        assert_eq!(t.kind, PacketKind::Quote);
        assert_eq!(t.instrument_token, 408_065);
        assert_eq!(t.last_price, 157_315);
        assert_eq!(t.last_traded_quantity, 1);
        assert_eq!(t.average_traded_price, 157_033);
        assert_eq!(t.volume_traded, 1_175_986);
        assert_eq!(t.total_buy_quantity, 256_511);
        assert_eq!(t.total_sell_quantity, 360_503);
        assert_eq!(
            (t.open, t.high, t.low, t.close),
            (156_915, 157_500, 156_105, 156_780)
        );
    }

    #[test]
    fn tc1_ltp_packet_has_token_and_price_only() {
        let t = decode_packet(&QUOTE[..8], 0).unwrap();
        assert_eq!(t, {
            let mut e = Tick::new(PacketKind::Ltp, 408_065);
            e.last_price = 157_315;
            e
        });
    }

    #[test]
    fn tc2_index_quote_and_full_put_high_before_open() {
        let mut p = [0u8; 32];
        p[0..4].copy_from_slice(&256_265u32.to_be_bytes());
        for (i, v) in [
            2_400_000u32,
            2_410_000,
            2_390_000,
            2_395_000,
            2_380_000,
            1_000,
            1_700_000_000,
        ]
        .iter()
        .enumerate()
        {
            p[4 + 4 * i..8 + 4 * i].copy_from_slice(&v.to_be_bytes());
        }
        let q = decode_packet(&p[..28], 0).unwrap();
        assert_eq!(q.kind, PacketKind::IndexQuote);
        assert_eq!(
            (q.high, q.low, q.open, q.close),
            (2_410_000, 2_390_000, 2_395_000, 2_380_000)
        );
        assert_eq!(q.index_change, 1_000);
        assert_eq!(q.exchange_timestamp, 0);
        let f = decode_packet(&p, 0).unwrap();
        assert_eq!(f.kind, PacketKind::IndexFull);
        assert_eq!(f.exchange_timestamp, 1_700_000_000);
    }

    #[test]
    fn tc3_heartbeat_and_short_messages_carry_no_ticks() {
        for msg in [&[0u8][..], &[], &[0, 0], &[0, 1, 0, 8]] {
            assert_eq!(decode_message(msg).count(), 0, "{msg:?}");
        }
    }

    #[test]
    fn tc4_several_packets_in_one_message() {
        let m = message(&[&QUOTE, &QUOTE[..8], &QUOTE]);
        let kinds: Vec<_> = decode_message(&m).map(|r| r.unwrap().kind).collect();
        assert_eq!(
            kinds,
            [PacketKind::Quote, PacketKind::Ltp, PacketKind::Quote]
        );
    }

    #[test]
    fn tc5_unknown_length_is_skipped_and_decoding_goes_on() {
        let m = message(&[&QUOTE[..12], &QUOTE]);
        let r: Vec<_> = decode_message(&m).collect();
        assert_eq!(
            r[0],
            Err(DecodeError::UnknownLength {
                index: 0,
                len: 12,
                token: Some(408_065)
            })
        );
        assert!(!r[0].as_ref().unwrap_err().ends_message());
        assert_eq!(r[1].as_ref().unwrap().volume_traded, 1_175_986);
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn tc6_length_past_end_stops_the_message() {
        let mut m = message(&[&QUOTE, &QUOTE]);
        m.truncate(m.len() - 10);
        let r: Vec<_> = decode_message(&m).collect();
        assert!(r[0].is_ok());
        assert_eq!(
            r[1],
            Err(DecodeError::LengthPastEnd {
                index: 1,
                claimed: 44,
                available: 34
            })
        );
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn tc7_truncated_prefix_and_trailing_bytes() {
        let mut m = message(&[&QUOTE]);
        m[1] = 2; // announce two packets, carry one
        m.push(0); // and one byte of a prefix
        let r: Vec<_> = decode_message(&m).collect();
        assert_eq!(
            r[1],
            Err(DecodeError::TruncatedPrefix { index: 1, count: 2 })
        );

        let mut m = message(&[&QUOTE]);
        m.extend_from_slice(&[1, 2, 3]);
        let r: Vec<_> = decode_message(&m).collect();
        assert_eq!(r[1], Err(DecodeError::TrailingBytes { count: 1, extra: 3 }));
    }
}
