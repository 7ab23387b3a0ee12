-- Reconciliation (docs/channels.md, "Reconciliation"): one run per merchant, real channel
-- and bill date (running again replaces its result: `generation` tells the newest start),
-- its discrepancies, and the days whose runs are scheduled.
CREATE TABLE reconciliation_runs (
    id              TEXT PRIMARY KEY,
    merchant_id     TEXT NOT NULL REFERENCES merchants(id),
    channel         TEXT NOT NULL,
    bill_date       TEXT NOT NULL,
    status          TEXT NOT NULL,
    generation      BIGINT NOT NULL DEFAULT 0,
    attempts        BIGINT NOT NULL DEFAULT 0,
    -- When the first bill request of this generation was made (it is retried for a day).
    first_asked_at  BIGINT,
    started_at      BIGINT,
    completed_at    BIGINT,
    error           TEXT,
    matched             BIGINT NOT NULL DEFAULT 0,
    missing_in_payq     BIGINT NOT NULL DEFAULT 0,
    missing_at_channel  BIGINT NOT NULL DEFAULT 0,
    amount_mismatch     BIGINT NOT NULL DEFAULT 0,
    status_mismatch     BIGINT NOT NULL DEFAULT 0,
    channel_amount  BIGINT NOT NULL DEFAULT 0,
    payq_amount     BIGINT NOT NULL DEFAULT 0,
    refunds         BIGINT NOT NULL DEFAULT 0,
    fees            BIGINT NOT NULL DEFAULT 0,
    -- The bill as the channel sent it (a zip or gzip file), base64.
    bill            TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (merchant_id, channel, bill_date)
);
CREATE INDEX reconciliation_runs_by_date ON reconciliation_runs (bill_date, channel);

CREATE TABLE reconciliation_discrepancies (
    id                  TEXT PRIMARY KEY,
    run_id              TEXT NOT NULL REFERENCES reconciliation_runs(id),
    channel             TEXT NOT NULL,
    kind                TEXT NOT NULL,
    payment_id          TEXT,
    refund_id           TEXT,
    channel_txn_id      TEXT,
    merchant_order_no   TEXT,
    payq_amount         BIGINT,
    channel_amount      BIGINT,
    payq_status         TEXT,
    channel_status      TEXT,
    resolved_at         BIGINT,
    resolved_by         TEXT,
    note                TEXT,
    created_at          BIGINT NOT NULL
);
CREATE INDEX reconciliation_discrepancies_by_run ON reconciliation_discrepancies (run_id);
CREATE INDEX reconciliation_discrepancies_open ON reconciliation_discrepancies (channel, kind) WHERE resolved_at IS NULL;

-- The days whose reconciliation is scheduled: one row per bill date, so that however many
-- processes start, each day's timer is set once.
CREATE TABLE reconciliation_days (
    bill_date       TEXT PRIMARY KEY,
    due_at          BIGINT NOT NULL
);

-- The channel's fee on a payment, in minor units, as its bill shows it.
ALTER TABLE payments ADD COLUMN fee BIGINT;
-- Reconciliation reads a day's succeeded payments and refunds per merchant.
CREATE INDEX payments_succeeded_by_merchant ON payments (merchant_id, channel, updated_at) WHERE status = 'succeeded';
CREATE INDEX refunds_succeeded_by_merchant ON refunds (merchant_id, updated_at) WHERE status = 'succeeded';
