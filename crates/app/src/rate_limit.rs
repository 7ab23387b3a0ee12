//! Per-merchant request rate limiting with `governor` (GCRA, the token bucket's exact
//! form): `rate` requests per second per merchant, bursts up to `burst`. Requests over the
//! limit get `429 rate_limited` with `Retry-After` and change nothing.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use payq_domain::MerchantId;
use std::num::NonZeroU32;
use std::time::Duration;

/// Rate limits by merchant.
pub struct RateLimiter {
    /// `None`: no limit (a rate of 0).
    limiter: Option<DefaultKeyedRateLimiter<MerchantId>>,
}

impl RateLimiter {
    /// A limiter of `rate` requests/s with bursts of `burst`; a `rate` of 0 never limits.
    pub fn new(rate: u32, burst: u32) -> RateLimiter {
        let limiter = NonZeroU32::new(rate).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
            governor::RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        RateLimiter { limiter }
    }

    /// Takes a request's share for `merchant`, or says how long until it has one.
    pub fn check(&self, merchant: &MerchantId) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        limiter.check_key(merchant).map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Forgets merchants that have been idle long enough to have a full burst again (keeps
    /// the table from growing with every merchant ever seen).
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_a_burst_then_refuses_until_refilled() {
        let limiter = RateLimiter::new(1, 3);
        let m = MerchantId::generate();
        let other = MerchantId::generate();
        assert!((0..3).all(|_| limiter.check(&m).is_ok()));
        let wait = limiter.check(&m).expect_err("the burst is spent");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
        assert!(limiter.check(&other).is_ok(), "limits are per merchant");
        assert!((0..100).all(|_| RateLimiter::new(0, 0).check(&m).is_ok()), "rate 0 never limits");
    }
}
