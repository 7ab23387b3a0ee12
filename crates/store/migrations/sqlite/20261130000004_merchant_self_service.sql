-- Merchant self-service: the event types a merchant's webhook receives (NULL: all); since
-- when its webhook URL and filter are as they are (events before that were owed a delivery
-- by the configuration of their time); and the previous API key and webhook secret, which
-- keep working until their `_until` time after a rotation. Times are milliseconds since
-- the epoch.
ALTER TABLE merchants ADD COLUMN webhook_events TEXT;
ALTER TABLE merchants ADD COLUMN webhook_since BIGINT NOT NULL DEFAULT 0;
ALTER TABLE merchants ADD COLUMN previous_api_key_id TEXT;
ALTER TABLE merchants ADD COLUMN previous_api_key_hash TEXT;
ALTER TABLE merchants ADD COLUMN previous_api_key_until BIGINT;
ALTER TABLE merchants ADD COLUMN previous_webhook_secret TEXT;
ALTER TABLE merchants ADD COLUMN previous_webhook_secret_until BIGINT;
CREATE UNIQUE INDEX merchants_previous_api_key_id ON merchants (previous_api_key_id);
-- The operator console reads an order's timeline by order.
CREATE INDEX events_by_order ON events (order_id, seq);
