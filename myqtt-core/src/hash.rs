//! The hashers of the crate's hash maps.
//!
//! - [`IdHasher`]: integers this side allocates (packet ids, message ids,
//!   tickets), hashed with one multiplication. Its lack of protection
//!   against chosen colliding keys does not matter there: a peer never
//!   chooses the keys inserted (at most it looks up ids it was given, and a
//!   packet id table holds at most 65,535 of them).
//! - [`Keyed`]: keys holding peer-chosen bytes (client ids in store keys),
//!   on hot paths where SipHash costs more than the rest of a lookup:
//!   foldhash, seeded at random per process, so a peer cannot compute
//!   colliding keys offline.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A multiply-rotate hasher for integer keys this side allocates (see the
/// module docs).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0_u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }

    fn write_u16(&mut self, n: u16) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        // An odd constant: a bijection on the low bits (the bucket index),
        // with every bit of the key in the high bits (hashbrown's tag).
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Builds [`IdHasher`]s.
pub(crate) type IdHash = BuildHasherDefault<IdHasher>;

/// A hash map keyed by integers this side allocates.
pub(crate) type IdMap<K, V> = HashMap<K, V, IdHash>;

/// A hash set of integers this side allocates.
pub(crate) type IdSet<K> = std::collections::HashSet<K, IdHash>;

/// Builds hashers for keys with peer-chosen bytes (see the module docs).
pub(crate) type Keyed = foldhash::fast::RandomState;
