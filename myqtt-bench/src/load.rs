//! The publish/subscribe load: connections, publishers, subscribers, the
//! measurement window and the [`LoadReport`].
//!
//! Design: every payload starts with the time it was published
//! (nanoseconds since the run's base instant, in this process), the
//! publisher's index and its sequence number. A subscriber reads the three
//! back, so latency, losses, duplicates and reordering are measured without
//! any shared table. Messages stamped before the warm-up ended are
//! delivered but not counted, on both sides, so the published and delivered
//! counts cover the same messages.
//!
//! Publishers at full speed are tasks on the client's runtime (no thread
//! hop per message). At a fixed rate one plain thread paces every
//! publisher: tokio's timer ticks in milliseconds, which would send a
//! 10k msg/s load in bursts of ten; a thread sleep is accurate to the
//! kernel's timer slack (about 50 µs).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use myqtt_core::Ctx;
use myqtt_core::client::{ClientError, Conn, ConnectOptions, PublishHandle, PublishMessage};
use myqtt_core::codec::QoS;
use myqtt_core::topic::TopicName;
use tokio::sync::{Notify, oneshot, watch};

use crate::args::{Args, Engine, MIN_SIZE, Shape, Stop};
use crate::error::BenchError;
use crate::histogram::Histogram;
use crate::sys;

mod raw;

/// How long a setup step (connect, subscribe) or a single publish may wait.
pub(crate) const STEP_TIMEOUT: Duration = Duration::from_secs(15);
/// Messages a full-speed publisher sends before letting the runtime's other
/// tasks (the connection tasks, the subscribers) run.
const YIELD_EVERY: u32 = 32;
/// Messages a subscriber takes from its queue in one go.
const TAKE_BATCH: usize = 256;
/// Received messages a subscriber's client may hold before dropping QoS 0
/// ones (see `ConnectOptions::receive_queue_limit`).
const RECEIVE_QUEUE: usize = 100_000;
/// How long a QoS 0 publisher waits on a full window without any delivery
/// before it writes its outstanding messages off as lost and goes on.
const STALL_QOS0: Duration = Duration::from_secs(1);

/// What a load run measured.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Messages published after the warm-up.
    pub published: u64,
    /// Publishes that failed (an error or a failure reason code in the
    /// acknowledgement, or no acknowledgement in time).
    pub publish_errors: u64,
    /// The first publish error, as text.
    pub first_error: Option<String>,
    /// Deliveries the subscriptions call for: every published message times
    /// the subscribers of its topic.
    pub expected: u64,
    /// Deliveries received (of messages published after the warm-up).
    pub deliveries: u64,
    /// Expected deliveries that did not come.
    pub lost: u64,
    /// Deliveries of a message the subscriber already had.
    pub duplicates: u64,
    /// Deliveries older than one the subscriber already had from the same
    /// publisher.
    pub out_of_order: u64,
    /// Messages missing from a subscriber's sequence while later ones from
    /// the same publisher arrived (part of `lost`; the rest of `lost` is
    /// the tail that never came).
    pub holes: u64,
    /// Received messages whose payload was not a bench stamp.
    pub malformed: u64,
    /// Times a full-speed publisher's window stayed full with no delivery
    /// for a whole stall period (QoS 0: 1 s, then its outstanding messages
    /// are written off; QoS 1/2: `--drain`, then the publisher stops with an
    /// error).
    pub window_stalls: u64,
    /// QoS 0 messages the subscribers' clients dropped because their
    /// receive queue was full (client-side losses, part of `lost`).
    pub client_dropped: u64,
    /// Seconds from the end of the warm-up to the last publish.
    pub publish_secs: f64,
    /// Seconds from the end of the warm-up to the last delivery.
    pub delivery_secs: f64,
    /// Publish-to-delivery latency in nanoseconds.
    pub latency: Histogram,
    /// This process's CPU use over the measurement, in percent of one core.
    pub bench_cpu: Option<f64>,
    /// The broker's CPU use over the measurement (with `--broker-pid`).
    pub broker_cpu: Option<f64>,
}

impl LoadReport {
    /// Published messages per second.
    pub fn publish_rate(&self) -> f64 {
        rate(self.published, self.publish_secs)
    }

    /// Deliveries per second.
    pub fn delivery_rate(&self) -> f64 {
        rate(self.deliveries, self.delivery_secs)
    }
}

#[allow(clippy::cast_precision_loss)]
fn rate(n: u64, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

/// The timing plan every publisher and subscriber shares.
#[derive(Debug)]
pub(crate) struct Plan {
    base: Instant,
    /// Messages stamped at or after this count.
    measure_start: u64,
    /// Full-speed publishers stop at this stamp (duration runs).
    end: Option<u64>,
    /// Or after this many measured messages each (count runs).
    count: Option<u64>,
    qos: QoS,
    size: usize,
    drain: Duration,
    /// Messages per publisher published and not yet delivered to every
    /// subscriber of its topic, at most (full-speed publishers); 0: no
    /// limit.
    window: u64,
}

impl Plan {
    /// Nanoseconds since the base instant.
    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn instant(&self, stamp: u64) -> Instant {
        self.base + Duration::from_nanos(stamp)
    }

    /// Seconds from the end of the warm-up to `stamp`.
    fn secs(&self, stamp: u64) -> f64 {
        Duration::from_nanos(stamp.saturating_sub(self.measure_start)).as_secs_f64()
    }
}

/// Counters the subscribers update and the run watches.
#[derive(Debug)]
pub(crate) struct Progress {
    /// Measured deliveries (stamped after the warm-up).
    deliveries: AtomicU64,
    /// Stamp of the last measured delivery.
    last_delivery: AtomicU64,
    /// Per publisher, for the end-to-end window.
    publishers: Vec<Window>,
}

impl Progress {
    fn new(publishers: usize, fan_out: usize) -> Self {
        Self {
            deliveries: AtomicU64::new(0),
            last_delivery: AtomicU64::new(0),
            publishers: (0..publishers).map(|_| Window::new(fan_out)).collect(),
        }
    }
}

/// One publisher's end-to-end window: per subscriber of its topic, how many
/// of its messages that subscriber has received (warm-up included); and the
/// count at which to wake the publisher when it waits.
///
/// Design: a message is outstanding until its slowest subscriber has it, so
/// no subscriber ever lags more than the window behind its publisher (a
/// broker's per-client queue then never overflows because of the bench).
/// The publisher stores the count it waits for in `wake_at`, then re-checks;
/// the subscriber that brings the slowest count to it swaps `wake_at` back
/// to `NOBODY` and notifies. `notify_one` keeps a permit when the publisher
/// is not yet waiting, so no wake-up is lost between the two.
#[derive(Debug)]
pub(crate) struct Window {
    delivered: Vec<AtomicU64>,
    wake_at: AtomicU64,
    notify: Notify,
}

/// `wake_at` when the publisher is not waiting.
const NOBODY: u64 = u64::MAX;

impl Window {
    fn new(subscribers: usize) -> Self {
        Self {
            delivered: (0..subscribers).map(|_| AtomicU64::new(0)).collect(),
            wake_at: AtomicU64::new(NOBODY),
            notify: Notify::new(),
        }
    }

    /// Messages every subscriber has received.
    fn slowest(&self) -> u64 {
        self.delivered
            .iter()
            .map(|d| d.load(Ordering::SeqCst))
            .min()
            .unwrap_or(0)
    }

    /// Counts a delivery to the subscriber in `slot`; wakes the publisher
    /// if it waits for this one.
    fn delivered(&self, slot: usize) {
        if let Some(d) = self.delivered.get(slot) {
            d.fetch_add(1, Ordering::SeqCst);
        }
        let wake_at = self.wake_at.load(Ordering::SeqCst);
        if wake_at != NOBODY
            && self.slowest() >= wake_at
            && self.wake_at.swap(NOBODY, Ordering::SeqCst) != NOBODY
        {
            self.notify.notify_one();
        }
    }
}

/// The payload: stamp, publisher index, sequence number, zero padding.
fn payload(size: usize, stamp: u64, publisher: u32, seq: u64) -> Bytes {
    let mut b = BytesMut::zeroed(size.max(MIN_SIZE));
    write_stamp(&mut b, stamp, publisher, seq);
    b.truncate(size);
    b.freeze()
}

/// Writes the stamp, publisher index and sequence number at the start of
/// a payload (at least [`MIN_SIZE`] bytes; a shorter one is left as is).
fn write_stamp(p: &mut [u8], stamp: u64, publisher: u32, seq: u64) {
    let Some(mut dst) = p.get_mut(..MIN_SIZE) else {
        return;
    };
    dst.put_u64_le(stamp);
    dst.put_u32_le(publisher);
    dst.put_u64_le(seq);
}

/// The stamp, publisher index and sequence number of a payload.
fn read_payload(p: &[u8]) -> Option<(u64, u32, u64)> {
    let stamp = u64::from_le_bytes(p.get(0..8)?.try_into().ok()?);
    let publisher = u32::from_le_bytes(p.get(8..12)?.try_into().ok()?);
    let seq = u64::from_le_bytes(p.get(12..20)?.try_into().ok()?);
    Some((stamp, publisher, seq))
}

/// What one publisher has done, whatever drives its connection (the
/// client engine or the raw one): its sequence, its end-to-end window and
/// its errors.
#[derive(Debug)]
pub(crate) struct Flow {
    index: u32,
    seq: u64,
    measured: u64,
    errors: u64,
    first_error: Option<String>,
    /// Stamp of the last publish.
    last: u64,
    pub(crate) stopped: bool,
    /// Deliveries given up on after a stall: they no longer hold the
    /// window.
    written_off: u64,
    /// Times the window stalled.
    stalls: u64,
}

/// What a publisher did, once finished.
#[derive(Debug)]
pub(crate) struct Published {
    measured: u64,
    errors: u64,
    first_error: Option<String>,
    last: u64,
    stalls: u64,
}

impl Flow {
    pub(crate) fn new(index: u32) -> Self {
        Self {
            index,
            seq: 0,
            measured: 0,
            errors: 0,
            first_error: None,
            last: 0,
            stopped: false,
            written_off: 0,
            stalls: 0,
        }
    }

    /// The publisher's index (in every payload it sends).
    pub(crate) fn index(&self) -> u32 {
        self.index
    }

    /// Messages that may be published now without the window overflowing
    /// (`u64::MAX` without a window).
    pub(crate) fn room(&self, plan: &Plan, w: &Window) -> u64 {
        if plan.window == 0 {
            return u64::MAX;
        }
        let owed = self.seq.saturating_sub(self.written_off);
        plan.window.saturating_sub(owed.saturating_sub(w.slowest()))
    }

    /// Waits while the window is full: until its slowest subscriber has
    /// half of it, or the publishing time is over.
    ///
    /// At QoS 0 a lost message would hold the window for ever: when the
    /// slowest subscriber received nothing for [`STALL_QOS0`], what is
    /// outstanding is written off. At QoS 1/2 nothing may be lost, and
    /// writing off would only let a starved subscriber fall further behind
    /// (past a broker's queue limit): the publisher waits, and gives up
    /// with an error only after `--drain` without any delivery.
    pub(crate) async fn wait_for_window(&mut self, plan: &Plan, w: &Window) {
        if plan.window == 0 {
            return;
        }
        let stall = if plan.qos == QoS::AtMostOnce {
            STALL_QOS0
        } else {
            plan.drain
        };
        loop {
            let owed = self.seq.saturating_sub(self.written_off);
            let slowest = w.slowest();
            if owed.saturating_sub(slowest) < plan.window {
                return;
            }
            let mut wait = stall;
            if let Some(end) = plan.end {
                match end.checked_sub(plan.now()) {
                    Some(left) if left > 0 => wait = wait.min(Duration::from_nanos(left)),
                    _ => return,
                }
            }
            let target = owed - plan.window / 2;
            w.wake_at.store(target, Ordering::SeqCst);
            if w.slowest() >= target {
                w.wake_at.store(NOBODY, Ordering::SeqCst);
                continue;
            }
            if tokio::time::timeout(wait, w.notify.notified())
                .await
                .is_ok()
            {
                continue;
            }
            w.wake_at.store(NOBODY, Ordering::SeqCst);
            let now_slowest = w.slowest();
            if now_slowest != slowest || plan.end.is_some_and(|end| plan.now() >= end) {
                continue;
            }
            self.stalls += 1;
            if plan.qos == QoS::AtMostOnce {
                self.written_off += owed - now_slowest;
            } else {
                self.error(format!(
                    "no delivery for {:.1} s with {} messages outstanding",
                    stall.as_secs_f64(),
                    owed - now_slowest
                ));
                self.stopped = true;
            }
            return;
        }
    }

    /// True once this publisher has published all it should.
    pub(crate) fn done(&self, plan: &Plan, now: u64) -> bool {
        self.stopped
            || plan.end.is_some_and(|end| now >= end)
            || plan.count.is_some_and(|n| self.measured >= n)
    }

    /// Counts the next message, stamped `now`; its sequence number.
    pub(crate) fn next(&mut self, plan: &Plan, now: u64) -> u64 {
        let seq = self.seq;
        self.seq += 1;
        if now >= plan.measure_start {
            self.measured += 1;
        }
        self.last = now;
        seq
    }

    pub(crate) fn error(&mut self, e: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }

    pub(crate) fn published(self) -> Published {
        Published {
            measured: self.measured,
            errors: self.errors,
            first_error: self.first_error,
            last: self.last,
            stalls: self.stalls,
        }
    }
}

/// One publishing client connection and what it has done.
struct Publisher {
    conn: Conn,
    topic: TopicName,
    /// QoS 1/2 publishes not yet acknowledged, oldest first.
    handles: VecDeque<PublishHandle>,
    flow: Flow,
}

impl Publisher {
    fn new(conn: Conn, topic: TopicName, index: u32) -> Self {
        Self {
            conn,
            topic,
            handles: VecDeque::new(),
            flow: Flow::new(index),
        }
    }

    /// The next message, stamped `now`.
    fn message(&mut self, plan: &Plan, now: u64) -> PublishMessage {
        let seq = self.flow.next(plan, now);
        let p = payload(plan.size, now, self.flow.index, seq);
        PublishMessage::with_topic(self.topic.clone(), p).qos(plan.qos)
    }

    /// Records the outcome of a publish call.
    fn sent(&mut self, r: Result<PublishHandle, ClientError>) {
        match r {
            Ok(h) if h.qos() != QoS::AtMostOnce => {
                self.handles.push_back(h);
                self.reap();
            }
            Ok(_) => {}
            Err(e) => {
                // The connection is gone: nothing more can be published.
                self.flow.error(format!("publish: {e}"));
                self.flow.stopped = true;
            }
        }
    }

    /// Checks the acknowledgements that have come, oldest first.
    fn reap(&mut self) {
        while let Some(r) = self.handles.front().and_then(PublishHandle::try_result) {
            self.handles.pop_front();
            self.outcome(r);
        }
    }

    fn outcome(&mut self, r: Result<myqtt_core::client::PublishOutcome, ClientError>) {
        match r {
            // Below 0x80, "no matching subscribers" (0x10) included.
            Ok(o) if o.reason_code.is_success() => {}
            Ok(o) => self
                .flow
                .error(format!("acknowledged with {:?}", o.reason_code)),
            Err(e) => self.flow.error(format!("acknowledgement: {e}")),
        }
    }

    /// Waits for the remaining acknowledgements, up to `timeout` in all.
    async fn finish(mut self, timeout: Duration) -> Published {
        let deadline = tokio::time::Instant::now() + timeout;
        while let Some(h) = self.handles.pop_front() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let r = h.wait_async(left).await;
            self.outcome(r);
        }
        self.flow.published()
    }

    /// [`finish`](Self::finish), blocking this (non-runtime) thread.
    fn finish_blocking(mut self, timeout: Duration) -> Published {
        let deadline = Instant::now() + timeout;
        while let Some(h) = self.handles.pop_front() {
            let r = h.wait(deadline.saturating_duration_since(Instant::now()));
            self.outcome(r);
        }
        self.flow.published()
    }
}

/// A full-speed publisher: a task on the runtime.
async fn publish_flat_out(mut p: Publisher, plan: Arc<Plan>, progress: Arc<Progress>) -> Published {
    let mut n = 0u32;
    let window = progress.publishers.get(p.flow.index as usize);
    loop {
        if let Some(w) = window {
            p.flow.wait_for_window(&plan, w).await;
        }
        let now = plan.now();
        if p.flow.done(&plan, now) {
            break;
        }
        let msg = p.message(&plan, now);
        let r = p.conn.publish(msg).await;
        p.sent(r);
        n = n.wrapping_add(1);
        if n.is_multiple_of(YIELD_EVERY) {
            tokio::task::yield_now().await;
        }
    }
    p.finish(plan.drain).await
}

/// Every publisher at a fixed total rate, round robin, from one thread.
fn publish_paced(mut pubs: Vec<Publisher>, plan: &Plan, rate: f64) -> Vec<Published> {
    let interval = 1e9 / rate;
    let start = plan.now();
    let mut k: u64 = 0;
    let mut active = pubs.len();
    while active > 0 {
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let due = start + (k as f64 * interval) as u64;
        let now = plan.now();
        if now < due {
            std::thread::sleep(Duration::from_nanos(due - now));
        }
        let now = plan.now();
        let n = pubs.len() as u64;
        let Some(p) = pubs.get_mut(usize::try_from(k % n).unwrap_or(0)) else {
            break;
        };
        k += 1;
        if p.flow.stopped {
            continue;
        }
        if p.flow.done(plan, now) {
            p.flow.stopped = true;
            active -= 1;
            continue;
        }
        let msg = p.message(plan, now);
        let r = p.conn.publish_blocking(msg, STEP_TIMEOUT);
        p.sent(r);
        if p.flow.stopped {
            active -= 1;
        }
    }
    pubs.into_iter()
        .map(|p| p.finish_blocking(plan.drain))
        .collect()
}

/// What a subscriber received.
#[derive(Debug)]
pub(crate) struct Received {
    latency: Histogram,
    deliveries: u64,
    duplicates: u64,
    out_of_order: u64,
    holes: u64,
    malformed: u64,
    /// Per publisher: the highest sequence number seen, plus one (0: none).
    next_seq: Vec<u64>,
    /// Its counter in the windows of the publishers it hears.
    slot: usize,
}

impl Received {
    pub(crate) fn new(slot: usize, publishers: usize) -> Self {
        Self {
            latency: Histogram::new(),
            deliveries: 0,
            duplicates: 0,
            out_of_order: 0,
            holes: 0,
            malformed: 0,
            next_seq: vec![0; publishers],
            slot,
        }
    }

    /// Accounts for one delivered payload, received at `now`.
    pub(crate) fn take(&mut self, payload: &[u8], now: u64, plan: &Plan, progress: &Progress) {
        let Some((stamp, publisher, seq)) = read_payload(payload) else {
            self.malformed += 1;
            return;
        };
        let i = publisher as usize;
        let measured = stamp >= plan.measure_start;
        let (Some(next), Some(w)) = (self.next_seq.get_mut(i), progress.publishers.get(i)) else {
            self.malformed += 1;
            return;
        };
        w.delivered(self.slot);
        if seq + 1 == *next {
            self.duplicates += u64::from(measured);
        } else if seq < *next {
            self.out_of_order += u64::from(measured);
        } else {
            if *next > 0 && measured {
                self.holes += seq - *next;
            }
            *next = seq + 1;
        }
        if measured {
            self.deliveries += 1;
            self.latency.record(now.saturating_sub(stamp));
            progress.deliveries.fetch_add(1, Ordering::Relaxed);
            progress.last_delivery.fetch_max(now, Ordering::Relaxed);
        }
    }
}

/// One subscriber: takes messages until told to stop.
async fn subscribe_loop(
    conn: Conn,
    slot: usize,
    publishers: usize,
    plan: Arc<Plan>,
    progress: Arc<Progress>,
    mut stop: watch::Receiver<bool>,
) -> Received {
    let mut r = Received::new(slot, publishers);
    loop {
        let first = tokio::select! {
            biased;
            _ = stop.changed() => break,
            m = conn.next() => m,
        };
        let Ok(first) = first else { break };
        let mut msg = Some(first);
        let mut taken = 0;
        while let Some(m) = msg {
            r.take(m.payload(), plan.now(), &plan, &progress);
            taken += 1;
            msg = if taken < TAKE_BATCH {
                conn.try_next().ok().flatten()
            } else {
                None
            };
        }
    }
    r
}

fn connect_options(args: &Args, client_id: String) -> ConnectOptions {
    ConnectOptions::new(args.host.clone(), args.port)
        .protocol(args.protocol)
        .client_id(client_id)
        .keep_alive(60)
        .connect_timeout(STEP_TIMEOUT)
        .max_inflight(args.inflight)
        .receive_queue_limit(RECEIVE_QUEUE)
}

/// Opens `n` connections at once; ids `{prefix}{i}`.
async fn connect_all(
    ctx: &Ctx,
    args: &Args,
    prefix: &str,
    n: usize,
) -> Result<Vec<Conn>, BenchError> {
    let mut pending = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("{prefix}{i}");
        let c = Conn::start_connect(ctx, connect_options(args, id.clone()))
            .map_err(|e| BenchError::client(format!("connect {id}"), e))?;
        pending.push((id, c));
    }
    let mut conns = Vec::with_capacity(n);
    for (id, c) in pending {
        let conn = tokio::time::timeout(STEP_TIMEOUT, c)
            .await
            .map_err(|_| BenchError::client(format!("connect {id}"), ClientError::Timeout))?
            .map_err(|e| {
                BenchError::client(format!("connect {id} to {}:{}", args.host, args.port), e)
            })?;
        conns.push(conn);
    }
    Ok(conns)
}

fn topic(prefix: &str, name: &str) -> Result<TopicName, BenchError> {
    TopicName::new(format!("{prefix}/{name}"))
        .map_err(|e| BenchError::Setup(format!("topic {prefix}/{name}: {e}")))
}

/// CPU seconds of this process and of the broker, and when they were read.
pub(crate) struct CpuSample {
    at: Instant,
    me: Option<f64>,
    broker: Option<f64>,
}

impl CpuSample {
    pub(crate) fn take(broker: Option<u32>) -> Self {
        Self {
            at: Instant::now(),
            me: sys::cpu_seconds(std::process::id()),
            broker: broker.and_then(sys::cpu_seconds),
        }
    }

    /// Percent of one core each used between `self` and `later`.
    fn percent(&self, later: &Self) -> (Option<f64>, Option<f64>) {
        let wall = later.at.duration_since(self.at).as_secs_f64();
        let pct = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if wall > 0.0 => Some((b - a) / wall * 100.0),
            _ => None,
        };
        (pct(self.me, later.me), pct(self.broker, later.broker))
    }
}

/// Runs the load described by `args` against the broker, with the engine
/// it names.
pub fn run(args: &Args) -> Result<LoadReport, BenchError> {
    match args.engine {
        Engine::Raw => raw::run(args),
        Engine::Client => run_client(args),
    }
}

/// [`run`] with the myqtt client engine.
fn run_client(args: &Args) -> Result<LoadReport, BenchError> {
    let ctx = Ctx::builder()
        .worker_threads(args.threads)
        .shutdown_grace(Duration::from_secs(2))
        .build()?;
    let r = ctx.block_on(run_on(&ctx, args));
    ctx.exit();
    r
}

/// What both engines share before connecting: the topics, the subscribers
/// of each publisher's topic and each publisher's window.
pub(crate) struct Layout {
    /// Topic of publisher `i` (one shared topic unless 1to1).
    pub(crate) topics: Vec<TopicName>,
    /// Subscribers of each publisher's topic (its window's counters).
    pub(crate) fan_out: usize,
    /// Messages per publisher published and not yet delivered, at most.
    pub(crate) window: u64,
}

impl Layout {
    pub(crate) fn new(args: &Args) -> Result<Self, BenchError> {
        let prefix = format!("myqtt-bench/{}", std::process::id());
        let topics: Vec<TopicName> = match args.shape {
            Shape::OneToOne => (0..args.publishers)
                .map(|i| topic(&prefix, &i.to_string()))
                .collect::<Result<_, _>>()?,
            Shape::ManyToMany | Shape::OneToMany => vec![topic(&prefix, "all")?],
        };
        // Every subscriber receives each message of the topics it is on.
        let fan_out = match args.shape {
            Shape::OneToOne => 1,
            Shape::ManyToMany | Shape::OneToMany => args.subscribers,
        };
        // `--window` bounds how far each subscriber lags in all: a
        // subscriber of every publisher (NtoN) gives each publisher a share
        // of it.
        let window = match (args.window, args.shape) {
            (0, _) => 0,
            (w, Shape::ManyToMany) => (w / args.publishers as u64).max(1),
            (w, Shape::OneToOne | Shape::OneToMany) => w,
        };
        Ok(Self {
            topics,
            fan_out,
            window,
        })
    }

    /// The topic subscriber or publisher `i` uses.
    pub(crate) fn topic(&self, i: usize) -> Option<&TopicName> {
        self.topics.get(i).or(self.topics.first())
    }

    /// Subscriber `j`'s counter in the windows of the publishers it hears.
    pub(crate) fn slot(args: &Args, j: usize) -> usize {
        if args.shape == Shape::OneToOne { 0 } else { j }
    }

    /// The timing plan, starting now (once every connection is made).
    pub(crate) fn plan(&self, args: &Args) -> Plan {
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let measure_start = ns(args.warmup);
        let (end, count) = match args.stop {
            Stop::Duration(d) => (Some(measure_start + ns(d)), None),
            Stop::Count(n) => (None, Some(n)),
        };
        Plan {
            base: Instant::now(),
            measure_start,
            end,
            count,
            qos: args.qos,
            size: args.size,
            drain: args.drain,
            window: self.window,
        }
    }
}

/// The publishing half of a measurement, the same for both engines: waits
/// for the warm-up to end, for the publishers (`published`), then for the
/// expected deliveries while they keep coming (`--drain`). The subscribers
/// are still running when it returns; [`complete`] takes their counts.
pub(crate) async fn measure(
    args: &Args,
    plan: &Plan,
    progress: &Progress,
    fan_out: usize,
    published: impl std::future::Future<Output = Option<Vec<Published>>>,
) -> Result<(LoadReport, CpuSample), BenchError> {
    // The measurement starts when the warm-up ends.
    tokio::time::sleep_until(plan.instant(plan.measure_start).into()).await;
    let cpu_start = CpuSample::take(args.broker_pid);
    let published = published
        .await
        .ok_or_else(|| BenchError::Setup("a publisher task failed".into()))?;
    let mut report = LoadReport::default();
    for p in &published {
        report.published += p.measured;
        report.publish_errors += p.errors;
        report.window_stalls += p.stalls;
        if report.first_error.is_none() {
            report.first_error.clone_from(&p.first_error);
        }
    }
    let last_publish = published
        .iter()
        .map(|p| p.last)
        .max()
        .unwrap_or(plan.measure_start);
    report.expected = report.published * fan_out as u64;
    report.publish_secs = plan.secs(last_publish);

    // Drain: wait for the expected deliveries while they keep coming.
    let mut seen = progress.deliveries.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    while seen < report.expected && last_change.elapsed() < args.drain {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let now_seen = progress.deliveries.load(Ordering::Relaxed);
        if now_seen != seen {
            seen = now_seen;
            last_change = Instant::now();
        }
    }
    Ok((report, cpu_start))
}

/// Ends a measurement: the CPU times since `cpu_start` (read before the
/// subscribers stop) and what the subscribers counted.
pub(crate) fn complete(
    report: &mut LoadReport,
    received: impl IntoIterator<Item = Received>,
    plan: &Plan,
    progress: &Progress,
    cpu: (&CpuSample, &CpuSample),
) {
    for r in received {
        report.deliveries += r.deliveries;
        report.duplicates += r.duplicates;
        report.out_of_order += r.out_of_order;
        report.holes += r.holes;
        report.malformed += r.malformed;
        report.latency.merge(&r.latency);
    }
    report.lost = report
        .expected
        .saturating_sub(report.deliveries - report.duplicates);
    report.delivery_secs = plan.secs(progress.last_delivery.load(Ordering::Relaxed));
    (report.bench_cpu, report.broker_cpu) = cpu.0.percent(cpu.1);
}

#[allow(clippy::too_many_lines)] // one run, in order: connect, subscribe, publish, drain, count
async fn run_on(ctx: &Ctx, args: &Args) -> Result<LoadReport, BenchError> {
    let pid = std::process::id();
    let layout = Layout::new(args)?;

    let subs = connect_all(ctx, args, &format!("mqb-{pid}-s"), args.subscribers).await?;
    let mut subacks = Vec::with_capacity(subs.len());
    for (i, s) in subs.iter().enumerate() {
        let t = layout.topic(i).map_or("", |t| t.as_str());
        subacks.push((t.to_string(), s.subscribe(t, args.qos)));
    }
    for (t, p) in subacks {
        let o = p
            .wait_async(STEP_TIMEOUT)
            .await
            .map_err(|e| BenchError::client(format!("subscribe {t}"), e))?;
        if o.granted_qos().first().copied().flatten() != Some(args.qos) {
            return Err(BenchError::Setup(format!(
                "subscribe {t} at QoS {}: the broker answered {:?}",
                args.qos.as_u8(),
                o.reason_codes
            )));
        }
    }
    let pub_conns = connect_all(ctx, args, &format!("mqb-{pid}-p"), args.publishers).await?;

    let plan = Arc::new(layout.plan(args));
    let progress = Arc::new(Progress::new(args.publishers, layout.fan_out));
    let (stop_tx, stop_rx) = watch::channel(false);

    let sub_tasks: Vec<_> = subs
        .iter()
        .enumerate()
        .map(|(j, c)| {
            ctx.spawn(subscribe_loop(
                c.clone(),
                Layout::slot(args, j),
                args.publishers,
                Arc::clone(&plan),
                Arc::clone(&progress),
                stop_rx.clone(),
            ))
        })
        .collect();
    let publishers: Vec<Publisher> = pub_conns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let t = layout.topic(i).cloned();
            (c.clone(), t, u32::try_from(i).unwrap_or(u32::MAX))
        })
        .filter_map(|(c, t, i)| t.map(|t| Publisher::new(c, t, i)))
        .collect();

    let (done_tx, done_rx) = oneshot::channel::<Vec<Published>>();
    if args.rate > 0.0 {
        let plan = Arc::clone(&plan);
        let rate = args.rate;
        std::thread::Builder::new()
            .name("myqtt-bench-pacer".into())
            .spawn(move || {
                let _ = done_tx.send(publish_paced(publishers, &plan, rate));
            })
            .map_err(|e| BenchError::Setup(format!("cannot start the pacing thread: {e}")))?;
    } else {
        let tasks: Vec<_> = publishers
            .into_iter()
            .map(|p| {
                ctx.spawn(publish_flat_out(
                    p,
                    Arc::clone(&plan),
                    Arc::clone(&progress),
                ))
            })
            .collect();
        ctx.spawn(async move {
            let mut all = Vec::with_capacity(tasks.len());
            for t in tasks {
                if let Ok(p) = t.await {
                    all.push(p);
                }
            }
            let _ = done_tx.send(all);
        });
    }

    let (mut report, cpu_start) = measure(args, &plan, &progress, layout.fan_out, async {
        done_rx.await.ok()
    })
    .await?;
    let cpu_end = CpuSample::take(args.broker_pid);
    let _ = stop_tx.send(true);
    let mut received = Vec::with_capacity(sub_tasks.len());
    for t in sub_tasks {
        if let Ok(r) = t.await {
            received.push(r);
        }
    }
    complete(
        &mut report,
        received,
        &plan,
        &progress,
        (&cpu_start, &cpu_end),
    );
    report.client_dropped = subs.iter().map(Conn::dropped_messages).sum();

    let closing: Vec<_> = subs.iter().chain(&pub_conns).map(Conn::close).collect();
    for c in closing {
        let _ = c.wait_async(Duration::from_secs(2)).await;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_carries_its_stamp_publisher_and_sequence() {
        let p = payload(64, 123_456_789, 7, 42);
        assert_eq!(p.len(), 64);
        assert_eq!(read_payload(&p), Some((123_456_789, 7, 42)));
    }

    #[test]
    fn a_payload_too_short_for_a_stamp_is_not_read() {
        assert_eq!(read_payload(&[0; 19]), None);
    }

    #[test]
    fn rates_over_no_time_are_zero() {
        assert!(rate(10, 0.0).abs() < f64::EPSILON);
        assert!((rate(10, 2.0) - 5.0).abs() < f64::EPSILON);
    }
}
