//! The only code that touches sockets: framed packet reading and writing
//! over any byte stream, the TCP accept loop and the transports.

mod framed;
mod listener;
pub mod ws;

pub use framed::{NetError, PacketReader, PacketWriter, split};
pub use listener::{Listener, ListenerError};

/// Creates a listener of `ctx` on `host:port` (port 0 picks a free port;
/// read it from [`Listener::local_addr`]); the same as
/// [`crate::Ctx::create_listener`].
pub fn create_listener(ctx: &crate::Ctx, host: &str, port: u16) -> Result<Listener, ListenerError> {
    ctx.create_listener(host, port)
}
