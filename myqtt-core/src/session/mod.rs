//! Sans-IO protocol state of one MQTT connection, for the client and the
//! server side.
//!
//! # Layout
//!
//! - [`Session`] (`machine.rs`): the state machine the I/O layer owns, one
//!   per network connection. It takes decoded packets
//!   ([`Session::handle_packet`]) and the passing of time
//!   ([`Session::handle_timeout`], due at [`Session::poll_timeout`]), and
//!   yields packets to send ([`Session::poll_transmit`]) and [`Event`]s for
//!   the application or broker ([`Session::poll_event`]). The same type
//!   serves both [`Role`]s.
//! - [`SessionState`] (`state.rs`): what outlives the connection for a
//!   persistent session — the packet-id allocator, the outgoing QoS 1/2
//!   flows in flight in send order, the incoming QoS 2 ids awaiting PUBREL,
//!   and the bounded queue of messages waiting for a send window. It can be
//!   copied out ([`SessionState::snapshot`]) and rebuilt
//!   ([`SessionState::restore`]) by a storage layer.
//! - connection state (`connection.rs`, internal): rebuilt for every
//!   connection — keep-alive deadlines, topic aliases both ways
//!   (`alias.rs`), the peer's limits ([`PeerLimits`]) and the
//!   acknowledgements waiting for the application.
//! - [`SessionConfig`] (`config.rs`): this side's limits and policies.
//! - [`SessionError`] (`error.rs`): protocol violations name the normative
//!   statement and know their reason code.
//!
//! Time is always an argument (`now: Instant`); nothing here reads a clock,
//! spawns a task or touches a socket.
//!
//! # Lifecycle
//!
//! A client: [`Session::client`], [`Session::connect`], then CONNACK arrives
//! as [`Event::ConnAck`]. A server: [`Session::server`], CONNECT arrives as
//! [`Event::Connect`], the broker answers with [`Session::accept`] (giving
//! the client's stored [`SessionState`] or a new one) or
//! [`Session::reject`]. On a new connection the flows in flight are resent
//! in order with DUP set [MQTT-4.4.0-1], [MQTT-4.6.0-1]. When the connection
//! ends, [`Session::into_state`] detaches the session state for the next
//! one.

mod alias;
mod config;
mod connection;
mod error;
mod event;
mod machine;
mod size;
mod state;

pub use config::{AckMode, SessionConfig, SessionConfigBuilder};
pub use connection::{PeerLimits, Stats};
pub use error::SessionError;
pub use event::{DropReason, Event};
pub use machine::{Role, Session};
pub(crate) use state::LazyDeque;
pub use state::{
    DEFAULT_MAX_QUEUE_LEN, IncomingQos2, Outgoing, QueuedMessage, SessionSnapshot, SessionState,
    Ticket,
};
