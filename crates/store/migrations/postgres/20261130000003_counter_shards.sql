-- Engine totals in several rows per name, summed on read: concurrent completions on
-- PostgreSQL bump different rows instead of queueing on one.
ALTER TABLE engine_counters ADD COLUMN shard INTEGER NOT NULL DEFAULT 0;
ALTER TABLE engine_counters DROP CONSTRAINT engine_counters_pkey;
ALTER TABLE engine_counters ADD PRIMARY KEY (name, shard);
