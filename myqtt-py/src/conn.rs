//! `myqtt.Conn`: PyMyQtt's client connection, on the engine's
//! [`myqtt_core::client::Conn`].
//!
//! Two faces on one object:
//!
//! - PyMyQtt's methods (`sub`, `pub`, `get_next`, `ping`, `close`...),
//!   which report failures as status values and set `last_err` /
//!   `error_msg`, never raising for a network or protocol failure;
//! - the methods the Pythonic layer (`myqtt.connect`, `myqtt.aio`) builds
//!   on (`publish`, `subscribe`, `next_message`, the `*_async` variants),
//!   which raise `myqtt.MyqttError` subclasses.
//!
//! Every blocking wait goes through [`crate::wait::wait_until`]: the GIL is
//! released and Ctrl-C interrupts it. Handlers run on the connection's
//! callback thread (the engine's), attached to the interpreter there, one
//! at a time, never on a tokio worker.
//!
//! Design: the handlers live in [`Callbacks`], shared by this object and
//! the closures given to the engine. The closures hold no strong reference
//! to the Python `Conn` (only a weak one), so dropping the last Python
//! reference still closes the connection; a handler that refers back to
//! its `Conn` forms a cycle the garbage collector sees (`__traverse__`).

use std::future::IntoFuture;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use myqtt_core::client::{
    self, ClientError, CloseInfo, ConnectOptions, PublishMessage, ReconnectInfo, Status,
    Subscription,
};
use myqtt_core::codec::{ProtocolVersion, QoS, ReasonCode, RetainHandling};
use myqtt_core::topic::TopicFilter;
use pyo3::PyTraverseError;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyString, PyWeakrefReference};

use crate::complete;
use crate::ctx::Ctx;
use crate::errors;
use crate::handle::{Handle, PublishHandle, wait_pending};
use crate::log::log_exception;
use crate::msg::Msg;
use crate::opts::{ConnOpts, duration, qos_from};
use crate::props;
use crate::wait::wait_until;

/// PyMyQtt's `CONNACK_UNABLE_TO_CONNECT`.
const UNABLE_TO_CONNECT: i32 = -2;
/// PyMyQtt's `CONNACK_CONNECT_TIMEOUT`.
const CONNECT_TIMEOUT: i32 = -3;
/// How long `close()` and `shutdown()` wait for the engine.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// A Python handler and its user data.
struct Handler {
    func: Py<PyAny>,
    data: Py<PyAny>,
}

impl Handler {
    fn new(py: Python<'_>, func: Py<PyAny>, data: Option<Py<PyAny>>) -> PyResult<Self> {
        if !func.bind(py).is_callable() {
            return Err(PyTypeError::new_err("the handler must be callable"));
        }
        Ok(Self {
            func,
            data: data.unwrap_or_else(|| py.None()),
        })
    }

    fn clone_ref(&self, py: Python<'_>) -> Self {
        Self {
            func: self.func.clone_ref(py),
            data: self.data.clone_ref(py),
        }
    }
}

/// The handlers of one connection, shared with the engine's callbacks.
/// The std mutexes are held only to read or replace a handler, never while
/// one runs.
struct Callbacks {
    ctx: Py<Ctx>,
    /// The Python `Conn`, weakly: handlers receive it as `conn`.
    me: OnceLock<Py<PyWeakrefReference>>,
    on_msg: Mutex<Option<Handler>>,
    on_close: Mutex<Vec<(u64, Handler)>>,
    on_reconnect: Mutex<Option<Handler>>,
    next_handle: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Callbacks {
    fn conn<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        self.me.get().and_then(|w| w.bind(py).upgrade())
    }

    fn dispatch_msg(&self, py: Python<'_>, msg: client::Message) {
        let Some(h) = lock(&self.on_msg).as_ref().map(|h| h.clone_ref(py)) else {
            return;
        };
        let Some(conn) = self.conn(py) else { return };
        let called = Bound::new(py, Msg::new(msg)).and_then(|m| {
            h.func
                .call1(py, (self.ctx.clone_ref(py), conn, m, h.data))
                .map(drop)
        });
        if let Err(e) = called {
            log_exception(
                py,
                "the on_msg handler raised; the message is discarded",
                &e,
            );
        }
    }

    fn dispatch_close(&self, py: Python<'_>, info: &CloseInfo) {
        let handlers: Vec<Handler> = lock(&self.on_close)
            .iter()
            .map(|(_, h)| h.clone_ref(py))
            .collect();
        if handlers.is_empty() {
            return;
        }
        let Some(conn) = self.conn(py) else { return };
        tracing::debug!(reason = %info.reason, reconnecting = info.reconnecting, "on_close");
        for h in handlers {
            if let Err(e) = h.func.call1(py, (conn.clone(), h.data)) {
                log_exception(py, "the on_close handler raised", &e);
            }
        }
    }

    fn dispatch_reconnect(&self, py: Python<'_>, _info: &ReconnectInfo) {
        let Some(h) = lock(&self.on_reconnect).as_ref().map(|h| h.clone_ref(py)) else {
            return;
        };
        let Some(conn) = self.conn(py) else { return };
        if let Err(e) = h.func.call1(py, (conn, h.data)) {
            log_exception(py, "the on_reconnect handler raised", &e);
        }
    }
}

/// The outcome of the last failed operation.
#[derive(Default)]
struct LastError {
    /// PyMyQtt's `last_err`: the CONNACK return code of the connection, or
    /// `CONNACK_UNABLE_TO_CONNECT` / `CONNACK_CONNECT_TIMEOUT`.
    code: i32,
    error: Option<ClientError>,
}

/// What a connection is made from, checked before connecting.
struct Prepared {
    ctx: Py<Ctx>,
    engine: myqtt_core::Ctx,
    opts: ConnectOptions,
    host: String,
    port: u16,
    username: Option<String>,
    protocol: ProtocolVersion,
}

/// A port from an int or a str (the manual passes `"1883"`).
fn port_from(port: &Bound<'_, PyAny>) -> PyResult<u16> {
    let bad = || PyValueError::new_err(format!("invalid port {port}: expected 0..=65535"));
    if let Ok(s) = port.cast::<PyString>() {
        return s.to_cow()?.trim().parse::<u16>().map_err(|_| bad());
    }
    let n: i64 = port
        .extract()
        .map_err(|_| PyTypeError::new_err("the port is an int or a str"))?;
    u16::try_from(n).map_err(|_| bad())
}

/// A client identifier for `client_identifier=None` before MQTT 5: unique
/// in the process and across processes, 22 characters (MQTT 3.1 allows 23).
fn generated_client_id() -> String {
    use std::hash::BuildHasher;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let h = std::collections::hash_map::RandomState::new().hash_one((n, std::process::id()));
    format!("myqtt-{h:016x}")
}

#[allow(clippy::too_many_arguments)]
fn prepare(
    ctx: &Bound<'_, Ctx>,
    host: String,
    port: &Bound<'_, PyAny>,
    client_identifier: Option<String>,
    clean_session: bool,
    keep_alive: u16,
    conn_opts: Option<&Bound<'_, ConnOpts>>,
) -> PyResult<Prepared> {
    let engine = ctx.get().engine_in_use()?;
    let port = port_from(port)?;
    let default_opts;
    let opts_obj = if let Some(o) = conn_opts {
        o.get()
    } else {
        default_opts = ConnOpts::default();
        &default_opts
    };
    let protocol = opts_obj.protocol();
    // MQTT 5 servers assign an identifier to an empty one and say which; a
    // 3.1.1 server refuses an empty one without clean session
    // [MQTT-3.1.3-8], so one is made up.
    let client_id = client_identifier.unwrap_or_else(|| {
        if protocol.is_v5() {
            String::new()
        } else {
            generated_client_id()
        }
    });
    let opts = opts_obj.build(&host, port, client_id, clean_session, keep_alive);
    opts.validate()
        .map_err(|e| errors::client_error(ctx.py(), &e, protocol))?;
    Ok(Prepared {
        ctx: ctx.clone().unbind(),
        engine,
        opts,
        host,
        port,
        username: opts_obj.username(),
        protocol,
    })
}

/// A QoS from an `int` argument.
fn qos_arg(q: i64) -> PyResult<QoS> {
    qos_from(q)
}

/// An optional timeout in seconds; `None` waits without limit.
fn timeout_arg(t: Option<f64>) -> PyResult<Option<Duration>> {
    t.map(|t| duration("timeout", t)).transpose()
}

/// PyMyQtt's `wait_*` seconds: 0 or less waits without limit.
fn wait_secs(secs: f64) -> Option<Duration> {
    if secs > 0.0 {
        Duration::try_from_secs_f64(secs).ok()
    } else {
        None
    }
}

/// A reason code as the server sent it at `protocol`: an MQTT 5 reason
/// code, or a 3.1.1 SUBACK return code (0, 1, 2, 0x80).
fn suback_code(code: ReasonCode, protocol: ProtocolVersion) -> u8 {
    if protocol.is_v5() {
        code.as_u8()
    } else {
        code.to_suback_return_code()
    }
}

/// The subscriptions of a `subscribe` call: a filter, or a list of filters
/// and `(filter, qos)` pairs.
fn subscriptions_arg(
    subscriptions: &Bound<'_, PyAny>,
    qos: QoS,
    no_local: bool,
    retain_as_published: bool,
    retain_handling: u8,
) -> PyResult<Vec<Subscription>> {
    let retain_handling = match retain_handling {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendAtSubscribeIfNew,
        2 => RetainHandling::DoNotSend,
        n => {
            return Err(PyValueError::new_err(format!(
                "[MQTT-3.8.3-5] retain_handling is 0, 1 or 2, not {n}"
            )));
        }
    };
    let one = |filter: &str, qos: QoS| -> PyResult<Subscription> {
        Ok(Subscription::new(filter, qos)
            .map_err(|e| PyValueError::new_err(e.to_string()))?
            .no_local(no_local)
            .retain_as_published(retain_as_published)
            .retain_handling(retain_handling))
    };
    if let Ok(s) = subscriptions.cast::<PyString>() {
        return Ok(vec![one(&s.to_cow()?, qos)?]);
    }
    let mut out = Vec::new();
    for item in subscriptions.try_iter()? {
        let item = item?;
        if let Ok(s) = item.cast::<PyString>() {
            out.push(one(&s.to_cow()?, qos)?);
        } else {
            let (filter, q): (String, i64) = item.extract().map_err(|_| {
                PyTypeError::new_err("a subscription is a filter or a (filter, qos) pair")
            })?;
            out.push(one(&filter, qos_arg(q)?)?);
        }
    }
    if out.is_empty() {
        return Err(PyValueError::new_err(
            "[MQTT-3.8.3-3] a SUBSCRIBE needs at least one topic filter",
        ));
    }
    Ok(out)
}

/// The filters of an `unsubscribe` call: a filter or a list of them.
fn filters_arg(topics: &Bound<'_, PyAny>) -> PyResult<Vec<TopicFilter>> {
    let one = |f: &str| TopicFilter::new(f).map_err(|e| PyValueError::new_err(e.to_string()));
    if let Ok(s) = topics.cast::<PyString>() {
        return Ok(vec![one(&s.to_cow()?)?]);
    }
    let out = topics
        .try_iter()?
        .map(|t| one(&t?.extract::<String>()?))
        .collect::<PyResult<Vec<_>>>()?;
    if out.is_empty() {
        return Err(PyValueError::new_err(
            "[MQTT-3.10.3-2] an UNSUBSCRIBE needs at least one topic filter",
        ));
    }
    Ok(out)
}

/// An MQTT client connection (PyMyQtt's `myqtt.Conn`).
///
/// `myqtt.Conn(ctx, host, port, ...)` connects before it returns; a failure
/// leaves `is_ok()` False with `last_err` and `error_msg` telling why.
#[pyclass(module = "myqtt", frozen, weakref)]
pub(crate) struct Conn {
    /// `None` when connecting failed.
    core: Option<client::Conn>,
    host: String,
    port: u16,
    username: Option<String>,
    protocol: ProtocolVersion,
    last: Mutex<LastError>,
    callbacks: Arc<Callbacks>,
}

impl Conn {
    fn from_result(p: Prepared, result: Result<client::Conn, ClientError>) -> Self {
        let mut last = LastError::default();
        let core = match result {
            Ok(c) => Some(c),
            Err(e) => {
                last.code = match &e {
                    ClientError::ConnectionRefused { reason_code, .. } => {
                        i32::from(reason_code.to_connack_return_code())
                    }
                    ClientError::ConnectTimeout | ClientError::Timeout => CONNECT_TIMEOUT,
                    _ => UNABLE_TO_CONNECT,
                };
                tracing::debug!("connection to {}:{} failed: {e}", p.host, p.port);
                last.error = Some(e);
                None
            }
        };
        Self {
            core,
            host: p.host,
            port: p.port,
            username: p.username,
            protocol: p.protocol,
            last: Mutex::new(last),
            callbacks: Arc::new(Callbacks {
                ctx: p.ctx,
                me: OnceLock::new(),
                on_msg: Mutex::new(None),
                on_close: Mutex::new(Vec::new()),
                on_reconnect: Mutex::new(None),
                next_handle: AtomicU64::new(1),
            }),
        }
    }

    /// The engine connection, or the error that prevented it.
    fn core(&self) -> Result<&client::Conn, ClientError> {
        self.core.as_ref().ok_or_else(|| {
            lock(&self.last)
                .error
                .clone()
                .unwrap_or(ClientError::NotConnected)
        })
    }

    /// The engine connection, or the exception for the error that
    /// prevented it.
    fn core_py(&self, py: Python<'_>) -> PyResult<&client::Conn> {
        self.core().map_err(|e| self.to_py(py, &e))
    }

    fn to_py(&self, py: Python<'_>, e: &ClientError) -> PyErr {
        errors::client_error(py, e, self.protocol)
    }

    /// Records a failure for `error_msg` (PyMyQtt's methods return a status
    /// value instead of raising).
    fn record(&self, e: ClientError) {
        tracing::debug!("operation failed: {e}");
        lock(&self.last).error = Some(e);
    }

    /// Keeps a weak reference to the Python object for the handlers.
    fn remember_self(slf: &Bound<'_, Self>) -> PyResult<()> {
        let cb = &slf.get().callbacks;
        if cb.me.get().is_none() {
            let weak = PyWeakrefReference::new(slf.as_any())?.unbind();
            let _ = cb.me.set(weak);
        }
        Ok(())
    }

    /// Queues a publish: at once if there is room in the send queue,
    /// otherwise waiting up to `timeout` for room with the GIL released.
    ///
    /// `make` builds the message; the fast path builds it once and moves
    /// it (publishing is the hot path), a full queue rebuilds it.
    fn enqueue(
        py: Python<'_>,
        core: &client::Conn,
        make: impl Fn() -> PyResult<Result<PublishMessage, ClientError>>,
        timeout: Option<Duration>,
    ) -> PyResult<Result<client::PublishHandle, ClientError>> {
        let msg = match make()? {
            Ok(m) => m,
            Err(e) => return Ok(Err(e)),
        };
        match core.try_publish(msg) {
            Err(ClientError::QueueFull { .. }) => {}
            r => return Ok(r),
        }
        let msg = match make()? {
            Ok(m) => m,
            Err(e) => return Ok(Err(e)),
        };
        let r = wait_until(py, timeout, |slice| {
            match core.publish_blocking(msg.clone(), slice) {
                Err(ClientError::QueueFull { .. }) => None,
                r => Some(r),
            }
        })?;
        Ok(r.unwrap_or(Err(ClientError::QueueFull {
            limit: core.send_queue_limit(),
        })))
    }

    fn message(
        topic: &str,
        payload: Option<&Bound<'_, PyAny>>,
        qos: i64,
        retain: bool,
        properties: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Result<PublishMessage, ClientError>> {
        let payload = props::payload(payload)?;
        let qos = qos_arg(qos)?;
        let properties = props::publish_properties(properties)?;
        Ok(PublishMessage::new(topic, payload)
            .map(|m| m.qos(qos).retain(retain).properties(properties)))
    }

    fn subscribe_codes(&self, outcome: &client::SubscribeOutcome) -> Vec<u8> {
        outcome
            .reason_codes
            .iter()
            .map(|&c| suback_code(c, self.protocol))
            .collect()
    }

    /// Spawns `fut`; its result goes to `callback(exc, value)`.
    fn spawn_async<T, F>(
        &self,
        callback: Py<PyAny>,
        fut: impl FnOnce(client::Conn) -> F,
        convert: complete::Convert<T>,
    ) where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, ClientError>> + Send + 'static,
    {
        match self.core() {
            Ok(core) => complete::spawn(
                core.ctx(),
                self.protocol,
                fut(core.clone()),
                callback,
                convert,
            ),
            Err(e) => complete::ready::<T>(self.protocol, Err(e), callback, convert),
        }
    }

    /// `close` / `shutdown` without blocking. A connection that never came
    /// up is closed already, so the callback gets success at once instead
    /// of `spawn_async`'s "not connected" error.
    fn end_async<F>(&self, callback: Py<PyAny>, op: impl FnOnce(&client::Conn) -> F)
    where
        F: std::future::Future<Output = Result<(), ClientError>> + Send + 'static,
    {
        let convert: complete::Convert<()> = Box::new(|py, ()| Ok(py.None()));
        if self.core.is_none() {
            complete::ready(self.protocol, Ok(()), callback, convert);
        } else {
            self.spawn_async(callback, |c| op(&c), convert);
        }
    }
}

#[pymethods]
impl Conn {
    /// Connects to `host:port` and returns once connected or failed (check
    /// `is_ok()`). Waits with the GIL released; Ctrl-C interrupts it.
    ///
    /// `client_identifier` None makes one up before MQTT 5 and lets the
    /// server assign one at MQTT 5. `conn_opts`: a `myqtt.ConnOpts`.
    #[new]
    #[pyo3(signature = (ctx, host, port, client_identifier=None, clean_session=false, keep_alive=60, conn_opts=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        ctx: &Bound<'_, Ctx>,
        host: String,
        port: &Bound<'_, PyAny>,
        client_identifier: Option<String>,
        clean_session: bool,
        keep_alive: u16,
        conn_opts: Option<&Bound<'_, ConnOpts>>,
    ) -> PyResult<Self> {
        let p = prepare(
            ctx,
            host,
            port,
            client_identifier,
            clean_session,
            keep_alive,
            conn_opts,
        )?;
        let result = match client::Conn::start_connect(&p.engine, p.opts.clone()) {
            Err(e) => Err(e),
            Ok(connecting) => wait_until(py, None, |slice| match connecting.wait(slice) {
                Err(ClientError::Timeout) => None,
                r => Some(r),
            })?
            .unwrap_or(Err(ClientError::Timeout)),
        };
        Ok(Self::from_result(p, result))
    }

    // ----- PyMyQtt -----

    /// True while connected (False after a failed connect, after close, and
    /// while an automatic reconnection is under way).
    fn is_ok(&self) -> bool {
        self.core.as_ref().is_some_and(client::Conn::is_connected)
    }

    /// Subscribes to `topic` at `qos`, waiting up to `wait_sub` seconds (0:
    /// no limit) for the SUBACK. Returns `(True, granted_qos)`, or
    /// `(False, None)` on failure (see `error_msg`).
    #[pyo3(signature = (topic, qos=0, wait_sub=10.0))]
    fn sub(
        &self,
        py: Python<'_>,
        topic: &str,
        qos: i64,
        wait_sub: f64,
    ) -> PyResult<(bool, Option<u8>)> {
        let qos = qos_arg(qos)?;
        let core = match self.core() {
            Ok(c) => c,
            Err(e) => {
                self.record(e);
                return Ok((false, None));
            }
        };
        let pending = core.subscribe(topic, qos);
        let outcome = match wait_pending(py, &pending, wait_secs(wait_sub))? {
            Ok(o) => o,
            Err(e) => {
                self.record(e);
                return Ok((false, None));
            }
        };
        if let Some(q) = outcome.granted_qos().first().copied().flatten() {
            return Ok((true, Some(q.as_u8())));
        }
        let code = outcome
            .reason_codes
            .first()
            .copied()
            .unwrap_or(ReasonCode::UnspecifiedError);
        self.record(ClientError::Refused {
            reason_code: code,
            code: code.as_u8(),
            reason_string: props::reason_string(&outcome.properties),
        });
        Ok((false, None))
    }

    /// Unsubscribes from `topic`, waiting up to `wait_unsub` seconds (0: no
    /// limit) for the UNSUBACK. True on success.
    #[pyo3(signature = (topic, wait_unsub=10.0))]
    fn unsub(&self, py: Python<'_>, topic: &str, wait_unsub: f64) -> PyResult<bool> {
        let core = match self.core() {
            Ok(c) => c,
            Err(e) => {
                self.record(e);
                return Ok(false);
            }
        };
        match wait_pending(py, &core.unsubscribe(topic), wait_secs(wait_unsub))? {
            Ok(o) if o.reason_codes.iter().all(|c| c.is_success()) => Ok(true),
            Ok(o) => {
                let code = o.reason_codes.iter().copied().find(|c| !c.is_success());
                let code = code.unwrap_or(ReasonCode::UnspecifiedError);
                self.record(ClientError::Refused {
                    reason_code: code,
                    code: code.as_u8(),
                    reason_string: props::reason_string(&o.properties),
                });
                Ok(false)
            }
            Err(e) => {
                self.record(e);
                Ok(false)
            }
        }
    }

    /// Publishes `msg` (str or bytes-like; its length is its own) to
    /// `topic`. At QoS 1/2 waits up to `wait_publish` seconds for the
    /// acknowledgement (0: returns once queued). At QoS 0 returns once
    /// queued. True on success.
    #[pyo3(signature = (topic, msg=None, qos=0, retain=false, wait_publish=10.0))]
    fn r#pub(
        &self,
        py: Python<'_>,
        topic: &str,
        msg: Option<&Bound<'_, PyAny>>,
        qos: i64,
        retain: bool,
        wait_publish: f64,
    ) -> PyResult<bool> {
        let core = match self.core() {
            Ok(c) => c,
            Err(e) => {
                self.record(e);
                return Ok(false);
            }
        };
        let queue_wait = wait_secs(wait_publish).or(Some(Duration::from_secs(10)));
        let make = || Self::message(topic, msg, qos, retain, None);
        let handle = match Self::enqueue(py, core, make, queue_wait)? {
            Ok(h) => h,
            Err(e) => {
                self.record(e);
                return Ok(false);
            }
        };
        if handle.qos() == QoS::AtMostOnce || wait_publish <= 0.0 {
            return Ok(true);
        }
        match wait_pending(py, handle.pending(), wait_secs(wait_publish))? {
            Ok(_) => Ok(true),
            Err(e) => {
                self.record(e);
                Ok(false)
            }
        }
    }

    /// Sends PINGREQ and waits up to `wait` seconds (0: no limit) for the
    /// PINGRESP. True when it came.
    #[pyo3(signature = (wait=10.0, *, wait_pingresp=None))]
    fn ping(&self, py: Python<'_>, wait: f64, wait_pingresp: Option<f64>) -> PyResult<bool> {
        let wait = wait_pingresp.unwrap_or(wait);
        let core = match self.core() {
            Ok(c) => c,
            Err(e) => {
                self.record(e);
                return Ok(false);
            }
        };
        match wait_pending(py, &core.ping(), wait_secs(wait))? {
            Ok(_) => Ok(true),
            Err(e) => {
                self.record(e);
                Ok(false)
            }
        }
    }

    /// The next received message, waiting up to `timeout` milliseconds
    /// (PyMyQtt's unit; 0 does not wait; None or a negative value waits
    /// without limit). None when nothing came in time or the connection is
    /// closed.
    #[pyo3(signature = (timeout=Some(10_000)), text_signature = "($self, timeout=10000)")]
    fn get_next(&self, py: Python<'_>, timeout: Option<i64>) -> PyResult<Option<Msg>> {
        let core = match self.core() {
            Ok(c) => c,
            Err(e) => {
                self.record(e);
                return Ok(None);
            }
        };
        let result = match timeout {
            Some(0) => core.try_next(),
            t => {
                let limit = t
                    .and_then(|ms| u64::try_from(ms).ok())
                    .map(Duration::from_millis);
                wait_until(py, limit, |slice| match core.get_next(Some(slice)) {
                    Ok(None) => None,
                    r => Some(r),
                })?
                .unwrap_or(Ok(None))
            }
        };
        match result {
            Ok(m) => Ok(m.map(Msg::new)),
            Err(e) => {
                self.record(e);
                Ok(None)
            }
        }
    }

    /// Sets the handler called for every received message,
    /// `handler(ctx, conn, msg, data)`, on this connection's callback
    /// thread, in order. It may publish, subscribe or close. None removes
    /// it (messages wait for `get_next` again). An exception in it is
    /// logged to the `myqtt` logger and the message discarded.
    #[pyo3(signature = (handler, data=None))]
    fn set_on_msg(
        slf: &Bound<'_, Self>,
        handler: Option<Py<PyAny>>,
        data: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        Self::remember_self(slf)?;
        let Some(func) = handler.filter(|h| !h.is_none(py)) else {
            if let Some(core) = &this.core {
                core.clear_on_msg();
            }
            *lock(&this.callbacks.on_msg) = None;
            return Ok(());
        };
        *lock(&this.callbacks.on_msg) = Some(Handler::new(py, func, data)?);
        if let Some(core) = &this.core {
            let cb = Arc::clone(&this.callbacks);
            core.set_on_msg(move |_, m| {
                complete::with_python(|py| cb.dispatch_msg(py, m));
            });
        }
        Ok(())
    }

    /// The manual's name for `set_on_msg`.
    #[pyo3(signature = (handler, data=None))]
    fn set_msg_received(
        slf: &Bound<'_, Self>,
        handler: Option<Py<PyAny>>,
        data: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        Self::set_on_msg(slf, handler, data)
    }

    /// Adds a handler called when the network connection ends (closed,
    /// shut down, lost), `handler(conn, data)`, on the callback thread.
    /// Returns a `myqtt.Handle` for `remove_on_close`.
    #[pyo3(signature = (handler, data=None))]
    fn set_on_close(
        slf: &Bound<'_, Self>,
        handler: Py<PyAny>,
        data: Option<Py<PyAny>>,
    ) -> PyResult<Handle> {
        let py = slf.py();
        let this = slf.get();
        Self::remember_self(slf)?;
        let h = Handler::new(py, handler, data)?;
        let id = this.callbacks.next_handle.fetch_add(1, Ordering::Relaxed);
        let first = {
            let mut list = lock(&this.callbacks.on_close);
            list.push((id, h));
            list.len() == 1
        };
        if first && let Some(core) = &this.core {
            let cb = Arc::clone(&this.callbacks);
            core.set_on_close(move |_, info| {
                complete::with_python(|py| cb.dispatch_close(py, info));
            });
        }
        Ok(Handle { id })
    }

    /// Removes an on-close handler; True if it was installed.
    fn remove_on_close(&self, handle: &Bound<'_, PyAny>) -> bool {
        let Ok(h) = handle.cast::<Handle>() else {
            return false;
        };
        let id = h.get().id;
        let mut list = lock(&self.callbacks.on_close);
        let before = list.len();
        list.retain(|(i, _)| *i != id);
        list.len() != before
    }

    /// Sets the handler called once an automatic reconnection is complete
    /// (see `ConnOpts.set_reconnect`), `handler(conn, data)`, on the
    /// callback thread. None removes it.
    #[pyo3(signature = (handler, data=None))]
    fn set_on_reconnect(
        slf: &Bound<'_, Self>,
        handler: Option<Py<PyAny>>,
        data: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        Self::remember_self(slf)?;
        let h = handler
            .filter(|h| !h.is_none(py))
            .map(|f| Handler::new(py, f, data))
            .transpose()?;
        let install = h.is_some();
        *lock(&this.callbacks.on_reconnect) = h;
        if install && let Some(core) = &this.core {
            let cb = Arc::clone(&this.callbacks);
            core.set_on_reconnect(move |_, info| {
                complete::with_python(|py| cb.dispatch_reconnect(py, info));
            });
        }
        Ok(())
    }

    /// Closes with DISCONNECT (the server discards the will
    /// [MQTT-3.1.2-10]) and waits for it to be flushed. True when done.
    fn close(&self, py: Python<'_>) -> PyResult<bool> {
        let Some(core) = &self.core else {
            return Ok(true);
        };
        Ok(wait_pending(py, &core.close(), Some(CLOSE_WAIT))?.is_ok())
    }

    /// Drops the network connection without DISCONNECT, so the server
    /// publishes the will [MQTT-3.1.2-8].
    fn shutdown(&self, py: Python<'_>) -> PyResult<()> {
        if let Some(core) = &self.core {
            // The shutdown completes quickly; its outcome says nothing more.
            let _ = wait_pending(py, &core.shutdown(), Some(CLOSE_WAIT))?;
        }
        Ok(())
    }

    /// The client identifier in use (configured, made up, or assigned by an
    /// MQTT 5 server); None if unknown.
    #[getter]
    fn client_id(&self) -> Option<String> {
        self.core
            .as_ref()
            .map(client::Conn::client_id)
            .filter(|s| !s.is_empty())
    }

    /// The host connected to.
    #[getter]
    fn host(&self) -> &str {
        &self.host
    }

    /// The port connected to, as a str (PyMyQtt's type).
    #[getter]
    fn port(&self) -> String {
        self.port.to_string()
    }

    /// The user name sent in CONNECT, if any.
    #[getter]
    fn username(&self) -> Option<String> {
        self.username.clone()
    }

    /// PyMyQtt's last error code: 0 (`CONNACK_ACCEPTED`), the CONNACK
    /// return code of a refused connection (`CONNACK_*`, 3.1.1 numbering at
    /// every protocol level), `CONNACK_UNABLE_TO_CONNECT` or
    /// `CONNACK_CONNECT_TIMEOUT`.
    #[getter]
    fn last_err(&self) -> i32 {
        lock(&self.last).code
    }

    /// Same as `last_err` (PyMyQtt's older name).
    #[getter]
    fn status(&self) -> i32 {
        self.last_err()
    }

    /// The last error as text ("" when nothing failed).
    #[getter]
    fn error_msg(&self) -> String {
        lock(&self.last)
            .error
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    /// The last error as the exception the Pythonic layer would raise, or
    /// None.
    #[getter]
    fn last_exception(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        let e = lock(&self.last).error.clone()?;
        Some(self.to_py(py, &e).into_value(py).into_any())
    }

    /// "client": this side opened the connection.
    #[getter]
    #[allow(clippy::unused_self)] // a Python attribute needs `self`
    fn role(&self) -> &'static str {
        "client"
    }

    /// The socket's file descriptor (an int; a `SOCKET` on Windows) while
    /// connected, None otherwise. For logging or socket options
    /// (`socket.socket(fileno=os.dup(fd))`): the engine owns the stream,
    /// so reading or writing it breaks the connection.
    #[getter]
    fn socket(&self) -> Option<i64> {
        self.core.as_ref().and_then(client::Conn::socket)
    }

    /// The context the connection was created in.
    #[getter]
    fn ctx(&self, py: Python<'_>) -> Py<Ctx> {
        self.callbacks.ctx.clone_ref(py)
    }

    /// The protocol level: 3, 4 or 5.
    #[getter]
    fn protocol(&self) -> u8 {
        self.protocol.level()
    }

    /// Whether the server resumed a session at the last CONNACK.
    #[getter]
    fn session_present(&self) -> bool {
        self.core
            .as_ref()
            .is_some_and(client::Conn::session_present)
    }

    /// How many automatic reconnections have succeeded.
    #[getter]
    fn reconnect_count(&self) -> u64 {
        self.core.as_ref().map_or(0, client::Conn::reconnect_count)
    }

    /// Why the connection closed for good, as text; None while open.
    #[getter]
    fn close_reason(&self) -> Option<String> {
        match &self.core {
            Some(c) => c.close_reason().map(|r| r.to_string()),
            None => Some(self.error_msg()),
        }
    }

    /// True once the connection has closed for good.
    #[getter]
    fn closed(&self) -> bool {
        self.core
            .as_ref()
            .is_none_or(|c| c.status() == Status::Closed)
    }

    // ----- the Pythonic layer's methods (they raise) -----

    /// Publishes and returns a `myqtt.PublishHandle` once the message is
    /// queued, waiting up to `timeout` seconds (None: no limit) for room in
    /// the send queue. Does not wait for the acknowledgement: call
    /// `handle.wait()`. `properties`: a dict or `myqtt.Properties`.
    #[pyo3(
        signature = (topic, payload=None, qos=0, retain=false, properties=None, timeout=Some(10.0)),
        text_signature = "($self, topic, payload=None, qos=0, retain=False, properties=None, timeout=10.0)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn publish(
        &self,
        py: Python<'_>,
        topic: &str,
        payload: Option<&Bound<'_, PyAny>>,
        qos: i64,
        retain: bool,
        properties: Option<&Bound<'_, PyAny>>,
        timeout: Option<f64>,
    ) -> PyResult<PublishHandle> {
        let core = self.core_py(py)?;
        let make = || Self::message(topic, payload, qos, retain, properties);
        let handle = Self::enqueue(py, core, make, timeout_arg(timeout)?)?
            .map_err(|e| self.to_py(py, &e))?;
        Ok(PublishHandle::new(
            handle,
            core.ctx().clone(),
            self.protocol,
        ))
    }

    /// Like `publish`, but returns None at once when the send queue is full.
    #[pyo3(signature = (topic, payload=None, qos=0, retain=false, properties=None))]
    fn try_publish(
        &self,
        py: Python<'_>,
        topic: &str,
        payload: Option<&Bound<'_, PyAny>>,
        qos: i64,
        retain: bool,
        properties: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<PublishHandle>> {
        let msg = Self::message(topic, payload, qos, retain, properties)?
            .map_err(|e| self.to_py(py, &e))?;
        let core = self.core_py(py)?;
        match core.try_publish(msg) {
            Ok(h) => Ok(Some(PublishHandle::new(
                h,
                core.ctx().clone(),
                self.protocol,
            ))),
            Err(ClientError::QueueFull { .. }) => Ok(None),
            Err(e) => Err(self.to_py(py, &e)),
        }
    }

    /// Subscribes in one SUBSCRIBE and waits up to `timeout` seconds for
    /// the SUBACK. `subscriptions`: a filter, or a list of filters and
    /// `(filter, qos)` pairs (`qos` is the default). Returns one reason code
    /// per filter as the server sent it (granted QoS 0/1/2, or a failure
    /// code 0x80 and above); a refused filter does not raise.
    #[pyo3(
        signature = (subscriptions, qos=0, *, no_local=false, retain_as_published=false,
            retain_handling=0, properties=None, timeout=Some(10.0)),
        text_signature = "($self, subscriptions, qos=0, *, no_local=False, retain_as_published=False, retain_handling=0, properties=None, timeout=10.0)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn subscribe(
        &self,
        py: Python<'_>,
        subscriptions: &Bound<'_, PyAny>,
        qos: i64,
        no_local: bool,
        retain_as_published: bool,
        retain_handling: u8,
        properties: Option<&Bound<'_, PyAny>>,
        timeout: Option<f64>,
    ) -> PyResult<Py<PyList>> {
        let subs = subscriptions_arg(
            subscriptions,
            qos_arg(qos)?,
            no_local,
            retain_as_published,
            retain_handling,
        )?;
        let properties = props::subscribe_properties(properties)?;
        let core = self.core_py(py)?;
        let pending = core.subscribe_many(subs, properties);
        let outcome =
            wait_pending(py, &pending, timeout_arg(timeout)?)?.map_err(|e| self.to_py(py, &e))?;
        Ok(PyList::new(py, self.subscribe_codes(&outcome))?.unbind())
    }

    /// Unsubscribes from a filter or a list of filters and waits up to
    /// `timeout` seconds for the UNSUBACK; one reason code per filter (all
    /// 0 before MQTT 5).
    #[pyo3(
        signature = (topics, properties=None, timeout=Some(10.0)),
        text_signature = "($self, topics, properties=None, timeout=10.0)"
    )]
    fn unsubscribe(
        &self,
        py: Python<'_>,
        topics: &Bound<'_, PyAny>,
        properties: Option<&Bound<'_, PyAny>>,
        timeout: Option<f64>,
    ) -> PyResult<Py<PyList>> {
        let filters = filters_arg(topics)?;
        let properties = props::unsubscribe_properties(properties)?;
        let core = self.core_py(py)?;
        let outcome = wait_pending(
            py,
            &core.unsubscribe_many(filters, properties),
            timeout_arg(timeout)?,
        )?
        .map_err(|e| self.to_py(py, &e))?;
        let codes: Vec<u8> = outcome.reason_codes.iter().map(|c| c.as_u8()).collect();
        Ok(PyList::new(py, codes)?.unbind())
    }

    /// The next received message, waiting up to `timeout` seconds (None: no
    /// limit); None on timeout. Raises `ConnectionLostError` once the
    /// connection has closed and every message was taken.
    #[pyo3(signature = (timeout=None))]
    fn next_message(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<Msg>> {
        let core = self.core_py(py)?;
        let limit = timeout_arg(timeout)?;
        let r = wait_until(py, limit, |slice| match core.get_next(Some(slice)) {
            Ok(None) => None,
            r => Some(r),
        })?;
        match r {
            None | Some(Ok(None)) => Ok(None),
            Some(Ok(Some(m))) => Ok(Some(Msg::new(m))),
            Some(Err(e)) => Err(self.to_py(py, &e)),
        }
    }

    /// Sends PINGREQ and returns the round trip in seconds; raises on
    /// timeout or a lost connection.
    #[pyo3(signature = (timeout=Some(10.0)), text_signature = "($self, timeout=10.0)")]
    fn ping_rtt(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<f64> {
        let core = self.core_py(py)?;
        wait_pending(py, &core.ping(), timeout_arg(timeout)?)?
            .map(|d| d.as_secs_f64())
            .map_err(|e| self.to_py(py, &e))
    }

    // ----- asynchronous variants: `callback(exc, value)` on the completion thread -----

    /// `publish` that waits for room in the send queue without blocking:
    /// `callback(exc, handle)`.
    #[pyo3(signature = (callback, topic, payload=None, qos=0, retain=false, properties=None))]
    #[allow(clippy::too_many_arguments)]
    fn publish_async(
        &self,
        py: Python<'_>,
        callback: Py<PyAny>,
        topic: &str,
        payload: Option<&Bound<'_, PyAny>>,
        qos: i64,
        retain: bool,
        properties: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let msg = Self::message(topic, payload, qos, retain, properties)?
            .map_err(|e| self.to_py(py, &e))?;
        let protocol = self.protocol;
        self.spawn_async(
            callback,
            |c| async move { c.publish(msg).await.map(|h| (h, c)) },
            Box::new(move |py, (h, c): (client::PublishHandle, client::Conn)| {
                Ok(Py::new(py, PublishHandle::new(h, c.ctx().clone(), protocol))?.into_any())
            }),
        );
        Ok(())
    }

    /// `subscribe` without blocking: `callback(exc, reason_codes)`.
    #[pyo3(signature = (callback, subscriptions, qos=0, *, no_local=false,
        retain_as_published=false, retain_handling=0, properties=None))]
    #[allow(clippy::too_many_arguments)]
    fn subscribe_async(
        &self,
        callback: Py<PyAny>,
        subscriptions: &Bound<'_, PyAny>,
        qos: i64,
        no_local: bool,
        retain_as_published: bool,
        retain_handling: u8,
        properties: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let subs = subscriptions_arg(
            subscriptions,
            qos_arg(qos)?,
            no_local,
            retain_as_published,
            retain_handling,
        )?;
        let properties = props::subscribe_properties(properties)?;
        let protocol = self.protocol;
        self.spawn_async(
            callback,
            |c| c.subscribe_many(subs, properties),
            Box::new(move |py, o: client::SubscribeOutcome| {
                let codes: Vec<u8> = o
                    .reason_codes
                    .iter()
                    .map(|&c| suback_code(c, protocol))
                    .collect();
                Ok(PyList::new(py, codes)?.into_any().unbind())
            }),
        );
        Ok(())
    }

    /// `unsubscribe` without blocking: `callback(exc, reason_codes)`.
    #[pyo3(signature = (callback, topics, properties=None))]
    fn unsubscribe_async(
        &self,
        callback: Py<PyAny>,
        topics: &Bound<'_, PyAny>,
        properties: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let filters = filters_arg(topics)?;
        let properties = props::unsubscribe_properties(properties)?;
        self.spawn_async(
            callback,
            |c| c.unsubscribe_many(filters, properties),
            Box::new(|py, o: client::UnsubscribeOutcome| {
                let codes: Vec<u8> = o.reason_codes.iter().map(|c| c.as_u8()).collect();
                Ok(PyList::new(py, codes)?.into_any().unbind())
            }),
        );
        Ok(())
    }

    /// The next message without blocking: `callback(exc, msg)`; `exc` is
    /// `ConnectionLostError` once the connection has closed and every
    /// message was taken. The message is taken (and acknowledged) when it
    /// comes, whether or not the callback still wants it.
    fn next_message_async(&self, callback: Py<PyAny>) {
        self.spawn_async(
            callback,
            |c| async move { c.next().await },
            Box::new(|py, m: client::Message| Ok(Py::new(py, Msg::new(m))?.into_any())),
        );
    }

    /// The next message if one is waiting, without waiting; None otherwise.
    /// Raises `ConnectionLostError` once the connection has closed and
    /// every message was taken.
    fn try_next_message(&self, py: Python<'_>) -> PyResult<Option<Msg>> {
        let core = self.core_py(py)?;
        match core.try_next() {
            Ok(m) => Ok(m.map(Msg::new)),
            Err(e) => Err(self.to_py(py, &e)),
        }
    }

    /// `ping_rtt` without blocking: `callback(exc, seconds)`.
    fn ping_async(&self, callback: Py<PyAny>) {
        self.spawn_async(
            callback,
            |c| c.ping(),
            Box::new(|py, d: Duration| Ok(d.as_secs_f64().into_pyobject(py)?.into_any().unbind())),
        );
    }

    /// `close` without blocking: `callback(exc, None)` once closed.
    fn close_async(&self, callback: Py<PyAny>) {
        self.end_async(callback, client::Conn::close);
    }

    /// `shutdown` without blocking: `callback(exc, None)` once done.
    fn shutdown_async(&self, callback: Py<PyAny>) {
        self.end_async(callback, client::Conn::shutdown);
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        let cb = &self.callbacks;
        // `try_lock`: a traversal must not block; a handler being replaced
        // right now is seen at the next collection.
        if let Ok(h) = cb.on_msg.try_lock()
            && let Some(h) = h.as_ref()
        {
            visit.call(&h.func)?;
            visit.call(&h.data)?;
        }
        if let Ok(list) = cb.on_close.try_lock() {
            for (_, h) in list.iter() {
                visit.call(&h.func)?;
                visit.call(&h.data)?;
            }
        }
        if let Ok(h) = cb.on_reconnect.try_lock()
            && let Some(h) = h.as_ref()
        {
            visit.call(&h.func)?;
            visit.call(&h.data)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        if let Some(core) = &self.core {
            core.clear_on_msg();
        }
        *lock(&self.callbacks.on_msg) = None;
        lock(&self.callbacks.on_close).clear();
        *lock(&self.callbacks.on_reconnect) = None;
    }

    fn __repr__(&self) -> String {
        let state = match &self.core {
            None => "failed".to_owned(),
            Some(c) => format!("{:?}", c.status()).to_lowercase(),
        };
        format!(
            "<myqtt.Conn {}:{} client_id={:?} {state}>",
            self.host,
            self.port,
            self.client_id()
        )
    }
}

/// Starts connecting without blocking and calls `callback(exc, conn)` on
/// the completion thread: `conn` a connected `myqtt.Conn`, or `exc` the
/// reason it failed (`ConnectionRefusedError` with `reason_code`,
/// `ConnectError`, `TimeoutError`). Used by `myqtt.aio.connect`.
#[pyfunction]
#[pyo3(signature = (callback, ctx, host, port, client_identifier=None, clean_session=false, keep_alive=60, conn_opts=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn connect_async(
    callback: Py<PyAny>,
    ctx: &Bound<'_, Ctx>,
    host: String,
    port: &Bound<'_, PyAny>,
    client_identifier: Option<String>,
    clean_session: bool,
    keep_alive: u16,
    conn_opts: Option<&Bound<'_, ConnOpts>>,
) -> PyResult<()> {
    let p = prepare(
        ctx,
        host,
        port,
        client_identifier,
        clean_session,
        keep_alive,
        conn_opts,
    )?;
    let protocol = p.protocol;
    let engine = p.engine.clone();
    let opts = p.opts.clone();
    let convert: complete::Convert<client::Conn> =
        Box::new(move |py, c| Ok(Py::new(py, Conn::from_result(p, Ok(c)))?.into_any()));
    match client::Conn::start_connect(&engine, opts) {
        Err(e) => complete::ready(protocol, Err(e), callback, convert),
        Ok(connecting) => {
            complete::spawn(
                &engine,
                protocol,
                connecting.into_future(),
                callback,
                convert,
            );
        }
    }
    Ok(())
}
