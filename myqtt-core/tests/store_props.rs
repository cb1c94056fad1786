//! Property: random sequences of queue and in-flight operations leave every
//! backend in the same state as a plain model (queues in order, in-flight
//! tables in send order, each message stored once while referenced).

mod store_common;

use std::collections::{BTreeMap, VecDeque};

use myqtt_core::codec::PacketId;
use myqtt_core::store::{InflightState, MessageId, Op, OpOutcome, SessionKey, Side, Store};
use proptest::prelude::*;
use store_common::{apply, message, put_with};

#[derive(Debug, Clone)]
enum Step {
    Enqueue { client: u8, payload: u8 },
    DequeueNth { client: u8, nth: u8 },
    Send { client: u8, pid: u16, payload: u8 },
    Ack { client: u8, pid: u16 },
    PubRec { client: u8, pid: u16 },
    MoveFirstToInflight { client: u8, pid: u16 },
    RemoveSession { client: u8 },
}

fn step() -> impl Strategy<Value = Step> {
    let c = 0u8..3;
    let pid = 1u16..6;
    prop_oneof![
        4 => (c.clone(), any::<u8>()).prop_map(|(client, payload)| Step::Enqueue { client, payload }),
        2 => (c.clone(), any::<u8>()).prop_map(|(client, nth)| Step::DequeueNth { client, nth }),
        2 => (c.clone(), pid.clone(), any::<u8>()).prop_map(|(client, pid, payload)| Step::Send { client, pid, payload }),
        2 => (c.clone(), pid.clone()).prop_map(|(client, pid)| Step::Ack { client, pid }),
        1 => (c.clone(), pid.clone()).prop_map(|(client, pid)| Step::PubRec { client, pid }),
        2 => (c.clone(), pid).prop_map(|(client, pid)| Step::MoveFirstToInflight { client, pid }),
        1 => c.prop_map(|client| Step::RemoveSession { client }),
    ]
}

/// What the store should hold per client.
#[derive(Default)]
struct Model {
    /// (seq, payload) in order.
    queues: BTreeMap<u8, VecDeque<(u64, u8)>>,
    /// pid -> (send order, payload if still needed).
    inflight: BTreeMap<u8, BTreeMap<u16, (u64, Option<u8>)>>,
    sent: u64,
}

impl Model {
    /// A PUBLISH sent (or re-sent) with packet id `n`: a new id takes the
    /// next place in send order, a reused one keeps its place.
    fn send(&mut self, client: u8, n: u16, payload: u8) {
        let table = self.inflight.entry(client).or_default();
        let order = if let Some(e) = table.get(&n) {
            e.0
        } else {
            self.sent += 1;
            self.sent
        };
        table.insert(n, (order, Some(payload)));
    }
}

fn key(client: u8) -> SessionKey {
    SessionKey::broker(format!("c{client}"))
}

fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero")
}

fn run(s: &dyn Store, steps: &[Step]) -> Model {
    let mut m = Model::default();
    for st in steps {
        step_once(s, &mut m, st);
    }
    m
}

fn put_inflight(client: u8, n: u16, state: InflightState, message: Option<MessageId>) -> Op {
    Op::PutInflight {
        key: key(client),
        packet_id: pid(n),
        state,
        message,
    }
}

fn step_once(s: &dyn Store, m: &mut Model, st: &Step) {
    {
        match *st {
            Step::Enqueue { client, payload } => {
                let k = key(client);
                let (_, out) = put_with(s, message("p/t", &[payload]), |id| {
                    vec![Op::Enqueue {
                        key: k,
                        message: id,
                        delivery: None,
                    }]
                });
                let OpOutcome::Enqueued { seq, .. } = out[1] else {
                    panic!("{out:?}")
                };
                m.queues
                    .entry(client)
                    .or_default()
                    .push_back((seq, payload));
            }
            Step::DequeueNth { client, nth } => {
                let q = m.queues.entry(client).or_default();
                if q.is_empty() {
                    return;
                }
                let (seq, _) = q.remove(usize::from(nth) % q.len()).expect("in range");
                assert_eq!(
                    apply(
                        s,
                        vec![Op::Dequeue {
                            key: key(client),
                            seq
                        }]
                    ),
                    vec![OpOutcome::Done]
                );
            }
            Step::Send {
                client,
                pid: n,
                payload,
            } => {
                let (_, out) = put_with(s, message("p/t", &[payload]), |id| {
                    vec![put_inflight(
                        client,
                        n,
                        InflightState::AwaitingPubAck,
                        Some(id),
                    )]
                });
                assert!(out.iter().all(OpOutcome::is_applied));
                m.send(client, n, payload);
            }
            Step::Ack { client, pid: n } => {
                let out = apply(
                    s,
                    vec![Op::RemoveInflight {
                        key: key(client),
                        packet_id: pid(n),
                    }],
                );
                let existed = m.inflight.entry(client).or_default().remove(&n).is_some();
                assert_eq!(out[0] == OpOutcome::Done, existed);
            }
            Step::PubRec { client, pid: n } => {
                let table = m.inflight.entry(client).or_default();
                let Some(e) = table.get_mut(&n) else { return };
                e.1 = None;
                let rec = put_inflight(client, n, InflightState::AwaitingPubComp, None);
                apply(s, vec![rec]);
            }
            Step::MoveFirstToInflight { client, pid: n } => {
                let Some((seq, payload)) = m.queues.entry(client).or_default().pop_front() else {
                    return;
                };
                let id = s.queue(&key(client)).expect("read")[0].message_id;
                let out = apply(
                    s,
                    vec![
                        Op::Dequeue {
                            key: key(client),
                            seq,
                        },
                        put_inflight(client, n, InflightState::AwaitingPubAck, Some(id)),
                    ],
                );
                assert!(out.iter().all(OpOutcome::is_applied), "{out:?}");
                m.send(client, n, payload);
            }
            Step::RemoveSession { client } => {
                apply(s, vec![Op::RemoveSession(key(client))]);
                m.queues.remove(&client);
                m.inflight.remove(&client);
            }
        }
    }
}

fn check(s: &dyn Store, m: &Model) {
    let mut referenced = 0;
    for client in 0u8..3 {
        let q: Vec<(u64, u8)> = s
            .queue(&key(client))
            .expect("read")
            .iter()
            .map(|e| (e.seq, e.message.publish.payload[0]))
            .collect();
        let want: Vec<(u64, u8)> = m
            .queues
            .get(&client)
            .map(|q| q.iter().copied().collect())
            .unwrap_or_default();
        assert_eq!(q, want, "queue of c{client}");
        referenced += want.len();
        let inflight: Vec<(u16, Option<u8>)> = s
            .inflight(&key(client))
            .expect("read")
            .iter()
            .map(|r| {
                (
                    r.packet_id.get(),
                    r.message.as_ref().map(|m| m.publish.payload[0]),
                )
            })
            .collect();
        let mut want: Vec<(u64, u16, Option<u8>)> = m
            .inflight
            .get(&client)
            .map(|t| {
                t.iter()
                    .map(|(pid, (order, p))| (*order, *pid, *p))
                    .collect()
            })
            .unwrap_or_default();
        want.sort_unstable();
        referenced += want.iter().filter(|w| w.2.is_some()).count();
        let want: Vec<(u16, Option<u8>)> = want.into_iter().map(|(_, pid, p)| (pid, p)).collect();
        assert_eq!(inflight, want, "in-flight of c{client}, in send order");
    }
    // Every stored message is referenced (each step stores its own copy).
    assert_eq!(s.stats().messages, referenced as u64);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn every_backend_matches_the_model(steps in prop::collection::vec(step(), 1..40)) {
        let mem = store_common::memory();
        let m = run(&*mem.store, &steps);
        check(&*mem.store, &m);

        let disk = store_common::redb();
        let m = run(&*disk.store, &steps);
        check(&*disk.store, &m);
        prop_assert_eq!(disk.store.load(Side::Broker).expect("load"), mem.store.load(Side::Broker).expect("load"));

        #[cfg(feature = "sled")]
        {
            let sled = store_common::sled();
            let m = run(&*sled.store, &steps);
            check(&*sled.store, &m);
            prop_assert_eq!(sled.store.load(Side::Broker).expect("load"), mem.store.load(Side::Broker).expect("load"));
        }
    }
}
