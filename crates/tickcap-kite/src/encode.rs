//! Ticks → packets → one binary message: the exact inverse of [`super::decode`].
//!
//! The replay feed builds its messages with [`MessageBuilder`] into a reused
//! buffer, so emitting a tick allocates nothing once the buffer has grown.

use super::tick::{PacketKind, Tick};

#[inline(always)]
fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends `tick`'s packet (without length prefix) in the layout of its kind.
/// Fields the kind does not carry are not written.
pub fn encode_packet(t: &Tick, out: &mut Vec<u8>) {
    put32(out, t.instrument_token);
    put32(out, t.last_price);
    match t.kind {
        PacketKind::Ltp => {}
        PacketKind::IndexQuote | PacketKind::IndexFull => {
            for v in [t.high, t.low, t.open, t.close, t.index_change] {
                put32(out, v);
            }
            if t.kind == PacketKind::IndexFull {
                put32(out, t.exchange_timestamp);
            }
        }
        PacketKind::Quote | PacketKind::Full => {
            for v in [
                t.last_traded_quantity,
                t.average_traded_price,
                t.volume_traded,
                t.total_buy_quantity,
                t.total_sell_quantity,
                t.open,
                t.high,
                t.low,
                t.close,
            ] {
                put32(out, v);
            }
            if t.kind == PacketKind::Full {
                for v in [
                    t.last_trade_time,
                    t.oi,
                    t.oi_day_high,
                    t.oi_day_low,
                    t.exchange_timestamp,
                ] {
                    put32(out, v);
                }
                for level in &t.depth {
                    put32(out, level.quantity);
                    put32(out, level.price);
                    out.extend_from_slice(&level.orders.to_be_bytes());
                    out.extend_from_slice(&[0, 0]);
                }
            }
        }
    }
}

/// Builds one binary message in a caller's buffer: the packet count is
/// patched in when the builder is finished (or dropped).
#[derive(Debug)]
pub struct MessageBuilder<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
    count: u16,
}

impl<'a> MessageBuilder<'a> {
    /// Starts a message at the end of `out`.
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        let start = out.len();
        out.extend_from_slice(&[0, 0]);
        MessageBuilder {
            out,
            start,
            count: 0,
        }
    }

    /// Appends one tick as a length-prefixed packet. Returns `false` (and
    /// appends nothing) when the message already holds `u16::MAX` packets.
    pub fn push(&mut self, tick: &Tick) -> bool {
        if self.count == u16::MAX {
            return false;
        }
        self.push_raw_len(tick.kind.len() as u16);
        encode_packet(tick, self.out);
        true
    }

    /// Appends an arbitrary packet body with its length prefix: for fault
    /// injection (malformed packets) and tests.
    pub fn push_raw(&mut self, body: &[u8]) -> bool {
        if self.count == u16::MAX || body.len() > usize::from(u16::MAX) {
            return false;
        }
        self.push_raw_len(body.len() as u16);
        self.out.extend_from_slice(body);
        true
    }

    fn push_raw_len(&mut self, len: u16) {
        self.out.extend_from_slice(&len.to_be_bytes());
        self.count += 1;
    }

    /// Packets pushed so far.
    pub fn count(&self) -> u16 {
        self.count
    }

    /// Bytes in the message so far.
    pub fn len(&self) -> usize {
        self.out.len() - self.start
    }

    /// Whether no packet was pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Writes the packet count; returns the number of packets.
    pub fn finish(self) -> u16 {
        self.count
    }
}

impl Drop for MessageBuilder<'_> {
    fn drop(&mut self) {
        let c = self.count.to_be_bytes();
        self.out[self.start] = c[0];
        self.out[self.start + 1] = c[1];
    }
}

/// Appends one message holding `ticks` (at most `u16::MAX`; the rest are not
/// encoded). Returns the number of packets written.
pub fn encode_message(ticks: &[Tick], out: &mut Vec<u8>) -> u16 {
    let mut b = MessageBuilder::new(out);
    for t in ticks {
        if !b.push(t) {
            break;
        }
    }
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode_message;

    #[test]
    fn every_kind_encodes_to_its_length() {
        for kind in PacketKind::ALL {
            let mut out = Vec::new();
            encode_packet(&Tick::new(kind, 408_065), &mut out);
            assert_eq!(out.len(), kind.len(), "{kind:?}");
        }
    }

    #[test]
    fn a_message_decodes_back_to_its_ticks() {
        let mut a = Tick::new(PacketKind::Full, 408_065);
        a.last_price = 157_370;
        a.depth[9].orders = 5;
        let mut b = Tick::new(PacketKind::IndexQuote, 256_265);
        b.close = 1;
        let mut out = vec![0xAA]; // the builder appends after what is there
        assert_eq!(encode_message(&[a, b], &mut out), 2);
        let back: Vec<_> = decode_message(&out[1..]).map(|r| r.unwrap()).collect();
        assert_eq!(back, [a, b]);
    }

    #[test]
    fn builder_patches_the_count_and_takes_raw_packets() {
        let mut out = Vec::new();
        let mut b = MessageBuilder::new(&mut out);
        assert!(b.push_raw(&[1, 2, 3]));
        assert!(b.push(&Tick::new(PacketKind::Ltp, 1)));
        assert_eq!(b.finish(), 2);
        assert_eq!(&out[..2], &[0, 2]);
        assert_eq!(out.len(), 2 + 2 + 3 + 2 + 8);
    }
}
