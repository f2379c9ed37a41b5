//! Publishing every captured tick to Apache Kafka, exactly once, from the
//! daily files (the journal), on a thread of its own.
//!
//! **The file is the source of truth.** The publisher follows what the
//! writer has written ([`journal::Journal`]), so a broker that is down or
//! slow costs only lag: the backlog stays on disk and at most
//! [`MAX_IN_FLIGHT`] records are held by librdkafka. Capture never waits
//! for it.
//!
//! **One record per line**: key = `instrument_token`, value = the JSONL
//! line (without `\n`), headers `tickcap-position` (`YYYY-MM-DD:offset`,
//! the line's place in the day's uncompressed stream) and
//! `tickcap-connection-id`; partition = token mod the topic's partition
//! count (deterministic, so each instrument stays in order in one
//! partition). The producer is idempotent with `acks=all`, infinite
//! delivery timeout and at most 5 requests in flight: within a partition
//! the broker holds a prefix of what was sent, in order.
//!
//! **Exactly once across restarts** (kill -9 included): a checkpoint
//! (`data_dir/kafka.checkpoint`) holds a position before which everything
//! is acknowledged; it is written only from delivery reports. At start,
//! and after a fatal producer error (the producer is then recreated), the
//! last record of each partition is read back: a line at or after the
//! checkpoint whose position is at or before its partition's last position
//! is already in the topic (the prefix property) and is skipped; every
//! other line is sent. Nothing is skipped that is not there, nothing sent
//! twice.

pub mod journal;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::config::KafkaConfig;
use crate::stats::KafkaState;
use crate::stats::Stats;
use crate::time::Clock;
use journal::{Journal, Pos};

/// Most records handed to librdkafka and not yet acknowledged.
pub const MAX_IN_FLIGHT: usize = 100_000;
/// How long recovery waits for the brokers to answer (metadata,
/// watermarks). A broker that is down is reported (`/health` degraded)
/// after this long, so it is short; a healthy broker answers in
/// milliseconds, even across a WAN.
const BROKER_WAIT: Duration = Duration::from_secs(5);
/// Cap of the pause between two failed sessions (recovery against a broker
/// that is down): when it comes back, publishing resumes within this.
const SESSION_RETRY_MAX: Duration = Duration::from_secs(2);
/// librdkafka's `reconnect.backoff.max.ms` unless configured: its default
/// (10 s) is meant for fleets of clients reconnecting to a big cluster; one
/// publisher per host would otherwise wait up to 10 s after a broker
/// restart before sending its backlog.
const RECONNECT_BACKOFF_MAX_MS: &str = "1000";
/// The position header.
pub const POSITION_HEADER: &str = "tickcap-position";
/// The connection header.
pub const CONNECTION_HEADER: &str = "tickcap-connection-id";

/// Delivery reports, collected by librdkafka's callback on `poll`.
#[derive(Default)]
struct Reports {
    done: Mutex<Vec<(Pos, Result<(), String>)>>,
}

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<Pos>;
    fn delivery(&self, r: &DeliveryResult<'_>, pos: Self::DeliveryOpaque) {
        let outcome = r.as_ref().map(|_| ()).map_err(|(e, _)| e.to_string());
        self.done
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((*pos, outcome));
    }
}

/// Checks `[kafka]` as librdkafka sees it, without connecting: every
/// property name and value is set on a native configuration, which
/// refuses unknown keys and values this build does not support. The error
/// is librdkafka's own message.
pub fn check_config(cfg: &KafkaConfig) -> Result<(), String> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("client.id", &cfg.client_id);
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    c.create_native_config()
        .map(|_| ())
        .map_err(|e| format!("[kafka] rejected by librdkafka: {e}"))
}

/// Where the publisher keeps its checkpoint.
pub fn checkpoint_path(data_dir: &Path) -> PathBuf {
    data_dir.join("kafka.checkpoint")
}

/// What a publisher publishes: the ticks to `[kafka] topic`, or Kite's
/// order updates (the `orders_…` files) to `[kafka] orders_topic` — each
/// with its own checkpoint, counters and thread, under the same rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// `market_data_…` → `topic`.
    Ticks,
    /// `orders_…` → `orders_topic`; key = the order's `instrument_token`
    /// (0 when it has none), so one instrument's updates stay in order.
    Orders,
    /// `candles_<interval>_…` → `{candles_topic}_<interval>`; key = the
    /// bar's `instrument_token`. A topic per interval: positions are per
    /// file family, and recovery reads them back per topic.
    Candles(crate::candles::Interval),
}

impl Stream {
    fn family(self) -> crate::days::Family {
        match self {
            Stream::Ticks => crate::days::Family::Ticks,
            Stream::Orders => crate::days::Family::Orders,
            Stream::Candles(i) => crate::days::Family::Candles(i),
        }
    }

    /// The checkpoint file in `data_dir`.
    pub fn checkpoint(self, data_dir: &Path) -> PathBuf {
        match self {
            Stream::Ticks => checkpoint_path(data_dir),
            Stream::Orders => data_dir.join("kafka.orders.checkpoint"),
            Stream::Candles(i) => {
                data_dir.join(format!("kafka.candles_{}.checkpoint", i.kite_name()))
            }
        }
    }

    /// Its counters.
    pub fn stats(self, stats: &Stats) -> &crate::stats::KafkaStats {
        match self {
            Stream::Ticks => &stats.kafka,
            Stream::Orders => &stats.kafka_orders,
            Stream::Candles(i) => stats.kafka_candles_of(i),
        }
    }

    /// The topic it publishes to under `cfg`.
    pub fn topic(self, cfg: &KafkaConfig) -> Option<String> {
        match self {
            Stream::Ticks => Some(cfg.topic.clone()),
            Stream::Orders => cfg.orders_topic.clone(),
            Stream::Candles(i) => cfg.candles_topic_for(i),
        }
    }
}

/// The checkpoint: the acknowledged frontier, and the topic's partition
/// count it was published with (`token % partitions` picks a record's
/// partition, so exactly-once holds only while that count stays).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Checkpoint {
    pos: Pos,
    partitions: Option<i32>,
}

fn read_checkpoint(path: &Path) -> Option<Checkpoint> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let pos = Pos::parse(lines.next()?)?;
    let partitions = lines
        .find_map(|l| l.strip_prefix("partitions="))
        .and_then(|n| n.trim().parse().ok());
    Some(Checkpoint { pos, partitions })
}

fn write_checkpoint(path: &Path, pos: Pos, partitions: i32) -> std::io::Result<()> {
    write_checkpoint_text(path, &format!("{pos}\npartitions={partitions}\n"))
}

fn write_checkpoint_text(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("checkpoint.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// The lines in the files from a position on, counted as they appear: the
/// publisher's backlog is computed from what is on disk, also while no
/// broker has ever answered.
struct Backlog {
    journal: Journal,
    lines: u64,
}

impl Backlog {
    fn new(dir: &Path, family: crate::days::Family, from: Pos) -> Backlog {
        Backlog {
            journal: Journal::of(dir, family, from),
            lines: 0,
        }
    }

    /// Counts what was written since the last call (at most `budget`
    /// lines per call, so a day's backlog is counted over a few turns).
    fn update(&mut self, budget: u64) -> u64 {
        for _ in 0..budget {
            if self.journal.next_line().is_none() {
                break;
            }
            self.lines += 1;
        }
        self.lines
    }
}

/// The instrument token and connection id of a line, read without a full
/// parse (the writer's own key order; any order is handled).
fn token_and_conn(line: &[u8]) -> Option<(u32, u8)> {
    let num = |key: &[u8]| -> Option<u64> {
        let at = line.windows(key.len()).position(|w| w == key)? + key.len();
        let digits: Vec<u8> = line[at..]
            .iter()
            .copied()
            .take_while(u8::is_ascii_digit)
            .collect();
        std::str::from_utf8(&digits).ok()?.parse().ok()
    };
    let token = u32::try_from(num(b"\"instrument_token\":")?).ok()?;
    let conn = u8::try_from(num(b"\"connection_id\":").unwrap_or(0)).ok()?;
    Some((token, conn))
}

/// The connection id at the end of a line (0 when absent).
fn conn_of(line: &[u8]) -> u8 {
    let key = b"\"connection_id\":";
    line.windows(key.len())
        .rposition(|w| w == key)
        .and_then(|at| {
            let d: Vec<u8> = line[at + key.len()..]
                .iter()
                .copied()
                .take_while(u8::is_ascii_digit)
                .collect();
            std::str::from_utf8(&d).ok()?.parse().ok()
        })
        .unwrap_or(0)
}

/// The receive time of a line (its `timestamp`), epoch µs.
fn line_micros(line: &[u8]) -> Option<i64> {
    let key = b"\"timestamp\":\"";
    let at = line.windows(key.len()).rposition(|w| w == key)? + key.len();
    let end = line[at..].iter().position(|&b| b == b'"')? + at;
    crate::time::parse_timestamp(std::str::from_utf8(&line[at..end]).ok()?)
}

/// How often a running publisher checks the topic's partition count.
const PARTITION_CHECK: Duration = Duration::from_secs(5);
/// How long a stop waits for acknowledgements of what is in flight.
const STOP_WAIT: Duration = Duration::from_secs(2);
/// How long a stop waits for the thread (a broker call may be in progress).
const JOIN_WAIT: Duration = Duration::from_millis(2500);

/// The running publisher.
#[derive(Debug)]
pub struct Publisher {
    thread: crate::thread::StoppableThread<()>,
    /// When the stop was first asked for: the join's deadline counts from
    /// it, so the publisher's wind-down overlaps the writer's drain.
    stop_asked: std::sync::OnceLock<Instant>,
}

impl Publisher {
    /// Starts publishing `data_dir`'s tick files with `cfg`.
    pub fn start(
        cfg: KafkaConfig,
        data_dir: PathBuf,
        stats: Arc<Stats>,
        clock: Clock,
        fatal_after: Option<u64>,
    ) -> std::io::Result<Publisher> {
        Publisher::start_stream(Stream::Ticks, cfg, data_dir, stats, clock, fatal_after)
    }

    /// Starts publishing one stream of `data_dir`'s daily files (for
    /// [`Stream::Orders`], to `cfg.orders_topic`).
    pub fn start_stream(
        stream: Stream,
        mut cfg: KafkaConfig,
        data_dir: PathBuf,
        stats: Arc<Stats>,
        clock: Clock,
        fatal_after: Option<u64>,
    ) -> std::io::Result<Publisher> {
        cfg.topic = stream.topic(&cfg).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("no [kafka] topic for {stream:?}"),
            )
        })?;
        let name = match stream {
            Stream::Ticks => "tickcap-kafka",
            Stream::Orders => "tickcap-kafka-orders",
            Stream::Candles(_) => "tickcap-kafka-candles",
        };
        let thread = crate::thread::StoppableThread::spawn(name, None, move |stop| {
            let mut p = Run {
                stream,
                cfg,
                checkpoint: stream.checkpoint(&data_dir),
                data_dir,
                stats,
                clock,
                stop,
                fatal_after,
            };
            p.run();
        })?;
        Ok(Publisher {
            thread,
            stop_asked: std::sync::OnceLock::new(),
        })
    }

    /// Asks the thread to stop without waiting (the engine does this
    /// before draining the writer, so both wind down at once).
    pub fn request_stop(&self) {
        self.stop_asked.get_or_init(Instant::now);
        self.thread.request_stop();
    }

    /// Stops: what is in flight gets up to 2 s to be acknowledged; the rest
    /// stays in the journal for the next start.
    pub fn stop(mut self) {
        self.shutdown();
    }

    /// Stops, waiting at most `JOIN_WAIT`: a broker call in progress (a
    /// metadata request to a dead broker takes seconds) must not hold up
    /// shutdown. A thread still busy then is left to end by itself; its
    /// acknowledged position is in the checkpoint already.
    fn shutdown(&mut self) {
        let asked = *self.stop_asked.get_or_init(Instant::now);
        let left = JOIN_WAIT.saturating_sub(asked.elapsed());
        match self.thread.stop_within(left) {
            None => tracing::warn!(
                "the Kafka publisher did not stop within {JOIN_WAIT:?} (a broker call in progress); \
                 shutdown goes on, publishing resumes from the checkpoint at the next start"
            ),
            Some(Err(_)) => tracing::error!("the Kafka publisher thread panicked"),
            Some(Ok(_)) => {}
        }
    }
}

impl Drop for Publisher {
    /// Bounded, as [`Publisher::stop`].
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Run {
    stream: Stream,
    cfg: KafkaConfig,
    data_dir: PathBuf,
    checkpoint: PathBuf,
    stats: Arc<Stats>,
    clock: Clock,
    stop: crate::thread::StopFlag,
    /// Tests: raise a fatal producer error once this many are acknowledged.
    fatal_after: Option<u64>,
}

/// What recovery found: where to read from, and per partition the last
/// position already in the topic.
struct Recovered {
    from: Pos,
    last: HashMap<i32, Pos>,
    partitions: i32,
    /// The partition count the checkpoint was written with.
    checkpoint_partitions: Option<i32>,
}

/// The start of the error that makes the publisher refuse (state "refused").
const REFUSED: &str = "publishing refused";

/// Makes librdkafka raise a fatal error on `producer`, as a broker fencing
/// the idempotent producer would (tests, through
/// `engine::Options::kafka_fatal_after`).
fn inject_fatal_error(producer: &BaseProducer<Reports>) {
    let reason = c"injected by engine::Options::kafka_fatal_after";
    // SAFETY: the handle is live for the call (the producer is borrowed) and
    // librdkafka copies the reason string.
    unsafe {
        rdkafka::bindings::rd_kafka_test_fatal_error(
            producer.client().native_ptr(),
            rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
            reason.as_ptr(),
        );
    }
}

impl Run {
    /// The producer's fatal error, if it has one (counted: the caller ends
    /// the session and the producer is recreated).
    fn fatal(&self, producer: &BaseProducer<Reports>) -> Option<String> {
        let (code, reason) = producer.client().fatal_error()?;
        self.stream
            .stats(&self.stats)
            .recreated
            .fetch_add(1, Ordering::Relaxed);
        Some(format!(
            "fatal producer error {code:?}: {reason}; recreating the producer and resuming from the topic"
        ))
    }

    fn set_state(&self, s: KafkaState) {
        self.stream.stats(&self.stats).set_state(s);
    }

    fn error(&self, e: String) {
        self.stream
            .stats(&self.stats)
            .errors
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!("kafka: {}", crate::util::log_text(&e, 300));
        *self
            .stats
            .kafka
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(e);
    }

    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.cfg.brokers)
            .set("client.id", &self.cfg.client_id);
        if !self.has_property("reconnect.backoff.max.ms") {
            c.set("reconnect.backoff.max.ms", RECONNECT_BACKOFF_MAX_MS);
        }
        for (k, v) in &self.cfg.properties {
            c.set(k, v);
        }
        c
    }

    fn has_property(&self, name: &str) -> bool {
        self.cfg.properties.iter().any(|(k, _)| k == name)
    }

    fn producer(&self) -> Result<BaseProducer<Reports>, String> {
        let mut c = self.client_config();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "0")
            .set("max.in.flight.requests.per.connection", "5");
        if !self.has_property("linger.ms") {
            c.set("linger.ms", "5");
        }
        c.create_with_context(Reports::default())
            .map_err(|e| format!("cannot create the producer: {e}"))
    }

    /// Reads the topic's partition count and each partition's last position.
    fn recover(&self) -> Result<Recovered, String> {
        let mut c = self.client_config();
        c.set("group.id", format!("{}-recovery", self.cfg.client_id))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false");
        let consumer: BaseConsumer = c
            .create()
            .map_err(|e| format!("cannot create the recovery consumer: {e}"))?;
        let md = consumer
            .fetch_metadata(Some(&self.cfg.topic), BROKER_WAIT)
            .map_err(|e| format!("brokers {}: {e}", self.cfg.brokers))?;
        let partitions = md
            .topics()
            .first()
            .filter(|t| t.error().is_none())
            .map_or(0, |t| t.partitions().len() as i32);
        if partitions == 0 {
            return Err(format!(
                "topic {:?} does not exist on {} (create it; tickcap does not)",
                self.cfg.topic, self.cfg.brokers
            ));
        }
        let mut last = HashMap::new();
        for p in 0..partitions {
            let (lo, hi) = consumer
                .fetch_watermarks(&self.cfg.topic, p, BROKER_WAIT)
                .map_err(|e| format!("watermarks of partition {p}: {e}"))?;
            if hi <= lo {
                continue;
            }
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&self.cfg.topic, p, Offset::Offset(hi - 1))
                .map_err(|e| e.to_string())?;
            consumer.assign(&tpl).map_err(|e| e.to_string())?;
            let deadline = Instant::now() + Duration::from_secs(10);
            let pos = loop {
                if Instant::now() > deadline {
                    return Err(format!("partition {p}: its last record did not arrive"));
                }
                match consumer.poll(Duration::from_millis(200)) {
                    Some(Ok(m)) if m.partition() == p => {
                        break m.headers().and_then(|h| {
                            h.iter()
                                .find(|x| x.key == POSITION_HEADER)
                                .and_then(|x| x.value)
                                .and_then(|v| std::str::from_utf8(v).ok())
                                .and_then(Pos::parse)
                        })
                    }
                    Some(Err(e)) => return Err(format!("partition {p}: {e}")),
                    _ => {}
                }
            };
            if let Some(pos) = pos {
                last.insert(p, pos);
            }
        }
        let checkpoint = read_checkpoint(&self.checkpoint);
        let checkpoint_partitions = checkpoint.and_then(|c| c.partitions);
        // A checkpoint written from acknowledgements (it has the partition
        // count) is where to go on. Before any acknowledgement there is
        // only the first start's day (or nothing, from an older version):
        // then also from the day of the oldest partition's last record
        // (lines before it in any partition are in the topic), whichever
        // is earlier; with neither, today's file.
        let from = match checkpoint {
            Some(c) if c.partitions.is_some() => c.pos,
            hint => {
                let topic = last.values().map(|p| Pos::day_start(p.day)).min();
                match (hint.map(|c| c.pos), topic) {
                    (Some(a), Some(b)) => a.min(b),
                    (Some(a), None) => a,
                    (None, Some(b)) => b,
                    (None, None) => self.resume_point(),
                }
            }
        };
        Ok(Recovered {
            from,
            last,
            partitions,
            checkpoint_partitions,
        })
    }

    /// Where publishing resumes when no broker has told us: the checkpoint,
    /// else the start of the newest day on disk.
    fn resume_point(&self) -> Pos {
        read_checkpoint(&self.checkpoint).map_or_else(
            || {
                Pos::day_start(
                    journal::days_in(&self.data_dir, self.stream.family())
                        .last()
                        .map_or(
                            crate::time::LocalDate {
                                year: 1970,
                                month: 1,
                                day: 1,
                            },
                            |s| s.id.day,
                        ),
                )
            },
            |c| c.pos,
        )
    }

    fn run(&mut self) {
        self.set_state(KafkaState::Starting);
        // The first start: publishing begins with the day the service
        // started on (its file is open already), wherever the broker is.
        // Written now, so a broker that first answers after midnight does
        // not make the publisher begin with the newer day.
        if read_checkpoint(&self.checkpoint).is_none() {
            let from = self.resume_point();
            if let Err(e) = write_checkpoint_text(&self.checkpoint, &format!("{from}\n")) {
                self.error(format!("{}: {e}", self.checkpoint.display()));
            }
        }
        // What waits on disk is known before the first session's recovery
        // (which waits on the brokers): a starting publisher never reports
        // a lag of 0 over a backlog.
        {
            let mut b = Backlog::new(&self.data_dir, self.stream.family(), self.resume_point());
            let n = b.update(5_000_000);
            self.stream
                .stats(&self.stats)
                .lag_ticks
                .store(n, Ordering::Relaxed);
        }
        let mut backoff = Duration::from_millis(200);
        // What waits on disk while no session runs (the broker is down),
        // counted from the resume point; recounted only when a session
        // moved the checkpoint.
        let mut waiting: Option<(Pos, Backlog)> = None;
        while !self.stop.is_set() {
            match self.session() {
                Ok(()) => break,
                Err(e) => {
                    let refused = e.starts_with(REFUSED);
                    self.error(e);
                    let from = self.resume_point();
                    if waiting.as_ref().is_none_or(|(p, _)| *p != from) {
                        waiting = Some((
                            from,
                            Backlog::new(&self.data_dir, self.stream.family(), from),
                        ));
                    }
                    let Some((_, b)) = waiting.as_mut() else {
                        continue;
                    };
                    // The backlog is known before the state says "down".
                    let n = b.update(5_000_000);
                    self.stream
                        .stats(&self.stats)
                        .lag_ticks
                        .store(n, Ordering::Relaxed);
                    self.set_state(if refused {
                        KafkaState::Refused
                    } else {
                        KafkaState::Unreachable
                    });
                    let until = Instant::now() + backoff;
                    while Instant::now() < until && !self.stop.is_set() {
                        let n = b.update(200_000);
                        self.stream
                            .stats(&self.stats)
                            .lag_ticks
                            .store(n, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    backoff = (backoff * 2).min(SESSION_RETRY_MAX);
                }
            }
        }
        self.set_state(KafkaState::Stopped);
    }

    /// One producer's life: recover, then publish until stopped (`Ok`) or
    /// until the producer cannot go on (`Err`: recreated by the caller).
    fn session(&mut self) -> Result<(), String> {
        let rec = self.recover()?;
        if let Some(n) = rec.checkpoint_partitions.filter(|n| *n != rec.partitions) {
            return Err(format!(
                "{REFUSED}: topic {:?} now has {} partitions; the checkpoint was published with {n}. \
                 Records are placed by token % partitions, so going on would put lines after the \
                 checkpoint on other partitions than the lines before them and break exactly-once. \
                 Restore {n} partitions, or publish to a new topic (and remove {})",
                self.cfg.topic,
                rec.partitions,
                self.checkpoint.display()
            ));
        }
        let producer = self.producer()?;
        let k = self.stream.stats(&self.stats);
        k.partitions.store(rec.partitions as u64, Ordering::Relaxed);
        tracing::info!(
            "kafka: publishing to {} ({} partitions) from {} ({} partitions hold records already)",
            self.cfg.topic,
            rec.partitions,
            rec.from,
            rec.last.len()
        );
        let mut journal = Journal::of(&self.data_dir, self.stream.family(), rec.from);
        let mut backlog = Backlog::new(&self.data_dir, self.stream.family(), rec.from);
        // Lines the journal handed out (sent, skipped or not ticks).
        let mut consumed = 0u64;
        let skip_until = rec.last.values().max().copied();
        let mut in_flight: BTreeSet<Pos> = BTreeSet::new();
        let mut times: HashMap<Pos, i64> = HashMap::new();
        let mut acked_to = rec.from;
        let mut last_checkpoint = Instant::now();
        let mut last_ack = Instant::now();
        self.set_state(KafkaState::Publishing);
        let mut hist = crate::stats::new_histogram();
        let mut last_publish = Instant::now();
        let mut last_partition_check = Instant::now();
        loop {
            let stopping = self.stop.is_set();
            producer.poll(Duration::ZERO);
            let done = std::mem::take(
                &mut *producer
                    .context()
                    .done
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            );
            for (pos, r) in done {
                match r {
                    Ok(()) => {
                        in_flight.remove(&pos);
                        if let Some(ts) = times.remove(&pos).filter(|t| *t > 0) {
                            let _ = hist.record((self.clock.now_micros() - ts).max(1) as u64);
                        }
                        k.acked.fetch_add(1, Ordering::Relaxed);
                        last_ack = Instant::now();
                        k.last_ack_micros
                            .store(self.clock.now_micros(), Ordering::Relaxed);
                    }
                    // With no delivery timeout, a failed delivery means the
                    // producer cannot go on (a fatal error fails everything in
                    // flight): name the fatal error when there is one.
                    Err(e) => {
                        return Err(self
                            .fatal(&producer)
                            .unwrap_or_else(|| format!("delivery of {pos} failed: {e}")))
                    }
                }
            }
            if let Some(e) = self.fatal(&producer) {
                return Err(e);
            }
            if let Some(n) = self.fatal_after {
                if k.acked.load(Ordering::Relaxed) >= n {
                    self.fatal_after = None;
                    inject_fatal_error(&producer);
                }
            }
            // The acknowledged frontier: everything before it is in the topic.
            let frontier = in_flight
                .first()
                .copied()
                .or_else(|| journal.position())
                .unwrap_or(acked_to);
            if frontier > acked_to {
                acked_to = frontier;
            }
            if last_checkpoint.elapsed() >= Duration::from_millis(200) || stopping {
                if let Err(e) = write_checkpoint(&self.checkpoint, acked_to, rec.partitions) {
                    self.error(format!("{}: {e}", self.checkpoint.display()));
                }
                *k.position.lock().unwrap_or_else(PoisonError::into_inner) = acked_to.to_string();
                last_checkpoint = Instant::now();
            }
            // The partition count can change under a running publisher too.
            if last_partition_check.elapsed() >= PARTITION_CHECK {
                last_partition_check = Instant::now();
                let now_partitions = producer
                    .client()
                    .fetch_metadata(Some(&self.cfg.topic), Duration::from_secs(2))
                    .ok()
                    .and_then(|md| {
                        md.topics()
                            .first()
                            .filter(|t| t.error().is_none())
                            .map(|t| t.partitions().len() as i32)
                    });
                if let Some(n) = now_partitions.filter(|n| *n != rec.partitions) {
                    return Err(format!(
                        "{REFUSED}: topic {:?} went from {} to {n} partitions while publishing. \
                         Records are placed by token % partitions, so going on would put an \
                         instrument's later lines on another partition than its earlier ones. \
                         Restore {} partitions, or publish to a new topic (and remove {})",
                        self.cfg.topic,
                        rec.partitions,
                        rec.partitions,
                        self.checkpoint.display()
                    ));
                }
            }
            if last_publish.elapsed() >= Duration::from_secs(1) {
                crate::stats::publish(&self.stats.latency.receive_to_acked_us, &hist);
                last_publish = Instant::now();
            }
            k.in_flight.store(in_flight.len() as u64, Ordering::Relaxed);
            // Lines on disk past the acknowledged frontier: those not yet
            // read plus those in flight.
            let on_disk = backlog.update(200_000);
            k.lag_ticks.store(
                on_disk.saturating_sub(consumed) + in_flight.len() as u64,
                Ordering::Relaxed,
            );
            k.oldest_unacked_micros.store(
                in_flight
                    .first()
                    .and_then(|p| times.get(p))
                    .copied()
                    .unwrap_or(0),
                Ordering::Relaxed,
            );
            let unreachable = !in_flight.is_empty() && last_ack.elapsed() > Duration::from_secs(10);
            self.set_state(if unreachable {
                KafkaState::Unreachable
            } else {
                KafkaState::Publishing
            });
            if stopping {
                // What is in flight gets up to 2 s to be acknowledged, and
                // only while acknowledgements come (a dead broker costs
                // nothing): the rest is resent from the checkpoint at the
                // next start, and recovery skips what did arrive.
                let deadline = Instant::now() + STOP_WAIT;
                let mut last_ack = Instant::now();
                while !in_flight.is_empty()
                    && Instant::now() < deadline
                    && last_ack.elapsed() < Duration::from_millis(500)
                {
                    producer.poll(Duration::from_millis(50));
                    for (pos, r) in std::mem::take(
                        &mut *producer
                            .context()
                            .done
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner),
                    ) {
                        if r.is_ok() {
                            in_flight.remove(&pos);
                            k.acked.fetch_add(1, Ordering::Relaxed);
                            last_ack = Instant::now();
                        }
                    }
                }
                let end = in_flight.first().copied().or_else(|| journal.position());
                if let Some(p) = end {
                    let _ = write_checkpoint(&self.checkpoint, p.max(acked_to), rec.partitions);
                }
                return Ok(());
            }
            // Send what the journal has, up to the in-flight cap.
            let mut sent_now = 0;
            while in_flight.len() < MAX_IN_FLIGHT && sent_now < 10_000 {
                let Some((pos, line)) = journal.next_line() else {
                    break;
                };
                consumed += 1;
                let Some((token, conn)) = token_and_conn(line).or_else(|| {
                    // An order update without an instrument: partition 0.
                    (self.stream != Stream::Ticks).then(|| (0, conn_of(line)))
                }) else {
                    continue; // not a tick line (the writer writes only ticks)
                };
                let partition = (token % rec.partitions as u32) as i32;
                if skip_until.is_some_and(|s| pos <= s)
                    && rec.last.get(&partition).is_some_and(|last| pos <= *last)
                {
                    k.skipped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let key = token.to_string();
                let position = pos.to_string();
                let conn_text = conn.to_string();
                let headers = OwnedHeaders::new()
                    .insert(Header {
                        key: POSITION_HEADER,
                        value: Some(position.as_str()),
                    })
                    .insert(Header {
                        key: CONNECTION_HEADER,
                        value: Some(conn_text.as_str()),
                    });
                let ts = line_micros(line).unwrap_or(0);
                let mut record = BaseRecord::with_opaque_to(&self.cfg.topic, Box::new(pos))
                    .partition(partition)
                    .key(key.as_str())
                    .payload(line)
                    .headers(headers);
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((e, r)) => {
                            if e.rdkafka_error_code()
                                == Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                            {
                                producer.poll(Duration::from_millis(10));
                                record = r;
                                continue;
                            }
                            return Err(self
                                .fatal(&producer)
                                .unwrap_or_else(|| format!("send failed: {e}")));
                        }
                    }
                }
                in_flight.insert(pos);
                times.insert(pos, ts);
                k.sent.fetch_add(1, Ordering::Relaxed);
                sent_now += 1;
            }
            if sent_now == 0 {
                producer.poll(Duration::from_millis(10));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn librdkafka_checks_the_properties_and_has_every_compression_codec() {
        let cfg = |k: &str, v: &str| KafkaConfig {
            brokers: "127.0.0.1:1".into(),
            topic: "t".into(),
            orders_topic: None,
            candles_topic: None,
            client_id: "tickcap".into(),
            properties: vec![(k.into(), v.into())],
        };
        for codec in ["zstd", "lz4", "snappy", "gzip"] {
            assert_eq!(
                check_config(&cfg("compression.type", codec)),
                Ok(()),
                "{codec}"
            );
        }
        let e = check_config(&cfg("linger.mss", "5")).unwrap_err();
        assert!(e.contains("linger.mss"), "{e}");
        assert!(check_config(&cfg("compression.type", "brotli")).is_err());
    }

    #[test]
    fn a_line_names_its_token_connection_and_time() {
        let l = br#"{"tradable":true,"mode":"ltp","instrument_token":408065,"last_price":1.5,"timestamp":"2026-11-25T10:00:00.000001+05:30","connection_id":2}"#;
        assert_eq!(token_and_conn(l), Some((408_065, 2)));
        assert_eq!(
            line_micros(l),
            crate::time::parse_timestamp("2026-11-25T10:00:00.000001+05:30")
        );
        assert_eq!(token_and_conn(b"{}"), None);
    }

    #[test]
    fn the_checkpoint_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = checkpoint_path(dir.path());
        let pos = Pos::parse("2026-11-25.2:12345").unwrap();
        write_checkpoint(&p, pos, 6).unwrap();
        assert_eq!(
            read_checkpoint(&p),
            Some(Checkpoint {
                pos,
                partitions: Some(6)
            })
        );
        // A checkpoint from before segments and partition counts still reads.
        std::fs::write(&p, "2026-11-25:7\n").unwrap();
        assert_eq!(
            read_checkpoint(&p),
            Some(Checkpoint {
                pos: Pos::parse("2026-11-25:7").unwrap(),
                partitions: None
            })
        );
        assert_eq!(Pos::parse("x:1"), None);
    }
}
