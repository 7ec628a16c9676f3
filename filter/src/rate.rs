//! Per-token token buckets: one for requests, one for body bytes. The state lives in
//! proxy-wasm shared data (see `shared.rs`) so every Envoy worker draws on the same budget.
//! Bytes are charged without buffering: the declared `content-length` when the request is
//! admitted, and body chunks beyond it (or all of them when none was declared) as they pass. A
//! token that overdraws its byte budget goes into debt and its next requests are throttled until
//! the debt is repaid.
//!
//! Each round with shared data costs a clock reading and two hostcalls, so a worker that
//! admits a request also takes a small [`Lease`] of the budget ahead (10 ms of the rate, at most
//! a tenth of the burst) and serves the token's next requests from it without hostcalls. A lease
//! is spent, never counted twice: its rest is handed back at the worker's next round, and it
//! serves requests for at most [`LEASE_TTL_NS`]. Leasing never admits more than the bucket
//! would (what is handed back refills the bucket only up to its size), except that a lease
//! held while the shared bucket refills to full can add itself to the burst once; a worker can
//! refuse a request while another still holds a lease (at most 10 ms of the rate each). Rates
//! below 100 requests per second lease nothing and behave exactly as one shared bucket.

/// A lease covers this many seconds of the token's rate...
const LEASE_RATE_S: f64 = 0.01;
/// ...and at most this share of its burst (or byte capacity).
const LEASE_BURST_SHARE: f64 = 0.1;
/// A lease serves requests for this long (by the recent clock), then its rest waits to be handed
/// back: while a worker holds one, the shared bucket refills as if it had been spent, so an old
/// lease would let that worker go beyond the burst by its size.
pub const LEASE_TTL_NS: i64 = 1_000_000_000;

/// Configured limits of one token.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub requests_per_second: Option<f64>,
    pub bytes_per_second: Option<f64>,
    /// Request bucket capacity: how many requests may arrive at once.
    pub burst: f64,
}

impl Rate {
    /// Byte bucket capacity: one second of `bytes_per_second`, or `burst` requests' worth of
    /// seconds when that is longer, so a burst of typical batches fits.
    fn byte_capacity(&self) -> f64 {
        let bps = self.bytes_per_second.unwrap_or(0.0);
        let secs = self
            .requests_per_second
            .map_or(1.0, |rps| (self.burst / rps).max(1.0));
        bps * secs
    }

    /// Requests and bytes a worker takes ahead with an admitted request (whole units; 0 when
    /// the rate is too low for leasing to pay off).
    fn lease_size(&self) -> (f64, f64) {
        let requests = self.requests_per_second.map_or(0.0, |rps| {
            (rps * LEASE_RATE_S)
                .min(self.burst * LEASE_BURST_SHARE)
                .floor()
        });
        let bytes = self.bytes_per_second.map_or(0.0, |bps| {
            (bps * LEASE_RATE_S)
                .min(self.byte_capacity() * LEASE_BURST_SHARE)
                .floor()
        });
        (requests, bytes)
    }
}

/// Budget one worker took from a token's shared bucket ahead of its requests.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Lease {
    pub requests: f64,
    pub bytes: f64,
    /// The recent clock reading when it was taken (0: never).
    pub taken_ns: i64,
}

impl Lease {
    /// Serves a request (when `request`) and `bytes` from the lease alone, if it is fresh and
    /// covers them: one request, and under a byte limit the request's declared length or the
    /// chunk's bytes. A request of undeclared length under a byte limit always goes to the shared
    /// bucket, where debt run up by any worker throttles it. False: go to the shared bucket.
    pub fn take(&mut self, rate: &Rate, request: bool, bytes: u64, recent_ns: i64) -> bool {
        let age = recent_ns.saturating_sub(self.taken_ns);
        if self.taken_ns == 0 || !(0..LEASE_TTL_NS).contains(&age) {
            return false;
        }
        let n = bytes as f64;
        let limits_requests = request && rate.requests_per_second.is_some();
        if limits_requests && self.requests < 1.0 {
            return false;
        }
        if rate.bytes_per_second.is_some() && (self.bytes < n || (request && bytes == 0)) {
            return false;
        }
        if limits_requests {
            self.requests -= 1.0;
        }
        if rate.bytes_per_second.is_some() {
            self.bytes -= n;
        }
        true
    }
}

/// A worker's leases by token index, part of its state for one configuration (`worker.rs`): a
/// reload starts with none (what the old ones held is dropped, at most one lease per token and
/// worker).
#[derive(Clone, Debug, Default)]
pub struct Leases(Vec<Lease>);

impl Leases {
    /// The lease of token `index` (an empty one if none was taken).
    pub fn get(&self, index: usize) -> Lease {
        self.0.get(index).copied().unwrap_or_default()
    }

    pub fn set(&mut self, index: usize, lease: Lease) {
        if self.0.len() <= index {
            self.0.resize(index + 1, Lease::default());
        }
        if let Some(slot) = self.0.get_mut(index) {
            *slot = lease;
        }
    }

    /// [`Lease::take`] on token `index`'s lease.
    pub fn take(&mut self, index: usize, rate: &Rate, request: bool, bytes: u64, now: i64) -> bool {
        self.0
            .get_mut(index)
            .is_some_and(|l| l.take(rate, request, bytes, now))
    }
}

/// Bucket state as stored in shared data (24 bytes, little-endian).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    pub requests: f64,
    /// May be negative: bytes owed after a large body.
    pub bytes: f64,
    pub updated_ns: i64,
}

pub const ENCODED_LEN: usize = 24;

impl Bucket {
    /// A bucket that starts full.
    pub fn full(rate: &Rate, now_ns: i64) -> Bucket {
        Bucket {
            requests: rate.burst,
            bytes: rate.byte_capacity(),
            updated_ns: now_ns,
        }
    }

    pub fn decode(b: &[u8]) -> Option<Bucket> {
        let f = |i: usize| b.get(i..i + 8).and_then(|s| s.try_into().ok());
        Some(Bucket {
            requests: f64::from_le_bytes(f(0)?),
            bytes: f64::from_le_bytes(f(8)?),
            updated_ns: i64::from_le_bytes(f(16)?),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(ENCODED_LEN);
        v.extend_from_slice(&self.requests.to_le_bytes());
        v.extend_from_slice(&self.bytes.to_le_bytes());
        v.extend_from_slice(&self.updated_ns.to_le_bytes());
        v
    }

    fn refill(&mut self, rate: &Rate, now_ns: i64) {
        // A clock that goes backwards refills nothing (never a negative refill).
        let elapsed = (now_ns.saturating_sub(self.updated_ns)).max(0) as f64 / 1e9;
        if let Some(rps) = rate.requests_per_second {
            self.requests = (self.requests + rps * elapsed).min(rate.burst);
        }
        if let Some(bps) = rate.bytes_per_second {
            self.bytes = (self.bytes + bps * elapsed).min(rate.byte_capacity());
        }
        self.updated_ns = self.updated_ns.max(now_ns);
    }

    /// One round of a worker with the shared bucket: refill, take back the worker's unused
    /// lease (`returned`), admit a request (when `request`) or say after how many whole seconds
    /// to retry (at least 1; nothing is charged then), charge `bytes` (possibly into debt) and
    /// hand out the worker's next lease.
    pub fn draw(
        &mut self,
        rate: &Rate,
        now_ns: i64,
        returned: Lease,
        request: bool,
        bytes: u64,
    ) -> Result<Lease, u64> {
        self.refill(rate, now_ns);
        if rate.requests_per_second.is_some() {
            self.requests = (self.requests + returned.requests).min(rate.burst);
        }
        if rate.bytes_per_second.is_some() {
            self.bytes = (self.bytes + returned.bytes).min(rate.byte_capacity());
        }
        if request {
            let mut wait: f64 = 0.0;
            if let Some(rps) = rate.requests_per_second
                && self.requests < 1.0
            {
                wait = wait.max((1.0 - self.requests) / rps);
            }
            if let Some(bps) = rate.bytes_per_second
                && self.bytes <= 0.0
            {
                wait = wait.max((1.0 - self.bytes) / bps);
            }
            if wait > 0.0 {
                return Err((wait.ceil() as u64).max(1));
            }
        }
        let (lease_requests, lease_bytes) = rate.lease_size();
        let mut lease = Lease::default();
        if rate.requests_per_second.is_some() {
            if request {
                self.requests -= 1.0;
            }
            lease.requests = lease_requests.min(self.requests.floor()).max(0.0);
            self.requests -= lease.requests;
        }
        if rate.bytes_per_second.is_some() {
            self.bytes -= bytes as f64;
            lease.bytes = lease_bytes.min(self.bytes.floor()).max(0.0);
            self.bytes -= lease.bytes;
        }
        Ok(lease)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn rps(r: f64, burst: f64) -> Rate {
        Rate {
            requests_per_second: Some(r),
            bytes_per_second: None,
            burst,
        }
    }

    fn bps(b: f64) -> Rate {
        Rate {
            requests_per_second: None,
            bytes_per_second: Some(b),
            burst: 1.0,
        }
    }

    /// One request through the shared bucket alone, for rates too low to lease.
    fn admit(b: &mut Bucket, rate: &Rate, now: i64) -> Result<(), u64> {
        b.draw(rate, now, Lease::default(), true, 0)
            .map(|lease| assert_eq!(lease, Lease::default(), "nothing leased"))
    }

    #[test]
    fn burst_then_refill() {
        let rate = rps(2.0, 3.0);
        let mut b = Bucket::full(&rate, 0);
        assert_eq!(
            (0..3).map(|_| admit(&mut b, &rate, 0)).collect::<Vec<_>>(),
            vec![Ok(()); 3]
        );
        assert_eq!(
            admit(&mut b, &rate, 0),
            Err(1),
            "burst used up; 0.5 s to the next token rounds to 1"
        );
        assert_eq!(
            admit(&mut b, &rate, S / 2),
            Ok(()),
            "2/s refills one token in 0.5 s"
        );
        assert_eq!(admit(&mut b, &rate, S / 2), Err(1));
        assert_eq!(admit(&mut b, &rate, 100 * S), Ok(()));
        assert!(b.requests <= 2.0, "refill is capped at burst");
    }

    #[test]
    fn slow_rates_ask_for_longer_waits() {
        let rate = rps(0.1, 1.0);
        let mut b = Bucket::full(&rate, 0);
        assert_eq!(admit(&mut b, &rate, 0), Ok(()));
        assert_eq!(admit(&mut b, &rate, 0), Err(10));
        assert_eq!(admit(&mut b, &rate, 5 * S), Err(5));
        assert_eq!(admit(&mut b, &rate, 10 * S), Ok(()));
    }

    #[test]
    fn byte_debt_throttles_following_requests() {
        // 50 B/s leases nothing (0.5 byte per 10 ms), so the bucket alone decides.
        let rate = bps(50.0);
        let mut b = Bucket::full(&rate, 0);
        assert_eq!(b.bytes, 50.0);
        let charge = |b: &mut Bucket, n, now| b.draw(&rate, now, Lease::default(), false, n);
        assert_eq!(admit(&mut b, &rate, 0), Ok(()));
        assert_eq!(charge(&mut b, 30, 0), Ok(Lease::default()));
        assert_eq!(admit(&mut b, &rate, 0), Ok(()), "20 bytes left");
        assert_eq!(
            charge(&mut b, 170, 0),
            Ok(Lease::default()),
            "charging never refuses"
        );
        assert_eq!(b.bytes, -150.0);
        assert_eq!(admit(&mut b, &rate, 0), Err(4), "150 bytes owed at 50/s");
        assert_eq!(admit(&mut b, &rate, 3 * S), Err(1));
        assert_eq!(admit(&mut b, &rate, 4 * S), Ok(()));
        // A declared length is charged with the admission, into debt if need be.
        let mut b = Bucket::full(&rate, 0);
        assert_eq!(
            b.draw(&rate, 0, Lease::default(), true, 120),
            Ok(Lease::default())
        );
        assert_eq!(b.bytes, -70.0);
        assert_eq!(admit(&mut b, &rate, 0), Err(2));
    }

    #[test]
    fn clock_going_backwards_refills_nothing() {
        let rate = rps(1.0, 1.0);
        let mut b = Bucket::full(&rate, 10 * S);
        assert_eq!(admit(&mut b, &rate, 10 * S), Ok(()));
        assert_eq!(admit(&mut b, &rate, 5 * S), Err(1));
        assert_eq!(b.updated_ns, 10 * S);
    }

    #[test]
    fn lease_sizes() {
        // (requests/s, burst, bytes/s) -> (leased requests, leased bytes)
        let table = [
            (Some(99.0), 200.0, None, (0.0, 0.0)),
            (Some(100.0), 200.0, None, (1.0, 0.0)),
            (Some(1000.0), 2000.0, None, (10.0, 0.0)),
            (Some(1000.0), 50.0, None, (5.0, 0.0)),
            (Some(1e6), 1e6, Some(1e9), (10_000.0, 1e7)),
            (None, 1.0, Some(1e6), (0.0, 10_000.0)),
        ];
        for (i, (r, burst, b, want)) in table.into_iter().enumerate() {
            let rate = Rate {
                requests_per_second: r,
                bytes_per_second: b,
                burst,
            };
            assert_eq!(rate.lease_size(), want, "row {i}");
        }
    }

    #[test]
    fn a_lease_serves_the_next_requests_and_its_rest_goes_back() {
        let rate = rps(1000.0, 2000.0);
        let mut b = Bucket::full(&rate, 0);
        let mut lease = b.draw(&rate, 0, Lease::default(), true, 0).unwrap();
        assert_eq!(lease.requests, 10.0);
        assert_eq!(b.requests, 1989.0, "one admitted, ten leased");
        lease.taken_ns = 5;
        for _ in 0..3 {
            assert!(lease.take(&rate, true, 0, 5));
        }
        // Seven left go back with the next round, which leases ten again.
        let next = b.draw(&rate, 0, lease, true, 0).unwrap();
        assert_eq!((next.requests, b.requests), (10.0, 1985.0));
        // Spent: nothing covered; an empty lease was never taken.
        let mut empty = Lease {
            taken_ns: 5,
            ..Lease::default()
        };
        assert!(!empty.take(&rate, true, 0, 5));
        assert!(!Lease::default().take(&rate, true, 0, 5));
    }

    #[test]
    fn a_lease_expires_and_ignores_a_clock_going_backwards() {
        let rate = rps(1000.0, 2000.0);
        let lease = Lease {
            requests: 5.0,
            bytes: 0.0,
            taken_ns: 10 * S,
        };
        for (now, fresh) in [
            (10 * S, true),
            (11 * S - 1, true),
            (11 * S, false),
            (10 * S - 1, false),
        ] {
            assert_eq!(lease.clone().take(&rate, true, 0, now), fresh, "at {now}");
        }
    }

    #[test]
    fn byte_leases_cover_whole_declared_lengths() {
        let rate = Rate {
            requests_per_second: Some(1000.0),
            bytes_per_second: Some(100_000.0),
            burst: 1000.0,
        };
        let mut b = Bucket::full(&rate, 0);
        assert_eq!(b.bytes, 100_000.0);
        let mut lease = b.draw(&rate, 0, Lease::default(), true, 400).unwrap();
        assert_eq!((lease.requests, lease.bytes), (10.0, 1000.0));
        assert_eq!(b.bytes, 100_000.0 - 400.0 - 1000.0);
        lease.taken_ns = 1;
        assert!(lease.take(&rate, true, 600, 1));
        assert!(
            !lease.take(&rate, true, 600, 1),
            "400 left do not cover 600"
        );
        assert!(lease.take(&rate, false, 400, 1), "a body chunk");
        assert!(
            !lease.take(&rate, true, 0, 1),
            "no length: the shared bucket decides"
        );
        assert_eq!(lease.requests, 9.0, "a refused take changes nothing");
    }

    /// However the requests of two workers interleave, leasing admits exactly what one shared
    /// bucket admits at one instant: the burst.
    #[test]
    fn leasing_workers_never_admit_more_than_the_burst() {
        let rate = rps(10_000.0, 5000.0);
        for pattern in [1usize, 2, 3, 7, 100] {
            let mut shared = Bucket::full(&rate, 0);
            let mut leases = [Lease::default(); 2];
            let (mut admitted, mut refused) = (0, 0);
            for i in 0..6000usize {
                let w = (i / pattern) % 2;
                if leases[w].take(&rate, true, 0, 1) {
                    admitted += 1;
                    continue;
                }
                match shared.draw(&rate, 0, leases[w], true, 0) {
                    Ok(mut l) => {
                        l.taken_ns = 1;
                        leases[w] = l;
                        admitted += 1;
                    }
                    Err(_) => {
                        leases[w] = Lease::default();
                        refused += 1;
                    }
                }
            }
            let held: f64 = leases.iter().map(|l| l.requests).sum();
            assert!(admitted <= 5000, "pattern {pattern}: {admitted} admitted");
            assert_eq!(
                admitted as f64 + held + shared.requests,
                5000.0,
                "pattern {pattern}: nothing created or lost"
            );
            assert!(refused > 0);
        }
    }

    #[test]
    fn encoding_round_trips() {
        let b = Bucket {
            requests: 1.5,
            bytes: -20.25,
            updated_ns: 123,
        };
        assert_eq!(Bucket::decode(&b.encode()), Some(b));
        assert_eq!(b.encode().len(), ENCODED_LEN);
        assert_eq!(Bucket::decode(&[1, 2, 3]), None);
    }
}
