-- Published messages by due time: the relay looks for those still pending well after they
-- were due (a copy lost inside the broker) and publishes them again.
CREATE INDEX messages_published_due ON messages (due_at) WHERE published_at IS NOT NULL;
