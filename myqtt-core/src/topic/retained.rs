//! The retained-message tree: "which retained topics match this filter?"
//!
//! One node per topic level, one value per topic name. Answering a
//! subscription costs in proportion to the part of the tree the filter
//! covers (a literal level is one hash lookup, `+` visits one level of
//! children, `#` visits a whole subtree), never to the total number of
//! retained messages. Filters whose first level is `+` or `#` do not return
//! topics starting with `$` [MQTT-4.7.2-1].

use std::collections::HashMap;
use std::fmt;

use super::walk::{Stack, split_level};
use super::{TopicFilter, TopicName};

/// Inline depth of the matching stack (see [`Stack`]).
const INLINE_FRAMES: usize = 32;

/// One retained value per topic name, searchable by topic filter.
///
/// `V` is whatever the server retains for a topic (payload, QoS,
/// properties, expiry). Retaining a message on a topic replaces the previous
/// one [MQTT-3.3.1-5]; the caller removes the entry when a retained message
/// with an empty payload arrives [MQTT-3.3.1-6].
///
/// ```
/// use myqtt_core::topic::{RetainedTree, TopicFilter, TopicName};
///
/// let mut retained = RetainedTree::new();
/// retained.insert(TopicName::new("sport/tennis").unwrap(), "40-15");
/// retained.insert(TopicName::new("$SYS/uptime").unwrap(), "3600");
///
/// let mut seen = Vec::new();
/// retained.for_each_match(&TopicFilter::new("#").unwrap(), |topic, value| {
///     seen.push((topic.as_str(), *value));
/// });
/// assert_eq!(seen, [("sport/tennis", "40-15")]);
/// ```
pub struct RetainedTree<V> {
    root: Node<V>,
    len: usize,
}

/// One topic level.
struct Node<V> {
    children: HashMap<Box<str>, Node<V>>,
    /// The retained value of the topic that ends here, with its full name so
    /// a match can report it without rebuilding it.
    entry: Option<(TopicName, V)>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Self {
            children: HashMap::new(),
            entry: None,
        }
    }
}

impl<V> Drop for Node<V> {
    fn drop(&mut self) {
        // Design: iterative, like the subscription trie's nodes: a topic name
        // may have tens of thousands of levels, too many for a recursive drop.
        if self.children.is_empty() {
            return;
        }
        let mut pending: Vec<Self> = self.children.drain().map(|(_, child)| child).collect();
        while let Some(mut node) = pending.pop() {
            pending.extend(node.children.drain().map(|(_, child)| child));
        }
    }
}

/// Work items of a match.
enum Frame<'a, 'f, V> {
    /// `node` was reached by the filter levels consumed so far; `rest` holds
    /// those still to match (`None`: the filter ends at this node).
    Levels(&'a Node<V>, Option<&'f str>),
    /// A `#` covers `node` and everything below it.
    Subtree(&'a Node<V>),
}

// Manual impls: derived ones would require `V: Copy`.
impl<V> Clone for Frame<'_, '_, V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<V> Copy for Frame<'_, '_, V> {}

impl<V> Default for RetainedTree<V> {
    fn default() -> Self {
        Self {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<V> fmt::Debug for RetainedTree<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetainedTree")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<V> RetainedTree<V> {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of retained topics.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if nothing is retained.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Retains `value` for `topic`, replacing and returning the value that
    /// was retained there before [MQTT-3.3.1-5].
    pub fn insert(&mut self, topic: TopicName, value: V) -> Option<V> {
        let mut node = &mut self.root;
        for level in topic.levels() {
            node = node.children.entry(level.into()).or_default();
        }
        let old = node.entry.replace((topic, value)).map(|(_, old)| old);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes and returns the value retained for `topic`; nodes left empty
    /// are freed.
    pub fn remove(&mut self, topic: &TopicName) -> Option<V> {
        let mut node = &mut self.root;
        for level in topic.levels() {
            node = node.children.get_mut(level)?;
        }
        let (_, old) = node.entry.take()?;
        self.len -= 1;
        if node.children.is_empty() {
            self.prune(topic.as_str());
        }
        Some(old)
    }

    /// The value retained for `topic`.
    pub fn get(&self, topic: &TopicName) -> Option<&V> {
        let mut node = &self.root;
        for level in topic.levels() {
            node = node.children.get(level)?;
        }
        node.entry.as_ref().map(|(_, value)| value)
    }

    /// The value retained for `topic`, mutable.
    pub fn get_mut(&mut self, topic: &TopicName) -> Option<&mut V> {
        let mut node = &mut self.root;
        for level in topic.levels() {
            node = node.children.get_mut(level)?;
        }
        node.entry.as_mut().map(|(_, value)| value)
    }

    /// Keeps only the entries for which `keep(topic, value)` returns true
    /// (for example, to drop expired messages) and returns how many were
    /// removed. Visits the whole tree.
    pub fn retain(&mut self, mut keep: impl FnMut(&TopicName, &mut V) -> bool) -> usize {
        let mut emptied: Vec<TopicName> = Vec::new();
        let mut pending = vec![&mut self.root];
        while let Some(node) = pending.pop() {
            if let Some((topic, value)) = &mut node.entry
                && !keep(topic, value)
                && let Some((topic, _)) = node.entry.take()
            {
                emptied.push(topic);
            }
            pending.extend(node.children.values_mut());
        }
        self.len -= emptied.len();
        for topic in &emptied {
            self.prune(topic.as_str());
        }
        emptied.len()
    }

    /// Calls `f` for every retained entry, in no particular order.
    pub fn for_each<'a>(&'a self, mut f: impl FnMut(&'a TopicName, &'a V)) {
        let mut pending = vec![&self.root];
        while let Some(node) = pending.pop() {
            if let Some((topic, value)) = &node.entry {
                f(topic, value);
            }
            pending.extend(node.children.values());
        }
    }

    /// Calls `f` for every retained topic that `filter` matches, in no
    /// particular order. A shared filter (`$share/{group}/{filter}`) is
    /// matched with its filter part.
    ///
    /// The cost is proportional to the part of the tree that the filter
    /// covers. Topics starting with `$` are not returned for a filter whose
    /// first level is `+` or `#` [MQTT-4.7.2-1].
    pub fn for_each_match<'a>(
        &'a self,
        filter: &TopicFilter,
        mut f: impl FnMut(&'a TopicName, &'a V),
    ) {
        let root = &self.root;
        let mut stack: Stack<Frame<'a, '_, V>, INLINE_FRAMES> = Stack::new(Frame::Subtree(root));
        stack.push(Frame::Levels(root, Some(filter.filter())));
        while let Some(frame) = stack.pop() {
            match frame {
                Frame::Subtree(node) => {
                    report(node, &mut f);
                    for child in node.children.values() {
                        stack.push(Frame::Subtree(child));
                    }
                }
                Frame::Levels(node, None) => report(node, &mut f),
                Frame::Levels(node, Some(rest)) => {
                    let (level, rest) = split_level(rest);
                    let at_root = std::ptr::eq(node, root);
                    // Wildcards in the first level skip `$` topics
                    // [MQTT-4.7.2-1].
                    let visible = |name: &str| !(at_root && name.starts_with('$'));
                    match level {
                        // `#` covers this level's topic (its parent) and all
                        // below [MQTT-4.7.1-2]; it is always the last level.
                        "#" => {
                            report(node, &mut f);
                            for (name, child) in &node.children {
                                if visible(name) {
                                    stack.push(Frame::Subtree(child));
                                }
                            }
                        }
                        // `+` covers exactly one level, empty ones included.
                        "+" => {
                            for (name, child) in &node.children {
                                if visible(name) {
                                    stack.push(Frame::Levels(child, rest));
                                }
                            }
                        }
                        literal => {
                            if let Some(child) = node.children.get(literal) {
                                stack.push(Frame::Levels(child, rest));
                            }
                        }
                    }
                }
            }
        }
    }

    /// Frees the chain of nodes that ends at `topic` if its last node is
    /// empty: cuts the edge below the deepest ancestor that still holds
    /// something else.
    fn prune(&mut self, topic: &str) {
        let mut node = &self.root;
        let mut cut = 0;
        for (depth, level) in topic.split('/').enumerate() {
            if node.entry.is_some() || node.children.len() > 1 {
                cut = depth;
            }
            match node.children.get(level) {
                Some(child) => node = child,
                None => return,
            }
        }
        if node.entry.is_some() || !node.children.is_empty() {
            return;
        }
        let mut levels = topic.split('/');
        let mut node = &mut self.root;
        for level in levels.by_ref().take(cut) {
            match node.children.get_mut(level) {
                Some(child) => node = child,
                None => return,
            }
        }
        if let Some(level) = levels.next() {
            node.children.remove(level);
        }
    }

    #[cfg(test)]
    fn node_count(&self) -> usize {
        let mut count = 0;
        let mut pending = vec![&self.root];
        while let Some(node) = pending.pop() {
            count += 1;
            pending.extend(node.children.values());
        }
        count
    }
}

fn report<'a, V>(node: &'a Node<V>, f: &mut impl FnMut(&'a TopicName, &'a V)) {
    if let Some((topic, value)) = &node.entry {
        f(topic, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> TopicName {
        TopicName::new(s).unwrap()
    }

    #[test]
    fn removing_a_topic_frees_the_nodes_only_it_used() {
        let mut tree = RetainedTree::new();
        tree.insert(name("a/b"), 1);
        let with_one = tree.node_count();
        tree.insert(name("a/b/c/d"), 2);
        tree.insert(name("x//y"), 3);
        assert_eq!(tree.remove(&name("a/b/c/d")), Some(2));
        assert_eq!(tree.remove(&name("x//y")), Some(3));
        assert_eq!(tree.node_count(), with_one);
        assert_eq!(tree.remove(&name("a/b")), Some(1));
        assert_eq!(tree.node_count(), 1);
        assert!(tree.is_empty());
    }

    #[test]
    fn a_parent_topic_survives_the_removal_of_its_child() {
        let mut tree = RetainedTree::new();
        tree.insert(name("a"), 1);
        tree.insert(name("a/b/c"), 2);
        tree.remove(&name("a/b/c"));
        assert_eq!(tree.node_count(), 2);
        assert_eq!(tree.get(&name("a")), Some(&1));
    }

    #[test]
    fn retain_drops_entries_and_prunes_their_nodes() {
        let mut tree = RetainedTree::new();
        for (i, t) in ["a/b", "a/c", "a/c/d", "$SYS/x"].into_iter().enumerate() {
            tree.insert(name(t), i);
        }
        assert_eq!(tree.retain(|_, v| *v == 1), 3);
        assert_eq!(tree.len(), 1);
        assert_eq!(tree.node_count(), 3, "root, a, c");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn removing_every_topic_leaves_only_the_root(
            topics in proptest::collection::vec(
                proptest::sample::select(&["a", "a/b", "a/b/c", "/", "a//b", "$SYS/x", "b/", "a/c"][..]),
                0..16,
            ),
            keep_odd in proptest::prelude::any::<bool>(),
        ) {
            let mut tree = RetainedTree::new();
            for (i, t) in topics.iter().enumerate() {
                tree.insert(name(t), i);
            }
            if keep_odd {
                tree.retain(|_, v| *v % 2 == 1);
            }
            for t in &topics {
                tree.remove(&name(t));
            }
            proptest::prop_assert!(tree.is_empty());
            proptest::prop_assert_eq!(tree.node_count(), 1);
        }
    }
}
