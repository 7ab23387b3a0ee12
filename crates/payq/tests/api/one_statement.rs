//! The writes a state change makes together (docs/architecture.md, "One statement per
//! state change"): a transaction's events are written with its messages (on PostgreSQL in
//! one statement), and a delivery scheduled in event order takes its event's position in
//! the log as its ordinal, whether the event was written in the same statement or an
//! earlier one; a cancel removes the messages scheduled before it, written or not, and
//! keeps those scheduled after it; a payment's start is recorded only while the payment is
//! still pending.
//! Runs on the backend the suite runs on.

use crate::db::TestDb;
use payq_domain::{ChannelName, Currency, NextAction, OrderId, PaymentId, PaymentStatus};
use payq_domain::{EventType, MerchantId, Timestamp};
use payq_store::{ChannelCall, Lane, NewEvent, NewMessage, NewOrder, NewPayment, PaymentStart, Store};
use sqlx::Row;

fn delivery(key: &str) -> NewMessage {
    NewMessage {
        kind: "webhook.deliver".into(),
        key: Some(key.into()),
        lane: Lane::Deliveries,
        ordinal: None,
        payload: serde_json::json!({}),
        due_at: Timestamp::now().plus_millis(3_600_000),
    }
}

fn event(merchant: &MerchantId, event_type: EventType) -> NewEvent<'_> {
    NewEvent { event_type, merchant_id: merchant, order_id: None, data: serde_json::json!({}) }
}

#[tokio::test]
async fn a_delivery_takes_its_events_position_in_the_log_as_its_ordinal() {
    let db = TestDb::new().await;
    let store = Store::open(&db.url).await.expect("store opens");
    let merchant = MerchantId::generate();

    let mut tx = store.begin().await.expect("tx");
    let first = tx.insert_event(event(&merchant, EventType::OrderCreated)).expect("event");
    let first_delivery = tx.schedule_in_event_order(delivery("k1"), &first.id).expect("schedule");
    // A batch of messages writes what was scheduled so far: the first event and its delivery.
    tx.schedule_many(Vec::new()).await.expect("write");
    let second = tx.insert_event(event(&merchant, EventType::OrderPaying)).expect("event");
    let second_delivery = tx.schedule_in_event_order(delivery("k1"), &second.id).expect("schedule");
    // An event written by the earlier statement, named by a delivery of this one.
    let again = tx.schedule_in_event_order(delivery("k2"), &first.id).expect("schedule");
    // An event without a delivery, and a plain timer beside the deliveries.
    let quiet = tx.insert_event(event(&merchant, EventType::OrderShipped)).expect("event");
    let mut timer = delivery("k3");
    timer.ordinal = Some(7);
    let timer = tx.schedule(timer).await.expect("schedule");
    tx.commit().await.expect("commit");

    let mut conn = db.connect().await;
    let seq_of = |rows: &[sqlx::any::AnyRow], id: &str| -> Option<i64> {
        rows.iter().find(|r| r.get::<String, _>("id") == id).map(|r| r.get::<i64, _>("seq"))
    };
    let events = sqlx::query("SELECT id, seq FROM events").fetch_all(&mut conn).await.expect("events");
    assert_eq!(events.len(), 3, "every event is written, the one without a delivery too");
    let (s1, s2, s3) = (
        seq_of(&events, first.id.as_str()).expect("first event"),
        seq_of(&events, second.id.as_str()).expect("second event"),
        seq_of(&events, quiet.id.as_str()).expect("third event"),
    );
    assert!(s1 < s2 && s2 < s3, "events keep the order they were appended in: {s1} {s2} {s3}");
    let messages = sqlx::query("SELECT id, ordinal AS seq FROM messages").fetch_all(&mut conn).await.expect("messages");
    assert_eq!(messages.len(), 4);
    assert_eq!(seq_of(&messages, first_delivery.as_str()), Some(s1));
    assert_eq!(seq_of(&messages, second_delivery.as_str()), Some(s2));
    assert_eq!(seq_of(&messages, again.as_str()), Some(s1));
    assert_eq!(seq_of(&messages, timer.as_str()), Some(7), "a message's own ordinal stays");
}

#[tokio::test]
async fn a_cancel_removes_the_messages_scheduled_before_it_and_keeps_those_after() {
    let db = TestDb::new().await;
    let store = Store::open(&db.url).await.expect("store opens");
    let timer = |key: &str| NewMessage { kind: "payment.timeout".into(), lane: Lane::Work, ..delivery(key) };
    // Written by an earlier transaction.
    let mut tx = store.begin().await.expect("tx");
    tx.schedule(timer("o1")).await.expect("schedule");
    tx.schedule(timer("o2")).await.expect("schedule");
    tx.commit().await.expect("commit");

    let mut tx = store.begin().await.expect("tx");
    // Written earlier in this transaction, and not written yet.
    tx.schedule(timer("o1")).await.expect("schedule");
    tx.schedule_many(Vec::new()).await.expect("write");
    tx.schedule(timer("o1")).await.expect("schedule");
    tx.cancel_messages("payment.timeout", "o1").await.expect("cancel");
    // Scheduled after the cancel, with an event in the same write.
    let kept = tx.schedule(timer("o1")).await.expect("schedule");
    let merchant = MerchantId::generate();
    tx.insert_event(event(&merchant, EventType::OrderClosed)).expect("event");
    tx.commit().await.expect("commit");

    let mut conn = db.connect().await;
    let left: Vec<(String, String)> =
        sqlx::query_as("SELECT id, key FROM messages ORDER BY key, id").fetch_all(&mut conn).await.expect("messages");
    let keys: Vec<&str> = left.iter().map(|(_, key)| key.as_str()).collect();
    assert_eq!(keys, ["o1", "o2"], "one timer of o1 is left, and o2's");
    assert_eq!(left[0].0, kept.as_str(), "the one scheduled after the cancel");
    let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events").fetch_one(&mut conn).await.expect("count");
    assert_eq!(events, 1);
}

#[tokio::test]
async fn events_of_a_transaction_that_does_not_commit_are_not_written() {
    let db = TestDb::new().await;
    let store = Store::open(&db.url).await.expect("store opens");
    let merchant = MerchantId::generate();
    let mut tx = store.begin().await.expect("tx");
    let e = tx.insert_event(event(&merchant, EventType::OrderCreated)).expect("event");
    tx.schedule_in_event_order(delivery("k1"), &e.id).expect("schedule");
    drop(tx);
    let mut conn = db.connect().await;
    for table in ["events", "messages"] {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
            .fetch_one(&mut conn)
            .await
            .expect("count");
        assert_eq!(n, 0, "{table}");
    }
}

#[tokio::test]
async fn a_start_is_recorded_only_while_the_payment_is_pending_and_its_claim_ends_either_way() {
    let app = crate::helpers::spawn_app().await;
    let m = app.merchant().await;
    let paid = app.paid_order(&m, "S-1", 100).await;
    let id: PaymentId = paid["payment"]["id"].as_str().expect("payment id").parse().expect("a payment id");
    let store = Store::open(&app.db_url).await.expect("store opens");
    let before = store.payment(&id).await.expect("payment");
    assert_eq!(before.status, PaymentStatus::Succeeded);
    let query = delivery(id.as_str());
    let action = NextAction::QrCode { qr_code: "weixin://late".into() };
    let start = |first_query| PaymentStart {
        id: &id,
        from: PaymentStatus::Pending,
        to: PaymentStatus::Pending,
        channel_txn_id: Some("late-txn"),
        next_action: Some(&action),
        finish: Some(ChannelCall::Create(&id)),
        first_query,
    };

    // The callback came first: the start changes nothing and queues no query.
    assert!(!store.record_payment_start(start(Some(query.clone()))).await.expect("record"));
    let after = store.payment(&id).await.expect("payment");
    assert_eq!(after.status, PaymentStatus::Succeeded);
    assert_eq!(after.channel_txn_id, before.channel_txn_id, "the callback's trade id stays");
    assert!(after.next_action.is_none());
    let mut conn = app.db.connect().await;
    let queued: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE kind = 'webhook.deliver' AND key = $1")
        .bind(id.as_str())
        .fetch_one(&mut conn)
        .await
        .expect("count");
    assert_eq!(queued, 0, "no query for a settled payment");
    // The claim of the call ended for good all the same.
    let mut tx = store.begin().await.expect("tx");
    let claim =
        tx.claim_channel_call(ChannelCall::Create(&id), Timestamp::now().plus_millis(60_000)).await.expect("claim");
    drop(tx);
    assert!(matches!(claim, payq_store::CallClaim::Done), "the start's call is done");

    // A payment still pending takes the start, its next step and its first query. It is
    // written here, not paid through the API, so that no worker starts it meanwhile.
    let (order_id, pending) = (OrderId::generate(), PaymentId::generate());
    let merchant: MerchantId = m.id.parse().expect("a merchant id");
    let now = Timestamp::now();
    let mut tx = store.begin().await.expect("tx");
    let order = tx
        .insert_order(NewOrder {
            id: &order_id,
            merchant_id: &merchant,
            merchant_order_no: "S-2",
            request_hash: "h",
            amount: 100,
            currency: Currency::Cny,
            description: None,
            customer_id: None,
            items: &[],
            created_at: now,
            expires_at: now.plus_millis(60_000),
        })
        .await
        .expect("order")
        .expect("a new order");
    tx.insert_payment(NewPayment {
        id: &pending,
        order: &order,
        channel: ChannelName::Sim,
        simulate: None,
        product: None,
        created_at: now,
    })
    .await
    .expect("payment");
    tx.commit().await.expect("commit");
    let start = PaymentStart {
        id: &pending,
        channel_txn_id: Some("txn-2"),
        first_query: Some(delivery(pending.as_str())),
        ..start(None)
    };
    assert!(store.record_payment_start(start).await.expect("record"));
    let started = store.payment(&pending).await.expect("payment");
    assert_eq!(started.status, PaymentStatus::Pending);
    assert_eq!(started.channel_txn_id.as_deref(), Some("txn-2"));
    assert!(started.next_action.is_some(), "the buyer's next step is kept");
    let queued: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE kind = 'webhook.deliver' AND key = $1")
        .bind(pending.as_str())
        .fetch_one(&mut conn)
        .await
        .expect("count");
    assert_eq!(queued, 1, "the first query is queued with the start");
}
