//! What listener-side handlers receive: `myqtt.ListenerConn` (the client a
//! hook is about), `myqtt.ListenerMsg` (an incoming PUBLISH an `on_publish`
//! handler may rewrite) and `myqtt.ListenerEvent`.

use std::sync::{Arc, Mutex, PoisonError, Weak};

use bytes::Bytes;
use myqtt_core::ByteStr;
use myqtt_core::broker::WeakBroker;
use myqtt_core::broker::hooks::{ClientInfo, ConnectVerdict, Message};
use myqtt_core::codec::{PublishProps, QoS, ReasonCode};
use myqtt_core::topic::TopicName;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use tokio::sync::oneshot;

use crate::errors;

/// Turns a `str` or bytes-like Python value into bytes (what `pub` and a
/// rewritten payload accept).
pub(crate) fn payload_bytes(value: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(Bytes::copy_from_slice(s.to_cow()?.as_bytes()));
    }
    if let Ok(b) = value.cast::<PyBytes>() {
        return Ok(Bytes::copy_from_slice(b.as_bytes()));
    }
    let v: Vec<u8> = value.extract().map_err(|_| {
        pyo3::exceptions::PyTypeError::new_err("a payload is str, bytes or bytearray")
    })?;
    Ok(Bytes::from(v))
}

/// A QoS from a Python int.
pub(crate) fn qos_from(qos: u8) -> PyResult<QoS> {
    QoS::try_from(qos).map_err(|_| PyValueError::new_err(format!("QoS {qos} is not 0, 1 or 2")))
}

/// A topic name from a Python string, checked as PUBLISH requires.
pub(crate) fn topic_from(topic: &str) -> PyResult<TopicName> {
    TopicName::new(ByteStr::from(topic.to_owned()))
        .map_err(|e| PyValueError::new_err(format!("invalid topic {topic:?}: {e}")))
}

/// Maps an `on_connect` answer (PyMyQtt's `CONNACK_*`, or an MQTT 5 reason
/// code from 0x80) to the engine's verdict; `None` for `CONNACK_DEFERRED`.
pub(crate) fn connect_verdict(code: i64) -> Option<ConnectVerdict> {
    match code {
        -1 => None,
        0 => Some(ConnectVerdict::Accept),
        1..=5 => Some(ConnectVerdict::Refuse(
            u8::try_from(code)
                .ok()
                .and_then(ReasonCode::from_connack_return_code)
                .unwrap_or(ReasonCode::NotAuthorized),
        )),
        _ => Some(ConnectVerdict::Refuse(
            u8::try_from(code)
                .ok()
                .and_then(|b| ReasonCode::try_from(b).ok())
                .filter(|r| !r.is_success())
                .unwrap_or(ReasonCode::NotAuthorized),
        )),
    }
}

/// A client as a listener-side handler sees it (PyMyQtt's `conn` with role
/// "listener"): who it is, where from, and what can be done to it.
#[pyclass(module = "myqtt", frozen)]
pub(crate) struct ListenerConn {
    info: ClientInfo,
    /// Dead once the connection has ended.
    alive: Weak<ClientInfo>,
    password: Option<Bytes>,
    broker: Option<WeakBroker>,
    /// The answer to a deferred CONNECT (`CONNACK_DEFERRED`).
    connect_reply: Mutex<Option<oneshot::Sender<ConnectVerdict>>>,
    /// A weak reference to the `myqtt.Ctx` (None once it is gone).
    ctx_ref: Py<PyAny>,
}

impl ListenerConn {
    pub(crate) fn new(
        info: &Arc<ClientInfo>,
        password: Option<Bytes>,
        broker: Option<WeakBroker>,
        ctx_ref: Py<PyAny>,
    ) -> Self {
        Self {
            info: ClientInfo::clone(info),
            alive: Arc::downgrade(info),
            password,
            broker,
            connect_reply: Mutex::new(None),
            ctx_ref,
        }
    }

    /// True while `client` is this connection's (same live `ClientInfo`).
    pub(crate) fn is(&self, client: &Arc<ClientInfo>) -> bool {
        std::ptr::eq(self.alive.as_ptr(), Arc::as_ptr(client))
    }

    /// True once the connection this object describes has ended.
    pub(crate) fn is_dead(&self) -> bool {
        self.alive.strong_count() == 0
    }

    /// Parks the answer channel of a CONNECT being decided.
    pub(crate) fn park_connect_reply(&self, tx: oneshot::Sender<ConnectVerdict>) {
        *self
            .connect_reply
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(tx);
    }

    /// Answers the parked CONNECT, if it still waits; true if it did.
    pub(crate) fn answer_connect(&self, verdict: ConnectVerdict) -> bool {
        let tx = self
            .connect_reply
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        tx.is_some_and(|tx| tx.send(verdict).is_ok())
    }

    fn kick(&self, with_will: bool) -> bool {
        if self.is_dead() {
            return false;
        }
        self.broker.as_ref().is_some_and(|b| {
            b.kick_client(self.info.client_id.as_str(), with_will)
                .unwrap_or(false)
        })
    }
}

#[pymethods]
impl ListenerConn {
    /// The client identifier (the assigned one if the client sent none).
    #[getter]
    fn client_id(&self) -> &str {
        self.info.client_id.as_str()
    }

    /// The user name from CONNECT, or None.
    #[getter]
    fn username(&self) -> Option<&str> {
        self.info.username.as_deref()
    }

    /// The password from CONNECT decoded as text (invalid UTF-8 replaced),
    /// or None. `password_bytes` has the raw bytes.
    #[getter]
    fn password(&self) -> Option<String> {
        self.password
            .as_ref()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    }

    /// The password from CONNECT as bytes, or None.
    #[getter]
    fn password_bytes<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.password.as_ref().map(|p| PyBytes::new(py, p))
    }

    /// The client's IP address.
    #[getter]
    fn host(&self) -> String {
        self.info.peer.ip().to_string()
    }

    /// The client's port.
    #[getter]
    fn port(&self) -> u16 {
        self.info.peer.port()
    }

    /// The client's address as "ip:port".
    #[getter]
    fn peer(&self) -> String {
        self.info.peer.to_string()
    }

    /// The listener address the client connected to, as "ip:port".
    #[getter]
    fn local(&self) -> String {
        self.info.local.to_string()
    }

    /// The protocol level: 3 (MQTT 3.1), 4 (3.1.1) or 5.
    #[getter]
    fn protocol(&self) -> u8 {
        self.info.protocol as u8
    }

    /// The keep-alive in force, in seconds.
    #[getter]
    fn keep_alive(&self) -> u16 {
        self.info.keep_alive
    }

    /// True if the connection is protected by TLS (always False until TLS
    /// arrives).
    #[getter]
    fn tls(&self) -> bool {
        self.info.tls
    }

    /// "listener": the connection was accepted by a listener.
    #[getter]
    #[allow(clippy::unused_self)] // a Python attribute needs `self`
    fn role(&self) -> &'static str {
        "listener"
    }

    /// The context (None once it has been collected).
    #[getter]
    fn ctx(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(self.ctx_ref.bind(py).call0()?.unbind())
    }

    /// True while the connection is open.
    fn is_ok(&self) -> bool {
        !self.is_dead()
    }

    /// The client's socket: its file descriptor (an int; a `SOCKET` on
    /// Windows) while the connection is open, None after. For logging or
    /// socket options; the engine owns the stream.
    #[getter]
    fn socket(&self) -> Option<i64> {
        if self.is_dead() {
            None
        } else {
            self.info.socket
        }
    }

    /// Publishes a message to this client only (no subscription needed):
    /// queued at once, never waits. Returns False if the client is gone.
    #[pyo3(signature = (topic, msg, qos=0, retain=false, wait_publish=0))]
    fn r#pub(
        &self,
        topic: &str,
        msg: &Bound<'_, PyAny>,
        qos: u8,
        retain: bool,
        wait_publish: u64,
    ) -> PyResult<bool> {
        let _ = wait_publish; // queued at once: nothing to wait for
        let message = Message {
            topic: topic_from(topic)?,
            payload: payload_bytes(msg)?,
            qos: qos_from(qos)?,
            retain,
            properties: PublishProps::new(),
        };
        let Some(broker) = &self.broker else {
            return Ok(false);
        };
        broker
            .publish_to(self.info.client_id.as_str(), message)
            .map_err(|e| errors::MyqttError::new_err(e.to_string()))
    }

    /// Answers a CONNECT the `on_connect` handler deferred
    /// (`CONNACK_DEFERRED`) with `code` (`CONNACK_ACCEPTED`, a refusal).
    /// Returns False if there was no CONNECT waiting.
    fn send_connect_reply(&self, code: i64) -> PyResult<bool> {
        let verdict = connect_verdict(code).ok_or_else(|| {
            PyValueError::new_err("send_connect_reply needs a final code, not CONNACK_DEFERRED")
        })?;
        Ok(self.answer_connect(verdict))
    }

    /// Closes the connection (MQTT 5 clients get DISCONNECT 0x98); the
    /// client's will is not published. Returns False if it was closed.
    fn close(&self) -> bool {
        self.kick(false)
    }

    /// Drops the connection as if it had failed: the client's will is
    /// published.
    fn shutdown(&self) -> bool {
        self.kick(true)
    }

    fn __repr__(&self) -> String {
        format!(
            "<myqtt.ListenerConn client_id={:?} peer={}>",
            self.info.client_id.as_str(),
            self.info.peer
        )
    }
}

/// An incoming PUBLISH as an `on_publish` handler sees it. Setting
/// `topic`, `payload`, `qos` or `retain` rewrites the message that is
/// routed when the handler returns `PUBLISH_OK`.
#[pyclass(module = "myqtt")]
pub(crate) struct ListenerMsg {
    /// The message as the engine gave it (nothing copied): the Python
    /// values are made only when the handler reads an attribute.
    held: Held,
    modified: bool,
}

/// Where a [`ListenerMsg`]'s message lives.
enum Held {
    /// Its own message: a single `on_publish` call, or a message of a
    /// batch once the handler changed it.
    Own(Message),
    /// Message `index` of a batch the engine shares with the dispatch
    /// thread (the index is checked when it is made).
    Batch(Arc<Vec<Message>>, usize),
}

impl ListenerMsg {
    pub(crate) fn new(msg: &Message) -> Self {
        Self {
            held: Held::Own(msg.clone()),
            modified: false,
        }
    }

    /// Message `index` of a shared batch (nothing copied), or `None` past
    /// its end.
    pub(crate) fn in_batch(batch: &Arc<Vec<Message>>, index: usize) -> Option<Self> {
        (index < batch.len()).then(|| Self {
            held: Held::Batch(Arc::clone(batch), index),
            modified: false,
        })
    }

    /// Makes this object message `index` of `batch` (reused for the next
    /// message once the handler has dropped it), or `false` past the end.
    pub(crate) fn point_at(&mut self, batch: &Arc<Vec<Message>>, index: usize) -> bool {
        if index >= batch.len() {
            return false;
        }
        match &mut self.held {
            Held::Batch(b, i) if Arc::ptr_eq(b, batch) => *i = index,
            held => *held = Held::Batch(Arc::clone(batch), index),
        }
        self.modified = false;
        true
    }

    /// Gives up the share of the batch for a copy of its message: for a
    /// `msg` the handler kept, so it does not hold the whole batch (and
    /// the engine gets the batch back without copying it).
    pub(crate) fn detach(&mut self) {
        if let Held::Batch(batch, i) = &self.held {
            self.held = Held::Own(batch[*i].clone());
        }
    }

    fn msg(&self) -> &Message {
        match &self.held {
            Held::Own(m) => m,
            // In range: checked by `in_batch`, and a batch never changes.
            Held::Batch(batch, i) => &batch[*i],
        }
    }

    /// The message, for a change: a message of a batch is copied first
    /// (the engine's batch stays as it was).
    fn msg_mut(&mut self) -> &mut Message {
        if let Held::Batch(batch, i) = &self.held {
            self.held = Held::Own(batch[*i].clone());
        }
        self.modified = true;
        match &mut self.held {
            Held::Own(m) => m,
            // Not reached (copied just above); a copy of the batch if it were.
            Held::Batch(batch, i) => &mut Arc::make_mut(batch)[*i],
        }
    }

    /// The rewritten message, if the handler changed something (the topic
    /// was checked when it was set).
    pub(crate) fn rewrite(&self) -> Option<Message> {
        self.modified.then(|| self.msg().clone())
    }
}

#[pymethods]
impl ListenerMsg {
    /// The topic (settable: rewrites the message).
    #[getter]
    fn get_topic(&self) -> &str {
        self.msg().topic.as_str()
    }

    #[setter]
    fn set_topic(&mut self, topic: &str) -> PyResult<()> {
        let topic = topic_from(topic)?;
        self.msg_mut().topic = topic;
        Ok(())
    }

    /// The payload as bytes (settable with bytes or str).
    #[getter]
    fn get_payload<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.msg().payload)
    }

    #[setter]
    fn set_payload(&mut self, payload: &Bound<'_, PyAny>) -> PyResult<()> {
        let payload = payload_bytes(payload)?;
        self.msg_mut().payload = payload;
        Ok(())
    }

    /// The payload decoded as UTF-8 text.
    #[getter]
    fn content(&self) -> String {
        String::from_utf8_lossy(&self.msg().payload).into_owned()
    }

    /// The payload's length in bytes.
    #[getter]
    fn size(&self) -> usize {
        self.msg().payload.len()
    }

    /// The QoS (settable: 0, 1 or 2).
    #[getter]
    fn get_qos(&self) -> u8 {
        self.msg().qos.as_u8()
    }

    #[setter]
    fn set_qos(&mut self, qos: u8) -> PyResult<()> {
        let qos = qos_from(qos)?;
        self.msg_mut().qos = qos;
        Ok(())
    }

    /// The retain flag (settable).
    #[getter]
    fn get_retain(&self) -> bool {
        self.msg().retain
    }

    #[setter]
    fn set_retain(&mut self, retain: bool) {
        self.msg_mut().retain = retain;
    }

    /// Always False: the broker sees each PUBLISH once.
    #[getter]
    #[allow(clippy::unused_self)] // a Python attribute needs `self`
    fn dup(&self) -> bool {
        false
    }

    /// 0: the packet id is the connection's business.
    #[getter]
    #[allow(clippy::unused_self)] // a Python attribute needs `self`
    fn id(&self) -> u16 {
        0
    }

    /// The control packet type's name: always "PUBLISH".
    #[getter]
    #[allow(clippy::unused_self)] // a Python attribute needs `self`
    fn r#type(&self) -> &'static str {
        "PUBLISH"
    }

    /// The MQTT 5 properties (empty before MQTT 5).
    #[getter]
    fn properties(&self) -> crate::props::Properties {
        crate::props::Properties::from_publish(&self.msg().properties)
    }

    /// MQTT 5 user properties as a list of (name, value) pairs.
    #[getter]
    fn user_properties(&self) -> Vec<(String, String)> {
        self.msg()
            .properties
            .user_properties
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn __repr__(&self) -> String {
        format!(
            "<myqtt.ListenerMsg topic={:?} qos={} retain={} size={}>",
            self.msg().topic.as_str(),
            self.msg().qos.as_u8(),
            self.msg().retain,
            self.msg().payload.len()
        )
    }
}

/// Something that happened on the listener, as `set_on_event` handlers get
/// it: `kind` is one of "connected", "disconnected", "subscribed",
/// "unsubscribed", "delivered", "dropped", "listener_started",
/// "listener_stopping".
#[pyclass(module = "myqtt", frozen, get_all)]
pub(crate) struct ListenerEvent {
    /// What happened.
    pub(crate) kind: &'static str,
    /// The client it is about (None for listener events and drops).
    pub(crate) conn: Option<Py<ListenerConn>>,
    /// The client id it is about ("" for listener events).
    pub(crate) client_id: String,
    /// MQTT 5 reason code: why the client disconnected, or the SUBACK code.
    pub(crate) reason: Option<u8>,
    /// The topic of a delivered or dropped message, or the filter of a
    /// subscription.
    pub(crate) topic: Option<String>,
    /// The granted QoS of a subscription, or the message's QoS.
    pub(crate) qos: Option<u8>,
    /// The payload of a delivered or dropped message.
    pub(crate) payload: Option<Py<PyBytes>>,
    /// Why a message was dropped ("queue_full", "expired", "too_large",
    /// "denied", "session_ended").
    pub(crate) drop_reason: Option<&'static str>,
    /// The listener address of listener events ("ip:port").
    pub(crate) address: Option<String>,
}

#[pymethods]
impl ListenerEvent {
    fn __repr__(&self) -> String {
        format!(
            "<myqtt.ListenerEvent {} client_id={:?} topic={:?} reason={:?}>",
            self.kind, self.client_id, self.topic, self.reason
        )
    }
}
