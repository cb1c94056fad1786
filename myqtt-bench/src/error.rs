//! [`BenchError`]: why a run could not be made or did not complete.

use myqtt_core::CtxError;
use myqtt_core::client::ClientError;

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The tokio runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Ctx(#[from] CtxError),
    /// A client operation failed while setting up (connect, subscribe).
    #[error("{what}: {source}")]
    Client {
        /// What was being done.
        what: String,
        /// The client's error.
        source: ClientError,
    },
    /// The run cannot be made on this system or against this broker.
    #[error("{0}")]
    Setup(String),
}

impl BenchError {
    /// A client error while doing `what`.
    pub fn client(what: impl Into<String>, source: ClientError) -> Self {
        Self::Client {
            what: what.into(),
            source,
        }
    }
}
