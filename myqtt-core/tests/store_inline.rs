//! A message whose only reference is a queue entry created in the same
//! transaction is stored inside that entry: one record written when it is
//! queued and one deleted when it is delivered, instead of two each. It is
//! written under its own key when it moves to the in-flight table in a
//! later transaction, and it comes back after a restart either way.
//!
//! A backend that counts the keys each commit writes shows it.

mod store_common;

use std::sync::{Arc, Mutex};

use myqtt_core::codec::PacketId;
use myqtt_core::store::{
    Backend, InflightState, KvPairs, KvStore, KvWrite, MemoryBackend, Op, OpOutcome, Quotas,
    RedbStore, SessionKey, Store, StoreError,
};
use store_common::{TempDir, apply, message, put_with};

/// Keys put and deleted by each commit, in order.
type Commits = Arc<Mutex<Vec<(usize, usize)>>>;

/// A memory backend that records how many keys each commit puts and
/// deletes.
#[derive(Debug, Default)]
struct Counting {
    inner: MemoryBackend,
    commits: Commits,
}

impl Backend for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }

    fn location(&self) -> std::path::PathBuf {
        self.inner.location()
    }

    fn is_durable(&self) -> bool {
        false
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<KvPairs, StoreError> {
        self.inner.scan_prefix(prefix)
    }

    fn commit(&self, writes: Vec<KvWrite>) -> Result<(), StoreError> {
        let puts = writes.iter().filter(|(_, v)| v.is_some()).count();
        self.commits
            .lock()
            .unwrap()
            .push((puts, writes.len() - puts));
        self.inner.commit(writes)
    }
}

fn counting() -> (KvStore<Counting>, Commits) {
    let backend = Counting::default();
    let commits = Arc::clone(&backend.commits);
    let store = KvStore::from_backend(backend, Quotas::default()).expect("open");
    commits.lock().unwrap().clear(); // the format marker
    (store, commits)
}

fn last(commits: &Mutex<Vec<(usize, usize)>>) -> (usize, usize) {
    *commits.lock().unwrap().last().expect("a commit")
}

fn enqueue(s: &dyn Store, keys: &[&SessionKey], payload: &[u8]) -> Vec<u64> {
    let (_, out) = put_with(s, message("q/t", payload), |id| {
        keys.iter()
            .map(|k| Op::Enqueue {
                key: (*k).clone(),
                message: id,
                delivery: None,
            })
            .collect()
    });
    out[1..]
        .iter()
        .map(|o| match o {
            OpOutcome::Enqueued { seq, .. } => *seq,
            other => panic!("enqueue refused: {other:?}"),
        })
        .collect()
}

#[test]
fn a_message_queued_once_is_one_record_written_and_one_deleted() {
    let (s, commits) = counting();
    let k = SessionKey::broker("one");
    let seq = enqueue(&s, &[&k], b"m")[0];
    assert_eq!(last(&commits), (1, 0), "the queue entry alone");
    assert_eq!(s.stats().messages, 1);
    assert_eq!(s.queue(&k).unwrap()[0].message.publish.payload, "m");
    apply(
        &s,
        vec![Op::Dequeue {
            key: k.clone(),
            seq,
        }],
    );
    assert_eq!(last(&commits), (0, 1), "the queue entry alone");
    assert_eq!(s.stats().messages, 0);
}

#[test]
fn a_message_queued_for_two_clients_keeps_its_own_record() {
    let (s, commits) = counting();
    let (a, b) = (SessionKey::broker("a"), SessionKey::broker("b"));
    let seqs = enqueue(&s, &[&a, &b], b"shared");
    assert_eq!(last(&commits), (3, 0), "the message and two entries");
    apply(
        &s,
        vec![Op::Dequeue {
            key: a.clone(),
            seq: seqs[0],
        }],
    );
    assert_eq!(last(&commits), (0, 1), "one entry; the message stays");
    assert_eq!(s.queue(&b).unwrap()[0].message.publish.payload, "shared");
}

#[test]
fn an_inline_message_moved_to_inflight_later_is_written_under_its_own_key() {
    let (s, commits) = counting();
    let k = SessionKey::broker("mv");
    enqueue(&s, &[&k], b"moved");
    let id = s.queue(&k).unwrap()[0].message_id;
    let pid = PacketId::new(3).unwrap();
    // The broker's order: the in-flight record first, then the entry.
    apply(
        &s,
        vec![
            Op::PutInflight {
                key: k.clone(),
                packet_id: pid,
                state: InflightState::AwaitingPubAck,
                message: Some(id),
            },
            Op::DequeueMessage {
                key: k.clone(),
                message: id,
            },
        ],
    );
    assert_eq!(
        last(&commits),
        (2, 1),
        "in-flight record and message; entry"
    );
    let inflight = s.inflight(&k).unwrap();
    assert_eq!(
        inflight[0].message.as_ref().unwrap().publish.payload,
        "moved"
    );
    apply(
        &s,
        vec![Op::RemoveInflight {
            key: k.clone(),
            packet_id: pid,
        }],
    );
    assert_eq!(last(&commits), (0, 2), "in-flight record and message");
    assert_eq!(s.stats().messages, 0);
}

#[test]
fn inline_messages_come_back_after_a_restart_queued_or_moved() {
    let dir = TempDir::new("inline-restart");
    let (q, m) = (SessionKey::broker("queued"), SessionKey::broker("moved"));
    let pid = PacketId::new(9).unwrap();
    {
        let s = RedbStore::open(dir.path()).unwrap();
        enqueue(&s, &[&q], b"still queued");
        enqueue(&s, &[&m], b"in flight");
        let id = s.queue(&m).unwrap()[0].message_id;
        apply(
            &s,
            vec![
                Op::PutInflight {
                    key: m.clone(),
                    packet_id: pid,
                    state: InflightState::AwaitingPubRec,
                    message: Some(id),
                },
                Op::DequeueMessage {
                    key: m.clone(),
                    message: id,
                },
            ],
        );
    }
    let s = RedbStore::open(dir.path()).unwrap();
    assert_eq!(s.stats().messages, 2);
    assert_eq!(
        s.queue(&q).unwrap()[0].message.publish.payload,
        "still queued"
    );
    let inflight = s.inflight(&m).unwrap();
    assert_eq!(
        inflight[0].message.as_ref().unwrap().publish.payload,
        "in flight"
    );
    // Fresh ids do not collide with an inline message's id.
    let next = s.new_message_id();
    assert!(next > s.queue(&q).unwrap()[0].message_id);
    let seq = s.queue(&q).unwrap()[0].seq;
    apply(&s, vec![Op::Dequeue { key: q, seq }]);
    apply(
        &s,
        vec![Op::RemoveInflight {
            key: m,
            packet_id: pid,
        }],
    );
    assert_eq!(s.stats().messages, 0);
}
