//! Hooks: how a program decides what the listener does.
//!
//! A [`Hook`] is called by the listener at each decision point: a CONNECT to
//! accept or refuse, an ACL check on subscribe, publish and delivery, a
//! verdict (and possible rewrite) on every incoming PUBLISH, and events.
//! Every method has a no-op default, so a hook implements only what it needs.
//! Several hooks can be installed; they run in the order they were added and
//! the first refusal wins (amqtt's plugin chain, MyQttD's on_publish chain).
//!
//! A hook answers with a [`Reply`]: `Ready` when it knows at once (no
//! allocation, no task switch), or `Later` with a future — how a CONNECT is
//! deferred (PyMyQtt's `CONNACK_DEFERRED`) and how hooks written in Python
//! answer from their own threads. A `Later` answer that fails or takes
//! longer than the configured time limit gets the [`FailurePolicy`]'s
//! answer: refuse, by default.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::ByteStr;
use crate::codec::{
    ConnectProperties, LastWill, ProtocolVersion, PublishProps, QoS, ReasonCode,
    SubscriptionOptions,
};
use crate::topic::{TopicFilter, TopicName};

/// A boxed, sendable future: what a deferred hook answer is.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Why a deferred hook answer could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("hook failed: {0}")]
pub struct HookError(pub String);

/// A hook's answer, now or later.
pub enum Reply<T> {
    /// The answer, known at once.
    Ready(T),
    /// The answer will come from this future (bounded by the hook time limit).
    Later(BoxFuture<Result<T, HookError>>),
}

impl<T> Reply<T> {
    /// A deferred answer from `fut`.
    pub fn later<F>(fut: F) -> Self
    where
        F: Future<Output = Result<T, HookError>> + Send + 'static,
    {
        Self::Later(Box::pin(fut))
    }
}

impl<T> From<T> for Reply<T> {
    fn from(value: T) -> Self {
        Self::Ready(value)
    }
}

impl<T: fmt::Debug> fmt::Debug for Reply<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ready(v) => f.debug_tuple("Ready").field(v).finish(),
            Self::Later(_) => f.write_str("Later(..)"),
        }
    }
}

/// What a hook's failure or time-out is taken to mean.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Refuse: the CONNECT is refused, the ACL check denies, the PUBLISH is
    /// discarded. The default.
    #[default]
    FailClosed,
    /// Allow, as if the hook had not been installed.
    FailOpen,
}

/// Time limit and failure policy for deferred hook answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookPolicy {
    /// How long a `Later` answer may take. Default 10 s.
    pub timeout: Duration,
    /// What a failed or late answer means. Default [`FailurePolicy::FailClosed`].
    pub on_failure: FailurePolicy,
}

impl Default for HookPolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            on_failure: FailurePolicy::FailClosed,
        }
    }
}

/// The transport a client came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Plain TCP.
    Tcp,
    /// MQTT over WebSocket.
    WebSocket,
}

/// What the listener knows of a connected (or connecting) client.
///
/// Shared (`Arc`) by every hook call and event about that connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client identifier (the assigned one if the client sent none).
    pub client_id: ByteStr,
    /// The user name from CONNECT, if any.
    pub username: Option<ByteStr>,
    /// The client's address.
    pub peer: SocketAddr,
    /// The listener's address the client connected to.
    pub local: SocketAddr,
    /// Protocol level of the connection.
    pub protocol: ProtocolVersion,
    /// Keep-alive in seconds, as in force (after any server override).
    pub keep_alive: u16,
    /// True if the connection is protected by TLS.
    pub tls: bool,
    /// TCP or WebSocket.
    pub transport: Transport,
    /// The connection's socket: its file descriptor on Unix (a `SOCKET`
    /// on Windows), for logging or socket options; `None` when the
    /// connection is not on a socket of its own.
    pub socket: Option<i64>,
}

/// The number the system knows a TCP socket by (file descriptor on Unix,
/// `SOCKET` handle on Windows), as [`ClientInfo::socket`] gives it.
pub fn socket_number(stream: &tokio::net::TcpStream) -> Option<i64> {
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        Some(i64::from(stream.as_raw_fd()))
    }
    #[cfg(windows)]
    {
        use std::os::windows::io::AsRawSocket;
        i64::try_from(stream.as_raw_socket()).ok()
    }
    #[cfg(not(any(unix, windows)))]
    {
        let _ = stream;
        None
    }
}

/// A CONNECT awaiting a decision.
#[derive(Debug)]
pub struct ConnectRequest<'a> {
    /// Who is connecting.
    pub client: &'a Arc<ClientInfo>,
    /// The password (binary data) from CONNECT, if any.
    pub password: Option<&'a Bytes>,
    /// Clean Session / Clean Start.
    pub clean_start: bool,
    /// The Will message, if any.
    pub will: Option<&'a LastWill>,
    /// MQTT 5 CONNECT properties (empty at 3.1 / 3.1.1).
    pub properties: &'a ConnectProperties,
}

/// A hook's decision on a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectVerdict {
    /// Let the client in.
    Accept,
    /// Refuse with this CONNACK code (MQTT 5 terms; mapped to the 3.1.1
    /// return codes for older clients).
    Refuse(ReasonCode),
}

/// The kind of access an ACL check is about (mosquitto's `MOSQ_ACL_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// The client subscribes to a filter.
    Subscribe,
    /// The client publishes to a topic.
    Publish,
    /// A message is about to be delivered to the client (read access).
    Deliver,
}

/// An ACL question.
#[derive(Debug)]
pub struct AclRequest<'a> {
    /// The client asking (or, for `Deliver`, receiving).
    pub client: &'a Arc<ClientInfo>,
    /// What the client wants to do.
    pub access: Access,
    /// The topic (publish, deliver) or the filter (subscribe).
    pub topic: &'a str,
    /// The QoS of the message or the requested subscription.
    pub qos: QoS,
    /// The payload for publish and deliver; `None` for subscribe.
    pub payload: Option<&'a Bytes>,
    /// The retain flag for publish and deliver.
    pub retain: bool,
}

/// An application message as the broker routes it: no packet id, no DUP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Where it is published.
    pub topic: TopicName,
    /// The payload (shared, never copied per subscriber).
    pub payload: Bytes,
    /// The QoS it was published with.
    pub qos: QoS,
    /// The retain flag.
    pub retain: bool,
    /// MQTT 5 properties (forwarded to subscribers unchanged, except the
    /// message expiry, which counts down, and subscription identifiers).
    pub properties: PublishProps,
}

/// A hook's decision on an incoming PUBLISH (PyMyQtt's `PUBLISH_OK`,
/// `PUBLISH_DISCARD`, `PUBLISH_CONN_CLOSE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishVerdict {
    /// Route the message as it is.
    Ok,
    /// Route this message instead (topic, payload, QoS, retain or
    /// properties changed). Later hooks see the rewritten message.
    Rewrite(Box<Message>),
    /// Do not route it. The publisher's QoS 1/2 flow is still completed
    /// (PUBACK / PUBREC, with reason code 0x10 or 0x87 at MQTT 5), so the
    /// publisher never hangs.
    Discard,
    /// Do not route it, and close the publisher's connection.
    CloseConnection,
}

/// Why a message was not delivered to a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The client's queue was at its configured limit.
    QueueFull,
    /// The message expired (MQTT 5 Message Expiry Interval) before delivery.
    Expired,
    /// The message is larger than the client's Maximum Packet Size.
    TooLarge,
    /// An ACL hook denied delivery.
    Denied,
    /// The client's session ended with the message still queued.
    SessionEnded,
}

/// Something that happened, reported to hooks that asked for it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A listener started accepting on this address.
    ListenerStarted(SocketAddr),
    /// A listener is about to stop.
    ListenerStopping(SocketAddr),
    /// A client's CONNECT was accepted.
    Connected(&'a Arc<ClientInfo>),
    /// A client's connection ended, with the reason (MQTT 5 terms:
    /// `Success` for a DISCONNECT from the client).
    Disconnected(&'a Arc<ClientInfo>, ReasonCode),
    /// A subscription was made, with the granted QoS or failure code.
    Subscribed(
        &'a Arc<ClientInfo>,
        &'a TopicFilter,
        SubscriptionOptions,
        ReasonCode,
    ),
    /// A subscription was removed.
    Unsubscribed(&'a Arc<ClientInfo>, &'a TopicFilter),
    /// A message was handed to a client's connection.
    Delivered(&'a Arc<ClientInfo>, &'a Message),
    /// A message for the client with this id was dropped.
    Dropped(&'a ByteStr, &'a Message, DropReason),
    /// A packet arrived from a client.
    PacketReceived(&'a Arc<ClientInfo>, &'a crate::codec::Packet),
    /// A packet was queued to a client.
    PacketSent(&'a Arc<ClientInfo>, &'a crate::codec::Packet),
    /// The periodic tick ([`super::BrokerConfigBuilder::tick_interval`]).
    Tick,
}

/// Which events (and optional calls) a hook wants; the listener builds only
/// events someone wants, so packet events cost nothing when no hook asks for
/// them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)] // a set of independent switches
pub struct Interests {
    /// Listener started / stopping, connected, disconnected, subscribed,
    /// unsubscribed, tick.
    pub lifecycle: bool,
    /// Delivered and dropped messages.
    pub messages: bool,
    /// Every packet received and sent.
    pub packets: bool,
    /// Call [`Hook::acl_check`] with [`Access::Deliver`] before every
    /// delivery to a client (one call per message and subscriber, so it is
    /// off unless a hook asks for it). Retained messages and messages queued
    /// for offline sessions are checked too, when they go out.
    pub deliver_acl: bool,
}

impl Interests {
    /// Everything: all events and the delivery ACL check.
    pub const ALL: Self = Self {
        lifecycle: true,
        messages: true,
        packets: true,
        deliver_acl: true,
    };

    /// The union of two sets of interests.
    pub const fn union(self, other: Self) -> Self {
        Self {
            lifecycle: self.lifecycle || other.lifecycle,
            messages: self.messages || other.messages,
            packets: self.packets || other.packets,
            deliver_acl: self.deliver_acl || other.deliver_acl,
        }
    }
}

/// The decision points of a listener. Every method has a default that
/// allows everything, so a hook implements only what it cares about.
///
/// Methods are called from the listener's tasks and must not block: a hook
/// that needs time (I/O, a database, Python) returns [`Reply::Later`].
pub trait Hook: Send + Sync + 'static {
    /// Called once when the hook is installed in a broker, with a handle the
    /// hook may keep to act on it: publish as the broker, kick clients, list
    /// clients (see [`super::Broker`]). The handle is weak, so a hook that
    /// keeps it does not keep the broker alive.
    fn installed(&self, broker: &super::WeakBroker) {
        let _ = broker;
    }

    /// Decides on a CONNECT, after the protocol checks passed.
    fn on_connect(&self, req: &ConnectRequest<'_>) -> Reply<ConnectVerdict> {
        let _ = req;
        Reply::Ready(ConnectVerdict::Accept)
    }

    /// Decides whether a client may subscribe, publish or receive.
    fn acl_check(&self, req: &AclRequest<'_>) -> Reply<bool> {
        let _ = req;
        Reply::Ready(true)
    }

    /// Decides what happens to an incoming PUBLISH, and may rewrite it.
    fn on_publish(&self, client: &Arc<ClientInfo>, msg: &Message) -> Reply<PublishVerdict> {
        let _ = (client, msg);
        Reply::Ready(PublishVerdict::Ok)
    }

    /// Decides on several PUBLISH packets of one client at once: the ones
    /// the listener had already read from the socket, in the order they
    /// arrived. Answers one verdict per message, in the same order.
    ///
    /// The listener applies the verdicts in order: a rewrite is routed, a
    /// discard still completes the publisher's QoS 1/2 flow, and a
    /// [`PublishVerdict::CloseConnection`] closes the connection at its
    /// message, so the messages after it are not routed (their verdicts
    /// are ignored). A reply with fewer verdicts than messages gives the
    /// messages without one the failure policy's answer, and so does a
    /// failed or late reply (the time limit applies to the whole batch).
    ///
    /// Override it when one answer for many messages is cheaper than many
    /// answers (a hook that crosses to another thread or process per call).
    /// The batch is shared: such a hook keeps a clone of the `Arc` (no
    /// message is copied) and should drop it before it answers, because
    /// the listener takes the messages back once the reply has come and
    /// copies them only if the batch is still shared then.
    ///
    /// The default calls [`Hook::on_publish`] for each message in order,
    /// stopping after an immediate `CloseConnection`, and answers at once
    /// when every answer is immediate; deferred answers are awaited in
    /// order, and a failed one ends the reply there.
    fn on_publish_batch(
        &self,
        client: &Arc<ClientInfo>,
        msgs: &Arc<Vec<Message>>,
    ) -> Reply<Vec<PublishVerdict>> {
        let mut replies = Vec::with_capacity(msgs.len());
        let mut deferred = false;
        for msg in msgs.iter() {
            let reply = self.on_publish(client, msg);
            let close = matches!(reply, Reply::Ready(PublishVerdict::CloseConnection));
            deferred |= matches!(reply, Reply::Later(_));
            replies.push(reply);
            if close {
                break;
            }
        }
        if !deferred {
            let verdicts = replies
                .into_iter()
                .filter_map(|r| match r {
                    Reply::Ready(v) => Some(v),
                    Reply::Later(_) => None,
                })
                .collect();
            return Reply::Ready(verdicts);
        }
        Reply::later(async move {
            let mut verdicts = Vec::with_capacity(replies.len());
            for reply in replies {
                let verdict = match reply {
                    Reply::Ready(v) => v,
                    Reply::Later(fut) => match fut.await {
                        Ok(v) => v,
                        Err(_) => break,
                    },
                };
                verdicts.push(verdict);
            }
            Ok(verdicts)
        })
    }

    /// Which events [`Hook::on_event`] should receive, and whether
    /// [`Hook::acl_check`] is asked about deliveries. Default: none.
    fn interests(&self) -> Interests {
        Interests::default()
    }

    /// Observes an event. Must return quickly; it cannot change anything.
    fn on_event(&self, event: &Event<'_>) {
        let _ = event;
    }
}
