//! [`MemoryStore`]: the store kept in memory, for tests and for listeners
//! without a storage path. Nothing survives the process.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{PoisonError, RwLock};

use super::engine::{Backend, KvStore, KvWrite};
use super::error::StoreError;
use super::types::Quotas;

/// An in-memory ordered map as a [`Backend`].
#[derive(Debug, Default)]
pub struct MemoryBackend {
    map: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
}

/// A [`super::Store`] in memory: the same records, encoding, ordering and
/// quotas as the disk backends, without a disk.
pub type MemoryStore = KvStore<MemoryBackend>;

impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn location(&self) -> PathBuf {
        PathBuf::from("<memory>")
    }

    fn is_durable(&self) -> bool {
        false
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        Ok(map.get(key).cloned())
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        Ok(map
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn commit(&self, writes: Vec<KvWrite>) -> Result<(), StoreError> {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        for (k, v) in writes {
            match v {
                Some(v) => map.insert(k, v),
                None => map.remove(&k),
            };
        }
        Ok(())
    }
}

impl KvStore<MemoryBackend> {
    /// An empty in-memory store without quotas.
    pub fn new() -> Self {
        Self::with_quotas(Quotas::default())
    }

    /// An empty in-memory store with `quotas`.
    pub fn with_quotas(quotas: Quotas) -> Self {
        // Opening an empty memory backend reads and writes nothing that can
        // fail: its methods are infallible.
        match Self::from_backend(MemoryBackend::default(), quotas) {
            Ok(store) => store,
            Err(e) => unreachable!("an empty memory store cannot fail to open: {e}"),
        }
    }
}

impl Default for KvStore<MemoryBackend> {
    fn default() -> Self {
        Self::new()
    }
}
