-- Refunds by payment, as on PostgreSQL: `payq verify` and the refund checks look a
-- payment's refunds up (the schema test in the integration suite keeps the two alike).
CREATE INDEX refunds_by_payment ON refunds (payment_id);
