//! What one worker learns while it serves one configuration. Envoy runs a VM per worker thread,
//! and a VM runs one callback at a time, so this state needs no locks; it lives beside the
//! configuration (the adapter creates one with each configuration it loads and shares both
//! with that configuration's streams) and is passed to `gate::decide` explicitly, so the
//! configuration itself never changes once parsed. A reload starts a new, empty one: a
//! remembered token index, a lease or a kept reply never outlives the configuration it came
//! from.

use crate::config::{Config, Token, digest};
use crate::rate::Leases;
use crate::recent::{ACCEPTED_SLOTS, MAX_REFUSED_LEN, REFUSED_SLOTS, Recent};
use crate::reply::Canned;
use crate::throttle::Cooling;

/// A worker's state for one configuration.
#[derive(Debug)]
pub struct Worker {
    /// The replies this worker sends, kept once built (see `reply.rs`).
    pub canned: Canned,
    /// Tokens already found by digest, by their presented bytes, with their index, and tokens
    /// already refused as unknown (see `recent.rs`).
    accepted: Recent<usize>,
    refused: Recent<()>,
    /// This worker's leases of rate budgets (see `rate.rs`).
    pub leases: Leases,
    /// Client addresses this worker saw cooling down after failed authentications.
    pub cooling: Cooling,
}

impl Worker {
    /// Empty state for `cfg` (only the replies every configuration sends are built now).
    pub fn new(cfg: &Config) -> Worker {
        Worker {
            canned: Canned::new(&cfg.realm),
            accepted: Recent::new(ACCEPTED_SLOTS),
            refused: Recent::new(REFUSED_SLOTS),
            leases: Leases::default(),
            cooling: Cooling::default(),
        }
    }

    /// The token of `cfg` a client presented: remembered tokens (accepted or refused) without
    /// hashing, others by their SHA-256 digest (and then remembered).
    pub fn lookup<'c>(&mut self, cfg: &'c Config, presented: &[u8]) -> Option<(usize, &'c Token)> {
        if let Some(index) = self.accepted.get(presented) {
            return cfg.tokens.get(index).map(|t| (index, t));
        }
        if self.refused.get(presented).is_some() {
            return None;
        }
        match cfg.find(&digest(presented)) {
            Some(found) => {
                self.accepted.insert(presented, found.0);
                Some(found)
            }
            None => {
                if presented.len() <= MAX_REFUSED_LEN {
                    self.refused.insert(presented, ());
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lookup_remembers_what_it_found_and_what_it_refused() {
        let cfg = crate::config::parse(
            json!({"tokens":[{"id":"p","token":"plaintext-token-0001"}]})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        let mut w = Worker::new(&cfg);
        // The same answers twice (the second time from memory).
        for _ in 0..2 {
            assert_eq!(
                w.lookup(&cfg, b"plaintext-token-0001")
                    .map(|(i, t)| (i, t.id.as_str())),
                Some((0, "p"))
            );
            assert!(w.lookup(&cfg, b"plaintext-token-0002").is_none());
        }
        assert_eq!(
            w.accepted.len(),
            1,
            "only the token that was found is remembered as accepted"
        );
        assert_eq!(w.refused.len(), 1, "the unknown one as refused");
        let long = vec![b'x'; MAX_REFUSED_LEN + 1];
        assert!(w.lookup(&cfg, &long).is_none());
        assert!(w.lookup(&cfg, &long).is_none());
        assert_eq!(w.refused.len(), 1, "a token too long to remember is not");
    }

    #[test]
    fn a_new_configuration_starts_with_an_empty_worker() {
        let old = crate::config::parse(
            json!({"tokens":[{"id":"p","token":"plaintext-token-0001"}]})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        let mut w = Worker::new(&old);
        assert!(w.lookup(&old, b"plaintext-token-0001").is_some());
        assert!(w.lookup(&old, b"plaintext-token-0002").is_none());
        // The reload removes the first token and adds the second.
        let new = crate::config::parse(
            json!({"tokens":[{"id":"q","token":"plaintext-token-0002"}]})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        let mut w = Worker::new(&new);
        assert!(w.lookup(&new, b"plaintext-token-0001").is_none());
        assert_eq!(
            w.lookup(&new, b"plaintext-token-0002")
                .map(|(_, t)| t.id.as_str()),
            Some("q")
        );
    }
}
