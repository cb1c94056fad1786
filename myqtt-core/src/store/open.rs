//! Opening a store folder: [`StoreConfig`], the folder layout and the lock
//! that keeps a second opener out.
//!
//! A store is a folder holding `LOCK` and either `store.redb` (redb) or
//! `sled/` (sled). Nothing else is ever created in it: client ids and
//! topics live inside the database, never in file names.

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Store;
use super::error::StoreError;
use super::redb_store::RedbStore;
use super::types::Quotas;

/// The lock file's name inside a store folder.
pub(crate) const LOCK_FILE: &str = "LOCK";
/// The redb database file's name inside a store folder.
pub(crate) const REDB_FILE: &str = "store.redb";
/// The sled database folder's name inside a store folder.
pub(crate) const SLED_DIR: &str = "sled";

/// Which on-disk backend [`StoreConfig::open`] uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// redb: commits are durable when they return. The default.
    #[default]
    Redb,
    /// sled 0.34 (cargo feature `sled`): durable after each flush, which
    /// the store does after every commit.
    Sled,
}

impl BackendKind {
    /// "redb" or "sled".
    pub const fn name(self) -> &'static str {
        match self {
            Self::Redb => "redb",
            Self::Sled => "sled",
        }
    }
}

/// Where and how to open a store on disk.
///
/// ```no_run
/// use myqtt_core::store::{StoreConfig, Quotas, QuotaPolicy};
///
/// let store = StoreConfig::new(".myqtt-storage")
///     .hash_size(4096)
///     .quotas(Quotas { max_queued_messages: 10_000, policy: QuotaPolicy::DropOldest, ..Quotas::default() })
///     .open()?;
/// # Ok::<(), myqtt_core::store::StoreError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    path: PathBuf,
    backend: BackendKind,
    hash_size: u32,
    quotas: Quotas,
}

impl StoreConfig {
    /// Pages of cache [`StoreConfig::hash_size`] 0 stands for: 8192 pages
    /// of 4 KiB, 32 MiB.
    pub const DEFAULT_HASH_SIZE: u32 = 8192;

    /// A store in folder `path` (created if missing), redb backend, default
    /// cache, no quotas.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            backend: BackendKind::default(),
            hash_size: 0,
            quotas: Quotas::default(),
        }
    }

    /// The backend. Default [`BackendKind::Redb`]. Opening a folder that
    /// holds the other backend's store fails with
    /// [`StoreError::WrongBackend`].
    pub fn backend(mut self, backend: BackendKind) -> Self {
        self.backend = backend;
        self
    }

    /// PyMyQtt's `storage_set_path(path, hash_size)` argument.
    ///
    /// MyQtt spread its per-client files over `hash_size` sub-folders. This
    /// store keeps everything in one database, so there are no such
    /// folders; the number is kept as a memory hint instead: the backend's
    /// page cache is `hash_size` pages of 4 KiB (4096 → 16 MiB). Default 0,
    /// which means [`StoreConfig::DEFAULT_HASH_SIZE`].
    pub fn hash_size(mut self, hash_size: u32) -> Self {
        self.hash_size = hash_size;
        self
    }

    /// Quotas. Default: none.
    pub fn quotas(mut self, quotas: Quotas) -> Self {
        self.quotas = quotas;
        self
    }

    /// The store folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The backend chosen.
    pub fn backend_kind(&self) -> BackendKind {
        self.backend
    }

    /// The quotas chosen.
    pub fn quota_config(&self) -> Quotas {
        self.quotas
    }

    /// The cache size in bytes that [`StoreConfig::hash_size`] asks for.
    pub fn cache_bytes(&self) -> usize {
        let pages = if self.hash_size == 0 {
            Self::DEFAULT_HASH_SIZE
        } else {
            self.hash_size
        };
        (pages as usize).saturating_mul(4096)
    }

    /// Opens (or creates) the store with the chosen backend.
    pub fn open(&self) -> Result<Arc<dyn Store>, StoreError> {
        match self.backend {
            BackendKind::Redb => Ok(Arc::new(self.open_redb()?)),
            #[cfg(feature = "sled")]
            BackendKind::Sled => Ok(Arc::new(self.open_sled()?)),
            #[cfg(not(feature = "sled"))]
            BackendKind::Sled => Err(StoreError::BackendUnavailable("sled")),
        }
    }

    /// Opens (or creates) a redb store, whatever [`StoreConfig::backend`]
    /// says.
    pub fn open_redb(&self) -> Result<RedbStore, StoreError> {
        let lock = StoreDir::prepare(&self.path, BackendKind::Redb)?;
        let backend = super::redb_store::RedbBackend::open(lock, self.cache_bytes())?;
        RedbStore::from_backend(backend, self.quotas)
    }

    /// Opens (or creates) a sled store, whatever [`StoreConfig::backend`]
    /// says.
    #[cfg(feature = "sled")]
    pub fn open_sled(&self) -> Result<super::SledStore, StoreError> {
        let lock = StoreDir::prepare(&self.path, BackendKind::Sled)?;
        let backend = super::sled_store::SledBackend::open(lock, self.cache_bytes())?;
        super::SledStore::from_backend(backend, self.quotas)
    }
}

/// A store folder, created and locked. The lock is held while this lives.
#[derive(Debug)]
pub(crate) struct StoreDir {
    path: PathBuf,
    // Design: an exclusive `flock`-style lock on LOCK. It belongs to the
    // open file description, so a second open in the same process is
    // refused too (redb's own byte-range locks are per process), and the
    // kernel drops it when the process dies, SIGKILL included: no stale
    // lock to clean up.
    _lock: File,
}

impl StoreDir {
    pub(crate) fn prepare(path: &Path, wanted: BackendKind) -> Result<Self, StoreError> {
        if path.exists() && !path.is_dir() {
            return Err(StoreError::Corrupt {
                path: path.to_path_buf(),
                reason: "the path is a file, not a store folder".into(),
            });
        }
        std::fs::create_dir_all(path).map_err(|e| StoreError::open(path, e))?;
        let lock_path = path.join(LOCK_FILE);
        let mut lock = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| StoreError::open(&lock_path, e))?;
        let locked = lock.try_lock();
        match locked {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = lock.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(StoreError::Locked {
                    path: path.to_path_buf(),
                    holder: if holder.is_empty() {
                        String::new()
                    } else {
                        format!(" (by process {holder})")
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(StoreError::open(&lock_path, e)),
        }
        // Who holds it, for the message a second opener gets.
        let _ = lock.set_len(0).and_then(|()| lock.rewind());
        let _ = write!(lock, "{}", std::process::id());
        let has_redb = path.join(REDB_FILE).exists();
        let has_sled = path.join(SLED_DIR).exists();
        let found = match wanted {
            BackendKind::Redb if has_sled && !has_redb => Some(BackendKind::Sled),
            BackendKind::Sled if has_redb && !has_sled => Some(BackendKind::Redb),
            _ => None,
        };
        if let Some(found) = found {
            return Err(StoreError::WrongBackend {
                path: path.to_path_buf(),
                found: found.name(),
                wanted: wanted.name(),
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}
