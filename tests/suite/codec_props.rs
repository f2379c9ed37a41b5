//! Property tests of the codec: encode→decode is the identity for random
//! ticks of every kind and segment, and decode never panics on any bytes.

use proptest::prelude::*;
use tickcap::kite::{decode_message, encode_message, DecodeError, DepthEntry, PacketKind, Tick};

fn kind() -> impl Strategy<Value = PacketKind> {
    prop::sample::select(PacketKind::ALL.to_vec())
}

/// A random tick of a random kind; fields its kind does not carry stay zero
/// (they are not on the wire).
fn tick() -> impl Strategy<Value = Tick> {
    (
        kind(),
        any::<u32>(),
        prop::array::uniform32(any::<u32>()),
        prop::array::uniform10(any::<u16>()),
    )
        .prop_map(|(kind, token, v, orders)| {
            let mut t = Tick::new(kind, token);
            t.last_price = v[0];
            match kind {
                PacketKind::Ltp => {}
                PacketKind::IndexQuote | PacketKind::IndexFull => {
                    (t.high, t.low, t.open, t.close, t.index_change) =
                        (v[1], v[2], v[3], v[4], v[5]);
                    if kind == PacketKind::IndexFull {
                        t.exchange_timestamp = v[6];
                    }
                }
                PacketKind::Quote | PacketKind::Full => {
                    t.last_traded_quantity = v[1];
                    t.average_traded_price = v[2];
                    t.volume_traded = v[3];
                    t.total_buy_quantity = v[4];
                    t.total_sell_quantity = v[5];
                    (t.open, t.high, t.low, t.close) = (v[6], v[7], v[8], v[9]);
                    if kind == PacketKind::Full {
                        t.last_trade_time = v[10];
                        t.oi = v[11];
                        t.oi_day_high = v[12];
                        t.oi_day_low = v[13];
                        t.exchange_timestamp = v[14];
                        for (i, d) in t.depth.iter_mut().enumerate() {
                            *d = DepthEntry {
                                quantity: v[15 + i],
                                price: v[16 + i].rotate_left(7),
                                orders: orders[i],
                            };
                        }
                    }
                }
            }
            t
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_then_decode_is_the_identity(ticks in prop::collection::vec(tick(), 0..40)) {
        let mut msg = Vec::new();
        encode_message(&ticks, &mut msg);
        let back: Vec<Tick> = decode_message(&msg).collect::<Result<_, _>>().unwrap();
        if msg.len() <= 4 {
            // The official client ignores messages of 4 bytes or fewer; a
            // message that short can only hold no packet.
            prop_assert!(ticks.is_empty());
        }
        prop_assert_eq!(back, ticks);
    }

    #[test]
    fn decode_never_panics_and_ends(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let items: Vec<_> = decode_message(&bytes).collect();
        let n = items.len();
        // One item per declared packet at most, and one more only to report
        // bytes left after them; each item (but a last error) used its 2-byte
        // length field: garbage cannot make packets out of nothing.
        let declared = if bytes.len() <= 4 { 0 } else { usize::from(u16::from_be_bytes([bytes[0], bytes[1]])) };
        prop_assert!(n <= declared + 1, "{n} items, {declared} declared");
        if n == declared + 1 {
            prop_assert!(
                matches!(items.last(), Some(Err(DecodeError::TrailingBytes { .. }))),
                "the item past the declared count is the trailing-bytes error: {:?}",
                items.last()
            );
        }
        prop_assert!(n <= 1 + bytes.len().saturating_sub(2) / 2, "{n} items from {} bytes", bytes.len());
    }

    #[test]
    fn decode_of_a_corrupted_message_never_panics(
        ticks in prop::collection::vec(tick(), 1..10),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut msg = Vec::new();
        encode_message(&ticks, &mut msg);
        for (at, b) in flips {
            let i = at.index(msg.len());
            msg[i] ^= b;
        }
        let end = cut.index(msg.len() + 1);
        let msg = &msg[..end];
        // Whatever decodes is what the bytes say: each tick's length field,
        // token and price are found together in the corrupted message (the
        // rest may differ only in the depth entries' padding, which Kite
        // leaves unused).
        for t in decode_message(msg).flatten() {
            let mut packet = Vec::new();
            tickcap::kite::encode_packet(&t, &mut packet);
            let mut framed = (packet.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&packet[..8]);
            prop_assert!(
                msg.windows(framed.len()).any(|w| w == framed.as_slice()),
                "{t:?} is not in the message"
            );
        }
    }
}
