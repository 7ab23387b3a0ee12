-- When the RabbitMQ relay published a message (always NULL with the store engine), so the
-- same retry and defer statements run on both backends.
ALTER TABLE messages ADD COLUMN published_at INTEGER;
-- Until when a relay holds a message it is publishing (NULL when none does).
ALTER TABLE messages ADD COLUMN relay_lease INTEGER;
