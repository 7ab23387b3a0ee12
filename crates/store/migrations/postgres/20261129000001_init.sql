-- payq schema (PostgreSQL): the same tables as on SQLite, so the same SQL runs on both.
-- Times are milliseconds since the Unix epoch; amounts are minor units; ids are TEXT.

CREATE TABLE merchants (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    webhook_url     TEXT,
    settings        TEXT NOT NULL,
    api_key_id      TEXT NOT NULL UNIQUE,
    api_key_hash    TEXT NOT NULL,
    webhook_secret  TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);

CREATE TABLE orders (
    id                  TEXT PRIMARY KEY,
    merchant_id         TEXT NOT NULL REFERENCES merchants(id),
    merchant_order_no   TEXT NOT NULL,
    request_hash        TEXT NOT NULL,
    status              TEXT NOT NULL,
    amount              BIGINT NOT NULL CHECK (amount > 0),
    currency            TEXT NOT NULL,
    amount_refunded     BIGINT NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0 AND amount_refunded <= amount),
    description         TEXT,
    customer_id         TEXT,
    items               TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    expires_at          BIGINT NOT NULL,
    paid_at             BIGINT,
    shipped_at          BIGINT,
    closed_at           BIGINT,
    cancelled_at        BIGINT,
    close_reason        TEXT,
    carrier             TEXT,
    tracking_no         TEXT,
    current_payment_id  TEXT,
    ship_reminders_sent BIGINT NOT NULL DEFAULT 0,
    version             BIGINT NOT NULL DEFAULT 0,
    checked_at          BIGINT,
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
    amount          BIGINT NOT NULL CHECK (amount > 0),
    currency        TEXT NOT NULL,
    customer_id     TEXT,
    simulate        TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX payments_by_order ON payments (order_id);
CREATE INDEX payments_by_customer ON payments (customer_id, created_at);

CREATE TABLE refunds (
    id              TEXT PRIMARY KEY,
    order_id        TEXT NOT NULL REFERENCES orders(id),
    merchant_id     TEXT NOT NULL,
    payment_id      TEXT NOT NULL,
    amount          BIGINT NOT NULL CHECK (amount > 0),
    currency        TEXT NOT NULL,
    reason          TEXT,
    status          TEXT NOT NULL,
    execute_at      BIGINT NOT NULL,
    failure_reason  TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    version         BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX refunds_by_order ON refunds (order_id);
CREATE INDEX refunds_by_payment ON refunds (payment_id);

CREATE TABLE inventory (
    merchant_id TEXT NOT NULL,
    sku         TEXT NOT NULL,
    available   BIGINT NOT NULL CHECK (available >= 0),
    PRIMARY KEY (merchant_id, sku)
);

-- The merchant's event log: one row per state change, written in the change's transaction.
CREATE TABLE events (
    seq         BIGSERIAL PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    merchant_id TEXT NOT NULL,
    type        TEXT NOT NULL,
    order_id    TEXT,
    created_at  BIGINT NOT NULL,
    body        TEXT NOT NULL
);
CREATE INDEX events_by_merchant ON events (merchant_id, seq);

CREATE TABLE idempotency_keys (
    principal     TEXT NOT NULL,
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    status        BIGINT,
    response      TEXT,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (principal, key)
);
CREATE INDEX idempotency_by_age ON idempotency_keys (created_at);

-- Timers, commands and deliveries. With the store engine a row is claimed when due and
-- handled by a worker; with RabbitMQ it is the outbox (a relay publishes it and stamps
-- `published_at` and the claim token) and the inbox (a delivery is handled only while its
-- row is pending with the delivery's claim token; completion deletes the row).
CREATE TABLE messages (
    seq           BIGSERIAL PRIMARY KEY,
    id            TEXT NOT NULL UNIQUE,
    kind          TEXT NOT NULL,
    key           TEXT,
    ordinal       BIGINT,
    payload       TEXT NOT NULL,
    scheduled_at  BIGINT NOT NULL,
    due_at        BIGINT NOT NULL,
    attempts      BIGINT NOT NULL DEFAULT 0,
    claim         BIGINT NOT NULL DEFAULT 0,
    last_error    TEXT,
    created_at    BIGINT NOT NULL,
    published_at  BIGINT,
    relay_lease   BIGINT
);
CREATE INDEX messages_by_due ON messages (due_at);
CREATE INDEX messages_by_key_ordinal ON messages (kind, key, ordinal);
CREATE INDEX messages_unpublished ON messages (seq) WHERE published_at IS NULL;

CREATE TABLE dead_letters (
    id          TEXT PRIMARY KEY,
    message_id  TEXT NOT NULL,
    kind        TEXT NOT NULL,
    key         TEXT,
    payload     TEXT NOT NULL,
    attempts    BIGINT NOT NULL,
    last_error  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    ordinal     BIGINT
);

-- One row per event delivered to the merchant's webhook.
CREATE TABLE webhook_deliveries (
    event_id      TEXT PRIMARY KEY,
    merchant_id   TEXT NOT NULL,
    attempts      BIGINT NOT NULL,
    delivered_at  BIGINT NOT NULL
);

-- Totals of the delay engine (fired, retried, dead-lettered) by message kind.
CREATE TABLE engine_counters (
    name  TEXT PRIMARY KEY,
    n     BIGINT NOT NULL
);

-- The simulated channel's own ledger: what the "bank" knows, kept apart from payq's tables.
CREATE TABLE sim_channel_txns (
    txn_id       TEXT PRIMARY KEY,
    payment_id   TEXT NOT NULL UNIQUE,
    amount       BIGINT NOT NULL,
    currency     TEXT NOT NULL,
    status       TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    refunded     BIGINT NOT NULL DEFAULT 0,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    settle_at    BIGINT
);

CREATE TABLE sim_channel_refunds (
    refund_id  TEXT PRIMARY KEY,
    txn_id     TEXT NOT NULL,
    amount     BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
