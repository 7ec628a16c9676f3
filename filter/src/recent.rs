//! Tokens recently found, by their presented bytes, so a client that keeps sending the same
//! token does not pay SHA-256 on every request (a fifth to a third of an accepted request's
//! work in wasm). Only a token whose digest matched a configured one is ever stored, so
//! unknown tokens cannot fill the table, and they still take the digest path: rejecting costs
//! what it cost before. Slots are compared in constant time; `Debug` is redacted.
//!
//! A direct-mapped table of [`SLOTS`] entries (a token that lands on a taken slot replaces
//! it; both then alternate between the table and the digest path): fixed memory, and no hash
//! map code of its own in the module. It belongs to one parsed configuration: a reload starts
//! a new, empty one, so a removed token is never found here after the reload that removed it.

use std::cell::RefCell;
use std::hash::BuildHasher;

use crate::config::ct_eq;

/// Slots per VM (a power of two). Each holds one token's bytes and its index.
pub const SLOTS: usize = 4096;

/// A remembered token's bytes and its index in the configuration.
type Slot = Option<(Box<[u8]>, usize)>;

/// The table. Interior mutability: the configuration is shared read-only by every request of
/// a VM, and a VM runs one callback at a time.
#[derive(Clone, Default)]
pub struct Recent {
    /// Empty until the first token is remembered.
    slots: RefCell<Vec<Slot>>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl std::fmt::Debug for Recent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recent(<redacted>)")
    }
}

impl Recent {
    fn slot(&self, token: &[u8]) -> usize {
        // Truncation is the point: the low bits pick the slot.
        (self.hasher.hash_one(token) as usize) & (SLOTS - 1)
    }

    /// The token index remembered for these bytes.
    pub fn get(&self, token: &[u8]) -> Option<usize> {
        let slots = self.slots.try_borrow().ok()?;
        match slots.get(self.slot(token))? {
            Some((known, index)) if ct_eq(known, token) => Some(*index),
            _ => None,
        }
    }

    /// Remembers that `token` is the configured token at `index` (the caller has just matched
    /// its digest), replacing whatever shared its slot.
    pub fn insert(&self, token: &[u8], index: usize) {
        let at = self.slot(token);
        if let Ok(mut slots) = self.slots.try_borrow_mut() {
            if slots.is_empty() {
                slots.resize(SLOTS, None);
            }
            if let Some(slot) = slots.get_mut(at) {
                *slot = Some((token.into(), index));
            }
        }
    }

    /// How many tokens are remembered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slots
            .try_borrow()
            .map_or(0, |s| s.iter().filter(|x| x.is_some()).count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_only_what_it_is_given_and_stays_bounded() {
        let r = Recent::default();
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
        let r = Recent::default();
        r.insert(b"secret-token-value", 0);
        let shown = format!("{r:?}");
        assert!(!shown.contains("secret-token-value"), "{shown}");
        assert!(shown.contains("redacted"));
    }
}
