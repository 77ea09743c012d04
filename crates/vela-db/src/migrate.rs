//! Embedded, versioned migrations, one tree per dialect.

use sqlx::AnyPool;
use sqlx::Row;

use crate::sql::Sql;
use crate::{DbError, Dialect};

/// (version, SQL) per dialect; the trees keep the same versions and names.
const SQLITE: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_images.sql")),
    (
        2,
        include_str!("../migrations/sqlite/0002_upload_lease.sql"),
    ),
    (3, include_str!("../migrations/sqlite/0003_identity.sql")),
    (
        4,
        include_str!("../migrations/sqlite/0004_location_metadata.sql"),
    ),
    (5, include_str!("../migrations/sqlite/0005_tasks.sql")),
];
const POSTGRES: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_images.sql")),
    (
        2,
        include_str!("../migrations/postgres/0002_upload_lease.sql"),
    ),
    (3, include_str!("../migrations/postgres/0003_identity.sql")),
    (
        4,
        include_str!("../migrations/postgres/0004_location_metadata.sql"),
    ),
    (5, include_str!("../migrations/postgres/0005_tasks.sql")),
];
const MYSQL: &[(i64, &str)] = &[
    (1, include_str!("../migrations/mysql/0001_images.sql")),
    (2, include_str!("../migrations/mysql/0002_upload_lease.sql")),
    (3, include_str!("../migrations/mysql/0003_identity.sql")),
    (
        4,
        include_str!("../migrations/mysql/0004_location_metadata.sql"),
    ),
    (5, include_str!("../migrations/mysql/0005_tasks.sql")),
];

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i64 = 5;

fn migrations(d: Dialect) -> &'static [(i64, &'static str)] {
    match d {
        Dialect::Sqlite => SQLITE,
        Dialect::Postgres => POSTGRES,
        Dialect::Mysql => MYSQL,
    }
}

/// Applies pending migrations in order, each in its own transaction.
pub async fn run(pool: &AnyPool, dialect: Dialect) -> Result<i64, DbError> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS vela_schema (version BIGINT NOT NULL PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .execute(pool)
    .await?;
    let current: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM vela_schema")
        .fetch_one(pool)
        .await?
        .try_get("v")?;
    if current > SCHEMA_VERSION {
        return Err(DbError::SchemaTooNew {
            found: current,
            known: SCHEMA_VERSION,
        });
    }
    for (version, sql) in migrations(dialect).iter().filter(|(v, _)| *v > current) {
        let mut tx = pool.begin().await?;
        let code: String = sql
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n");
        for stmt in code.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            sqlx::query(stmt).execute(&mut *tx).await?;
        }
        let mut q = Sql::new(
            dialect,
            "INSERT INTO vela_schema (version, applied_at) VALUES (",
        );
        q.bind(*version)
            .push(", ")
            .bind(vela_domain::now_micros())
            .push(")");
        sqlx::query_with(&q.text, q.args).execute(&mut *tx).await?;
        tx.commit().await?;
        tracing::info!(version, "applied database migration");
    }
    Ok(SCHEMA_VERSION)
}
