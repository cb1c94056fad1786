//! The timers of live connections, swept by one broker task instead of a
//! timer per connection: keep-alive expiry and the idle-memory shrink.
//!
//! Each connection publishes when it next wants to be woken (its *due*
//! time, in milliseconds since the broker started) in an atomic of its
//! shared part ([`ConnShared::due`]). The broker's ticker task calls
//! [`Timers::sweep`] every [`SWEEP_EVERY`]; a sweep looks at the
//! connections only when the earliest due time it knows of has come, and
//! wakes each due connection through its control signal. The connection
//! then acts exactly as it did on its own timer: it closes for keep alive
//! when one and a half keep-alive intervals have passed without a packet
//! [MQTT-3.1.2-24] (3.1.1) / [MQTT-3.1.2-22] (5.0), and gives back empty
//! buffers.
//!
//! The rule: a connection is woken no earlier than its due time and at
//! most [`SWEEP_EVERY`] (plus scheduling delay) after it, so a silent
//! client is closed between 1.5× its keep alive and 1.5× its keep alive
//! plus 100 ms. A due time published may be earlier than the connection's
//! current deadline (a packet moved the keep-alive deadline later since):
//! the connection then finds nothing due and publishes the later one. That
//! keeps the hot path at one relaxed load per loop turn: the published
//! time is only ever moved earlier by the connection itself.
//!
//! The sweep walks a list of the live connections (each registers itself
//! once past CONNACK, see [`Timers::register`]), not the sessions: stored
//! sessions whose clients are offline, however many, cost it nothing. An
//! ended connection leaves the list at the next sweep (or when the list
//! has doubled since it was last cleaned), found by being the list's
//! last holder.
//!
//! An idle connection costs one `u64` and one list entry (8 to 16 bytes)
//! for all of this, where a tokio `Sleep` took 112 bytes of its task. A
//! scan of 10,000 connections takes about 0.1 ms, at most ten times a
//! second.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::registry::{ConnShared, lock};

/// How often the broker looks for due connections: the resolution of the
/// keep-alive expiry and of the idle-memory shrink.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_millis(100);

/// A due time that never comes.
pub(crate) const NEVER: u64 = u64::MAX;

/// The broker-wide clock and earliest due time of the connection timers.
#[derive(Debug)]
pub(crate) struct Timers {
    /// Due times count milliseconds from here.
    epoch: Instant,
    /// No connection is due before this (milliseconds since `epoch`): a
    /// sweep before it looks at no connection.
    next: AtomicU64,
    /// The time of the last sweep (milliseconds since `epoch`): a clock
    /// for what needs no better than [`SWEEP_EVERY`], read without a
    /// system call.
    coarse: AtomicU64,
    /// The live connections.
    conns: std::sync::Mutex<Conns>,
}

/// The connections a sweep looks at.
#[derive(Debug, Default)]
struct Conns {
    list: Vec<Arc<ConnShared>>,
    /// The length at which [`Timers::register`] drops ended connections
    /// (about twice the length left by the last time it did).
    clean_at: usize,
    /// When a sweep last went through the list (milliseconds since the
    /// epoch).
    walked: u64,
}

/// A sweep goes through the list at least this often (milliseconds), due
/// connections or not, so ended ones are let go within about a second.
const WALK_EVERY_MS: u64 = 1000;

/// [`Conns::clean_at`] never falls below this.
const CLEAN_AT_LEAST: usize = 64;

impl Default for Timers {
    fn default() -> Self {
        Self::new(Instant::now())
    }
}

impl Timers {
    /// Timers counting from `epoch`.
    pub(crate) fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            next: AtomicU64::new(NEVER),
            coarse: AtomicU64::new(0),
            conns: std::sync::Mutex::new(Conns {
                list: Vec::new(),
                clean_at: CLEAN_AT_LEAST,
                walked: 0,
            }),
        }
    }

    /// `at` in milliseconds since the epoch, rounded up: a connection is
    /// never woken before the instant it asked for.
    pub(crate) fn due_millis(&self, at: Instant) -> u64 {
        let d = at.saturating_duration_since(self.epoch);
        d.as_secs()
            .saturating_mul(1000)
            .saturating_add(u64::from(d.subsec_nanos()).div_ceil(1_000_000))
    }

    /// `now` in milliseconds since the epoch, rounded down.
    pub(crate) fn now_millis(&self, now: Instant) -> u64 {
        let d = now.saturating_duration_since(self.epoch);
        d.as_secs()
            .saturating_mul(1000)
            .saturating_add(u64::from(d.subsec_millis()))
    }

    /// The time of the last sweep, in milliseconds since the epoch: at
    /// most [`SWEEP_EVERY`] (plus scheduling delay) behind, never ahead.
    pub(crate) fn coarse_millis(&self) -> u64 {
        self.coarse.load(Ordering::Relaxed)
    }

    /// Asks for the connection owning `slot` to be woken at `due`
    /// ([`Self::due_millis`]), if that is earlier than the time it already
    /// asked for (a later one is published when the earlier one fires and
    /// finds nothing due). One relaxed load when nothing changes.
    pub(crate) fn arm(&self, slot: &AtomicU64, due: u64) {
        if due >= slot.load(Ordering::Relaxed) {
            return;
        }
        slot.store(due, Ordering::SeqCst);
        // SeqCst with the sweep's reset of `next` and its loads of the
        // slots: either the sweep sees this due time, or this sees the
        // reset and lowers `next` itself.
        if due < self.next.load(Ordering::SeqCst) {
            self.next.fetch_min(due, Ordering::SeqCst);
        }
    }

    /// Adds a live connection to those the sweeps look at; it leaves once
    /// its task has dropped its handle. Called once per connection, before
    /// it first arms a time.
    pub(crate) fn register(&self, conn: &Arc<ConnShared>) {
        let mut conns = lock(&self.conns);
        if conns.list.len() >= conns.clean_at {
            // Only this list holds an ended connection's handle.
            conns.list.retain(|c| Arc::strong_count(c) > 1);
            conns.clean_at = (conns.list.len() * 2).max(CLEAN_AT_LEAST);
        }
        conns.list.push(Arc::clone(conn));
    }

    /// Wakes every registered connection whose due time has come at `now`
    /// (clearing it: the connection publishes its next one), and drops the
    /// ended ones; returns how many were woken. Looks at no connection
    /// while the earliest due time known is still ahead, unless the list
    /// was last gone through [`WALK_EVERY_MS`] ago.
    pub(crate) fn sweep(&self, now: Instant) -> usize {
        let now = self.now_millis(now);
        self.coarse.fetch_max(now, Ordering::Relaxed);
        let mut conns = lock(&self.conns);
        if self.next.load(Ordering::SeqCst) > now {
            if now.saturating_sub(conns.walked) >= WALK_EVERY_MS {
                conns.walked = now;
                conns.list.retain(|c| Arc::strong_count(c) > 1);
            }
            return 0;
        }
        self.next.store(NEVER, Ordering::SeqCst);
        conns.walked = now;
        let mut woken = 0;
        let mut i = 0;
        while let Some(c) = conns.list.get(i) {
            if Arc::strong_count(c) == 1 {
                // Ended: its task and its session no longer hold it, and
                // nothing can take a new handle from this list's.
                conns.list.swap_remove(i);
                continue;
            }
            if self.fire(c, now) {
                woken += 1;
            }
            i += 1;
        }
        woken
    }

    /// How many connections the sweeps look at (ended ones not dropped
    /// yet included).
    #[cfg(test)]
    fn registered(&self) -> usize {
        lock(&self.conns).list.len()
    }

    /// Wakes `c` if it is due at `now` (milliseconds); else keeps its due
    /// time as a candidate for the next sweep.
    fn fire(&self, c: &ConnShared, now: u64) -> bool {
        let due = c.due.load(Ordering::SeqCst);
        if due > now {
            if due != NEVER {
                self.next.fetch_min(due, Ordering::SeqCst);
            }
            return false;
        }
        match c
            .due
            .compare_exchange(due, NEVER, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => {
                c.notify.notify();
                true
            }
            // The connection published another time meanwhile.
            Err(other) => {
                if other != NEVER {
                    self.next.fetch_min(other, Ordering::SeqCst);
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll, Waker};
    use std::time::{Duration, Instant};

    use super::{NEVER, Timers};
    use crate::ByteStr;
    use crate::broker::hooks::{ClientInfo, Transport};
    use crate::broker::registry::{ConnShared, Registry, SessionHandle, Signal, lock};

    /// A live connection of `registry` for client `id`, registered with
    /// `timers`.
    fn connect(registry: &Registry, timers: &Timers, id: &str) -> Arc<ConnShared> {
        let session = Arc::new(SessionHandle::new(
            registry.next_id(),
            ByteStr::from(id),
            10,
        ));
        let conn = Arc::new(ConnShared {
            info: Arc::new(ClientInfo {
                client_id: ByteStr::from(id),
                username: None,
                peer: ([127, 0, 0, 1], 1).into(),
                local: ([127, 0, 0, 1], 2).into(),
                protocol: crate::codec::ProtocolVersion::V5,
                keep_alive: 1,
                tls: false,
                transport: Transport::Tcp,
                socket: None,
            }),
            control: Mutex::new(None),
            notify: Signal::default(),
            due: AtomicU64::new(NEVER),
        });
        session.attach_locked(&mut lock(&session.mailbox), Arc::clone(&conn));
        assert!(registry.install(None, &session));
        timers.register(&conn);
        conn
    }

    fn woken(c: &ConnShared) -> bool {
        c.notify.poll_wait(&mut Context::from_waker(Waker::noop())) == Poll::Ready(())
    }

    #[test]
    fn a_sweep_wakes_the_due_connections_only_once_and_no_earlier() {
        // [MQTT-3.1.2-24]: the keep-alive close waits for the connection's
        // own deadline, and comes at the first sweep after it.
        let epoch = Instant::now();
        let t = Timers::new(epoch);
        let registry = Registry::default();
        let (early, late, idle) = (
            connect(&registry, &t, "early"),
            connect(&registry, &t, "late"),
            connect(&registry, &t, "idle"),
        );
        t.arm(&early.due, 1_000);
        t.arm(&late.due, 3_000);
        let at = |ms| epoch + Duration::from_millis(ms);
        assert_eq!(t.sweep(at(999)), 0, "nothing is due yet");
        assert!(!woken(&early));
        assert_eq!(t.sweep(at(1_000)), 1);
        assert!(woken(&early), "due at its time");
        assert!(!woken(&late) && !woken(&idle));
        assert_eq!(
            early.due.load(Ordering::SeqCst),
            NEVER,
            "cleared when fired"
        );
        assert_eq!(t.sweep(at(1_100)), 0, "fired once");
        assert_eq!(
            t.next.load(Ordering::SeqCst),
            3_000,
            "the next sweep waits for the late one"
        );
        assert_eq!(t.sweep(at(3_050)), 1);
        assert!(woken(&late));
        assert!(!woken(&idle), "a connection without a time is never woken");
        assert_eq!(t.coarse_millis(), 3_050, "the clock of the last sweep");
        t.sweep(at(2_000));
        assert_eq!(t.coarse_millis(), 3_050, "never going back");
    }

    #[test]
    fn ended_connections_leave_the_list_and_offline_sessions_are_never_in_it() {
        let epoch = Instant::now();
        let t = Timers::new(epoch);
        let registry = Registry::default();
        let at = |ms| epoch + Duration::from_millis(ms);
        let live = connect(&registry, &t, "live");
        let gone = connect(&registry, &t, "gone");
        // A stored session without a connection: never registered.
        let offline = Arc::new(SessionHandle::new(
            registry.next_id(),
            ByteStr::from("offline"),
            10,
        ));
        assert!(registry.install(None, &offline));
        assert_eq!(t.registered(), 2);
        // `gone` ends: its session lets go of it, then its task.
        let session = registry.get("gone").unwrap();
        session.detach_locked(&mut lock(&session.mailbox));
        drop(gone);
        // Nothing due and the list walked less than a second ago: kept.
        assert_eq!(t.sweep(at(500)), 0);
        assert_eq!(t.registered(), 2);
        // A due connection makes the sweep walk the list.
        t.arm(&live.due, 600);
        assert_eq!(t.sweep(at(600)), 1);
        assert!(woken(&live));
        assert_eq!(t.registered(), 1, "the ended one is dropped");
        // And with nothing due, once a second.
        let later = connect(&registry, &t, "later");
        let session = registry.get("later").unwrap();
        session.detach_locked(&mut lock(&session.mailbox));
        drop(later);
        assert_eq!(t.sweep(at(1_500)), 0);
        assert_eq!(t.registered(), 2);
        assert_eq!(t.sweep(at(1_600)), 0);
        assert_eq!(t.registered(), 1);
    }

    #[test]
    fn a_due_time_is_rounded_up_and_the_clock_down() {
        let epoch = Instant::now();
        let t = Timers::new(epoch);
        let at = epoch + Duration::from_micros(1_500);
        assert_eq!(t.due_millis(at), 2);
        assert_eq!(t.now_millis(at), 1);
        assert_eq!(t.due_millis(epoch + Duration::from_millis(7)), 7);
        assert_eq!(t.now_millis(epoch + Duration::from_millis(7)), 7);
    }

    #[test]
    fn arming_keeps_the_earliest_time_and_lowers_the_next_sweep() {
        let epoch = Instant::now();
        let t = Timers::new(epoch);
        let slot = AtomicU64::new(NEVER);
        t.arm(&slot, t.due_millis(epoch + Duration::from_millis(500)));
        assert_eq!(slot.load(Ordering::SeqCst), 500);
        assert_eq!(t.next.load(Ordering::SeqCst), 500);
        // A later time is not published: the earlier one fires first.
        t.arm(&slot, t.due_millis(epoch + Duration::from_millis(900)));
        assert_eq!(slot.load(Ordering::SeqCst), 500);
        t.arm(&slot, t.due_millis(epoch + Duration::from_millis(200)));
        assert_eq!(slot.load(Ordering::SeqCst), 200);
        assert_eq!(t.next.load(Ordering::SeqCst), 200);
    }
}
