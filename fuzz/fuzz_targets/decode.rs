//! Fuzz target: decoding any bytes never panics, and whatever decodes
//! re-encodes to packets that decode to the same ticks and serialize.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickcap::kite::{decode_message, encode_message};
use tickcap::sink::LineFormatter;
use tickcap::time::ZoneFormatter;

fuzz_target!(|data: &[u8]| {
    let ticks: Vec<_> = decode_message(data).filter_map(Result::ok).collect();
    let mut msg = Vec::new();
    encode_message(&ticks, &mut msg);
    let again: Vec<_> = decode_message(&msg).filter_map(Result::ok).collect();
    if msg.len() > 4 {
        assert_eq!(ticks, again);
    }
    let mut fmt = LineFormatter::new(ZoneFormatter::new("Asia/Kolkata").expect("bundled zone"));
    let mut out = Vec::new();
    for t in &ticks {
        fmt.write_line(&mut out, t, 1_764_046_523_000_000, 1);
    }
});
