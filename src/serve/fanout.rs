//! Fan-out: a captured tick re-encoded in the mode each client asked for.

use super::*;

/// The mode a packet kind carries.
pub(super) fn mode_of(kind: PacketKind) -> Mode {
    match kind {
        PacketKind::Ltp => Mode::Ltp,
        PacketKind::IndexQuote | PacketKind::Quote => Mode::Quote,
        PacketKind::IndexFull | PacketKind::Full => Mode::Full,
    }
}

/// Encodes `tick` as a client in `mode` receives it into `out` (cleared):
/// the packet as captured when the mode is at or above it, else the
/// poorer layout. Pure: the per-client filtering bench runs it.
#[inline]
pub fn encode_for(tick: &Tick, mode: Mode, out: &mut Vec<u8>) {
    out.clear();
    if rank(mode) >= rank(mode_of(tick.kind)) {
        encode_packet(tick, out);
    } else {
        encode_packet(&tick.in_mode(mode), out);
    }
}
