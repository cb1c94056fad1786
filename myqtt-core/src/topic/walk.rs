//! Helpers shared by the trie walks: level splitting and a small LIFO work
//! stack whose first entries live on the call stack and whose rest spill to
//! the heap only when a walk goes unusually deep or wide.

/// Splits off the first level of `levels`: `"a/b/c"` gives `("a",
/// Some("b/c"))`, `"a"` gives `("a", None)` and `"a/"` gives `("a",
/// Some(""))`, since an empty level is a real level.
///
/// Runs for every level of every PUBLISH routed: a byte search (`/` is
/// ASCII, so its index is a character boundary) costs a fraction of a
/// `char` pattern search.
pub(super) fn split_level(levels: &str) -> (&str, Option<&str>) {
    let at = memchr::memchr(b'/', levels.as_bytes());
    match at.and_then(|i| Some((levels.get(..i)?, levels.get(i + 1..)?))) {
        Some((first, rest)) => (first, Some(rest)),
        None => (levels, None),
    }
}

/// A LIFO stack with `N` inline slots and a heap overflow.
///
// Design: matching runs once per PUBLISH, so it must not allocate in the
// common case, and it must not recurse either: filters and topic names may
// have tens of thousands of levels, and a recursive walk of such a chain
// would overflow the thread's stack on peer input. The inline array is
// prefilled with a harmless value (`fill`) so no `unsafe` is needed.
pub(super) struct Stack<T: Copy, const N: usize> {
    inline: [T; N],
    len: usize,
    spill: Vec<T>,
}

impl<T: Copy, const N: usize> Stack<T, N> {
    /// An empty stack whose inline slots hold `fill` until written.
    pub(super) fn new(fill: T) -> Self {
        Self {
            inline: [fill; N],
            len: 0,
            spill: Vec::new(),
        }
    }

    /// Pushes `value`: inline while there is room, on the heap after that.
    pub(super) fn push(&mut self, value: T) {
        // Once anything has spilled, `len == N`, so `get_mut` fails and the
        // order stays LIFO.
        if let Some(slot) = self.inline.get_mut(self.len) {
            *slot = value;
            self.len += 1;
        } else {
            self.spill.push(value);
        }
    }

    /// Pops the most recently pushed value.
    pub(super) fn pop(&mut self) -> Option<T> {
        if let Some(value) = self.spill.pop() {
            return Some(value);
        }
        self.len = self.len.checked_sub(1)?;
        self.inline.get(self.len).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::{Stack, split_level};

    #[test]
    fn splitting_keeps_empty_levels() {
        assert_eq!(split_level("a/b/c"), ("a", Some("b/c")));
        assert_eq!(split_level("a"), ("a", None));
        assert_eq!(split_level("a/"), ("a", Some("")));
        assert_eq!(split_level("/a"), ("", Some("a")));
        assert_eq!(split_level(""), ("", None));
    }

    #[test]
    fn values_come_back_last_in_first_out_across_the_spill_boundary() {
        let mut stack: Stack<u32, 4> = Stack::new(0);
        for i in 1..=10 {
            stack.push(i);
        }
        let popped: Vec<u32> = std::iter::from_fn(|| stack.pop()).collect();
        assert_eq!(popped, (1..=10).rev().collect::<Vec<_>>());
        stack.push(7);
        assert_eq!(stack.pop(), Some(7));
        assert_eq!(stack.pop(), None);
    }
}
