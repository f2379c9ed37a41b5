//! Subscribing: what a connection carries (set by the engine's ledger) and
//! the subscribe / unsubscribe / mode requests it sends Kite, in batches.

use super::*;

/// Tokens per subscribe/mode message.
pub(super) const BATCH: usize = 500;

impl Connection {
    /// Adds instruments (in `mode`); sends the requests if open.
    pub fn subscribe(&mut self, tokens: &[u32], mode: Mode) {
        let mut new = BTreeMap::new();
        for &t in tokens {
            self.desired.insert(t, mode);
            new.insert(t, mode);
        }
        self.send(subscription_requests(&new));
    }

    /// Changes the mode of instruments it carries; sends the request if open.
    pub fn set_mode(&mut self, tokens: &[u32], mode: Mode) {
        let mut changed = Vec::new();
        for t in tokens {
            if let Some(m) = self.desired.get_mut(t) {
                *m = mode;
                changed.push(*t);
            }
        }
        if !changed.is_empty() {
            self.send(
                changed
                    .chunks(BATCH)
                    .map(|c| ClientRequest::Mode(mode, c.to_vec()))
                    .collect(),
            );
        }
    }

    /// Removes instruments; sends the request if open.
    pub fn unsubscribe(&mut self, tokens: &[u32]) {
        let gone: Vec<u32> = tokens
            .iter()
            .copied()
            .filter(|t| self.desired.remove(t).is_some())
            .collect();
        if !gone.is_empty() {
            self.send(
                gone.chunks(BATCH)
                    .map(|c| ClientRequest::Unsubscribe(c.to_vec()))
                    .collect(),
            );
        }
    }

    pub(super) fn send(&mut self, reqs: Vec<ClientRequest>) {
        self.st()
            .subscribed
            .store(self.desired.len() as u64, Ordering::Relaxed);
        if let ConnState::Open { ws, .. } = &mut self.state {
            for r in reqs {
                let _ = ws.write(Message::text(r.to_json()));
            }
            let _ = ws.flush();
        }
    }
}

/// Subscribe messages for every token, then one mode message per mode, in
/// batches: what a connection sends on every (re)open.
pub fn subscription_requests(desired: &BTreeMap<u32, Mode>) -> Vec<ClientRequest> {
    let tokens: Vec<u32> = desired.keys().copied().collect();
    let mut out: Vec<ClientRequest> = tokens
        .chunks(BATCH)
        .map(|c| ClientRequest::Subscribe(c.to_vec()))
        .collect();
    for mode in [Mode::Ltp, Mode::Quote, Mode::Full] {
        let of_mode: Vec<u32> = desired
            .iter()
            .filter(|(_, m)| **m == mode)
            .map(|(t, _)| *t)
            .collect();
        out.extend(
            of_mode
                .chunks(BATCH)
                .map(|c| ClientRequest::Mode(mode, c.to_vec())),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resubscription_sends_every_token_then_each_mode() {
        let mut d = BTreeMap::new();
        for t in 1..=1200u32 {
            d.insert(t, if t % 3 == 0 { Mode::Full } else { Mode::Quote });
        }
        let reqs = subscription_requests(&d);
        let subs: usize = reqs
            .iter()
            .map(|r| {
                if let ClientRequest::Subscribe(v) = r {
                    v.len()
                } else {
                    0
                }
            })
            .sum();
        assert_eq!(subs, 1200);
        assert!(reqs.iter().all(|r| match r {
            ClientRequest::Subscribe(v) | ClientRequest::Mode(_, v) => v.len() <= BATCH,
            _ => false,
        }));
        let full: usize = reqs
            .iter()
            .map(|r| {
                if let ClientRequest::Mode(Mode::Full, v) = r {
                    v.len()
                } else {
                    0
                }
            })
            .sum();
        assert_eq!(full, 400);
        // subscribe before mode, as Kite requires
        let first_mode = reqs
            .iter()
            .position(|r| matches!(r, ClientRequest::Mode(..)))
            .unwrap();
        assert!(reqs[..first_mode]
            .iter()
            .all(|r| matches!(r, ClientRequest::Subscribe(_))));
    }
}
