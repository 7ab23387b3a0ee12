-- payq schema (SQLite). Times are milliseconds since the Unix epoch; amounts are minor units.

CREATE TABLE merchants (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    webhook_url     TEXT,
    settings        TEXT NOT NULL,
    api_key_id      TEXT NOT NULL UNIQUE,
    api_key_hash    TEXT NOT NULL,
    webhook_secret  TEXT NOT NULL,
    created_at      INTEGER NOT NULL
);

CREATE TABLE orders (
    id                  TEXT PRIMARY KEY,
    merchant_id         TEXT NOT NULL REFERENCES merchants(id),
    merchant_order_no   TEXT NOT NULL,
    request_hash        TEXT NOT NULL,
    status              TEXT NOT NULL,
    amount              INTEGER NOT NULL CHECK (amount > 0),
    currency            TEXT NOT NULL,
    amount_refunded     INTEGER NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0 AND amount_refunded <= amount),
    description         TEXT,
    customer_id         TEXT,
    items               TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,
    paid_at             INTEGER,
    shipped_at          INTEGER,
    closed_at           INTEGER,
    cancelled_at        INTEGER,
    close_reason        TEXT,
    carrier             TEXT,
    tracking_no         TEXT,
    current_payment_id  TEXT,
    ship_reminders_sent INTEGER NOT NULL DEFAULT 0,
    version             INTEGER NOT NULL DEFAULT 0,
    UNIQUE (merchant_id, merchant_order_no)
);
CREATE INDEX orders_by_merchant ON orders (merchant_id, id);
CREATE INDEX orders_by_merchant_status ON orders (merchant_id, status, id);

CREATE TABLE payments (
    id              TEXT PRIMARY KEY,
    order_id        TEXT NOT NULL REFERENCES orders(id),
    merchant_id     TEXT NOT NULL,
    channel         TEXT NOT NULL,
    channel_txn_id  TEXT,
    status          TEXT NOT NULL,
    failure_reason  TEXT,
    amount          INTEGER NOT NULL CHECK (amount > 0),
    currency        TEXT NOT NULL,
    customer_id     TEXT,
    simulate        TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX payments_by_order ON payments (order_id);
CREATE INDEX payments_by_customer ON payments (customer_id, created_at);

CREATE TABLE refunds (
    id              TEXT PRIMARY KEY,
    order_id        TEXT NOT NULL REFERENCES orders(id),
    merchant_id     TEXT NOT NULL,
    payment_id      TEXT NOT NULL,
    amount          INTEGER NOT NULL CHECK (amount > 0),
    currency        TEXT NOT NULL,
    reason          TEXT,
    status          TEXT NOT NULL,
    execute_at      INTEGER NOT NULL,
    failure_reason  TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    version         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX refunds_by_order ON refunds (order_id);

CREATE TABLE inventory (
    merchant_id TEXT NOT NULL,
    sku         TEXT NOT NULL,
    available   INTEGER NOT NULL CHECK (available >= 0),
    PRIMARY KEY (merchant_id, sku)
);

-- The merchant's event log: one row per state change, written in the change's transaction.
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    merchant_id TEXT NOT NULL,
    type        TEXT NOT NULL,
    order_id    TEXT,
    created_at  INTEGER NOT NULL,
    body        TEXT NOT NULL
);
CREATE INDEX events_by_merchant ON events (merchant_id, seq);

CREATE TABLE idempotency_keys (
    principal     TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    status        INTEGER,
    response      TEXT,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (principal, key)
);
CREATE INDEX idempotency_by_age ON idempotency_keys (created_at);

-- The delay engine's queue: timers, commands and deliveries. `due_at` is when the row may
-- run next (a claim pushes it to the lease's end), `scheduled_at` when it was first due.
CREATE TABLE messages (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    key           TEXT,
    payload       TEXT NOT NULL,
    scheduled_at  INTEGER NOT NULL,
    due_at        INTEGER NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    claim         INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    created_at    INTEGER NOT NULL
);
CREATE INDEX messages_by_due ON messages (due_at);
CREATE INDEX messages_by_key ON messages (kind, key);

CREATE TABLE dead_letters (
    id          TEXT PRIMARY KEY,
    message_id  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    key         TEXT,
    payload     TEXT NOT NULL,
    attempts    INTEGER NOT NULL,
    last_error  TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

-- The simulated channel's own ledger: what the "bank" knows, kept apart from payq's tables.
CREATE TABLE sim_channel_txns (
    txn_id       TEXT PRIMARY KEY,
    payment_id   TEXT NOT NULL UNIQUE,
    amount       INTEGER NOT NULL,
    currency     TEXT NOT NULL,
    status       TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    refunded     INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);

CREATE TABLE sim_channel_refunds (
    refund_id  TEXT PRIMARY KEY,
    txn_id     TEXT NOT NULL,
    amount     INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
