-- Engine totals in several rows per name, summed on read (PostgreSQL spreads concurrent
-- completions over them; SQLite, with one writer, uses shard 0).
CREATE TABLE engine_counters_sharded (
    name   TEXT NOT NULL,
    shard  INTEGER NOT NULL DEFAULT 0,
    n      INTEGER NOT NULL,
    PRIMARY KEY (name, shard)
);
INSERT INTO engine_counters_sharded (name, shard, n) SELECT name, 0, n FROM engine_counters;
DROP TABLE engine_counters;
ALTER TABLE engine_counters_sharded RENAME TO engine_counters;
