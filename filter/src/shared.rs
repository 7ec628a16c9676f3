//! Read-modify-write of proxy-wasm shared data with compare-and-swap. Shared data is per
//! `vm_id` and shared by every Envoy worker, so this is how workers agree on one rate budget
//! per token and one failure count per client address. The store is a trait so the logic is
//! tested natively, including provoked CAS conflicts.

/// The subset of proxy-wasm shared data the gate needs.
pub trait SharedStore {
    /// The value and its CAS version (`None` when absent).
    fn get(&mut self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Writes `value` if the CAS version still matches.
    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Conflict>;
}

/// Another worker wrote the key since it was read (proxy-wasm `CAS_MISMATCH`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conflict;

/// Attempts before giving up on a hot key; each failure means another worker just wrote it.
pub const CAS_ATTEMPTS: usize = 8;

/// Applies `update` to the current value (or `None`) and stores the result with CAS,
/// retrying on conflicts; an unchanged value is not written back. Returns the update's result,
/// or `None` when every attempt conflicted (the caller then decides without shared state —
/// never by blocking).
pub fn update<T>(
    store: &mut dyn SharedStore,
    key: &str,
    mut update: impl FnMut(Option<&[u8]>) -> (Vec<u8>, T),
) -> Option<T> {
    for _ in 0..CAS_ATTEMPTS {
        let (current, cas) = store.get(key);
        let (next, result) = update(current.as_deref());
        // Nothing changed (a client already cooling down, say): the read was the decision,
        // and skipping the write saves a hostcall and a CAS round.
        if current.as_deref() == Some(next.as_slice()) || store.set(key, &next, cas).is_ok() {
            return Some(result);
        }
    }
    None
}

/// An in-memory store with proxy-wasm CAS semantics, for native tests.
#[cfg(test)]
#[derive(Default)]
pub struct MemStore {
    pub data: std::collections::HashMap<String, (Vec<u8>, u32)>,
    /// Makes the next N `set` calls fail as if another worker had written first.
    pub conflicts: usize,
}

#[cfg(test)]
impl SharedStore for MemStore {
    fn get(&mut self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.data.get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        }
    }

    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), Conflict> {
        if self.conflicts > 0 {
            self.conflicts -= 1;
            let e = self.data.entry(key.to_owned()).or_insert((Vec::new(), 0));
            e.1 += 1;
            return Err(Conflict);
        }
        let current = self.data.get(key).map(|(_, c)| *c);
        if cas.is_some() && cas != current {
            return Err(Conflict);
        }
        let next = current.unwrap_or(0) + 1;
        self.data.insert(key.to_owned(), (value.to_vec(), next));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incr(store: &mut MemStore) -> Option<u64> {
        update(store, "k", |cur| {
            let n = cur.map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap())) + 1;
            (n.to_le_bytes().to_vec(), n)
        })
    }

    #[test]
    fn retries_conflicts_then_gives_up() {
        let mut s = MemStore::default();
        assert_eq!(incr(&mut s), Some(1));
        s.conflicts = 3;
        assert_eq!(incr(&mut s), Some(2), "three conflicts are retried");
        s.conflicts = CAS_ATTEMPTS;
        assert_eq!(
            incr(&mut s),
            None,
            "a key that is always contended gives up"
        );
        assert_eq!(incr(&mut s), Some(3), "no write happened while giving up");
    }

    #[test]
    fn unchanged_values_are_not_written() {
        let mut s = MemStore::default();
        s.set("k", b"same", None).unwrap();
        let (_, before) = s.get("k");
        s.conflicts = CAS_ATTEMPTS;
        let r = update(&mut s, "k", |cur| {
            (cur.unwrap_or_default().to_vec(), "read")
        });
        assert_eq!(r, Some("read"), "no write, so no conflict to lose");
        assert_eq!(s.conflicts, CAS_ATTEMPTS, "set was never called");
        assert_eq!(s.get("k").1, before);
        s.conflicts = 0;
        let r = update(&mut s, "absent", |cur| {
            (cur.unwrap_or_default().to_vec(), ())
        });
        assert_eq!(r, Some(()));
        assert!(
            s.get("absent").0.is_some(),
            "an absent key is created even when empty"
        );
    }

    #[test]
    fn stale_cas_is_refused() {
        let mut s = MemStore::default();
        s.set("k", b"a", None).unwrap();
        let (_, cas) = s.get("k");
        s.set("k", b"b", cas).unwrap();
        assert!(s.set("k", b"c", cas).is_err());
    }
}
