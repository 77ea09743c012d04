//! Migrations on real databases: nodes starting together apply each migration once (three
//! connections migrating a fresh database at the same moment), applied migrations are checked
//! against the embedded ones, and the three dialects' schemas describe the same tables and
//! columns. SQLite always; PostgreSQL and MariaDB when reachable (required with
//! `VELA_REQUIRE_ALL_DBS=1`, as in CI).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{connect, fresh};
use sqlx::{AnyPool, Row};
use vela_db::{Dialect, SCHEMA_VERSION};

/// Three nodes migrate a fresh database at once: all succeed and each migration is recorded
/// once, with its checksum. A changed checksum then stops the next start.
async fn concurrent_start(dialect: Dialect) {
    let Some(db) = fresh(dialect).await else {
        return;
    };
    let nodes = [
        connect(&db.url).await,
        connect(&db.url).await,
        connect(&db.url).await,
    ];
    let (a, b, c) = tokio::join!(nodes[0].migrate(), nodes[1].migrate(), nodes[2].migrate());
    for r in [a, b, c] {
        assert_eq!(r.unwrap(), SCHEMA_VERSION, "{dialect:?}");
    }
    let pool = AnyPool::connect(&db.url).await.unwrap();
    let rows = sqlx::query("SELECT version, checksum FROM vela_schema ORDER BY version")
        .fetch_all(&pool)
        .await
        .unwrap();
    let versions: Vec<i64> = rows.iter().map(|r| r.try_get("version").unwrap()).collect();
    assert_eq!(
        versions,
        (1..=SCHEMA_VERSION).collect::<Vec<_>>(),
        "{dialect:?}"
    );
    for r in &rows {
        let sum: Option<String> = r.try_get("checksum").unwrap();
        assert_eq!(sum.map(|s| s.len()), Some(64), "{dialect:?}");
    }
    // Someone edits an applied migration's record: the next start refuses.
    sqlx::query("UPDATE vela_schema SET checksum = 'edited' WHERE version = 1")
        .execute(&pool)
        .await
        .unwrap();
    let err = connect(&db.url).await.migrate().await.unwrap_err();
    assert!(err.to_string().contains("differs"), "{err}");
    // A database from a Vela that kept no checksums adopts them.
    sqlx::query("UPDATE vela_schema SET checksum = NULL")
        .execute(&pool)
        .await
        .unwrap();
    connect(&db.url).await.migrate().await.unwrap();
    let missing: i64 = sqlx::query("SELECT COUNT(*) AS n FROM vela_schema WHERE checksum IS NULL")
        .fetch_one(&pool)
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    assert_eq!(missing, 0);
    pool.close().await;
    for n in nodes {
        n.close().await;
    }
    db.drop_database().await;
}

#[tokio::test]
async fn concurrent_start_sqlite() {
    concurrent_start(Dialect::Sqlite).await;
}

#[tokio::test]
async fn concurrent_start_postgres() {
    concurrent_start(Dialect::Postgres).await;
}

#[tokio::test]
async fn concurrent_start_mariadb() {
    concurrent_start(Dialect::Mysql).await;
}

/// table -> columns of a migrated database.
async fn schema(dialect: Dialect) -> Option<BTreeMap<String, BTreeSet<String>>> {
    let db = fresh(dialect).await?;
    let node = connect(&db.url).await;
    node.migrate().await.unwrap();
    node.close().await;
    let pool = AnyPool::connect(&db.url).await.unwrap();
    let sql = match dialect {
        Dialect::Sqlite => {
            "SELECT m.name AS t, p.name AS c FROM sqlite_master m, pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'"
        }
        Dialect::Postgres => {
            "SELECT table_name::text AS t, column_name::text AS c FROM information_schema.columns \
             WHERE table_schema = current_schema()"
        }
        Dialect::Mysql => {
            "SELECT CAST(table_name AS CHAR) AS t, CAST(column_name AS CHAR) AS c FROM \
             information_schema.columns WHERE table_schema = DATABASE()"
        }
    };
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in sqlx::query(sql).fetch_all(&pool).await.unwrap() {
        let t: String = r.try_get("t").unwrap();
        let c: String = r.try_get("c").unwrap();
        out.entry(t.to_lowercase())
            .or_default()
            .insert(c.to_lowercase());
    }
    pool.close().await;
    db.drop_database().await;
    Some(out)
}

#[tokio::test]
async fn dialects_describe_the_same_schema() {
    let sqlite = schema(Dialect::Sqlite).await.unwrap();
    assert!(
        sqlite.contains_key("images") && sqlite.contains_key("tasks"),
        "{sqlite:?}"
    );
    for dialect in [Dialect::Postgres, Dialect::Mysql] {
        if let Some(other) = schema(dialect).await {
            assert_eq!(other, sqlite, "{dialect:?} differs from SQLite");
        }
    }
}
