//! The on-disk layout: keys and values as bytes, shared by every backend.
//!
//! Every record is one key in one ordered byte keyspace. The first key byte
//! names the record kind; per-client kinds follow it with the side byte and
//! the client id, length-prefixed so that no id is a prefix of another's
//! keys. Client ids and topics are bytes inside keys, never file names.
//!
//! | kind | key | value (after the version byte) |
//! | --- | --- | --- |
//! | format marker | `00 "format"` | format version |
//! | session | `'S' side len:u16 client` | protocol:u8, expiry:u32, disconnected:u8, at:u64 |
//! | subscription | `'U' side len:u16 client filter` | options:u8, identifier:u32 (0: none) |
//! | in-flight | `'I' side len:u16 client packet_id:u16` | state:u8, seq:u64, message:u64 (0: none) |
//! | incoming QoS 2 | `'R' side len:u16 client packet_id:u16` | received_at:u64 |
//! | queue entry | `'Q' side len:u16 client seq:u64` | message:u64; layout 2 adds qos:u8, retain:u8, count:u16, subscription ids:u32 × count; layout 3 is `len:u16`, a layout 1 or 2 entry of `len` bytes, then the message record (as under `'M'`) |
//! | message | `'M' id:u64` | received_at:u64, MQTT 5 PUBLISH |
//! | retained | `'T' topic` | received_at:u64, MQTT 5 PUBLISH |
//! | will | `'W' len:u16 client` | due_at:u64, MQTT 5 CONNECT carrying the will |
//!
//! Integers are big-endian, so keys sort by sequence number and packet id.
//! Each value starts with [`RECORD_VERSION`] (a queue entry with its
//! delivery with [`QUEUE_ENTRY_VERSION`]; layout 1 entries, without it, are
//! still read); a store starts with the format marker ([`FORMAT_VERSION`]).

use bytes::BytesMut;

use super::types::{
    IncomingRecord, InflightState, MessageId, QueuedDelivery, SessionKey, SessionRecord, Side,
    StoredMessage, SubscriptionRecord, Timestamp, WillRecord,
};
use crate::ByteStr;
use crate::codec::{
    self, Connect, ConnectProperties, Decoder, EncodeError, Packet, PacketId, ProtocolVersion, QoS,
    RetainHandling, SubscriptionOptions,
};
use crate::topic::TopicFilter;

/// The store format this build reads and writes.
pub(crate) const FORMAT_VERSION: u8 = 1;
/// The layout version of each value.
pub(crate) const RECORD_VERSION: u8 = 1;
/// The layout of a queue entry that keeps its [`QueuedDelivery`].
pub(crate) const QUEUE_ENTRY_VERSION: u8 = 2;
/// The layout of a queue entry holding its message inline: the message is
/// referred to by this entry only, so it is not written under its own key.
pub(crate) const QUEUE_INLINE_VERSION: u8 = 3;
/// The format marker's key.
pub(crate) const META_KEY: &[u8] = b"\x00format";

pub(crate) const SESSION: u8 = b'S';
pub(crate) const SUBSCRIPTION: u8 = b'U';
pub(crate) const INFLIGHT: u8 = b'I';
pub(crate) const INCOMING: u8 = b'R';
pub(crate) const QUEUE: u8 = b'Q';
pub(crate) const MESSAGE: u8 = b'M';
pub(crate) const RETAINED: u8 = b'T';
pub(crate) const WILL: u8 = b'W';

/// Why a record could not be decoded.
pub(crate) type Bad = String;

// --- keys -----------------------------------------------------------------

/// `kind side len client`: the prefix of one client's records of a kind.
pub(crate) fn client_prefix(kind: u8, key: &SessionKey) -> Vec<u8> {
    let id = key.client_id.as_bytes();
    let mut k = Vec::with_capacity(4 + id.len() + 8);
    k.push(kind);
    k.push(key.side.tag());
    // Client ids are MQTT strings: at most 65,535 bytes.
    k.extend_from_slice(&(id.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    k.extend_from_slice(id);
    k
}

pub(crate) fn session_key(key: &SessionKey) -> Vec<u8> {
    client_prefix(SESSION, key)
}

pub(crate) fn subscription_key(key: &SessionKey, filter: &TopicFilter) -> Vec<u8> {
    let mut k = client_prefix(SUBSCRIPTION, key);
    k.extend_from_slice(filter.as_byte_str().as_bytes());
    k
}

pub(crate) fn inflight_key(key: &SessionKey, packet_id: PacketId) -> Vec<u8> {
    let mut k = client_prefix(INFLIGHT, key);
    k.extend_from_slice(&packet_id.get().to_be_bytes());
    k
}

pub(crate) fn incoming_key(key: &SessionKey, packet_id: PacketId) -> Vec<u8> {
    let mut k = client_prefix(INCOMING, key);
    k.extend_from_slice(&packet_id.get().to_be_bytes());
    k
}

pub(crate) fn queue_key(key: &SessionKey, seq: u64) -> Vec<u8> {
    let mut k = client_prefix(QUEUE, key);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

pub(crate) fn message_key(id: MessageId) -> Vec<u8> {
    message_key_bytes(id).to_vec()
}

/// [`message_key`] without an allocation, for lookups.
pub(crate) fn message_key_bytes(id: MessageId) -> [u8; 9] {
    let mut k = [MESSAGE; 9];
    for (d, b) in k.iter_mut().skip(1).zip(id.0.to_be_bytes()) {
        *d = b;
    }
    k
}

pub(crate) fn retained_key(topic: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + topic.len());
    k.push(RETAINED);
    k.extend_from_slice(topic);
    k
}

pub(crate) fn will_key(client_id: &ByteStr) -> Vec<u8> {
    let id = client_id.as_bytes();
    let mut k = Vec::with_capacity(3 + id.len());
    k.push(WILL);
    k.extend_from_slice(&(id.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    k.extend_from_slice(id);
    k
}

/// Splits a per-client key into its owner and the rest (after the client
/// id).
pub(crate) fn split_client_key(key: &[u8]) -> Result<(SessionKey, &[u8]), Bad> {
    let mut r = Cursor::new(key);
    r.u8()?; // kind
    let side = Side::from_tag(r.u8()?).ok_or("unknown side")?;
    let len = usize::from(r.u16()?);
    let id = r.take(len)?;
    let client_id = ByteStr::from_utf8(bytes::Bytes::copy_from_slice(id))
        .map_err(|_| "client id is not UTF-8")?;
    Ok((SessionKey { side, client_id }, r.rest()))
}

/// The client id of a will key.
pub(crate) fn split_will_key(key: &[u8]) -> Result<ByteStr, Bad> {
    let mut r = Cursor::new(key);
    r.u8()?;
    let len = usize::from(r.u16()?);
    let id = r.take(len)?;
    ByteStr::from_utf8(bytes::Bytes::copy_from_slice(id))
        .map_err(|_| "client id is not UTF-8".into())
}

pub(crate) fn u64_suffix(rest: &[u8]) -> Result<u64, Bad> {
    let b: [u8; 8] = rest.try_into().map_err(|_| "bad key length")?;
    Ok(u64::from_be_bytes(b))
}

pub(crate) fn packet_id_suffix(rest: &[u8]) -> Result<PacketId, Bad> {
    let b: [u8; 2] = rest.try_into().map_err(|_| "bad key length")?;
    PacketId::new(u16::from_be_bytes(b)).ok_or_else(|| "packet id 0".into())
}

// --- values ---------------------------------------------------------------

/// A bounds-checked reader over a stored value.
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// A reader past the version byte, which must be [`RECORD_VERSION`].
    pub(crate) fn value(buf: &'a [u8]) -> Result<Self, Bad> {
        let mut r = Self::new(buf);
        match r.u8()? {
            RECORD_VERSION => Ok(r),
            v => Err(format!(
                "record version {v}, this build reads {RECORD_VERSION}"
            )),
        }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Bad> {
        if self.buf.len() < n {
            return Err("record too short".into());
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Bad> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Bad> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Bad> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Bad> {
        let b: [u8; 8] = self.take(8)?.try_into().map_err(|_| "record too short")?;
        Ok(u64::from_be_bytes(b))
    }

    pub(crate) fn rest(self) -> &'a [u8] {
        self.buf
    }

    pub(crate) fn finish(self) -> Result<(), Bad> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err("trailing bytes in record".into())
        }
    }
}

fn protocol_from_level(level: u8) -> Result<ProtocolVersion, Bad> {
    match level {
        3 => Ok(ProtocolVersion::V31),
        4 => Ok(ProtocolVersion::V311),
        5 => Ok(ProtocolVersion::V5),
        l => Err(format!("protocol level {l}")),
    }
}

pub(crate) fn encode_session(s: &SessionRecord) -> Vec<u8> {
    let mut v = Vec::with_capacity(15);
    v.push(RECORD_VERSION);
    v.push(s.protocol.level());
    v.extend_from_slice(&s.expiry_interval.to_be_bytes());
    v.push(u8::from(s.disconnected_at.is_some()));
    let at = s.disconnected_at.unwrap_or_default().as_unix_millis();
    v.extend_from_slice(&at.to_be_bytes());
    v
}

pub(crate) fn decode_session(key: SessionKey, value: &[u8]) -> Result<SessionRecord, Bad> {
    let mut r = Cursor::value(value)?;
    let protocol = protocol_from_level(r.u8()?)?;
    let expiry_interval = r.u32()?;
    let disconnected = r.u8()? != 0;
    let at = Timestamp::from_unix_millis(r.u64()?);
    r.finish()?;
    Ok(SessionRecord {
        key,
        protocol,
        expiry_interval,
        disconnected_at: disconnected.then_some(at),
    })
}

/// The subscription options as one byte, in MQTT 5's layout (MQTT 5.0
/// §3.8.3.1) whatever the client's level.
fn options_byte(o: SubscriptionOptions) -> u8 {
    o.qos.as_u8()
        | (u8::from(o.no_local) << 2)
        | (u8::from(o.retain_as_published) << 3)
        | ((o.retain_handling as u8) << 4)
}

fn options_from_byte(b: u8) -> Result<SubscriptionOptions, Bad> {
    let qos = QoS::try_from(b & 0x03).map_err(|_| "subscription QoS 3")?;
    let retain_handling = match (b >> 4) & 0x03 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendAtSubscribeIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return Err("retain handling 3".into()),
    };
    Ok(SubscriptionOptions {
        qos,
        no_local: b & 0x04 != 0,
        retain_as_published: b & 0x08 != 0,
        retain_handling,
    })
}

pub(crate) fn encode_subscription(s: &SubscriptionRecord) -> Vec<u8> {
    let mut v = Vec::with_capacity(6);
    v.push(RECORD_VERSION);
    v.push(options_byte(s.options));
    v.extend_from_slice(&s.identifier.unwrap_or(0).to_be_bytes());
    v
}

pub(crate) fn decode_subscription(filter: &[u8], value: &[u8]) -> Result<SubscriptionRecord, Bad> {
    let filter = std::str::from_utf8(filter).map_err(|_| "filter is not UTF-8")?;
    let filter = TopicFilter::new(filter).map_err(|e| format!("filter: {e}"))?;
    let mut r = Cursor::value(value)?;
    let options = options_from_byte(r.u8()?)?;
    let identifier = r.u32()?;
    r.finish()?;
    Ok(SubscriptionRecord {
        filter,
        options,
        identifier: (identifier != 0).then_some(identifier),
    })
}

pub(crate) fn encode_inflight(
    state: InflightState,
    seq: u64,
    message: Option<MessageId>,
) -> Vec<u8> {
    let mut v = Vec::with_capacity(18);
    v.push(RECORD_VERSION);
    v.push(state.tag());
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&message.map_or(0, |m| m.0).to_be_bytes());
    v
}

pub(crate) fn decode_inflight(
    value: &[u8],
) -> Result<(InflightState, u64, Option<MessageId>), Bad> {
    let mut r = Cursor::value(value)?;
    let state = InflightState::from_tag(r.u8()?).ok_or("unknown in-flight state")?;
    let seq = r.u64()?;
    let message = r.u64()?;
    r.finish()?;
    Ok((state, seq, (message != 0).then_some(MessageId(message))))
}

pub(crate) fn encode_incoming(record: &IncomingRecord) -> Vec<u8> {
    let mut v = Vec::with_capacity(9);
    v.push(RECORD_VERSION);
    v.extend_from_slice(&record.received_at.as_unix_millis().to_be_bytes());
    v
}

pub(crate) fn decode_incoming(packet_id: PacketId, value: &[u8]) -> Result<IncomingRecord, Bad> {
    let mut r = Cursor::value(value)?;
    let received_at = Timestamp::from_unix_millis(r.u64()?);
    r.finish()?;
    Ok(IncomingRecord {
        packet_id,
        received_at,
    })
}

pub(crate) fn encode_queue_entry(message: MessageId, delivery: Option<&QueuedDelivery>) -> Vec<u8> {
    let Some(d) = delivery else {
        let mut v = Vec::with_capacity(9);
        v.push(RECORD_VERSION);
        v.extend_from_slice(&message.0.to_be_bytes());
        return v;
    };
    // MQTT allows at most one identifier per matching subscription; a
    // count past u16 cannot come from a real session.
    let ids = &d.subscription_ids[..d.subscription_ids.len().min(usize::from(u16::MAX))];
    let mut v = Vec::with_capacity(13 + 4 * ids.len());
    v.push(QUEUE_ENTRY_VERSION);
    v.extend_from_slice(&message.0.to_be_bytes());
    v.push(d.qos.as_u8());
    v.push(u8::from(d.retain));
    v.extend_from_slice(&(ids.len() as u16).to_be_bytes());
    for id in ids {
        v.extend_from_slice(&id.to_be_bytes());
    }
    v
}

/// `entry` (layout 1 or 2) with the value of the message record it refers
/// to inline (layout 3).
pub(crate) fn inline_queue_entry(entry: &[u8], message: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(3 + entry.len() + message.len());
    v.push(QUEUE_INLINE_VERSION);
    // Callers check `can_inline` first: the length fits.
    v.extend_from_slice(&(entry.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    v.extend_from_slice(entry);
    v.extend_from_slice(message);
    v
}

/// Whether an encoded entry fits the layout 3 length field.
pub(crate) fn can_inline(entry: &[u8]) -> bool {
    u16::try_from(entry.len()).is_ok()
}

/// A queue entry of any layout: the message id, the delivery if the entry
/// keeps one, and the message record's value if the entry holds it inline
/// (layout 3).
#[allow(clippy::type_complexity)] // a private decoder's three parts
pub(crate) fn decode_queue_record(
    value: &[u8],
) -> Result<(MessageId, Option<QueuedDelivery>, Option<&[u8]>), Bad> {
    let mut r = Cursor::new(value);
    if r.u8()? != QUEUE_INLINE_VERSION {
        let (id, delivery) = decode_queue_entry(value)?;
        return Ok((id, delivery, None));
    }
    let len = usize::from(r.u16()?);
    let (id, delivery) = decode_queue_entry(r.take(len)?)?;
    Ok((id, delivery, Some(r.rest())))
}

/// A queue entry of either layout: the message id, and the delivery if
/// the entry keeps one (layout 2).
pub(crate) fn decode_queue_entry(value: &[u8]) -> Result<(MessageId, Option<QueuedDelivery>), Bad> {
    let mut r = Cursor::new(value);
    let version = r.u8()?;
    let id = MessageId(r.u64()?);
    let delivery = match version {
        RECORD_VERSION => None,
        QUEUE_ENTRY_VERSION => {
            let qos = QoS::try_from(r.u8()?).map_err(|_| "queue entry QoS 3")?;
            let retain = match r.u8()? {
                0 => false,
                1 => true,
                _ => return Err("queue entry retain flag".into()),
            };
            let n = r.u16()?;
            let mut subscription_ids = Vec::with_capacity(usize::from(n));
            for _ in 0..n {
                subscription_ids.push(r.u32()?);
            }
            Some(QueuedDelivery {
                qos,
                retain,
                subscription_ids,
            })
        }
        v => {
            return Err(format!(
                "queue entry layout {v}, this build reads {RECORD_VERSION} and {QUEUE_ENTRY_VERSION}"
            ));
        }
    };
    r.finish()?;
    Ok((id, delivery))
}

/// Why a message cannot be stored.
pub(crate) fn check_message(m: &StoredMessage) -> Result<(), &'static str> {
    if m.publish.topic.is_empty() {
        return Err("a stored message needs its topic (an alias alone is per connection)");
    }
    Ok(())
}

/// `received_at` and the message as an MQTT 5 PUBLISH (packet id 1 as a
/// placeholder at QoS 1 and 2; DUP and Topic Alias cleared).
pub(crate) fn encode_message(m: &StoredMessage) -> Result<Vec<u8>, EncodeError> {
    let mut publish = m.publish.clone();
    publish.dup = false;
    if publish.properties.topic_alias.is_some() {
        publish.properties.make_mut().topic_alias = None;
    }
    publish.packet_id = (publish.qos != QoS::AtMostOnce)
        .then_some(PacketId::new(1))
        .flatten();
    let packet = Packet::Publish(publish);
    let mut buf = BytesMut::with_capacity(9 + codec::encoded_len(&packet, ProtocolVersion::V5));
    buf.extend_from_slice(&[RECORD_VERSION]);
    buf.extend_from_slice(&m.received_at.as_unix_millis().to_be_bytes());
    codec::encode(&packet, ProtocolVersion::V5, &mut buf)?;
    // No copy: the buffer was allocated here and is not shared.
    Ok(Vec::from(buf))
}

/// Decodes a packet written by [`encode_message`] or [`encode_will`].
fn decode_packet(bytes: &[u8]) -> Result<Packet, Bad> {
    let mut decoder = Decoder::default();
    decoder.set_version(ProtocolVersion::V5);
    let mut buf = BytesMut::from(bytes);
    let packet = decoder
        .decode(&mut buf)
        .map_err(|e| format!("stored packet: {e}"))?
        .ok_or("stored packet is truncated")?;
    if !buf.is_empty() {
        return Err("trailing bytes after the stored packet".into());
    }
    Ok(packet)
}

pub(crate) fn decode_message(value: &[u8]) -> Result<StoredMessage, Bad> {
    let mut r = Cursor::value(value)?;
    let received_at = Timestamp::from_unix_millis(r.u64()?);
    let Packet::Publish(mut publish) = decode_packet(r.rest())? else {
        return Err("stored message is not a PUBLISH".into());
    };
    publish.packet_id = None;
    Ok(StoredMessage {
        publish,
        received_at,
    })
}

/// `due_at` and the will inside an MQTT 5 CONNECT (its client id left
/// empty: the key holds it).
pub(crate) fn encode_will(w: &WillRecord) -> Result<Vec<u8>, EncodeError> {
    let packet = Packet::Connect(Box::new(Connect {
        protocol: ProtocolVersion::V5,
        clean_start: false,
        keep_alive: 0,
        client_id: ByteStr::new(),
        will: Some(w.will.clone()),
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    }));
    let mut buf = BytesMut::with_capacity(9 + codec::encoded_len(&packet, ProtocolVersion::V5));
    buf.extend_from_slice(&[RECORD_VERSION]);
    buf.extend_from_slice(&w.due_at.as_unix_millis().to_be_bytes());
    codec::encode(&packet, ProtocolVersion::V5, &mut buf)?;
    Ok(buf.to_vec())
}

pub(crate) fn decode_will(client_id: ByteStr, value: &[u8]) -> Result<WillRecord, Bad> {
    let mut r = Cursor::value(value)?;
    let due_at = Timestamp::from_unix_millis(r.u64()?);
    let Packet::Connect(connect) = decode_packet(r.rest())? else {
        return Err("stored will is not a CONNECT".into());
    };
    let will = connect.will.ok_or("stored CONNECT has no will")?;
    Ok(WillRecord {
        client_id,
        will,
        due_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_byte_round_trips_every_valid_combination() {
        for b in 0u8..=0x3F {
            match options_from_byte(b) {
                Ok(o) => assert_eq!(options_byte(o), b),
                Err(_) => assert!(b & 0x03 == 3 || (b >> 4) & 0x03 == 3, "byte {b:#x}"),
            }
        }
    }

    #[test]
    fn client_keys_of_a_prefix_id_do_not_share_a_prefix() {
        let short = client_prefix(QUEUE, &SessionKey::broker("ab"));
        let long = queue_key(&SessionKey::broker("abc"), 1);
        assert!(!long.starts_with(&short));
    }

    #[test]
    fn queue_entries_of_both_layouts_are_read() {
        let d = QueuedDelivery {
            qos: QoS::AtLeastOnce,
            retain: true,
            subscription_ids: vec![7, 268_435_455],
        };
        let v2 = encode_queue_entry(MessageId(9), Some(&d));
        assert_eq!(v2[0], QUEUE_ENTRY_VERSION);
        assert_eq!(decode_queue_entry(&v2), Ok((MessageId(9), Some(d))));
        for n in 0..v2.len() {
            assert!(decode_queue_entry(&v2[..n]).is_err(), "{n} bytes");
        }
        // A layout 1 entry, as stores written before layout 2 hold.
        let v1 = [1, 0, 0, 0, 0, 0, 0, 0, 9];
        assert_eq!(encode_queue_entry(MessageId(9), None), v1);
        assert_eq!(decode_queue_entry(&v1), Ok((MessageId(9), None)));
        assert!(decode_queue_entry(&[4, 0, 0, 0, 0, 0, 0, 0, 9]).is_err());
        // Layout 3: either entry with a message record inline.
        for entry in [v1.to_vec(), v2.clone()] {
            let v3 = inline_queue_entry(&entry, b"record");
            let (id, d, inline) = decode_queue_record(&v3).expect("layout 3");
            assert_eq!((id, inline), (MessageId(9), Some(&b"record"[..])));
            assert_eq!(d, decode_queue_entry(&entry).expect("entry").1);
            for n in 0..3 + entry.len() {
                assert!(decode_queue_record(&v3[..n]).is_err(), "{n} bytes");
            }
        }
    }

    #[test]
    fn a_truncated_record_is_an_error_not_a_panic() {
        let v = encode_session(&SessionRecord {
            key: SessionKey::broker("c"),
            protocol: ProtocolVersion::V5,
            expiry_interval: 7,
            disconnected_at: Some(Timestamp::from_unix_millis(9)),
        });
        for n in 0..v.len() {
            assert!(decode_session(SessionKey::broker("c"), &v[..n]).is_err());
        }
        assert!(decode_session(SessionKey::broker("c"), &v).is_ok());
    }
}
