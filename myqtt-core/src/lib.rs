//! The myqtt engine: an MQTT 3.1, 3.1.1 and 5.0 client and listener in one
//! library.
//!
//! # Layout
//!
//! - [`codec`]: sans-IO packets to bytes and back, with strict validation.
//!   Every decode error names the normative statement it enforces and the
//!   MQTT 5 reason code it causes.
//! - [`topic`]: validated topic names and filters, the subscription trie and
//!   the retained-message tree.
//! - [`session`]: sans-IO protocol state of one connection, client or server
//!   side: packet ids, QoS 1/2 inflight tables, keep-alive deadlines, flow
//!   control, topic aliases. Time is an argument; nothing here reads a clock
//!   or touches a socket.
//! - [`net`]: the only code that touches sockets: packet framing over a
//!   byte stream, accept loops, transports.
//! - [`broker`]: the listener's logic (routing, sessions, retained and will
//!   messages) and the [`broker::hooks`] programs use to decide.
//! - [`store`]: durable storage of sessions, in-flight and queued messages,
//!   retained messages and wills (redb by default, sled as an option).
//! - [`ctx`]: [`Ctx`], which owns the tokio runtime, the broker shared by
//!   its listeners ([`create_listener`]) and the shutdown signal.
//! - [`client`]: [`Conn`], the MQTT client connection.
//! - [`ByteStr`]: the UTF-8 string type that shares bytes with packet buffers.
//!
//! The codec, topic and session modules never import tokio: they are tested
//! in memory, with simulated time.

pub mod broker;
mod bytestr;
pub mod client;
pub mod codec;
pub mod ctx;
mod hash;
pub mod net;
pub mod session;
pub mod store;
pub mod topic;

pub use bytestr::ByteStr;
pub use client::Conn;
pub use ctx::{Ctx, CtxBuilder, CtxError, ListenerWaiter, WaitOutcome};
pub use net::create_listener;
