//! Per-merchant request rate limiting: a token bucket per API key holder, refilled at
//! `rate` requests per second up to `burst`. Requests over the limit get `429
//! rate_limited` and change nothing.

use payq_domain::MerchantId;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Token buckets by merchant.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<MerchantId, (f64, Instant)>>,
}

impl RateLimiter {
    /// A limiter of `rate` requests/s with bursts of `burst`; a `rate` of 0 never limits.
    pub fn new(rate: u32, burst: u32) -> RateLimiter {
        RateLimiter { rate: f64::from(rate), burst: f64::from(burst.max(1)), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes a token for `merchant`; `false` if it has none left.
    pub fn allow(&self, merchant: &MerchantId) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let now = Instant::now();
        // A poisoned lock only means another request panicked mid-update: the buckets are
        // still usable numbers.
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tokens, at) = buckets.entry(merchant.clone()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
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
        assert!((0..3).all(|_| limiter.allow(&m)));
        assert!(!limiter.allow(&m));
        assert!(limiter.allow(&other), "buckets are per merchant");
        assert!((0..100).all(|_| RateLimiter::new(0, 0).allow(&m)), "rate 0 never limits");
    }
}
