//! Vela's metadata repository.
//!
//! One code path for every SQL database, through sqlx's `Any` driver: SQL is written once in a
//! portable subset, placeholders are produced per dialect by [`sql::Sql`], and migrations are
//! kept per dialect in `migrations/<dialect>/`. SQLite is the embedded default.
//!
//! Writes run in transactions on a dedicated writer pool (a single connection on SQLite, so
//! writers never fight over the file lock); reads use a separate pool.

pub mod federation;
pub mod identity;
mod images;
mod members;
pub mod metadefs;
mod migrate;
mod outbox;
mod purge;
pub mod quota;
mod sql;
mod tasks;

use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use sqlx::Executor;
use vela_domain::DomainError;

pub use images::Scope;
pub use migrate::SCHEMA_VERSION;
pub use outbox::{Notifications, OutboxMessage};
pub use purge::PurgeReport;

/// Repository errors.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The record does not exist.
    #[error("not found")]
    NotFound,
    /// A unique key already exists.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The image rules refused the change.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The database could not be reached in time.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// The database schema is newer than this build knows.
    #[error("database schema version {found} is newer than this Vela supports ({known})")]
    SchemaTooNew { found: i64, known: i64 },
    /// Any other database failure.
    #[error("database error: {0}")]
    Sql(#[source] sqlx::Error),
    /// The database URL names no supported database.
    #[error("{0}")]
    Config(String),
    /// The project's unified limits could not be read (Keystone unreachable, say).
    #[error("the project's limits are unavailable: {0}")]
    Limits(String),
    /// A stored value could not be understood.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::RowNotFound => DbError::NotFound,
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                DbError::Unavailable(e)
            }
            sqlx::Error::Database(ref d) if d.is_unique_violation() => {
                DbError::Conflict(d.message().to_owned())
            }
            other => DbError::Sql(other),
        }
    }
}

/// SQL dialects Vela speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
    /// MySQL and MariaDB.
    Mysql,
}

/// Connection settings.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// `sqlite:///abs/path.sqlite` (or `sqlite://relative/path.sqlite`),
    /// `postgres://user:pass@host/db`, `mysql://…` or `mariadb://…`.
    pub url: String,
    /// Connections per pool (SQLite: readers; its writer pool has one).
    pub max_connections: u32,
    /// How long a request waits for a connection.
    pub acquire_timeout: Duration,
}

/// Handle to the metadata database.
#[derive(Debug, Clone)]
pub struct Db {
    dialect: Dialect,
    read: AnyPool,
    write: AnyPool,
    notifications: Option<std::sync::Arc<Notifications>>,
}

impl Db {
    /// Connects, creating the SQLite file if needed. Does not migrate.
    pub async fn connect(opts: &DbOptions) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let (dialect, url) = if let Some(rest) = opts.url.strip_prefix("sqlite:") {
            let path = rest.trim_start_matches("//");
            let sep = if path.contains('?') { '&' } else { '?' };
            (Dialect::Sqlite, format!("sqlite://{path}{sep}mode=rwc"))
        } else if opts.url.starts_with("postgres://") || opts.url.starts_with("postgresql://") {
            (Dialect::Postgres, opts.url.clone())
        } else if let Some(rest) = opts.url.strip_prefix("mariadb://") {
            (Dialect::Mysql, format!("mysql://{rest}"))
        } else if opts.url.starts_with("mysql://") {
            (Dialect::Mysql, opts.url.clone())
        } else {
            return Err(DbError::Config(format!(
                "unsupported database URL '{}': use sqlite://, postgres:// or mysql:// (mariadb://)",
                opts.url
            )));
        };
        let pool = |max: u32, writer: bool| {
            AnyPoolOptions::new()
                .max_connections(max)
                .min_connections(1)
                .acquire_timeout(opts.acquire_timeout)
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        if dialect == Dialect::Sqlite {
                            conn.execute(
                                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; \
                                 PRAGMA busy_timeout=10000; PRAGMA foreign_keys=ON;",
                            )
                            .await?;
                        }
                        if dialect == Dialect::Mysql && writer {
                            // Rows are locked explicitly (SELECT … FOR UPDATE); without gap
                            // locks, writers to different images never deadlock. Readers keep
                            // the default REPEATABLE READ, so `begin_read` reads one snapshot.
                            conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                                .await?;
                        }
                        Ok(())
                    })
                })
        };
        let max = opts.max_connections.max(1);
        // SQLite allows one writer at a time: a single writer connection queues writes in
        // the pool instead of failing them with SQLITE_BUSY. Servers take row locks instead.
        let write = pool(if dialect == Dialect::Sqlite { 1 } else { max }, true)
            .connect(&url)
            .await?;
        let read = pool(max, false).connect(&url).await?;
        Ok(Db {
            dialect,
            read,
            write,
            notifications: None,
        })
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`), so a read-then-write transaction never fails to upgrade when another
    /// process shares the file.
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, DbError> {
        Ok(match self.dialect {
            Dialect::Sqlite => self.write.begin_with("BEGIN IMMEDIATE").await?,
            _ => self.write.begin().await?,
        })
    }

    /// Starts a read-only transaction whose reads all see one snapshot, so a record read in
    /// several queries (an image's row, then its properties, locations and tags) is never
    /// half from before a concurrent write and half from after it.
    pub(crate) async fn begin_read(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, DbError> {
        Ok(match self.dialect {
            // WAL readers see the database as of their first read.
            Dialect::Sqlite => self.read.begin().await?,
            Dialect::Postgres => {
                self.read
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?
            }
            // The read pool's sessions keep InnoDB's default REPEATABLE READ.
            Dialect::Mysql => {
                self.read
                    .begin_with("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                    .await?
            }
        })
    }

    /// The dialect of the connected database.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Brings the schema up to date; refuses a schema newer than this build.
    pub async fn migrate(&self) -> Result<i64, DbError> {
        let version = migrate::run(&self.write, self.dialect).await?;
        self.optimize().await?;
        Ok(version)
    }

    /// Refreshes the query planner's statistics where they are stale (cheap; bounded work).
    pub async fn optimize(&self) -> Result<(), DbError> {
        if self.dialect == Dialect::Sqlite {
            sqlx::query("PRAGMA analysis_limit=1000")
                .execute(&self.write)
                .await?;
            sqlx::query("PRAGMA optimize=0x10002")
                .execute(&self.write)
                .await?;
        }
        Ok(())
    }

    /// Whether writes store notifications.
    pub(crate) fn noting(&self) -> bool {
        self.notifications.is_some()
    }

    /// (pool, connections open, connections idle) of the read and write pools.
    pub fn pool_stats(&self) -> [(&'static str, u32, usize); 2] {
        [
            ("read", self.read.size(), self.read.num_idle()),
            ("write", self.write.size(), self.write.num_idle()),
        ]
    }

    /// The newest migration applied to the database (0 for an empty database), without
    /// migrating.
    pub async fn schema_version(&self) -> Result<i64, DbError> {
        match sqlx::query("SELECT MAX(version) AS v FROM vela_schema")
            .fetch_one(&self.read)
            .await
        {
            Ok(row) => Ok(sqlx::Row::try_get::<Option<i64>, _>(&row, "v")?.unwrap_or(0)),
            // No schema table yet.
            Err(sqlx::Error::Database(_)) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), DbError> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    /// Closes both pools.
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}
