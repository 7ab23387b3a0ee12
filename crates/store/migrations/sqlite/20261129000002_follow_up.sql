-- Post-payment check, ordered webhook deliveries, engine counters, resumable sim payments.

ALTER TABLE orders ADD COLUMN checked_at INTEGER;

-- Orders messages with the same (kind, key): a message waits while an earlier one is pending.
ALTER TABLE messages ADD COLUMN ordinal INTEGER;
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
