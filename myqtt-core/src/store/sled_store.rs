//! `SledStore` (cargo feature `sled`): the store in a sled 0.34 database
//! (folder `sled/` in the store folder).
//!
//! sled makes writes durable only when it flushes, so every commit is one
//! atomic `apply_batch` followed by `flush`. On Linux sled 0.34's flush
//! writes its log with `sync_file_range`, which survives a process crash
//! but neither flushes the drive's cache nor the file's metadata (its own
//! background `sync_all` runs every 500 ms); so after the flush the store
//! also calls `fdatasync` on sled's log file. A commit has returned only
//! once its batch is on stable storage, as with redb.

use std::path::PathBuf;
use std::sync::Arc;

use super::engine::{Backend, KvStore, KvWrite};
use super::error::StoreError;
use super::open::{SLED_DIR, StoreConfig, StoreDir};

const NAME: &str = "sled";

/// A sled database as a [`Backend`].
pub struct SledBackend {
    db: sled::Db,
    /// sled's log file (`sled/db`), opened again to `fdatasync` it.
    log: std::fs::File,
    folder: PathBuf,
    // Dropped after `db`: the folder stays locked until sled has closed.
    _dir: StoreDir,
}

impl std::fmt::Debug for SledBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledBackend")
            .field("folder", &self.folder)
            .finish_non_exhaustive()
    }
}

/// A [`super::Store`] in a sled database (cargo feature `sled`).
pub type SledStore = KvStore<SledBackend>;

impl KvStore<SledBackend> {
    /// Opens (or creates) the sled store in folder `path`, with the default
    /// cache and no quotas. See [`StoreConfig`] for the options.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, StoreError> {
        StoreConfig::new(path).open_sled()
    }
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::backend(NAME, e)
}

impl SledBackend {
    pub(crate) fn open(dir: StoreDir, cache_bytes: usize) -> Result<Self, StoreError> {
        let folder = dir.path().join(SLED_DIR);
        let db = sled::Config::new()
            .path(&folder)
            .cache_capacity(cache_bytes as u64)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                    StoreError::Locked {
                        path: dir.path().to_path_buf(),
                        holder: String::new(),
                    }
                }
                sled::Error::Io(io) if io.kind() != std::io::ErrorKind::InvalidData => {
                    StoreError::Open {
                        path: folder.clone(),
                        source: Arc::new(io),
                    }
                }
                other => StoreError::Corrupt {
                    path: folder.clone(),
                    reason: other.to_string(),
                },
            })?;
        let log_path = folder.join("db");
        let log = std::fs::File::open(&log_path).map_err(|e| StoreError::open(&log_path, e))?;
        Ok(Self {
            db,
            log,
            folder,
            _dir: dir,
        })
    }
}

impl Backend for SledBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn location(&self) -> PathBuf {
        self.folder.clone()
    }

    fn is_durable(&self) -> bool {
        true
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(key).map_err(err)?.map(|v| v.to_vec()))
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        self.db
            .scan_prefix(prefix)
            .map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(err))
            .collect()
    }

    fn commit(&self, writes: Vec<KvWrite>) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (k, v) in writes {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        self.db.apply_batch(batch).map_err(err)?;
        self.db.flush().map_err(err)?;
        self.log.sync_data().map_err(err)
    }
}
