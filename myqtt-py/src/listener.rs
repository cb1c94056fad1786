//! The listener side of the module: `myqtt.create_listener`,
//! `myqtt.wait_listeners`, `myqtt.unlock_listeners`, the context's handler
//! setters (`set_on_publish`, `set_on_connect`, `set_acl_check`,
//! `set_on_event`), periodic events (`new_event` / `remove_event`), and what
//! a program does with its broker (`broker_publish`, kicks, client list).
//!
//! The context keeps a [`ListenerState`]; the handlers run on the dispatch
//! threads of `dispatch.rs`, behind the hooks of `hooks.rs`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use myqtt_core::broker::WeakBroker;
use myqtt_core::broker::hooks::{Access, Message};
use myqtt_core::codec::{PublishProperties, UserProperties};
use myqtt_core::{ByteStr, net};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use tokio::sync::oneshot;

use crate::ctx::Ctx;
use crate::dispatch::{self, Handler, Job, Shared, TimerHandler};
use crate::errors;
use crate::hooks::{AclHook, EventHook, PyHook};
use crate::server::{payload_bytes, qos_from, topic_from};
use crate::wait::wait_until;

/// ACL access kinds (mosquitto's values: read 1, write 2, subscribe 4).
const ACL_DELIVER: u8 = 1;
const ACL_PUBLISH: u8 = 2;
const ACL_SUBSCRIBE: u8 = 4;

pub(crate) use crate::complete::python_alive;

/// The mosquitto-style access code of an ACL check.
pub(crate) fn access_code(access: Access) -> u8 {
    match access {
        Access::Deliver => ACL_DELIVER,
        Access::Publish => ACL_PUBLISH,
        Access::Subscribe => ACL_SUBSCRIBE,
    }
}

/// Notes the broker hooks were installed in (for `ListenerConn` actions).
pub(crate) fn remember_broker(shared: &Shared, broker: &WeakBroker) {
    *shared
        .broker
        .write()
        .unwrap_or_else(PoisonError::into_inner) = Some(broker.clone());
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Which hooks are installed in the current engine.
#[derive(Default)]
#[allow(clippy::struct_excessive_bools)] // independent switches
struct Installed {
    core: bool,
    acl: bool,
    events: bool,
}

/// A periodic event: its task on the runtime.
struct Timer {
    task: tokio::task::AbortHandle,
}

/// The listener-side state of a `myqtt.Ctx`.
#[derive(Default)]
pub(crate) struct ListenerState {
    shared: Mutex<Option<Arc<Shared>>>,
    installed: Mutex<Installed>,
    /// `storage_set_path`: (path, hash size).
    storage: Mutex<Option<(String, u32)>>,
    /// Bumped by `unlock_listeners`.
    unlock: Mutex<u64>,
    unlocked: Condvar,
    timers: Mutex<HashMap<u64, Timer>>,
    next_timer: AtomicU64,
}

impl ListenerState {
    /// Called by `ctx.exit()`: stops the timers, drops the handlers and the
    /// dispatch threads, forgets the installed hooks, wakes waiters.
    pub(crate) fn shut_down(&self) {
        for (_, t) in lock(&self.timers).drain() {
            t.task.abort();
        }
        if let Some(shared) = lock(&self.shared).take() {
            let h = &shared.handlers;
            for slot in [&h.on_publish, &h.on_connect, &h.acl, &h.on_event] {
                dispatch::set(slot, None);
            }
        }
        *lock(&self.installed) = Installed::default();
        self.unlock_all();
    }

    /// The store `storage_set_path` configured: (path, hash size).
    pub(crate) fn storage(&self) -> Option<(String, u32)> {
        lock(&self.storage).clone()
    }

    /// Sets (or clears) the configured store.
    pub(crate) fn set_storage(&self, storage: Option<(String, u32)>) {
        *lock(&self.storage) = storage;
    }

    /// Installs the hooks of the set handlers again, in a new engine.
    pub(crate) fn reinstall(&self, ctx: &Bound<'_, Ctx>) {
        *lock(&self.installed) = Installed::default();
        self.install(ctx);
    }

    fn unlock_all(&self) {
        *lock(&self.unlock) += 1;
        self.unlocked.notify_all();
    }

    /// The shared state, made (with its threads) on first use.
    fn shared(&self, ctx: &Bound<'_, Ctx>) -> PyResult<Arc<Shared>> {
        let mut slot = lock(&self.shared);
        if let Some(s) = slot.as_ref() {
            return Ok(Arc::clone(s));
        }
        let py = ctx.py();
        let weak = py.import("weakref")?.call_method1("ref", (ctx,))?.unbind();
        let s = Shared::start(weak)?;
        *slot = Some(Arc::clone(&s));
        Ok(s)
    }

    /// Installs the hooks the set handlers need in the running engine (a
    /// no-op before `init()`; `create_listener` calls it again).
    fn install(&self, ctx: &Bound<'_, Ctx>) {
        let Ok(engine) = ctx.get().engine() else {
            return;
        };
        let Some(shared) = lock(&self.shared).clone() else {
            return;
        };
        let h = &shared.handlers;
        let mut installed = lock(&self.installed);
        let broker = engine.broker();
        if !installed.core
            && (dispatch::get(&h.on_publish).is_some() || dispatch::get(&h.on_connect).is_some())
        {
            broker.add_hook(Arc::new(PyHook(Arc::clone(&shared))));
            installed.core = true;
        }
        if !installed.acl && dispatch::get(&h.acl).is_some() {
            broker.add_hook(Arc::new(AclHook(Arc::clone(&shared))));
            installed.acl = true;
        }
        if !installed.events && dispatch::get(&h.on_event).is_some() {
            broker.add_hook(Arc::new(EventHook(Arc::clone(&shared))));
            installed.events = true;
        }
    }

    /// Sets one handler and installs its hook.
    fn set_handler(
        &self,
        ctx: &Bound<'_, Ctx>,
        pick: fn(&dispatch::Handlers) -> &dispatch::Slot,
        handler: Option<Py<PyAny>>,
        data: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let py = ctx.py();
        if let Some(h) = &handler
            && !h.bind(py).is_callable()
        {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "the handler must be callable (or None to remove it)",
            ));
        }
        let shared = self.shared(ctx)?;
        dispatch::set(
            pick(&shared.handlers),
            handler.map(|func| Handler {
                func,
                data: data.unwrap_or_else(|| py.None()),
            }),
        );
        self.install(ctx);
        Ok(())
    }
}

// ----- context methods (called from ctx.rs) -------------------------------

/// `ctx.set_on_publish(handler, data=None)`.
pub(crate) fn set_on_publish(
    ctx: &Bound<'_, Ctx>,
    handler: Option<Py<PyAny>>,
    data: Option<Py<PyAny>>,
) -> PyResult<()> {
    ctx.get()
        .listener
        .set_handler(ctx, |h| &h.on_publish, handler, data)
}

/// `ctx.set_on_connect(handler, data=None)`.
pub(crate) fn set_on_connect(
    ctx: &Bound<'_, Ctx>,
    handler: Option<Py<PyAny>>,
    data: Option<Py<PyAny>>,
) -> PyResult<()> {
    ctx.get()
        .listener
        .set_handler(ctx, |h| &h.on_connect, handler, data)
}

/// `ctx.set_acl_check(handler, data=None)`.
pub(crate) fn set_acl_check(
    ctx: &Bound<'_, Ctx>,
    handler: Option<Py<PyAny>>,
    data: Option<Py<PyAny>>,
) -> PyResult<()> {
    ctx.get()
        .listener
        .set_handler(ctx, |h| &h.acl, handler, data)
}

/// `ctx.set_on_event(handler, data=None)`.
pub(crate) fn set_on_event(
    ctx: &Bound<'_, Ctx>,
    handler: Option<Py<PyAny>>,
    data: Option<Py<PyAny>>,
) -> PyResult<()> {
    ctx.get()
        .listener
        .set_handler(ctx, |h| &h.on_event, handler, data)
}

/// `ctx.new_event(microseconds, handler, user_data=None, user_data2=None)`.
pub(crate) fn new_event(
    ctx: &Bound<'_, Ctx>,
    microseconds: u64,
    handler: Py<PyAny>,
    user_data: Option<Py<PyAny>>,
    user_data2: Option<Py<PyAny>>,
) -> PyResult<u64> {
    let py = ctx.py();
    if microseconds == 0 {
        return Err(PyValueError::new_err("an event period must be above 0"));
    }
    if !handler.bind(py).is_callable() {
        return Err(pyo3::exceptions::PyTypeError::new_err(
            "the handler must be callable",
        ));
    }
    let engine = ctx.get().engine_in_use()?;
    let state = &ctx.get().listener;
    let shared = state.shared(ctx)?;
    let id = state.next_timer.fetch_add(1, Ordering::Relaxed) + 1;
    let timer = Arc::new(TimerHandler {
        func: handler,
        data: user_data.unwrap_or_else(|| py.None()),
        data2: user_data2.unwrap_or_else(|| py.None()),
    });
    let period = Duration::from_micros(microseconds);
    let weak = Arc::downgrade(&shared);
    let ctx_weak = ctx.py().import("weakref")?.call_method1("ref", (ctx,))?;
    let ctx_weak = ctx_weak.unbind();
    let task = engine.spawn(async move {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let Some(shared) = weak.upgrade() else {
                break;
            };
            let (reply, rx) = oneshot::channel();
            let job = Job::Timer {
                handler: Arc::clone(&timer),
                reply,
            };
            if shared
                .shard(usize::try_from(id).unwrap_or(0))
                .send(job)
                .await
                .is_err()
            {
                break;
            }
            drop(shared);
            match rx.await {
                Ok(true) | Err(_) => break,
                Ok(false) => {}
            }
        }
        // The handler asked to be removed (or the context is gone).
        remove_timer_later(&ctx_weak, id);
    });
    lock(&state.timers).insert(
        id,
        Timer {
            task: task.abort_handle(),
        },
    );
    Ok(id)
}

/// Forgets a finished timer (from the runtime: attaches briefly).
fn remove_timer_later(ctx_weak: &Py<PyAny>, id: u64) {
    if !python_alive() {
        return;
    }
    let _ = Python::try_attach(|py| {
        if let Ok(ctx) = ctx_weak.bind(py).call0()
            && let Ok(ctx) = ctx.cast::<Ctx>()
        {
            lock(&ctx.get().listener.timers).remove(&id);
        }
    });
}

/// `ctx.remove_event(id)`: True if the event existed.
pub(crate) fn remove_event(ctx: &Ctx, id: u64) -> bool {
    match lock(&ctx.listener.timers).remove(&id) {
        Some(t) => {
            t.task.abort();
            true
        }
        None => false,
    }
}

fn broker(ctx: &Ctx) -> PyResult<myqtt_core::broker::Broker> {
    Ok(ctx.engine()?.broker().clone())
}

/// MQTT 5 user properties from a dict or a list of pairs.
fn user_properties(props: Option<&Bound<'_, PyAny>>) -> PyResult<PublishProperties> {
    let mut p = PublishProperties::default();
    let Some(props) = props else {
        return Ok(p);
    };
    if props.is_none() {
        return Ok(p);
    }
    let pairs: Vec<(String, String)> = if let Ok(d) = props.cast::<PyDict>() {
        d.iter()
            .map(|(k, v)| Ok((k.extract()?, v.extract()?)))
            .collect::<PyResult<_>>()?
    } else {
        props.extract()?
    };
    p.user_properties = pairs
        .into_iter()
        .map(|(k, v)| (ByteStr::from(k), ByteStr::from(v)))
        .collect::<UserProperties>();
    Ok(p)
}

/// `ctx.broker_publish(topic, payload, qos=0, retain=False,
/// properties=None, client_id=None)`.
pub(crate) fn broker_publish(
    ctx: &Ctx,
    topic: &str,
    payload: &Bound<'_, PyAny>,
    qos: u8,
    retain: bool,
    properties: Option<&Bound<'_, PyAny>>,
    client_id: Option<&str>,
) -> PyResult<usize> {
    let msg = Message {
        topic: topic_from(topic)?,
        payload: payload_bytes(payload)?,
        qos: qos_from(qos)?,
        retain,
        properties: user_properties(properties)?.into(),
    };
    let broker = broker(ctx)?;
    let r = match client_id {
        Some(id) => broker.publish_to(id, msg).map(usize::from),
        None => broker.publish(msg),
    };
    r.map_err(|e| errors::MyqttError::new_err(e.to_string()))
}

/// `ctx.kick_client(client_id, with_will=False)`.
pub(crate) fn kick_client(ctx: &Ctx, client_id: &str, with_will: bool) -> PyResult<bool> {
    Ok(broker(ctx)?.kick_client(client_id, with_will))
}

/// `ctx.kick_username(username, with_will=False)`.
pub(crate) fn kick_username(ctx: &Ctx, username: &str, with_will: bool) -> PyResult<usize> {
    Ok(broker(ctx)?.kick_username(username, with_will))
}

/// `ctx.clients()`: one dict per connected client.
pub(crate) fn clients<'py>(py: Python<'py>, ctx: &Ctx) -> PyResult<Vec<Bound<'py, PyDict>>> {
    let mut out = Vec::new();
    for c in broker(ctx)?.clients() {
        let d = PyDict::new(py);
        d.set_item("client_id", c.info.client_id.as_str())?;
        d.set_item("username", c.info.username.as_deref())?;
        d.set_item("host", c.info.peer.ip().to_string())?;
        d.set_item("port", c.info.peer.port())?;
        d.set_item("protocol", c.info.protocol as u8)?;
        d.set_item("keep_alive", c.info.keep_alive)?;
        d.set_item("tls", c.info.tls)?;
        let subs: Vec<(String, u8)> = c
            .subscriptions
            .iter()
            .map(|(f, o)| (f.as_str().to_owned(), o.qos.as_u8()))
            .collect();
        d.set_item("subscriptions", subs)?;
        d.set_item("dropped", c.dropped)?;
        out.push(d);
    }
    Ok(out)
}

// ----- module functions -----------------------------------------------------

/// A listening socket (PyMyQtt's listener "connection", role
/// "master-listener").
#[pyclass(module = "myqtt", frozen)]
pub(crate) struct Listener {
    inner: Option<net::Listener>,
    error: Option<String>,
    requested_host: String,
}

#[pymethods]
impl Listener {
    /// True while it accepts connections.
    fn is_ok(&self) -> bool {
        self.inner.as_ref().is_some_and(|l| !l.is_stopped())
    }

    /// The bound address ("0.0.0.0" when that was asked), or the host that
    /// was asked when binding failed.
    #[getter]
    fn host(&self) -> String {
        self.inner
            .as_ref()
            .map_or_else(|| self.requested_host.clone(), net::Listener::host)
    }

    /// The bound port (the one the system picked when 0 was asked), or 0.
    #[getter]
    fn port(&self) -> u16 {
        self.inner.as_ref().map_or(0, net::Listener::port)
    }

    /// Why the listener could not start, or None.
    #[getter]
    fn error_msg(&self) -> Option<String> {
        self.error.clone()
    }

    /// "master-listener", as in PyMyQtt.
    #[getter]
    #[allow(clippy::unused_self)] // a Python attribute needs `self`
    fn role(&self) -> &'static str {
        "master-listener"
    }

    /// Stops accepting connections (connected clients stay).
    fn close(&self) {
        if let Some(l) = &self.inner {
            l.stop();
        }
    }

    /// Same as `close()` (PyMyQtt's name for dropping a connection).
    fn shutdown(&self) {
        self.close();
    }

    fn __repr__(&self) -> String {
        match &self.inner {
            Some(l) => format!("<myqtt.Listener {}>", l.local_addr()),
            None => format!("<myqtt.Listener failed: {:?}>", self.error),
        }
    }
}

/// A port given as int or str.
fn port_from(port: &Bound<'_, PyAny>) -> PyResult<u16> {
    if let Ok(s) = port.cast::<PyString>() {
        return s
            .to_cow()?
            .trim()
            .parse()
            .map_err(|_| PyValueError::new_err(format!("invalid port {s}")));
    }
    port.extract()
        .map_err(|_| PyValueError::new_err("a port is an int or a str in 0..=65535"))
}

/// Starts a listener on `host:port` (port int or str; 0 picks a free one).
/// Check `is_ok()` (and `error_msg`), as in PyMyQtt.
#[pyfunction]
pub(crate) fn create_listener(
    ctx: &Bound<'_, Ctx>,
    host: &str,
    port: &Bound<'_, PyAny>,
) -> PyResult<Listener> {
    let port = port_from(port)?;
    let engine = ctx.get().engine_in_use()?;
    ctx.get().listener.install(ctx);
    let requested_host = host.to_owned();
    let host_owned = host.to_owned();
    let r = ctx
        .py()
        .detach(move || engine.create_listener(&host_owned, port));
    Ok(match r {
        Ok(l) => Listener {
            inner: Some(l),
            error: None,
            requested_host,
        },
        Err(e) => Listener {
            inner: None,
            error: Some(e.to_string()),
            requested_host,
        },
    })
}

/// Blocks until `unlock_listeners(ctx)` is called or the context exits;
/// with `unlock_on_signal`, Ctrl-C (SIGINT) or SIGTERM also returns
/// (otherwise KeyboardInterrupt is raised). Releases the GIL while it
/// waits.
#[pyfunction]
#[pyo3(signature = (ctx, unlock_on_signal=true))]
pub(crate) fn wait_listeners(ctx: &Bound<'_, Ctx>, unlock_on_signal: bool) -> PyResult<()> {
    let py = ctx.py();
    // SIGTERM raises KeyboardInterrupt while we wait (main thread only:
    // Python allows signal handlers nowhere else).
    let mut restore = None;
    if unlock_on_signal {
        let threading = py.import("threading")?;
        let main = threading.call_method0("main_thread")?;
        let current = threading.call_method0("current_thread")?;
        let signal = py.import("signal")?;
        if main.is(&current) && signal.hasattr("SIGTERM")? {
            let sigterm = signal.getattr("SIGTERM")?;
            let old = signal.call_method1("getsignal", (&sigterm,))?;
            signal.call_method1("signal", (&sigterm, signal.getattr("default_int_handler")?))?;
            restore = Some((signal, sigterm, old));
        }
    }
    let c = ctx.get();
    let start = *lock(&c.listener.unlock);
    let r = wait_until(py, None, |slice| {
        if !c.is_running() {
            return Some(());
        }
        let guard = lock(&c.listener.unlock);
        let (guard, _) = c
            .listener
            .unlocked
            .wait_timeout_while(guard, slice, |n| *n == start)
            .unwrap_or_else(PoisonError::into_inner);
        (*guard != start).then_some(())
    });
    if let Some((signal, sigterm, old)) = restore {
        signal.call_method1("signal", (sigterm, old))?;
    }
    match r {
        Ok(_) => Ok(()),
        Err(e)
            if unlock_on_signal
                && e.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py) =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Releases every `wait_listeners(ctx)`.
#[pyfunction]
pub(crate) fn unlock_listeners(ctx: &Bound<'_, Ctx>) {
    let c = ctx.get();
    c.listener.unlock_all();
    if let Ok(engine) = c.engine() {
        engine.unlock_listeners();
    }
}

/// True if topic name `topic` matches subscription filter `sub` (MQTT
/// wildcards `+` and `#`; a `$` topic is not matched by a filter starting
/// with a wildcard [MQTT-4.7.2-1]).
#[pyfunction]
pub(crate) fn topic_matches_sub(sub: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (sub.starts_with('+') || sub.starts_with('#')) {
        return false;
    }
    let mut s = sub.split('/');
    let mut t = topic.split('/');
    loop {
        match (s.next(), t.next()) {
            (Some("#"), _) => return s.next().is_none(),
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Adds the listener side to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("ACL_DELIVER", ACL_DELIVER)?;
    m.add("ACL_PUBLISH", ACL_PUBLISH)?;
    m.add("ACL_SUBSCRIBE", ACL_SUBSCRIBE)?;
    m.add_class::<Listener>()?;
    m.add_class::<crate::server::ListenerConn>()?;
    m.add_class::<crate::server::ListenerMsg>()?;
    m.add_class::<crate::server::ListenerEvent>()?;
    m.add_function(wrap_pyfunction!(create_listener, m)?)?;
    m.add_function(wrap_pyfunction!(wait_listeners, m)?)?;
    m.add_function(wrap_pyfunction!(unlock_listeners, m)?)?;
    m.add_function(wrap_pyfunction!(topic_matches_sub, m)?)?;
    Ok(())
}
