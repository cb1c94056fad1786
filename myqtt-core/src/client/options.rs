//! [`ConnectOptions`]: everything a [`super::Conn`] needs to connect, with
//! documented defaults, and [`ReconnectOptions`] for automatic
//! reconnection.

use std::time::Duration;

use bytes::Bytes;

use crate::ByteStr;
use crate::codec::{ConnectProperties, LastWill, ProtocolVersion, QoS, WillProperties};
use crate::topic::TopicName;

use super::error::ClientError;

/// Automatic reconnection with exponential backoff.
///
/// After a lost connection the client waits `initial_delay`, tries again,
/// and doubles the wait after every failed attempt up to `max_delay`. A
/// connection that reaches CONNACK resets the delay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconnectOptions {
    pub(crate) initial_delay: Duration,
    pub(crate) max_delay: Duration,
    pub(crate) max_attempts: u32,
}

impl Default for ReconnectOptions {
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            max_attempts: 0,
        }
    }
}

impl ReconnectOptions {
    /// The wait before the first attempt. Default 1 s; zero retries at once.
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// The longest wait between attempts. Default 30 s.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Attempts after one lost connection before giving up and closing.
    /// Default `0`: never give up.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// The wait before attempt `attempt` (0-based).
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }
}

/// How to connect: server address, CONNECT fields, limits and policies.
///
/// Every setter documents its default. [`ConnectOptions::new`] takes the
/// server's host and port; everything else is optional.
///
/// ```
/// use std::time::Duration;
/// use myqtt_core::client::ConnectOptions;
/// use myqtt_core::codec::{ProtocolVersion, QoS};
///
/// let opts = ConnectOptions::new("127.0.0.1", 1883)
///     .client_id("sensor-7")
///     .protocol(ProtocolVersion::V5)
///     .clean_start(false)
///     .session_expiry_interval(3600)
///     .keep_alive(30)
///     .will("sensors/7/state", "offline", QoS::AtLeastOnce, true)
///     .unwrap()
///     .connect_timeout(Duration::from_secs(5));
/// assert_eq!(opts.port(), 1883);
/// ```
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) protocol: ProtocolVersion,
    pub(crate) client_id: String,
    pub(crate) clean_start: bool,
    pub(crate) keep_alive: u16,
    pub(crate) will: Option<LastWill>,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<Bytes>,
    pub(crate) properties: ConnectProperties,
    pub(crate) connect_timeout: Duration,
    pub(crate) ping_timeout: Option<Duration>,
    pub(crate) max_inflight: u16,
    pub(crate) maximum_packet_size: Option<u32>,
    pub(crate) topic_alias_maximum: u16,
    pub(crate) outgoing_topic_aliases: u16,
    pub(crate) send_queue_limit: usize,
    pub(crate) receive_queue_limit: usize,
    pub(crate) receive_maximum: Option<u16>,
    pub(crate) manual_ack: bool,
    pub(crate) reconnect: Option<ReconnectOptions>,
    /// The WebSocket request path; `None` connects over plain TCP.
    pub(crate) websocket: Option<String>,
    pub(crate) store: Option<std::sync::Arc<dyn crate::store::Store>>,
}

impl Default for ConnectOptions {
    /// `127.0.0.1:1883` with the defaults of [`ConnectOptions::new`].
    fn default() -> Self {
        Self::new("127.0.0.1", 1883)
    }
}

impl ConnectOptions {
    /// Options to connect to `host:port` (a name or an IP address) with the
    /// defaults below.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            protocol: ProtocolVersion::V311,
            client_id: String::new(),
            clean_start: true,
            keep_alive: 60,
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties::default(),
            connect_timeout: Duration::from_secs(10),
            ping_timeout: None,
            max_inflight: 256,
            maximum_packet_size: None,
            topic_alias_maximum: 0,
            outgoing_topic_aliases: 0,
            send_queue_limit: 1000,
            receive_queue_limit: 1000,
            receive_maximum: None,
            manual_ack: false,
            reconnect: None,
            websocket: None,
            store: None,
        }
    }

    /// The server's host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The protocol level: 3.1, 3.1.1 or 5. Default 3.1.1.
    pub fn protocol(mut self, protocol: ProtocolVersion) -> Self {
        self.protocol = protocol;
        self
    }

    /// The client identifier. Default empty: the server assigns one (an
    /// MQTT 5 server says which in the CONNACK; a 3.1.1 server refuses an
    /// empty id unless clean session is on [MQTT-3.1.3-8]).
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = id.into();
        self
    }

    /// Clean Session (3.1.1) / Clean Start (5). Default true.
    ///
    /// At MQTT 5 with a Session Expiry Interval above 0, automatic
    /// reconnections always use Clean Start 0 to resume the session the
    /// first connection opened.
    pub fn clean_start(mut self, clean: bool) -> Self {
        self.clean_start = clean;
        self
    }

    /// Keep alive in seconds: the client sends PINGREQ when it has sent
    /// nothing for this long [MQTT-3.1.2-23]. Default 60; `0` turns keep
    /// alive off. An MQTT 5 Server Keep Alive replaces it.
    pub fn keep_alive(mut self, secs: u16) -> Self {
        self.keep_alive = secs;
        self
    }

    /// The will: published by the server if the connection ends without
    /// DISCONNECT (see [`super::Conn::shutdown`]). Default none. Fails when
    /// `topic` is not a valid topic name.
    pub fn will(
        mut self,
        topic: &str,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Result<Self, ClientError> {
        self.will = Some(LastWill {
            topic: TopicName::new(topic)?,
            payload: payload.into(),
            qos,
            retain,
            properties: WillProperties::default(),
        });
        Ok(self)
    }

    /// MQTT 5 will properties (will delay interval, message expiry, ...).
    /// Needs a will set first; ignored otherwise and before MQTT 5.
    pub fn will_properties(mut self, properties: WillProperties) -> Self {
        if let Some(w) = &mut self.will {
            w.properties = properties;
        }
        self
    }

    /// The user name. Default none.
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// The password. Default none. Before MQTT 5 a password needs a user
    /// name [MQTT-3.1.2-22]: connecting fails otherwise.
    pub fn password(mut self, password: impl Into<Bytes>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// MQTT 5 CONNECT properties. Default none. Receive Maximum, Maximum
    /// Packet Size and Topic Alias Maximum are always taken from
    /// [`receive_maximum`](Self::receive_maximum),
    /// [`maximum_packet_size`](Self::maximum_packet_size) and
    /// [`topic_alias_maximum`](Self::topic_alias_maximum), so the values
    /// advertised are the values enforced.
    pub fn connect_properties(mut self, properties: ConnectProperties) -> Self {
        self.properties = properties;
        self
    }

    /// MQTT 5 Session Expiry Interval in seconds. Default none (0: the
    /// session ends with the connection); `u32::MAX` never expires.
    pub fn session_expiry_interval(mut self, secs: u32) -> Self {
        self.properties.session_expiry_interval = Some(secs);
        self
    }

    /// Adds an MQTT 5 user property to the CONNECT.
    pub fn user_property(mut self, key: &str, value: &str) -> Self {
        self.properties
            .user_properties
            .push((ByteStr::from(key), ByteStr::from(value)));
        self
    }

    /// How long to wait for the TCP connection and the CONNACK together.
    /// Default 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long to wait for PINGRESP before the connection counts as lost.
    /// Default: one keep-alive interval.
    pub fn ping_timeout(mut self, timeout: Duration) -> Self {
        self.ping_timeout = Some(timeout);
        self
    }

    /// The most QoS 1/2 messages this client has in flight at once (also
    /// capped by the server's MQTT 5 Receive Maximum); the rest wait in the
    /// send queue. Default 256; `0` is invalid.
    pub fn max_inflight(mut self, n: u16) -> Self {
        self.max_inflight = n;
        self
    }

    /// The largest packet the client accepts, advertised at MQTT 5. Default
    /// none (the protocol's limit); `0` is invalid.
    pub fn maximum_packet_size(mut self, bytes: u32) -> Self {
        self.maximum_packet_size = Some(bytes);
        self
    }

    /// The highest topic alias the server may use towards the client
    /// (MQTT 5). Default 0: none.
    pub fn topic_alias_maximum(mut self, n: u16) -> Self {
        self.topic_alias_maximum = n;
        self
    }

    /// How many topic aliases the client assigns to the topics it publishes
    /// to, within the server's Topic Alias Maximum (MQTT 5). Default 0.
    pub fn outgoing_topic_aliases(mut self, n: u16) -> Self {
        self.outgoing_topic_aliases = n;
        self
    }

    /// The send queue's limit: messages accepted by a publish call and not
    /// yet handed to the socket (waiting for the connection, for a send
    /// window, or for the connection task). A publish beyond it waits
    /// ([`super::Conn::publish`]) or fails with [`ClientError::QueueFull`]
    /// ([`super::Conn::try_publish`]). Default 1000; `0` is invalid.
    pub fn send_queue_limit(mut self, n: usize) -> Self {
        self.send_queue_limit = n;
        self
    }

    /// The receive queue's limit: messages received and not yet taken by
    /// the application.
    ///
    /// QoS 1/2 messages are acknowledged only when the application takes
    /// them (or acks them, with [`manual_ack`](Self::manual_ack)), so the
    /// server's send window bounds them, not this limit: at MQTT 5 the
    /// [`receive_maximum`](Self::receive_maximum) the client advertises,
    /// before MQTT 5 the server's own inflight limit. A QoS 0 message that
    /// arrives while the queue is full is dropped and counted
    /// ([`super::Conn::dropped_messages`]). The socket is never paused, so
    /// a slow consumer never stalls keep alive or acknowledgements. Default
    /// 1000; `0` is invalid.
    pub fn receive_queue_limit(mut self, n: usize) -> Self {
        self.receive_queue_limit = n;
        self
    }

    /// MQTT 5 Receive Maximum: how many QoS 1/2 messages the server may
    /// have sent and not had acknowledged at once. A server that sends more
    /// breaks the protocol and is disconnected with reason 0x93
    /// [MQTT-3.3.4-9]. Default none (65535, not advertised): mosquitto
    /// 2.0.11 exceeds a small Receive Maximum after a PUBACK frees the
    /// window, so set it only against servers that keep it. `0` is invalid.
    pub fn receive_maximum(mut self, n: u16) -> Self {
        self.receive_maximum = Some(n);
        self
    }

    /// Manual acknowledgement: the application acknowledges every QoS 1/2
    /// message with [`super::Conn::ack`]; PUBACK / PUBREC still go out in
    /// the order the messages arrived [MQTT-4.6.0-2], [MQTT-4.6.0-3].
    /// Default false.
    pub fn manual_ack(mut self, on: bool) -> Self {
        self.manual_ack = on;
        self
    }

    /// A store for this client's outgoing QoS 1/2 messages (MyQtt's
    /// `offline_pub`; default none). Each such publish is written to the
    /// store (`Side::Client` records under the client id, one fsync)
    /// before the publish call returns, and removed once acknowledged; a
    /// message not acknowledged when the program stops is published again
    /// by the next connection made with the same store and client id, so
    /// it arrives at least once. Needs a client id.
    pub fn store(mut self, store: std::sync::Arc<dyn crate::store::Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Automatic reconnection. Default off: a lost connection closes the
    /// client.
    pub fn reconnect(mut self, reconnect: ReconnectOptions) -> Self {
        self.reconnect = Some(reconnect);
        self
    }

    /// MQTT over WebSocket (MQTT 5.0 §6): connects to
    /// `ws://host:port/path` offering the `mqtt` subprotocol and sends the
    /// packets in binary frames. `path` may start with `/` or not (`"mqtt"`
    /// and `"/mqtt"` are the same). Default off: plain TCP.
    pub fn websocket(mut self, path: impl Into<String>) -> Self {
        self.websocket = Some(path.into());
        self
    }

    /// The WebSocket URL this client connects to, if it uses WebSocket.
    pub fn websocket_url(&self) -> Option<String> {
        self.websocket
            .as_deref()
            .map(|path| format!("ws://{}/{}", self.addr(), path.trim_start_matches('/')))
    }

    /// Checks the values (connecting checks them too): zero limits and,
    /// before MQTT 5, a password without a user name are refused.
    pub fn validate(&self) -> Result<(), ClientError> {
        self.check()
    }

    pub(crate) fn check(&self) -> Result<(), ClientError> {
        if self.max_inflight == 0 {
            return Err(ClientError::InvalidOption("max_inflight must not be 0"));
        }
        if self.maximum_packet_size == Some(0) {
            return Err(ClientError::InvalidOption(
                "maximum_packet_size must not be 0",
            ));
        }
        if self.send_queue_limit == 0 {
            return Err(ClientError::InvalidOption("send_queue_limit must not be 0"));
        }
        if self.receive_queue_limit == 0 {
            return Err(ClientError::InvalidOption(
                "receive_queue_limit must not be 0",
            ));
        }
        if self.store.is_some() && self.client_id.is_empty() {
            return Err(ClientError::InvalidOption(
                "a client with a store needs a client id",
            ));
        }
        if self.receive_maximum == Some(0) {
            return Err(ClientError::InvalidOption("receive_maximum must not be 0"));
        }
        if self.ping_timeout == Some(Duration::ZERO) {
            return Err(ClientError::InvalidOption("ping_timeout must not be zero"));
        }
        if self.password.is_some() && self.username.is_none() && !self.protocol.is_v5() {
            return Err(ClientError::InvalidOption(
                "[MQTT-3.1.2-22] before MQTT 5 a password needs a user name",
            ));
        }
        Ok(())
    }

    /// True when the server keeps the session after this connection, so an
    /// automatic reconnection can resume it.
    pub(crate) fn session_persists(&self) -> bool {
        if self.protocol.is_v5() {
            self.properties.session_expiry_interval.unwrap_or(0) > 0
        } else {
            !self.clean_start
        }
    }

    /// Default ports and hosts aside, `host:port` for error messages.
    pub(crate) fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let r = ReconnectOptions::default()
            .initial_delay(Duration::from_millis(100))
            .max_delay(Duration::from_millis(700));
        let delays: Vec<_> = (0..5).map(|a| r.delay(a).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 700, 700]);
        assert_eq!(r.delay(u32::MAX), Duration::from_millis(700));
    }

    #[test]
    fn zero_limits_are_rejected() {
        let o = ConnectOptions::new("h", 1);
        assert!(o.clone().max_inflight(0).check().is_err());
        assert!(o.clone().send_queue_limit(0).check().is_err());
        assert!(o.clone().receive_queue_limit(0).check().is_err());
        assert!(o.clone().maximum_packet_size(0).check().is_err());
        assert!(o.check().is_ok());
    }

    #[test]
    fn a_password_without_user_name_needs_mqtt_5() {
        // [MQTT-3.1.2-22]
        let o = ConnectOptions::new("h", 1).password("p");
        assert!(o.clone().check().is_err());
        assert!(o.protocol(ProtocolVersion::V5).check().is_ok());
    }

    #[test]
    fn a_session_persists_without_clean_session_or_with_an_expiry() {
        let o = ConnectOptions::new("h", 1);
        assert!(!o.session_persists());
        assert!(o.clone().clean_start(false).session_persists());
        let v5 = o.protocol(ProtocolVersion::V5).clean_start(false);
        assert!(!v5.session_persists());
        assert!(v5.session_expiry_interval(10).session_persists());
    }
}
