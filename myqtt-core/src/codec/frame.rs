//! The fixed header (MQTT 3.1.1 §2.2, MQTT 5.0 §2.1): the incremental
//! [`Decoder`], and [`encode`] / [`encoded_len`] for whole packets.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::{DecodeError, EncodeError};
use super::wire::{MAX_VARINT, Reader, Sink, measure, parse_varint, varint_len};
use super::{
    Auth, ConnAck, Connect, Disconnect, Packet, PacketType, ProtocolVersion, PubAck, Publish,
    SubAck, Subscribe, UnsubAck, Unsubscribe,
};

impl PacketType {
    /// The packet type for the high nibble of a first byte; `None` for 0.
    pub const fn from_nibble(n: u8) -> Option<Self> {
        Some(match n {
            1 => Self::Connect,
            2 => Self::ConnAck,
            3 => Self::Publish,
            4 => Self::PubAck,
            5 => Self::PubRec,
            6 => Self::PubRel,
            7 => Self::PubComp,
            8 => Self::Subscribe,
            9 => Self::SubAck,
            10 => Self::Unsubscribe,
            11 => Self::UnsubAck,
            12 => Self::PingReq,
            13 => Self::PingResp,
            14 => Self::Disconnect,
            15 => Self::Auth,
            _ => return None,
        })
    }

    /// The low nibble every packet of this type carries, PUBLISH aside
    /// ([MQTT-2.2.2-1]; 5.0: [MQTT-2.1.3-1]).
    const fn required_flags(self) -> u8 {
        match self {
            Self::PubRel | Self::Subscribe | Self::Unsubscribe => 0b0010,
            _ => 0,
        }
    }
}

/// An incremental MQTT decoder: one per connection.
///
/// Feed it the connection's receive buffer; it takes whole packets off the
/// front and leaves partial ones for the next read. It knows the
/// connection's protocol level: a server learns it from the CONNECT, a
/// client sets it with [`Decoder::set_version`] when it sends its CONNECT.
///
/// ```
/// use bytes::BytesMut;
/// use myqtt_core::codec::{Decoder, Packet, ProtocolVersion};
///
/// let mut decoder = Decoder::default();
/// decoder.set_version(ProtocolVersion::V311);
/// let mut buf = BytesMut::from(&[0xD0, 0x00, 0xC0][..]); // PINGRESP, then half a PINGREQ
/// assert_eq!(decoder.decode(&mut buf), Ok(Some(Packet::PingResp)));
/// assert_eq!(decoder.decode(&mut buf), Ok(None));
/// ```
#[derive(Debug, Clone)]
pub struct Decoder {
    max_packet_size: u32,
    version: Option<ProtocolVersion>,
}

impl Default for Decoder {
    /// A decoder that accepts the largest packet the protocol can express.
    fn default() -> Self {
        Self::new(Self::DEFAULT_MAX_PACKET_SIZE)
    }
}

impl Decoder {
    /// The largest packet MQTT can express: one type byte, four bytes of
    /// remaining length and 268,435,455 bytes of body.
    pub const DEFAULT_MAX_PACKET_SIZE: u32 = 1 + 4 + MAX_VARINT;

    /// A decoder that refuses packets bigger than `max_packet_size` bytes
    /// (fixed header included, as MQTT 5 counts it).
    ///
    /// 0 is not a valid maximum (MQTT 5 forbids a Maximum Packet Size of 0);
    /// it is taken to mean [`Decoder::DEFAULT_MAX_PACKET_SIZE`], that is, no
    /// limit beyond the protocol's.
    pub fn new(max_packet_size: u32) -> Self {
        let mut decoder = Self {
            max_packet_size: Self::DEFAULT_MAX_PACKET_SIZE,
            version: None,
        };
        decoder.set_max_packet_size(max_packet_size);
        decoder
    }

    /// Changes the maximum packet size; 0 means
    /// [`Decoder::DEFAULT_MAX_PACKET_SIZE`], as in [`Decoder::new`].
    pub fn set_max_packet_size(&mut self, n: u32) {
        self.max_packet_size = if n == 0 {
            Self::DEFAULT_MAX_PACKET_SIZE
        } else {
            n
        };
    }

    /// The maximum packet size in force.
    pub fn max_packet_size(&self) -> u32 {
        self.max_packet_size
    }

    /// The connection's protocol level, once known.
    pub fn version(&self) -> Option<ProtocolVersion> {
        self.version
    }

    /// Sets the protocol level: on the client side, the level it sent in its
    /// CONNECT.
    pub fn set_version(&mut self, v: ProtocolVersion) {
        self.version = Some(v);
    }

    /// Takes the next whole packet off the front of `buf`.
    ///
    /// `Ok(None)` means `buf` does not hold a whole packet yet: read more
    /// and call again (the buffer is then reserved for the rest of the
    /// packet). On `Ok(Some(p))` the packet's bytes are removed from `buf`;
    /// strings, binary fields and the payload of `p` share them, uncopied.
    ///
    /// A CONNECT is decoded whatever the current level and sets the level to
    /// its own. Before a level is known (server side, before the CONNECT)
    /// only a CONNECT is accepted [MQTT-3.1.0-1].
    ///
    /// Errors are final: the connection must be closed. Errors found in the
    /// fixed header (type, flags, remaining length, maximum packet size) are
    /// reported as soon as the fixed header is complete, before the body
    /// arrives, and leave `buf` as it was; errors in the body consume the
    /// packet.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let (packet_type, version) = self.check_first_byte(first)?;
        let Some((remaining, len_len)) = parse_varint(buf.get(1..).unwrap_or_default())? else {
            return Ok(None);
        };
        let header_len = 1 + len_len;
        // At most 5 + 268,435,455: no overflow in u32.
        let size = header_len as u32 + remaining;
        if size > self.max_packet_size {
            return Err(DecodeError::PacketTooLarge {
                size,
                max: self.max_packet_size,
            });
        }
        let size = size as usize;
        if buf.len() < size {
            buf.reserve(size - buf.len());
            return Ok(None);
        }
        let frame = buf.split_to(size);
        if let (PacketType::Publish, Some(v)) = (packet_type, version) {
            // The payload takes the rest of the packet: nothing can trail.
            // The frame is frozen there (see `Publish::decode`).
            return Publish::decode(frame, header_len, first, v);
        }
        self.decode_body(first, packet_type, frame.freeze(), header_len)
            .map(Some)
    }

    /// Decodes the body of any packet but a PUBLISH at a known level.
    ///
    // Design: kept out of line so that `decode`, which every PUBLISH goes
    // through, stays small (a smaller stack frame and fewer spills).
    #[inline(never)]
    fn decode_body(
        &mut self,
        first: u8,
        packet_type: PacketType,
        frame: Bytes,
        header_len: usize,
    ) -> Result<Packet, DecodeError> {
        let mut r = Reader::new(frame, header_len);
        let packet = match (packet_type, self.version) {
            (PacketType::Connect, _) => {
                let connect = Connect::decode(&mut r)?;
                r.finish()?;
                self.version = Some(connect.protocol);
                return Ok(Packet::Connect(Box::new(connect)));
            }
            // Only CONNECT passes `check_first_byte` without a version.
            (_, None) => {
                return Err(DecodeError::FirstPacketNotConnect {
                    packet_type: first >> 4,
                });
            }
            // Not reached (`decode` takes PUBLISH itself); kept so that the
            // match stays exhaustive without a panic.
            (PacketType::Publish, Some(v)) => {
                let body = BytesMut::from(&r.into_rest()[..]);
                return Publish::decode(body, 0, first, v)?.ok_or(DecodeError::Truncated);
            }
            (PacketType::ConnAck, Some(v)) => {
                Packet::ConnAck(Box::new(ConnAck::decode(&mut r, v)?))
            }
            (PacketType::PubAck, Some(v)) => {
                Packet::PubAck(PubAck::decode(&mut r, v, packet_type)?)
            }
            (PacketType::PubRec, Some(v)) => {
                Packet::PubRec(PubAck::decode(&mut r, v, packet_type)?)
            }
            (PacketType::PubRel, Some(v)) => {
                Packet::PubRel(PubAck::decode(&mut r, v, packet_type)?)
            }
            (PacketType::PubComp, Some(v)) => {
                Packet::PubComp(PubAck::decode(&mut r, v, packet_type)?)
            }
            (PacketType::Subscribe, Some(v)) => Packet::Subscribe(Subscribe::decode(&mut r, v)?),
            (PacketType::SubAck, Some(v)) => Packet::SubAck(SubAck::decode(&mut r, v)?),
            (PacketType::Unsubscribe, Some(v)) => {
                Packet::Unsubscribe(Unsubscribe::decode(&mut r, v)?)
            }
            (PacketType::UnsubAck, Some(v)) => Packet::UnsubAck(UnsubAck::decode(&mut r, v)?),
            (PacketType::PingReq, Some(_)) => Packet::PingReq,
            (PacketType::PingResp, Some(_)) => Packet::PingResp,
            (PacketType::Disconnect, Some(v)) => Packet::Disconnect(Disconnect::decode(&mut r, v)?),
            (PacketType::Auth, Some(_)) => Packet::Auth(Box::new(Auth::decode(&mut r)?)),
        };
        r.finish()?;
        Ok(packet)
    }

    /// Checks what the first byte alone decides: the packet type, its flags
    /// and whether it may come now.
    #[inline]
    fn check_first_byte(
        &self,
        first: u8,
    ) -> Result<(PacketType, Option<ProtocolVersion>), DecodeError> {
        let nibble = first >> 4;
        let flags = first & 0x0F;
        // Fast path for the common case, a PUBLISH once the level is known:
        // the same checks as below, in the same order.
        if nibble == PacketType::Publish as u8
            && let Some(v) = self.version
        {
            let qos = (flags >> 1) & 0x03;
            if qos == 3 {
                return Err(DecodeError::InvalidQoS); // [MQTT-3.3.1-4]
            }
            if qos == 0 && flags & 0x08 != 0 {
                return Err(DecodeError::DupAtQoS0); // [MQTT-3.3.1-2]
            }
            return Ok((PacketType::Publish, Some(v)));
        }
        let packet_type =
            PacketType::from_nibble(nibble).ok_or(DecodeError::InvalidPacketType {
                packet_type: nibble,
            })?;
        match self.version {
            None if packet_type != PacketType::Connect => {
                return Err(DecodeError::FirstPacketNotConnect {
                    packet_type: nibble,
                });
            }
            Some(v) if packet_type == PacketType::Auth && !v.is_v5() => {
                return Err(DecodeError::InvalidPacketType {
                    packet_type: nibble,
                });
            }
            _ => {}
        }
        if packet_type == PacketType::Publish {
            let qos = (flags >> 1) & 0x03;
            if qos == 3 {
                return Err(DecodeError::InvalidQoS); // [MQTT-3.3.1-4]
            }
            if qos == 0 && flags & 0x08 != 0 {
                return Err(DecodeError::DupAtQoS0); // [MQTT-3.3.1-2]
            }
        } else if flags != packet_type.required_flags() {
            return Err(DecodeError::InvalidFixedHeaderFlags { packet_type, flags });
        }
        Ok((packet_type, self.version))
    }
}

/// The level a packet is written at: a CONNECT always at its own.
fn effective_version(packet: &Packet, version: ProtocolVersion) -> ProtocolVersion {
    match packet {
        Packet::Connect(c) => c.protocol,
        _ => version,
    }
}

/// The low nibble of the first byte.
fn fixed_flags(packet: &Packet) -> u8 {
    match packet {
        Packet::Publish(p) => p.flags(),
        other => other.packet_type().required_flags(),
    }
}

fn check(packet: &Packet, version: ProtocolVersion) -> Result<(), EncodeError> {
    match packet {
        Packet::Connect(c) => c.check(),
        Packet::ConnAck(c) => c.check(version),
        Packet::Publish(p) => p.check(version),
        Packet::PubAck(a) => a.check(version, PacketType::PubAck),
        Packet::PubRec(a) => a.check(version, PacketType::PubRec),
        Packet::PubRel(a) => a.check(version, PacketType::PubRel),
        Packet::PubComp(a) => a.check(version, PacketType::PubComp),
        Packet::Subscribe(s) => s.check(version),
        Packet::SubAck(s) => s.check(version),
        Packet::Unsubscribe(u) => u.check(version),
        Packet::UnsubAck(u) => u.check(version),
        Packet::PingReq | Packet::PingResp => Ok(()),
        Packet::Disconnect(d) => d.check(version),
        Packet::Auth(a) => {
            if version.is_v5() {
                a.check()
            } else {
                Err(EncodeError::NotAvailable {
                    packet_type: PacketType::Auth,
                    version,
                })
            }
        }
    }
}

#[inline]
fn write_body<S: Sink>(packet: &Packet, version: ProtocolVersion, dst: &mut S) {
    match packet {
        Packet::Connect(c) => c.write(dst),
        Packet::ConnAck(c) => c.write(version, dst),
        Packet::Publish(p) => p.write(version, dst),
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            a.write(version, dst);
        }
        Packet::Subscribe(s) => s.write(version, dst),
        Packet::SubAck(s) => s.write(version, dst),
        Packet::Unsubscribe(u) => u.write(version, dst),
        Packet::UnsubAck(u) => u.write(version, dst),
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(d) => d.write(version, dst),
        Packet::Auth(a) => a.write(dst),
    }
}

/// Appends `packet`, encoded for protocol `version`, to `dst`.
///
/// A CONNECT is written at its own `protocol` whatever `version` says.
/// Fields a level cannot carry are left out: properties, MQTT 5 subscription
/// options and non-success acknowledgement codes before MQTT 5, the Session
/// Present flag at MQTT 3.1. Reason codes are written as 3.1.1 CONNACK and
/// SUBACK return codes at levels 3 and 4.
///
/// Nothing is written when an error is returned.
pub fn encode(
    packet: &Packet,
    version: ProtocolVersion,
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    let version = effective_version(packet, version);
    check(packet, version)?;
    let remaining = measure(|c| write_body(packet, version, c));
    if remaining > MAX_VARINT as usize {
        return Err(EncodeError::PacketTooLarge {
            remaining_length: remaining,
        });
    }
    dst.reserve(1 + varint_len(remaining as u32) + remaining);
    dst.put_u8(((packet.packet_type() as u8) << 4) | fixed_flags(packet));
    Sink::varint(dst, remaining as u32);
    write_body(packet, version, dst);
    Ok(())
}

/// The exact number of bytes [`encode`] writes for `packet` at `version`,
/// fixed header included. It does not validate: for a packet `encode`
/// refuses it is the size the packet would have.
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> usize {
    let version = effective_version(packet, version);
    let remaining = measure(|c| write_body(packet, version, c));
    1 + varint_len(u32::try_from(remaining).unwrap_or(u32::MAX)) + remaining
}
