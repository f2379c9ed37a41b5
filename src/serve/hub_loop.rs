//! The hub's loop: accepting and upgrading clients, their requests, the
//! tee drain and fan-out, heartbeats, texts and slow clients.

use super::*;

/// ` (N similar lines not logged)` when the log limit held some back.
pub(super) fn skipped_note(skipped: u64) -> String {
    if skipped == 0 {
        String::new()
    } else {
        format!(" ({skipped} similar client lines not logged)")
    }
}

impl HubLoop {
    pub(super) fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        let mut next_beat = Instant::now() + self.cfg.heartbeat;
        let mut next_publish = Instant::now();
        let mut last_round = Instant::now();
        loop {
            let ticks_waiting = self.consumers.iter().any(|c| !c.is_empty());
            let busy = ticks_waiting
                || self
                    .clients
                    .iter()
                    .any(|(_, c)| c.more_to_read || c.wants_write());
            let open = self.open_clients().max(1);
            let coalesce_until = (ticks_waiting && self.last_round_packets >= BUSY_PACKETS * open)
                .then(|| last_round + COALESCE)
                .filter(|t| *t > Instant::now());
            let wait = if let Some(t) = coalesce_until {
                t.saturating_duration_since(Instant::now())
            } else if busy {
                Duration::ZERO
            } else {
                self.link.signal.going_to_sleep();
                // Re-check after announcing sleep (see TeeSignal).
                if self.consumers.iter().any(|c| !c.is_empty()) {
                    Duration::ZERO
                } else {
                    next_beat
                        .min(next_publish)
                        .saturating_duration_since(Instant::now())
                }
            };
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    tracing::error!(
                        "hub: poll failed: {e}; the serve port stops (capture goes on)"
                    );
                    break;
                }
            }
            self.link.signal.awake();
            if self.stop.is_set() {
                break;
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(t) => {
                        let i = t - CLIENT_BASE;
                        if ev.is_writable() {
                            if let Some(c) = self.clients.get_mut(i) {
                                c.writable();
                            }
                        }
                        if ev.is_readable() || ev.is_writable() {
                            self.on_client(i);
                        }
                    }
                }
            }
            for i in 0..self.clients.capacity() {
                if self.clients.get(i).is_some_and(|c| c.more_to_read) {
                    self.on_client(i);
                }
            }
            self.check_overflow();
            if coalesce_until.is_some_and(|t| Instant::now() < t) {
                // Woken early by a client socket: serve it, keep ticks for the round.
                self.flush_all();
                continue;
            }
            last_round = Instant::now();
            self.drain();
            self.forward_texts();
            self.apply_rejected();
            let now = Instant::now();
            if now >= next_beat {
                next_beat = now + self.cfg.heartbeat;
                self.heartbeats(now);
            }
            self.flush_all();
            if let (true, Some(d)) = (self.cfg.auto_subscribe, self.demand.take_changed()) {
                self.link.publish_demand(d);
            }
            if now >= next_publish || std::mem::take(&mut self.views_dirty) {
                next_publish = now + Duration::from_secs(1);
                self.publish();
            }
        }
        for i in 0..self.clients.capacity() {
            self.remove(i, CloseCode::Away, "tickcap is shutting down");
        }
        self.publish();
    }

    pub(super) fn open_clients(&self) -> usize {
        self.clients.iter().filter(|(_, c)| c.is_open()).count()
    }

    pub(super) fn accept(&mut self) {
        loop {
            let (mut stream, peer) = match self.listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!("hub: accept failed: {e}");
                    return;
                }
            };
            let _ = stream.set_nodelay(true);
            // Beyond max_clients + a margin of upgrades in flight: the
            // oldest incomplete upgrade makes room (half-open sockets must
            // not keep real clients out); a completed client is never
            // evicted for a newcomer. With none incomplete, close at once
            // (the 429 needs a slot).
            if self.clients.len() >= self.cfg.max_clients + UPGRADE_MARGIN {
                match self.oldest_upgrade() {
                    Some(i) => {
                        self.drop_upgrade(i);
                        self.stats
                            .serve
                            .upgrades_evicted
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    None => {
                        drop(stream);
                        self.stats
                            .serve
                            .refused_full
                            .fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                }
            }
            // The slot the client will take (nothing is inserted before it).
            let slot = self.clients.vacant_key();
            if let Err(e) = self.poll.registry().register(
                &mut stream,
                Token(CLIENT_BASE + slot),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                tracing::warn!("hub: cannot register {peer}: {e}");
                continue;
            }
            let gate = Gate {
                token: self.cfg.token.clone(),
                full: self.open_clients() >= self.cfg.max_clients,
                stats: Arc::clone(&self.stats),
                api_key: Default::default(),
            };
            match Client::accept(stream, peer.to_string(), gate, self.cfg.clock.now_micros()) {
                Ok(mut c) => {
                    c.queue_limit = self.cfg.send_queue_bytes;
                    let open = c.is_open();
                    let taken = self.clients.insert(c);
                    debug_assert_eq!(taken, slot);
                    if open {
                        self.opened(slot);
                    }
                }
                Err(e) => tracing::debug!("hub: {peer}: {e}"),
            }
        }
    }

    pub(super) fn opened(&mut self, slot: usize) {
        self.stats.serve.accepted.fetch_add(1, Ordering::Relaxed);
        self.stats.serve.clients.fetch_add(1, Ordering::Relaxed);
        self.link.signal.active.store(true, Ordering::SeqCst);
        self.views_dirty = true;
        if let Some(c) = self.clients.get(slot) {
            if let Some(skipped) = self.client_log.allow(Instant::now()) {
                tracing::info!(
                    "hub: client {} connected (api_key {:?}){}",
                    c.peer,
                    crate::util::log_text(&c.api_key.borrow(), 64),
                    skipped_note(skipped)
                );
            }
        }
    }

    pub(super) fn on_client(&mut self, i: usize) {
        let Some(c) = self.clients.get_mut(i) else {
            return;
        };
        if !c.is_open() {
            match c.continue_upgrade() {
                Ok(()) if c.is_open() => self.opened(i),
                Ok(()) => {
                    if c.accepted.elapsed() > UPGRADE_DEADLINE {
                        self.drop_upgrade(i);
                    }
                    return;
                }
                Err(e) => {
                    tracing::debug!("hub: {}: {e}", c.peer);
                    self.drop_upgrade(i);
                    return;
                }
            }
        }
        let Some(c) = self.clients.get_mut(i) else {
            return;
        };
        let r = c.read(READ_BUDGET, &self.stats);
        for (t, old, new) in r.changes {
            self.demand.change(t, old, new);
            let list = self.subscribers.entry(t).or_default();
            list.retain(|(s, _)| *s != i);
            if let Some(m) = new {
                list.push((i, m));
            }
            if list.is_empty() {
                self.subscribers.remove(&t);
            }
        }
        if let Some(why) = r.ended {
            let code = if r.protocol_error {
                CloseCode::Protocol
            } else {
                CloseCode::Normal
            };
            self.remove(i, code, &why);
        }
    }

    /// The slot of the incomplete upgrade accepted longest ago.
    pub(super) fn oldest_upgrade(&self) -> Option<usize> {
        self.clients
            .iter()
            .filter(|(_, c)| !c.is_open())
            .map(|(i, c)| (i, c.accepted))
            .min_by_key(|(_, at)| *at)
            .map(|(i, _)| i)
    }

    pub(super) fn drop_upgrade(&mut self, i: usize) {
        if let Some(mut c) = self.clients.try_remove(i) {
            if let Some(s) = c.stream() {
                let _ = self.poll.registry().deregister(s);
            }
        }
    }

    /// Ends client `i`: a close frame with `reason`, its subscriptions
    /// released, the reason recorded.
    pub(super) fn remove(&mut self, i: usize, code: CloseCode, reason: &str) {
        let Some(mut c) = self.clients.try_remove(i) else {
            return;
        };
        if !c.is_open() {
            if let Some(s) = c.stream() {
                let _ = self.poll.registry().deregister(s);
            }
            return;
        }
        c.close(code, reason);
        if let Some(s) = c.stream() {
            let _ = self.poll.registry().deregister(s);
        }
        for (t, m) in c.subs.drain() {
            self.demand.change(t, Some(m), None);
            if let Some(list) = self.subscribers.get_mut(&t) {
                list.retain(|(s, _)| *s != i);
                if list.is_empty() {
                    self.subscribers.remove(&t);
                }
            }
        }
        self.views_dirty = true;
        let s = &self.stats.serve;
        let left = s.clients.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
        if left == 0 {
            self.link.signal.active.store(false, Ordering::SeqCst);
        }
        if let Some(skipped) = self.client_log.allow(Instant::now()) {
            tracing::info!(
                "hub: client {} disconnected: {} ({} ticks sent){}",
                c.peer,
                crate::util::log_text(reason, 200),
                c.ticks_sent,
                skipped_note(skipped)
            );
        }
        let mut d = s.disconnects.lock().unwrap_or_else(PoisonError::into_inner);
        if d.len() == 50 {
            d.pop_front();
        }
        d.push_back(Disconnect {
            address: c.peer.clone(),
            at_micros: self.cfg.clock.now_micros(),
            reason: reason.to_owned(),
            ticks_sent: c.ticks_sent,
        });
    }

    /// A tee ring overflowed: the clients' feed has a hole. Tell them
    /// (close 1013, try again) rather than serve it silently.
    pub(super) fn check_overflow(&mut self) {
        let n = self.link.signal.overflowed.load(Ordering::Relaxed);
        if n == self.overflow_seen {
            return;
        }
        let lost = n - self.overflow_seen;
        self.overflow_seen = n;
        self.stats.serve.ring_overflows.store(n, Ordering::Relaxed);
        tracing::warn!("hub: fell behind, {lost} ticks not copied to it (capture has them all); disconnecting its clients");
        let reason = format!("tickcap's hub fell behind ({lost} ticks not delivered); reconnect");
        for i in 0..self.clients.capacity() {
            self.remove(i, CloseCode::Again, &reason);
        }
    }

    /// Takes ticks from the tee rings and adds each to the batch of every
    /// client subscribed to it, in its mode.
    pub(super) fn drain(&mut self) {
        let mut taken = 0;
        for k in 0..self.consumers.len() {
            while taken < DRAIN_BUDGET {
                let Ok(st) = self.consumers[k].pop() else {
                    break;
                };
                taken += 1;
                if let Some(d) = &mut self.dedup {
                    if !d.keep(&st) {
                        continue;
                    }
                }
                let Some(list) = self.subscribers.get(&st.tick.instrument_token) else {
                    continue;
                };
                let mut encoded = [false; 3];
                for &(slot, mode) in list {
                    let r = rank(mode);
                    if !encoded[r] {
                        encode_for(&st.tick, mode, &mut self.scratch[r]);
                        encoded[r] = true;
                    }
                    let Some(c) = self.clients.get_mut(slot) else {
                        continue;
                    };
                    if c.push_packet(&self.scratch[r], st.recv_micros) {
                        c.finish_batch();
                    }
                    self.touched.push(slot);
                }
            }
        }
        self.last_round_packets = self.touched.len();
        self.touched.sort_unstable();
        self.touched.dedup();
        for &slot in &self.touched {
            if let Some(c) = self.clients.get_mut(slot) {
                c.finish_batch();
            }
        }
        self.touched.clear();
    }

    pub(super) fn forward_texts(&mut self) {
        let texts = self.link.signal.take_texts();
        if texts.is_empty() {
            return;
        }
        let now = self.texts_epoch.elapsed().as_micros() as i64;
        for (_, text) in texts {
            if !self
                .recent_texts
                .first_sighting(crate::dedup::Recent::key_of(text.as_bytes()), now)
            {
                continue;
            }
            self.stats
                .serve
                .texts_forwarded
                .fetch_add(1, Ordering::Relaxed);
            for (_, c) in self.clients.iter_mut().filter(|(_, c)| c.is_open()) {
                c.send_text(text.clone());
            }
        }
    }

    /// Tokens the engine had no room for: the clients that asked get Kite's
    /// words and lose the subscription.
    pub(super) fn apply_rejected(&mut self) {
        let rejected = self.link.take_rejected();
        if rejected.is_empty() {
            return;
        }
        let mut told = vec![false; self.clients.capacity()];
        for t in rejected {
            let Some(list) = self.subscribers.remove(&t) else {
                continue;
            };
            for (slot, m) in list {
                self.demand.change(t, Some(m), None);
                if let Some(c) = self.clients.get_mut(slot) {
                    c.subs.remove(&t);
                    if !told[slot] {
                        told[slot] = true;
                        c.send_text(client::error_text(client::TOO_MANY));
                    }
                }
            }
        }
    }

    pub(super) fn heartbeats(&mut self, now: Instant) {
        for i in 0..self.clients.capacity() {
            let Some(c) = self.clients.get_mut(i) else {
                continue;
            };
            if c.is_open() {
                c.heartbeat();
            } else if now.duration_since(c.accepted) > UPGRADE_DEADLINE {
                self.drop_upgrade(i);
            }
        }
    }

    /// Writes to every client that has something and a writable socket;
    /// disconnects the ones past their queue limit.
    pub(super) fn flush_all(&mut self) {
        let now = self.cfg.clock.now_micros();
        let limit = self.cfg.send_queue_bytes;
        for i in 0..self.clients.capacity() {
            let Some(c) = self.clients.get_mut(i) else {
                continue;
            };
            let (hist, serve) = (&mut self.hist, &self.stats.serve);
            let r = if c.wants_write() {
                c.pump(|s: Sent, bytes| {
                    if bytes > 0 {
                        serve.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
                    }
                    if s.ticks > 0 {
                        serve.messages_sent.fetch_add(1, Ordering::Relaxed);
                        serve.ticks_sent.fetch_add(s.ticks, Ordering::Relaxed);
                        let _ = hist.record_n((now - s.oldest_micros).max(1) as u64, s.ticks);
                    }
                })
            } else {
                Ok(())
            };
            let queued = c.queued;
            match r {
                Err(e) => self.remove(i, CloseCode::Error, &e),
                Ok(()) if queued > limit || c.over_limit => {
                    self.stats
                        .serve
                        .dropped_slow
                        .fetch_add(1, Ordering::Relaxed);
                    self.remove(
                        i,
                        CloseCode::Policy,
                        &format!(
                            "too slow: {} KiB waiting, past the {} KiB send queue",
                            queued / 1024,
                            limit / 1024
                        ),
                    );
                }
                Ok(()) => {}
            }
        }
    }

    pub(super) fn publish(&mut self) {
        publish(&self.stats.latency.receive_to_client_us, &self.hist);
        let views: Vec<ClientView> = self
            .clients
            .iter()
            .map(|(_, c)| c)
            .filter(|c| c.is_open())
            .map(|c| {
                let mut subscriptions: Vec<(u32, &'static str)> =
                    c.subs.iter().map(|(t, m)| (*t, m.as_str())).collect();
                subscriptions.sort_unstable();
                ClientView {
                    address: c.peer.clone(),
                    connected_micros: c.since_micros,
                    api_key: c.api_key.borrow().clone(),
                    subscriptions,
                    ticks_sent: c.ticks_sent,
                    bytes_sent: c.bytes_sent,
                    queued_bytes: c.queued as u64,
                    bad_requests: c.bad_requests,
                }
            })
            .collect();
        // Never wait on a /clients reader; a busy lock means try again on
        // the next turn (not a second later).
        match self.stats.serve.clients_view.try_lock() {
            Ok(mut g) => *g = views,
            Err(_) => self.views_dirty = true,
        }
    }
}
