//! The hub's contract with the engine: the tee signal, what clients want
//! (token -> highest mode, published as demand), and what the engine could
//! not place (rejected).

use super::*;

/// What the hub and the event loop share.
pub struct Link {
    /// The tee's wake-up, activity flag and upstream texts.
    pub signal: Arc<TeeSignal>,
    /// Token → highest mode any client wants (with `auto_subscribe`).
    demand: Mutex<BTreeMap<u32, Mode>>,
    demand_dirty: AtomicBool,
    /// Tokens the engine could not place upstream (no room).
    rejected: Mutex<Vec<u32>>,
    wake_engine: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").finish_non_exhaustive()
    }
}

impl Link {
    /// A link that wakes the engine with `wake_engine` when demand changes.
    pub fn new(signal: Arc<TeeSignal>, wake_engine: Box<dyn Fn() + Send + Sync>) -> Self {
        Link {
            signal,
            demand: Mutex::new(BTreeMap::new()),
            demand_dirty: AtomicBool::new(false),
            rejected: Mutex::new(Vec::new()),
            wake_engine,
        }
    }

    /// The engine: the demand, if it changed since the last call.
    pub fn take_demand(&self) -> Option<BTreeMap<u32, Mode>> {
        self.demand_dirty.swap(false, Ordering::AcqRel).then(|| {
            self.demand
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        })
    }

    /// The engine: these tokens could not be subscribed upstream.
    pub fn reject(&self, tokens: &[u32]) {
        if tokens.is_empty() {
            return;
        }
        self.rejected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(tokens);
        self.signal.notify();
    }

    pub(super) fn publish_demand(&self, d: BTreeMap<u32, Mode>) {
        *self.demand.lock().unwrap_or_else(PoisonError::into_inner) = d;
        self.demand_dirty.store(true, Ordering::Release);
        (self.wake_engine)();
    }

    pub(super) fn take_rejected(&self) -> Vec<u32> {
        std::mem::take(&mut *self.rejected.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// How many clients want each token in each mode; the highest mode wanted
/// is what the engine must capture.
#[derive(Debug, Default)]
pub struct Demand {
    counts: HashMap<u32, [u32; 3]>,
    changed: bool,
}

pub(super) fn rank(m: Mode) -> usize {
    match m {
        Mode::Ltp => 0,
        Mode::Quote => 1,
        Mode::Full => 2,
    }
}

pub(super) const MODES: [Mode; 3] = [Mode::Ltp, Mode::Quote, Mode::Full];

impl Demand {
    /// One client's subscription changed from `old` to `new`.
    pub fn change(&mut self, token: u32, old: Option<Mode>, new: Option<Mode>) {
        let before = self.highest(token);
        if let Some(m) = old {
            if let Some(c) = self.counts.get_mut(&token) {
                c[rank(m)] = c[rank(m)].saturating_sub(1);
                if *c == [0, 0, 0] {
                    self.counts.remove(&token);
                }
            }
        }
        if let Some(m) = new {
            self.counts.entry(token).or_default()[rank(m)] += 1;
        }
        self.changed |= before != self.highest(token);
    }

    /// The highest mode any client wants `token` in.
    pub fn highest(&self, token: u32) -> Option<Mode> {
        let c = self.counts.get(&token)?;
        (0..3).rev().find(|&i| c[i] > 0).map(|i| MODES[i])
    }

    /// Token → highest mode, if anything changed since the last call.
    pub fn take_changed(&mut self) -> Option<BTreeMap<u32, Mode>> {
        if !std::mem::take(&mut self.changed) {
            return None;
        }
        Some(
            self.counts
                .keys()
                .filter_map(|&t| Some((t, self.highest(t)?)))
                .collect(),
        )
    }
}
