//! Helpers shared by the `store_*` tests: temporary folders, message
//! builders and one fixture per backend.

#![allow(dead_code)] // each test binary uses a different part

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use myqtt_core::codec::{Publish, PublishProps, QoS};
use myqtt_core::store::{
    MemoryStore, MessageId, Op, OpOutcome, RedbStore, Store, StoredMessage, Timestamp,
};
use myqtt_core::topic::TopicName;

/// A folder under the system's temporary folder, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "myqtt-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fixed receive time, so loaded messages compare equal to built ones.
pub const T0: Timestamp = Timestamp::from_unix_millis(1_700_000_000_000);

pub fn publish(topic: &str, payload: &[u8], qos: QoS) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: TopicName::new(topic).expect("valid topic"),
        packet_id: None,
        properties: PublishProps::new(),
        payload: Bytes::copy_from_slice(payload),
    }
}

pub fn message(topic: &str, payload: &[u8]) -> StoredMessage {
    StoredMessage::new(publish(topic, payload, QoS::AtLeastOnce), T0)
}

/// A store under test, and the folder it lives in (if on disk).
pub struct Fixture {
    pub store: Arc<dyn Store>,
    pub dir: Option<TempDir>,
}

pub fn memory() -> Fixture {
    Fixture {
        store: Arc::new(MemoryStore::new()),
        dir: None,
    }
}

pub fn redb() -> Fixture {
    let dir = TempDir::new("redb");
    let store = Arc::new(RedbStore::open(dir.path()).expect("open redb store"));
    Fixture {
        store,
        dir: Some(dir),
    }
}

#[cfg(feature = "sled")]
pub fn sled() -> Fixture {
    let dir = TempDir::new("sled");
    let store = Arc::new(myqtt_core::store::SledStore::open(dir.path()).expect("open sled store"));
    Fixture {
        store,
        dir: Some(dir),
    }
}

/// Applies `ops`, asserting that the backend accepted the transaction.
#[allow(clippy::needless_pass_by_value)] // call sites read better with `vec![..]`
pub fn apply(store: &dyn Store, ops: Vec<Op>) -> Vec<OpOutcome> {
    store.apply(&ops).expect("commit")
}

/// Stores `m` and returns its new id (the message is kept only if the same
/// transaction refers to it, so callers add references in `more`).
pub fn put_with(
    store: &dyn Store,
    m: StoredMessage,
    more: impl FnOnce(MessageId) -> Vec<Op>,
) -> (MessageId, Vec<OpOutcome>) {
    let id = store.new_message_id();
    let mut ops = vec![Op::PutMessage { id, message: m }];
    ops.extend(more(id));
    let out = apply(store, ops);
    (id, out)
}
