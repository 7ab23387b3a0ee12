//! Opaque, prefixed, time-ordered identifiers (`ord_0190…`).
//!
//! Each id is a UUIDv7 in lower-case hex behind a type prefix, so ids sort by creation time
//! and an order id can never be passed where a refund id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Why a string is not an id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {kind} id (expected {prefix}<32 hex digits>)")]
pub struct IdError {
    kind: &'static str,
    prefix: &'static str,
    value: String,
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal, $pattern:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(try_from = "String", into = "String")]
        #[schema(value_type = String, pattern = $pattern)]
        pub struct $name(String);

        impl $name {
            /// The type prefix, e.g. `"ord_"`.
            pub const PREFIX: &'static str = $prefix;

            /// A fresh, time-ordered id.
            pub fn generate() -> Self {
                $name(format!("{}{}", $prefix, uuid::Uuid::now_v7().simple()))
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                let ok = s
                    .strip_prefix($prefix)
                    .is_some_and(|rest| rest.len() == 32 && rest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
                if ok {
                    Ok($name(s.to_owned()))
                } else {
                    Err(IdError { kind: $kind, prefix: $prefix, value: s.chars().take(80).collect() })
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                s.parse()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

prefixed_id!(
    /// A merchant.
    MerchantId, "mch_", "merchant", "^mch_[0-9a-f]{32}$"
);
prefixed_id!(
    /// A payment order.
    OrderId, "ord_", "order", "^ord_[0-9a-f]{32}$"
);
prefixed_id!(
    /// One payment attempt on an order.
    PaymentId, "pay_", "payment", "^pay_[0-9a-f]{32}$"
);
prefixed_id!(
    /// A refund.
    RefundId, "ref_", "refund", "^ref_[0-9a-f]{32}$"
);
prefixed_id!(
    /// An event in a merchant's event log.
    EventId, "evt_", "event", "^evt_[0-9a-f]{32}$"
);
prefixed_id!(
    /// A dead-lettered message.
    DeadLetterId, "dlq_", "dead letter", "^dlq_[0-9a-f]{32}$"
);
prefixed_id!(
    /// A message (timer, command or delivery) handled by the delay engine.
    MessageId, "msg_", "message", "^msg_[0-9a-f]{32}$"
);

prefixed_id!(
    /// A reconciliation run: one merchant, one channel, one bill date.
    ReconciliationId, "rec_", "reconciliation", "^rec_[0-9a-f]{32}$"
);
prefixed_id!(
    /// A discrepancy found by a reconciliation run.
    DiscrepancyId, "dis_", "discrepancy", "^dis_[0-9a-f]{32}$"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_sort_by_time() {
        let a = OrderId::generate();
        let b = OrderId::generate();
        assert!(a < b);
        assert_eq!(a.as_str().parse::<OrderId>(), Ok(a.clone()));
        assert!(a.as_str().starts_with("ord_"));
    }

    #[test]
    fn refuses_other_prefixes_and_garbage() {
        let r = RefundId::generate();
        assert!(r.as_str().parse::<OrderId>().is_err());
        assert!("ord_xyz".parse::<OrderId>().is_err());
        assert!("".parse::<OrderId>().is_err());
        assert!("ord_0123456789ABCDEF0123456789abcdef".parse::<OrderId>().is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_an_id_or_refused_without_panic(text in ".{0,48}") {
            let _ = text.parse::<OrderId>();
            let _ = text.parse::<RefundId>();
        }

        #[test]
        fn ids_of_one_kind_never_parse_as_another(_n in 0u8..8) {
            let order = OrderId::generate();
            proptest::prop_assert!(order.as_str().parse::<RefundId>().is_err());
            proptest::prop_assert_eq!(order.as_str().parse::<OrderId>(), Ok(order.clone()));
        }
    }
}
