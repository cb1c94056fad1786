//! The subscription trie: "which subscriptions match this topic name?"
//!
//! One node per filter level. Each node holds its literal children in a hash
//! map and dedicated `+` and `#` children, so matching a topic costs in
//! proportion to the topic's depth and the number of matches, never to the
//! number of filters stored. The rules it implements (MQTT 3.1.1 and 5.0
//! §4.7):
//!
//! - `+` matches exactly one level, including an empty one [MQTT-4.7.1-3].
//! - `#` matches the remaining levels, any number of them, and also the
//!   parent level: `a/#` matches `a` [MQTT-4.7.1-2].
//! - Empty levels are real levels: `a//b` has three levels, `/a` and `a/`
//!   two each.
//! - A topic name starting with `$` is not matched by a filter whose first
//!   level is `+` or `#` [MQTT-4.7.2-1]; `$SYS/#` and `$SYS/+` do match it.
//! - Shared subscriptions `$share/{group}/{filter}` are matched with their
//!   filter part, and each share group is reported once, with all of its
//!   members, so the broker can deliver to one of them (MQTT 5.0 §4.8.2).

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::walk::{Stack, split_level};
use super::{TopicFilter, TopicName};

/// Inline depth of the matching stack: walks at most this many pending
/// branches deep run without touching the heap.
const INLINE_FRAMES: usize = 32;

/// Subscriber sets switch from a linear scan to a hash index past this size.
const INDEX_THRESHOLD: usize = 16;

/// All subscriptions of a server, keyed by topic filter and subscriber.
///
/// `K` identifies a subscriber (a session key such as a `u64`); `V` is the
/// per-subscription data (subscription options, subscription identifier).
/// A subscriber has at most one subscription per filter string: subscribing
/// again replaces it [MQTT-3.8.4-3]. A plain filter and a shared filter with
/// the same filter part (`a/b` and `$share/g/a/b`) are different
/// subscriptions, and so are two share groups on the same filter.
///
/// ```
/// use myqtt_core::topic::{Match, SubscriptionTrie, TopicFilter, TopicName};
///
/// let mut trie = SubscriptionTrie::new();
/// trie.insert(&TopicFilter::new("sport/+/player1").unwrap(), 1_u64, "qos1");
/// trie.insert(&TopicFilter::new("$share/g/sport/#").unwrap(), 2_u64, "qos0");
///
/// let mut seen = Vec::new();
/// trie.for_each_match(&TopicName::new("sport/tennis/player1").unwrap(), |m| match m {
///     Match::Subscriber { key, .. } => seen.push(key),
///     Match::Shared { group, .. } => seen.extend(group.pick().map(|(key, _)| key)),
/// });
/// seen.sort_unstable();
/// assert_eq!(seen, [1, 2]);
/// ```
pub struct SubscriptionTrie<K, V> {
    root: Node<K, V>,
    len: usize,
}

/// One subscription (or one share group) that matches a topic name, as
/// reported by [`SubscriptionTrie::for_each_match`].
#[derive(Debug)]
pub enum Match<'a, K, V> {
    /// A non-shared subscription: the message goes to `key`.
    Subscriber {
        /// The filter that matched (never a `$share/` filter).
        filter: &'a str,
        /// The subscriber.
        key: K,
        /// The data stored with the subscription.
        value: &'a V,
    },
    /// A share group whose filter matched: the message goes to one member
    /// of the group, not to each (MQTT 5.0 §4.8.2).
    Shared {
        /// The filter part of `$share/{group}/{filter}`.
        filter: &'a str,
        /// The group and all of its members (never empty).
        group: &'a ShareGroup<K, V>,
    },
}

// Manual impls: derived ones would require `V: Clone`.
impl<K: Copy, V> Clone for Match<'_, K, V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K: Copy, V> Copy for Match<'_, K, V> {}

/// The members of one share group on one filter.
///
/// A group is reported by a match as a whole; the broker picks one member
/// per message. [`pick`](Self::pick) and [`round_robin`](Self::round_robin)
/// keep a rotating cursor inside the group for that.
pub struct ShareGroup<K, V> {
    name: Box<str>,
    members: SubscriberSet<K, V>,
    /// Whose turn it is, modulo the member count.
    // Design: an atomic (relaxed) so a match through `&self` can advance it
    // while the trie stays `Sync` for readers behind a `RwLock`. Exact
    // fairness under races does not matter; progress does.
    cursor: AtomicUsize,
}

impl<K: Copy, V> ShareGroup<K, V> {
    /// The share name (the `{group}` of `$share/{group}/{filter}`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The members and their subscription data, in no particular order.
    pub fn members(&self) -> &[(K, V)] {
        self.members.as_slice()
    }

    /// The number of members (at least one in a reported match).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True if the group has no members (never the case in a match).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Picks the member whose turn it is and advances the rotation.
    pub fn pick(&self) -> Option<(K, &V)> {
        self.round_robin().next()
    }

    /// Advances the rotation by one and yields every member once, starting
    /// with the one whose turn it is: the broker takes the first member that
    /// can accept the message (connected, quota left) and skips the rest.
    ///
    /// Removing a member reorders the others, so the rotation is fair only
    /// between changes of membership.
    pub fn round_robin(&self) -> impl Iterator<Item = (K, &V)> + '_ {
        let members = self.members.as_slice();
        let start = match members.len() {
            0 => 0,
            n => self.cursor.fetch_add(1, Ordering::Relaxed) % n,
        };
        let (before, after) = members.split_at(start);
        after.iter().chain(before).map(|(key, value)| (*key, value))
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for ShareGroup<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShareGroup")
            .field("name", &self.name)
            .field("members", &self.members.entries)
            .finish_non_exhaustive()
    }
}

/// The subscribers of one filter (or one share group): a vector scanned
/// linearly while small, indexed by key once large.
struct SubscriberSet<K, V> {
    entries: Vec<(K, V)>,
    /// Position of each key in `entries`, kept only past [`INDEX_THRESHOLD`]
    /// entries so that thousands of clients on one filter stay cheap.
    index: Option<HashMap<K, usize>>,
}

impl<K, V> Default for SubscriberSet<K, V> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            index: None,
        }
    }
}

impl<K, V> SubscriberSet<K, V> {
    fn as_slice(&self) -> &[(K, V)] {
        &self.entries
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<K: Copy + Eq + Hash, V> SubscriberSet<K, V> {
    fn position(&self, key: K) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(&key).copied(),
            None => self.entries.iter().position(|(k, _)| *k == key),
        }
    }

    fn get(&self, key: K) -> Option<&V> {
        let at = self.position(key)?;
        self.entries.get(at).map(|(_, value)| value)
    }

    fn insert(&mut self, key: K, value: V) -> Option<V> {
        if let Some(at) = self.position(key)
            && let Some((_, slot)) = self.entries.get_mut(at)
        {
            return Some(std::mem::replace(slot, value));
        }
        self.entries.push((key, value));
        let at = self.entries.len() - 1;
        match &mut self.index {
            Some(index) => {
                index.insert(key, at);
            }
            None if self.entries.len() > INDEX_THRESHOLD => self.rebuild_index(),
            None => {}
        }
        None
    }

    fn remove(&mut self, key: K) -> Option<V> {
        let at = self.position(key)?;
        if at >= self.entries.len() {
            return None;
        }
        let (_, value) = self.entries.swap_remove(at);
        if let Some(index) = &mut self.index {
            index.remove(&key);
            if let Some((moved, _)) = self.entries.get(at) {
                index.insert(*moved, at);
            }
        }
        // Hysteresis: drop the index only well below the threshold.
        if self.entries.len() < INDEX_THRESHOLD / 2 {
            self.index = None;
        }
        Some(value)
    }

    /// Keeps the entries for which `keep` returns true; returns how many
    /// were removed.
    fn retain(&mut self, mut keep: impl FnMut(K, &mut V) -> bool) -> usize {
        let before = self.entries.len();
        self.entries.retain_mut(|(key, value)| keep(*key, value));
        let removed = before - self.entries.len();
        if removed > 0 {
            self.index = None;
            if self.entries.len() > INDEX_THRESHOLD {
                self.rebuild_index();
            }
        }
        removed
    }

    fn rebuild_index(&mut self) {
        let index = self
            .entries
            .iter()
            .enumerate()
            .map(|(at, (key, _))| (*key, at))
            .collect();
        self.index = Some(index);
    }
}

/// Everything subscribed to one exact filter string (minus any `$share/`
/// prefix): plain subscribers and share groups.
struct Terminal<K, V> {
    /// The filter part, reported with each match.
    filter: Box<str>,
    plain: SubscriberSet<K, V>,
    /// Few groups per filter in practice: a vector searched by name.
    shared: Vec<ShareGroup<K, V>>,
}

impl<K: Copy + Eq + Hash, V> Terminal<K, V> {
    fn new(filter: &str) -> Self {
        Self {
            filter: filter.into(),
            plain: SubscriberSet::default(),
            shared: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.shared.is_empty()
    }

    fn group(&self, name: &str) -> Option<&ShareGroup<K, V>> {
        self.shared.iter().find(|g| &*g.name == name)
    }

    fn get(&self, group: Option<&str>, key: K) -> Option<&V> {
        match group {
            None => self.plain.get(key),
            Some(name) => self.group(name)?.members.get(key),
        }
    }

    fn insert(&mut self, group: Option<&str>, key: K, value: V) -> Option<V> {
        let Some(name) = group else {
            return self.plain.insert(key, value);
        };
        if let Some(existing) = self.shared.iter_mut().find(|g| &*g.name == name) {
            return existing.members.insert(key, value);
        }
        let mut members = SubscriberSet::default();
        members.insert(key, value);
        self.shared.push(ShareGroup {
            name: name.into(),
            members,
            cursor: AtomicUsize::new(0),
        });
        None
    }

    fn remove(&mut self, group: Option<&str>, key: K) -> Option<V> {
        let Some(name) = group else {
            return self.plain.remove(key);
        };
        let at = self.shared.iter().position(|g| &*g.name == name)?;
        let removed = self.shared.get_mut(at)?.members.remove(key);
        if self.shared.get(at).is_some_and(ShareGroup::is_empty) {
            self.shared.swap_remove(at);
        }
        removed
    }

    fn retain(&mut self, keep: &mut impl FnMut(&str, Option<&str>, K, &mut V) -> bool) -> usize {
        let filter = &*self.filter;
        let mut removed = self
            .plain
            .retain(|key, value| keep(filter, None, key, value));
        for group in &mut self.shared {
            let name = &*group.name;
            removed += group
                .members
                .retain(|key, value| keep(filter, Some(name), key, value));
        }
        self.shared.retain(|g| !g.is_empty());
        removed
    }

    /// Reports every plain subscriber, then every share group.
    fn report<'a>(&'a self, f: &mut impl FnMut(Match<'a, K, V>)) {
        let filter = &*self.filter;
        for (key, value) in self.plain.as_slice() {
            f(Match::Subscriber {
                filter,
                key: *key,
                value,
            });
        }
        for group in &self.shared {
            f(Match::Shared { filter, group });
        }
    }
}

/// One filter level.
struct Node<K, V> {
    /// Children for literal levels (including the empty level).
    literal: HashMap<Box<str>, Node<K, V>>,
    /// The child for a `+` level.
    plus: Option<Box<Node<K, V>>>,
    /// Subscriptions whose filter continues with a final `#` level. `#` is
    /// always last, so it needs no node of its own.
    hash: Option<Box<Terminal<K, V>>>,
    /// Subscriptions whose filter ends at this node.
    subs: Option<Box<Terminal<K, V>>>,
}

impl<K, V> Default for Node<K, V> {
    fn default() -> Self {
        Self {
            literal: HashMap::new(),
            plus: None,
            hash: None,
            subs: None,
        }
    }
}

impl<K, V> Node<K, V> {
    fn child(&self, level: &str) -> Option<&Self> {
        if level == "+" {
            self.plus.as_deref()
        } else {
            self.literal.get(level)
        }
    }

    fn child_mut(&mut self, level: &str) -> Option<&mut Self> {
        if level == "+" {
            self.plus.as_deref_mut()
        } else {
            self.literal.get_mut(level)
        }
    }

    fn child_or_insert(&mut self, level: &str) -> &mut Self {
        if level == "+" {
            self.plus.get_or_insert_with(Box::default)
        } else {
            self.literal.entry(level.into()).or_default()
        }
    }

    fn child_count(&self) -> usize {
        self.literal.len() + usize::from(self.plus.is_some())
    }

    /// True if the node would be kept with one of its child edges cut.
    fn holds_more_than_one_path(&self) -> bool {
        self.subs.is_some() || self.hash.is_some() || self.child_count() > 1
    }

    fn is_empty(&self) -> bool {
        self.subs.is_none() && self.hash.is_none() && self.child_count() == 0
    }

    /// Moves the children out, so that dropping `self` recurses no further.
    fn detach_children(&mut self, into: &mut Vec<Self>) {
        into.extend(self.literal.drain().map(|(_, child)| child));
        if let Some(plus) = self.plus.take() {
            into.push(*plus);
        }
    }
}

impl<K, V> Drop for Node<K, V> {
    fn drop(&mut self) {
        // Design: dismantle the subtree with a heap work list. The derived,
        // recursive drop would overflow the thread's stack on a filter with
        // tens of thousands of levels, which any client may send.
        if self.child_count() == 0 {
            return;
        }
        let mut pending = Vec::new();
        self.detach_children(&mut pending);
        while let Some(mut node) = pending.pop() {
            node.detach_children(&mut pending);
        }
    }
}

/// Splits a filter's matching part into the path of nodes it goes through
/// (`None` for the root itself) and whether it ends with a `#` level.
fn node_path(filter: &str) -> (Option<&str>, bool) {
    if filter == "#" {
        (None, true)
    } else if let Some(path) = filter.strip_suffix("/#") {
        (Some(path), true)
    } else {
        (Some(filter), false)
    }
}

fn path_levels(path: Option<&str>) -> impl Iterator<Item = &str> {
    path.into_iter().flat_map(|p| p.split('/'))
}

impl<K, V> Default for SubscriptionTrie<K, V> {
    fn default() -> Self {
        Self {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<K, V> fmt::Debug for SubscriptionTrie<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionTrie")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<K: Copy + Eq + Hash, V> SubscriptionTrie<K, V> {
    /// An empty trie.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of subscriptions: plain ones plus share group
    /// memberships.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if there are no subscriptions.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Subscribes `key` to `filter` with `value`. A subscription of the same
    /// key to the same filter (same share group, if shared) is replaced and
    /// its old value returned [MQTT-3.8.4-3].
    ///
    /// Costs one hash lookup per filter level.
    pub fn insert(&mut self, filter: &TopicFilter, key: K, value: V) -> Option<V> {
        let (path, hash) = node_path(filter.filter());
        let mut node = &mut self.root;
        for level in path_levels(path) {
            node = node.child_or_insert(level);
        }
        let slot = if hash { &mut node.hash } else { &mut node.subs };
        let terminal = slot.get_or_insert_with(|| Box::new(Terminal::new(filter.filter())));
        let old = terminal.insert(filter.share_group(), key, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Unsubscribes `key` from `filter` and returns the subscription's
    /// value, or `None` if there was no such subscription. Nodes left empty
    /// are freed.
    ///
    /// Costs one hash lookup per filter level (a few more if nodes are
    /// freed).
    pub fn remove(&mut self, filter: &TopicFilter, key: K) -> Option<V> {
        let (path, hash) = node_path(filter.filter());
        let mut node = &mut self.root;
        for level in path_levels(path) {
            node = node.child_mut(level)?;
        }
        let slot = if hash { &mut node.hash } else { &mut node.subs };
        let old = slot.as_mut()?.remove(filter.share_group(), key)?;
        self.len -= 1;
        if slot.as_ref().is_some_and(|t| t.is_empty()) {
            *slot = None;
            self.prune(path);
        }
        Some(old)
    }

    /// The value of `key`'s subscription to `filter`, if any.
    pub fn get(&self, filter: &TopicFilter, key: K) -> Option<&V> {
        let (path, hash) = node_path(filter.filter());
        let mut node = &self.root;
        for level in path_levels(path) {
            node = node.child(level)?;
        }
        let terminal = if hash {
            node.hash.as_ref()
        } else {
            node.subs.as_ref()
        }?;
        terminal.get(filter.share_group(), key)
    }

    /// Removes every subscription of `key` (plain and shared) and returns
    /// how many there were.
    ///
    /// This visits every node of the trie. A session that knows its own
    /// filters (MQTT session state does) can instead call
    /// [`remove`](Self::remove) once per filter, which costs only the
    /// filters' depth.
    pub fn remove_all(&mut self, key: K) -> usize {
        self.retain(|_, _, k, _| k != key)
    }

    /// Keeps only the subscriptions for which `keep(filter, share_group,
    /// key, value)` returns true, and returns how many were removed.
    /// `filter` is the filter part (without `$share/{group}/`), and the
    /// value may be updated in place. Visits every node of the trie.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, Option<&str>, K, &mut V) -> bool) -> usize {
        let mut removed = 0;
        let mut emptied: Vec<Box<str>> = Vec::new();
        let mut pending = vec![&mut self.root];
        while let Some(node) = pending.pop() {
            let Node {
                literal,
                plus,
                hash,
                subs,
            } = node;
            for slot in [hash, subs] {
                let Some(terminal) = slot.as_mut() else {
                    continue;
                };
                removed += terminal.retain(&mut keep);
                if terminal.is_empty()
                    && let Some(terminal) = slot.take()
                {
                    emptied.push(terminal.filter);
                }
            }
            pending.extend(literal.values_mut());
            pending.extend(plus.as_deref_mut());
        }
        self.len -= removed;
        for filter in &emptied {
            self.prune(node_path(filter).0);
        }
        removed
    }

    /// Calls `f` for every subscription (and every share group) whose filter
    /// matches `topic`.
    ///
    /// The cost grows with the topic's depth and the number of matches, not
    /// with the number of filters stored, and the walk allocates nothing
    /// unless it has more than a few dozen branches pending at once. A
    /// subscriber with several matching filters is reported once per filter;
    /// MQTT lets the server deliver one copy per subscription or a single
    /// copy at the highest QoS (MQTT 5.0 §3.3.4), which the caller decides.
    /// Order is unspecified.
    ///
    /// A topic name starting with `$` is not matched by filters whose first
    /// level is `+` or `#` [MQTT-4.7.2-1]. The zero-length placeholder name
    /// of a Topic Alias must be resolved first: it would be matched as one
    /// empty level.
    pub fn for_each_match<'a>(&'a self, topic: &TopicName, mut f: impl FnMut(Match<'a, K, V>)) {
        let topic = topic.as_str();
        let root = &self.root;
        let mut stack: Stack<(&'a Node<K, V>, Option<&str>), INLINE_FRAMES> =
            Stack::new((root, None));

        // The root level is handled apart for the `$` rule [MQTT-4.7.2-1].
        let (level, rest) = split_level(topic);
        if !topic.starts_with('$') {
            if let Some(terminal) = &root.hash {
                terminal.report(&mut f);
            }
            if let Some(plus) = &root.plus {
                stack.push((plus, rest));
            }
        }
        if let Some(child) = root.literal.get(level) {
            stack.push((child, rest));
        }

        // Each entry is a node reached by the levels consumed so far, with
        // the levels still to match (`None`: the topic ends at this node).
        while let Some((node, rest)) = stack.pop() {
            // `#` matches all remaining levels, or none: `a/#` matches `a`
            // [MQTT-4.7.1-2].
            if let Some(terminal) = &node.hash {
                terminal.report(&mut f);
            }
            match rest {
                None => {
                    if let Some(terminal) = &node.subs {
                        terminal.report(&mut f);
                    }
                }
                Some(rest) => {
                    let (level, rest) = split_level(rest);
                    // `+` matches exactly one level, even an empty one
                    // [MQTT-4.7.1-3].
                    if let Some(plus) = &node.plus {
                        stack.push((plus, rest));
                    }
                    if let Some(child) = node.literal.get(level) {
                        stack.push((child, rest));
                    }
                }
            }
        }
    }

    /// Frees the chain of nodes that ends at `path` if its last node is
    /// empty: cuts the edge below the deepest ancestor that still holds
    /// something else.
    fn prune(&mut self, path: Option<&str>) {
        // First pass, read-only: find where to cut.
        let mut node = &self.root;
        let mut cut = 0;
        for (depth, level) in path_levels(path).enumerate() {
            if node.holds_more_than_one_path() {
                cut = depth;
            }
            match node.child(level) {
                Some(child) => node = child,
                None => return,
            }
        }
        if !node.is_empty() || path.is_none() {
            return;
        }
        // Second pass: walk to the cut point and drop the chain below it.
        let mut levels = path_levels(path);
        let mut node = &mut self.root;
        for level in levels.by_ref().take(cut) {
            match node.child_mut(level) {
                Some(child) => node = child,
                None => return,
            }
        }
        match levels.next() {
            Some("+") => node.plus = None,
            Some(level) => {
                node.literal.remove(level);
            }
            None => {}
        }
    }

    #[cfg(test)]
    fn node_count(&self) -> usize {
        let mut count = 0;
        let mut pending = vec![&self.root];
        while let Some(node) = pending.pop() {
            count += 1;
            pending.extend(node.literal.values());
            pending.extend(node.plus.as_deref());
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(s: &str) -> TopicFilter {
        TopicFilter::new(s).unwrap()
    }

    #[test]
    fn removing_the_last_subscription_frees_every_node_it_created() {
        let mut trie = SubscriptionTrie::new();
        trie.insert(&filter("a/b/c/d"), 1_u32, ());
        let with_one = trie.node_count();
        trie.insert(&filter("a/b/x/+/#"), 1, ());
        trie.insert(&filter("$share/g/a/b/y"), 2, ());
        trie.insert(&filter("+/+"), 3, ());
        assert_eq!(trie.remove(&filter("a/b/x/+/#"), 1), Some(()));
        assert_eq!(trie.remove(&filter("$share/g/a/b/y"), 2), Some(()));
        assert_eq!(trie.remove(&filter("+/+"), 3), Some(()));
        assert_eq!(trie.node_count(), with_one);
        assert_eq!(trie.remove(&filter("a/b/c/d"), 1), Some(()));
        assert_eq!(trie.node_count(), 1, "only the root is left");
        assert!(trie.is_empty());
    }

    #[test]
    fn pruning_keeps_nodes_that_still_hold_subscriptions() {
        let mut trie = SubscriptionTrie::new();
        trie.insert(&filter("a"), 1_u32, ());
        trie.insert(&filter("a/#"), 1, ());
        trie.insert(&filter("a/b/c"), 1, ());
        trie.remove(&filter("a/b/c"), 1);
        assert_eq!(trie.node_count(), 2, "root and `a` remain");
        trie.remove(&filter("a"), 1);
        assert_eq!(trie.node_count(), 2, "`a` still carries `a/#`");
        trie.remove(&filter("a/#"), 1);
        assert_eq!(trie.node_count(), 1);
    }

    #[test]
    fn retain_prunes_the_nodes_it_empties() {
        let mut trie = SubscriptionTrie::new();
        for (i, f) in ["a/b", "a/c/d", "+/x", "#", "$share/g/a/b"]
            .into_iter()
            .enumerate()
        {
            trie.insert(&filter(f), 7_u32, i);
        }
        trie.insert(&filter("a/c/e"), 8, 9);
        assert_eq!(trie.remove_all(7), 5);
        assert_eq!(trie.len(), 1);
        assert_eq!(trie.node_count(), 4, "root, a, c, e");
    }

    #[test]
    fn large_subscriber_sets_switch_to_an_index_and_back() {
        let mut set = SubscriberSet::default();
        for key in 0..100_u32 {
            assert_eq!(set.insert(key, key), None);
        }
        assert!(set.index.is_some());
        assert_eq!(set.insert(42, 420), Some(42));
        for key in (0..100).filter(|k| k % 3 == 0) {
            assert_eq!(set.remove(key), Some(if key == 42 { 420 } else { key }));
        }
        for key in 0..100 {
            assert_eq!(set.get(key).is_some(), key % 3 != 0, "key {key}");
        }
        while let Some(&(key, _)) = set.as_slice().first() {
            set.remove(key);
        }
        assert!(set.index.is_none());
        assert!(set.is_empty());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn unsubscribing_everything_leaves_only_the_root(
            subs in proptest::collection::vec(
                (proptest::sample::select(&["a/b", "a/+", "a/#", "#", "+/+", "/", "a//b", "$share/g/a/b", "$share/h/#", "$SYS/+/x"][..]), 0..3_u8),
                0..24,
            ),
            order in proptest::collection::vec(proptest::prelude::any::<proptest::sample::Index>(), 24),
        ) {
            let mut trie = SubscriptionTrie::new();
            let mut live: Vec<(&str, u8)> = Vec::new();
            for (f, key) in subs {
                if trie.insert(&filter(f), key, ()).is_none() {
                    live.push((f, key));
                }
            }
            for pick in &order {
                if live.is_empty() {
                    break;
                }
                let (f, key) = live.swap_remove(pick.index(live.len()));
                proptest::prop_assert_eq!(trie.remove(&filter(f), key), Some(()));
            }
            for (f, key) in live {
                proptest::prop_assert_eq!(trie.remove(&filter(f), key), Some(()));
            }
            proptest::prop_assert!(trie.is_empty());
            proptest::prop_assert_eq!(trie.node_count(), 1);
        }
    }
}
