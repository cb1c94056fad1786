//! Encoded packet sizes, for the peer's MQTT 5 Maximum Packet Size
//! [MQTT-3.1.2-24] (5.0), [MQTT-3.2.2-15].

use crate::codec::{Packet, ProtocolVersion, encoded_len};

/// The size in bytes of `packet` encoded at `version`, fixed header
/// included: the one place the session asks for a size.
pub(crate) fn packet_size(packet: &Packet, version: ProtocolVersion) -> usize {
    encoded_len(packet, version)
}
