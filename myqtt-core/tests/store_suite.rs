//! The one store test suite, run against every backend: memory, redb and
//! (feature `sled`) sled. Restart tests run against the disk backends.

mod store_common;

use std::sync::Arc;

use bytes::Bytes;
use myqtt_core::ByteStr;
use myqtt_core::codec::{
    LastWill, PacketId, ProtocolVersion, PublishProperties, QoS, RetainHandling,
    SubscriptionOptions, WillProperties,
};
use myqtt_core::store::{
    IncomingRecord, InflightState, Op, OpOutcome, QueuedDelivery, QuotaKind, QuotaPolicy, Quotas,
    Refusal, SessionKey, SessionRecord, Side, Store, StoredMessage, SubscriptionRecord, Timestamp,
    WillRecord,
};
use myqtt_core::topic::{TopicFilter, TopicName};
use store_common::{T0, apply, message, publish, put_with};

fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero")
}

fn session(key: &SessionKey, expiry: u32, disconnected: Option<Timestamp>) -> SessionRecord {
    SessionRecord {
        key: key.clone(),
        protocol: ProtocolVersion::V5,
        expiry_interval: expiry,
        disconnected_at: disconnected,
    }
}

fn subscription(filter: &str, qos: QoS, identifier: Option<u32>) -> SubscriptionRecord {
    SubscriptionRecord {
        filter: TopicFilter::new(filter).expect("valid filter"),
        options: SubscriptionOptions {
            qos,
            no_local: true,
            retain_as_published: true,
            retain_handling: RetainHandling::SendAtSubscribeIfNew,
        },
        identifier,
    }
}

fn will(client: &str, due: Timestamp) -> WillRecord {
    WillRecord {
        client_id: ByteStr::from(client),
        will: LastWill {
            topic: TopicName::new("wills/gone").expect("valid topic"),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: WillProperties {
                will_delay_interval: Some(30),
                content_type: Some(ByteStr::from("text/plain")),
                ..WillProperties::default()
            },
        },
        due_at: due,
    }
}

fn payloads(store: &dyn Store, key: &SessionKey) -> Vec<Bytes> {
    store
        .queue(key)
        .expect("read queue")
        .into_iter()
        .map(|q| q.message.publish.payload)
        .collect()
}

fn enqueue_new(store: &dyn Store, key: &SessionKey, payload: &[u8]) -> OpOutcome {
    let key = key.clone();
    let (_, out) = put_with(store, message("q/t", payload), |id| {
        vec![Op::Enqueue {
            key,
            message: id,
            delivery: None,
        }]
    });
    out[1].clone()
}

// --- the shared suite -----------------------------------------------------

fn session_records_round_trip_with_expiry_counting_from_disconnect(s: &dyn Store) {
    let a = SessionKey::broker("a");
    let b = SessionKey::broker("b");
    let gone = Timestamp::from_unix_millis(10_000);
    apply(
        s,
        vec![
            Op::PutSession(session(&a, 60, Some(gone))),
            Op::PutSession(session(&b, u32::MAX, None)),
        ],
    );
    let got = s.session(&a).expect("read").expect("present");
    assert_eq!(got, session(&a, 60, Some(gone)));
    // MQTT 5.0 §3.1.2.11.2: expiry counts from the disconnect.
    assert_eq!(got.expires_at(), Some(Timestamp::from_unix_millis(70_000)));
    assert_eq!(
        s.session(&b).expect("read").expect("present").expires_at(),
        None
    );
    let all = s.sessions(Side::Broker).expect("read");
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].key, a);
    assert!(s.sessions(Side::Client).expect("read").is_empty());
}

fn subscriptions_keep_options_and_identifier(s: &dyn Store) {
    let k = SessionKey::broker("sub");
    apply(
        s,
        vec![
            Op::PutSubscription {
                key: k.clone(),
                subscription: subscription("a/+", QoS::ExactlyOnce, Some(7)),
            },
            Op::PutSubscription {
                key: k.clone(),
                subscription: subscription("$share/g/b/#", QoS::AtLeastOnce, None),
            },
        ],
    );
    let subs = s.subscriptions(&k).expect("read");
    assert_eq!(
        subs,
        vec![
            subscription("$share/g/b/#", QoS::AtLeastOnce, None),
            subscription("a/+", QoS::ExactlyOnce, Some(7)),
        ]
    );
    let out = apply(
        s,
        vec![
            Op::RemoveSubscription {
                key: k.clone(),
                filter: TopicFilter::new("a/+").expect("valid"),
            },
            Op::RemoveSubscription {
                key: k.clone(),
                filter: TopicFilter::new("never/made").expect("valid"),
            },
        ],
    );
    assert_eq!(out, vec![OpOutcome::Done, OpOutcome::NotFound]);
    assert_eq!(s.subscriptions(&k).expect("read").len(), 1);
}

fn a_queue_keeps_its_order_and_dequeue_removes_one_entry(s: &dyn Store) {
    let k = SessionKey::broker("q");
    let mut seqs = Vec::new();
    for i in 0u8..5 {
        match enqueue_new(s, &k, &[i]) {
            OpOutcome::Enqueued { seq, dropped } => {
                assert!(dropped.is_empty());
                seqs.push(seq);
            }
            other => panic!("enqueue refused: {other:?}"),
        }
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(
        payloads(s, &k),
        (0u8..5).map(|i| Bytes::from(vec![i])).collect::<Vec<_>>()
    );
    let out = apply(
        s,
        vec![
            Op::Dequeue {
                key: k.clone(),
                seq: seqs[2],
            },
            Op::Dequeue {
                key: k.clone(),
                seq: seqs[2],
            },
        ],
    );
    assert_eq!(out, vec![OpOutcome::Done, OpOutcome::NotFound]);
    assert_eq!(
        payloads(s, &k),
        [0u8, 1, 3, 4].map(|i| Bytes::from(vec![i]))
    );
    assert_eq!(s.queue_len(&k).0, 4);
    assert_eq!(s.stats().queued, 4);
    assert_eq!(
        s.stats().messages,
        4,
        "a dequeued message is deleted with its last reference"
    );
}

fn a_message_shared_by_several_queues_is_stored_once(s: &dyn Store) {
    let keys: Vec<SessionKey> = ["x", "y", "z"]
        .into_iter()
        .map(SessionKey::broker)
        .collect();
    let ks = keys.clone();
    let (id, out) = put_with(s, message("fan/out", b"one payload"), move |id| {
        ks.into_iter()
            .map(|key| Op::Enqueue {
                key,
                message: id,
                delivery: None,
            })
            .collect()
    });
    assert!(out.iter().all(OpOutcome::is_applied), "{out:?}");
    assert_eq!(s.stats().messages, 1);
    assert_eq!(s.stats().queued, 3);
    for key in &keys {
        let q = s.queue(key).expect("read");
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].message_id, id);
        assert_eq!(q[0].message, message("fan/out", b"one payload"));
    }
    let seqs: Vec<u64> = keys
        .iter()
        .map(|k| s.queue(k).expect("read")[0].seq)
        .collect();
    apply(
        s,
        vec![Op::Dequeue {
            key: keys[0].clone(),
            seq: seqs[0],
        }],
    );
    apply(
        s,
        vec![Op::Dequeue {
            key: keys[1].clone(),
            seq: seqs[1],
        }],
    );
    assert_eq!(s.stats().messages, 1, "still referenced by z");
    apply(
        s,
        vec![Op::Dequeue {
            key: keys[2].clone(),
            seq: seqs[2],
        }],
    );
    assert_eq!(s.stats().messages, 0);
    assert_eq!(s.stats().message_bytes, 0);
}

fn a_message_nothing_refers_to_is_not_kept(s: &dyn Store) {
    let (_, out) = put_with(s, message("lonely", b"x"), |_| Vec::new());
    assert_eq!(out, vec![OpOutcome::Done]);
    assert_eq!(s.stats().messages, 0);
}

fn inflight_keeps_first_send_order_across_state_changes_and_packet_id_wrap(s: &dyn Store) {
    let k = SessionKey::broker("inf");
    let mut ids = Vec::new();
    // Packet ids wrap: 65535 is sent before 1 and 2.
    for (n, p) in [(65535u16, b"first"), (1, b"secnd"), (2, b"third")] {
        let key = k.clone();
        let (id, out) = put_with(s, message("i/t", p), move |id| {
            vec![Op::PutInflight {
                key,
                packet_id: pid(n),
                state: InflightState::AwaitingPubRec,
                message: Some(id),
            }]
        });
        assert!(out.iter().all(OpOutcome::is_applied));
        ids.push(id);
    }
    // PUBREC for 65535: the message is no longer needed.
    apply(
        s,
        vec![Op::PutInflight {
            key: k.clone(),
            packet_id: pid(65535),
            state: InflightState::AwaitingPubComp,
            message: None,
        }],
    );
    let inflight = s.inflight(&k).expect("read");
    let order: Vec<u16> = inflight.iter().map(|r| r.packet_id.get()).collect();
    assert_eq!(order, vec![65535, 1, 2]);
    assert_eq!(inflight[0].state, InflightState::AwaitingPubComp);
    assert_eq!(inflight[0].message, None);
    assert_eq!(
        s.stats().messages,
        2,
        "the PUBCOMP-awaiting message was released"
    );
    // [MQTT-4.4.0-1] resent with DUP and the original packet id.
    let resend = inflight[1]
        .message
        .as_ref()
        .expect("message")
        .publish
        .clone();
    assert!(resend.dup);
    assert_eq!(resend.packet_id, Some(pid(1)));
    assert_eq!(resend.payload, Bytes::from_static(b"secnd"));
    assert_eq!(inflight[1].message_id, Some(ids[1]));
    let out = apply(
        s,
        vec![
            Op::RemoveInflight {
                key: k.clone(),
                packet_id: pid(65535),
            },
            Op::RemoveInflight {
                key: k.clone(),
                packet_id: pid(1),
            },
            Op::RemoveInflight {
                key: k.clone(),
                packet_id: pid(9),
            },
        ],
    );
    assert_eq!(
        out,
        vec![OpOutcome::Done, OpOutcome::Done, OpOutcome::NotFound]
    );
    assert_eq!(s.inflight(&k).expect("read").len(), 1);
    assert_eq!(s.stats().messages, 1);
}

fn moving_a_message_from_queue_to_inflight_in_one_batch_keeps_it(s: &dyn Store) {
    let k = SessionKey::broker("mover");
    let OpOutcome::Enqueued { seq, .. } = enqueue_new(s, &k, b"move me") else {
        panic!("enqueue refused");
    };
    let id = s.queue(&k).expect("read")[0].message_id;
    let out = apply(
        s,
        vec![
            Op::Dequeue {
                key: k.clone(),
                seq,
            },
            Op::PutInflight {
                key: k.clone(),
                packet_id: pid(4),
                state: InflightState::AwaitingPubAck,
                message: Some(id),
            },
        ],
    );
    assert_eq!(out, vec![OpOutcome::Done, OpOutcome::Done]);
    assert!(s.queue(&k).expect("read").is_empty());
    let inflight = s.inflight(&k).expect("read");
    assert_eq!(
        inflight[0].message.as_ref().expect("kept").publish.payload,
        "move me"
    );
}

fn incoming_qos2_packet_ids_are_kept_until_pubrel(s: &dyn Store) {
    // [MQTT-4.3.3-10]: until PUBREL, a PUBLISH with the same id is not
    // delivered again, so the ids must survive.
    let k = SessionKey::broker("pub2");
    let rec = |n| IncomingRecord {
        packet_id: pid(n),
        received_at: T0,
    };
    apply(
        s,
        vec![
            Op::PutIncoming {
                key: k.clone(),
                record: rec(10),
            },
            Op::PutIncoming {
                key: k.clone(),
                record: rec(3),
            },
        ],
    );
    assert_eq!(s.incoming(&k).expect("read"), vec![rec(3), rec(10)]);
    let out = apply(
        s,
        vec![
            Op::RemoveIncoming {
                key: k.clone(),
                packet_id: pid(3),
            },
            Op::RemoveIncoming {
                key: k.clone(),
                packet_id: pid(3),
            },
        ],
    );
    assert_eq!(out, vec![OpOutcome::Done, OpOutcome::NotFound]);
    assert_eq!(s.incoming(&k).expect("read"), vec![rec(10)]);
}

fn retained_messages_are_replaced_and_removed_by_topic(s: &dyn Store) {
    let mut m1 = message("r/a", b"one");
    m1.publish.retain = true;
    let m2 = message("r/a", b"two");
    let m3 = message("r/b", b"three");
    apply(s, vec![Op::PutRetained(m1), Op::PutRetained(m3.clone())]);
    apply(s, vec![Op::PutRetained(m2.clone())]);
    assert_eq!(s.retained().expect("read"), vec![m2, m3.clone()]);
    let out = apply(
        s,
        vec![
            Op::RemoveRetained(TopicName::new("r/a").expect("valid")),
            Op::RemoveRetained(TopicName::new("r/none").expect("valid")),
        ],
    );
    assert_eq!(out, vec![OpOutcome::Done, OpOutcome::NotFound]);
    assert_eq!(s.retained().expect("read"), vec![m3]);
    assert_eq!(s.stats().retained, 1);
}

fn message_properties_and_received_time_survive_so_expiry_keeps_counting(s: &dyn Store) {
    let mut p = publish("props/t", b"payload", QoS::ExactlyOnce);
    p.retain = true;
    p.properties = PublishProperties {
        payload_format_indicator: Some(true),
        message_expiry_interval: Some(100),
        topic_alias: None,
        response_topic: Some(TopicName::new("reply/here").expect("valid")),
        correlation_data: Some(Bytes::from_static(b"\x00\x01")),
        user_properties: vec![
            (ByteStr::from("k"), ByteStr::from("v")),
            (ByteStr::from("k"), ByteStr::from("w")),
        ],
        subscription_identifiers: vec![7],
        content_type: Some(ByteStr::from("application/json")),
    }
    .into();
    let m = StoredMessage::new(p, T0);
    apply(s, vec![Op::PutRetained(m.clone())]);
    let got = s.retained().expect("read").pop().expect("one");
    assert_eq!(got, m);
    // [MQTT-3.3.2-6] 40 s after receipt, 60 s of the 100 are left.
    assert_eq!(got.remaining_expiry(T0.plus_secs(40)), Some(60));
    assert!(got.is_expired(T0.plus_secs(100)));
}

fn a_topic_alias_is_not_stored(s: &dyn Store) {
    let mut m = message("alias/t", b"x");
    m.publish.properties.make_mut().topic_alias = Some(3);
    apply(s, vec![Op::PutRetained(m)]);
    let got = s.retained().expect("read").pop().expect("one");
    assert_eq!(got.publish.properties.topic_alias, None);
    assert_eq!(got.publish.topic.as_str(), "alias/t");
}

fn wills_round_trip_with_their_due_time(s: &dyn Store) {
    let due = T0.plus_secs(30);
    apply(
        s,
        vec![
            Op::PutWill(Box::new(will("w1", due))),
            Op::PutWill(Box::new(will("w2", due))),
        ],
    );
    assert_eq!(
        s.wills().expect("read"),
        vec![will("w1", due), will("w2", due)]
    );
    let out = apply(
        s,
        vec![
            Op::RemoveWill(ByteStr::from("w1")),
            Op::RemoveWill(ByteStr::from("w1")),
        ],
    );
    assert_eq!(out, vec![OpOutcome::Done, OpOutcome::NotFound]);
    assert_eq!(s.wills().expect("read"), vec![will("w2", due)]);
}

fn remove_session_deletes_that_clients_records_only(s: &dyn Store) {
    let gone = SessionKey::broker("gone");
    let stays = SessionKey::broker("gone2"); // its id extends the other's
    for k in [&gone, &stays] {
        apply(
            s,
            vec![
                Op::PutSession(session(k, 10, None)),
                Op::PutIncoming {
                    key: k.clone(),
                    record: IncomingRecord {
                        packet_id: pid(1),
                        received_at: T0,
                    },
                },
            ],
        );
        enqueue_new(s, k, b"queued");
        let key = k.clone();
        put_with(s, message("t", b"inflight"), move |id| {
            vec![Op::PutInflight {
                key,
                packet_id: pid(1),
                state: InflightState::AwaitingPubAck,
                message: Some(id),
            }]
        });
    }
    apply(s, vec![Op::PutWill(Box::new(will("gone", T0)))]);
    // A subscription written in the same transaction goes too.
    let out = apply(
        s,
        vec![
            Op::PutSubscription {
                key: gone.clone(),
                subscription: subscription("a", QoS::AtMostOnce, None),
            },
            Op::RemoveSession(gone.clone()),
            Op::RemoveSession(SessionKey::broker("never")),
        ],
    );
    assert_eq!(out[1..], [OpOutcome::Done, OpOutcome::NotFound]);
    assert_eq!(s.session(&gone).expect("read"), None);
    assert!(s.subscriptions(&gone).expect("read").is_empty());
    assert!(s.incoming(&gone).expect("read").is_empty());
    assert!(s.queue(&gone).expect("read").is_empty());
    assert!(s.inflight(&gone).expect("read").is_empty());
    assert_eq!(
        s.wills().expect("read").len(),
        1,
        "the will is the listener's to handle"
    );
    assert!(s.session(&stays).expect("read").is_some());
    assert_eq!(s.queue(&stays).expect("read").len(), 1);
    assert_eq!(s.inflight(&stays).expect("read").len(), 1);
    assert_eq!(s.incoming(&stays).expect("read").len(), 1);
    assert_eq!(
        s.stats().messages,
        2,
        "the removed client's messages are deleted"
    );
    assert_eq!(
        s.clients(Side::Broker).expect("read"),
        vec![ByteStr::from("gone2")]
    );
}

fn broker_and_client_sides_never_mix(s: &dyn Store) {
    let broker = SessionKey::broker("same-id");
    let client = SessionKey::client("same-id");
    enqueue_new(s, &broker, b"for the subscriber");
    enqueue_new(s, &client, b"offline publish");
    assert_eq!(
        payloads(s, &broker),
        vec![Bytes::from_static(b"for the subscriber")]
    );
    assert_eq!(
        payloads(s, &client),
        vec![Bytes::from_static(b"offline publish")]
    );
    apply(s, vec![Op::RemoveSession(broker.clone())]);
    assert_eq!(payloads(s, &client).len(), 1);
    let loaded = s.load(Side::Client).expect("load");
    assert_eq!(loaded.sessions.len(), 1);
    assert_eq!(loaded.sessions[0].key, client);
}

fn load_brings_back_everything_of_a_side(s: &dyn Store) {
    let k = SessionKey::broker("all");
    apply(
        s,
        vec![
            Op::PutSession(session(&k, 5, Some(T0))),
            Op::PutSubscription {
                key: k.clone(),
                subscription: subscription("x/#", QoS::AtLeastOnce, Some(1)),
            },
            Op::PutIncoming {
                key: k.clone(),
                record: IncomingRecord {
                    packet_id: pid(8),
                    received_at: T0,
                },
            },
            Op::PutRetained(message("ret", b"r")),
            Op::PutWill(Box::new(will("all", T0))),
        ],
    );
    enqueue_new(s, &k, b"q1");
    enqueue_new(s, &k, b"q2");
    let key = k.clone();
    put_with(s, message("t", b"i1"), move |id| {
        vec![Op::PutInflight {
            key,
            packet_id: pid(5),
            state: InflightState::AwaitingPubAck,
            message: Some(id),
        }]
    });
    let loaded = s.load(Side::Broker).expect("load");
    assert_eq!(loaded.sessions.len(), 1);
    let one = &loaded.sessions[0];
    assert_eq!(one.session, Some(session(&k, 5, Some(T0))));
    assert_eq!(one.subscriptions.len(), 1);
    assert_eq!(one.incoming.len(), 1);
    assert_eq!(
        one.queue
            .iter()
            .map(|q| q.message.publish.payload.clone())
            .collect::<Vec<_>>(),
        ["q1", "q2"]
    );
    assert_eq!(one.inflight.len(), 1);
    assert_eq!(loaded.retained, vec![message("ret", b"r")]);
    assert_eq!(loaded.wills, vec![will("all", T0)]);
}

fn malformed_ops_are_refused_without_failing_the_transaction(s: &dyn Store) {
    let k = SessionKey::broker("bad");
    let unknown = s.new_message_id();
    let mut aliased = message("x", b"x");
    aliased.publish.topic = TopicName::empty_for_alias();
    aliased.publish.properties.make_mut().topic_alias = Some(1);
    let out = apply(
        s,
        vec![
            Op::Enqueue {
                key: k.clone(),
                message: unknown,
                delivery: None,
            },
            Op::PutInflight {
                key: k.clone(),
                packet_id: pid(1),
                state: InflightState::AwaitingPubAck,
                message: None,
            },
            Op::PutMessage {
                id: s.new_message_id(),
                message: aliased,
            },
            Op::PutSession(session(&k, 1, None)),
        ],
    );
    assert_eq!(out[0], OpOutcome::Refused(Refusal::UnknownMessage(unknown)));
    assert!(matches!(out[1], OpOutcome::Refused(Refusal::Invalid(_))));
    assert!(matches!(out[2], OpOutcome::Refused(Refusal::Invalid(_))));
    assert_eq!(out[3], OpOutcome::Done);
    assert!(s.session(&k).expect("read").is_some());
}

fn a_full_queue_refuses_new_messages_by_default(s: &dyn Store) {
    s.set_quotas(Quotas {
        max_queued_messages: 2,
        ..Quotas::default()
    });
    let k = SessionKey::broker("full");
    assert!(enqueue_new(s, &k, b"1").is_applied());
    assert!(enqueue_new(s, &k, b"2").is_applied());
    let out = enqueue_new(s, &k, b"3");
    assert_eq!(
        out,
        OpOutcome::Refused(Refusal::Quota {
            kind: QuotaKind::QueuedMessages,
            dropped: Vec::new()
        })
    );
    assert_eq!(payloads(s, &k), ["1", "2"]);
    assert_eq!(s.stats().refused, 1);
    assert_eq!(s.stats().messages, 2, "the refused message is not kept");
    // Another client's queue is not affected.
    assert!(enqueue_new(s, &SessionKey::broker("other"), b"x").is_applied());
}

fn drop_oldest_makes_room_and_reports_what_it_dropped(s: &dyn Store) {
    s.set_quotas(Quotas {
        max_queued_messages: 2,
        policy: QuotaPolicy::DropOldest,
        ..Quotas::default()
    });
    let k = SessionKey::broker("drop");
    let OpOutcome::Enqueued { seq: first, .. } = enqueue_new(s, &k, b"1") else {
        panic!("refused")
    };
    enqueue_new(s, &k, b"2");
    let out = enqueue_new(s, &k, b"3");
    let dropped = out.dropped();
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].key, k);
    assert_eq!(dropped[0].seq, first);
    assert_eq!(dropped[0].reason, QuotaKind::QueuedMessages);
    assert_eq!(payloads(s, &k), ["2", "3"]);
    assert_eq!(s.stats().dropped, 1);
    assert_eq!(s.stats().messages, 2);
}

fn queued_bytes_quota_counts_message_sizes(s: &dyn Store) {
    let k = SessionKey::broker("bytes");
    enqueue_new(s, &k, &[0; 100]);
    let (_, one) = s.queue_len(&k);
    assert!(one > 100, "a message costs its stored size");
    s.set_quotas(Quotas {
        max_queued_bytes: one * 2,
        ..Quotas::default()
    });
    assert!(enqueue_new(s, &k, &[1; 100]).is_applied());
    assert!(matches!(
        enqueue_new(s, &k, &[2; 100]),
        OpOutcome::Refused(Refusal::Quota {
            kind: QuotaKind::QueuedBytes,
            ..
        })
    ));
    // Larger than the whole quota: refused even when dropping is allowed.
    s.set_quotas(Quotas {
        max_queued_bytes: one * 2,
        policy: QuotaPolicy::DropOldest,
        ..Quotas::default()
    });
    assert!(matches!(
        enqueue_new(s, &k, &[3; 400]),
        OpOutcome::Refused(Refusal::Quota { kind: QuotaKind::QueuedBytes, ref dropped }) if dropped.is_empty()
    ));
    assert_eq!(s.queue_len(&k), (2, one * 2));
}

fn store_quota_drops_the_oldest_entries_of_all_queues(s: &dyn Store) {
    let a = SessionKey::broker("a");
    let b = SessionKey::broker("b");
    enqueue_new(s, &a, &[1; 50]);
    enqueue_new(s, &b, &[2; 50]);
    let full = s.stats().message_bytes;
    s.set_quotas(Quotas {
        max_store_bytes: full,
        policy: QuotaPolicy::DropOldest,
        ..Quotas::default()
    });
    let out = enqueue_new(s, &b, &[3; 50]);
    assert!(out.is_applied(), "{out:?}");
    assert_eq!(out.dropped().len(), 1);
    assert_eq!(
        out.dropped()[0].key,
        a,
        "a's entry was the oldest of the store"
    );
    assert_eq!(out.dropped()[0].reason, QuotaKind::StoreBytes);
    assert!(s.queue(&a).expect("read").is_empty());
    assert_eq!(s.queue(&b).expect("read").len(), 2);
    assert!(s.stats().message_bytes <= full);
}

fn retained_messages_past_the_store_quota_are_refused(s: &dyn Store) {
    apply(s, vec![Op::PutRetained(message("r/1", &[0; 50]))]);
    let one = s.stats().retained_bytes;
    s.set_quotas(Quotas {
        max_store_bytes: one,
        policy: QuotaPolicy::DropOldest,
        ..Quotas::default()
    });
    let out = apply(s, vec![Op::PutRetained(message("r/2", &[0; 50]))]);
    assert!(matches!(
        out[0],
        OpOutcome::Refused(Refusal::Quota {
            kind: QuotaKind::StoreBytes,
            ..
        })
    ));
    // Replacing with a message of the same size is accepted.
    let out = apply(s, vec![Op::PutRetained(message("r/1", &[9; 50]))]);
    assert_eq!(out, vec![OpOutcome::Done]);
    // And nothing can be queued: the retained message fills the store.
    assert!(matches!(
        enqueue_new(s, &SessionKey::broker("c"), b"x"),
        OpOutcome::Refused(Refusal::Quota { kind: QuotaKind::StoreBytes, ref dropped }) if dropped.is_empty()
    ));
}

fn message_ids_are_never_repeated(s: &dyn Store) {
    let ids: Vec<u64> = (0..100).map(|_| s.new_message_id().get()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), ids.len());
}

/// `DequeueMessage` finds an entry by message wherever it is: a
/// subscriber may acknowledge in any order (here in reverse, the worst
/// case for a look from the front, and then with a message queued twice,
/// whose oldest entry goes first).
fn dequeue_by_message_finds_entries_acknowledged_in_any_order(s: &dyn Store) {
    let k = SessionKey::broker("acks");
    let mut ids = Vec::new();
    for i in 0..200 {
        let (id, out) = put_with(s, message("q/t", format!("{i}").as_bytes()), |id| {
            vec![Op::Enqueue {
                key: k.clone(),
                message: id,
                delivery: None,
            }]
        });
        assert!(matches!(out[1], OpOutcome::Enqueued { .. }), "{out:?}");
        ids.push(id);
    }
    let dequeue = |id| Op::DequeueMessage {
        key: k.clone(),
        message: id,
    };
    // The newest first, in three transactions.
    for chunk in ids[100..].rchunks(40) {
        let ops: Vec<Op> = chunk.iter().rev().map(|&id| dequeue(id)).collect();
        let out = apply(s, ops);
        assert!(out.iter().all(|o| *o == OpOutcome::Done), "{out:?}");
    }
    let left: Vec<Bytes> = (0..100).map(|i| Bytes::from(format!("{i}"))).collect();
    assert_eq!(payloads(s, &k), left);
    // Gone already: not found again.
    assert_eq!(apply(s, vec![dequeue(ids[150])]), [OpOutcome::NotFound]);
    // A message queued twice for the client, behind the 100 left.
    let (twice, _) = put_with(s, message("q/t", b"twice"), |id| {
        vec![
            Op::Enqueue {
                key: k.clone(),
                message: id,
                delivery: None,
            },
            Op::Enqueue {
                key: k.clone(),
                message: id,
                delivery: None,
            },
        ]
    });
    let out = apply(s, vec![dequeue(ids[99]), dequeue(twice), dequeue(ids[50])]);
    assert!(out.iter().all(|o| *o == OpOutcome::Done), "{out:?}");
    let mut left: Vec<Bytes> = (0..99)
        .filter(|&i| i != 50)
        .map(|i| Bytes::from(format!("{i}")))
        .collect();
    left.push(Bytes::from_static(b"twice"));
    assert_eq!(
        payloads(s, &k),
        left,
        "one entry of the message queued twice is left"
    );
    assert_eq!(apply(s, vec![dequeue(twice)]), [OpOutcome::Done]);
    left.pop();
    assert_eq!(payloads(s, &k), left);
    for &id in ids[..99].iter().rev() {
        let expect = if id == ids[50] {
            OpOutcome::NotFound
        } else {
            OpOutcome::Done
        };
        assert_eq!(apply(s, vec![dequeue(id)]), [expect]);
    }
    assert!(payloads(s, &k).is_empty());
    assert_eq!(s.stats().messages, 0);
}

macro_rules! shared_suite {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $( #[test] fn $name() { let f = super::store_common::memory(); super::$name(&*f.store); } )*
        }
        mod redb {
            $( #[test] fn $name() { let f = super::store_common::redb(); super::$name(&*f.store); } )*
        }
        #[cfg(feature = "sled")]
        mod sled {
            $( #[test] fn $name() { let f = super::store_common::sled(); super::$name(&*f.store); } )*
        }
    };
}

shared_suite!(
    session_records_round_trip_with_expiry_counting_from_disconnect,
    subscriptions_keep_options_and_identifier,
    a_queue_keeps_its_order_and_dequeue_removes_one_entry,
    a_message_shared_by_several_queues_is_stored_once,
    a_message_nothing_refers_to_is_not_kept,
    inflight_keeps_first_send_order_across_state_changes_and_packet_id_wrap,
    moving_a_message_from_queue_to_inflight_in_one_batch_keeps_it,
    incoming_qos2_packet_ids_are_kept_until_pubrel,
    retained_messages_are_replaced_and_removed_by_topic,
    message_properties_and_received_time_survive_so_expiry_keeps_counting,
    a_topic_alias_is_not_stored,
    wills_round_trip_with_their_due_time,
    remove_session_deletes_that_clients_records_only,
    broker_and_client_sides_never_mix,
    load_brings_back_everything_of_a_side,
    malformed_ops_are_refused_without_failing_the_transaction,
    a_full_queue_refuses_new_messages_by_default,
    drop_oldest_makes_room_and_reports_what_it_dropped,
    queued_bytes_quota_counts_message_sizes,
    store_quota_drops_the_oldest_entries_of_all_queues,
    retained_messages_past_the_store_quota_are_refused,
    message_ids_are_never_repeated,
    dequeue_by_message_finds_entries_acknowledged_in_any_order,
);

// --- restart: disk backends only --------------------------------------------

type Opener = dyn Fn() -> Arc<dyn Store>;

fn everything_comes_back_after_a_restart_in_order(open: &Opener) {
    let k = SessionKey::broker("persist");
    let c = SessionKey::client("me");
    let before = {
        let s = open();
        apply(
            &*s,
            vec![
                Op::PutSession(session(&k, 3600, Some(T0))),
                Op::PutSubscription {
                    key: k.clone(),
                    subscription: subscription("a/#", QoS::ExactlyOnce, Some(9)),
                },
                Op::PutIncoming {
                    key: k.clone(),
                    record: IncomingRecord {
                        packet_id: pid(77),
                        received_at: T0,
                    },
                },
                Op::PutRetained(message("ret/1", b"kept")),
                Op::PutWill(Box::new(will("persist", T0.plus_secs(5)))),
            ],
        );
        for i in 0u8..20 {
            enqueue_new(&*s, &k, &[i]);
            enqueue_new(&*s, &c, &[100 + i]);
        }
        for n in [3u16, 1, 2] {
            let key = k.clone();
            put_with(&*s, message("t", &n.to_be_bytes()), move |id| {
                vec![Op::PutInflight {
                    key,
                    packet_id: pid(n),
                    state: InflightState::AwaitingPubAck,
                    message: Some(id),
                }]
            });
        }
        (
            s.load(Side::Broker).expect("load"),
            s.load(Side::Client).expect("load"),
            s.stats(),
            s.queue_len(&k),
        )
    };
    let s = open();
    let after = (
        s.load(Side::Broker).expect("load"),
        s.load(Side::Client).expect("load"),
        s.stats(),
    );
    assert_eq!(after.0, before.0);
    assert_eq!(after.1, before.1);
    let inflight: Vec<u16> = after.0.sessions[0]
        .inflight
        .iter()
        .map(|r| r.packet_id.get())
        .collect();
    assert_eq!(inflight, vec![3, 1, 2], "in-flight order survives");
    assert_eq!(after.0.sessions[0].queue.len(), 20);
    assert_eq!(after.2.messages, before.2.messages);
    assert_eq!(after.2.message_bytes, before.2.message_bytes);
    assert_eq!(after.2.queued, before.2.queued);
    assert_eq!(after.2.retained_bytes, before.2.retained_bytes);
    assert_eq!(s.queue_len(&k), before.3, "quota accounting is rebuilt");
    assert_eq!(before.3.0, 20);
    // New entries go after the old ones, new message ids are fresh.
    let last = after.0.sessions[0].queue.last().expect("queued").seq;
    let OpOutcome::Enqueued { seq, .. } = enqueue_new(&*s, &k, b"after restart") else {
        panic!("refused")
    };
    assert!(seq > last);
    let newest = s
        .queue(&k)
        .expect("read")
        .last()
        .expect("queued")
        .message_id;
    let all_ids: Vec<_> = after.0.sessions[0]
        .queue
        .iter()
        .map(|q| q.message_id)
        .collect();
    assert!(!all_ids.contains(&newest));
}

fn quotas_apply_to_what_was_stored_before_a_restart(open: &Opener) {
    let k = SessionKey::broker("quota");
    {
        let s = open();
        for i in 0u8..3 {
            enqueue_new(&*s, &k, &[i]);
        }
    }
    let s = open();
    s.set_quotas(Quotas {
        max_queued_messages: 3,
        policy: QuotaPolicy::DropOldest,
        ..Quotas::default()
    });
    let out = enqueue_new(&*s, &k, b"new");
    assert_eq!(out.dropped().len(), 1);
    assert_eq!(payloads(&*s, &k), [&[1u8][..], &[2], b"new"]);
}

fn removals_survive_a_restart(open: &Opener) {
    let k = SessionKey::broker("rm");
    {
        let s = open();
        let OpOutcome::Enqueued { seq, .. } = enqueue_new(&*s, &k, b"acked") else {
            panic!("refused")
        };
        enqueue_new(&*s, &k, b"pending");
        apply(
            &*s,
            vec![Op::Dequeue {
                key: k.clone(),
                seq,
            }],
        );
    }
    let s = open();
    assert_eq!(payloads(&*s, &k), ["pending"]);
    assert_eq!(s.stats().messages, 1);
}

fn a_queue_entry_keeps_its_delivery_qos_retain_flag_and_subscription_ids(open: &Opener) {
    let k = SessionKey::broker("deliv");
    // [MQTT-3.8.4-8]: QoS 1 granted for a QoS 2 message; Retain As
    // Published [MQTT-3.3.1-12] kept the RETAIN flag; two matching
    // subscriptions' identifiers [MQTT-3.3.4-3].
    let d = QueuedDelivery {
        qos: QoS::AtLeastOnce,
        retain: true,
        subscription_ids: vec![3, 70_000],
    };
    {
        let s = open();
        let mut m = message("q/t", b"kept");
        m.publish.qos = QoS::ExactlyOnce;
        let (_, out) = put_with(&*s, m, |id| {
            vec![Op::Enqueue {
                key: k.clone(),
                message: id,
                delivery: Some(d.clone()),
            }]
        });
        assert!(matches!(out[1], OpOutcome::Enqueued { .. }), "{out:?}");
        enqueue_new(&*s, &k, b"plain");
    }
    let s = open();
    let q = s.queue(&k).expect("read queue");
    assert_eq!(q.len(), 2);
    assert_eq!(q[0].delivery.as_ref(), Some(&d));
    assert_eq!(q[0].message.publish.qos, QoS::ExactlyOnce);
    assert_eq!(q[1].delivery, None, "an entry queued without a delivery");
}

/// Long runs of deletes in one transaction (a subscriber acknowledging a
/// burst; redb removes a dense run with one walk over its range) remove
/// exactly the entries and messages named, and keep those in between.
fn runs_of_removals_remove_exactly_what_they_name(open: &Opener) {
    let every_other = SessionKey::broker("run-a");
    let middle = SessionKey::broker("run-b");
    let (shared_1, shared_2) = (SessionKey::broker("run-c1"), SessionKey::broker("run-c2"));
    let seqs = |s: &dyn Store, k: &SessionKey, n: usize| -> Vec<u64> {
        (0..n)
            .map(|i| match enqueue_new(s, k, format!("{i}").as_bytes()) {
                OpOutcome::Enqueued { seq, .. } => seq,
                other => panic!("refused: {other:?}"),
            })
            .collect()
    };
    let dequeue = |k: &SessionKey, seqs: &[u64]| -> Vec<Op> {
        seqs.iter()
            .map(|&seq| Op::Dequeue {
                key: k.clone(),
                seq,
            })
            .collect()
    };
    {
        let s = open();
        let a = seqs(&*s, &every_other, 100);
        let b = seqs(&*s, &middle, 40);
        // Messages under their own keys (two queues refer to each).
        let mut shared = Vec::new();
        for i in 0..40 {
            let (id, out) = put_with(&*s, message("q/t", format!("s{i}").as_bytes()), |id| {
                [&shared_1, &shared_2]
                    .into_iter()
                    .map(|k| Op::Enqueue {
                        key: k.clone(),
                        message: id,
                        delivery: None,
                    })
                    .collect()
            });
            let seqs: Vec<u64> = out[1..]
                .iter()
                .map(|o| match o {
                    OpOutcome::Enqueued { seq, .. } => *seq,
                    other => panic!("refused: {other:?}"),
                })
                .collect();
            shared.push((id, seqs));
        }
        let even: Vec<u64> = a.iter().copied().step_by(2).collect();
        let mut ops = dequeue(&every_other, &even);
        ops.extend(dequeue(&middle, &b[10..30]));
        // Both references of the first 30 shared messages: their message
        // records go in one run too.
        for (_, seqs) in &shared[..30] {
            ops.extend(dequeue(&shared_1, &seqs[..1]));
            ops.extend(dequeue(&shared_2, &seqs[1..]));
        }
        let out = apply(&*s, ops);
        assert!(out.iter().all(|o| *o == OpOutcome::Done), "{out:?}");
    }
    let s = open();
    let names = |k: &SessionKey| -> Vec<String> {
        payloads(&*s, k)
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect()
    };
    let odd: Vec<String> = (1..100).step_by(2).map(|i| format!("{i}")).collect();
    assert_eq!(names(&every_other), odd);
    let kept: Vec<String> = (0..10).chain(30..40).map(|i| format!("{i}")).collect();
    assert_eq!(names(&middle), kept);
    let last: Vec<String> = (30..40).map(|i| format!("s{i}")).collect();
    assert_eq!(names(&shared_1), last);
    assert_eq!(names(&shared_2), last);
    // 50 + 20 inline entries, and 10 messages under their own keys.
    assert_eq!(s.stats().messages, 80);
}

macro_rules! restart_suite {
    ($($name:ident),* $(,)?) => {
        mod redb_restart {
            $( #[test] fn $name() {
                let dir = super::store_common::TempDir::new("redb-restart");
                let path = dir.path().to_path_buf();
                super::$name(&move || std::sync::Arc::new(
                    myqtt_core::store::RedbStore::open(&path).expect("open")));
            } )*
        }
        #[cfg(feature = "sled")]
        mod sled_restart {
            $( #[test] fn $name() {
                let dir = super::store_common::TempDir::new("sled-restart");
                let path = dir.path().to_path_buf();
                super::$name(&move || std::sync::Arc::new(
                    myqtt_core::store::SledStore::open(&path).expect("open")));
            } )*
        }
    };
}

restart_suite!(
    everything_comes_back_after_a_restart_in_order,
    quotas_apply_to_what_was_stored_before_a_restart,
    removals_survive_a_restart,
    a_queue_entry_keeps_its_delivery_qos_retain_flag_and_subscription_ids,
    runs_of_removals_remove_exactly_what_they_name,
);
