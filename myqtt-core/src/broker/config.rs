//! [`BrokerConfig`]: the listener-side limits and policies, built with
//! [`BrokerConfigBuilder`] from documented defaults.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::codec::{Decoder, QoS};
use crate::store::StoreConfig;

use super::hooks::{Hook, HookPolicy};

/// What happens when a client connects with the client id of a client that
/// is still connected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum DuplicateClientId {
    /// The new connection takes the session over and the old one is closed
    /// (MQTT 5: DISCONNECT 0x8E Session taken over) [MQTT-3.1.4-3]. The
    /// default, as the specification requires.
    #[default]
    TakeOver,
    /// The new connection is refused with CONNACK 0x85 Client Identifier
    /// not valid (3.1.1: 0x02) and the old one stays, as MyQtt did.
    Reject,
}

/// Why a [`BrokerConfigBuilder`] refused its values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A value is out of its allowed range.
    #[error("invalid broker configuration: {0}")]
    Invalid(&'static str),
}

/// The broker's limits and policies. Shared by every listener of a
/// [`crate::Ctx`]. Build one with [`BrokerConfig::builder`].
#[derive(Clone)]
pub struct BrokerConfig {
    pub(crate) max_connections: usize,
    pub(crate) max_packet_size: u32,
    pub(crate) max_connect_packet_size: u32,
    pub(crate) max_inflight: u16,
    pub(crate) receive_maximum: u16,
    pub(crate) max_queued_messages: usize,
    pub(crate) max_topic_levels: usize,
    pub(crate) topic_alias_maximum: u16,
    pub(crate) outgoing_topic_aliases: u16,
    pub(crate) server_keep_alive: Option<u16>,
    pub(crate) duplicate_client_id: DuplicateClientId,
    pub(crate) hook_policy: HookPolicy,
    pub(crate) tick_interval: Duration,
    pub(crate) sys_interval: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) max_session_expiry: u32,
    pub(crate) maximum_qos: QoS,
    pub(crate) retain_available: bool,
    pub(crate) write_high_water: usize,
    pub(crate) wills_on_shutdown: bool,
    pub(crate) hooks: Vec<Arc<dyn Hook>>,
    pub(crate) storage: Option<StoreConfig>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            max_connections: 0,
            max_packet_size: 0,
            max_connect_packet_size: 256 * 1024,
            max_inflight: 64,
            receive_maximum: u16::MAX,
            max_queued_messages: 1000,
            max_topic_levels: 0,
            topic_alias_maximum: 10,
            outgoing_topic_aliases: 0,
            server_keep_alive: None,
            duplicate_client_id: DuplicateClientId::TakeOver,
            hook_policy: HookPolicy::default(),
            tick_interval: Duration::from_secs(1),
            sys_interval: Duration::ZERO,
            connect_timeout: Duration::from_secs(10),
            max_session_expiry: u32::MAX,
            maximum_qos: QoS::ExactlyOnce,
            retain_available: true,
            write_high_water: 64 * 1024,
            wills_on_shutdown: true,
            hooks: Vec::new(),
            storage: None,
        }
    }
}

impl fmt::Debug for BrokerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerConfig")
            .field("max_connections", &self.max_connections)
            .field("max_packet_size", &self.max_packet_size)
            .field("max_connect_packet_size", &self.max_connect_packet_size)
            .field("max_inflight", &self.max_inflight)
            .field("receive_maximum", &self.receive_maximum)
            .field("max_queued_messages", &self.max_queued_messages)
            .field("max_topic_levels", &self.max_topic_levels)
            .field("topic_alias_maximum", &self.topic_alias_maximum)
            .field("outgoing_topic_aliases", &self.outgoing_topic_aliases)
            .field("server_keep_alive", &self.server_keep_alive)
            .field("duplicate_client_id", &self.duplicate_client_id)
            .field("hook_policy", &self.hook_policy)
            .field("tick_interval", &self.tick_interval)
            .field("sys_interval", &self.sys_interval)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_session_expiry", &self.max_session_expiry)
            .field("maximum_qos", &self.maximum_qos)
            .field("retain_available", &self.retain_available)
            .field("write_high_water", &self.write_high_water)
            .field("wills_on_shutdown", &self.wills_on_shutdown)
            .field("hooks", &self.hooks.len())
            .field("storage", &self.storage)
            .finish()
    }
}

impl BrokerConfig {
    /// The durable storage configured, if any.
    pub fn storage(&self) -> Option<&StoreConfig> {
        self.storage.as_ref()
    }

    /// A builder starting from the defaults.
    pub fn builder() -> BrokerConfigBuilder {
        BrokerConfigBuilder {
            config: Self::default(),
        }
    }

    /// The largest packet accepted from a client, in bytes.
    pub fn max_packet_size(&self) -> u32 {
        if self.max_packet_size == 0 {
            Decoder::DEFAULT_MAX_PACKET_SIZE
        } else {
            self.max_packet_size
        }
    }

    /// The largest first packet (the CONNECT) accepted from a connection
    /// that has not connected yet, in bytes: the smaller of
    /// [`BrokerConfigBuilder::max_connect_packet_size`] and
    /// [`max_packet_size`](Self::max_packet_size).
    pub fn max_connect_packet_size(&self) -> u32 {
        self.max_connect_packet_size.min(self.max_packet_size())
    }

    /// The hook time limit and failure policy.
    pub fn hook_policy(&self) -> HookPolicy {
        self.hook_policy
    }

    /// How long a new connection may take to send CONNECT.
    pub fn connect_timeout(&self) -> std::time::Duration {
        self.connect_timeout
    }

    /// The duplicate client id policy.
    pub fn duplicate_client_id(&self) -> DuplicateClientId {
        self.duplicate_client_id
    }
}

/// Builds a [`BrokerConfig`]; [`build`](Self::build) checks the values.
#[derive(Debug, Clone)]
pub struct BrokerConfigBuilder {
    config: BrokerConfig,
}

impl BrokerConfigBuilder {
    /// The most client connections at once, over all listeners; one more is
    /// refused with CONNACK 0x89 Server busy (3.1.1: 0x03 Server
    /// unavailable). Sockets that have not sent their CONNECT yet are
    /// counted apart, up to the same number: past it a new socket is closed
    /// at once. Default `0`: no limit.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.config.max_connections = n;
        self
    }

    /// The largest packet a client may send, fixed header included; a
    /// larger one closes the connection (MQTT 5: DISCONNECT 0x95 Packet too
    /// large) and the value is advertised to MQTT 5 clients as Maximum
    /// Packet Size. Default `0`: no limit beyond the protocol's 256 MiB.
    pub fn max_packet_size(mut self, bytes: u32) -> Self {
        self.config.max_packet_size = bytes;
        self
    }

    /// The largest CONNECT a connection may send before it is
    /// authenticated, fixed header included; a larger one closes the
    /// connection without CONNACK. Later packets are held to
    /// [`max_packet_size`](Self::max_packet_size). Default 256 KiB (room for
    /// a 64 KiB will, user name and password); `0` is invalid.
    pub fn max_connect_packet_size(mut self, bytes: u32) -> Self {
        self.config.max_connect_packet_size = bytes;
        self
    }

    /// The most QoS 1/2 messages in flight to one client at once (the
    /// client's MQTT 5 Receive Maximum lowers it further); the rest wait in
    /// the client's queue. Default 64; `0` is invalid.
    pub fn max_inflight(mut self, n: u16) -> Self {
        self.config.max_inflight = n;
        self
    }

    /// How many QoS 1/2 messages an MQTT 5 client may send unacknowledged
    /// (Receive Maximum); more closes the connection with DISCONNECT 0x93.
    /// Default 65535 (not advertised); `0` is invalid.
    pub fn receive_maximum(mut self, n: u16) -> Self {
        self.config.receive_maximum = n;
        self
    }

    /// The most messages waiting for one client, connected or offline with
    /// a persistent session; more are dropped and counted (a `Dropped`
    /// event with [`super::hooks::DropReason::QueueFull`]). Default 1000;
    /// `0` queues nothing: a message that cannot go out at once is dropped
    /// (a connected client still gets its messages: they pass through a
    /// hand-off of up to 64 messages on their way to its connection).
    pub fn max_queued_messages(mut self, n: usize) -> Self {
        self.config.max_queued_messages = n;
        self
    }

    /// The most levels in a topic name or filter; a deeper PUBLISH is
    /// refused (MQTT 5: PUBACK/PUBREC 0x90, else a log line) and a deeper
    /// filter gets SUBACK failure (0x8F). Default `0`: no limit.
    pub fn max_topic_levels(mut self, n: usize) -> Self {
        self.config.max_topic_levels = n;
        self
    }

    /// The highest topic alias an MQTT 5 client may use towards the broker
    /// (Topic Alias Maximum). Default 10; `0` disallows aliases.
    pub fn topic_alias_maximum(mut self, n: u16) -> Self {
        self.config.topic_alias_maximum = n;
        self
    }

    /// How many topic aliases the broker assigns to the messages it sends
    /// an MQTT 5 client, within the client's Topic Alias Maximum: the first
    /// topics sent get aliases and later messages to them carry the alias
    /// and an empty topic name. Default `0`: topics always go out in full.
    pub fn outgoing_topic_aliases(mut self, n: u16) -> Self {
        self.config.outgoing_topic_aliases = n;
        self
    }

    /// Overrides the keep-alive of MQTT 5 clients: sent as Server Keep
    /// Alive in CONNACK and enforced at 1.5 times [MQTT-3.2.2-21]. MQTT 3.1
    /// and 3.1.1 clients cannot be told and keep their own value. Default:
    /// no override.
    pub fn server_keep_alive(mut self, secs: Option<u16>) -> Self {
        self.config.server_keep_alive = secs;
        self
    }

    /// What a second connection with a connected client's id does. Default
    /// [`DuplicateClientId::TakeOver`].
    pub fn duplicate_client_id(mut self, policy: DuplicateClientId) -> Self {
        self.config.duplicate_client_id = policy;
        self
    }

    /// Time limit and failure policy for deferred hook answers. Default
    /// [`HookPolicy::default`]: 10 s, fail closed.
    pub fn hook_policy(mut self, policy: HookPolicy) -> Self {
        self.config.hook_policy = policy;
        self
    }

    /// Adds a hook at the end of the chain (hooks run in the order added;
    /// the first refusal wins).
    pub fn hook(mut self, hook: Arc<dyn Hook>) -> Self {
        self.config.hooks.push(hook);
        self
    }

    /// How often hooks get [`super::hooks::Event::Tick`]. Default 1 s;
    /// zero turns the tick off.
    pub fn tick_interval(mut self, interval: Duration) -> Self {
        self.config.tick_interval = interval;
        self
    }

    /// How often the broker publishes its figures under `$SYS/broker/`
    /// (clients connected, sessions, subscriptions, retained messages,
    /// dropped messages, uptime, version, store commits), as retained QoS 0
    /// messages, each only when its value changed. `#` and `+` never match
    /// these topics [MQTT-4.7.2-1]: subscribe to `$SYS/#`. Default zero:
    /// off (the example listener turns it on every 10 s, as mosquitto
    /// does).
    pub fn sys_interval(mut self, interval: Duration) -> Self {
        self.config.sys_interval = interval;
        self
    }

    /// How long a new connection may take to send its CONNECT (and a
    /// deferred CONNECT decision to complete, within the hook policy) before
    /// it is closed. Default 10 s; zero is invalid.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// The longest session expiry interval granted, in seconds: an MQTT 5
    /// client asking for more is told this value in CONNACK; MQTT 3.1.1
    /// persistent sessions (clean session 0) get this value. Default
    /// `u32::MAX`: sessions never expire.
    pub fn max_session_expiry(mut self, secs: u32) -> Self {
        self.config.max_session_expiry = secs;
        self
    }

    /// The highest QoS granted to subscriptions and accepted from MQTT 5
    /// publishers (advertised as Maximum QoS when below 2). Default QoS 2.
    pub fn maximum_qos(mut self, qos: QoS) -> Self {
        self.config.maximum_qos = qos;
        self
    }

    /// Whether retained messages are kept. When false, MQTT 5 clients are
    /// told (Retain Available 0) and a retained PUBLISH from one closes its
    /// connection with DISCONNECT 0x9A Retain not supported [MQTT-3.3.1-8]
    /// (5.0); from an MQTT 3.1 / 3.1.1 client it is routed but not stored.
    /// Default true.
    pub fn retain_available(mut self, yes: bool) -> Self {
        self.config.retain_available = yes;
        self
    }

    /// Bytes waiting for a slow client's socket beyond which no more
    /// messages are taken from its queue (they then wait, or are dropped at
    /// the queue limit), no retained message is sent, and no packet is read
    /// from it until the buffer drains. Default 64 KiB; `0` is invalid.
    pub fn write_high_water(mut self, bytes: usize) -> Self {
        self.config.write_high_water = bytes;
        self
    }

    /// Whether the wills of clients still connected are published when the
    /// listener shuts down. The server then closes their connections
    /// without a DISCONNECT 0x00 from them, one of the cases in which a will
    /// is published ([MQTT-3.1.2-8], MQTT 5.0 §3.1.2.5): retained wills are
    /// kept (in the store, if there is one) and queued for persistent
    /// sessions. A will with a delay is kept for after a restart when there
    /// is a store (its session outlives the process), and published at once
    /// when there is none (the session ends with the process). Default
    /// true; false drops them, as mosquitto does.
    pub fn wills_on_shutdown(mut self, yes: bool) -> Self {
        self.config.wills_on_shutdown = yes;
        self
    }

    /// Durable storage: sessions, subscriptions, in-flight and queued
    /// messages, retained messages and pending wills survive a restart or a
    /// crash (see `doc/storage.md`). Default: none, everything is kept in
    /// memory only. The backend (redb by default, sled with the `sled`
    /// feature), `hash_size` and quotas are set on the [`StoreConfig`]; the
    /// store is opened when the [`crate::Ctx`] is built.
    pub fn storage(mut self, store: StoreConfig) -> Self {
        self.config.storage = Some(store);
        self
    }

    /// PyMyQtt's `storage_set_path(path, hash_size)`: a redb store in the
    /// folder `path`, `hash_size` a cache-size hint (see
    /// [`StoreConfig::hash_size`]; `0`: the default).
    pub fn storage_path(self, path: impl Into<std::path::PathBuf>, hash_size: u32) -> Self {
        self.storage(StoreConfig::new(path).hash_size(hash_size))
    }

    /// Checks the values and returns the configuration.
    pub fn build(self) -> Result<BrokerConfig, ConfigError> {
        let c = self.config;
        if c.max_connect_packet_size == 0 {
            return Err(ConfigError::Invalid(
                "max_connect_packet_size must not be 0",
            ));
        }
        if c.max_inflight == 0 {
            return Err(ConfigError::Invalid("max_inflight must not be 0"));
        }
        if c.receive_maximum == 0 {
            return Err(ConfigError::Invalid("receive_maximum must not be 0"));
        }
        if c.connect_timeout.is_zero() {
            return Err(ConfigError::Invalid("connect_timeout must not be zero"));
        }
        if c.write_high_water == 0 {
            return Err(ConfigError::Invalid("write_high_water must not be 0"));
        }
        if c.hook_policy.timeout.is_zero() {
            return Err(ConfigError::Invalid("the hook timeout must not be zero"));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_limits_that_make_no_sense_are_rejected() {
        assert!(BrokerConfig::builder().max_inflight(0).build().is_err());
        assert!(BrokerConfig::builder().receive_maximum(0).build().is_err());
        assert!(
            BrokerConfig::builder()
                .connect_timeout(Duration::ZERO)
                .build()
                .is_err()
        );
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = BrokerConfig::builder().build().unwrap();
        assert_eq!(c.max_queued_messages, 1000);
        assert_eq!(c.duplicate_client_id(), DuplicateClientId::TakeOver);
        assert_eq!(c.max_packet_size(), Decoder::DEFAULT_MAX_PACKET_SIZE);
        assert_eq!(c.tick_interval, Duration::from_secs(1));
    }
}
