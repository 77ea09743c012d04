//! Throw-away databases for the tests: a SQLite file always; a fresh PostgreSQL or MariaDB
//! database when the server is reachable (required with `VELA_REQUIRE_ALL_DBS=1`, as in CI).

#![allow(clippy::unwrap_used, dead_code)]

use std::time::Duration;

use sqlx::AnyPool;
use vela_db::{Db, DbOptions, Dialect};

/// A throw-away database: its URL, and how to drop it.
pub struct Fresh {
    pub url: String,
    admin: Option<(AnyPool, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl Fresh {
    pub async fn drop_database(self) {
        if let Some((admin, drop)) = self.admin {
            let _ = sqlx::query(&drop).execute(&admin).await;
        }
    }
}

fn name() -> String {
    format!(
        "vela_mig_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

pub async fn fresh(dialect: Dialect) -> Option<Fresh> {
    sqlx::any::install_default_drivers();
    let required = std::env::var("VELA_REQUIRE_ALL_DBS").is_ok_and(|v| v == "1");
    let (admin_url, base) = match dialect {
        Dialect::Sqlite => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("vela.sqlite").display());
            return Some(Fresh {
                url,
                admin: None,
                _dir: Some(dir),
            });
        }
        Dialect::Postgres => {
            let base = std::env::var("VELA_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
            (format!("{base}/postgres"), base)
        }
        Dialect::Mysql => (
            "mysql://root@127.0.0.1:3306/mysql".to_owned(),
            "mysql://root@127.0.0.1:3306".to_owned(),
        ),
    };
    let admin = match AnyPool::connect(&admin_url).await {
        Ok(p) => p,
        Err(e) if !required => {
            eprintln!("WARNING: {admin_url} not reachable ({e}): skipped");
            return None;
        }
        Err(e) => panic!("{admin_url}: {e}"),
    };
    let db = name();
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&admin)
        .await
        .unwrap();
    let force = if dialect == Dialect::Postgres {
        " WITH (FORCE)"
    } else {
        ""
    };
    Some(Fresh {
        url: format!("{base}/{db}"),
        admin: Some((admin, format!("DROP DATABASE IF EXISTS {db}{force}"))),
        _dir: None,
    })
}

pub async fn connect(url: &str) -> Db {
    Db::connect(&DbOptions {
        url: url.to_owned(),
        max_connections: 2,
        acquire_timeout: Duration::from_secs(30),
    })
    .await
    .unwrap()
}
