//! Parses arbitrary strings as topic filters and names, and matches every
//! accepted pair through the subscription trie and the retained tree. It
//! must never panic, and both structures must agree on whether they match.
#![no_main]

use libfuzzer_sys::fuzz_target;
use myqtt_core::topic::{RetainedTree, SubscriptionTrie, TopicFilter, TopicName};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (filter, topic) = text.split_once('\n').unwrap_or((text, text));
    let filter = TopicFilter::new(filter);
    let topic = TopicName::new(topic);
    if let Ok(f) = &filter {
        assert!(f.level_count() >= 1);
    }
    let (Ok(filter), Ok(topic)) = (filter, topic) else { return };
    let mut trie = SubscriptionTrie::new();
    trie.insert(&filter, 1u32, ());
    let mut trie_hit = false;
    trie.for_each_match(&topic, |_| trie_hit = true);
    let mut tree = RetainedTree::new();
    tree.insert(topic.clone(), ());
    let mut tree_hit = false;
    tree.for_each_match(&filter, |_, ()| tree_hit = true);
    assert_eq!(trie_hit, tree_hit, "trie and retained tree disagree on {filter} / {topic}");
});
