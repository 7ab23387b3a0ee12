use super::*;

fn memory() -> Mutex<rusqlite::Connection> {
    let conn = rusqlite::Connection::open_in_memory().expect("in-memory database");
    conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, note TEXT)").expect("table");
    Mutex::new(conn)
}

#[tokio::test]
async fn numbered_parameters_bind_by_number_not_by_position() {
    let conn = memory();
    query("INSERT INTO t (note, name, id) VALUES ($3, $2, $1)")
        .bind(7_i64)
        .bind("seven")
        .bind(None::<&str>)
        .execute(Executor::SqliteWriter(&conn))
        .await
        .expect("insert");
    let row = query("SELECT id, name, note FROM t WHERE id = $1 AND name = $2 AND $1 > 0")
        .bind(7_i64)
        .bind("seven")
        .fetch_one(Executor::SqliteWriter(&conn))
        .await
        .expect("row");
    assert_eq!(row.try_get::<i64>("id").expect("id"), 7);
    assert_eq!(row.try_get::<String>("name").expect("name"), "seven");
    assert_eq!(row.try_get::<Option<String>>("note").expect("note"), None);
    assert!(row.try_get::<String>("note").is_err(), "NULL is not a string");
    assert!(row.try_get::<i64>("missing").is_err());
}

#[tokio::test]
async fn scalars_counts_and_missing_rows() {
    let conn = memory();
    for id in 1..=3_i64 {
        query("INSERT INTO t (id, name) VALUES ($1, $2)")
            .bind(id)
            .bind(format!("n{id}"))
            .execute(Executor::SqliteWriter(&conn))
            .await
            .expect("insert");
    }
    let done = query("UPDATE t SET note = 'x' WHERE id >= $1")
        .bind(2_i64)
        .execute(Executor::SqliteWriter(&conn))
        .await
        .expect("update");
    assert_eq!(done.rows_affected(), 2);
    let ids: Vec<i64> =
        query_scalar("SELECT id FROM t ORDER BY id").fetch_all(Executor::SqliteWriter(&conn)).await.expect("ids");
    assert_eq!(ids, vec![1, 2, 3]);
    let none: Option<i64> = query_scalar("SELECT id FROM t WHERE id = $1")
        .bind(9_i64)
        .fetch_optional(Executor::SqliteWriter(&conn))
        .await
        .expect("query");
    assert_eq!(none, None);
    let missing = query("SELECT id FROM t WHERE id = 9").fetch_one(Executor::SqliteWriter(&conn)).await;
    assert!(matches!(missing, Err(StoreError::NotFound)));
    let deleted = query("DELETE FROM t WHERE id <= $1 RETURNING id")
        .bind(2_i64)
        .execute(Executor::SqliteWriter(&conn))
        .await
        .expect("delete");
    assert_eq!(deleted.rows_affected(), 2);
}

#[tokio::test]
async fn a_duplicate_key_is_a_conflict() {
    let conn = memory();
    let insert = || query("INSERT INTO t (id) VALUES (1)").execute(Executor::SqliteWriter(&conn));
    insert().await.expect("first insert");
    assert!(matches!(insert().await, Err(StoreError::Conflict(_))));
}
