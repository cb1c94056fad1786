//! [`ClientError`] and [`CloseReason`]: why a client operation failed and
//! why a network connection ended.

use std::fmt;
use std::sync::Arc;

use crate::codec::ReasonCode;
use crate::session::{DropReason, SessionError};
use crate::topic::TopicError;

/// Why a network connection of a [`super::Conn`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// [`super::Conn::close`]: DISCONNECT sent and flushed.
    Closed,
    /// [`super::Conn::shutdown`]: the socket was dropped without DISCONNECT,
    /// so the server publishes the will.
    Shutdown,
    /// Every [`super::Conn`] handle was dropped.
    Dropped,
    /// The [`crate::Ctx`] is shutting down.
    ContextExit,
    /// The server closed the socket (end of stream) without DISCONNECT.
    PeerClosed,
    /// The server sent an MQTT 5 DISCONNECT with this reason code.
    ServerDisconnect {
        /// The DISCONNECT's reason code.
        reason_code: ReasonCode,
        /// Its Reason String, if any.
        reason_string: Option<String>,
    },
    /// The socket failed.
    Io(String),
    /// The server broke the protocol, or sent bytes that do not decode.
    ProtocolError(String),
    /// No PINGRESP came back in time.
    PingTimeout,
    /// Automatic reconnection stopped after its last attempt.
    ReconnectGaveUp,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("closed by the application"),
            Self::Shutdown => f.write_str("shut down by the application (no DISCONNECT)"),
            Self::Dropped => f.write_str("every Conn handle was dropped"),
            Self::ContextExit => f.write_str("the context is exiting"),
            Self::PeerClosed => f.write_str("the server closed the connection"),
            Self::ServerDisconnect {
                reason_code,
                reason_string,
            } => {
                write!(f, "the server sent DISCONNECT {reason_code:?}")?;
                if let Some(s) = reason_string {
                    write!(f, " ({s})")?;
                }
                Ok(())
            }
            Self::Io(e) => write!(f, "i/o error: {e}"),
            Self::ProtocolError(e) => write!(f, "protocol error: {e}"),
            Self::PingTimeout => f.write_str("no PINGRESP in time"),
            Self::ReconnectGaveUp => f.write_str("reconnection gave up"),
        }
    }
}

impl CloseReason {
    /// True when the application asked for the close (close, shutdown, drop,
    /// context exit): no reconnection follows.
    pub fn is_local(&self) -> bool {
        matches!(
            self,
            Self::Closed
                | Self::Shutdown
                | Self::Dropped
                | Self::ContextExit
                | Self::ReconnectGaveUp
        )
    }
}

/// Why a client operation failed. Cheap to clone, so every waiter on a
/// handle gets the same error.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A topic name or filter is not valid.
    #[error("invalid topic: {0}")]
    InvalidTopic(#[from] TopicError),
    /// A connect option is out of range.
    #[error("invalid option: {0}")]
    InvalidOption(&'static str),
    /// The host name did not resolve, or no address accepted the connection.
    #[error("cannot connect to {addr}: {message}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// The last error seen.
        message: String,
    },
    /// No CONNACK arrived within the connect timeout.
    #[error("no CONNACK within the connect timeout")]
    ConnectTimeout,
    /// The server refused the connection; the CONNACK's reason code (MQTT 5
    /// terms at every level: a 3.1.1 return code 0x05 reads as
    /// `NotAuthorized`) [MQTT-3.2.2-7] (5.0) / [MQTT-3.2.2-5] (3.1.1).
    #[error("connection refused by the server: {reason_code:?} (0x{code:02X}){}", fmt_reason(.reason_string.as_deref()))]
    ConnectionRefused {
        /// The CONNACK's reason code.
        reason_code: ReasonCode,
        /// The same as a byte, for bindings.
        code: u8,
        /// The CONNACK's Reason String (MQTT 5), if any.
        reason_string: Option<String>,
    },
    /// The operation needs a live connection and there is none right now
    /// (reconnecting, or not reconnecting at all).
    #[error("not connected")]
    NotConnected,
    /// The client was closed (close, shutdown, drop, context exit, or the
    /// connection was lost without reconnection).
    #[error("the connection is closed: {0}")]
    Closed(CloseReason),
    /// The connection was lost while the operation was in flight, and it
    /// will not be resumed.
    #[error("the connection was lost: {0}")]
    ConnectionLost(CloseReason),
    /// The send queue is full.
    #[error("the send queue is full ({limit} messages)")]
    QueueFull {
        /// The queue's limit.
        limit: usize,
    },
    /// A wait ended before the operation completed; the operation goes on
    /// and can be waited on again.
    #[error("timed out")]
    Timeout,
    /// The server answered with a failure reason code (MQTT 5 PUBACK,
    /// PUBREC, SUBACK or UNSUBACK).
    #[error("refused by the server: {reason_code:?} (0x{code:02X}){}", fmt_reason(.reason_string.as_deref()))]
    Refused {
        /// The reason code.
        reason_code: ReasonCode,
        /// The same as a byte, for bindings.
        code: u8,
        /// The Reason String, if any.
        reason_string: Option<String>,
    },
    /// The session discarded the message without sending it.
    #[error("message dropped: {0:?}")]
    Dropped(DropReason),
    /// The protocol session refused the operation.
    #[error("{0}")]
    Session(#[from] SessionError),
    /// The message's acknowledgement belongs to an earlier network
    /// connection; the server delivers the message again.
    #[error("the message came on an earlier connection; the server delivers it again")]
    StaleAck,
    /// Acknowledgement needs [`super::ConnectOptions::manual_ack`].
    #[error("manual acknowledgement is not enabled for this connection")]
    NotManualAck,
    /// The runtime failed to run the connection task.
    #[error("runtime error: {0}")]
    Runtime(Arc<str>),
}

fn fmt_reason(reason: Option<&str>) -> String {
    reason.map(|s| format!(": {s}")).unwrap_or_default()
}

impl ClientError {
    /// The MQTT reason code this error carries, if any: the CONNACK's for a
    /// refused connection, the ack's for a refused operation, the
    /// DISCONNECT's for a connection the server closed.
    pub fn reason_code(&self) -> Option<ReasonCode> {
        match self {
            Self::ConnectionRefused { reason_code, .. }
            | Self::Refused { reason_code, .. }
            | Self::Closed(CloseReason::ServerDisconnect { reason_code, .. })
            | Self::ConnectionLost(CloseReason::ServerDisconnect { reason_code, .. }) => {
                Some(*reason_code)
            }
            _ => None,
        }
    }

    pub(crate) fn refused(reason_code: ReasonCode, reason_string: Option<String>) -> Self {
        Self::Refused {
            reason_code,
            code: reason_code.as_u8(),
            reason_string,
        }
    }
}
