//! Wire primitives (MQTT 3.1.1 §1.5 and §2.2.3, MQTT 5.0 §1.5): Variable
//! Byte Integers, two-byte integers, length-prefixed strings and binary data;
//! a bounds-checked [`Reader`] over a received packet and the [`Sink`] trait
//! that both writes packets and measures them.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::error::{DecodeError, EncodeError};
use super::{PacketId, PacketType};
use crate::bytestr::ByteStr;

/// The largest value a Variable Byte Integer holds, and so the largest
/// remaining length (MQTT 3.1.1 §2.2.3, MQTT 5.0 §1.5.5).
pub(crate) const MAX_VARINT: u32 = 268_435_455;

/// Bytes a Variable Byte Integer takes on the wire.
pub(crate) const fn varint_len(v: u32) -> usize {
    match v {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Parses a Variable Byte Integer at the start of `buf`.
///
/// `Ok(None)` when `buf` ends before the integer does. An integer longer
/// than four bytes, or not in its shortest form [MQTT-1.5.5-1], is
/// malformed.
#[inline]
pub(crate) fn parse_varint(buf: &[u8]) -> Result<Option<(u32, usize)>, DecodeError> {
    // Fast paths: one byte (0..=127) and two bytes (128..=16,383) cover
    // nearly every remaining length and property length.
    match *buf {
        [b0, ..] if b0 & 0x80 == 0 => return Ok(Some((u32::from(b0), 1))),
        [b0, b1, ..] if b1 & 0x80 == 0 && b1 != 0 => {
            return Ok(Some((u32::from(b0 & 0x7F) | (u32::from(b1) << 7), 2)));
        }
        _ => {}
    }
    let mut value: u32 = 0;
    for (i, &b) in buf.iter().take(4).enumerate() {
        value |= u32::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            // A final 0 byte after continuation bytes adds nothing: the
            // encoder could have stopped earlier.
            if b == 0 && i > 0 {
                return Err(DecodeError::MalformedVariableByteInteger);
            }
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= 4 {
        Err(DecodeError::MalformedVariableByteInteger)
    } else {
        Ok(None)
    }
}

/// A cursor over one received packet's body.
///
// Design: the reader owns the frozen packet, so every string and binary
// field it returns is a `Bytes::slice` of it (a reference-count increment,
// never a copy), and the PUBLISH payload is the packet itself, advanced past
// the variable header (`into_rest`: no reference count at all).
pub(crate) struct Reader {
    buf: Bytes,
    pos: usize,
    end: usize,
}

impl Reader {
    /// A reader over `buf[start..]`.
    #[inline]
    pub(crate) fn new(buf: Bytes, start: usize) -> Self {
        let end = buf.len();
        Self {
            buf,
            pos: start.min(end),
            end,
        }
    }

    /// Bytes left before the end of this reader.
    pub(crate) fn remaining(&self) -> usize {
        self.end - self.pos
    }

    /// True when nothing is left.
    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.end
    }

    /// Fails with [`DecodeError::TrailingBytes`] if anything is left.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                extra: self.remaining(),
            })
        }
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        let start = self.pos;
        let end = start
            .checked_add(n)
            .filter(|&e| e <= self.end)
            .ok_or(DecodeError::Truncated)?;
        self.pos = end;
        self.buf.get(start..end).ok_or(DecodeError::Truncated)
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.take(N)?.try_into().map_err(|_| DecodeError::Truncated)
    }

    /// One byte.
    #[inline]
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        let [b] = self.array::<1>()?;
        Ok(b)
    }

    /// A big-endian two-byte integer.
    #[inline]
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// A big-endian four-byte integer.
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// A Variable Byte Integer.
    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        let rest = self
            .buf
            .get(self.pos..self.end)
            .ok_or(DecodeError::Truncated)?;
        let (v, n) = parse_varint(rest)?.ok_or(DecodeError::Truncated)?;
        self.pos += n;
        Ok(v)
    }

    /// Everything that is left, as the packet's own buffer advanced to the
    /// current position (consuming the reader: no new handle, no reference
    /// count).
    #[inline(always)]
    #[allow(clippy::inline_always)] // PUBLISH decode hot path; measured with callgrind
    pub(crate) fn into_rest(self) -> Bytes {
        let mut rest = self.buf;
        // A top-level reader ends where the packet does: no call needed.
        if self.end < rest.len() {
            rest.truncate(self.end);
        }
        rest.advance(self.pos);
        rest
    }

    /// Binary Data: a two-byte length and that many bytes.
    ///
    // Design: one bounds check for the length prefix and one for the data,
    // then a single `Bytes::slice` (the one reference-count increment).
    #[inline]
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let Some(&[hi, lo]) = self
            .buf
            .get(self.pos..self.end)
            .and_then(<[u8]>::first_chunk)
        else {
            return Err(DecodeError::Truncated);
        };
        let start = self.pos + 2;
        // `start <= end <= buf.len()`, and a slice is at most `isize::MAX`
        // long: adding a u16 cannot overflow.
        let end = start + usize::from(u16::from_be_bytes([hi, lo]));
        if end > self.end {
            return Err(DecodeError::Truncated);
        }
        self.pos = end;
        Ok(self.buf.slice(start..end))
    }

    /// A UTF-8 Encoded String: well-formed UTF-8 without U+0000
    /// ([MQTT-1.5.3-1], [MQTT-1.5.3-2]; 5.0: [MQTT-1.5.4-1], [MQTT-1.5.4-2]).
    pub(crate) fn string(&mut self) -> Result<ByteStr, DecodeError> {
        let b = self.binary()?;
        if b.contains(&0) {
            return Err(DecodeError::NullCharacter);
        }
        ByteStr::from_utf8(b).map_err(|_| DecodeError::InvalidUtf8)
    }

    /// A non-zero packet identifier [MQTT-2.3.1-1].
    #[inline]
    pub(crate) fn packet_id(&mut self, packet_type: PacketType) -> Result<PacketId, DecodeError> {
        PacketId::new(self.u16()?).ok_or(DecodeError::ZeroPacketId { packet_type })
    }

    /// Runs `f` with the reader limited to the next `n` bytes; `f` must use
    /// them all (a property list does, or fails).
    pub(crate) fn limited<T>(
        &mut self,
        n: usize,
        f: impl FnOnce(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.end)
            .ok_or(DecodeError::Truncated)?;
        let outer_end = std::mem::replace(&mut self.end, end);
        let out = f(self);
        self.end = outer_end;
        let out = out?;
        if self.pos == end {
            Ok(out)
        } else {
            Err(DecodeError::TrailingBytes {
                extra: end.saturating_sub(self.pos),
            })
        }
    }
}

/// Where encoded bytes go: a buffer, or a counter that measures the packet.
///
// Design: one generic writer per packet serves both `encode` and
// `encoded_len`, so the two cannot disagree.
pub(crate) trait Sink {
    /// One byte.
    fn u8(&mut self, v: u8);
    /// Big-endian two bytes.
    fn u16(&mut self, v: u16);
    /// Big-endian four bytes.
    fn u32(&mut self, v: u32);
    /// Raw bytes.
    fn slice(&mut self, s: &[u8]);

    /// A Variable Byte Integer (the caller keeps `v` <= [`MAX_VARINT`]).
    #[inline]
    fn varint(&mut self, mut v: u32) {
        loop {
            let byte = (v & 0x7F) as u8;
            v >>= 7;
            if v == 0 {
                self.u8(byte);
                break;
            }
            self.u8(byte | 0x80);
        }
    }

    /// Binary Data or a string: two-byte length then the bytes (the caller
    /// has checked the length fits).
    #[inline]
    fn binary(&mut self, s: &[u8]) {
        self.u16(s.len() as u16);
        self.slice(s);
    }
}

/// A [`Sink`] that only counts.
#[derive(Default)]
pub(crate) struct Counter(pub(crate) usize);

impl Sink for Counter {
    #[inline]
    fn u8(&mut self, _: u8) {
        self.0 += 1;
    }
    #[inline]
    fn u16(&mut self, _: u16) {
        self.0 += 2;
    }
    #[inline]
    fn u32(&mut self, _: u32) {
        self.0 += 4;
    }
    #[inline]
    fn slice(&mut self, s: &[u8]) {
        self.0 += s.len();
    }
    #[inline]
    fn varint(&mut self, v: u32) {
        self.0 += varint_len(v);
    }
}

impl Sink for BytesMut {
    #[inline]
    fn u8(&mut self, v: u8) {
        self.put_u8(v);
    }
    #[inline]
    fn u16(&mut self, v: u16) {
        self.put_u16(v);
    }
    #[inline]
    fn u32(&mut self, v: u32) {
        self.put_u32(v);
    }
    #[inline]
    fn slice(&mut self, s: &[u8]) {
        self.extend_from_slice(s);
    }
}

/// Measures what `write` puts into a sink.
#[inline]
pub(crate) fn measure(write: impl FnOnce(&mut Counter)) -> usize {
    let mut c = Counter::default();
    write(&mut c);
    c.0
}

/// Fails if a string or binary field does not fit a two-byte length.
pub(crate) fn check_len(field: &'static str, s: &[u8]) -> Result<(), EncodeError> {
    if s.len() > usize::from(u16::MAX) {
        Err(EncodeError::FieldTooLong {
            field,
            len: s.len(),
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_lengths_match_the_encoder() {
        for v in [
            0, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, MAX_VARINT,
        ] {
            let mut b = BytesMut::new();
            b.varint(v);
            assert_eq!(b.len(), varint_len(v), "value {v}");
            assert_eq!(parse_varint(&b), Ok(Some((v, b.len()))));
        }
    }

    #[test]
    fn incomplete_varint_asks_for_more() {
        assert_eq!(parse_varint(&[0x80, 0x80]), Ok(None));
        assert_eq!(parse_varint(&[]), Ok(None));
    }
}
