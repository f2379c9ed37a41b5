//! Networking for the capture engine: the transport under each Kite
//! connection, reconnect backoff, and the connection state machine.

pub mod backoff;
pub mod conn;
pub mod dump;
pub mod history;
pub mod http;
pub mod stream;

pub use backoff::Backoff;
pub use conn::{ConnError, ConnState, Connection, Context};
pub use stream::WireStream;
