//! The Kite streaming wire format: binary tick messages and JSON text frames.
//!
//! This module owns the bytes. It promises:
//! - [`decode`] turns one WebSocket binary message into [`Tick`] values without
//!   allocating, reading a clock or panicking, whatever the input;
//! - [`encode`] is its exact inverse, used by the replay feed and the tests;
//! - [`text`] parses the JSON text frames (order postbacks, errors, messages)
//!   and keeps anything it does not know raw;
//! - [`ClientRequest`] is what a client sends (`subscribe`, `unsubscribe`, `mode`).
//!
//! Field meanings and the price divisors follow the official Python client
//! (`kiteconnect.KiteTicker._parse_binary`), which is the reference for values.

pub mod decode;
pub mod encode;
pub mod instruments;
pub mod request;
pub mod text;
mod tick;

pub use decode::{decode_message, decode_packet, DecodeError, Packets};
pub use encode::{encode_message, encode_packet, MessageBuilder};
pub use instruments::{Directory, Instrument};
pub use request::{ticker_url, ClientRequest, RequestError};
pub use text::{parse_text, OrderUpdate, TextFrame};
pub use tick::{
    is_tradable, price_divisor, segment, DepthEntry, Mode, PacketKind, Segment, Tick, UnknownMode,
    DEPTH_LEVELS,
};
