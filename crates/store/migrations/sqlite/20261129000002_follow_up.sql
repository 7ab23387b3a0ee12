-- Post-payment check, ordered webhook deliveries, engine counters, resumable sim payments.

ALTER TABLE orders ADD COLUMN checked_at INTEGER;

-- The queue gets an integer key `seq`: claims, completions and retries address rows by it
-- (with the claim token), the due-time index covers the claim's scan, and `id` (the name
-- shown to operators) needs no index of its own and `ordinal`, which orders messages of the
-- same (kind, key): a message waits while an earlier one is pending.
CREATE TABLE messages_v2 (
    seq           INTEGER PRIMARY KEY,
    id            TEXT NOT NULL,
    kind          TEXT NOT NULL,
    key           TEXT,
    ordinal       INTEGER,
    payload       TEXT NOT NULL,
    scheduled_at  INTEGER NOT NULL,
    due_at        INTEGER NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    claim         INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    created_at    INTEGER NOT NULL
);
INSERT INTO messages_v2 (id, kind, key, payload, scheduled_at, due_at, attempts, claim, last_error, created_at)
    SELECT id, kind, key, payload, scheduled_at, due_at, attempts, claim, last_error, created_at FROM messages;
DROP TABLE messages;
ALTER TABLE messages_v2 RENAME TO messages;
CREATE INDEX messages_by_due ON messages (due_at);
CREATE INDEX messages_by_key_ordinal ON messages (kind, key, ordinal);

-- One row per event delivered to the merchant's webhook.
CREATE TABLE webhook_deliveries (
    event_id      TEXT PRIMARY KEY,
    merchant_id   TEXT NOT NULL,
    attempts      INTEGER NOT NULL,
    delivered_at  INTEGER NOT NULL
);

-- Totals of the delay engine (fired, retried, dead-lettered) by message kind.
CREATE TABLE engine_counters (
    name  TEXT PRIMARY KEY,
    n     INTEGER NOT NULL
);

-- When the simulated channel settles a pending payment (so it can resume after a restart).
ALTER TABLE sim_channel_txns ADD COLUMN settle_at INTEGER;

ALTER TABLE dead_letters ADD COLUMN ordinal INTEGER;
