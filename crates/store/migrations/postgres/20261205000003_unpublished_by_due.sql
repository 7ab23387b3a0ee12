-- The relays claim unpublished messages by due time, up to a horizon a little ahead of now
-- (`rabbitmq.publish_ahead`; docs/architecture.md, "Publishing ahead"): a timer due later
-- stays in this table until it comes within the horizon, so one that is cancelled first
-- (an order paid before its timeout) never reaches RabbitMQ. Ordered by due time, the
-- claim finds the rows within the horizon without walking past those waiting beyond it,
-- and the earliest unpublished due time is the first entry.
DROP INDEX messages_unpublished;
CREATE INDEX messages_unpublished_by_due ON messages (due_at, seq) WHERE published_at IS NULL;
