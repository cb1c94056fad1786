//! [`Ctx`]: the context that owns the tokio runtime, the configuration and
//! everything created from it (listeners, connections).
//!
//! A program makes one `Ctx`, creates listeners and client connections from
//! it, and drops it (or calls [`Ctx::exit`]) to stop them all.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::runtime::{Handle, Runtime};
use tokio::sync::watch;

/// Why a context could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CtxError {
    /// The tokio runtime could not start (threads could not be spawned).
    #[error("cannot start the runtime: {0}")]
    Runtime(#[from] std::io::Error),
    /// The context was already shut down.
    #[error("the context has exited")]
    Exited,
}

/// Builds a [`Ctx`].
#[derive(Debug, Clone)]
pub struct CtxBuilder {
    worker_threads: usize,
    shutdown_grace: Duration,
}

impl Default for CtxBuilder {
    fn default() -> Self {
        Self {
            worker_threads: 0,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

impl CtxBuilder {
    /// Number of runtime worker threads. Default `0`: one per available core.
    pub fn worker_threads(mut self, n: usize) -> Self {
        self.worker_threads = n;
        self
    }

    /// How long [`Ctx::exit`] waits for connections to flush and close
    /// before dropping them. Default 5 s; `0` drops them at once.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Starts the runtime and returns the context.
    pub fn build(self) -> Result<Ctx, CtxError> {
        let mut rt = tokio::runtime::Builder::new_multi_thread();
        rt.enable_all().thread_name("myqtt-worker");
        if self.worker_threads > 0 {
            rt.worker_threads(self.worker_threads);
        }
        let runtime = rt.build()?;
        let (shutdown_tx, _) = watch::channel(false);
        Ok(Ctx {
            inner: Arc::new(Inner {
                handle: runtime.handle().clone(),
                runtime: Mutex::new(Some(runtime)),
                shutdown: shutdown_tx,
                shutdown_grace: self.shutdown_grace,
            }),
        })
    }
}

/// The context: a tokio runtime plus the shutdown signal that every listener
/// and connection created from it watches. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Ctx {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    handle: Handle,
    /// Taken out by `exit`. A std mutex is fine: it is held only to take the
    /// runtime, never across an await.
    runtime: Mutex<Option<Runtime>>,
    shutdown: watch::Sender<bool>,
    shutdown_grace: Duration,
}

impl Ctx {
    /// A context with the default configuration.
    pub fn new() -> Result<Self, CtxError> {
        CtxBuilder::default().build()
    }

    /// A builder for a context with a non-default configuration.
    pub fn builder() -> CtxBuilder {
        CtxBuilder::default()
    }

    /// The runtime's handle, to spawn tasks on it.
    pub fn handle(&self) -> &Handle {
        &self.inner.handle
    }

    /// Runs `fut` to completion on the runtime, blocking this thread.
    ///
    /// Must not be called from inside the runtime (tokio panics there).
    pub fn block_on<F: Future>(&self, fut: F) -> F::Output {
        self.inner.handle.block_on(fut)
    }

    /// Spawns `fut` on the runtime.
    pub fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.inner.handle.spawn(fut)
    }

    /// A receiver that turns `true` when the context starts shutting down.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    /// True once [`Ctx::exit`] has been called.
    pub fn is_exiting(&self) -> bool {
        *self.inner.shutdown.borrow()
    }

    /// How long shutdown waits for connections to close.
    pub fn shutdown_grace(&self) -> Duration {
        self.inner.shutdown_grace
    }

    /// Signals every listener and connection to close, waits up to the
    /// shutdown grace period for them, then stops the runtime. Idempotent.
    pub fn exit(&self) {
        self.inner.shutdown.send_replace(true);
        let runtime = self
            .inner
            .runtime
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(rt) = runtime {
            if Handle::try_current().is_ok() {
                // Called from a task or hook: blocking is not allowed here.
                rt.shutdown_background();
            } else {
                // Tasks watching the signal finish their graceful close
                // within the grace period; what is left is dropped.
                rt.shutdown_timeout(self.inner.shutdown_grace);
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
        if let Some(rt) = self
            .runtime
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            rt.shutdown_background();
        }
    }
}
