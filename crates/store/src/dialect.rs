//! Where SQLite and PostgreSQL differ, in one place: SQL fragments in each dialect, and what
//! each backend guarantees that the repositories rely on (docs/architecture.md, "The store").
//! Repositories ask here; they never `match` on the backend themselves.

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One file, one writer with group commit (the embedded mode).
    Sqlite,
    /// A PostgreSQL server shared by any number of payq processes (the distributed mode).
    Postgres,
}

impl Backend {
    /// The backend a database URL names, if payq supports it.
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else {
            None
        }
    }

    /// SQL for the text field `field` of the JSON text in column `column`.
    pub(crate) fn json_text(self, column: &str, field: &str) -> String {
        match self {
            Backend::Sqlite => format!("json_extract({column}, '$.{field}')"),
            Backend::Postgres => format!("({column}::jsonb ->> '{field}')"),
        }
    }

    /// SQL that is true when the JSON array of strings in `column` holds `value`.
    pub(crate) fn json_array_has(self, column: &str, value: &str) -> String {
        match self {
            Backend::Sqlite => format!("EXISTS (SELECT 1 FROM json_each({column}) WHERE json_each.value = {value})"),
            Backend::Postgres => format!("jsonb_exists({column}::jsonb, {value})"),
        }
    }

    /// SQL that is true when `column` is one of the strings of the JSON array bound at
    /// `param`; found through `column`'s index on both backends (on PostgreSQL,
    /// `IN (SELECT …)` would be planned as a hash join over a scan of the whole table).
    pub(crate) fn in_json_texts(self, column: &str, param: &str) -> String {
        match self {
            Backend::Sqlite => format!("{column} IN (SELECT value FROM json_each({param}))"),
            Backend::Postgres => format!("{column} = ANY(ARRAY(SELECT jsonb_array_elements_text({param}::JSONB)))"),
        }
    }

    /// SQL that is true when `column` is one of the integers of the JSON array bound at
    /// `param` (as [`Backend::in_json_texts`]).
    pub(crate) fn in_json_ints(self, column: &str, param: &str) -> String {
        match self {
            Backend::Sqlite => format!("{column} IN (SELECT value FROM json_each({param}))"),
            Backend::Postgres => {
                format!("{column} = ANY(ARRAY(SELECT value::BIGINT FROM jsonb_array_elements_text({param}::JSONB)))")
            }
        }
    }

    /// A table of the elements of the JSON array bound at `param`, one row each in column
    /// `value` (its fields read with `value ->> i`).
    pub(crate) fn json_elements(self, param: &str) -> String {
        match self {
            Backend::Sqlite => format!("json_each({param})"),
            Backend::Postgres => format!("jsonb_array_elements({param}::JSONB)"),
        }
    }

    /// Whether the backend runs one writer at a time (SQLite): then no write needs a row
    /// lock, an advisory lock or `SKIP LOCKED`, and no counter needs shards to avoid queuing
    /// concurrent writers on one row. PostgreSQL runs writers concurrently.
    pub(crate) fn one_writer(self) -> bool {
        self == Backend::Sqlite
    }
}
