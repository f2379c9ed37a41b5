//! Connecting: the host name looked up on a resolver thread (never on the
//! event loop), the TCP connect and the TLS/WebSocket upgrade request.

use super::*;

/// Resolves a host name to addresses. Blocking: it runs on a resolver
/// thread, never on the event loop (a slow or dead resolver would freeze
/// every socket and the status port). Tests inject one that hangs.
pub type Resolver = Arc<dyn Fn(&str, u16) -> std::io::Result<Vec<SocketAddr>> + Send + Sync>;

/// The system's resolver (`getaddrinfo`).
pub fn system_resolver() -> Resolver {
    Arc::new(|host, port| (host, port).to_socket_addrs().map(Iterator::collect))
}

/// A lookup running on its thread.
pub(super) struct Lookup {
    host: String,
    port: u16,
    rx: std::sync::mpsc::Receiver<std::io::Result<Vec<SocketAddr>>>,
}

impl Connection {
    pub(super) fn connect(&mut self, registry: &Registry) {
        match self.begin_connect(registry) {
            Ok(state) => self.set_state(state),
            Err(e) => self.retry_later(registry, e),
        }
    }

    pub(super) fn begin_connect(&mut self, registry: &Registry) -> Result<ConnState, ConnError> {
        let uri: tungstenite::http::Uri = self
            .cfg
            .url
            .parse()
            .map_err(|e| ConnError::BadUrl(format!("{:?}: {e}", self.cfg.url)))?;
        let tls = uri.scheme_str() == Some("wss");
        let host = uri
            .host()
            .ok_or_else(|| ConnError::BadUrl(format!("no host in {:?}", self.cfg.url)))?
            .to_owned();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<std::net::IpAddr>() {
            return self.connect_to(
                registry,
                SocketAddr::new(ip, port),
                host,
                tls,
                self.mono.now(),
            );
        }
        // A name: look it up on a thread (reusing one still in flight).
        if !self
            .lookup
            .as_ref()
            .is_some_and(|l| l.host == host && l.port == port)
        {
            let (tx, rx) = std::sync::mpsc::channel();
            let (resolver, h) = (Arc::clone(&self.resolver), host.clone());
            std::thread::Builder::new()
                .name("tickcap-dns".into())
                .spawn(move || {
                    let _ = tx.send(resolver(&h, port));
                })
                .map_err(|e| ConnError::Resolve {
                    host: host.clone(),
                    message: format!("cannot start a resolver thread: {e}"),
                })?;
            self.lookup = Some(Lookup {
                host: host.clone(),
                port,
                rx,
            });
        }
        Ok(ConnState::Resolving {
            host,
            tls,
            since: self.mono.now(),
        })
    }

    /// Starts the TCP connect (non-blocking).
    pub(super) fn connect_to(
        &mut self,
        registry: &Registry,
        addr: SocketAddr,
        host: String,
        tls: bool,
        since: Instant,
    ) -> Result<ConnState, ConnError> {
        let mut tcp =
            TcpStream::connect(addr).map_err(|e| ConnError::Connect(format!("{addr}: {e}")))?;
        registry
            .register(
                &mut tcp,
                self.token,
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| ConnError::Connect(format!("register: {e}")))?;
        tracing::debug!("connection {} connecting to {addr} ({host})", self.id);
        Ok(ConnState::Connecting {
            tcp,
            host,
            tls,
            since,
        })
    }

    /// A finished lookup moves on to the connect.
    pub(super) fn poll_lookup(&mut self, registry: &Registry) {
        let ConnState::Resolving { host, tls, since } = &self.state else {
            return;
        };
        let (host, tls, since) = (host.clone(), *tls, *since);
        let Some(l) = &self.lookup else {
            return;
        };
        let got = match l.rx.try_recv() {
            Err(std::sync::mpsc::TryRecvError::Empty) => return,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                Err("the resolver thread ended without an answer".to_owned())
            }
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok(addrs)) => addrs
                .into_iter()
                .next()
                .ok_or_else(|| "no address".to_owned()),
        };
        self.lookup = None;
        let next = got
            .map_err(|message| ConnError::Resolve {
                host: host.clone(),
                message,
            })
            .and_then(|addr| self.connect_to(registry, addr, host, tls, since));
        match next {
            Ok(state) => self.set_state(state),
            Err(e) => self.retry_later(registry, e),
        }
    }

    /// The URL with credentials; never logged.
    pub(super) fn request_url(&self) -> String {
        crate::kite::ticker_url(
            &self.cfg.url,
            &self.cfg.api_key,
            self.cfg.access_token.expose(),
        )
    }
}
