//! Quota usage and the per-project lock of quota-checked changes, and the unified limits of
//! the embedded identity service.
//!
//! A guarded change locks its project's `quota_locks` row (SQLite: the write lock every
//! write transaction already holds), then counts the project's images (less the changed
//! image's stored share) and lets the guard decide, in the same transaction as the change. Concurrent guarded changes of one
//! project therefore decide one after the other, each seeing what the previous committed.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use std::sync::Arc;

use vela_domain::quota::{self, LimitSource, Limits, Resource, Usage};
use vela_domain::{DomainError, Image};

use crate::images::text;
use crate::{Db, DbError, Dialect};

/// A quota decision on a change: given the limits, the usage of the project's other images,
/// and the image before and after the change.
pub type Check<'a> =
    Box<dyn Fn(&Limits, &Usage, &Image, &Image) -> Result<(), DomainError> + Send + Sync + 'a>;

/// A quota check run inside a change's transaction, under the project's lock, on the limits
/// the request's early check used. A refusal on limits that may come from a cache is
/// checked again on fresh ones, so a raised limit is never refused.
pub struct Guard<'a> {
    pub project: String,
    /// The resources the check looks at.
    need: Vec<Resource>,
    limits: Limits,
    quotas: Quotas,
    check: Check<'a>,
}

/// A unified limit of the embedded identity service: a registered default (no project) or a
/// project's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnifiedLimit {
    pub id: String,
    pub project_id: Option<String>,
    pub service_id: String,
    /// `None`: no region.
    pub region_id: Option<String>,
    pub resource_name: String,
    pub limit: i64,
    pub description: Option<String>,
}

impl UnifiedLimit {
    /// A new limit id (Keystone's form: 32 hex digits).
    pub fn new_id() -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }
}

/// The columns of a project limit, as [`limit_from_row`] reads them.
const PROJECT_LIMITS: &str = "SELECT id, project_id, service_id, region_id, resource_name, \
     resource_limit AS lim, description FROM project_limits";

const RECEIVING: &str = "('saving', 'uploading', 'importing')";
const COPYING: &str = "EXISTS (SELECT 1 FROM image_properties p WHERE p.image_id = i.id \
     AND p.name = 'os_glance_importing_to_stores' AND p.value <> '')";

impl Db {
    fn int_cast(&self, expr: &str) -> String {
        let ty = match self.dialect {
            Dialect::Sqlite => "INTEGER",
            Dialect::Postgres => "BIGINT",
            Dialect::Mysql => "SIGNED",
        };
        format!("CAST(COALESCE({expr}, 0) AS {ty})")
    }

    /// The usage of `owner`'s images in the resources of `need` (the others read 0). Counting
    /// images reads one index range; sizes and uploads look at each image.
    async fn usage_on(
        &self,
        conn: &mut AnyConnection,
        owner: &str,
        need: &[Resource],
    ) -> Result<Usage, DbError> {
        let column = |r: Resource, expr: &str| {
            if need.contains(&r) {
                self.int_cast(expr)
            } else {
                "0".to_owned()
            }
        };
        let size = column(
            Resource::ImageSizeTotal,
            "SUM(CASE WHEN i.size > 0 THEN i.size * \
             (SELECT COUNT(*) FROM image_locations l WHERE l.image_id = i.id) ELSE 0 END)",
        );
        let stage = column(
            Resource::ImageStageTotal,
            &format!(
                "SUM(CASE WHEN i.size > 0 AND (i.status IN ('uploading', 'importing') OR \
                 (i.status <> 'saving' AND {COPYING})) THEN i.size ELSE 0 END)"
            ),
        );
        let uploading = column(
            Resource::ImageCountUploading,
            &format!("SUM(CASE WHEN i.status IN {RECEIVING} OR {COPYING} THEN 1 ELSE 0 END)"),
        );
        let mut q = self.sql(&format!(
            "SELECT {size} AS size_bytes, {stage} AS stage_bytes, COUNT(*) AS n, \
             {uploading} AS uploading FROM images i WHERE i.deleted = 0 \
             AND i.status NOT IN ('killed', 'deleted', 'pending_delete') AND i.owner = "
        ));
        q.bind(owner.to_owned());
        let row = sqlx::query_with(&q.text, q.args)
            .fetch_one(&mut *conn)
            .await?;
        let int = |col: &str| -> Result<i64, DbError> {
            // A literal 0 reads as a 32-bit integer on some databases.
            match row.try_get::<i64, _>(col) {
                Ok(v) => Ok(v),
                Err(_) => Ok(i64::from(row.try_get::<i32, _>(col)?)),
            }
        };
        Ok(Usage {
            size_bytes: int("size_bytes")?,
            stage_bytes: int("stage_bytes")?,
            count: int("n")?,
            uploading: int("uploading")?,
        })
    }

    /// The usage of `owner`'s images in the resources of `need`.
    pub async fn usage(&self, owner: &str, need: &[Resource]) -> Result<Usage, DbError> {
        let mut conn = self.read.acquire().await?;
        self.usage_on(&mut conn, owner, need).await
    }

    /// Makes sure the project's lock row exists, outside any transaction (so that creating
    /// it never races inside one).
    pub(crate) async fn ensure_lock_row(&self, guard: &Guard<'_>) -> Result<(), DbError> {
        // SQLite serialises writers with its own lock; elsewhere a row, made once.
        let project = guard.project.as_str();
        if self.dialect == Dialect::Sqlite || guard.quotas.has_lock_row(project) {
            return Ok(());
        }
        let mut q = self.sql(match self.dialect {
            Dialect::Sqlite => "INSERT OR IGNORE INTO quota_locks (project, n) VALUES (",
            Dialect::Mysql => "INSERT IGNORE INTO quota_locks (project, n) VALUES (",
            Dialect::Postgres => "INSERT INTO quota_locks (project, n) VALUES (",
        });
        q.bind(project.to_owned()).push(", 0)");
        if self.dialect == Dialect::Postgres {
            q.push(" ON CONFLICT (project) DO NOTHING");
        }
        sqlx::query_with(&q.text, q.args)
            .execute(&self.write)
            .await?;
        guard.quotas.made_lock_row(project);
        Ok(())
    }

    /// Runs `guard` in the transaction `conn`: takes the project's lock, counts the
    /// project's other images, and checks.
    /// `stored`: `before` is the image as the database holds it (not a new image's blank).
    pub(crate) async fn run_guard(
        &self,
        conn: &mut AnyConnection,
        guard: Guard<'_>,
        before: &Image,
        after: &Image,
        stored: bool,
    ) -> Result<(), DbError> {
        if self.dialect != Dialect::Sqlite {
            let mut q = self.sql("SELECT n FROM quota_locks WHERE project = ");
            q.bind(guard.project.clone()).push(" FOR UPDATE");
            sqlx::query_with(&q.text, q.args)
                .fetch_optional(&mut *conn)
                .await?;
        }
        // The project's usage less this image's stored share: counting by the index alone,
        // without reading rows to leave the image out.
        let mut others = self
            .usage_on(&mut *conn, &guard.project, &guard.need)
            .await?;
        if stored && before.owner.as_deref() == Some(guard.project.as_str()) {
            others = others.minus(Usage::of(before));
        }
        match (guard.check)(&guard.limits, &others, before, after) {
            Err(DomainError::TooLarge(_)) if guard.quotas.source.caches() => {
                let fresh = guard.quotas.limits(&guard.project, true).await?;
                (guard.check)(&fresh, &others, before, after)?;
                Ok(())
            }
            other => Ok(other?),
        }
    }

    /// The registered defaults (`project: None`) or one project's limits of a service in a
    /// region (`None`: without a region).
    pub async fn unified_limits(
        &self,
        project: Option<&str>,
        service_id: Option<&str>,
        region_id: Option<&str>,
    ) -> Result<Vec<UnifiedLimit>, DbError> {
        let mut q = match project {
            None => self.sql(
                "SELECT id, NULL AS project_id, service_id, region_id, resource_name, \
                 default_limit AS lim, description FROM registered_limits WHERE 1 = 1",
            ),
            Some(p) => {
                let mut q = self.sql(&format!("{PROJECT_LIMITS} WHERE project_id = "));
                q.bind(p.to_owned());
                q
            }
        };
        if let Some(s) = service_id {
            q.push(" AND service_id = ").bind(s.to_owned());
        }
        if let Some(r) = region_id {
            q.push(" AND region_id = ").bind(r.to_owned());
        }
        q.push(" ORDER BY resource_name, id");
        let rows = sqlx::query_with(&q.text, q.args)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(limit_from_row).collect()
    }

    /// Every project limit.
    pub async fn all_project_limits(&self) -> Result<Vec<UnifiedLimit>, DbError> {
        let q = self.sql(&format!(
            "{PROJECT_LIMITS} ORDER BY project_id, resource_name"
        ));
        let rows = sqlx::query_with(&q.text, q.args)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(limit_from_row).collect()
    }

    /// One limit by id, registered or project.
    pub async fn unified_limit(&self, id: &str) -> Result<Option<UnifiedLimit>, DbError> {
        let registered = self.unified_limits(None, None, None).await?;
        if let Some(l) = registered.into_iter().find(|l| l.id == id) {
            return Ok(Some(l));
        }
        let mut q = self.sql(&format!("{PROJECT_LIMITS} WHERE id = "));
        q.bind(id.to_owned());
        let row = sqlx::query_with(&q.text, q.args)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(limit_from_row).transpose()
    }

    /// Stores a limit: a new one, or new values of an existing id. The same resource twice
    /// for one service, region (and project) is a conflict.
    pub async fn put_unified_limit(&self, l: &UnifiedLimit) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        for table in ["registered_limits", "project_limits"] {
            let mut q = self.sql(&format!("DELETE FROM {table} WHERE id = "));
            q.bind(l.id.clone());
            sqlx::query_with(&q.text, q.args).execute(&mut *tx).await?;
        }
        let region = l.region_id.clone().unwrap_or_default();
        let mut q = match &l.project_id {
            None => self.sql(
                "INSERT INTO registered_limits (id, service_id, region_id, resource_name, \
                 default_limit, description) VALUES (",
            ),
            Some(p) => {
                let mut q = self.sql(
                    "INSERT INTO project_limits (project_id, id, service_id, region_id, \
                     resource_name, resource_limit, description) VALUES (",
                );
                q.bind(p.clone()).push(", ");
                q
            }
        };
        q.bind(l.id.clone())
            .push(", ")
            .bind(l.service_id.clone())
            .push(", ")
            .bind(region)
            .push(", ")
            .bind(l.resource_name.clone())
            .push(", ")
            .bind(l.limit)
            .push(", ")
            .bind(l.description.clone())
            .push(")");
        sqlx::query_with(&q.text, q.args)
            .execute(&mut *tx)
            .await
            .map_err(|e| match DbError::from(e) {
                DbError::Conflict(_) => DbError::Conflict(format!(
                    "Duplicate entry found with resource_name {} for the service and region",
                    l.resource_name
                )),
                other => other,
            })?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes a limit; false when there was none.
    pub async fn delete_unified_limit(&self, id: &str) -> Result<bool, DbError> {
        let mut n = 0;
        for table in ["registered_limits", "project_limits"] {
            let mut q = self.sql(&format!("DELETE FROM {table} WHERE id = "));
            q.bind(id.to_owned());
            n += sqlx::query_with(&q.text, q.args)
                .execute(&self.write)
                .await?
                .rows_affected();
        }
        Ok(n > 0)
    }
}

fn limit_from_row(row: &AnyRow) -> Result<UnifiedLimit, DbError> {
    let region = text(row, "region_id")?;
    let opt_text = |col: &str| -> Result<Option<String>, DbError> {
        match row.try_get::<Option<String>, _>(col) {
            Ok(v) => Ok(v),
            Err(_) => Ok(row
                .try_get::<Option<Vec<u8>>, _>(col)?
                .map(|b| String::from_utf8_lossy(&b).into_owned())),
        }
    };
    Ok(UnifiedLimit {
        id: text(row, "id")?,
        project_id: opt_text("project_id")?,
        service_id: text(row, "service_id")?,
        region_id: (!region.is_empty()).then_some(region),
        resource_name: text(row, "resource_name")?,
        limit: row.try_get("lim")?,
        description: opt_text("description")?,
    })
}

/// Quota enforcement: the source of limits, and the checks the API and the importer make.
#[derive(Clone)]
pub struct Quotas {
    source: Arc<dyn LimitSource>,
    /// Projects whose lock row this process knows exists (forgotten past [`MAX_KNOWN`]).
    lock_rows: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

/// Most projects remembered as having a lock row.
const MAX_KNOWN: usize = 100_000;

impl std::fmt::Debug for Quotas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Quotas")
    }
}

impl Quotas {
    pub fn new(source: Arc<dyn LimitSource>) -> Self {
        Quotas {
            source,
            lock_rows: Default::default(),
        }
    }

    fn has_lock_row(&self, project: &str) -> bool {
        self.lock_rows
            .lock()
            .is_ok_and(|known| known.contains(project))
    }

    fn made_lock_row(&self, project: &str) {
        if let Ok(mut known) = self.lock_rows.lock() {
            if known.len() >= MAX_KNOWN {
                known.clear();
            }
            known.insert(project.to_owned());
        }
    }

    /// The project's limits; `fresh` skips the source's cache.
    pub async fn limits(&self, project: &str, fresh: bool) -> Result<Limits, DbError> {
        self.source
            .limits(project, fresh)
            .await
            .map_err(DbError::Limits)
    }

    /// Checks `deltas` against the project's current usage, outside any transaction (the
    /// early checks Glance makes). A refusal is confirmed with fresh limits first, so a cached
    /// limit never refuses what the current one allows. Returns the limits used.
    pub async fn precheck(
        &self,
        db: &Db,
        project: &str,
        deltas: &[(Resource, i64)],
    ) -> Result<Limits, DbError> {
        let need: Vec<Resource> = deltas.iter().map(|d| d.0).collect();
        let limits = self.limits(project, false).await?;
        if limits.unlimited(&need) {
            return Ok(limits);
        }
        let usage = db.usage(project, &need).await?;
        if quota::enforce(project, &limits, &usage, deltas).is_ok() {
            return Ok(limits);
        }
        let limits = self.limits(project, true).await?;
        quota::enforce(project, &limits, &usage, deltas)?;
        Ok(limits)
    }

    /// A guard of a change of `project`'s images, deciding with `check` on `limits`; none
    /// when every resource it needs is unlimited.
    pub fn guard<'a>(
        &self,
        project: impl Into<String>,
        limits: Limits,
        need: Vec<Resource>,
        check: impl Fn(&Limits, &Usage, &Image, &Image) -> Result<(), DomainError> + Send + Sync + 'a,
    ) -> Option<Guard<'a>> {
        if limits.unlimited(&need) {
            return None;
        }
        Some(Guard {
            project: project.into(),
            need,
            limits,
            quotas: self.clone(),
            check: Box::new(check),
        })
    }

    /// The usage and limit of each resource, for `/v2/info/usage`.
    pub async fn report(
        &self,
        db: &Db,
        project: &str,
    ) -> Result<Vec<(Resource, i64, i64)>, DbError> {
        let usage = db.usage(project, &Resource::ALL).await?;
        let limits = self.limits(project, false).await?;
        Ok(Resource::ALL
            .iter()
            .map(|&r| (r, usage.of_resource(r), limits.of(r)))
            .collect())
    }
}

/// The image service's id in the embedded identity service's catalog.
pub const IMAGE_SERVICE_ID: &str = "vela-image";

/// Limits kept by the embedded identity service (in this database): the image service's
/// limits in `region` or in no region. Read fresh every time; they are one query away.
pub struct DbLimits {
    db: Db,
    region: String,
}

impl DbLimits {
    pub fn new(db: Db, region: impl Into<String>) -> Self {
        DbLimits {
            db,
            region: region.into(),
        }
    }

    async fn read(&self, project: &str) -> Result<Limits, DbError> {
        let ours = |l: &UnifiedLimit| l.region_id.as_deref().is_none_or(|r| r == self.region);
        let defaults = self
            .db
            .unified_limits(None, Some(IMAGE_SERVICE_ID), None)
            .await?;
        let own = self
            .db
            .unified_limits(Some(project), Some(IMAGE_SERVICE_ID), None)
            .await?;
        Ok(Limits::resolve(
            defaults
                .iter()
                .filter(|l| ours(l))
                .map(|l| (l.resource_name.as_str(), l.limit)),
            own.iter()
                .filter(|l| ours(l))
                .map(|l| (l.resource_name.as_str(), l.limit)),
        ))
    }
}

impl LimitSource for DbLimits {
    fn limits<'a>(
        &'a self,
        project: &'a str,
        _fresh: bool,
    ) -> quota::BoxFuture<'a, Result<Limits, String>> {
        Box::pin(async move { self.read(project).await.map_err(|e| e.to_string()) })
    }
}
