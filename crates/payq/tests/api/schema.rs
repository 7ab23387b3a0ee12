//! The two schemas agree: the SQLite and the PostgreSQL migrations, each run on a fresh
//! database, produce the same tables, columns (types mapped to one vocabulary, nullability,
//! defaults' presence), primary keys and indexes (columns, uniqueness, partial or not).
//! The migrations are written twice, in two dialects (docs/architecture.md); this is what
//! keeps them one schema.

use sqlx::{Connection, Row};
use std::collections::BTreeSet;

/// One fact about the schema, written the same way for both backends.
type Facts = BTreeSet<String>;

/// A column type in the shared vocabulary: what payq stores, not how a dialect spells it.
fn kind(declared: &str) -> String {
    let t = declared.to_ascii_lowercase();
    let k = match t.as_str() {
        "text" | "character varying" | "varchar" => "text",
        "integer" | "bigint" | "smallint" | "int" | "int8" | "int4" => "integer",
        "boolean" | "bool" => "integer", // SQLite keeps a boolean as 0/1
        "blob" | "bytea" => "bytes",
        "real" | "double precision" | "float8" => "real",
        other => return format!("unmapped:{other}"),
    };
    k.to_owned()
}

async fn sqlite_facts(url: &str) -> Facts {
    let mut conn = sqlx::SqliteConnection::connect(url).await.expect("SQLite opens");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .expect("tables");
    let mut facts = Facts::new();
    for t in &tables {
        facts.insert(format!("table {t}"));
        let cols = sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA table_info('{t}')")))
            .fetch_all(&mut conn)
            .await
            .expect("columns");
        let mut pk: Vec<(i64, String)> = Vec::new();
        let pk_columns = cols.iter().filter(|c| c.get::<i64, _>("pk") > 0).count();
        for c in &cols {
            let name: String = c.get("name");
            let ty: String = c.get("type");
            let notnull: i64 = c.get("notnull");
            let order: i64 = c.get("pk");
            let default: Option<String> = c.get("dflt_value");
            // A primary key column is NOT NULL in PostgreSQL whatever it says; a lone
            // INTEGER PRIMARY KEY is SQLite's rowid, numbered as a BIGSERIAL is.
            let not_null = notnull == 1 || order > 0;
            let numbered = pk_columns == 1 && order == 1 && ty.eq_ignore_ascii_case("integer");
            facts.insert(format!(
                "column {t}.{name} {} {} {}",
                kind(&ty),
                if not_null { "not null" } else { "null" },
                if default.is_some() || numbered { "default" } else { "no default" }
            ));
            if order > 0 {
                pk.push((order, name));
            }
        }
        pk.sort();
        let pk: Vec<String> = pk.into_iter().map(|(_, n)| n).collect();
        if !pk.is_empty() {
            facts.insert(format!("primary key {t}({})", pk.join(",")));
        }
        let indexes = sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA index_list('{t}')")))
            .fetch_all(&mut conn)
            .await
            .expect("idx");
        for i in &indexes {
            let name: String = i.get("name");
            let unique: i64 = i.get("unique");
            let origin: String = i.get("origin");
            let partial: i64 = i.get("partial");
            if origin == "pk" {
                continue;
            }
            let cols: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA index_info('{name}')")))
                .fetch_all(&mut conn)
                .await
                .expect("index columns")
                .iter()
                .map(|r| r.get::<Option<String>, _>("name").unwrap_or_else(|| "<expr>".into()))
                .collect();
            facts.insert(index_fact(t, &cols, unique == 1, partial == 1));
        }
    }
    facts
}

fn index_fact(table: &str, cols: &[String], unique: bool, partial: bool) -> String {
    format!(
        "{}index {table}({}){}",
        if unique { "unique " } else { "" },
        cols.join(","),
        if partial { " where …" } else { "" }
    )
}

async fn postgres_facts(url: &str) -> Facts {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("PostgreSQL opens");
    let mut facts = Facts::new();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' \
         AND table_type = 'BASE TABLE' AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut conn)
    .await
    .expect("tables");
    for t in &tables {
        facts.insert(format!("table {t}"));
    }
    let cols = sqlx::query(
        "SELECT table_name::text AS t, column_name::text AS c, data_type::text AS ty, is_nullable::text AS n, \
         column_default IS NOT NULL AS d FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut conn)
    .await
    .expect("columns");
    for c in &cols {
        let (t, name, ty, nullable, default): (String, String, String, String, bool) =
            (c.get("t"), c.get("c"), c.get("ty"), c.get("n"), c.get("d"));
        facts.insert(format!(
            "column {t}.{name} {} {} {}",
            kind(&ty),
            if nullable == "NO" { "not null" } else { "null" },
            if default { "default" } else { "no default" }
        ));
    }
    // Every index with its columns in order, uniqueness, partial predicate and whether it
    // backs the primary key.
    let indexes = sqlx::query(
        "SELECT t.relname::text AS t, ix.indisunique AS u, ix.indisprimary AS p, ix.indpred IS NOT NULL AS w, \
         ARRAY(SELECT COALESCE(a.attname::text, '<expr>') FROM unnest(ix.indkey) WITH ORDINALITY AS k(n, o) \
               LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.n ORDER BY k.o) AS cols \
         FROM pg_index ix JOIN pg_class t ON t.oid = ix.indrelid JOIN pg_namespace s ON s.oid = t.relnamespace \
         WHERE s.nspname = 'public' AND t.relname <> '_sqlx_migrations'",
    )
    .fetch_all(&mut conn)
    .await
    .expect("indexes");
    for i in &indexes {
        let (t, unique, primary, partial, cols): (String, bool, bool, bool, Vec<String>) =
            (i.get("t"), i.get("u"), i.get("p"), i.get("w"), i.get("cols"));
        if primary {
            facts.insert(format!("primary key {t}({})", cols.join(",")));
        } else {
            facts.insert(index_fact(&t, &cols, unique, partial));
        }
    }
    facts
}

/// The differences kept on purpose, each with its reason; anything else is a mistake.
const ONLY_POSTGRES: [(&str, &str); 2] = [
    (
        "unique index messages(id)",
        "the distributed mode (which runs on PostgreSQL only) finds a dead-lettered delivery's \
         row by id; the embedded engine addresses rows by seq only and saves the index on every timer",
    ),
    (
        "index messages(due_at,seq) where …",
        "the outbox relay's scan of unpublished rows in due order (distributed mode, PostgreSQL \
         only); on SQLite no row is ever published, so the index would hold every row",
    ),
];

#[tokio::test]
async fn sqlite_and_postgresql_migrations_build_the_same_schema() {
    if tokio::net::TcpStream::connect("127.0.0.1:5432").await.is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI: PostgreSQL must answer on 127.0.0.1:5432");
        eprintln!("skipping: PostgreSQL is not reachable");
        return;
    }
    let sqlite = crate::db::TestDb::sqlite();
    let postgres = crate::db::TestDb::postgres().await;
    for db in [&sqlite, &postgres] {
        payq_store::Store::open(&db.url).await.expect("migrations run");
    }
    let lite = sqlite_facts(&sqlite.url).await;
    let pg = postgres_facts(&postgres.url).await;
    assert!(lite.len() > 100, "the schema was read: {lite:?}");
    let only_sqlite: Vec<&String> = lite.difference(&pg).collect();
    let only_postgres: Vec<&String> =
        pg.difference(&lite).filter(|f| !ONLY_POSTGRES.iter().any(|(kept, _)| f.as_str() == *kept)).collect();
    for (kept, why) in ONLY_POSTGRES {
        assert!(pg.contains(kept) && !lite.contains(kept), "{kept} is no longer a difference ({why})");
    }
    assert!(
        only_sqlite.is_empty() && only_postgres.is_empty(),
        "the schemas differ\nonly in SQLite:\n  {}\nonly in PostgreSQL:\n  {}",
        only_sqlite.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n  "),
        only_postgres.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n  ")
    );
}
