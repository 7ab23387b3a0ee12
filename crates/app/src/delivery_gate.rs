//! Each merchant's share of webhook delivery capacity: at most `per_merchant` deliveries
//! to one merchant at a time in a process. A delivery that finds its merchant's slots busy
//! waits (deferred, not counted as an attempt), so a merchant whose endpoint hangs ties up
//! only its own slots, never another merchant's deliveries and never payments, which run
//! in their own lane (docs/operations.md, "Faults and what payq guarantees"). A failing
//! endpoint is slowed by the retry schedule itself: each failed attempt waits its turn.

use payq_domain::MerchantId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a delivery waits when its merchant's slots are all busy (with ±20 % jitter, so
/// the waiting deliveries of a busy merchant come back spread out).
const BUSY_WAIT: Duration = Duration::from_secs(1);

/// Admission control for webhook deliveries, per merchant, within one process.
pub struct DeliveryGate {
    per_merchant: usize,
    slots: Mutex<HashMap<MerchantId, Arc<Semaphore>>>,
}

/// Whether a delivery may go now.
pub enum Admission {
    /// Go: hold the pass while calling the endpoint.
    Go(DeliveryPass),
    /// Not now: try again after this long.
    Wait(Duration),
}

/// A delivery slot of one merchant, freed when dropped.
pub struct DeliveryPass {
    _slot: OwnedSemaphorePermit,
}

impl DeliveryGate {
    /// A gate allowing `per_merchant` deliveries to one merchant at once.
    pub fn new(per_merchant: usize) -> DeliveryGate {
        DeliveryGate { per_merchant: per_merchant.max(1), slots: Mutex::new(HashMap::new()) }
    }

    /// Asks for a slot to deliver to `merchant`.
    pub fn admit(&self, merchant: &MerchantId) -> Admission {
        let slots = {
            let mut all = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            all.entry(merchant.clone()).or_insert_with(|| Arc::new(Semaphore::new(self.per_merchant))).clone()
        };
        match slots.try_acquire_owned() {
            Ok(slot) => Admission::Go(DeliveryPass { _slot: slot }),
            Err(_) => Admission::Wait(BUSY_WAIT.mul_f64(rand::random_range(0.8..1.2))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_merchant_cannot_take_another_merchants_slots() {
        let gate = DeliveryGate::new(2);
        let (x, y) = (MerchantId::generate(), MerchantId::generate());
        let held: Vec<_> = (0..2).map(|_| gate.admit(&x)).collect();
        assert!(held.iter().all(|a| matches!(a, Admission::Go(_))));
        assert!(matches!(gate.admit(&x), Admission::Wait(_)), "x has used its share");
        assert!(matches!(gate.admit(&y), Admission::Go(_)), "y still has its own");
        drop(held);
        assert!(matches!(gate.admit(&x), Admission::Go(_)), "slots come back when passes drop");
    }
}
