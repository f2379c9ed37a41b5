//! One way to run a named thread that can be told to stop: a stop flag the
//! thread polls, a wake-up (its own — a `mio::Waker` for a thread in
//! `poll` — and always `unpark`, for a thread in `park_timeout`), a join,
//! a join with a deadline, and a `Drop` that stops and joins. The writer,
//! the hub, the Kafka publisher and the event loop each had a copy of this.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The flag a stoppable thread polls.
#[derive(Debug, Clone, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// A flag not yet set.
    pub fn new() -> Self {
        StopFlag::default()
    }

    /// Whether the thread has been asked to stop.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Asks the thread to stop (the thread itself may, on a signal).
    pub fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

type WakeFn = Box<dyn Fn() + Send + Sync>;

/// A running thread with a stop flag.
pub struct StoppableThread<T> {
    stop: StopFlag,
    wake: Option<WakeFn>,
    done: Arc<AtomicBool>,
    handle: Option<JoinHandle<T>>,
}

impl<T> std::fmt::Debug for StoppableThread<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoppableThread")
            .field("stopping", &self.stop.is_set())
            .field("done", &self.done.load(Ordering::SeqCst))
            .finish()
    }
}

impl<T: Send + 'static> StoppableThread<T> {
    /// Starts `body` on a thread called `name`; it gets the stop flag
    /// (`stop`, or a new one) to poll.
    pub fn spawn(
        name: &str,
        stop: Option<StopFlag>,
        body: impl FnOnce(StopFlag) -> T + Send + 'static,
    ) -> std::io::Result<Self> {
        let stop = stop.unwrap_or_default();
        let flag = stop.clone();
        let done = Arc::new(AtomicBool::new(false));
        let d = Arc::clone(&done);
        let handle = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                /// Marks the thread done however it ends (a panic too).
                struct Done(Arc<AtomicBool>);
                impl Drop for Done {
                    fn drop(&mut self) {
                        self.0.store(true, Ordering::SeqCst);
                    }
                }
                let _done = Done(d);
                body(flag)
            })?;
        Ok(StoppableThread {
            stop,
            wake: None,
            done,
            handle: Some(handle),
        })
    }
}

impl<T> StoppableThread<T> {
    /// Also calls `wake` when asked to stop (a `mio::Waker` for a thread
    /// blocked in `poll`).
    pub fn with_wake(mut self, wake: impl Fn() + Send + Sync + 'static) -> Self {
        self.wake = Some(Box::new(wake));
        self
    }

    /// Asks the thread to stop and wakes it; does not wait.
    pub fn request_stop(&self) {
        self.stop.set();
        if let Some(w) = &self.wake {
            w();
        }
        if let Some(h) = &self.handle {
            h.thread().unpark();
        }
    }

    /// Whether the thread has ended.
    pub fn is_finished(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }

    /// Waits for the thread to end by itself; `Err` if it panicked.
    pub fn join(&mut self) -> std::thread::Result<Option<T>> {
        match self.handle.take() {
            None => Ok(None),
            Some(h) => h.join().map(Some),
        }
    }

    /// Asks the thread to stop and waits; `Err` if it panicked.
    pub fn stop(&mut self) -> std::thread::Result<Option<T>> {
        self.request_stop();
        self.join()
    }

    /// Asks the thread to stop and waits at most `limit`. A thread still
    /// busy then (a blocking call in another library) is left to end by
    /// itself: `None`.
    pub fn stop_within(&mut self, limit: Duration) -> Option<std::thread::Result<Option<T>>> {
        self.request_stop();
        let deadline = Instant::now() + limit;
        while !self.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if !self.is_finished() {
            self.handle = None;
            return None;
        }
        Some(self.join())
    }
}

impl<T> Drop for StoppableThread<T> {
    fn drop(&mut self) {
        if self.handle.is_some() {
            let _ = self.stop();
        }
    }
}

/// Puts the calling thread behind capture in the scheduler: SCHED_BATCH (a
/// woken thread does not preempt the event loop or the writer mid-frame) at
/// `nice` (when the cores are busy, capture runs first). Threads it starts
/// inherit both. The hub uses 10, background exports 19.
pub fn yield_to_capture(nice: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread with valid arguments;
    // failure only leaves the default policy, which is logged.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        let tid = libc::gettid();
        let batch = libc::sched_setscheduler(0, libc::SCHED_BATCH, &param);
        let niced = libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice);
        if batch != 0 || niced != 0 {
            tracing::debug!("could not lower a thread's scheduling priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parked_thread_is_woken_stopped_and_joined_and_a_stuck_one_is_left_in_time() {
        let mut t = StoppableThread::spawn("t-park", None, |stop| {
            let mut turns = 0u32;
            while !stop.is_set() {
                std::thread::park_timeout(Duration::from_secs(60));
                turns += 1;
            }
            turns
        })
        .unwrap();
        let started = Instant::now();
        assert!(matches!(t.stop(), Ok(Some(_))));
        assert!(started.elapsed() < Duration::from_secs(5), "unpark woke it");
        let mut stuck = StoppableThread::spawn("t-stuck", None, |_| {
            std::thread::sleep(Duration::from_millis(800));
        })
        .unwrap();
        let started = Instant::now();
        assert!(stuck.stop_within(Duration::from_millis(50)).is_none());
        assert!(started.elapsed() < Duration::from_millis(500));
        let mut panics =
            StoppableThread::spawn("t-panic", None, |_| -> u8 { panic!("boom") }).unwrap();
        assert!(panics.stop().is_err());
    }
}
