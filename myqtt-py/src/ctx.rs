//! `myqtt.Ctx`: the context, owning the engine's runtime.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use pyo3::prelude::*;

use crate::errors;

/// PyMyQtt's context: create it, `init()` it, create connections and
/// listeners from it, and `exit()` it (or let it be collected).
#[pyclass(module = "myqtt", frozen, weakref)]
#[derive(Default)]
pub(crate) struct Ctx {
    /// `None` before `init()` and after `exit()`. Held only to clone or take
    /// the engine context, never while waiting.
    engine: Mutex<Option<myqtt_core::Ctx>>,
    /// Listener handlers, timers and waits (`listener.rs`).
    pub(crate) listener: crate::listener::ListenerState,
    /// A connection, listener or timer was made on the current engine, so
    /// `storage_set_path` can no longer replace it.
    in_use: AtomicBool,
}

impl Ctx {
    /// The engine context, or an error if `init()` was not called.
    pub(crate) fn engine(&self) -> PyResult<myqtt_core::Ctx> {
        self.engine
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| {
                errors::MyqttError::new_err("the context is not initialised: call ctx.init()")
            })
    }

    /// [`Self::engine`] for something that will run on it (a connection, a
    /// listener, a timer): from then on `storage_set_path` cannot replace
    /// the engine.
    pub(crate) fn engine_in_use(&self) -> PyResult<myqtt_core::Ctx> {
        let engine = self.engine()?;
        self.in_use.store(true, Ordering::Release);
        Ok(engine)
    }

    /// A new engine, with the store `storage_set_path` configured.
    fn build_engine(&self) -> PyResult<myqtt_core::Ctx> {
        let builder = myqtt_core::Ctx::builder();
        let builder = match self.listener.storage() {
            Some((path, hash_size)) => builder.storage_path(path, hash_size),
            None => builder,
        };
        builder.build().map_err(|e| errors::ctx_error(&e))
    }

    /// `ctx.storage_set_path(path, hash_size)`: before `init()` the path is
    /// kept for it; after, the engine (idle so far) is replaced by one with
    /// the store, and the installed hooks move to it.
    fn set_storage(slf: &Bound<'_, Self>, path: String, hash_size: u32) -> PyResult<bool> {
        let this = slf.get();
        let py = slf.py();
        if hash_size == 0 {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "hash_size must be above 0",
            ));
        }
        let wanted = Some((path, hash_size));
        let mut engine = this.engine.lock().unwrap_or_else(PoisonError::into_inner);
        if engine.is_none() {
            this.listener.set_storage(wanted);
            return Ok(true);
        }
        if this.listener.storage() == wanted {
            return Ok(true);
        }
        if this.in_use.load(Ordering::Acquire) {
            return Err(errors::MyqttError::new_err(
                "ctx.storage_set_path() must be called before any connection, listener or \
                 event is created from the context (or before ctx.init())",
            ));
        }
        // The idle engine goes first: it may hold the store being opened.
        // Not waited for under the lock.
        let old = engine.take();
        drop(engine);
        if let Some(old) = old {
            py.detach(|| old.exit());
        }
        let mut engine = this.engine.lock().unwrap_or_else(PoisonError::into_inner);
        let previous = this.listener.storage();
        this.listener.set_storage(wanted);
        let built = match this.build_engine() {
            Ok(e) => e,
            Err(err) => {
                // Back to what the context had, and the error.
                this.listener.set_storage(previous);
                *engine = Some(this.build_engine()?);
                drop(engine);
                this.listener.reinstall(slf);
                return Err(err);
            }
        };
        *engine = Some(built);
        drop(engine);
        this.listener.reinstall(slf);
        Ok(true)
    }

    /// True between `init()` and `exit()`, and while the engine runs.
    pub(crate) fn is_running(&self) -> bool {
        self.engine
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|e| !e.is_exiting())
    }
}

#[pymethods]
impl Ctx {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Starts the context. Returns True on success (PyMyQtt's contract);
    /// calling it again on a started context is harmless.
    fn init(&self) -> PyResult<bool> {
        let mut engine = self.engine.lock().unwrap_or_else(PoisonError::into_inner);
        if engine.is_none() {
            *engine = Some(self.build_engine()?);
            self.in_use.store(false, Ordering::Release);
        }
        Ok(true)
    }

    /// Stops every listener and connection made from this context.
    fn exit(&self, py: Python<'_>) {
        let engine = self
            .engine
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        self.listener.shut_down();
        if let Some(engine) = engine {
            py.detach(|| engine.exit());
        }
    }

    /// PyMyQtt's log handler: `handler(ctx, file, line, level, message,
    /// data)` is called for every engine log record at debug level and
    /// above, on the module's log thread; `level` is `myqtt.level_debug`,
    /// `level_warning` or `level_critical`. None removes it. The records
    /// still reach Python `logging` (logger `myqtt`) as well.
    #[pyo3(signature = (handler, data=None))]
    fn set_log_handler(
        slf: &Bound<'_, Self>,
        handler: Option<Py<PyAny>>,
        data: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        slf.py()
            .import("myqtt._logging")?
            .call_method1("_set_ctx_handler", (slf, handler, data))?;
        Ok(())
    }

    /// True between `init()` and `exit()`.
    #[getter]
    fn is_initialized(&self) -> bool {
        self.engine
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    // ----- listener side (listener.rs) -----

    /// Sets the durable storage directory (PyMyQtt's signature): retained
    /// messages and persistent sessions are kept there and survive a
    /// restart. Call it before creating connections, listeners or events
    /// (before or after `init()`). Returns True; raises `MyqttError` if the
    /// store cannot be opened (another process has it, or it is corrupt).
    #[pyo3(signature = (path, hash_size=4096))]
    fn storage_set_path(slf: &Bound<'_, Self>, path: String, hash_size: u32) -> PyResult<bool> {
        Self::set_storage(slf, path, hash_size)
    }

    /// `on_publish(ctx, conn, msg, data)` decides every incoming PUBLISH:
    /// `PUBLISH_OK` (with `msg` changes applied), `PUBLISH_DISCARD` or
    /// `PUBLISH_CONN_CLOSE`. None removes it.
    #[pyo3(signature = (handler, data=None))]
    fn set_on_publish(
        slf: &Bound<'_, Self>,
        handler: Option<Py<PyAny>>,
        data: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        crate::listener::set_on_publish(slf, handler, data)
    }

    /// `on_connect(ctx, conn, data)` decides every CONNECT: a `CONNACK_*`
    /// code, or `CONNACK_DEFERRED` and later `conn.send_connect_reply`.
    #[pyo3(signature = (handler, data=None))]
    fn set_on_connect(
        slf: &Bound<'_, Self>,
        handler: Option<Py<PyAny>>,
        data: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        crate::listener::set_on_connect(slf, handler, data)
    }

    /// `acl_check(ctx, conn, access, topic, qos, payload, data)` returns
    /// True to allow `access` (`ACL_SUBSCRIBE`, `ACL_PUBLISH`,
    /// `ACL_DELIVER`) to `topic`.
    #[pyo3(signature = (handler, data=None))]
    fn set_acl_check(
        slf: &Bound<'_, Self>,
        handler: Option<Py<PyAny>>,
        data: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        crate::listener::set_acl_check(slf, handler, data)
    }

    /// `on_event(ctx, event, data)` observes listener events
    /// (`myqtt.ListenerEvent`).
    #[pyo3(signature = (handler, data=None))]
    fn set_on_event(
        slf: &Bound<'_, Self>,
        handler: Option<Py<PyAny>>,
        data: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        crate::listener::set_on_event(slf, handler, data)
    }

    /// Calls `handler(ctx, user_data, user_data2)` every `microseconds`
    /// until it returns True or `remove_event(id)`; returns the id.
    #[pyo3(signature = (microseconds, handler, user_data=None, user_data2=None))]
    fn new_event(
        slf: &Bound<'_, Self>,
        microseconds: u64,
        handler: Py<PyAny>,
        user_data: Option<Py<PyAny>>,
        user_data2: Option<Py<PyAny>>,
    ) -> PyResult<u64> {
        crate::listener::new_event(slf, microseconds, handler, user_data, user_data2)
    }

    /// Stops a periodic event; True if it existed.
    fn remove_event(&self, id: u64) -> bool {
        crate::listener::remove_event(self, id)
    }

    /// Publishes as the broker to every matching subscription (or to the
    /// one client `client_id`); returns how many clients it was queued for.
    #[pyo3(signature = (topic, payload, qos=0, retain=false, properties=None, client_id=None))]
    #[allow(clippy::too_many_arguments)]
    fn broker_publish(
        &self,
        topic: &str,
        payload: &Bound<'_, PyAny>,
        qos: u8,
        retain: bool,
        properties: Option<&Bound<'_, PyAny>>,
        client_id: Option<&str>,
    ) -> PyResult<usize> {
        crate::listener::broker_publish(self, topic, payload, qos, retain, properties, client_id)
    }

    /// Disconnects the client with this id; True if it was connected.
    #[pyo3(signature = (client_id, with_will=false))]
    fn kick_client(&self, client_id: &str, with_will: bool) -> PyResult<bool> {
        crate::listener::kick_client(self, client_id, with_will)
    }

    /// Disconnects every client with this user name; returns how many.
    #[pyo3(signature = (username, with_will=false))]
    fn kick_username(&self, username: &str, with_will: bool) -> PyResult<usize> {
        crate::listener::kick_username(self, username, with_will)
    }

    /// The connected clients, one dict each (client_id, username, host,
    /// port, protocol, keep_alive, tls, subscriptions, dropped).
    fn clients<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, pyo3::types::PyDict>>> {
        crate::listener::clients(py, self)
    }
}
