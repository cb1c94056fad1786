//! [`RedbStore`]: the default on-disk store, one redb database file
//! (`store.redb`) in the store folder.
//!
//! Every commit is a redb write transaction with `Durability::Immediate`:
//! durable (fsynced) when it returns.

use std::path::PathBuf;
use std::sync::Arc;

use redb::{Database, DatabaseError, ReadableDatabase, StorageError, TableDefinition, TableError};

use super::engine::{Backend, KvStore, KvWrite};
use super::error::StoreError;
use super::open::{REDB_FILE, StoreConfig, StoreDir};

/// The one table: ordered byte keys to byte values (see `format.rs`).
const TABLE: TableDefinition<'static, &'static [u8], &'static [u8]> = TableDefinition::new("myqtt");

const NAME: &str = "redb";

/// A redb database as a [`Backend`].
pub struct RedbBackend {
    db: Database,
    file: PathBuf,
    // Dropped after `db`: the folder stays locked until the file is closed.
    _dir: StoreDir,
}

impl std::fmt::Debug for RedbBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbBackend")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

/// A [`super::Store`] in a redb database file: the default on disk.
pub type RedbStore = KvStore<RedbBackend>;

impl KvStore<RedbBackend> {
    /// Opens (or creates) the redb store in folder `path`, with the default
    /// cache and no quotas. See [`StoreConfig`] for the options.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, StoreError> {
        StoreConfig::new(path).open_redb()
    }
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::backend(NAME, e)
}

impl RedbBackend {
    pub(crate) fn open(dir: StoreDir, cache_bytes: usize) -> Result<Self, StoreError> {
        let file = dir.path().join(REDB_FILE);
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            // Verify every page's checksum at open, so that a damaged file
            // is refused with a clear error rather than trusted.
            .set_check_integrity_on_open(true)
            .create(&file)
            .map_err(|e| match e {
                DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
                    path: dir.path().to_path_buf(),
                    holder: String::new(),
                },
                DatabaseError::Storage(StorageError::Io(io)) => {
                    if io.kind() == std::io::ErrorKind::InvalidData {
                        StoreError::Corrupt {
                            path: file.clone(),
                            reason: io.to_string(),
                        }
                    } else {
                        StoreError::Open {
                            path: file.clone(),
                            source: Arc::new(io),
                        }
                    }
                }
                DatabaseError::Storage(StorageError::Corrupted(reason)) => StoreError::Corrupt {
                    path: file.clone(),
                    reason,
                },
                DatabaseError::UpgradeRequired(v) => StoreError::Corrupt {
                    path: file.clone(),
                    reason: format!("redb file format {v} needs an upgrade"),
                },
                other => StoreError::Corrupt {
                    path: file.clone(),
                    reason: other.to_string(),
                },
            })?;
        Ok(Self {
            db,
            file,
            _dir: dir,
        })
    }
}

impl Backend for RedbBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn location(&self) -> PathBuf {
        self.file.clone()
    }

    fn is_durable(&self) -> bool {
        true
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = match txn.open_table(TABLE) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(err(e)),
        };
        Ok(table.get(key).map_err(err)?.map(|v| v.value().to_vec()))
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = match txn.open_table(TABLE) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(err(e)),
        };
        let mut out = Vec::new();
        for item in table.range(prefix..).map_err(err)? {
            let (k, v) = item.map_err(err)?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn commit(&self, writes: Vec<KvWrite>) -> Result<(), StoreError> {
        self.commit_ref(&writes)
    }

    fn commit_ref(&self, writes: &[KvWrite]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(err)?;
        {
            let mut table = txn.open_table(TABLE).map_err(err)?;
            let mut rest = writes;
            while let Some(((k, v), after)) = rest.split_first() {
                if let Some(run) = dense_deletes(rest) {
                    // One walk over the run's range instead of a descent
                    // per key; only the listed keys go.
                    let (first, last) = (&run[0].0, &run[run.len() - 1].0);
                    let mut next = 0;
                    table
                        .retain_in(
                            first.as_slice()..=last.as_slice(),
                            |key: &[u8], _: &[u8]| {
                                while run.get(next).is_some_and(|(d, _)| d.as_slice() < key) {
                                    next += 1;
                                }
                                run.get(next).is_none_or(|(d, _)| d.as_slice() != key)
                            },
                        )
                        .map_err(err)?;
                    rest = &rest[run.len()..];
                    continue;
                }
                match v {
                    Some(v) => {
                        table.insert(k.as_slice(), v.as_slice()).map_err(err)?;
                    }
                    None => {
                        table.remove(k.as_slice()).map_err(err)?;
                    }
                }
                rest = after;
            }
        }
        txn.commit().map_err(err)
    }
}

/// Deletes shorter than this go one by one.
const MIN_RUN: usize = 16;

/// The run of deletes at the start of `writes` (sorted, unique), if it is
/// long and dense enough to remove with one range walk: at least
/// [`MIN_RUN`] deletes of keys that differ only in a big-endian 8-byte
/// suffix (a queue entry's seq, a message id), spanning at most twice as
/// many suffix values as there are deletes, so the walk visits at most
/// about as many keys again as it removes (the store's keys under one
/// such prefix all have that length).
fn dense_deletes(writes: &[KvWrite]) -> Option<&[KvWrite]> {
    let (k, None) = writes.first()? else {
        return None;
    };
    let cut = k.len().checked_sub(8)?;
    let prefix = &k[..cut];
    let len = writes
        .iter()
        .take_while(|(d, v)| v.is_none() && d.len() == k.len() && d.starts_with(prefix))
        .count();
    if len < MIN_RUN {
        return None;
    }
    let run = &writes[..len];
    let suffix =
        |key: &[u8]| -> Option<u64> { Some(u64::from_be_bytes(key.get(cut..)?.try_into().ok()?)) };
    let span = suffix(&run[len - 1].0)?.checked_sub(suffix(k)?)?;
    (span < 2 * len as u64).then_some(run)
}
