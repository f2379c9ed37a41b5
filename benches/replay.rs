//! The replay feed's emit rate to a client that only counts packets
//! (reads each binary message's 2-byte packet count, decodes nothing), on
//! loopback: the feed must never be the bottleneck of a load test (issue 3
//! target: ≥ 2M quote ticks/s). Results: docs/performance.md.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tickcap::kite::{ClientRequest, Mode};
use tickcap::replay::{ReplayConfig, Server};
use tungstenite::Message;

const TICKS: u64 = 200_000;

fn emit(c: &mut Criterion) {
    let mut g = c.benchmark_group("replay_emit");
    g.throughput(Throughput::Elements(TICKS));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(10));
    for (name, mode) in [("quote", Mode::Quote), ("full", Mode::Full)] {
        let server = Server::start(ReplayConfig::synthetic(([127, 0, 0, 1], 0).into(), 0))
            .unwrap_or_else(|e| panic!("start the feed: {e}"));
        let stream =
            TcpStream::connect(server.local_addr()).unwrap_or_else(|e| panic!("connect: {e}"));
        let (mut ws, _) = tungstenite::client(
            format!("{}/?api_key=k&access_token=t", server.url()),
            stream,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let tokens: Vec<u32> = (1..=100).map(|i| (i << 8) | 1).collect();
        for req in [
            ClientRequest::Subscribe(tokens.clone()),
            ClientRequest::Mode(mode, tokens),
        ] {
            ws.send(Message::text(req.to_json()))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    let mut n = 0u64;
                    while n < TICKS {
                        if let Ok(Message::Binary(m)) = ws.read() {
                            if m.len() > 4 {
                                n += u64::from(u16::from_be_bytes([m[0], m[1]]));
                            }
                        }
                    }
                }
                start.elapsed()
            })
        });
        drop(ws);
        server.stop();
    }
    g.finish();
}

criterion_group!(benches, emit);
criterion_main!(benches);
