//! The retained-message tree: one value per topic name, found by topic
//! filter with the matching rules of MQTT 3.1.1 and 5.0 §4.7.

use myqtt_core::topic::{RetainedTree, TopicFilter, TopicName};

fn filter(s: &str) -> TopicFilter {
    TopicFilter::new(s).unwrap()
}

fn name(s: &str) -> TopicName {
    TopicName::new(s).unwrap()
}

/// A tree retaining each of `topics` (the value is the topic's index).
fn tree(topics: &[&str]) -> RetainedTree<usize> {
    let mut tree = RetainedTree::new();
    for (i, topic) in topics.iter().enumerate() {
        tree.insert(name(topic), i);
    }
    tree
}

/// The retained topics that `f` matches, sorted.
fn matching(tree: &RetainedTree<usize>, f: &str) -> Vec<String> {
    let mut out = Vec::new();
    tree.for_each_match(&filter(f), |topic, _| out.push(topic.as_str().to_owned()));
    out.sort();
    out
}

const SPORT: &[&str] = &[
    "sport",
    "sport/",
    "sport/tennis",
    "sport/tennis/player1",
    "sport/tennis/player1/ranking",
    "sport/tennis/player1/score/wimbledon",
    "sport/tennis/player2",
    "/finance",
    "finance",
    "$SYS/x",
    "$SYS/monitor/Clients",
];

#[test]
fn multi_level_wildcard_returns_the_parent_and_every_descendant() {
    // MQTT 3.1.1 §4.7.1.2 examples [MQTT-4.7.1-2].
    let tree = tree(SPORT);
    assert_eq!(
        matching(&tree, "sport/tennis/player1/#"),
        [
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
            "sport/tennis/player1/score/wimbledon"
        ]
    );
    assert_eq!(
        matching(&tree, "sport/#").len(),
        7,
        "`sport/#` includes `sport` and `sport/`"
    );
    assert!(matching(&tree, "sport/#").contains(&"sport".to_owned()));
}

#[test]
fn single_level_wildcard_returns_topics_one_level_deep() {
    // MQTT 3.1.1 §4.7.1.3 examples.
    let tree = tree(SPORT);
    assert_eq!(
        matching(&tree, "sport/tennis/+"),
        ["sport/tennis/player1", "sport/tennis/player2"]
    );
    assert_eq!(
        matching(&tree, "sport/+"),
        ["sport/", "sport/tennis"],
        "an empty level counts, the parent does not"
    );
    assert_eq!(
        matching(&tree, "+/+"),
        ["/finance", "sport/", "sport/tennis"]
    );
    assert_eq!(matching(&tree, "/+"), ["/finance"]);
    assert_eq!(
        matching(&tree, "+"),
        ["finance", "sport"],
        "`/finance` has two levels"
    );
}

#[test]
fn wildcards_in_the_first_level_do_not_return_dollar_topics() {
    // MQTT 3.1.1 §4.7.2 examples [MQTT-4.7.2-1].
    let tree = tree(SPORT);
    assert_eq!(
        matching(&tree, "$SYS/#"),
        ["$SYS/monitor/Clients", "$SYS/x"]
    );
    assert!(!matching(&tree, "#").iter().any(|t| t.starts_with('$')));
    assert_eq!(matching(&tree, "#").len(), SPORT.len() - 2);
    assert!(matching(&tree, "+/monitor/Clients").is_empty());
    assert_eq!(matching(&tree, "$SYS/monitor/+"), ["$SYS/monitor/Clients"]);
    assert!(matching(&tree, "+/x").is_empty());
}

#[test]
fn a_dollar_level_below_the_first_is_matched_by_wildcards() {
    let tree = tree(&["a/$b", "a/$b/c"]);
    assert_eq!(matching(&tree, "a/+"), ["a/$b"]);
    assert_eq!(matching(&tree, "a/#"), ["a/$b", "a/$b/c"]);
    assert_eq!(matching(&tree, "+/$b/c"), ["a/$b/c"]);
}

#[test]
fn shared_filters_match_with_their_filter_part() {
    let tree = tree(SPORT);
    assert_eq!(
        matching(&tree, "$share/g/sport/tennis/+"),
        ["sport/tennis/player1", "sport/tennis/player2"]
    );
    assert!(
        matching(&tree, "$share/g/#")
            .iter()
            .all(|t| !t.starts_with('$'))
    );
}

#[test]
fn literal_filters_return_exactly_their_topic() {
    let tree = tree(SPORT);
    assert_eq!(matching(&tree, "sport/tennis"), ["sport/tennis"]);
    assert_eq!(matching(&tree, "sport/"), ["sport/"]);
    assert!(matching(&tree, "sport/tennis/player3").is_empty());
    assert!(
        matching(&tree, "sport/tennis/player1/score").is_empty(),
        "an inner node without a value"
    );
}

#[test]
fn retaining_again_replaces_the_previous_message() {
    // [MQTT-3.3.1-5] a new retained message replaces the one on that topic.
    let mut tree = RetainedTree::new();
    assert_eq!(tree.insert(name("a/b"), "old"), None);
    assert_eq!(tree.insert(name("a/b"), "new"), Some("old"));
    assert_eq!(tree.len(), 1);
    assert_eq!(tree.get(&name("a/b")), Some(&"new"));
    let mut values = Vec::new();
    tree.for_each_match(&filter("a/#"), |_, v| values.push(*v));
    assert_eq!(values, ["new"]);
}

#[test]
fn removed_topics_are_no_longer_returned() {
    let mut tree = tree(&["a", "a/b", "a/b/c"]);
    assert_eq!(tree.remove(&name("a/b")), Some(1));
    assert_eq!(tree.remove(&name("a/b")), None);
    assert_eq!(tree.remove(&name("x")), None);
    assert_eq!(tree.len(), 2);
    assert_eq!(tree.get(&name("a/b")), None);
    assert_eq!(tree.get(&name("a/b/c")), Some(&2));
    assert_eq!(matching(&tree, "a/#"), ["a", "a/b/c"]);
}

#[test]
fn retain_and_get_mut_update_entries_in_place() {
    let mut tree = tree(&["a", "b", "c/d"]);
    if let Some(v) = tree.get_mut(&name("c/d")) {
        *v = 10;
    }
    assert_eq!(tree.retain(|topic, v| topic.as_str() != "a" && *v != 1), 2);
    let mut all = Vec::new();
    tree.for_each(|topic, v| all.push((topic.as_str().to_owned(), *v)));
    assert_eq!(all, [("c/d".to_owned(), 10)]);
    assert_eq!(tree.len(), 1);
}

#[test]
fn topics_of_maximum_depth_do_not_exhaust_a_small_stack() {
    // 65535 bytes of `/`: 65536 empty levels, the deepest name a peer can
    // publish to. Insert, match, remove and drop must not recurse.
    let deep = "/".repeat(usize::from(u16::MAX));
    let worker = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let mut tree = RetainedTree::new();
            tree.insert(name(&deep), 1);
            tree.insert(name(&deep[1..]), 2);
            let mut hits = Vec::new();
            tree.for_each_match(&filter("/#"), |_, v| hits.push(*v));
            hits.sort_unstable();
            assert_eq!(hits, [1, 2]);
            assert_eq!(tree.remove(&name(&deep[1..])), Some(2));
            assert_eq!(tree.retain(|_, _| true), 0);
            drop(tree);
        });
    worker.unwrap().join().unwrap();
}
