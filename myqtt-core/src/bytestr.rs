//! [`ByteStr`]: an immutable UTF-8 string that shares its bytes with the
//! packet buffer it was decoded from.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use bytes::Bytes;
use bytestring::ByteString;

/// An immutable UTF-8 string backed by [`Bytes`].
///
/// Cloning is a reference-count increment, and slicing a decoded packet into
/// client ids, properties and long topic names copies nothing (a topic name
/// of at most [`TopicName::INLINE_CAPACITY`](crate::topic::TopicName::INLINE_CAPACITY)
/// bytes is copied into the [`TopicName`](crate::topic::TopicName) instead).
///
// Design: `bytestring::ByteString` keeps the UTF-8 invariant, so `as_str` is
// free (no re-validation on the hot path) and this crate stays without
// `unsafe`. The newtype keeps that dependency out of the public API.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteStr(ByteString);

impl ByteStr {
    /// An empty string.
    pub const fn new() -> Self {
        Self(ByteString::new())
    }

    /// A string that borrows a `'static` literal (no allocation).
    pub const fn from_static(s: &'static str) -> Self {
        Self(ByteString::from_static(s))
    }

    /// Wraps `bytes` after checking that they are valid UTF-8.
    #[inline]
    pub fn from_utf8(bytes: Bytes) -> Result<Self, std::str::Utf8Error> {
        ByteString::try_from(bytes).map(Self)
    }

    /// The string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The underlying bytes (shared, not copied).
    pub fn as_bytes(&self) -> &Bytes {
        self.0.as_bytes()
    }

    /// Consumes the string and returns its bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0.into_bytes()
    }
}

impl Deref for ByteStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for ByteStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for ByteStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for ByteStr {
    fn from(s: &str) -> Self {
        Self(ByteString::from(s))
    }
}

impl From<String> for ByteStr {
    fn from(s: String) -> Self {
        Self(ByteString::from(s))
    }
}

impl PartialEq<str> for ByteStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ByteStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for ByteStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ByteStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_is_rejected() {
        assert!(ByteStr::from_utf8(Bytes::from_static(&[0xff, 0xfe])).is_err());
    }

    #[test]
    fn slices_share_the_source_buffer() {
        let buf = Bytes::from_static(b"xxa/b");
        let s = ByteStr::from_utf8(buf.slice(2..)).unwrap();
        assert_eq!(s, "a/b");
        assert_eq!(s.as_bytes().as_ptr(), buf[2..].as_ptr());
    }
}
