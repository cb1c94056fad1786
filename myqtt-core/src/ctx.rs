//! [`Ctx`]: the context that owns the tokio runtime, the configuration and
//! everything created from it: one broker shared by all its listeners, the
//! listeners, and connections.
//!
//! A program makes one `Ctx`, creates listeners and client connections from
//! it, and drops it (or calls [`Ctx::exit`]) to stop them all: listeners
//! stop accepting, MQTT 5 clients get DISCONNECT 0x8B Server shutting down,
//! queued bytes are flushed within the shutdown grace period, and sockets
//! close.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::runtime::{Handle, Runtime};
use tokio::sync::watch;

use crate::broker::hooks::Transport;
use crate::broker::{Broker, BrokerConfig};
use crate::net::{Listener, ListenerError};

/// Why a context could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CtxError {
    /// The tokio runtime could not start (threads could not be spawned).
    #[error("cannot start the runtime: {0}")]
    Runtime(#[from] std::io::Error),
    /// The context was already shut down.
    #[error("the context has exited")]
    Exited,
    /// The durable store could not be opened or read (corrupt, locked by
    /// another process, unreadable). It is left untouched.
    #[error("storage: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// Builds a [`Ctx`].
#[derive(Debug, Clone)]
pub struct CtxBuilder {
    worker_threads: usize,
    shutdown_grace: Duration,
    broker: BrokerConfig,
    storage: Option<crate::store::StoreConfig>,
}

impl Default for CtxBuilder {
    fn default() -> Self {
        Self {
            worker_threads: 0,
            shutdown_grace: Duration::from_secs(5),
            broker: BrokerConfig::default(),
            storage: None,
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

    /// The configuration of the context's broker (limits, policies, hooks).
    /// Default [`BrokerConfig::default`].
    pub fn broker(mut self, config: BrokerConfig) -> Self {
        self.broker = config;
        self
    }

    /// Durable storage for the broker (overrides the one in
    /// [`CtxBuilder::broker`]'s configuration); see
    /// [`crate::broker::BrokerConfigBuilder::storage`]. Default: none.
    pub fn storage(mut self, store: crate::store::StoreConfig) -> Self {
        self.storage = Some(store);
        self
    }

    /// PyMyQtt's `ctx.storage_set_path(path, hash_size)`: a redb store in
    /// folder `path`; `hash_size` is a cache-size hint (`0`: default).
    pub fn storage_path(self, path: impl Into<std::path::PathBuf>, hash_size: u32) -> Self {
        self.storage(crate::store::StoreConfig::new(path).hash_size(hash_size))
    }

    /// Starts the runtime and returns the context.
    ///
    /// # Errors
    ///
    /// [`CtxError::Runtime`] if threads cannot start, [`CtxError::Store`]
    /// if the configured store cannot be opened (corrupt, or already open
    /// in another process).
    pub fn build(self) -> Result<Ctx, CtxError> {
        let mut rt = tokio::runtime::Builder::new_multi_thread();
        rt.enable_all().thread_name("myqtt-worker");
        if self.worker_threads > 0 {
            rt.worker_threads(self.worker_threads);
        }
        let runtime = rt.build()?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (unlock, _) = watch::channel(0_u64);
        let mut config = self.broker;
        if let Some(store) = self.storage {
            config.storage = Some(store);
        }
        let broker = Broker::new(config, runtime.handle().clone(), shutdown_rx)?;
        Ok(Ctx {
            inner: Arc::new(Inner {
                handle: runtime.handle().clone(),
                runtime: Mutex::new(Some(runtime)),
                shutdown: shutdown_tx,
                shutdown_grace: self.shutdown_grace,
                broker,
                listeners: Mutex::new(Vec::new()),
                unlock,
            }),
        })
    }
}

/// Waits for [`Ctx::unlock_listeners`], in one go or in slices; made by
/// [`Ctx::listener_waiter`].
#[derive(Debug)]
pub struct ListenerWaiter {
    ctx: Ctx,
    unlock: watch::Receiver<u64>,
    shutdown: watch::Receiver<bool>,
}

impl ListenerWaiter {
    /// Blocks until the listeners are unlocked (since this waiter was
    /// made, or since its last [`WaitOutcome::Unlocked`]), the context
    /// exits, or, with `signals`, Ctrl-C or SIGTERM arrives; `None` when
    /// `timeout` passes first.
    ///
    /// Must not be called from inside the runtime (it blocks the thread).
    pub fn wait(&mut self, timeout: Option<Duration>, signals: bool) -> Option<WaitOutcome> {
        if self.ctx.is_exiting() {
            return Some(WaitOutcome::Exited);
        }
        let unlock = &mut self.unlock;
        let shutdown = &mut self.shutdown;
        self.ctx.block_on(async move {
            let outcome = async {
                tokio::select! {
                    _ = unlock.changed() => WaitOutcome::Unlocked,
                    () = crate::broker::signalled(shutdown) => WaitOutcome::Exited,
                    () = termination(), if signals => WaitOutcome::Signal,
                }
            };
            match timeout {
                Some(t) => tokio::time::timeout(t, outcome).await.ok(),
                None => Some(outcome.await),
            }
        })
    }
}

/// How [`Ctx::wait_listeners`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    /// [`Ctx::unlock_listeners`] was called.
    Unlocked,
    /// Ctrl-C (SIGINT) or SIGTERM arrived.
    Signal,
    /// The context exited.
    Exited,
}

/// The context: a tokio runtime, the broker, the listeners, and the
/// shutdown signal that everything created from it watches. Cheap to clone
/// (shared); the last clone dropped shuts everything down as
/// [`Ctx::exit`] does.
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
    broker: Broker,
    listeners: Mutex<Vec<Listener>>,
    /// Bumped by `unlock_listeners`; waiters return when it changes.
    unlock: watch::Sender<u64>,
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

    /// The context's broker: sessions, subscriptions and retained messages
    /// shared by all its listeners; publish as the broker, kick and list
    /// clients, add hooks.
    pub fn broker(&self) -> &Broker {
        &self.inner.broker
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

    /// Starts a listener on `host:port` that serves this context's broker.
    /// Port 0 picks a free port: read it from [`Listener::local_addr`].
    /// Several listeners may serve one context. Does not block; may be
    /// called from any thread, hooks included.
    pub fn create_listener(&self, host: &str, port: u16) -> Result<Listener, ListenerError> {
        if self.is_exiting() {
            return Err(ListenerError::Exited);
        }
        let listener = Listener::bind(&self.inner.broker, host, port, Transport::Tcp)?;
        lock(&self.inner.listeners).push(listener.clone());
        Ok(listener)
    }

    /// Starts a listener for MQTT over WebSocket (subprotocol `mqtt`,
    /// binary frames; MQTT 5.0 §6) on `host:port`, serving the same broker
    /// as the TCP listeners. Port 0 picks a free port.
    pub fn create_ws_listener(&self, host: &str, port: u16) -> Result<Listener, ListenerError> {
        if self.is_exiting() {
            return Err(ListenerError::Exited);
        }
        let listener = Listener::bind(&self.inner.broker, host, port, Transport::WebSocket)?;
        lock(&self.inner.listeners).push(listener.clone());
        Ok(listener)
    }

    /// The listeners created so far (stopped ones included).
    pub fn listeners(&self) -> Vec<Listener> {
        lock(&self.inner.listeners).clone()
    }

    /// Blocks until [`unlock_listeners`](Self::unlock_listeners) is called
    /// or the context exits; with `signals`, also until Ctrl-C (SIGINT) or
    /// SIGTERM arrives. It does not stop anything: the caller decides
    /// (usually [`Ctx::exit`]).
    ///
    /// Must not be called from inside the runtime (it blocks the thread).
    pub fn wait_listeners(&self, signals: bool) -> WaitOutcome {
        self.listener_waiter()
            .wait(None, signals)
            .unwrap_or(WaitOutcome::Exited)
    }

    /// A waiter for [`unlock_listeners`](Self::unlock_listeners) that can
    /// wait in slices (for a caller that must wake up now and then, such as
    /// a Python thread checking for KeyboardInterrupt): an unlock between
    /// two slices is not missed.
    pub fn listener_waiter(&self) -> ListenerWaiter {
        ListenerWaiter {
            ctx: self.clone(),
            unlock: self.inner.unlock.subscribe(),
            shutdown: self.shutdown_signal(),
        }
    }

    /// Releases every thread blocked in
    /// [`wait_listeners`](Self::wait_listeners).
    pub fn unlock_listeners(&self) {
        self.inner.unlock.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Signals every listener and connection to close, waits up to the
    /// shutdown grace period for them (MQTT 5 clients get DISCONNECT 0x8B),
    /// then stops the runtime. Idempotent.
    ///
    /// Called from a runtime thread (a hook, a task), it does not block:
    /// the wait and the runtime shutdown happen on a helper thread.
    pub fn exit(&self) {
        self.inner.shut_down();
    }
}

impl Inner {
    fn shut_down(&self) {
        self.shutdown.send_replace(true);
        self.unlock.send_modify(|n| *n = n.wrapping_add(1));
        for l in lock(&self.listeners).iter() {
            l.stop();
        }
        let runtime = lock(&self.runtime).take();
        let Some(rt) = runtime else {
            return;
        };
        let broker = self.broker.clone();
        let grace = self.shutdown_grace;
        let finish = move || {
            rt.block_on(async {
                let _ = tokio::time::timeout(grace, broker.wait_idle()).await;
            });
            rt.shutdown_timeout(Duration::from_millis(100));
            // The store is closed now, not when the last handle to the
            // broker goes (a client `Conn`, a Python object).
            broker.release_store(Duration::from_secs(10));
        };
        if Handle::try_current().is_ok() {
            // Blocking is not allowed on a runtime thread.
            let spawned = std::thread::Builder::new()
                .name("myqtt-exit".into())
                .spawn(finish);
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start the exit thread");
            }
        } else {
            finish();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shut_down();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Completes on Ctrl-C (SIGINT) or, on Unix, SIGTERM.
async fn termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
