//! Failed-auth throttling: a client address that keeps failing authentication gets 429 for a
//! cooldown instead of another 401, so credential guessing and misconfigured clients cost
//! little. Requests with a valid credential from the same address are never throttled (clients
//! behind one NAT must not lose data because a neighbour has a stale token).
//!
//! State is a fixed-size table in shared data: the address hashes to one of `table_size`
//! slots. Envoy never deletes shared-data keys, so the number of keys — and the memory — is
//! bounded by the table size whatever the number of addresses. A slot held by a different
//! address is taken over once that address's window and cooldown have passed; until then two
//! colliding addresses share one counter (which can only throttle invalid requests).

use std::net::IpAddr;

use crate::recent::Recent;

/// Configured policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub max_failures: u32,
    pub window_secs: i64,
    pub cooldown_secs: i64,
    pub table_size: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_failures: 30,
            window_secs: 60,
            cooldown_secs: 300,
            table_size: 4096,
        }
    }
}

/// One slot (40 bytes in shared data).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Slot {
    pub addr: [u8; 16],
    pub window_start: i64,
    pub failures: u32,
    pub blocked_until: i64,
}

fn addr_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Which slot an address uses (FNV-1a; stable across workers and restarts).
pub fn slot_index(ip: IpAddr, table_size: u32) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in addr_bytes(ip) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % table_size.max(1)
}

impl Slot {
    pub fn decode(b: &[u8]) -> Option<Slot> {
        let addr: [u8; 16] = b.get(0..16)?.try_into().ok()?;
        let i64_at = |i: usize| {
            b.get(i..i + 8)
                .and_then(|s| s.try_into().ok())
                .map(i64::from_le_bytes)
        };
        Some(Slot {
            addr,
            window_start: i64_at(16)?,
            failures: u32::from_le_bytes(b.get(24..28)?.try_into().ok()?),
            blocked_until: i64_at(32)?,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(40);
        v.extend_from_slice(&self.addr);
        v.extend_from_slice(&self.window_start.to_le_bytes());
        v.extend_from_slice(&self.failures.to_le_bytes());
        v.extend_from_slice(&[0; 4]);
        v.extend_from_slice(&self.blocked_until.to_le_bytes());
        v
    }

    /// Seconds until the cooldown ends, if this address is in one.
    pub fn blocked(&self, now: i64) -> Option<u64> {
        (now < self.blocked_until)
            .then(|| u64::try_from(self.blocked_until - now).unwrap_or(1).max(1))
    }

    /// Records one failed authentication at `now`. Returns the updated slot and, if the
    /// address is (still) in a cooldown, the seconds left — the caller then answers 429.
    pub fn fail(current: Option<Slot>, ip: IpAddr, now: i64, p: &Policy) -> (Slot, Option<u64>) {
        let addr = addr_bytes(ip);
        let mut s = current.unwrap_or_default();
        let idle = now >= s.blocked_until && now - s.window_start >= p.window_secs;
        if s.addr != addr && idle {
            s = Slot {
                addr,
                ..Slot::default()
            };
        }
        if let Some(left) = s.blocked(now) {
            return (s, Some(left));
        }
        if now - s.window_start >= p.window_secs {
            s.window_start = now;
            s.failures = 0;
        }
        s.failures = s.failures.saturating_add(1);
        if s.failures > p.max_failures {
            s.blocked_until = now + p.cooldown_secs;
            s.failures = 0;
            s.window_start = now;
            return (s, Some(u64::try_from(p.cooldown_secs).unwrap_or(1).max(1)));
        }
        (s, None)
    }
}

/// Addresses this worker saw in a cooldown, and until when (Unix seconds), so their further
/// failures are answered without reading shared data: a cooldown, once started, only ends at
/// its time (a failure during it changes nothing in the slot). Kept in a [`Recent`] table by
/// address bytes (direct-mapped, fixed size); part of a worker's state for one configuration
/// (`worker.rs`), as the slots' policy is part of the configuration.
#[derive(Debug)]
pub struct Cooling(Recent<i64>);

/// Slots of [`Cooling`] per VM.
const COOLING_SLOTS: usize = 256;

impl Default for Cooling {
    fn default() -> Self {
        Cooling(Recent::new(COOLING_SLOTS))
    }
}

impl Cooling {
    /// Seconds left of `ip`'s cooldown at `now`, if this worker has seen it cooling down.
    pub fn blocked(&self, ip: IpAddr, now: i64) -> Option<u64> {
        let until = self.0.get(&addr_bytes(ip))?;
        (now < until).then(|| u64::try_from(until - now).unwrap_or(1).max(1))
    }

    /// Remembers that `ip` cools down until `until`.
    pub fn remember(&mut self, ip: IpAddr, until: i64) {
        self.0.insert(&addr_bytes(ip), until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const P: Policy = Policy {
        max_failures: 3,
        window_secs: 60,
        cooldown_secs: 300,
        table_size: 16,
    };

    fn run(slot: &mut Option<Slot>, addr: &str, now: i64) -> Option<u64> {
        let (s, blocked) = Slot::fail(*slot, ip(addr), now, &P);
        *slot = Some(s);
        blocked
    }

    #[test]
    fn blocks_after_max_failures_for_the_cooldown() {
        let mut s = None;
        for t in 0..3 {
            assert_eq!(
                run(&mut s, "203.0.113.1", t),
                None,
                "failure {t} is answered normally"
            );
        }
        assert_eq!(
            run(&mut s, "203.0.113.1", 3),
            Some(300),
            "the 4th failure starts the cooldown"
        );
        assert_eq!(run(&mut s, "203.0.113.1", 100), Some(203));
        assert_eq!(s.unwrap().blocked(302), Some(1));
        assert_eq!(s.unwrap().blocked(303), None);
        assert_eq!(
            run(&mut s, "203.0.113.1", 303),
            None,
            "after the cooldown it starts over"
        );
    }

    #[test]
    fn window_expiry_resets_the_count() {
        let mut s = None;
        for t in [0, 10, 20] {
            assert_eq!(run(&mut s, "203.0.113.1", t), None);
        }
        assert_eq!(
            run(&mut s, "203.0.113.1", 61),
            None,
            "the window started at 0 has ended"
        );
        assert_eq!(s.unwrap().failures, 1);
    }

    #[test]
    fn idle_slots_are_taken_over_busy_ones_shared() {
        let mut s = None;
        run(&mut s, "203.0.113.1", 0);
        run(&mut s, "203.0.113.2", 1);
        assert_eq!(
            s.unwrap().failures,
            2,
            "colliding addresses share an active slot"
        );
        run(&mut s, "203.0.113.2", 100);
        assert_eq!(s.unwrap().addr, addr_bytes(ip("203.0.113.2")));
        assert_eq!(s.unwrap().failures, 1);
    }

    #[test]
    fn encoding_and_slots() {
        let s = Slot {
            addr: addr_bytes(ip("::1")),
            window_start: 5,
            failures: 7,
            blocked_until: 9,
        };
        assert_eq!(Slot::decode(&s.encode()), Some(s));
        assert_eq!(Slot::decode(&[0; 10]), None);
        let idx: std::collections::HashSet<u32> = (0..=255u8)
            .map(|i| slot_index(IpAddr::from([10, 0, 0, i]), 64))
            .collect();
        assert!(idx.len() > 48, "addresses spread over the table");
        assert!(idx.iter().all(|&i| i < 64));
    }

    #[test]
    fn cooling_addresses_are_remembered_until_their_cooldown_ends() {
        let mut c = Cooling::default();
        assert_eq!(c.blocked(ip("203.0.113.1"), 0), None);
        c.remember(ip("203.0.113.1"), 300);
        assert_eq!(c.blocked(ip("203.0.113.1"), 0), Some(300));
        assert_eq!(c.blocked(ip("203.0.113.1"), 299), Some(1));
        assert_eq!(c.blocked(ip("203.0.113.1"), 300), None);
        assert_eq!(c.blocked(ip("203.0.113.2"), 0), None, "another address");
        assert_eq!(
            c.blocked(ip("::ffff:203.0.113.1"), 0),
            Some(300),
            "the same address mapped to IPv6"
        );
        // An address landing on a taken slot replaces it: more addresses than slots leave some
        // forgotten, and none is ever answered with another's cooldown.
        let addrs: Vec<IpAddr> = (0..1000u32)
            .map(|i| IpAddr::from((0xc633_6400 + i).to_be_bytes()))
            .collect();
        for (i, a) in addrs.iter().enumerate() {
            c.remember(*a, 1000 + i as i64);
        }
        let mut forgotten = 0;
        for (i, a) in addrs.iter().enumerate() {
            match c.blocked(*a, 0) {
                Some(left) => assert_eq!(left, 1000 + i as u64, "{a}"),
                None => forgotten += 1,
            }
        }
        assert!(forgotten >= 1000 - COOLING_SLOTS, "{forgotten} forgotten");
    }
}
