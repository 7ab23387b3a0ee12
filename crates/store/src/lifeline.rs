//! The lifeline: every payq process registers itself with a heartbeat, and each message it
//! claims names it as the owner. When a process stops beating (it was killed, or its host
//! died), any live process releases that owner's claims at once, so the work resumes
//! within seconds instead of after the claim's lease. Leases remain only for a handler
//! that hangs inside a live process.

use crate::{Store, StoreResult};

/// The identity of one payq process (a fresh one per start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessId(String);

impl ProcessId {
    /// A fresh, unique process id.
    pub(crate) fn generate() -> ProcessId {
        let unique = payq_domain::MessageId::generate();
        let tail = unique.as_str().split_once('_').map_or(unique.as_str(), |(_, t)| t);
        ProcessId(format!("proc_{tail}"))
    }

    /// The id as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Store {
    /// Records that this process is alive (registering it on the first beat).
    pub async fn heartbeat(&self, role: &str) -> StoreResult<()> {
        let now = crate::now_ms();
        let mut tx = self.begin().await?;
        crate::db::query(
            "INSERT INTO processes (id, role, started_at, heartbeat_at) VALUES ($1, $2, $3, $3)
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        )
        .bind(self.process_id().as_str())
        .bind(role)
        .bind(now)
        .execute(tx.conn())
        .await?;
        tx.commit().await
    }

    /// Releases the claims of every process whose last heartbeat is older than
    /// `silent_for_ms` (they become due now, for any worker), and forgets those processes.
    /// The lookups run on a reader; the writer is taken only when a process has died. A
    /// `sweep` (at start-up) also finds the claims of a process that died before its first
    /// heartbeat, by the owners the queue names. Returns how many messages were released.
    pub async fn release_claims_of_dead_processes(&self, silent_for_ms: i64, sweep: bool) -> StoreResult<u64> {
        let now = crate::now_ms();
        let cutoff = now.saturating_sub(silent_for_ms);
        let me = self.process_id().as_str();
        let mut dead: Vec<String> =
            crate::db::query_scalar("SELECT id FROM processes WHERE heartbeat_at < $1 AND id <> $2")
                .bind(cutoff)
                .bind(me)
                .fetch_all(self.read())
                .await?;
        if sweep {
            let live: Vec<String> = crate::db::query_scalar("SELECT id FROM processes WHERE heartbeat_at >= $1")
                .bind(cutoff)
                .fetch_all(self.read())
                .await?;
            let owners: Vec<String> =
                crate::db::query_scalar("SELECT DISTINCT owner FROM messages WHERE owner IS NOT NULL")
                    .fetch_all(self.read())
                    .await?;
            for owner in owners {
                if owner != me && !live.contains(&owner) && !dead.contains(&owner) {
                    dead.push(owner);
                }
            }
        }
        if dead.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin().await?;
        let mut released = 0;
        for owner in &dead {
            released += crate::db::query("UPDATE messages SET due_at = $1, owner = NULL WHERE owner = $2")
                .bind(now)
                .bind(owner)
                .execute(tx.conn())
                .await?
                .rows_affected();
            // Its claims on channel calls too: the jobs just released may make those calls.
            crate::db::query("DELETE FROM channel_calls WHERE owner = $1").bind(owner).execute(tx.conn()).await?;
            // Only if it is still silent: a process that beat meanwhile keeps its place.
            crate::db::query("DELETE FROM processes WHERE id = $1 AND heartbeat_at < $2")
                .bind(owner)
                .bind(cutoff)
                .execute(tx.conn())
                .await?;
        }
        if released > 0 {
            tx.mark_message_scheduled();
        }
        tx.commit().await?;
        Ok(released)
    }

    /// Leaves the registry on a clean shutdown, handing back whatever this process still
    /// holds (due now, for the other processes).
    pub async fn deregister(&self) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let released = crate::db::query("UPDATE messages SET due_at = $1, owner = NULL WHERE owner = $2")
            .bind(crate::now_ms())
            .bind(self.process_id().as_str())
            .execute(tx.conn())
            .await?
            .rows_affected();
        crate::db::query("DELETE FROM processes WHERE id = $1")
            .bind(self.process_id().as_str())
            .execute(tx.conn())
            .await?;
        if released > 0 {
            tx.mark_message_scheduled();
        }
        tx.commit().await?;
        Ok(released)
    }
}
