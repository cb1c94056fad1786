//! Topic matching benchmarks: a PUBLISH matched against a trie of 100 000
//! subscriptions, and SUBSCRIBE filters matched against 100 000 retained
//! topics.
//!
//! Run with `cargo bench -p myqtt-core --bench topic`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use myqtt_core::topic::{Match, RetainedTree, SubscriptionTrie, TopicFilter, TopicName};

fn filter(s: &str) -> TopicFilter {
    TopicFilter::new(s).unwrap()
}

fn name(s: &str) -> TopicName {
    TopicName::new(s).unwrap()
}

/// 100 000 subscriptions, mostly literal, with some `+`, `#` and shared
/// filters; each has its own session key.
fn building_trie() -> SubscriptionTrie<u64, u8> {
    let mut filters = Vec::with_capacity(100_000);
    for b in 0..9_000 {
        for f in 0..10 {
            filters.push(format!("building/{b}/floor/{f}"));
        }
    }
    filters.extend((0..4_000).map(|b| format!("building/{b}/floor/+")));
    filters.extend((0..3_000).map(|b| format!("building/{b}/#")));
    filters.extend((0..2_000).map(|i| format!("+/{}/floor/{}", 1_000 + i / 10, i % 10)));
    filters.extend((0..500).map(|n| format!("sensors/{n}/+/temp")));
    filters.extend((0..490).map(|b| format!("$share/workers/building/{}/floor/+", b % 98)));
    filters.extend((0..5).map(|_| "#".to_owned()));
    filters.extend((0..5).map(|_| "building/#".to_owned()));
    assert_eq!(filters.len(), 100_000);

    let mut trie = SubscriptionTrie::new();
    for (key, f) in (0_u64..).zip(&filters) {
        trie.insert(&filter(f), key, 1);
    }
    assert_eq!(trie.len(), 100_000);
    trie
}

/// Counts the deliveries of one message: one per plain subscription, one
/// per share group (to the member whose turn it is).
fn deliveries(trie: &SubscriptionTrie<u64, u8>, topic: &TopicName) -> usize {
    let mut count = 0;
    trie.for_each_match(topic, |m| match m {
        Match::Subscriber { key, value, .. } => {
            black_box((key, value));
            count += 1;
        }
        Match::Shared { group, .. } => {
            black_box(group.pick());
            count += 1;
        }
    });
    count
}

fn subscription_trie(c: &mut Criterion) {
    let trie = building_trie();
    let mut group = c.benchmark_group("trie_100k_filters");
    for (label, topic, expected) in [
        // literal + floor/+ + building/N/# + +/N/floor/5 + # x5 + building/# x5
        ("match_4_levels_14_hits", "building/1100/floor/5", 14),
        ("match_4_levels_shared_group", "building/42/floor/3", 14),
        (
            "match_4_levels_only_hash_hits",
            "building/99999/floor/5",
            10,
        ),
        ("match_dollar_topic_no_hits", "$SYS/broker/clients/total", 0),
    ] {
        let topic = name(topic);
        assert_eq!(deliveries(&trie, &topic), expected, "{topic}");
        group.bench_function(label, |b| b.iter(|| deliveries(&trie, black_box(&topic))));
    }
    group.finish();
}

/// 100 000 retained topics `building/{0..10000}/floor/{0..10}`.
fn building_retained() -> RetainedTree<u32> {
    let mut tree = RetainedTree::new();
    for b in 0..10_000 {
        for f in 0..10 {
            tree.insert(name(&format!("building/{b}/floor/{f}")), b * 10 + f);
        }
    }
    assert_eq!(tree.len(), 100_000);
    tree
}

fn retained_tree(c: &mut Criterion) {
    let tree = building_retained();
    let count = |f: &TopicFilter| {
        let mut n = 0;
        tree.for_each_match(f, |topic, value| {
            black_box((topic, value));
            n += 1;
        });
        n
    };
    let mut group = c.benchmark_group("retained_100k_topics");
    for (label, f, expected) in [
        ("literal_filter_1_hit", "building/1100/floor/5", 1),
        ("plus_filter_10_hits", "building/1100/floor/+", 10),
        ("hash_filter_10_hits", "building/1100/#", 10),
        ("plus_filter_10k_hits", "building/+/floor/5", 10_000),
    ] {
        let f = filter(f);
        assert_eq!(count(&f), expected, "{f}");
        group.bench_function(label, |b| b.iter(|| count(black_box(&f))));
    }
    group.finish();
}

criterion_group!(benches, subscription_trie, retained_tree);
criterion_main!(benches);
