//! Reading: frames off an open socket within a per-turn budget, decoded in
//! place into the ring (backpressure when it is full), text frames logged
//! escaped and rate-limited, copies teed to the hub.

use super::*;

impl Connection {
    /// Whether this socket used up its budget last turn and must be read again.
    pub fn has_more_to_read(&self) -> bool {
        self.more_to_read && self.is_open() && self.paused_since.is_none()
    }

    /// Reads on after a turn whose budget ran out.
    pub fn read_more(&mut self, registry: &Registry) {
        if self.has_more_to_read() {
            self.read_frames(registry);
        }
    }

    /// Reads and decodes frames until the socket would block, the ring is
    /// full, the connection ends, or this turn's budget is spent.
    pub(super) fn read_frames(&mut self, registry: &Registry) {
        self.more_to_read = false;
        if self.paused_since.is_some() {
            return;
        }
        let mut frames = 0u32;
        let mut bytes = 0usize;
        let ConnState::Open { ws, .. } = &mut self.state else {
            return;
        };
        ws.get_mut().begin_turn();
        let id = self.id;
        let st = &self.stats.conns[usize::from(id - 1)];
        // The hub is woken once per read turn, after the ticks are in the
        // rings (not per frame, and outside the receive→ring measurement).
        let mut tee_pending = false;
        let end = loop {
            if frames >= FRAME_BUDGET || bytes >= BYTE_BUDGET {
                self.more_to_read = true;
                break None;
            }
            frames += 1;
            let read = ws.read();
            if let Ok(m) = &read {
                bytes += m.len();
            }
            match read {
                Ok(Message::Binary(payload)) => {
                    let recv = self.clock.now_micros();
                    // Latency is real CPU time, whatever clock drives the timers.
                    let t0 = Instant::now();
                    self.last_frame = self.mono.now();
                    self.framed_since_open = true;
                    if payload.len() <= 4 {
                        st.heartbeats.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let tee = self.tee.as_mut().filter(|t| t.active());
                    let teed = tee.is_some();
                    let n = push_frame(
                        &payload,
                        recv,
                        id,
                        &mut self.producer,
                        &mut self.overflow,
                        tee,
                        |e| {
                            let k = st.decode_errors.fetch_add(1, Ordering::Relaxed) + 1;
                            if k <= 10 || k.is_power_of_two() {
                                tracing::warn!("connection {id}: decode error #{k}: {e}");
                            }
                        },
                    );
                    tee_pending |= teed;
                    st.ticks.fetch_add(n, Ordering::Relaxed);
                    st.frames.fetch_add(1, Ordering::Relaxed);
                    if self.marked && n > 0 && self.first_tick_since_mark.is_none() {
                        self.first_tick_since_mark = Some(recv);
                    }
                    st.last_tick_micros.store(recv, Ordering::Relaxed);
                    let _ = self.hist.record_n(t0.elapsed().as_nanos().max(1) as u64, n);
                    // The writer wakes on its own every flush_interval / 2;
                    // it is woken early only when the ring fills up (a wake
                    // per frame cost two context switches per frame).
                    if self.producer.slots() < self.wake_below_free {
                        self.wake.notify();
                    }
                    if !self.overflow.is_empty() {
                        self.paused_since = Some(self.mono.now());
                        st.ring_stalls.fetch_add(1, Ordering::Relaxed);
                        break None;
                    }
                }
                Ok(Message::Text(t)) => {
                    let now = self.mono.now();
                    self.last_frame = now;
                    let recv = self.clock.now_micros();
                    let frame = parse_text(t.as_str(), &mut self.scratch);
                    record_text(
                        &self.events,
                        &mut self.text_events,
                        now,
                        &self.stats,
                        id,
                        recv,
                        &frame,
                        t.as_str(),
                    );
                    if let (TextFrame::Order(_) | TextFrame::Message(_), Some(tee)) =
                        (&frame, &self.tee)
                    {
                        tee.signal.push_text(id, t.as_str());
                    }
                    if let TextFrame::Error(_) = frame {
                        st.server_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    // Remote text: escaped, cut, and rate-limited.
                    if let Some(skipped) = self.text_log.allow(now) {
                        let more = if skipped > 0 {
                            format!(" ({skipped} similar messages suppressed)")
                        } else {
                            String::new()
                        };
                        match frame {
                            TextFrame::Error(msg) => tracing::warn!(
                                "connection {id}: Kite says error: {}{more}",
                                log_text(&msg, LOG_TEXT_MAX)
                            ),
                            TextFrame::Message(msg) => tracing::info!(
                                "connection {id}: Kite says: {}{more}",
                                log_text(&msg, LOG_TEXT_MAX)
                            ),
                            TextFrame::Order(o) => tracing::info!(
                                "connection {id}: order update {} {}{more}",
                                log_text(o.order_id.as_deref().unwrap_or("?"), 64),
                                log_text(o.status.as_deref().unwrap_or("?"), 64)
                            ),
                            TextFrame::Unknown { kind, raw } => tracing::info!(
                                "connection {id}: text frame of type {}: {}{more}",
                                log_text(kind.as_deref().unwrap_or("none"), 64),
                                log_text(&raw, LOG_TEXT_MAX)
                            ),
                        }
                    }
                }
                Err(tungstenite::Error::Utf8(_)) => {
                    // A text frame that is not UTF-8: Kite never sends one.
                    // Counted and skipped; the binary frames behind it are
                    // ticks like any other.
                    self.last_frame = self.mono.now();
                    st.bad_text_frames.fetch_add(1, Ordering::Relaxed);
                    let recv = self.clock.now_micros();
                    record_bad_text(
                        &self.events,
                        &mut self.text_events,
                        self.mono.now(),
                        id,
                        recv,
                        "not UTF-8",
                        "",
                    );
                    if self.text_log.allow(self.mono.now()).is_some() {
                        tracing::warn!("connection {id}: a text frame that is not UTF-8 (skipped)");
                    }
                }
                Ok(Message::Close(frame)) => {
                    break Some(ConnError::Closed(match frame {
                        Some(f) => format!("{} {}", u16::from(f.code), log_text(&f.reason, 200)),
                        None => "no reason".into(),
                    }))
                }
                Ok(_) => self.last_frame = self.mono.now(),
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => break None,
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => break Some(ConnError::Read(log_text(&e.to_string(), LOG_TEXT_MAX))),
            }
        };
        // Push out pongs, close replies and queued subscriptions.
        if end.is_none() {
            if let ConnState::Open { ws, .. } = &mut self.state {
                match ws.flush() {
                    Ok(()) => {}
                    Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => return self.drop_open(registry, ConnError::Write(e.to_string())),
                }
            }
        }
        if tee_pending {
            if let Some(t) = &self.tee {
                t.signal.notify();
            }
        }
        if let Some(why) = end {
            self.drop_open(registry, why);
        }
    }
}

/// Keeps a text frame: an order update in the orders file (every one;
/// the journal thread keeps one of the copies Kite sends per socket),
/// Kite's messages and errors in the events journal (rate-limited).
#[allow(clippy::too_many_arguments)]
fn record_text(
    events: &crate::events::Emitter,
    limit: &mut LogLimit,
    now: Instant,
    stats: &Stats,
    id: u8,
    recv: i64,
    frame: &TextFrame,
    text: &str,
) {
    use crate::events::{cap_text, Event};
    match frame {
        TextFrame::Order(_) if text.len() > crate::events::ORDER_MAX => {
            // Kite's order updates are a few KiB: a huge one is kept out of
            // the orders file and recorded (cut).
            stats
                .journal
                .bad_text_frames
                .fetch_add(1, Ordering::Relaxed);
            record_bad_text(
                events,
                limit,
                now,
                id,
                recv,
                "an order update longer than 64 KiB",
                text,
            );
        }
        TextFrame::Order(_) => events.order(recv, id, text),
        TextFrame::Error(msg) | TextFrame::Message(msg) => {
            if let Some(suppressed) = limit.allow(now) {
                let text = cap_text(msg);
                events.emit_at(
                    recv,
                    if matches!(frame, TextFrame::Error(_)) {
                        Event::KiteError {
                            connection_id: id,
                            text,
                            suppressed,
                        }
                    } else {
                        Event::KiteMessage {
                            connection_id: id,
                            text,
                            suppressed,
                        }
                    },
                );
            }
        }
        TextFrame::Unknown { kind, raw } => {
            stats
                .journal
                .bad_text_frames
                .fetch_add(1, Ordering::Relaxed);
            let problem = match kind {
                Some(k) => format!("a text frame of type {:?}", cap_text(k)),
                None => "a text frame that is not a JSON object with a type".to_owned(),
            };
            record_bad_text(events, limit, now, id, recv, &problem, raw);
        }
    }
}

/// Records a text frame that is not kept otherwise (rate-limited, cut).
fn record_bad_text(
    events: &crate::events::Emitter,
    limit: &mut LogLimit,
    now: Instant,
    id: u8,
    recv: i64,
    problem: &str,
    text: &str,
) {
    if let Some(suppressed) = limit.allow(now) {
        events.emit_at(
            recv,
            crate::events::Event::BadTextFrame {
                connection_id: id,
                problem: problem.to_owned(),
                text: crate::events::cap_text(text),
                suppressed,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Emitter, Event, Record};

    fn rig() -> (Emitter, std::sync::mpsc::Receiver<Record>, Arc<Stats>) {
        let stats = Arc::new(Stats::default());
        let (tx, rx) = std::sync::mpsc::sync_channel(64);
        (
            Emitter::new(tx, Clock::system(), Arc::clone(&stats)),
            rx,
            stats,
        )
    }

    #[test]
    fn an_order_update_goes_to_the_orders_file_and_a_huge_one_does_not() {
        let (e, rx, stats) = rig();
        let mut limit = LogLimit::new(20, Duration::from_secs(10));
        let now = Instant::now();
        let small = r#"{"type":"order","data":{"order_id":"1"}}"#;
        let mut scratch = Vec::new();
        let frame = parse_text(small, &mut scratch);
        record_text(&e, &mut limit, now, &stats, 1, 5, &frame, small);
        assert!(matches!(
            rx.try_recv(),
            Ok(Record::Order {
                at: 5,
                connection_id: 1,
                ..
            })
        ));
        let huge = format!(
            r#"{{"type":"order","data":{{"order_id":"2","x":"{}"}}}}"#,
            "y".repeat(crate::events::ORDER_MAX)
        );
        let frame = parse_text(&huge, &mut scratch);
        record_text(&e, &mut limit, now, &stats, 2, 6, &frame, &huge);
        match rx.try_recv() {
            Ok(Record::Event(
                6,
                Event::BadTextFrame {
                    connection_id: 2,
                    text,
                    ..
                },
            )) => {
                assert!(text.chars().count() <= crate::events::TEXT_MAX + 1)
            }
            other => panic!("{other:?}"),
        }
        let unknown = r#"{"type":"surprise"}"#;
        let frame = parse_text(unknown, &mut scratch);
        record_text(&e, &mut limit, now, &stats, 3, 7, &frame, unknown);
        assert!(matches!(
            rx.try_recv(),
            Ok(Record::Event(7, Event::BadTextFrame { .. }))
        ));
        assert!(rx.try_recv().is_err(), "nothing else, and no order");
        assert_eq!(stats.journal.bad_text_frames.load(Ordering::Relaxed), 2);
    }
}
