//! The only code that touches sockets: framed packet reading and writing
//! over any byte stream, the TCP accept loop and the transports.

mod framed;
pub mod ws;

pub use framed::{NetError, PacketReader, PacketWriter, split};
