//! Messages and events written by a transaction: what `Tx::schedule` and
//! `Tx::insert_event` keep (and the rows `Tx::cancel_messages` deletes) until the
//! transaction commits or schedules a batch (`Tx::schedule_many`), and
//! the statements that write them (docs/architecture.md, "One statement per state change").

use crate::messages::NewMessage;
use crate::{StoreError, StoreResult, Tx};
use payq_domain::{MessageId, Timestamp};

/// A message scheduled in a transaction and not yet written (see [`Tx::schedule`]).
pub(crate) struct Unwritten {
    pub(crate) id: MessageId,
    pub(crate) kind: String,
    pub(crate) key: Option<String>,
    ordinal: Option<i64>,
    pub(crate) payload: String,
    pub(crate) due_at: Timestamp,
    pub(crate) lane: crate::Lane,
    /// The event whose position in the log becomes the ordinal once it is written.
    ordinal_of: Option<payq_domain::EventId>,
}

impl TryFrom<NewMessage> for Unwritten {
    type Error = StoreError;

    /// The row of a new message, with its id and its payload's JSON text.
    fn try_from(m: NewMessage) -> StoreResult<Unwritten> {
        let payload = serde_json::to_string(&m.payload).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(Unwritten {
            id: MessageId::generate(),
            kind: m.kind,
            key: m.key,
            ordinal: m.ordinal,
            payload,
            due_at: m.due_at,
            lane: m.lane,
            ordinal_of: None,
        })
    }
}

impl Tx {
    /// Schedules a message; it commits with this transaction or not at all. The
    /// transaction's messages are written together, in one statement, when it commits (or
    /// schedules a batch with [`Tx::schedule_many`]): one round trip for all of them.
    pub async fn schedule(&mut self, m: NewMessage) -> StoreResult<MessageId> {
        Ok(self.schedule_unwritten(Unwritten::try_from(m)?))
    }

    /// Schedules a message whose ordinal is the position of `event` (appended in this
    /// transaction or before) in the merchant's event log: a webhook delivery goes in the
    /// order of its order's events.
    pub fn schedule_in_event_order(&mut self, m: NewMessage, event: &payq_domain::EventId) -> StoreResult<MessageId> {
        let mut m = Unwritten::try_from(m)?;
        m.ordinal_of = Some(event.clone());
        Ok(self.schedule_unwritten(m))
    }

    pub(crate) fn schedule_unwritten(&mut self, m: Unwritten) -> MessageId {
        let id = m.id.clone();
        self.unwritten.push(m);
        self.mark_message_scheduled();
        id
    }

    /// Schedules many messages in this transaction, written at once.
    pub async fn schedule_many(&mut self, messages: Vec<NewMessage>) -> StoreResult<()> {
        for m in messages {
            self.schedule(m).await?;
        }
        self.write_scheduled().await
    }

    /// Writes the events appended and the messages scheduled since the last write. On
    /// PostgreSQL the events and the messages are one statement, one round trip; SQLite's
    /// writer runs in this process and takes a plain `INSERT` for each event, whose `seq`
    /// becomes the ordinal of the messages scheduled in its order.
    pub(crate) async fn write_scheduled(&mut self) -> StoreResult<()> {
        let events = std::mem::take(&mut self.unwritten_events);
        let mut unwritten = std::mem::take(&mut self.unwritten);
        let cancelled = std::mem::take(&mut self.uncancelled);
        if !self.backend().one_writer() {
            let events = (!events.is_empty()).then(|| {
                serde_json::Value::Array(events.iter().map(crate::events::UnwrittenEvent::json_row).collect())
                    .to_string()
            });
            return self.write_messages(unwritten, events, &cancelled).await;
        }
        if !cancelled.is_empty() {
            bind_cancelled(crate::db::query(&delete_cancelled(&cancelled, 1)), &cancelled).execute(self.conn()).await?;
        }
        let mut seqs = std::collections::HashMap::with_capacity(events.len());
        for e in &events {
            seqs.insert(e.id.clone(), self.write_event(e).await?);
        }
        for m in &mut unwritten {
            if let Some(event) = m.ordinal_of.take() {
                m.ordinal = Some(match seqs.get(&event) {
                    Some(seq) => *seq,
                    None => {
                        crate::db::query_scalar("SELECT seq FROM events WHERE id = $1")
                            .bind(event.as_str())
                            .fetch_one(self.conn())
                            .await?
                    }
                });
            }
        }
        self.write_messages(unwritten, None, &[]).await
    }

    /// Writes messages, and on PostgreSQL the `events` (a JSON array of
    /// [`crate::events::UnwrittenEvent::json_row`]s) in the same statement. One message
    /// alone goes as a plain `INSERT`; more travel as one JSON array bound to one parameter
    /// (a statement's cost grows with its bound values, not with the size of one value).
    async fn write_messages(
        &mut self,
        unwritten: Vec<Unwritten>,
        events: Option<String>,
        cancelled: &[(String, String)],
    ) -> StoreResult<()> {
        let now = crate::now_ms();
        if let (None, [], [m]) = (&events, cancelled, unwritten.as_slice())
            && m.ordinal_of.is_none()
        {
            crate::db::query(
                "INSERT INTO messages (id, kind, key, ordinal, payload, scheduled_at, due_at, created_at, lane)
                 VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8)",
            )
            .bind(m.id.as_str())
            .bind(&m.kind)
            .bind(m.key.as_deref())
            .bind(m.ordinal)
            .bind(m.payload.as_str())
            .bind(m.due_at.millis())
            .bind(now)
            .bind(m.lane.code())
            .execute(self.conn())
            .await?;
            return Ok(());
        }
        if events.is_none() && unwritten.is_empty() {
            if !cancelled.is_empty() {
                bind_cancelled(crate::db::query(&delete_cancelled(cancelled, 1)), cancelled)
                    .execute(self.conn())
                    .await?;
            }
            return Ok(());
        }
        let backend = self.backend();
        // Events written in this statement are visible to it only through what it returns
        // (`ev`); events of earlier statements, in the table. The cancelled rows' `DELETE`
        // sees the table as it was before the statement, so the messages it inserts stay.
        let in_table = "(SELECT seq FROM events e WHERE e.id = value ->> 7)";
        let mut with = Vec::new();
        let event_seq = match &events {
            Some(_) => {
                with.push(format!(
                    "ev AS (INSERT INTO events ({}) SELECT {} FROM {} RETURNING id, seq)",
                    crate::events::EVENT_COLUMNS,
                    crate::events::EVENT_VALUES,
                    backend.json_elements("$3")
                ));
                format!("COALESCE((SELECT seq FROM ev WHERE ev.id = value ->> 7), {in_table})")
            }
            None => in_table.to_owned(),
        };
        if !cancelled.is_empty() {
            let first = if events.is_some() { 4 } else { 3 };
            with.push(format!("gone AS ({})", delete_cancelled(cancelled, first)));
        }
        let with = if with.is_empty() { String::new() } else { format!("WITH {} ", with.join(", ")) };
        // Moved, not copied, into the array (a batch of timers can be large).
        let rows: Vec<serde_json::Value> = unwritten
            .into_iter()
            .map(|m| {
                let (due_at, lane) = (m.due_at.millis(), m.lane.code());
                let ordinal_of = m.ordinal_of.as_ref().map(payq_domain::EventId::as_str);
                serde_json::json!([m.id.as_str(), m.kind, m.key, m.ordinal, m.payload, due_at, lane, ordinal_of])
            })
            .collect();
        let rows = serde_json::Value::Array(rows).to_string();
        let sql = format!(
            "{with}INSERT INTO messages (id, kind, key, ordinal, payload, scheduled_at, due_at, created_at, lane)
             SELECT value ->> 0, value ->> 1, value ->> 2,
                    CASE WHEN value ->> 7 IS NULL THEN CAST(value ->> 3 AS BIGINT) ELSE {event_seq} END,
                    value ->> 4, CAST(value ->> 5 AS BIGINT), CAST(value ->> 5 AS BIGINT), $2, CAST(value ->> 6 AS INTEGER)
             FROM {}",
            backend.json_elements("$1")
        );
        let mut query = crate::db::query(&sql).bind(rows).bind(now);
        if let Some(events) = events {
            query = query.bind(events);
        }
        bind_cancelled(query, cancelled).execute(self.conn()).await?;
        Ok(())
    }
}

/// `DELETE` of the pending messages of each `(kind, key)`, its parameters numbered from
/// `first`.
fn delete_cancelled(which: &[(String, String)], first: usize) -> String {
    let each = (0..which.len())
        .map(|i| format!("(kind = ${} AND key = ${})", first + 2 * i, first + 2 * i + 1))
        .collect::<Vec<_>>();
    format!("DELETE FROM messages WHERE {}", each.join(" OR "))
}

/// Binds the `(kind, key)` pairs of [`delete_cancelled`], in order.
fn bind_cancelled<'q>(mut query: crate::db::Query<'q>, which: &'q [(String, String)]) -> crate::db::Query<'q> {
    for (kind, key) in which {
        query = query.bind(kind.as_str()).bind(key.as_str());
    }
    query
}
