//! The byte stream under a Kite WebSocket: plain TCP for `ws://` (loopback
//! replay feeds), rustls over TCP for `wss://`. Both non-blocking mio sockets.

use std::io::{self, Read, Write};
use std::sync::{Arc, OnceLock};

use mio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

/// A non-blocking TCP socket that saves the loop one system call a frame.
///
/// mio's readiness is edge-triggered, so a reader must read until
/// `WouldBlock` — at a real feed's rate (one or two packets a frame, a frame
/// a wake-up) that is a second `recv` per wake-up that only says `EAGAIN`
/// (half of the loop's `recv` calls, measured with `strace -c`). A TCP read
/// that returns fewer bytes than asked has emptied the socket's receive
/// queue *at that moment*; so the next read in the same turn answers
/// `WouldBlock` without asking the kernel. Nothing is lost: bytes that
/// arrive after that short read raise a new edge, and
/// [`WireStream::begin_turn`] forgets the short read at the start of every
/// read turn (an event, or a turn resumed after backpressure), so a turn
/// never starts from a stale "empty".
#[derive(Debug)]
pub struct DrainedTcp {
    tcp: TcpStream,
    /// The last read this turn came back short: the queue was empty.
    drained: bool,
}

impl DrainedTcp {
    fn new(tcp: TcpStream) -> Self {
        DrainedTcp {
            tcp,
            drained: false,
        }
    }
}

impl Read for DrainedTcp {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if std::mem::take(&mut self.drained) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.tcp.read(buf)?;
        self.drained = n > 0 && n < buf.len();
        Ok(n)
    }
}

impl Write for DrainedTcp {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tcp.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

/// A Kite connection's transport.
#[derive(Debug)]
pub enum WireStream {
    /// `ws://`.
    Plain(DrainedTcp),
    /// `wss://` (boxed: rustls state is large).
    Tls(Box<StreamOwned<ClientConnection, DrainedTcp>>),
}

impl WireStream {
    /// The TCP socket underneath, mutably (for mio deregistration).
    pub fn tcp_mut(&mut self) -> &mut TcpStream {
        match self {
            WireStream::Plain(s) => &mut s.tcp,
            WireStream::Tls(s) => &mut s.sock.tcp,
        }
    }

    /// The TCP socket underneath (for mio registration and shutdown).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            WireStream::Plain(s) => &s.tcp,
            WireStream::Tls(s) => &s.sock.tcp,
        }
    }

    /// A read turn starts: the socket is asked again, whatever the last
    /// turn's last read said (see [`DrainedTcp`]).
    pub fn begin_turn(&mut self) {
        match self {
            WireStream::Plain(s) => s.drained = false,
            WireStream::Tls(s) => s.sock.drained = false,
        }
    }
}

impl Read for WireStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            WireStream::Plain(s) => s.read(buf),
            WireStream::Tls(s) => match s.read(buf) {
                // A peer that closes TLS without close_notify: treat as a close.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                other => other,
            },
        }
    }
}

impl Write for WireStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            WireStream::Plain(s) => s.write(buf),
            WireStream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            WireStream::Plain(s) => s.flush(),
            WireStream::Tls(s) => s.flush(),
        }
    }
}

/// TLS client settings: webpki roots compiled in (no dependence on the
/// host's CA store), ring provider. Built once.
pub fn tls_config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    Arc::clone(CONFIG.get_or_init(|| {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth());
        match cfg {
            Ok(c) => Arc::new(c),
            // The ring provider supports the safe defaults; this cannot fail
            // short of a broken build, and then no TLS is possible at all.
            Err(e) => panic!("rustls cannot be configured: {e}"),
        }
    }))
}

/// Wraps a connected socket for `host`: TLS when `tls`, else plain.
pub fn wrap(
    tcp: TcpStream,
    host: &str,
    tls: bool,
    config: Option<Arc<ClientConfig>>,
) -> io::Result<WireStream> {
    let tcp = DrainedTcp::new(tcp);
    if !tls {
        return Ok(WireStream::Plain(tcp));
    }
    let name = ServerName::try_from(host.to_owned()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad TLS server name {host:?}: {e}"),
        )
    })?;
    let conn =
        ClientConnection::new(config.unwrap_or_else(tls_config), name).map_err(io::Error::other)?;
    Ok(WireStream::Tls(Box::new(StreamOwned::new(conn, tcp))))
}
