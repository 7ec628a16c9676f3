//! Tokens recently seen, by their presented bytes, so a client that keeps sending the same
//! token does not pay SHA-256 on every request (a fifth to a third of an accepted request's
//! work in wasm). Two tables per configuration, so neither can crowd out the other:
//! - tokens whose digest matched a configured one ([`ACCEPTED_SLOTS`]), with their index;
//! - tokens refused as unknown ([`REFUSED_SLOTS`], only up to [`MAX_REFUSED_LEN`] bytes): a
//!   client repeating a stale or revoked token (the usual refused traffic) is answered without
//!   hashing. A flood of distinct guesses only churns this table: each guess still costs its
//!   SHA-256, and the table of accepted tokens is untouched.
//!
//! Each is direct-mapped (a token that lands on a taken slot replaces it): fixed memory, and
//! no hash map code of its own in the module. Slots are compared in constant time; `Debug` is
//! redacted. Both are part of a worker's state for one configuration (`worker.rs`): a reload
//! starts new, empty ones, so a removed token is never found after the reload that removed it,
//! nor an added one refused. `throttle::Cooling` keeps client addresses cooling down in a third
//! table of the same kind.

use std::hash::BuildHasher;

use crate::credentials::ct_eq;

/// Slots of the accepted-token table per VM (a power of two).
pub const ACCEPTED_SLOTS: usize = 4096;
/// Slots of the refused-token table per VM (a power of two).
pub const REFUSED_SLOTS: usize = 1024;
/// Longer unknown tokens are not remembered (real tokens are 40–90 bytes), which bounds the
/// refused table at 256 KiB per VM.
pub const MAX_REFUSED_LEN: usize = 256;

/// A remembered token's bytes and what is known about it (its index, or nothing).
type Slot<V> = Option<(Box<[u8]>, V)>;

/// One table.
pub struct Recent<V> {
    /// Empty until the first token is remembered.
    slots: Vec<Slot<V>>,
    /// A power of two.
    size: usize,
    hasher: hashbrown::DefaultHashBuilder,
}

impl<V> std::fmt::Debug for Recent<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recent(<redacted>)")
    }
}

impl<V: Copy> Recent<V> {
    /// An empty table of `size` slots (rounded up to a power of two).
    pub fn new(size: usize) -> Recent<V> {
        Recent {
            slots: Vec::new(),
            size: size.next_power_of_two(),
            hasher: hashbrown::DefaultHashBuilder::default(),
        }
    }

    fn slot(&self, token: &[u8]) -> usize {
        // Truncation is the point: the low bits pick the slot.
        (self.hasher.hash_one(token) as usize) & (self.size - 1)
    }

    /// What is remembered for these bytes.
    pub fn get(&self, token: &[u8]) -> Option<V> {
        match self.slots.get(self.slot(token))? {
            Some((known, value)) if ct_eq(known, token) => Some(*value),
            _ => None,
        }
    }

    /// Remembers `value` for `token` (the caller has just established it by digest),
    /// replacing whatever shared its slot.
    pub fn insert(&mut self, token: &[u8], value: V) {
        let at = self.slot(token);
        if self.slots.is_empty() {
            self.slots.resize_with(self.size, || None);
        }
        if let Some(slot) = self.slots.get_mut(at) {
            *slot = Some((token.into(), value));
        }
    }

    /// How many tokens are remembered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|x| x.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLOTS: usize = ACCEPTED_SLOTS;

    #[test]
    fn remembers_only_what_it_is_given_and_stays_bounded() {
        let mut r = Recent::new(SLOTS);
        assert_eq!(r.get(b"tok-a"), None);
        r.insert(b"tok-a", 3);
        assert_eq!(r.get(b"tok-a"), Some(3));
        assert_eq!(r.get(b"tok-b"), None, "a different token is not found");
        assert_eq!(r.get(b"tok-"), None, "a prefix is not found");
        assert_eq!(r.get(b"tok-aa"), None, "an extension is not found");
        for i in 0..SLOTS * 2 {
            r.insert(format!("t{i}").as_bytes(), i);
        }
        assert!(r.len() <= SLOTS, "never more than SLOTS entries");
        // Whatever is found is right: each remembered token maps to its own index.
        let mut found = 0;
        for i in 0..SLOTS * 2 {
            if let Some(got) = r.get(format!("t{i}").as_bytes()) {
                assert_eq!(got, i);
                found += 1;
            }
        }
        assert!(found > SLOTS / 2, "most slots are in use: {found}");
    }

    #[test]
    fn debug_never_shows_a_token() {
        let mut r = Recent::new(SLOTS);
        r.insert(b"secret-token-value", 0);
        let shown = format!("{r:?}");
        assert!(!shown.contains("secret-token-value"), "{shown}");
        assert!(shown.contains("redacted"));
    }
}
