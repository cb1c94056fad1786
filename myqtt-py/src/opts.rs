//! `myqtt.ConnOpts`: PyMyQtt's connection options (authentication, will,
//! automatic reconnection) plus the MQTT 5 choices (protocol level,
//! CONNECT properties).

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use myqtt_core::client::{ConnectOptions, ReconnectOptions};
use myqtt_core::codec::{ConnectProperties, LastWill, ProtocolVersion, QoS, WillProperties};
use myqtt_core::topic::TopicName;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::props;

/// A QoS from its number (0, 1 or 2).
pub(crate) fn qos_from(q: i64) -> PyResult<QoS> {
    u8::try_from(q)
        .ok()
        .and_then(|b| QoS::try_from(b).ok())
        .ok_or_else(|| PyValueError::new_err(format!("[MQTT-3.3.1-4] QoS is 0, 1 or 2, not {q}")))
}

/// A protocol level from its number (3: MQTT 3.1, 4: 3.1.1, 5: 5.0).
pub(crate) fn protocol_from(level: i64) -> PyResult<ProtocolVersion> {
    match level {
        3 => Ok(ProtocolVersion::V31),
        4 => Ok(ProtocolVersion::V311),
        5 => Ok(ProtocolVersion::V5),
        _ => Err(PyValueError::new_err(format!(
            "the protocol level is 3 (MQTT 3.1), 4 (3.1.1) or 5 (5.0), not {level}"
        ))),
    }
}

/// A duration from seconds (a float), refusing negative and NaN values.
pub(crate) fn duration(what: &str, secs: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(secs)
        .map_err(|_| PyValueError::new_err(format!("{what} must be a number of seconds >= 0")))
}

#[derive(Debug, Clone, Default)]
struct OptsData {
    username: Option<String>,
    password: Option<Bytes>,
    will: Option<LastWill>,
    reconnect: Option<ReconnectOptions>,
    protocol: Option<ProtocolVersion>,
    properties: ConnectProperties,
    connect_timeout: Option<Duration>,
}

/// Options for `myqtt.Conn(...)`: create one, call its setters, pass it as
/// `conn_opts`. It can be reused for several connections.
#[pyclass(module = "myqtt", frozen)]
#[derive(Debug, Default)]
pub(crate) struct ConnOpts {
    /// A std mutex held only to read or update the options.
    data: Mutex<OptsData>,
}

impl ConnOpts {
    fn data(&self) -> std::sync::MutexGuard<'_, OptsData> {
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The protocol level these options ask for (3.1.1 unless set).
    pub(crate) fn protocol(&self) -> ProtocolVersion {
        self.data().protocol.unwrap_or(ProtocolVersion::V311)
    }

    /// The user name, if set.
    pub(crate) fn username(&self) -> Option<String> {
        self.data().username.clone()
    }

    /// Engine options for `host:port` with the CONNECT fields every
    /// connection gives.
    pub(crate) fn build(
        &self,
        host: &str,
        port: u16,
        client_id: String,
        clean: bool,
        keep_alive: u16,
    ) -> ConnectOptions {
        let d = self.data().clone();
        let mut o = ConnectOptions::new(host, port)
            .protocol(d.protocol.unwrap_or(ProtocolVersion::V311))
            .client_id(client_id)
            .clean_start(clean)
            .keep_alive(keep_alive)
            .connect_properties(d.properties);
        if let Some(u) = d.username {
            o = o.username(u);
        }
        if let Some(p) = d.password {
            o = o.password(p);
        }
        if let Some(w) = d.will {
            // The topic was validated by set_will, so this cannot fail.
            if let Ok(with) = o.clone().will(w.topic.as_str(), w.payload, w.qos, w.retain) {
                o = with.will_properties(w.properties);
            }
        }
        if let Some(r) = d.reconnect {
            o = o.reconnect(r);
        }
        if let Some(t) = d.connect_timeout {
            o = o.connect_timeout(t);
        }
        o
    }
}

#[pymethods]
impl ConnOpts {
    #[new]
    fn new() -> Self {
        Self::default()
    }

    /// Sets the user name and password sent in CONNECT. `password` is str
    /// or bytes; `None` sends none. Before MQTT 5 a password needs a user
    /// name [MQTT-3.1.2-22].
    #[pyo3(signature = (username, password=None))]
    fn set_auth(
        &self,
        username: Option<String>,
        password: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let password = password
            .filter(|p| !p.is_none())
            .map(|p| props::payload(Some(p)))
            .transpose()?;
        let mut d = self.data();
        d.username = username;
        d.password = password;
        Ok(())
    }

    /// Sets the will: published by the server when the connection ends
    /// without DISCONNECT (`conn.shutdown()`, a lost link) [MQTT-3.1.2-8],
    /// and not after `conn.close()` [MQTT-3.1.2-10]. `properties`: MQTT 5
    /// will properties (a dict or `myqtt.Properties`, plus
    /// `will_delay_interval`).
    #[pyo3(signature = (will_qos, will_topic, will_message, will_retain=false, properties=None))]
    fn set_will(
        &self,
        will_qos: i64,
        will_topic: &str,
        will_message: Option<&Bound<'_, PyAny>>,
        will_retain: bool,
        properties: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let topic = TopicName::new(will_topic)
            .map_err(|e| PyValueError::new_err(format!("will topic: {e}")))?;
        let will = LastWill {
            topic,
            payload: props::payload(will_message)?,
            qos: qos_from(will_qos)?,
            retain: will_retain,
            properties: if properties.is_some() {
                props::will_properties(properties)?
            } else {
                WillProperties::default()
            },
        };
        self.data().will = Some(will);
        Ok(())
    }

    /// Turns automatic reconnection on (the default argument) or off. After
    /// a lost connection the client waits `initial_delay` seconds (default
    /// 1), then doubles the wait after every failed attempt up to
    /// `max_delay` (default 30); `max_attempts` (default 0: no limit)
    /// bounds the attempts. Subscriptions are made again when the server
    /// kept no session; `conn.set_on_reconnect` tells when it is done.
    #[pyo3(signature = (reconnect=true, *, initial_delay=None, max_delay=None, max_attempts=None))]
    fn set_reconnect(
        &self,
        reconnect: bool,
        initial_delay: Option<f64>,
        max_delay: Option<f64>,
        max_attempts: Option<u32>,
    ) -> PyResult<()> {
        let r = if reconnect {
            let mut r = ReconnectOptions::default();
            if let Some(d) = initial_delay {
                r = r.initial_delay(duration("initial_delay", d)?);
            }
            if let Some(d) = max_delay {
                r = r.max_delay(duration("max_delay", d)?);
            }
            if let Some(n) = max_attempts {
                r = r.max_attempts(n);
            }
            Some(r)
        } else {
            None
        };
        self.data().reconnect = r;
        Ok(())
    }

    /// Sets the protocol level: 3 (MQTT 3.1), 4 (3.1.1, the default) or 5.
    fn set_protocol(&self, version: i64) -> PyResult<()> {
        self.data().protocol = Some(protocol_from(version)?);
        Ok(())
    }

    /// Sets MQTT 5 CONNECT properties from a dict: session_expiry_interval,
    /// receive_maximum, maximum_packet_size, topic_alias_maximum,
    /// request_response_information, request_problem_information,
    /// user_properties (list of pairs or dict), authentication_method,
    /// authentication_data. Ignored before MQTT 5.
    fn set_properties(&self, properties: &Bound<'_, PyAny>) -> PyResult<()> {
        self.data().properties = props::connect_properties(Some(properties))?;
        Ok(())
    }

    /// How long `myqtt.Conn(...)` waits for the TCP connection and the
    /// CONNACK together, in seconds. Default 10.
    fn set_connect_timeout(&self, seconds: f64) -> PyResult<()> {
        self.data().connect_timeout = Some(duration("connect timeout", seconds)?);
        Ok(())
    }

    /// The protocol level (3, 4 or 5).
    #[getter(protocol)]
    fn protocol_level(&self) -> u8 {
        self.protocol().level()
    }

    /// True when automatic reconnection is on.
    #[getter]
    fn reconnect(&self) -> bool {
        self.data().reconnect.is_some()
    }

    fn __repr__(&self) -> String {
        let d = self.data();
        format!(
            "<myqtt.ConnOpts protocol={} username={:?} will={} reconnect={}>",
            d.protocol.unwrap_or(ProtocolVersion::V311).level(),
            d.username,
            d.will.as_ref().map_or("None", |w| w.topic.as_str()),
            d.reconnect.is_some()
        )
    }
}
