//! The delay engine's lanes: each is claimed by its own dispatcher.

/// The queues of the delay engine. Each lane is claimed by its own dispatcher with its own
/// concurrency, so deliveries to merchant endpoints (which may hang for their whole
/// timeout) never hold up payments, timers and refunds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Payments, risk checks, timers, refunds: payq's own work.
    Work,
    /// Webhook deliveries to merchant endpoints.
    Deliveries,
}

impl Lane {
    /// Every lane.
    pub const ALL: [Lane; 2] = [Lane::Work, Lane::Deliveries];

    /// The value stored in the `lane` column.
    pub(crate) fn code(self) -> i64 {
        match self {
            Lane::Work => 0,
            Lane::Deliveries => 1,
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Lane::Work => 0,
            Lane::Deliveries => 1,
        }
    }

    pub(crate) fn from_code(code: i64) -> Lane {
        if code == 1 { Lane::Deliveries } else { Lane::Work }
    }

    /// The lane's name, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Work => "work",
            Lane::Deliveries => "deliveries",
        }
    }
}
