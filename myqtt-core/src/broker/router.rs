//! The router: who gets which message. The subscription trie answers
//! "which subscriptions match this topic", the retained tree "which
//! retained messages match this filter"; the router turns matches into one
//! delivery per client and queues it without waiting.
//!
// Design: the trie sits behind a `RwLock`: publishers (many, concurrent)
// take the read lock for one walk plus one short mailbox lock per target;
// subscribe and unsubscribe take the write lock for one insert or remove.
// Nothing awaits while a lock is held.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use super::registry::{Delivery, Refused, Routed, SessionHandle};
use crate::codec::{QoS, SubscriptionOptions};
use crate::topic::{Match, RetainedTree, SubscriptionTrie, TopicFilter, TopicName};

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

/// What the trie stores per subscription.
#[derive(Debug)]
pub(crate) struct SubEntry {
    /// The subscriber's session (its mailbox).
    pub(crate) session: Arc<SessionHandle>,
    /// Options, with the granted QoS.
    pub(crate) options: SubscriptionOptions,
    /// MQTT 5 subscription identifier.
    pub(crate) id: Option<u32>,
}

/// One target of a message being routed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    key: u64,
    entry: &'a SubEntry,
    qos: QoS,
    retain: bool,
    /// A shared-subscription pick: never merged with the client's other
    /// subscriptions.
    shared: bool,
}

/// A reusable buffer of targets, kept by a connection between publishes so
/// routing allocates nothing in the steady state.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    targets: Vec<Target<'static>>,
    ids: Vec<u32>,
    /// Deliveries to persistent sessions held back by [`Router::route`]
    /// with `defer`, queued once their store batch is submitted.
    pub(crate) deferred: Vec<(Arc<SessionHandle>, Delivery)>,
    /// Refused deliveries, reported once the trie lock is released.
    drops: Vec<(Arc<SessionHandle>, super::hooks::DropReason)>,
    /// What the last topic routed through this scratch matched.
    cache: Option<Box<RouteCache>>,
}

/// One plain (not shared) subscription a topic matched, as [`RouteCache`]
/// keeps it.
#[derive(Debug)]
struct Cached {
    key: u64,
    session: Arc<SessionHandle>,
    /// The granted QoS.
    qos: QoS,
    retain_as_published: bool,
    id: Option<u32>,
}

/// The subscriptions the last topic routed by a connection matched, in
/// client order: its next message to the same topic skips the trie walk
/// while no subscription changed anywhere.
///
// Design: publishers mostly publish to the same topics again and again, and
// the walk (a hashed lookup per level) was the largest cost of routing a
// message to one subscriber. The trie's generation, bumped under its write
// lock by every change, says when the matches may have changed; a topic
// with a shared-subscription match is not cached (each message picks a
// member anew). The kept topic is an own copy, so the cache never pins a
// read buffer; the kept session handles stay alive until the next miss.
#[derive(Debug)]
struct RouteCache {
    topic: TopicName,
    origin: Option<u64>,
    generation: u64,
    subs: Vec<Cached>,
}

impl Scratch {
    /// The own copy of `topic` kept from the last message routed, if it is
    /// the same topic.
    pub(crate) fn known_topic(&self, topic: &TopicName) -> Option<&TopicName> {
        self.cache
            .as_deref()
            .map(|c| &c.topic)
            .filter(|t| *t == topic)
    }
}

impl RouteCache {
    fn new(topic: &TopicName) -> Self {
        Self {
            topic: own_topic(topic),
            origin: None,
            generation: 0,
            subs: Vec::new(),
        }
    }

    /// True if it holds what `topic` matches for a publisher `origin` while
    /// the trie is at `generation`.
    fn hits(&self, topic: &TopicName, origin: Option<u64>, generation: u64) -> bool {
        self.generation == generation && self.origin == origin && self.topic == *topic
    }

    /// Keeps the plain subscriptions of `targets` (sorted by client).
    fn refill(
        &mut self,
        topic: &TopicName,
        origin: Option<u64>,
        generation: u64,
        targets: &[Target<'_>],
    ) {
        if self.topic != *topic {
            self.topic = own_topic(topic);
        }
        self.origin = origin;
        self.generation = generation;
        self.subs.clear();
        self.subs.extend(targets.iter().map(|t| Cached {
            key: t.key,
            session: Arc::clone(&t.entry.session),
            qos: t.entry.options.qos,
            retain_as_published: t.entry.options.retain_as_published,
            id: t.entry.id,
        }));
    }

    /// [`Router::route`]'s deliveries, from the kept matches: one per
    /// client, at the highest QoS of its subscriptions, with all their
    /// identifiers.
    fn deliver(
        &self,
        msg: &Arc<Routed>,
        defer: bool,
        scratch: &mut Scratch,
        stats: &mut RouteStats,
    ) {
        let m = &msg.message;
        for group in self.subs.chunk_by(|a, b| a.key == b.key) {
            let Some(first) = group.first() else {
                continue;
            };
            let qos = group
                .iter()
                .map(|t| m.qos.min(t.qos))
                .max()
                .unwrap_or(m.qos);
            // [MQTT-3.3.1-12] (5.0) / [MQTT-3.3.1-9], as in the walk.
            let retain = group.iter().any(|t| m.retain && t.retain_as_published);
            scratch.ids.clear();
            scratch.ids.extend(group.iter().filter_map(|t| t.id));
            deliver(msg, &first.session, qos, retain, defer, scratch, stats);
        }
    }
}

/// An own copy of `topic`, which may point into a read buffer (an inline
/// name does not: it is cloned).
fn own_topic(topic: &TopicName) -> TopicName {
    if topic.is_inline() {
        return topic.clone();
    }
    TopicName::new(crate::ByteStr::from(topic.as_str())).unwrap_or_else(|_| topic.clone())
}

/// Reuses the allocation of an emptied vector for another lifetime.
#[allow(clippy::unnecessary_filter_map)] // the item type changes lifetime
fn recycle<'b>(mut v: Vec<Target<'_>>) -> Vec<Target<'b>> {
    v.clear();
    // In-place collect: same size and alignment, so the buffer is reused.
    v.into_iter().filter_map(|_| None).collect()
}

/// The result of routing one message.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RouteStats {
    /// Clients with a matching subscription.
    pub(crate) matched: usize,
    /// Clients the message was queued for.
    pub(crate) delivered: usize,
    /// Clients that matched but whose mailbox refused it.
    pub(crate) dropped: usize,
}

/// A retained message and when it was stored.
pub(crate) type RetainedEntry = Arc<Routed>;

/// Subscriptions and retained messages of one broker.
#[derive(Debug, Default)]
pub(crate) struct Router {
    subs: RwLock<SubscriptionTrie<u64, SubEntry>>,
    retained: RwLock<RetainedTree<RetainedEntry>>,
    /// Retained messages with a Message Expiry Interval (changed under the
    /// `retained` write lock): the periodic sweep has nothing to do, and
    /// takes no lock, while it is 0.
    expiring: AtomicUsize,
    /// Bumped under the `subs` write lock by every change to the
    /// subscriptions (see [`RouteCache`]).
    generation: AtomicU64,
}

/// True if the message has a Message Expiry Interval.
fn expires(m: &Routed) -> bool {
    m.message.properties.message_expiry_interval.is_some()
}

impl Router {
    /// Adds or replaces the subscription of `session` to `filter`; true if
    /// it existed before [MQTT-3.8.4-3].
    pub(crate) fn subscribe(
        &self,
        filter: &TopicFilter,
        session: &Arc<SessionHandle>,
        options: SubscriptionOptions,
        id: Option<u32>,
    ) -> bool {
        let entry = SubEntry {
            session: Arc::clone(session),
            options,
            id,
        };
        let mut subs = write(&self.subs);
        self.generation.fetch_add(1, Ordering::Relaxed);
        subs.insert(filter, session.key, entry).is_some()
    }

    /// Removes the subscription; true if it existed.
    pub(crate) fn unsubscribe(&self, filter: &TopicFilter, key: u64) -> bool {
        let mut subs = write(&self.subs);
        self.generation.fetch_add(1, Ordering::Relaxed);
        subs.remove(filter, key).is_some()
    }

    /// Removes several subscriptions of one session under one lock.
    pub(crate) fn unsubscribe_all<'a>(
        &self,
        filters: impl IntoIterator<Item = &'a TopicFilter>,
        key: u64,
    ) {
        let mut subs = write(&self.subs);
        self.generation.fetch_add(1, Ordering::Relaxed);
        for f in filters {
            subs.remove(f, key);
        }
    }

    /// The number of subscriptions.
    pub(crate) fn subscription_count(&self) -> usize {
        read(&self.subs).len()
    }

    /// Stores, replaces or clears the retained message of its topic
    /// [MQTT-3.3.1-5], [MQTT-3.3.1-6] (5.0) / [MQTT-3.3.1-10],
    /// [MQTT-3.3.1-11] (3.1.1).
    pub(crate) fn retain(&self, msg: &Arc<Routed>) {
        let topic = msg.message.topic.clone();
        let mut tree = write(&self.retained);
        let old = if msg.message.payload.is_empty() {
            tree.remove(&topic)
        } else {
            if expires(msg) {
                self.expiring.fetch_add(1, Ordering::Relaxed);
            }
            tree.insert(topic, Arc::clone(msg))
        };
        if old.is_some_and(|m| expires(&m)) {
            self.expiring.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The retained messages matching `filter` that have not expired at
    /// `now`; expired ones are removed.
    pub(crate) fn retained_for(&self, filter: &TopicFilter, now: Instant) -> Vec<Arc<Routed>> {
        let mut found = Vec::new();
        let mut expired: Vec<TopicName> = Vec::new();
        read(&self.retained).for_each_match(filter, |topic, msg| {
            if msg.remaining_expiry(now).is_ok() {
                found.push(Arc::clone(msg));
            } else {
                expired.push(topic.clone());
            }
        });
        if !expired.is_empty() {
            let mut tree = write(&self.retained);
            for t in &expired {
                // Re-check: a new message may have replaced it meanwhile.
                if tree
                    .get(t)
                    .is_some_and(|m| m.remaining_expiry(now).is_err())
                    && tree.remove(t).is_some()
                {
                    self.expiring.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
        found
    }

    /// The number of retained messages.
    pub(crate) fn retained_count(&self) -> usize {
        read(&self.retained).len()
    }

    /// Removes expired retained messages. Without messages that can expire
    /// it takes no lock; otherwise it looks under the read lock and takes
    /// the write lock only when something has expired.
    pub(crate) fn sweep_retained(&self, now: Instant) {
        if self.expiring.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut any = false;
        read(&self.retained).for_each(|_, m| any |= m.remaining_expiry(now).is_err());
        if !any {
            return;
        }
        let mut tree = write(&self.retained);
        let mut removed = 0;
        tree.retain(|_, m| {
            let keep = m.remaining_expiry(now).is_ok();
            removed += usize::from(!keep);
            keep
        });
        self.expiring.fetch_sub(removed, Ordering::Relaxed);
    }

    /// Queues `msg` for every client with a matching subscription: one copy
    /// per client at the highest granted QoS of its matching subscriptions,
    /// with all their subscription identifiers (MQTT 5.0 §3.3.4); one member
    /// per matching share group (MQTT 5.0 §4.8.2). `origin` is the
    /// publisher's session key, skipped by its No Local subscriptions
    /// [MQTT-3.8.3-3].
    ///
    /// `on_drop` is called for each client whose mailbox refused the
    /// message (full, or the session ended), after the subscription trie is
    /// unlocked: it may run hooks, which may publish or block.
    pub(crate) fn route(
        &self,
        msg: &Arc<Routed>,
        origin: Option<u64>,
        scratch: &mut Scratch,
        defer: bool,
        mut on_drop: impl FnMut(&SessionHandle, super::hooks::DropReason),
    ) -> RouteStats {
        let m = &msg.message;
        let trie = read(&self.subs);
        // Stable while the read lock is held: writers bump it under theirs.
        let generation = self.generation.load(Ordering::Relaxed);
        let mut stats = RouteStats::default();
        let mut cache = scratch.cache.take();
        if let Some(c) = cache.as_deref()
            && c.hits(&m.topic, origin, generation)
        {
            c.deliver(msg, defer, scratch, &mut stats);
            scratch.cache = cache;
            drop(trie);
            for (session, why) in scratch.drops.drain(..) {
                on_drop(&session, why);
            }
            return stats;
        }
        let mut targets: Vec<Target<'_>> = recycle(std::mem::take(&mut scratch.targets));
        let mut any_shared = false;
        trie.for_each_match(&m.topic, |found| match found {
            Match::Subscriber { key, value, .. } => {
                if value.options.no_local && Some(key) == origin {
                    return;
                }
                targets.push(Target {
                    key,
                    entry: value,
                    qos: m.qos.min(value.options.qos),
                    // [MQTT-3.3.1-12] (5.0) retain as published; 3.1.1
                    // subscribers always get RETAIN 0 [MQTT-3.3.1-9].
                    retain: m.retain && value.options.retain_as_published,
                    shared: false,
                });
            }
            Match::Shared { group, .. } => {
                any_shared = true;
                // In turn: the first member with a live connection and room
                // in its mailbox, else the first with room (its session
                // queues it), else the first (which drops it). A full member
                // does not lose the message while another has room.
                let mut first = None;
                let mut queued = None;
                let mut pick = None;
                for (key, value) in group.round_robin() {
                    first.get_or_insert((key, value));
                    let qos = m.qos.min(value.options.qos);
                    if !value.session.has_room(qos) {
                        continue;
                    }
                    if value.session.is_online() {
                        pick = Some((key, value));
                        break;
                    }
                    queued.get_or_insert((key, value));
                }
                let pick = pick.or(queued).or(first);
                if let Some((key, value)) = pick {
                    targets.push(Target {
                        key,
                        entry: value,
                        qos: m.qos.min(value.options.qos),
                        retain: m.retain && value.options.retain_as_published,
                        shared: true,
                    });
                }
            }
        });
        if targets.len() > 1 {
            targets.sort_unstable_by_key(|t| (t.key, t.shared));
        }
        // One delivery per client and plain subscriptions (merged), one per
        // shared-subscription pick.
        for group in targets.chunk_by(|a, b| a.key == b.key && !a.shared && !b.shared) {
            let Some(first) = group.first() else {
                continue;
            };
            let qos = group.iter().map(|t| t.qos).max().unwrap_or(first.qos);
            let retain = group.iter().any(|t| t.retain);
            scratch.ids.clear();
            scratch.ids.extend(group.iter().filter_map(|t| t.entry.id));
            deliver(
                msg,
                &first.entry.session,
                qos,
                retain,
                defer,
                scratch,
                &mut stats,
            );
        }
        if !any_shared {
            cache
                .get_or_insert_with(|| Box::new(RouteCache::new(&m.topic)))
                .refill(&m.topic, origin, generation, &targets);
            scratch.cache = cache;
        }
        scratch.targets = recycle(targets);
        drop(trie);
        for (session, why) in scratch.drops.drain(..) {
            on_drop(&session, why);
        }
        stats
    }
}

/// Queues one delivery of `msg` for `session` (deferred for a persistent
/// session when `defer`), with the subscription identifiers in
/// `scratch.ids`; counts it in `stats`.
fn deliver(
    msg: &Arc<Routed>,
    session: &Arc<SessionHandle>,
    qos: QoS,
    retain: bool,
    defer: bool,
    scratch: &mut Scratch,
    stats: &mut RouteStats,
) {
    let delivery = Delivery {
        msg: Arc::clone(msg),
        qos,
        retain,
        sub_ids: if scratch.ids.is_empty() {
            Vec::new()
        } else {
            scratch.ids.clone()
        },
        stored: None,
    };
    stats.matched += 1;
    if defer && qos != QoS::AtMostOnce && session.is_persistent() {
        stats.delivered += 1;
        scratch.deferred.push((Arc::clone(session), delivery));
        return;
    }
    match session.push(delivery) {
        Ok(()) => stats.delivered += 1,
        Err(Refused::Skipped) => {}
        Err(Refused::Dropped(why)) => {
            stats.dropped += 1;
            scratch.drops.push((Arc::clone(session), why));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::hooks::Message;
    use crate::codec::PublishProperties;
    use std::time::Duration;

    fn routed(topic: &str, expiry: Option<u32>) -> Arc<Routed> {
        Arc::new(Routed {
            message: Message {
                topic: TopicName::new(topic).unwrap(),
                payload: bytes::Bytes::from_static(b"x"),
                qos: QoS::AtMostOnce,
                retain: true,
                properties: PublishProperties {
                    message_expiry_interval: expiry,
                    ..PublishProperties::default()
                }
                .into(),
            },
            created: Instant::now(),
        })
    }

    /// Runs a sweep on another thread while this one holds the retained
    /// tree's read lock; true if it finished (took no write lock).
    fn sweep_finishes_under_a_reader(router: &Arc<Router>, now: Instant) -> bool {
        let guard = read(&router.retained);
        let (tx, rx) = std::sync::mpsc::channel();
        let r = Arc::clone(router);
        let t = std::thread::spawn(move || {
            r.sweep_retained(now);
            let _ = tx.send(());
        });
        let done = rx.recv_timeout(Duration::from_secs(2)).is_ok();
        drop(guard);
        t.join().unwrap();
        done
    }

    /// A QoS 1 message to `topic` (queued even for offline sessions).
    fn qos1(topic: &str) -> Arc<Routed> {
        Arc::new(Routed {
            message: Message {
                topic: TopicName::new(topic).unwrap(),
                payload: bytes::Bytes::from_static(b"x"),
                qos: QoS::AtLeastOnce,
                retain: false,
                properties: PublishProperties::default().into(),
            },
            created: Instant::now(),
        })
    }

    fn session(key: u64) -> Arc<SessionHandle> {
        Arc::new(SessionHandle::new(key, format!("c{key}").into(), 100))
    }

    fn options(qos: QoS) -> SubscriptionOptions {
        SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        }
    }

    fn queued(s: &SessionHandle) -> usize {
        crate::broker::registry::lock(&s.mailbox).queue.len()
    }

    #[test]
    fn repeated_topics_see_every_subscription_change_made_between_them() {
        let router = Router::default();
        let mut scratch = Scratch::default();
        let (a, b) = (session(1), session(2));
        let route = |scratch: &mut Scratch| {
            router
                .route(&qos1("s/1"), Some(9), scratch, false, |_, _| {})
                .delivered
        };
        router.subscribe(
            &TopicFilter::new("s/+").unwrap(),
            &a,
            options(QoS::AtLeastOnce),
            None,
        );
        assert_eq!(route(&mut scratch), 1);
        // From the cache, which must still hold the same matches.
        assert_eq!(route(&mut scratch), 1);
        router.subscribe(
            &TopicFilter::new("s/1").unwrap(),
            &b,
            options(QoS::AtLeastOnce),
            None,
        );
        assert_eq!(route(&mut scratch), 2);
        router.unsubscribe(&TopicFilter::new("s/+").unwrap(), a.key);
        assert_eq!(route(&mut scratch), 1);
        assert_eq!((queued(&a), queued(&b)), (3, 2));
        // A second subscription of the same client still makes one delivery
        // [MQTT-3.3.4-2] (5.0), at the highest QoS, cache or not.
        router.subscribe(
            &TopicFilter::new("#").unwrap(),
            &b,
            options(QoS::AtMostOnce),
            None,
        );
        assert_eq!(route(&mut scratch), 1);
        assert_eq!(route(&mut scratch), 1);
        let mb = crate::broker::registry::lock(&b.mailbox);
        assert!(mb.queue.iter().all(|d| d.qos == QoS::AtLeastOnce));
    }

    #[test]
    fn the_cached_topic_is_an_own_copy_of_the_read_buffer() {
        let router = Router::default();
        let mut scratch = Scratch::default();
        let a = session(1);
        router.subscribe(
            &TopicFilter::new("t").unwrap(),
            &a,
            options(QoS::AtLeastOnce),
            None,
        );
        let read = bytes::Bytes::from_static(b"t...");
        let topic = TopicName::new(crate::ByteStr::from_utf8(read.slice(0..1)).unwrap()).unwrap();
        let mut msg = qos1("t");
        Arc::get_mut(&mut msg).unwrap().message.topic = topic.clone();
        router.route(&msg, None, &mut scratch, false, |_, _| {});
        let kept = scratch.known_topic(&topic).unwrap();
        assert!(!read.as_ptr_range().contains(&kept.as_str().as_ptr()));
        assert!(scratch.known_topic(&TopicName::new("u").unwrap()).is_none());
    }

    #[test]
    fn shared_subscriptions_keep_taking_turns_when_a_topic_repeats() {
        // MQTT 5.0 §4.8.2: each message goes to one member of the group.
        let router = Router::default();
        let mut scratch = Scratch::default();
        let (a, b) = (session(1), session(2));
        let shared = TopicFilter::new("$share/g/s").unwrap();
        router.subscribe(&shared, &a, options(QoS::AtLeastOnce), None);
        router.subscribe(&shared, &b, options(QoS::AtLeastOnce), None);
        for _ in 0..4 {
            router.route(&qos1("s"), None, &mut scratch, false, |_, _| {});
        }
        assert_eq!((queued(&a), queued(&b)), (2, 2));
    }

    #[test]
    fn the_retained_sweep_takes_no_write_lock_when_nothing_can_expire() {
        let router = Arc::new(Router::default());
        for i in 0..100 {
            router.retain(&routed(&format!("r/{i}"), None));
        }
        assert!(sweep_finishes_under_a_reader(&router, Instant::now()));
        // One message with an expiry that has not passed: looked at, not
        // removed, still no write lock.
        router.retain(&routed("e", Some(60)));
        assert!(sweep_finishes_under_a_reader(&router, Instant::now()));
        // Once it has expired, the sweep removes it.
        router.sweep_retained(Instant::now() + Duration::from_secs(61));
        assert_eq!(router.retained_count(), 100);
        assert_eq!(router.expiring.load(Ordering::Relaxed), 0);
        // Replacing or clearing an expiring message keeps the count right.
        router.retain(&routed("e", Some(60)));
        router.retain(&routed("e", None));
        assert_eq!(router.expiring.load(Ordering::Relaxed), 0);
    }
}
