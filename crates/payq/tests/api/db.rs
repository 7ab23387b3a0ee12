//! A fresh database for each test: a SQLite file in a temporary directory, or, with
//! `PAYQ_TEST_DATABASE=postgres`, a uniquely named database on the local PostgreSQL server
//! (`PAYQ_TEST_PG_URL`, default `postgres://postgres@127.0.0.1:5432/test`), dropped when the
//! test ends.

use sqlx::Connection;

/// The PostgreSQL server tests create their databases on.
pub fn pg_server_url() -> String {
    std::env::var("PAYQ_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Whether this run puts the suite on PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var("PAYQ_TEST_DATABASE").is_ok_and(|v| v == "postgres")
}

/// One test's database.
pub struct TestDb {
    pub url: String,
    /// The PostgreSQL database to drop at the end.
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A new, empty database of the backend this run uses.
    pub async fn new() -> TestDb {
        if on_postgres() { TestDb::postgres().await } else { TestDb::sqlite() }
    }

    /// A new SQLite file.
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        TestDb { url: format!("sqlite://{}/payq.db", dir.path().display()), pg_name: None, _dir: Some(dir) }
    }

    /// A new database on the PostgreSQL server. Fails (never skips) when the server cannot
    /// be reached.
    pub async fn postgres() -> TestDb {
        let server = pg_server_url();
        let name = format!("payq_t_{}", uuid::Uuid::now_v7().simple());
        let mut conn = sqlx::PgConnection::connect(&server)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL must answer at {server} for this test: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create the test database");
        let base = server.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap_or(server);
        TestDb { url: format!("{base}/{name}"), pg_name: Some(name), _dir: None }
    }

    /// A connection for looking at (or breaking) the database by hand.
    pub async fn connect(&self) -> sqlx::AnyConnection {
        sqlx::any::install_default_drivers();
        sqlx::AnyConnection::connect(&self.url).await.expect("test database opens")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else { return };
        // Drop needs its own runtime: the test's may be shutting down.
        let server = pg_server_url();
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&server).await.ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                    .execute(&mut conn)
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("note: test database was not dropped");
        }
    }
}
