//! Property tests: the subscription trie and the retained tree agree with a
//! naive matcher, written here from the rules of MQTT §4.7, on random
//! filters and topics over a small alphabet of levels (empty levels, `$`
//! levels, wildcards, shared subscriptions), and through random sequences of
//! inserts and removals.

use std::collections::{BTreeMap, BTreeSet};

use myqtt_core::topic::{Match, RetainedTree, SubscriptionTrie, TopicFilter, TopicName};
use proptest::prelude::*;

/// The reference matcher: compares the filter and the topic level by level.
/// `filter` is the matching part (no `$share/` prefix).
fn naive_matches(filter: &str, topic: &str) -> bool {
    let filter: Vec<&str> = filter.split('/').collect();
    let topic: Vec<&str> = topic.split('/').collect();
    // [MQTT-4.7.2-1] no first-level wildcard matches a `$` topic.
    if topic[0].starts_with('$') && (filter[0] == "+" || filter[0] == "#") {
        return false;
    }
    let mut i = 0;
    loop {
        match (filter.get(i).copied(), topic.get(i).copied()) {
            // `#` takes whatever is left, even nothing [MQTT-4.7.1-2]; or
            // both ran out together.
            (Some("#"), _) | (None, None) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            _ => return false,
        }
        i += 1;
    }
}

/// Splits `$share/{group}/{filter}` into the group and the filter part.
fn naive_share(full: &str) -> (Option<&str>, &str) {
    match full
        .strip_prefix("$share/")
        .and_then(|rest| rest.split_once('/'))
    {
        Some((group, filter)) => (Some(group), filter),
        None => (None, full),
    }
}

#[test]
fn the_reference_matcher_agrees_with_the_spec_examples() {
    assert!(naive_matches("sport/#", "sport"));
    assert!(naive_matches("+/+", "/finance"));
    assert!(!naive_matches("+", "/finance"));
    assert!(!naive_matches("#", "$SYS/x"));
    assert!(naive_matches("$SYS/#", "$SYS/x"));
    assert!(!naive_matches("a/b", "a"));
    assert!(!naive_matches("a", "a/b"));
}

const TOPIC_LEVELS: &[&str] = &["", "a", "b", "c", "$SYS", "$x"];
const FILTER_LEVELS: &[&str] = &["", "a", "b", "$SYS", "+"];

fn topic_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOPIC_LEVELS), 1..=4)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("a topic name is not empty", |t| !t.is_empty())
}

fn filter_strategy() -> impl Strategy<Value = String> {
    (
        prop::option::weighted(0.25, prop::sample::select(&["g1", "g2"][..])),
        prop::collection::vec(prop::sample::select(FILTER_LEVELS), 0..=4),
        any::<bool>(),
    )
        .prop_map(|(group, mut levels, hash)| {
            if hash || levels.is_empty() {
                levels.push("#");
            }
            let filter = levels.join("/");
            match group {
                Some(group) => format!("$share/{group}/{filter}"),
                None => filter,
            }
        })
        .prop_filter("a topic filter is not empty", |f| {
            !f.is_empty() && !f.ends_with("$share/g1/") && !f.ends_with("$share/g2/")
        })
}

/// One reported match, flattened: (group, filter part, key, value).
type Hit = (Option<String>, String, u8, u32);

/// Every match of `topic`, one entry per plain subscriber and per group
/// member; also checks that no group is reported twice for one filter.
fn trie_hits(trie: &SubscriptionTrie<u8, u32>, topic: &str) -> BTreeSet<Hit> {
    let mut hits = BTreeSet::new();
    let mut groups = BTreeSet::new();
    trie.for_each_match(&TopicName::new(topic).unwrap(), |m| match m {
        Match::Subscriber { filter, key, value } => {
            assert!(
                hits.insert((None, filter.to_owned(), key, *value)),
                "plain subscription reported twice"
            );
        }
        Match::Shared { filter, group } => {
            assert!(!group.is_empty(), "an empty group is reported");
            assert!(
                groups.insert((filter.to_owned(), group.name().to_owned())),
                "group reported twice"
            );
            for (key, value) in group.members() {
                hits.insert((
                    Some(group.name().to_owned()),
                    filter.to_owned(),
                    *key,
                    *value,
                ));
            }
        }
    });
    hits
}

/// What the model (full filter, key) -> value says `topic` should match.
fn expected_hits(model: &BTreeMap<(String, u8), u32>, topic: &str) -> BTreeSet<Hit> {
    model
        .iter()
        .filter_map(|((full, key), value)| {
            let (group, filter) = naive_share(full);
            naive_matches(filter, topic)
                .then(|| (group.map(str::to_owned), filter.to_owned(), *key, *value))
        })
        .collect()
}

#[derive(Debug, Clone)]
enum Op {
    Subscribe(String, u8, u32),
    Unsubscribe(String, u8),
    RemoveAll(u8),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (filter_strategy(), 0..4_u8, any::<u32>()).prop_map(|(f, k, v)| Op::Subscribe(f, k, v)),
        4 => (filter_strategy(), 0..4_u8).prop_map(|(f, k)| Op::Unsubscribe(f, k)),
        1 => (0..4_u8).prop_map(Op::RemoveAll),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn filters_are_generated_valid(f in filter_strategy(), t in topic_strategy()) {
        prop_assert!(TopicFilter::new(f.as_str()).is_ok(), "{f}");
        prop_assert!(TopicName::new(t.as_str()).is_ok(), "{t}");
    }

    #[test]
    fn trie_matches_exactly_what_the_reference_matcher_matches(
        subs in prop::collection::vec((filter_strategy(), 0..4_u8, any::<u32>()), 0..40),
        topics in prop::collection::vec(topic_strategy(), 1..20),
    ) {
        let mut trie = SubscriptionTrie::new();
        let mut model = BTreeMap::new();
        for (full, key, value) in subs {
            let old = trie.insert(&TopicFilter::new(full.as_str()).unwrap(), key, value);
            prop_assert_eq!(old, model.insert((full, key), value));
        }
        prop_assert_eq!(trie.len(), model.len());
        for topic in &topics {
            prop_assert_eq!(trie_hits(&trie, topic), expected_hits(&model, topic), "topic {}", topic);
        }
    }

    #[test]
    fn trie_follows_any_sequence_of_subscribes_and_unsubscribes(
        ops in prop::collection::vec(op_strategy(), 0..60),
        topics in prop::collection::vec(topic_strategy(), 1..12),
    ) {
        let mut trie = SubscriptionTrie::new();
        let mut model: BTreeMap<(String, u8), u32> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Subscribe(full, key, value) => {
                    let old = trie.insert(&TopicFilter::new(full.as_str()).unwrap(), key, value);
                    prop_assert_eq!(old, model.insert((full, key), value));
                }
                Op::Unsubscribe(full, key) => {
                    let old = trie.remove(&TopicFilter::new(full.as_str()).unwrap(), key);
                    prop_assert_eq!(old, model.remove(&(full, key)));
                }
                Op::RemoveAll(key) => {
                    let before = model.len();
                    model.retain(|(_, k), _| *k != key);
                    prop_assert_eq!(trie.remove_all(key), before - model.len());
                }
            }
            prop_assert_eq!(trie.len(), model.len());
            prop_assert_eq!(trie.is_empty(), model.is_empty());
        }
        for ((full, key), value) in &model {
            prop_assert_eq!(trie.get(&TopicFilter::new(full.as_str()).unwrap(), *key), Some(value));
        }
        for topic in &topics {
            prop_assert_eq!(trie_hits(&trie, topic), expected_hits(&model, topic), "topic {}", topic);
        }
    }

    #[test]
    fn retained_tree_returns_exactly_the_topics_the_reference_matcher_matches(
        topics in prop::collection::vec((topic_strategy(), any::<u32>()), 0..40),
        filters in prop::collection::vec(filter_strategy(), 1..20),
    ) {
        let mut tree = RetainedTree::new();
        let mut model = BTreeMap::new();
        for (topic, value) in topics {
            let old = tree.insert(TopicName::new(topic.as_str()).unwrap(), value);
            prop_assert_eq!(old, model.insert(topic, value));
        }
        prop_assert_eq!(tree.len(), model.len());
        for full in &filters {
            let mut got = Vec::new();
            tree.for_each_match(&TopicFilter::new(full.as_str()).unwrap(), |t, v| got.push((t.as_str().to_owned(), *v)));
            got.sort();
            let (_, filter) = naive_share(full);
            let want: Vec<(String, u32)> = model
                .iter()
                .filter(|(t, _)| naive_matches(filter, t))
                .map(|(t, v)| (t.clone(), *v))
                .collect();
            prop_assert_eq!(got, want, "filter {}", full);
        }
    }

    #[test]
    fn retained_tree_follows_any_sequence_of_sets_and_removals(
        ops in prop::collection::vec((topic_strategy(), prop::option::of(any::<u32>())), 0..60),
        filters in prop::collection::vec(filter_strategy(), 1..10),
    ) {
        let mut tree = RetainedTree::new();
        let mut model = BTreeMap::new();
        for (topic, value) in ops {
            let name = TopicName::new(topic.as_str()).unwrap();
            if let Some(value) = value {
                prop_assert_eq!(tree.insert(name, value), model.insert(topic, value));
            } else {
                prop_assert_eq!(tree.remove(&name), model.remove(&topic));
            }
            prop_assert_eq!(tree.len(), model.len());
        }
        for (topic, value) in &model {
            prop_assert_eq!(tree.get(&TopicName::new(topic.as_str()).unwrap()), Some(value));
        }
        for full in &filters {
            let mut got = Vec::new();
            tree.for_each_match(&TopicFilter::new(full.as_str()).unwrap(), |t, _| got.push(t.as_str().to_owned()));
            got.sort();
            let (_, filter) = naive_share(full);
            let want: Vec<String> = model.keys().filter(|t| naive_matches(filter, t)).cloned().collect();
            prop_assert_eq!(got, want, "filter {}", full);
        }
    }
}
