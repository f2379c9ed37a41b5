//! `wss://` end to end on loopback: a rustls server with a self-signed
//! certificate (rcgen) terminates TLS in front of the replay feed; the engine
//! connects through it with rustls on its non-blocking mio socket, and every
//! tick sent arrives. With the default roots (webpki) the same certificate
//! is refused, and the engine keeps retrying without a crash.

use crate::common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{read_capture, wait_until};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tickcap::config::{Config, Env};
use tickcap::engine::{Engine, Options};
use tickcap::replay::{ReplayConfig, Server};

struct Proxy {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// TLS on `127.0.0.1:0`, plain TCP to `backend`.
fn tls_proxy(
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    backend: SocketAddr,
) -> Proxy {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let cfg = Arc::new(cfg);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let st = Arc::clone(&stop);
    std::thread::spawn(move || {
        while !st.load(Ordering::SeqCst) {
            let Ok((tcp, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            let (cfg, st) = (Arc::clone(&cfg), Arc::clone(&st));
            std::thread::spawn(move || pump(tcp, cfg, backend, &st));
        }
    });
    Proxy { addr, stop }
}

fn pump(tcp: TcpStream, cfg: Arc<rustls::ServerConfig>, backend: SocketAddr, stop: &AtomicBool) {
    let _ = tcp.set_nonblocking(false);
    let _ = tcp.set_read_timeout(Some(Duration::from_millis(1)));
    let Ok(conn) = rustls::ServerConnection::new(cfg) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let Ok(mut back) = TcpStream::connect(backend) else {
        return;
    };
    let _ = back.set_read_timeout(Some(Duration::from_millis(1)));
    let mut buf = vec![0u8; 64 * 1024];
    let quiet =
        |e: &std::io::Error| matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);
    while !stop.load(Ordering::Relaxed) {
        match tls.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if back.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if quiet(&e) => {}
            Err(_) => return,
        }
        match back.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if tls.write_all(&buf[..n]).and_then(|()| tls.flush()).is_err() {
                    return;
                }
            }
            Err(e) if quiet(&e) => {}
            Err(_) => return,
        }
    }
}

fn config(url: &str, dir: &Path) -> Config {
    let text = format!(
        "[kite]\nurl = {url:?}\napi_key = \"k\"\naccess_token = \"t\"\n[storage]\ndata_dir = {:?}\nflush_interval_ms = 20\n\
         [status]\nlisten = \"127.0.0.1:0\"\n[primary]\ninstruments = [256, 512, 256265]\n[engine]\nreconnect_max_ms = 500\n",
        dir.display().to_string()
    );
    Config::parse(&text, Path::new("t.toml"), &Env::default()).unwrap()
}

fn self_signed() -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    (ck.cert.der().clone(), key)
}

#[test]
fn wss_through_rustls_captures_every_tick() {
    let dir = tempfile::tempdir().unwrap();
    let mut fc = ReplayConfig::synthetic("127.0.0.1:0".parse().unwrap(), 4_000);
    fc.count = Some(6_000);
    let feed = Server::start(fc).unwrap();
    let (cert, key) = self_signed();
    let proxy = tls_proxy(cert.clone(), key, feed.local_addr());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let opts = Options {
        tls: Some(Arc::new(tls)),
        ..Options::default()
    };
    let engine = Engine::start(config(&format!("wss://{}", proxy.addr), dir.path()), opts).unwrap();
    let stats = Arc::clone(engine.stats());
    assert!(
        wait_until(Duration::from_secs(20), || feed.count_reached()),
        "{:?}",
        feed.report()
    );
    assert!(
        wait_until(Duration::from_secs(10), || stats.lines_written() >= 6_000),
        "written {}",
        stats.lines_written()
    );
    engine.stop().expect("a clean shutdown");
    let cap = read_capture(dir.path());
    assert_eq!(cap.lines, 6_000);
    assert_eq!(cap.assert_matches_synthetic(1), 6_000);
}

#[test]
fn an_untrusted_certificate_is_refused_and_retried_without_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let feed = common::synthetic_feed(1_000, |_| {});
    let (cert, key) = self_signed();
    let proxy = tls_proxy(cert, key, feed.local_addr());
    // default options: webpki roots, which do not know this certificate
    let engine = Engine::start(
        config(&format!("wss://{}", proxy.addr), dir.path()),
        Options::default(),
    )
    .unwrap();
    let stats = Arc::clone(engine.stats());
    // The handshake fails and the connection backs off, never having opened.
    assert!(wait_until(Duration::from_secs(10), || stats.conns[0]
        .state()
        == tickcap::stats::StateName::Backoff));
    assert_eq!(stats.conns[0].opens.load(Ordering::Relaxed), 0);
    assert_eq!(stats.ticks_received(), 0);
    assert_ne!(stats.conns[0].state(), tickcap::stats::StateName::Open);
    assert!(!engine.is_finished());
    engine.stop().expect("a clean shutdown");
}
