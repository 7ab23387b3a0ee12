//! Each merchant's share of webhook delivery capacity: at most `per_merchant` deliveries
//! to one merchant at a time, and a circuit breaker that stops calling an endpoint after
//! `threshold` failures in a row, for `cooldown`, then lets a single probe through. A
//! delivery that finds no room waits (deferred, not counted as an attempt), so a merchant
//! whose endpoint hangs or fails ties up only its own slots, never another merchant's
//! deliveries and never payments (which run in their own lane; see docs/operations.md).

use payq_domain::MerchantId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a delivery waits when its merchant's slots are all busy (with ±20 % jitter, so
/// the waiting deliveries of a busy merchant come back spread out).
const BUSY_WAIT: Duration = Duration::from_secs(1);

/// The limits of [`DeliveryGate`].
#[derive(Debug, Clone, Copy)]
pub struct GateLimits {
    /// Deliveries to one merchant at once.
    pub per_merchant: usize,
    /// Failures in a row that open the circuit.
    pub threshold: u32,
    /// How long an open circuit stays open before a probe.
    pub cooldown: Duration,
}

/// Admission control for webhook deliveries, per merchant, within one process.
pub struct DeliveryGate {
    limits: GateLimits,
    merchants: Mutex<HashMap<MerchantId, MerchantState>>,
}

struct MerchantState {
    slots: Arc<Semaphore>,
    failures_in_a_row: u32,
    /// While set and in the future, the endpoint is not called.
    open_until: Option<Instant>,
}

/// Whether a delivery may go now.
pub enum Admission {
    /// Go: hold the pass while calling the endpoint, then report with [`DeliveryGate::record`].
    Go(DeliveryPass),
    /// Not now: try again after this long.
    Wait(Duration),
}

/// A delivery slot of one merchant, freed when dropped.
pub struct DeliveryPass {
    _slot: OwnedSemaphorePermit,
}

impl DeliveryGate {
    /// A gate with `limits`.
    pub fn new(limits: GateLimits) -> DeliveryGate {
        DeliveryGate { limits, merchants: Mutex::new(HashMap::new()) }
    }

    /// Asks for a slot to deliver to `merchant`.
    pub fn admit(&self, merchant: &MerchantId) -> Admission {
        let now = Instant::now();
        let mut merchants = self.merchants.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let state = merchants.entry(merchant.clone()).or_insert_with(|| MerchantState {
            slots: Arc::new(Semaphore::new(self.limits.per_merchant.max(1))),
            failures_in_a_row: 0,
            open_until: None,
        });
        if let Some(until) = state.open_until {
            if until > now {
                return Admission::Wait(until - now);
            }
            // Half-open: this delivery is the probe; the others keep waiting meanwhile.
            state.open_until = Some(now + self.limits.cooldown);
        }
        match state.slots.clone().try_acquire_owned() {
            Ok(slot) => Admission::Go(DeliveryPass { _slot: slot }),
            Err(_) => Admission::Wait(BUSY_WAIT.mul_f64(rand::random_range(0.8..1.2))),
        }
    }

    /// Records how a delivery to `merchant` went: a success closes the circuit, the
    /// `threshold`-th failure in a row opens it.
    pub fn record(&self, merchant: &MerchantId, delivered: bool) {
        let mut merchants = self.merchants.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(state) = merchants.get_mut(merchant) else { return };
        if delivered {
            state.failures_in_a_row = 0;
            state.open_until = None;
            return;
        }
        state.failures_in_a_row = state.failures_in_a_row.saturating_add(1);
        if state.failures_in_a_row >= self.limits.threshold.max(1) {
            if state.open_until.is_none() {
                tracing::warn!(merchant = %merchant, failures = state.failures_in_a_row, "webhook endpoint failing; pausing its deliveries");
            }
            state.open_until = Some(Instant::now() + self.limits.cooldown);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(per_merchant: usize) -> DeliveryGate {
        DeliveryGate::new(GateLimits { per_merchant, threshold: 2, cooldown: Duration::from_millis(50) })
    }

    #[test]
    fn one_merchant_cannot_take_another_merchants_slots() {
        let gate = gate(2);
        let (x, y) = (MerchantId::generate(), MerchantId::generate());
        let held: Vec<_> = (0..2).map(|_| gate.admit(&x)).collect();
        assert!(held.iter().all(|a| matches!(a, Admission::Go(_))));
        assert!(matches!(gate.admit(&x), Admission::Wait(_)), "x has used its share");
        assert!(matches!(gate.admit(&y), Admission::Go(_)), "y still has its own");
        drop(held);
        assert!(matches!(gate.admit(&x), Admission::Go(_)), "slots come back when passes drop");
    }

    #[test]
    fn failures_in_a_row_open_the_circuit_until_a_probe_succeeds() {
        let gate = gate(4);
        let x = MerchantId::generate();
        gate.record(&x, false);
        assert!(matches!(gate.admit(&x), Admission::Go(_)), "one failure keeps it closed");
        gate.record(&x, false);
        assert!(matches!(gate.admit(&x), Admission::Wait(_)), "the threshold opens it");
        std::thread::sleep(Duration::from_millis(60));
        assert!(matches!(gate.admit(&x), Admission::Go(_)), "after the cooldown one probe goes");
        assert!(matches!(gate.admit(&x), Admission::Wait(_)), "and only one");
        gate.record(&x, true);
        assert!(matches!(gate.admit(&x), Admission::Go(_)), "a success closes it");
    }
}
