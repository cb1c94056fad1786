//! Validated topic names and topic filters (MQTT 3.1.1 §4.7, MQTT 5.0 §4.7
//! and §4.8.2 for shared subscriptions).

use std::fmt;

use arrayvec::ArrayString;
use bytes::Bytes;

use crate::bytestr::ByteStr;

/// Why a string is not a valid topic name or topic filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Topic names and filters are at least one character long.
    #[error("[MQTT-4.7.3-1] topic names and topic filters must be at least one character long")]
    Empty,
    /// Topic names and filters fit a two-byte length prefix.
    #[error("[MQTT-4.7.3-3] topic is longer than 65535 bytes")]
    TooLong,
    /// U+0000 may not appear in a topic.
    #[error("[MQTT-4.7.3-2] topic contains the null character U+0000")]
    NullCharacter,
    /// A topic name (what PUBLISH carries) may not contain `+` or `#`.
    #[error("[MQTT-3.3.2-2] topic name contains a wildcard character")]
    WildcardInName,
    /// `#` must be the last character of a filter and occupy a whole level.
    #[error("[MQTT-4.7.1-2] multi-level wildcard '#' must be alone in the last level")]
    MisplacedMultiLevelWildcard,
    /// `+` must occupy a whole level.
    #[error("[MQTT-4.7.1-3] single-level wildcard '+' must occupy an entire level")]
    MisplacedSingleLevelWildcard,
    /// `$share/{ShareName}/{filter}` needs a non-empty share name without
    /// `/`, `+` or `#`, followed by a filter.
    #[error("[MQTT-4.8.2-1] shared subscription needs a share name without '/', '+' or '#'")]
    InvalidShareName,
    /// `$share/{ShareName}` must be followed by `/` and a topic filter.
    #[error("[MQTT-4.8.2-2] shared subscription has no topic filter after the share name")]
    MissingSharedFilter,
}

/// Levels in `s`: one more than its separators.
fn count_levels(s: &str) -> usize {
    s.bytes().filter(|&b| b == b'/').count() + 1
}

fn check_common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > usize::from(u16::MAX) {
        return Err(TopicError::TooLong);
    }
    if s.contains('\0') {
        return Err(TopicError::NullCharacter);
    }
    Ok(())
}

/// True if some byte of `bytes` is below 0x2C, so possibly NUL (0x00), `#`
/// (0x23) or `+` (0x2B). False guarantees none of the three is present;
/// true only says an exact search is needed (common topic bytes such as
/// letters, digits, `/`, `-`, `_` and `.` are all 0x2C or above).
///
// Design: the classic SWAR "has a byte less than n" test, eight bytes per
// step: `(w - 0x01..01 * n) & !w & 0x80..80` is non-zero exactly when some
// byte of `w` is below `n` (bytes >= 0x80 never borrow and are never
// flagged). The high bits are masked once, after the words' terms are
// OR-ed (an OR of masked terms is the mask of the OR). A remainder of
// fewer than eight bytes is covered by re-reading the last eight. This
// runs for every PUBLISH received (doc/benchmarks.md, "Codec").
#[inline(always)]
#[allow(clippy::inline_always)] // PUBLISH decode hot path; measured with callgrind
fn has_byte_below_0x2c(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    #[inline(always)]
    fn term(w: &[u8; 8]) -> u64 {
        let w = u64::from_le_bytes(*w);
        w.wrapping_sub(ONES * 0x2C) & !w
    }
    // A name that fits inline (nearly every PUBLISH topic): five windows
    // of eight bytes, the last ones moved back to end at the name's end
    // (overlapping what is already read), without a loop.
    if let (8..=TopicName::INLINE_CAPACITY, Some(last)) = (bytes.len(), bytes.last_chunk::<8>()) {
        let at = |i: usize| {
            let start = i.min(bytes.len() - 8);
            bytes
                .get(start..)
                .and_then(<[u8]>::first_chunk)
                .unwrap_or(last)
        };
        let acc = term(at(0)) | term(at(8)) | term(at(16)) | term(at(24)) | term(last);
        return acc & HIGHS != 0;
    }
    let (words, tail) = bytes.as_chunks::<8>();
    let mut acc = 0;
    for w in words {
        acc |= term(w);
    }
    if !tail.is_empty() {
        match bytes.last_chunk::<8>() {
            Some(last) => acc |= term(last),
            None => return tail.iter().any(|&b| b < 0x2C),
        }
    }
    acc & HIGHS != 0
}

/// A topic name: what a PUBLISH is sent to. Never contains wildcards.
///
/// The one exception to "at least one character" is an MQTT 5 PUBLISH that
/// names its topic only through a Topic Alias; the codec builds that value
/// with [`TopicName::empty_for_alias`] and the session layer replaces it.
///
/// A name of at most [`TopicName::INLINE_CAPACITY`] bytes is stored inline,
/// in the value itself; a longer one shares its bytes with the [`ByteStr`]
/// (and so with the packet buffer) it was made from. Cloning a short name
/// copies it (no reference count); cloning a long one increments a
/// reference count. Equality, order and hashing are the string's, whichever
/// the storage.
///
// Design: a decoded PUBLISH used to hold two reference-counted handles on
// the receive buffer, the topic and the payload, and their atomic
// increments and decrements were most of the decode's time
// (doc/benchmarks.md, "Codec"). Copying a short topic out of the buffer
// leaves the payload the only handle. `arrayvec::ArrayString` keeps the
// UTF-8 invariant without `unsafe` here, so `as_str` stays free.
#[derive(Clone)]
pub struct TopicName(Repr);

/// The storage of a [`TopicName`] (or of a [`RawTopic`] not yet checked).
#[derive(Clone)]
enum Repr {
    /// At most [`TopicName::INLINE_CAPACITY`] bytes, copied into the value.
    Inline(ArrayString<{ TopicName::INLINE_CAPACITY }>),
    /// Longer names: shared with the buffer they were decoded from.
    Shared(ByteStr),
}

impl Repr {
    #[inline(always)]
    #[allow(clippy::inline_always)] // called for every topic routed; a branch and a load
    fn as_str(&self) -> &str {
        match self {
            Self::Inline(s) => s.as_str(),
            Self::Shared(s) => s.as_str(),
        }
    }
}

/// Checks `text` as a topic name: [MQTT-4.7.3-1] not empty,
/// [MQTT-4.7.3-3] at most 65535 bytes, [MQTT-4.7.3-2] no U+0000 and
/// [MQTT-3.3.2-2] no wildcards.
#[inline(always)]
#[allow(clippy::inline_always)] // PUBLISH decode hot path; measured with callgrind
fn check_name(text: &str) -> Result<(), TopicError> {
    if text.is_empty() {
        return Err(TopicError::Empty);
    }
    if text.len() > usize::from(u16::MAX) {
        return Err(TopicError::TooLong);
    }
    // This runs for every PUBLISH received. '+', '#' and NUL are ASCII,
    // so a byte search is exact in UTF-8; a cheap word-at-a-time filter
    // clears most topics without the exact search.
    if has_byte_below_0x2c(text.as_bytes())
        && memchr::memchr3(b'+', b'#', 0, text.as_bytes()).is_some()
    {
        return Err(if text.contains('\0') {
            TopicError::NullCharacter
        } else {
            TopicError::WildcardInName
        });
    }
    Ok(())
}

/// The topic of a decoded PUBLISH: valid UTF-8, and the outcome of its
/// check as a topic name, not yet acted on (the codec reports the fields'
/// errors in their wire order, and an MQTT 5 topic may be empty when a
/// Topic Alias stands for it).
pub(crate) struct RawTopic {
    repr: Repr,
    check: Result<(), TopicError>,
}

impl RawTopic {
    /// The UTF-8 string `bytes` [MQTT-1.5.3-1], copied: the decoder's
    /// topic of at most [`TopicName::INLINE_CAPACITY`] bytes (a longer one
    /// is copied into an allocation).
    ///
    // Design: the name is checked in the frame, not in the copy: reading
    // the copy back right after `memcpy` wrote it stalls on store
    // forwarding (measured: ~8 ns of a ~50 ns decode). For the same reason
    // the copy is made in place, not in a temporary moved at once.
    #[inline(always)]
    #[allow(clippy::inline_always)] // PUBLISH decode hot path; measured with callgrind
    pub(crate) fn copy(bytes: &[u8]) -> Result<Self, std::str::Utf8Error> {
        let text = std::str::from_utf8(bytes)?;
        let mut topic = Self {
            repr: Repr::Inline(ArrayString::new()),
            check: Ok(()),
        };
        if let Repr::Inline(inline) = &mut topic.repr
            && inline.try_push_str(text).is_err()
        {
            topic.repr = Repr::Shared(ByteStr::from(text));
        }
        topic.check = check_name(text);
        Ok(topic)
    }

    /// The UTF-8 string `frame[range]` [MQTT-1.5.3-1], a new handle on
    /// `frame`: the decoder's topic of more than
    /// [`TopicName::INLINE_CAPACITY`] bytes. The range must lie within
    /// `frame`.
    pub(crate) fn share(
        frame: &Bytes,
        range: std::ops::Range<usize>,
    ) -> Result<Self, std::str::Utf8Error> {
        let shared = ByteStr::from_utf8(frame.slice(range))?;
        Ok(Self {
            check: check_name(&shared),
            repr: Repr::Shared(shared),
        })
    }

    /// True for the zero-length topic.
    pub(crate) fn is_empty(&self) -> bool {
        self.repr.as_str().is_empty()
    }

    /// The topic as a topic name, or why it is not one (see
    /// [`TopicName::new`]).
    #[inline(always)]
    #[allow(clippy::inline_always)] // PUBLISH decode hot path; measured with callgrind
    pub(crate) fn into_name(self) -> Result<TopicName, TopicError> {
        self.check?;
        Ok(TopicName(self.repr))
    }
}

impl TopicName {
    /// Names of at most this many bytes are stored inline (see
    /// [`TopicName`]).
    ///
    /// Chosen so that a `TopicName` stays 48 bytes (the inline string is
    /// 44 bytes with its length, plus the tag) while holding typical
    /// topics: device and sensor paths such as the benchmark's 38-byte
    /// `sensors/building-7/floor-3/temperature`. Each 8 bytes more would
    /// make every `TopicName`, `Publish` and `Packet` 8 bytes larger.
    pub const INLINE_CAPACITY: usize = 40;

    /// Validates `s` as a topic name. A name that fits inline is copied
    /// (a `&str` is not allocated for); a longer one keeps `s`'s bytes.
    pub fn new(s: impl Into<ByteStr> + AsRef<str>) -> Result<Self, TopicError> {
        let text = s.as_ref();
        check_name(text)?;
        if let Ok(inline) = ArrayString::from(text) {
            return Ok(Self(Repr::Inline(inline)));
        }
        Ok(Self(Repr::Shared(s.into())))
    }

    /// The zero-length topic name of an MQTT 5 PUBLISH that carries a Topic
    /// Alias instead (MQTT 5.0 §3.3.2.3.4).
    pub const fn empty_for_alias() -> Self {
        Self(Repr::Inline(ArrayString::new_const()))
    }

    /// The topic as a string slice.
    #[inline]
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The topic's UTF-8 bytes (what the codec writes).
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        self.as_str().as_bytes()
    }

    /// True when the name is stored inline (at most
    /// [`TopicName::INLINE_CAPACITY`] bytes); false when it shares a
    /// buffer, such as the packet it was decoded from.
    pub fn is_inline(&self) -> bool {
        matches!(self.0, Repr::Inline(_))
    }

    /// The topic as a [`ByteStr`]: a new handle on the shared bytes of a
    /// long name, a new allocation for an inline one.
    pub fn to_byte_str(&self) -> ByteStr {
        match &self.0 {
            Repr::Inline(s) => ByteStr::from(s.as_str()),
            Repr::Shared(s) => s.clone(),
        }
    }

    /// True for the zero-length name that stands for a Topic Alias.
    pub fn is_empty(&self) -> bool {
        self.as_str().is_empty()
    }

    /// True if the topic starts with `$` (such as `$SYS/...`): wildcards at
    /// the first level do not match it [MQTT-4.7.2-1].
    pub fn is_dollar(&self) -> bool {
        self.as_str().starts_with('$')
    }

    /// The topic's levels, split at `/` (empty levels included).
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.as_str().split('/')
    }

    /// The number of levels, empty ones included: `a//b` has 3, `/` has 2.
    /// Equal to `self.levels().count()`, without splitting. A server checks
    /// it against its configured maximum number of topic levels.
    pub fn level_count(&self) -> usize {
        count_levels(self.as_str())
    }
}

impl PartialEq for TopicName {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for TopicName {}

impl PartialOrd for TopicName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TopicName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::hash::Hash for TopicName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl TryFrom<&str> for TopicName {
    type Error = TopicError;
    fn try_from(s: &str) -> Result<Self, TopicError> {
        Self::new(s)
    }
}

impl TryFrom<String> for TopicName {
    type Error = TopicError;
    fn try_from(s: String) -> Result<Self, TopicError> {
        Self::new(s)
    }
}

impl fmt::Debug for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A topic filter: what SUBSCRIBE and UNSUBSCRIBE carry. May contain `+`
/// and `#`, and may be a shared subscription `$share/{group}/{filter}`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicFilter {
    full: ByteStr,
    /// Byte offset of the filter proper: 0, or past `$share/{group}/`.
    filter_start: u16,
}

const SHARE_PREFIX: &str = "$share/";

fn check_filter_levels(filter: &str) -> Result<(), TopicError> {
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(TopicError::MisplacedMultiLevelWildcard);
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::MisplacedSingleLevelWildcard);
        }
    }
    Ok(())
}

impl TopicFilter {
    /// Validates `s` as a topic filter (plain or shared).
    pub fn new(s: impl Into<ByteStr>) -> Result<Self, TopicError> {
        let full = s.into();
        check_common(&full)?;
        let filter_start = if let Some(rest) = full.strip_prefix(SHARE_PREFIX) {
            let Some((group, filter)) = rest.split_once('/') else {
                return Err(if rest.is_empty() || rest.contains(['+', '#']) {
                    TopicError::InvalidShareName
                } else {
                    TopicError::MissingSharedFilter
                });
            };
            if group.is_empty() || group.contains(['+', '#']) {
                return Err(TopicError::InvalidShareName);
            }
            if filter.is_empty() {
                return Err(TopicError::MissingSharedFilter);
            }
            check_filter_levels(filter)?;
            // Fits: the whole string is at most 65535 bytes (checked above).
            (SHARE_PREFIX.len() + group.len() + 1) as u16
        } else {
            check_filter_levels(&full)?;
            0
        };
        Ok(Self { full, filter_start })
    }

    /// The filter exactly as the client sent it (with any `$share/` prefix).
    pub fn as_str(&self) -> &str {
        self.full.as_str()
    }

    /// The whole filter as a shared [`ByteStr`].
    pub fn as_byte_str(&self) -> &ByteStr {
        &self.full
    }

    /// The filter that topics are matched against: for a shared
    /// subscription, the part after `$share/{group}/`.
    pub fn filter(&self) -> &str {
        &self.full[usize::from(self.filter_start)..]
    }

    /// The share group of a shared subscription, `None` otherwise.
    pub fn share_group(&self) -> Option<&str> {
        (self.filter_start > 0)
            .then(|| &self.full[SHARE_PREFIX.len()..usize::from(self.filter_start) - 1])
    }

    /// True for a shared subscription (`$share/{group}/{filter}`).
    pub fn is_shared(&self) -> bool {
        self.filter_start > 0
    }

    /// True if the matching part contains `+` or `#`.
    pub fn has_wildcards(&self) -> bool {
        self.filter().contains(['+', '#'])
    }

    /// The levels of the matching part, split at `/`.
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.filter().split('/')
    }

    /// The number of levels of the matching part, wildcards and empty levels
    /// included (`$share/g/a/+/#` has 3). Equal to `self.levels().count()`,
    /// without splitting. A server checks it against its configured maximum
    /// number of topic levels.
    pub fn level_count(&self) -> usize {
        count_levels(self.filter())
    }
}

impl TryFrom<&str> for TopicFilter {
    type Error = TopicError;
    fn try_from(s: &str) -> Result<Self, TopicError> {
        Self::new(s)
    }
}

impl TryFrom<String> for TopicFilter {
    type Error = TopicError;
    fn try_from(s: String) -> Result<Self, TopicError> {
        Self::new(s)
    }
}

impl fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_filter_flags_exactly_the_bytes_below_0x2c() {
        // Every byte value at every position of strings up to 48 bytes
        // (short ones, the unrolled path up to the inline capacity, and
        // the loop beyond it), on ASCII and on high-bit fillers (which
        // must not cause false flags).
        for filler in [b'a', 0x2C, 0x7F, 0x80, 0xFF] {
            for len in 0..=48 {
                let mut buf = vec![filler; len];
                assert!(!has_byte_below_0x2c(&buf), "filler {filler:#x}, len {len}");
                for pos in 0..len {
                    for b in 0..=u8::MAX {
                        buf[pos] = b;
                        assert_eq!(
                            has_byte_below_0x2c(&buf),
                            b < 0x2C,
                            "byte {b:#x} at {pos} of {len}, filler {filler:#x}"
                        );
                    }
                    buf[pos] = filler;
                }
            }
        }
    }

    #[test]
    fn topic_names_reject_wildcards_and_nul_at_every_position() {
        // [MQTT-3.3.2-2] no wildcards in a topic name; [MQTT-4.7.3-2] no U+0000.
        for len in 1..=20 {
            for pos in 0..len {
                let mut name = vec![b'x'; len];
                for (c, err) in [
                    (b'+', TopicError::WildcardInName),
                    (b'#', TopicError::WildcardInName),
                    (0, TopicError::NullCharacter),
                ] {
                    name[pos] = c;
                    let text = String::from_utf8(name.clone()).unwrap();
                    assert_eq!(TopicName::new(text), Err(err), "{c:#x} at {pos} of {len}");
                }
                // Bytes that pass the word filter's threshold test exactly.
                name[pos] = b' ';
                let text = String::from_utf8(name.clone()).unwrap();
                assert!(TopicName::new(text).is_ok(), "space at {pos} of {len}");
            }
        }
    }

    #[test]
    fn topic_names_reject_wildcards_and_empty_strings() {
        assert_eq!(TopicName::new("a/+"), Err(TopicError::WildcardInName));
        assert_eq!(TopicName::new("#"), Err(TopicError::WildcardInName));
        assert_eq!(TopicName::new(""), Err(TopicError::Empty));
        assert_eq!(TopicName::new("a\0b"), Err(TopicError::NullCharacter));
        assert!(
            TopicName::new("/").is_ok(),
            "[MQTT-4.7.1] a lone separator is a valid name"
        );
        assert!(TopicName::new("$SYS/uptime").unwrap().is_dollar());
    }

    #[test]
    fn short_names_are_stored_inline_and_long_ones_share_their_bytes() {
        let cap = TopicName::INLINE_CAPACITY;
        let buf = Bytes::from("x".repeat(cap + 1));
        let short = TopicName::new(ByteStr::from_utf8(buf.slice(..cap)).unwrap()).unwrap();
        assert!(short.is_inline());
        assert!(!buf.as_ptr_range().contains(&short.as_str().as_ptr()));
        let long = TopicName::new(ByteStr::from_utf8(buf.clone()).unwrap()).unwrap();
        assert!(!long.is_inline());
        assert_eq!(long.as_str().as_ptr(), buf.as_ptr());
        assert_eq!(long.to_byte_str().as_bytes().as_ptr(), buf.as_ptr());
        assert_eq!(short.to_byte_str(), short.as_str());
        assert_eq!(short.as_bytes(), &buf[..cap]);
        assert!(TopicName::empty_for_alias().is_empty());
    }

    #[test]
    fn equality_order_and_hash_are_the_strings_whatever_the_storage() {
        let long = "a/".repeat(TopicName::INLINE_CAPACITY);
        let texts = ["b", "a/b", long.as_str(), "$SYS/x", "a", "a/"];
        let mut names: Vec<TopicName> = texts.iter().map(|t| TopicName::new(*t).unwrap()).collect();
        names.sort();
        let mut sorted = texts.to_vec();
        sorted.sort_unstable();
        assert_eq!(
            names.iter().map(TopicName::as_str).collect::<Vec<_>>(),
            sorted
        );
        let set: std::collections::HashSet<TopicName> = names.iter().cloned().collect();
        for t in texts {
            assert!(
                set.contains(&TopicName::new(ByteStr::from(t)).unwrap()),
                "{t}"
            );
        }
        assert!(!set.contains(&TopicName::new("c").unwrap()));
    }

    #[test]
    fn filters_follow_the_wildcard_placement_rules() {
        for ok in [
            "#",
            "+",
            "a/#",
            "+/+",
            "/+",
            "a//b",
            "+/tennis/#",
            "sport/+/player1",
        ] {
            assert!(TopicFilter::new(ok).is_ok(), "{ok} should be valid");
        }
        // MQTT 3.1.1 §4.7.1.2 and §4.7.1.3 give these as invalid examples.
        assert_eq!(
            TopicFilter::new("sport/tennis#"),
            Err(TopicError::MisplacedMultiLevelWildcard)
        );
        assert_eq!(
            TopicFilter::new("sport/tennis/#/ranking"),
            Err(TopicError::MisplacedMultiLevelWildcard)
        );
        assert_eq!(
            TopicFilter::new("sport+"),
            Err(TopicError::MisplacedSingleLevelWildcard)
        );
        assert_eq!(TopicFilter::new(""), Err(TopicError::Empty));
    }

    #[test]
    fn shared_subscriptions_expose_group_and_filter() {
        let f = TopicFilter::new("$share/g1/a/+/c").unwrap();
        assert!(f.is_shared());
        assert_eq!(f.share_group(), Some("g1"));
        assert_eq!(f.filter(), "a/+/c");
        assert_eq!(f.as_str(), "$share/g1/a/+/c");
        assert!(f.has_wildcards());

        let plain = TopicFilter::new("$sharex/a").unwrap();
        assert!(!plain.is_shared());
        assert_eq!(plain.filter(), "$sharex/a");
    }

    #[test]
    fn level_counts_include_empty_levels_and_skip_the_share_prefix() {
        for (topic, levels) in [("a", 1), ("a/b", 2), ("a//b", 3), ("/", 2), ("/a/", 3)] {
            assert_eq!(
                TopicName::new(topic).unwrap().level_count(),
                levels,
                "{topic}"
            );
            assert_eq!(
                TopicFilter::new(topic).unwrap().level_count(),
                levels,
                "{topic}"
            );
        }
        assert_eq!(TopicFilter::new("#").unwrap().level_count(), 1);
        assert_eq!(TopicFilter::new("+/+/#").unwrap().level_count(), 3);
        assert_eq!(TopicFilter::new("$share/g/a/+/#").unwrap().level_count(), 3);
        let name = TopicName::new("x/y//z/").unwrap();
        assert_eq!(name.level_count(), name.levels().count());
    }

    #[test]
    fn malformed_shared_subscriptions_are_rejected() {
        assert_eq!(
            TopicFilter::new("$share/"),
            Err(TopicError::InvalidShareName)
        );
        assert_eq!(
            TopicFilter::new("$share//a"),
            Err(TopicError::InvalidShareName)
        );
        assert_eq!(
            TopicFilter::new("$share/g+/a"),
            Err(TopicError::InvalidShareName)
        );
        assert_eq!(
            TopicFilter::new("$share/g"),
            Err(TopicError::MissingSharedFilter)
        );
        assert_eq!(
            TopicFilter::new("$share/g/"),
            Err(TopicError::MissingSharedFilter)
        );
        assert_eq!(
            TopicFilter::new("$share/g/a/#/b"),
            Err(TopicError::MisplacedMultiLevelWildcard)
        );
    }
}
