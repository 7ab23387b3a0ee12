-- Claims on the calls payq makes to a payment channel (create, query, close, refund), so
-- that a request and a job, or two deliveries of one job, never make the same call at the
-- same time, and a payment is created at its channel once (docs/architecture.md, "One
-- call per channel step"). `id` names the call (`create:pay_…`); `owner` is the process
-- holding it (released by the lifeline when that process dies); `claimed_until` is the end
-- of the lease in Unix milliseconds, or the largest BIGINT once the call is done for good.
CREATE TABLE channel_calls (
    id TEXT PRIMARY KEY,
    owner TEXT,
    claimed_until BIGINT NOT NULL
);
CREATE INDEX channel_calls_owner ON channel_calls (owner) WHERE owner IS NOT NULL;
