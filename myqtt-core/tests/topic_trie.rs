//! The subscription trie against the matching rules of MQTT 3.1.1 and 5.0
//! §4.7, the spec's own examples, shared subscriptions and hostile depths.

use myqtt_core::topic::{Match, SubscriptionTrie, TopicFilter, TopicName};

fn filter(s: &str) -> TopicFilter {
    TopicFilter::new(s).unwrap()
}

fn name(s: &str) -> TopicName {
    TopicName::new(s).unwrap()
}

/// The filters (shared ones as `$share/{group}/{filter}`) that match
/// `topic`, sorted.
fn matching<V>(trie: &SubscriptionTrie<u32, V>, topic: &str) -> Vec<String> {
    let mut out = Vec::new();
    trie.for_each_match(&name(topic), |m| match m {
        Match::Subscriber { filter, .. } => out.push(filter.to_owned()),
        Match::Shared { filter, group } => out.push(format!("$share/{}/{filter}", group.name())),
    });
    out.sort();
    out
}

/// Whether the single filter `f` matches `topic`, asked through a trie.
fn matches(f: &str, topic: &str) -> bool {
    let mut trie = SubscriptionTrie::new();
    trie.insert(&filter(f), 1, ());
    !matching(&trie, topic).is_empty()
}

#[test]
fn multi_level_wildcard_matches_the_parent_and_every_descendant() {
    // MQTT 3.1.1 §4.7.1.2 example [MQTT-4.7.1-2].
    for topic in [
        "sport/tennis/player1",
        "sport/tennis/player1/ranking",
        "sport/tennis/player1/score/wimbledon",
    ] {
        assert!(matches("sport/tennis/player1/#", topic), "{topic}");
    }
    assert!(
        matches("sport/#", "sport"),
        "[MQTT-4.7.1-2] `sport/#` matches the parent `sport`"
    );
    assert!(!matches("sport/tennis/player1/#", "sport/tennis/player2"));
    assert!(!matches("sport/tennis/player1/#", "sport/tennis"));
    assert!(matches("#", "anything/at/all"));
    assert!(matches("#", "/"));
}

#[test]
fn single_level_wildcard_matches_exactly_one_level() {
    // MQTT 3.1.1 §4.7.1.3 examples.
    assert!(matches("sport/tennis/+", "sport/tennis/player1"));
    assert!(matches("sport/tennis/+", "sport/tennis/player2"));
    assert!(!matches("sport/tennis/+", "sport/tennis/player1/ranking"));
    assert!(
        !matches("sport/+", "sport"),
        "`sport/+` needs a second level"
    );
    assert!(
        matches("sport/+", "sport/"),
        "an empty second level is a level"
    );
    assert!(matches("+/+", "/finance"));
    assert!(matches("/+", "/finance"));
    assert!(!matches("+", "/finance"), "`/finance` has two levels");
    assert!(matches("+", "finance"));
    assert!(matches("+/tennis/#", "sport/tennis/player1"));
}

#[test]
fn empty_levels_are_real_levels() {
    assert!(matches("a//b", "a//b"));
    assert!(matches("a/+/b", "a//b"), "`+` matches an empty level");
    assert!(!matches("a/b", "a//b"));
    assert!(!matches("a", "a/"));
    assert!(matches("a/", "a/"));
    assert!(matches("a/+", "a/"));
    assert!(matches("+", "a") && !matches("+", "/"));
    assert!(matches("/#", "/") && matches("/#", "/x/y"));
    assert!(!matches("/#", "x"));
}

#[test]
fn wildcards_in_the_first_level_do_not_match_dollar_topics() {
    // MQTT 3.1.1 §4.7.2 examples [MQTT-4.7.2-1].
    assert!(matches("$SYS/#", "$SYS/x"));
    assert!(!matches("#", "$SYS/monitor/Clients"));
    assert!(!matches("+/monitor/Clients", "$SYS/monitor/Clients"));
    assert!(matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
    assert!(!matches("+", "$SYS"));
    assert!(
        !matches("$share/g/#", "$SYS/x"),
        "a shared `#` is still a first-level `#`"
    );
    assert!(
        matches("a/+", "a/$x"),
        "the rule is about the first level only"
    );
    assert!(matches("a/#", "a/$x"));
}

#[test]
fn literal_levels_match_only_themselves() {
    assert!(matches("sport/tennis", "sport/tennis"));
    assert!(
        !matches("sport/tennis", "sport/Tennis"),
        "topics are case sensitive"
    );
    assert!(!matches("sport/tennis", "sport/tennis/x"));
    assert!(!matches("sport/tennis", "sport"));
}

#[test]
fn every_matching_filter_is_reported_and_no_other() {
    let mut trie = SubscriptionTrie::new();
    for f in [
        "a/b/c", "a/+/c", "a/#", "#", "+/b/#", "a/b", "x/#", "a/b/c/d", "+/+/+/+",
    ] {
        trie.insert(&filter(f), 1, ());
    }
    assert_eq!(
        matching(&trie, "a/b/c"),
        ["#", "+/b/#", "a/#", "a/+/c", "a/b/c"]
    );
    assert_eq!(matching(&trie, "a/b"), ["#", "+/b/#", "a/#", "a/b"]);
    assert_eq!(matching(&trie, "$a/b"), Vec::<String>::new());
}

#[test]
fn subscribing_again_to_the_same_filter_replaces_the_subscription() {
    // [MQTT-3.8.4-3] a repeated SUBSCRIBE replaces the existing subscription.
    let mut trie = SubscriptionTrie::new();
    assert_eq!(trie.insert(&filter("a/+"), 1, "qos0"), None);
    assert_eq!(trie.insert(&filter("a/+"), 1, "qos2"), Some("qos0"));
    assert_eq!(trie.len(), 1);
    assert_eq!(trie.get(&filter("a/+"), 1), Some(&"qos2"));

    let mut values = Vec::new();
    trie.for_each_match(&name("a/b"), |m| {
        if let Match::Subscriber { key, value, .. } = m {
            values.push((key, *value));
        }
    });
    assert_eq!(values, [(1, "qos2")]);
}

#[test]
fn plain_and_shared_subscriptions_to_one_filter_are_distinct() {
    let mut trie = SubscriptionTrie::new();
    assert_eq!(trie.insert(&filter("a/b"), 1, 0), None);
    assert_eq!(trie.insert(&filter("$share/g/a/b"), 1, 1), None);
    assert_eq!(trie.insert(&filter("$share/h/a/b"), 1, 2), None);
    assert_eq!(trie.len(), 3);
    assert_eq!(trie.get(&filter("a/b"), 1), Some(&0));
    assert_eq!(trie.get(&filter("$share/g/a/b"), 1), Some(&1));
    assert_eq!(trie.get(&filter("$share/h/a/b"), 1), Some(&2));
    assert_eq!(
        matching(&trie, "a/b"),
        ["$share/g/a/b", "$share/h/a/b", "a/b"]
    );
}

#[test]
fn a_share_group_is_reported_once_with_all_its_members() {
    let mut trie = SubscriptionTrie::new();
    for key in [10, 11, 12] {
        trie.insert(&filter("$share/workers/jobs/+"), key, key * 100);
    }
    trie.insert(&filter("$share/auditors/jobs/#"), 20, 2000);
    trie.insert(&filter("jobs/+"), 30, 3000);

    let mut groups = Vec::new();
    let mut plain = Vec::new();
    trie.for_each_match(&name("jobs/build"), |m| match m {
        Match::Subscriber { key, .. } => plain.push(key),
        Match::Shared { filter, group } => {
            let mut members: Vec<(u32, u32)> = group.members().to_vec();
            members.sort_unstable();
            groups.push((filter.to_owned(), group.name().to_owned(), members));
        }
    });
    groups.sort();
    assert_eq!(plain, [30]);
    assert_eq!(
        groups,
        [
            ("jobs/#".to_owned(), "auditors".to_owned(), vec![(20, 2000)]),
            (
                "jobs/+".to_owned(),
                "workers".to_owned(),
                vec![(10, 1000), (11, 1100), (12, 1200)]
            ),
        ]
    );
}

#[test]
fn round_robin_spreads_messages_over_the_group_members() {
    let mut trie = SubscriptionTrie::new();
    for key in [1, 2, 3] {
        trie.insert(&filter("$share/g/t"), key, ());
    }
    let mut picked = Vec::new();
    for _ in 0..6 {
        trie.for_each_match(&name("t"), |m| {
            if let Match::Shared { group, .. } = m {
                picked.extend(group.pick().map(|(key, ())| key));
            }
        });
    }
    assert_eq!(picked.len(), 6);
    for key in [1, 2, 3] {
        assert_eq!(
            picked.iter().filter(|&&k| k == key).count(),
            2,
            "member {key} gets its turn twice"
        );
    }
    assert_ne!(
        picked[0], picked[1],
        "consecutive messages go to different members"
    );
}

#[test]
fn round_robin_order_visits_each_member_once_starting_with_the_next() {
    let mut trie = SubscriptionTrie::new();
    for key in [1, 2, 3, 4] {
        trie.insert(&filter("$share/g/t"), key, ());
    }
    let mut orders = Vec::new();
    for _ in 0..2 {
        trie.for_each_match(&name("t"), |m| {
            if let Match::Shared { group, .. } = m {
                orders.push(group.round_robin().map(|(k, ())| k).collect::<Vec<_>>());
            }
        });
    }
    for order in &orders {
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [1, 2, 3, 4]);
    }
    assert_ne!(
        orders[0][0], orders[1][0],
        "the second message starts with another member"
    );
}

#[test]
fn removing_a_subscription_returns_its_value_and_stops_its_matches() {
    let mut trie = SubscriptionTrie::new();
    trie.insert(&filter("a/+"), 1, "x");
    trie.insert(&filter("a/+"), 2, "y");
    trie.insert(&filter("$share/g/a/+"), 1, "z");
    assert_eq!(trie.remove(&filter("a/+"), 1), Some("x"));
    assert_eq!(trie.remove(&filter("a/+"), 1), None, "already gone");
    assert_eq!(trie.remove(&filter("a/#"), 2), None, "never subscribed");
    assert_eq!(
        trie.remove(&filter("$share/other/a/+"), 1),
        None,
        "wrong group"
    );
    assert_eq!(trie.len(), 2);
    assert_eq!(matching(&trie, "a/b"), ["$share/g/a/+", "a/+"]);
    assert_eq!(trie.remove(&filter("$share/g/a/+"), 1), Some("z"));
    assert_eq!(matching(&trie, "a/b"), ["a/+"]);
    assert_eq!(trie.remove(&filter("a/+"), 2), Some("y"));
    assert!(trie.is_empty());
    assert!(matching(&trie, "a/b").is_empty());
}

#[test]
fn remove_all_drops_every_subscription_of_one_session_only() {
    let mut trie = SubscriptionTrie::new();
    for f in ["a", "a/#", "+/b", "$share/g/a", "#"] {
        trie.insert(&filter(f), 7, ());
    }
    trie.insert(&filter("a"), 8, ());
    trie.insert(&filter("$share/g/a"), 8, ());
    assert_eq!(trie.remove_all(7), 5);
    assert_eq!(trie.remove_all(7), 0);
    assert_eq!(trie.len(), 2);
    assert_eq!(matching(&trie, "a"), ["$share/g/a", "a"]);
}

#[test]
fn retain_can_update_values_and_filter_by_group() {
    let mut trie = SubscriptionTrie::new();
    trie.insert(&filter("a"), 1, 1);
    trie.insert(&filter("$share/g/a"), 2, 1);
    trie.insert(&filter("$share/h/a"), 3, 1);
    let removed = trie.retain(|f, group, _, value| {
        assert_eq!(f, "a");
        *value += 1;
        group != Some("h")
    });
    assert_eq!(removed, 1);
    assert_eq!(trie.get(&filter("a"), 1), Some(&2));
    assert_eq!(trie.get(&filter("$share/g/a"), 2), Some(&2));
    assert_eq!(trie.get(&filter("$share/h/a"), 3), None);
}

#[test]
fn many_subscribers_on_one_filter_are_all_reported() {
    let mut trie = SubscriptionTrie::new();
    for key in 0..1000 {
        trie.insert(&filter("news/#"), key, ());
    }
    for key in (0..1000).step_by(2) {
        assert_eq!(trie.remove(&filter("news/#"), key), Some(()));
    }
    let mut keys = Vec::new();
    trie.for_each_match(&name("news/today"), |m| {
        if let Match::Subscriber { key, .. } = m {
            keys.push(key);
        }
    });
    keys.sort_unstable();
    assert_eq!(keys, (1..1000).step_by(2).collect::<Vec<_>>());
}

#[test]
fn filters_and_topics_of_maximum_depth_do_not_exhaust_a_small_stack() {
    // 65535 bytes of `/`: the deepest filter a peer can send, with 65536
    // empty levels. Matching, removal and drop must not recurse.
    let deep = "/".repeat(usize::from(u16::MAX));
    let worker = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let shorter = &deep[1..]; // 65535 empty levels
            let mut trie = SubscriptionTrie::new();
            trie.insert(&filter(&deep), 0, ());
            trie.insert(&filter(shorter), 1, ());
            trie.insert(&filter(&format!("{shorter}#")), 2, ());
            trie.insert(&filter(&format!("{shorter}+")), 3, ());
            let mut keys = Vec::new();
            trie.for_each_match(&name(shorter), |m| {
                if let Match::Subscriber { key, .. } = m {
                    keys.push(key);
                }
            });
            keys.sort_unstable();
            assert_eq!(keys, [1, 2, 3]);
            assert_eq!(trie.remove(&filter(shorter), 1), Some(()));
            assert_eq!(trie.remove_all(2), 1);
            assert_eq!(trie.len(), 2);
            drop(trie);
        });
    worker.unwrap().join().unwrap();
}
