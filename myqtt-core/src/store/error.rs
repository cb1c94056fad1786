//! [`StoreError`]: why a store could not be opened, read or written.

use std::path::PathBuf;
use std::sync::Arc;

/// Why a store operation failed.
///
/// Cloneable so that one failed group commit can be reported to every
/// producer whose operations were in it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another open store (in this process or another) holds the lock.
    #[error(
        "the store at {path} is already open{holder}; a store can be opened by one process at a time"
    )]
    Locked {
        /// The store's folder.
        path: PathBuf,
        /// " (by process N)" when the lock file names its holder, else empty.
        holder: String,
    },
    /// The store's files exist but are not a readable store. Nothing was
    /// changed: move or repair the files, the store never wipes them.
    #[error("the store at {path} is corrupt or unreadable ({reason}); it was left untouched")]
    Corrupt {
        /// The file or folder.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The store was written by a newer myqtt with a format this build does
    /// not read.
    #[error("the store at {path} has format version {found}; this build reads version {supported}")]
    UnsupportedFormat {
        /// The store's folder.
        path: PathBuf,
        /// The version found.
        found: u8,
        /// The version this build reads and writes.
        supported: u8,
    },
    /// The folder holds a store of another backend.
    #[error("the store at {path} is a {found} store, but the {wanted} backend was asked for")]
    WrongBackend {
        /// The store's folder.
        path: PathBuf,
        /// The backend its files belong to.
        found: &'static str,
        /// The backend asked for.
        wanted: &'static str,
    },
    /// The backend was not compiled in (e.g. sled without the `sled`
    /// feature).
    #[error("the {0} backend is not compiled in (enable the cargo feature of the same name)")]
    BackendUnavailable(&'static str),
    /// The folder or a file could not be created, opened or locked.
    #[error("cannot open the store at {path}: {source}")]
    Open {
        /// The file or folder.
        path: PathBuf,
        /// The system's error.
        source: Arc<std::io::Error>,
    },
    /// The backend failed to read or commit (disk full, I/O error).
    #[error("store {backend} error: {message}")]
    Backend {
        /// "redb", "sled" or "memory".
        backend: &'static str,
        /// The backend's error.
        message: String,
    },
    /// An earlier commit failed; the store refuses further writes until it
    /// is opened again (its in-memory indexes may no longer match the disk).
    #[error("the store failed earlier ({0}) and must be reopened")]
    Poisoned(String),
    /// The [`crate::store::StoreWriter`] has stopped.
    #[error("the store writer has stopped")]
    WriterClosed,
}

impl StoreError {
    pub(crate) fn backend(backend: &'static str, e: impl std::fmt::Display) -> Self {
        Self::Backend {
            backend,
            message: e.to_string(),
        }
    }

    pub(crate) fn open(path: impl Into<PathBuf>, e: std::io::Error) -> Self {
        Self::Open {
            path: path.into(),
            source: Arc::new(e),
        }
    }
}
