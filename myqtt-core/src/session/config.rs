//! [`SessionConfig`]: this side's limits and policies for one connection.

use std::time::Duration;

use super::SessionError;

/// Who sends the acknowledgement of an incoming QoS 1 or QoS 2 PUBLISH.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum AckMode {
    /// The session sends PUBACK / PUBREC as soon as it delivers the message.
    #[default]
    Automatic,
    /// The application calls [`super::Session::ack`] (for instance once a
    /// broker has stored the message); the session still sends the
    /// acknowledgements in the order the PUBLISH packets arrived
    /// [MQTT-4.6.0-2], [MQTT-4.6.0-3].
    Manual,
}

/// This side's limits and policies, fixed for the life of a
/// [`super::Session`]. Build one with [`SessionConfig::builder`].
///
/// The three MQTT 5 limits are written by the session into the CONNECT it
/// sends (client) or the CONNACK it sends (server), so the values advertised
/// are always the values enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    pub(crate) receive_maximum: u16,
    pub(crate) maximum_packet_size: Option<u32>,
    pub(crate) topic_alias_maximum: u16,
    pub(crate) outgoing_topic_aliases: u16,
    pub(crate) max_inflight: u16,
    pub(crate) ack_mode: AckMode,
    pub(crate) ping_timeout: Option<Duration>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            receive_maximum: u16::MAX,
            maximum_packet_size: None,
            topic_alias_maximum: 0,
            outgoing_topic_aliases: 0,
            max_inflight: u16::MAX,
            ack_mode: AckMode::Automatic,
            ping_timeout: None,
        }
    }
}

impl SessionConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> SessionConfigBuilder {
        SessionConfigBuilder {
            config: Self::default(),
        }
    }

    /// How many incoming QoS 1/2 PUBLISH packets may be unacknowledged at
    /// once (MQTT 5 Receive Maximum).
    pub fn receive_maximum(&self) -> u16 {
        self.receive_maximum
    }

    /// The largest packet this side accepts, if limited. The decoder in the
    /// I/O layer enforces it; the session advertises it.
    pub fn maximum_packet_size(&self) -> Option<u32> {
        self.maximum_packet_size
    }

    /// The highest topic alias the peer may use towards this side.
    pub fn topic_alias_maximum(&self) -> u16 {
        self.topic_alias_maximum
    }

    /// How many topic aliases this side assigns to outgoing PUBLISH packets
    /// at most (also capped by the peer's Topic Alias Maximum).
    pub fn outgoing_topic_aliases(&self) -> u16 {
        self.outgoing_topic_aliases
    }

    /// This side's own cap on outgoing QoS 1/2 messages in flight.
    pub fn max_inflight(&self) -> u16 {
        self.max_inflight
    }

    /// Who acknowledges incoming QoS 1/2 messages.
    pub fn ack_mode(&self) -> AckMode {
        self.ack_mode
    }

    /// How long a client waits for PINGRESP; `None` means one keep-alive
    /// interval.
    pub fn ping_timeout(&self) -> Option<Duration> {
        self.ping_timeout
    }
}

/// Builds a [`SessionConfig`]; [`build`](Self::build) checks the values.
#[derive(Debug, Clone)]
pub struct SessionConfigBuilder {
    config: SessionConfig,
}

impl SessionConfigBuilder {
    /// How many incoming QoS 1/2 PUBLISH packets may be unacknowledged at
    /// once; more is an error with reason 0x93 [MQTT-3.3.4-7],
    /// [MQTT-3.3.4-9]. Enforced at MQTT 5 only (older levels cannot
    /// advertise it). Default 65535; `0` is invalid (MQTT 5.0 §3.1.2.11.3).
    pub fn receive_maximum(mut self, n: u16) -> Self {
        self.config.receive_maximum = n;
        self
    }

    /// The largest packet this side accepts, advertised at MQTT 5.
    /// Default: no limit beyond the protocol's; `0` is invalid
    /// (MQTT 5.0 §3.1.2.11.4).
    pub fn maximum_packet_size(mut self, bytes: u32) -> Self {
        self.config.maximum_packet_size = Some(bytes);
        self
    }

    /// The highest topic alias the peer may send (MQTT 5 Topic Alias
    /// Maximum). Default `0`: the peer may not use aliases at all.
    pub fn topic_alias_maximum(mut self, n: u16) -> Self {
        self.config.topic_alias_maximum = n;
        self
    }

    /// How many topic aliases this side may assign to outgoing PUBLISH
    /// packets, within the peer's Topic Alias Maximum. Default `0`: never.
    ///
    /// Policy: the first topics sent get aliases 1, 2, … in order until the
    /// limit; a topic keeps its alias for the whole connection and is sent
    /// with its alias and an empty topic name after the first time. Later
    /// topics go out with their full name. Nothing is evicted.
    pub fn outgoing_topic_aliases(mut self, n: u16) -> Self {
        self.config.outgoing_topic_aliases = n;
        self
    }

    /// This side's own cap on outgoing QoS 1/2 messages in flight; the
    /// window used is the smaller of this and the peer's Receive Maximum.
    /// Default 65535; `0` is invalid.
    pub fn max_inflight(mut self, n: u16) -> Self {
        self.config.max_inflight = n;
        self
    }

    /// Who acknowledges incoming QoS 1/2 messages. Default
    /// [`AckMode::Automatic`].
    pub fn ack_mode(mut self, mode: AckMode) -> Self {
        self.config.ack_mode = mode;
        self
    }

    /// How long a client waits for PINGRESP before it gives the connection
    /// up. Default: one keep-alive interval. A zero duration is invalid.
    pub fn ping_timeout(mut self, timeout: Duration) -> Self {
        self.config.ping_timeout = Some(timeout);
        self
    }

    /// Checks the values and returns the configuration.
    pub fn build(self) -> Result<SessionConfig, SessionError> {
        let c = self.config;
        if c.receive_maximum == 0 {
            return Err(SessionError::InvalidConfig("receive_maximum must not be 0"));
        }
        if c.maximum_packet_size == Some(0) {
            return Err(SessionError::InvalidConfig(
                "maximum_packet_size must not be 0",
            ));
        }
        if c.max_inflight == 0 {
            return Err(SessionError::InvalidConfig("max_inflight must not be 0"));
        }
        if c.ping_timeout == Some(Duration::ZERO) {
            return Err(SessionError::InvalidConfig("ping_timeout must not be zero"));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_limits_are_rejected() {
        assert!(SessionConfig::builder().receive_maximum(0).build().is_err());
        assert!(
            SessionConfig::builder()
                .maximum_packet_size(0)
                .build()
                .is_err()
        );
        assert!(SessionConfig::builder().max_inflight(0).build().is_err());
        assert!(
            SessionConfig::builder()
                .ping_timeout(Duration::ZERO)
                .build()
                .is_err()
        );
    }

    #[test]
    fn setters_chain_into_the_built_config() {
        let c = SessionConfig::builder()
            .receive_maximum(5)
            .topic_alias_maximum(3)
            .ack_mode(AckMode::Manual)
            .build()
            .unwrap();
        assert_eq!((c.receive_maximum(), c.topic_alias_maximum()), (5, 3));
        assert_eq!(c.ack_mode(), AckMode::Manual);
        assert_eq!(c.max_inflight(), u16::MAX);
    }
}
