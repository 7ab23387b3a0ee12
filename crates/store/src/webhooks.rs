//! Which events have reached their merchant's webhook.

use payq_domain::{EventId, MerchantId};

/// An event's delivery to its merchant's webhook, recorded in the transaction that
/// completes the message that made it ([`crate::Store::complete_messages`]): the record
/// and the message's removal commit together, so an event is always either delivered or
/// still pending (docs/architecture.md, "Webhooks in order"). A repeat is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDelivery {
    pub event: EventId,
    pub merchant: MerchantId,
    /// Attempts it took, this one included.
    pub attempts: u32,
}

/// `deliveries` as one JSON array of `[event_id, merchant_id, attempts]`, sorted by event,
/// for one statement to insert (in event order, so two completions never wait for each
/// other's rows in a cycle).
pub(crate) fn as_json_rows(deliveries: &[WebhookDelivery]) -> String {
    let mut rows: Vec<(&str, &str, u32)> =
        deliveries.iter().map(|d| (d.event.as_str(), d.merchant.as_str(), d.attempts)).collect();
    rows.sort_unstable();
    let rows: Vec<serde_json::Value> = rows.into_iter().map(|(e, m, a)| serde_json::json!([e, m, a])).collect();
    serde_json::Value::Array(rows).to_string()
}

#[cfg(test)]
mod tests {
    use super::WebhookDelivery;
    use crate::{Lane, NewMessage, Store};
    use payq_domain::{EventId, MerchantId, Timestamp};

    async fn count(store: &Store, sql: &str) -> i64 {
        crate::db::query_scalar(sql).fetch_one(store.read()).await.expect("count")
    }

    #[tokio::test]
    async fn a_delivery_is_recorded_with_the_completion_of_its_message_and_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&format!("sqlite://{}", dir.path().join("payq.db").display())).await.expect("store");
        let mut tx = store.begin().await.expect("tx");
        tx.schedule(NewMessage {
            kind: "webhook.deliver".into(),
            key: Some("ord_1".into()),
            lane: Lane::Deliveries,
            ordinal: Some(1),
            payload: serde_json::json!({}),
            due_at: Timestamp::from_millis(0),
        })
        .await
        .expect("schedule");
        tx.commit().await.expect("commit");
        let claimed = store.claim_due(Lane::Deliveries, Timestamp::now(), 10, 60_000).await.expect("claim");
        assert_eq!(claimed.len(), 1);
        let delivery = WebhookDelivery { event: EventId::generate(), merchant: MerchantId::generate(), attempts: 2 };

        store.complete_messages(&[&claimed[0]], std::slice::from_ref(&delivery)).await.expect("complete");
        assert_eq!(count(&store, "SELECT COUNT(*) FROM messages").await, 0, "the message is done");
        assert_eq!(count(&store, "SELECT COUNT(*) FROM webhook_deliveries WHERE attempts = 2").await, 1);
        // Completed again (a duplicate run): nothing more is removed or recorded.
        let again = WebhookDelivery { attempts: 3, ..delivery };
        store.complete_messages(&[&claimed[0]], &[again]).await.expect("complete again");
        assert_eq!(count(&store, "SELECT COUNT(*) FROM webhook_deliveries").await, 1);
        assert_eq!(count(&store, "SELECT attempts FROM webhook_deliveries").await, 2, "the first record stays");
    }
}
