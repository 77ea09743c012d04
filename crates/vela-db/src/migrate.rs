//! Embedded, versioned migrations, one tree per dialect.

use sqlx::Row;
use sqlx::{AnyConnection, AnyPool};

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
    (
        6,
        include_str!("../migrations/sqlite/0006_key_rotation.sql"),
    ),
    (7, include_str!("../migrations/sqlite/0007_metadefs.sql")),
    (8, include_str!("../migrations/sqlite/0008_federation.sql")),
    (
        9,
        include_str!("../migrations/sqlite/0009_notifications.sql"),
    ),
    (10, include_str!("../migrations/sqlite/0010_quotas.sql")),
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
    (
        6,
        include_str!("../migrations/postgres/0006_key_rotation.sql"),
    ),
    (7, include_str!("../migrations/postgres/0007_metadefs.sql")),
    (
        8,
        include_str!("../migrations/postgres/0008_federation.sql"),
    ),
    (
        9,
        include_str!("../migrations/postgres/0009_notifications.sql"),
    ),
    (10, include_str!("../migrations/postgres/0010_quotas.sql")),
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
    (6, include_str!("../migrations/mysql/0006_key_rotation.sql")),
    (7, include_str!("../migrations/mysql/0007_metadefs.sql")),
    (8, include_str!("../migrations/mysql/0008_federation.sql")),
    (
        9,
        include_str!("../migrations/mysql/0009_notifications.sql"),
    ),
    (10, include_str!("../migrations/mysql/0010_quotas.sql")),
];

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i64 = 10;

fn migrations(d: Dialect) -> &'static [(i64, &'static str)] {
    match d {
        Dialect::Sqlite => SQLITE,
        Dialect::Postgres => POSTGRES,
        Dialect::Mysql => MYSQL,
    }
}

/// The PostgreSQL advisory lock key (and MariaDB lock name) of migrations.
const PG_LOCK: i64 = 0x0076_656c_616d_6967; // "velamig"
const MY_LOCK: &str = "vela_migrations";

/// Hex SHA-256 of a migration's text, recorded when it is applied.
pub fn checksum(sql: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// Applies pending migrations in order, under a database-wide lock, so that nodes starting
/// together apply each migration once: PostgreSQL's advisory lock, MariaDB's `GET_LOCK`,
/// SQLite's write lock (`BEGIN IMMEDIATE`, all pending migrations in one transaction).
/// Applied migrations must match the embedded ones (SHA-256 in `vela_schema.checksum`).
///
/// On PostgreSQL and SQLite a migration is one transaction. MariaDB commits DDL as it goes,
/// so its migrations are written to be re-run (`IF NOT EXISTS`) after an interruption.
pub async fn run(pool: &AnyPool, dialect: Dialect) -> Result<i64, DbError> {
    let mut conn = pool.acquire().await?;
    match dialect {
        Dialect::Sqlite => {
            sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
            match apply(&mut conn, dialect).await {
                Ok(v) => {
                    sqlx::query("COMMIT").execute(&mut *conn).await?;
                    Ok(v)
                }
                Err(e) => {
                    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                    Err(e)
                }
            }
        }
        Dialect::Postgres => {
            let mut q = Sql::new(dialect, "SELECT pg_advisory_lock(");
            q.bind(PG_LOCK).push(")");
            sqlx::query_with(&q.text, q.args)
                .execute(&mut *conn)
                .await?;
            let out = apply(&mut conn, dialect).await;
            let mut q = Sql::new(dialect, "SELECT pg_advisory_unlock(");
            q.bind(PG_LOCK).push(")");
            if sqlx::query_with(&q.text, q.args)
                .execute(&mut *conn)
                .await
                .is_err()
            {
                // The lock goes with the session.
                let _ = conn.detach();
            }
            out
        }
        Dialect::Mysql => {
            let mut q = Sql::new(dialect, "SELECT GET_LOCK(");
            q.bind(MY_LOCK.to_owned()).push(", 300) AS l");
            let got: Option<i64> = sqlx::query_with(&q.text, q.args)
                .fetch_one(&mut *conn)
                .await?
                .try_get("l")?;
            if got != Some(1) {
                return Err(DbError::Config(
                    "another node held the migration lock for 5 minutes".into(),
                ));
            }
            let out = apply(&mut conn, dialect).await;
            let mut q = Sql::new(dialect, "SELECT RELEASE_LOCK(");
            q.bind(MY_LOCK.to_owned()).push(") AS l");
            if sqlx::query_with(&q.text, q.args)
                .fetch_one(&mut *conn)
                .await
                .is_err()
            {
                let _ = conn.detach();
            }
            out
        }
    }
}

/// Under the lock: checks what was applied, applies the rest.
async fn apply(conn: &mut AnyConnection, dialect: Dialect) -> Result<i64, DbError> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS vela_schema (version BIGINT NOT NULL PRIMARY KEY, applied_at BIGINT NOT NULL, checksum VARCHAR(64))",
    )
    .execute(&mut *conn)
    .await?;
    // Tables made before checksums were kept get the column.
    let column_query = match dialect {
        Dialect::Sqlite => {
            "SELECT 1 AS one FROM pragma_table_info('vela_schema') WHERE name = 'checksum'"
        }
        Dialect::Postgres => {
            "SELECT 1 AS one FROM information_schema.columns WHERE table_schema = current_schema() \
             AND table_name = 'vela_schema' AND column_name = 'checksum'"
        }
        Dialect::Mysql => {
            "SELECT 1 AS one FROM information_schema.columns WHERE table_schema = DATABASE() \
             AND table_name = 'vela_schema' AND column_name = 'checksum'"
        }
    };
    let has_checksum = sqlx::query(column_query)
        .fetch_optional(&mut *conn)
        .await?
        .is_some();
    if !has_checksum {
        sqlx::query("ALTER TABLE vela_schema ADD COLUMN checksum VARCHAR(64)")
            .execute(&mut *conn)
            .await?;
    }
    let rows = sqlx::query("SELECT version, checksum FROM vela_schema")
        .fetch_all(&mut *conn)
        .await?;
    let mut applied = std::collections::BTreeMap::new();
    for r in &rows {
        let v: i64 = r.try_get("version")?;
        let sum: Option<String> = r.try_get("checksum")?;
        applied.insert(v, sum);
    }
    let current = applied.keys().next_back().copied().unwrap_or(0);
    if current > SCHEMA_VERSION {
        return Err(DbError::SchemaTooNew {
            found: current,
            known: SCHEMA_VERSION,
        });
    }
    for (version, sql) in migrations(dialect) {
        let expected = checksum(sql);
        match applied.get(version) {
            Some(Some(sum)) if *sum != expected => {
                return Err(DbError::Config(format!(
                    "database migration {version} differs from the one this Vela applied \
                     (checksum {sum}, expected {expected}): the schema was changed by hand or \
                     by another build"
                )))
            }
            Some(Some(_)) => {}
            Some(None) => {
                // Applied by a Vela that kept no checksums: adopt the embedded one.
                let mut q = Sql::new(dialect, "UPDATE vela_schema SET checksum = ");
                q.bind(expected).push(" WHERE version = ").bind(*version);
                sqlx::query_with(&q.text, q.args)
                    .execute(&mut *conn)
                    .await?;
            }
            None => {
                let code: String = sql
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("--"))
                    .collect::<Vec<_>>()
                    .join("\n");
                if dialect == Dialect::Sqlite {
                    // Already inside the caller's transaction.
                    execute_all(&mut *conn, &code).await?;
                    record(&mut *conn, dialect, *version, expected).await?;
                } else {
                    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                    execute_all(&mut tx, &code).await?;
                    record(&mut tx, dialect, *version, expected).await?;
                    tx.commit().await?;
                }
                tracing::info!(version, "applied database migration");
            }
        }
    }
    Ok(SCHEMA_VERSION)
}

/// Runs a migration's statements (no statement of ours has a `;` inside a literal).
async fn execute_all(conn: &mut AnyConnection, code: &str) -> Result<(), DbError> {
    for stmt in code.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        sqlx::query(stmt).execute(&mut *conn).await?;
    }
    Ok(())
}

async fn record(
    conn: &mut AnyConnection,
    dialect: Dialect,
    version: i64,
    sum: String,
) -> Result<(), DbError> {
    let mut q = Sql::new(
        dialect,
        "INSERT INTO vela_schema (version, applied_at, checksum) VALUES (",
    );
    q.bind(version)
        .push(", ")
        .bind(vela_domain::now_micros())
        .push(", ")
        .bind(sum)
        .push(")");
    sqlx::query_with(&q.text, q.args)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
