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
//! An idle connection costs one `u64` for all of this, where a tokio
//! `Sleep` took 112 bytes of its task. A scan of 10,000 connections takes
//! about 0.3 ms, at most ten times a second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::registry::{ConnShared, Registry};

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
}

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

    /// Wakes every connection of `registry` whose due time has come at
    /// `now` (clearing it: the connection publishes its next one); returns
    /// how many. Looks at no connection while the earliest due time known
    /// is still ahead.
    pub(crate) fn sweep(&self, registry: &Registry, now: Instant) -> usize {
        let now = self.now_millis(now);
        self.coarse.fetch_max(now, Ordering::Relaxed);
        if self.next.load(Ordering::SeqCst) > now {
            return 0;
        }
        self.next.store(NEVER, Ordering::SeqCst);
        let mut woken = 0;
        registry.for_each_conn(|c| {
            if self.fire(c, now) {
                woken += 1;
            }
        });
        woken
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

    /// A live connection of `registry` for client `id`.
    fn connect(registry: &Registry, id: &str) -> Arc<ConnShared> {
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
            connect(&registry, "early"),
            connect(&registry, "late"),
            connect(&registry, "idle"),
        );
        t.arm(&early.due, 1_000);
        t.arm(&late.due, 3_000);
        let at = |ms| epoch + Duration::from_millis(ms);
        assert_eq!(t.sweep(&registry, at(999)), 0, "nothing is due yet");
        assert!(!woken(&early));
        assert_eq!(t.sweep(&registry, at(1_000)), 1);
        assert!(woken(&early), "due at its time");
        assert!(!woken(&late) && !woken(&idle));
        assert_eq!(
            early.due.load(Ordering::SeqCst),
            NEVER,
            "cleared when fired"
        );
        assert_eq!(t.sweep(&registry, at(1_100)), 0, "fired once");
        assert_eq!(
            t.next.load(Ordering::SeqCst),
            3_000,
            "the next sweep waits for the late one"
        );
        assert_eq!(t.sweep(&registry, at(3_050)), 1);
        assert!(woken(&late));
        assert!(!woken(&idle), "a connection without a time is never woken");
        assert_eq!(t.coarse_millis(), 3_050, "the clock of the last sweep");
        t.sweep(&registry, at(2_000));
        assert_eq!(t.coarse_millis(), 3_050, "never going back");
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
