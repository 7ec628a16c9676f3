//! Per-token token buckets: one for requests, one for body bytes. The state lives in
//! proxy-wasm shared data (see `shared.rs`) so every Envoy worker draws on the same budget.
//! Bytes are charged as body chunks pass, without buffering: a token that overdraws its byte
//! budget goes into debt and its next requests are throttled until the debt is repaid.

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

    /// Admits one request, or says after how many whole seconds to retry (at least 1).
    pub fn admit(&mut self, rate: &Rate, now_ns: i64) -> Result<(), u64> {
        self.refill(rate, now_ns);
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
        if rate.requests_per_second.is_some() {
            self.requests -= 1.0;
        }
        Ok(())
    }

    /// Charges `n` body bytes (possibly into debt).
    pub fn charge(&mut self, rate: &Rate, n: u64, now_ns: i64) {
        self.refill(rate, now_ns);
        if rate.bytes_per_second.is_some() {
            self.bytes -= n as f64;
        }
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

    #[test]
    fn burst_then_refill() {
        let rate = rps(2.0, 3.0);
        let mut b = Bucket::full(&rate, 0);
        assert_eq!(
            (0..3).map(|_| b.admit(&rate, 0)).collect::<Vec<_>>(),
            vec![Ok(()); 3]
        );
        assert_eq!(
            b.admit(&rate, 0),
            Err(1),
            "burst used up; 0.5 s to the next token rounds to 1"
        );
        assert_eq!(
            b.admit(&rate, S / 2),
            Ok(()),
            "2/s refills one token in 0.5 s"
        );
        assert_eq!(b.admit(&rate, S / 2), Err(1));
        assert_eq!(b.admit(&rate, 100 * S), Ok(()));
        assert!(b.requests <= 2.0, "refill is capped at burst");
    }

    #[test]
    fn slow_rates_ask_for_longer_waits() {
        let rate = rps(0.1, 1.0);
        let mut b = Bucket::full(&rate, 0);
        assert_eq!(b.admit(&rate, 0), Ok(()));
        assert_eq!(b.admit(&rate, 0), Err(10));
        assert_eq!(b.admit(&rate, 5 * S), Err(5));
        assert_eq!(b.admit(&rate, 10 * S), Ok(()));
    }

    #[test]
    fn byte_debt_throttles_following_requests() {
        let rate = Rate {
            requests_per_second: None,
            bytes_per_second: Some(1000.0),
            burst: 1.0,
        };
        let mut b = Bucket::full(&rate, 0);
        assert_eq!(b.bytes, 1000.0);
        assert_eq!(b.admit(&rate, 0), Ok(()));
        b.charge(&rate, 600, 0);
        assert_eq!(b.admit(&rate, 0), Ok(()), "400 bytes left");
        b.charge(&rate, 3400, 0);
        assert_eq!(b.bytes, -3000.0);
        assert_eq!(b.admit(&rate, 0), Err(4), "3000 bytes owed at 1000/s");
        assert_eq!(b.admit(&rate, 3 * S), Err(1));
        assert_eq!(b.admit(&rate, 4 * S), Ok(()));
    }

    #[test]
    fn clock_going_backwards_refills_nothing() {
        let rate = rps(1.0, 1.0);
        let mut b = Bucket::full(&rate, 10 * S);
        assert_eq!(b.admit(&rate, 10 * S), Ok(()));
        assert_eq!(b.admit(&rate, 5 * S), Err(1));
        assert_eq!(b.updated_ns, 10 * S);
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
