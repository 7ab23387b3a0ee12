-- Lanes: webhook deliveries are claimed apart from payments, timers and refunds, so a
-- merchant endpoint that hangs can never hold up the rest (0 = work, 1 = deliveries).
ALTER TABLE messages ADD COLUMN lane INTEGER NOT NULL DEFAULT 0;
UPDATE messages SET lane = 1 WHERE kind = 'webhook.deliver';
DROP INDEX messages_by_due;
CREATE INDEX messages_by_lane_due ON messages (lane, due_at);

-- The process holding a claimed message, so a process that died is found by its missing
-- heartbeat and its claims are released at once instead of after the lease. Not indexed:
-- an index would cost every claim and completion, while the scan for a dead owner's rows
-- runs only when a process has died.
ALTER TABLE messages ADD COLUMN owner TEXT;

-- Every live payq process, with its heartbeat.
CREATE TABLE processes (
    id            TEXT PRIMARY KEY,
    role          TEXT NOT NULL,
    started_at    INTEGER NOT NULL,
    heartbeat_at  INTEGER NOT NULL
);

-- An Idempotency-Key reservation is a short lease, renewed while its request runs: a
-- request cut off by a crash frees its key within seconds.
ALTER TABLE idempotency_keys ADD COLUMN locked_until INTEGER;

-- A dead letter keeps its lane, so a replay runs where the message ran.
ALTER TABLE dead_letters ADD COLUMN lane INTEGER NOT NULL DEFAULT 0;
UPDATE dead_letters SET lane = 1 WHERE kind = 'webhook.deliver';
