//! Task queries. A task and the image it works on change together: [`Db::create_task_for_image`]
//! and [`Db::update_image_and_task`] lock the image row, then the task row (always in that
//! order), and write both in one transaction.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use vela_domain::notify;
use vela_domain::task::{Task, TaskQuery, TaskStatus, TaskType};
use vela_domain::{DomainError, Image, ImageId, Micros};

use crate::images::text;
use crate::sql::Sql;
use crate::{Db, DbError};

const COLUMNS: &str = "id, type, status, owner, user_id, request_id, image_id, input, result, \
    message, expires_at, created_at, updated_at, deleted, deleted_at, lease_until, runner";

fn corrupt(what: &str, v: &str) -> DbError {
    DbError::Corrupt(format!("{what} '{v}'"))
}

/// A nullable TEXT column (MySQL may report it as bytes).
pub(crate) fn opt_text(row: &AnyRow, col: &str) -> Result<Option<String>, DbError> {
    match row.try_get::<Option<String>, _>(col) {
        Ok(v) => Ok(v),
        Err(_) => row
            .try_get::<Option<Vec<u8>>, _>(col)?
            .map(String::from_utf8)
            .transpose()
            .map_err(|_| corrupt("non-UTF-8 text in", col)),
    }
}

fn json_column(row: &AnyRow, col: &str) -> Result<Option<serde_json::Value>, DbError> {
    opt_text(row, col)?
        .map(|s| serde_json::from_str(&s).map_err(|_| corrupt("invalid JSON in", col)))
        .transpose()
}

fn task_from_row(row: &AnyRow) -> Result<Task, DbError> {
    let kind = text(row, "type")?;
    let status = text(row, "status")?;
    Ok(Task {
        id: text(row, "id")?,
        kind: TaskType::parse(&kind).ok_or_else(|| corrupt("task type", &kind))?,
        status: TaskStatus::parse(&status).ok_or_else(|| corrupt("task status", &status))?,
        owner: opt_text(row, "owner")?,
        user_id: opt_text(row, "user_id")?,
        request_id: opt_text(row, "request_id")?,
        image_id: opt_text(row, "image_id")?,
        input: json_column(row, "input")?,
        result: json_column(row, "result")?,
        message: text(row, "message")?,
        expires_at: row.try_get("expires_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        deleted: row.try_get::<i64, _>("deleted")? != 0,
        deleted_at: row.try_get("deleted_at")?,
        lease_until: row.try_get("lease_until")?,
        runner: opt_text(row, "runner")?,
    })
}

fn json_text(v: &Option<serde_json::Value>) -> Option<String> {
    v.as_ref().map(|v| v.to_string())
}

impl Db {
    async fn fetch_task(
        &self,
        conn: &mut AnyConnection,
        id: &str,
        for_update: bool,
    ) -> Result<Task, DbError> {
        let mut q = self.sql(&format!(
            "SELECT {COLUMNS} FROM tasks WHERE deleted = 0 AND id = "
        ));
        q.bind(id.to_owned());
        if for_update && self.dialect != crate::Dialect::Sqlite {
            q.push(" FOR UPDATE");
        }
        let row = sqlx::query_with(&q.text, q.args)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or(DbError::NotFound)?;
        task_from_row(&row)
    }

    async fn insert_task(&self, conn: &mut AnyConnection, t: &Task) -> Result<(), DbError> {
        let mut q = self.sql(&format!("INSERT INTO tasks ({COLUMNS}) VALUES ("));
        q.bind(t.id.clone()).push(", ");
        q.bind(t.kind.as_str().to_owned()).push(", ");
        q.bind(t.status.as_str().to_owned()).push(", ");
        q.bind(t.owner.clone()).push(", ");
        q.bind(t.user_id.clone()).push(", ");
        q.bind(t.request_id.clone()).push(", ");
        q.bind(t.image_id.clone()).push(", ");
        q.bind(json_text(&t.input)).push(", ");
        q.bind(json_text(&t.result)).push(", ");
        q.bind(t.message.clone()).push(", ");
        q.bind(t.expires_at).push(", ");
        q.bind(t.created_at).push(", ");
        q.bind(t.updated_at).push(", ");
        q.bind(t.deleted as i64).push(", ");
        q.bind(t.deleted_at).push(", ");
        q.bind(t.lease_until).push(", ");
        q.bind(t.runner.clone()).push(")");
        sqlx::query_with(&q.text, q.args)
            .execute(&mut *conn)
            .await?;
        if self.noting() {
            self.enqueue(conn, notify::task_created(t)).await?;
        }
        Ok(())
    }

    async fn write_task(
        &self,
        conn: &mut AnyConnection,
        before: &Task,
        after: &mut Task,
    ) -> Result<bool, DbError> {
        if after == before {
            return Ok(false);
        }
        if after.updated_at == before.updated_at {
            after.updated_at = vela_domain::now_micros().max(before.updated_at);
        }
        let mut q = self.sql("UPDATE tasks SET status = ");
        q.bind(after.status.as_str().to_owned());
        q.push(", owner = ").bind(after.owner.clone());
        q.push(", image_id = ").bind(after.image_id.clone());
        q.push(", input = ").bind(json_text(&after.input));
        q.push(", result = ").bind(json_text(&after.result));
        q.push(", message = ").bind(after.message.clone());
        q.push(", expires_at = ").bind(after.expires_at);
        q.push(", updated_at = ").bind(after.updated_at);
        q.push(", deleted = ").bind(after.deleted as i64);
        q.push(", deleted_at = ").bind(after.deleted_at);
        q.push(", lease_until = ").bind(after.lease_until);
        q.push(", runner = ").bind(after.runner.clone());
        q.push(" WHERE id = ").bind(after.id.clone());
        sqlx::query_with(&q.text, q.args)
            .execute(&mut *conn)
            .await?;
        if self.noting() {
            self.enqueue(conn, notify::task_changed(before, after))
                .await?;
        }
        Ok(true)
    }

    /// Inserts a task with no image.
    pub async fn create_task(&self, task: &Task) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        self.insert_task(&mut tx, task).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Lets `f` change the image (e.g. take its import lock) and, if it succeeds, inserts
    /// `task`, in one transaction.
    pub async fn create_task_for_image<T, F>(
        &self,
        image: &ImageId,
        task: &Task,
        f: F,
    ) -> Result<(Image, T), DbError>
    where
        F: FnOnce(&mut Image) -> Result<T, DomainError>,
    {
        let mut tx = self.begin_write().await?;
        let before = self.fetch_one(&mut tx, image, false, true).await?;
        let mut after = before.clone();
        let out = f(&mut after)?;
        self.write_image(&mut tx, &before, &mut after).await?;
        self.insert_task(&mut tx, task).await?;
        tx.commit().await?;
        Ok((after, out))
    }

    /// A task that is not deleted (expired ones included: callers decide).
    pub async fn get_task(&self, id: &str) -> Result<Task, DbError> {
        let mut conn = self.read.acquire().await?;
        self.fetch_task(&mut conn, id, false).await
    }

    /// Reads the task inside a write transaction, lets `f` change it, and stores the result
    /// if `f` succeeds.
    pub async fn update_task<T, F>(&self, id: &str, f: F) -> Result<(Task, T), DbError>
    where
        F: FnOnce(&mut Task) -> Result<T, DomainError>,
    {
        let mut tx = self.begin_write().await?;
        let before = self.fetch_task(&mut tx, id, true).await?;
        let mut after = before.clone();
        let out = f(&mut after)?;
        if self.write_task(&mut tx, &before, &mut after).await? {
            tx.commit().await?;
        }
        Ok((after, out))
    }

    /// Changes an image and one of its tasks together. The image is read with deleted ones
    /// included (work on a deleted image must still be finished and undone).
    pub async fn update_image_and_task<T, F>(
        &self,
        image: &ImageId,
        task: &str,
        guard: Option<crate::quota::Guard<'_>>,
        f: F,
    ) -> Result<(Image, Task, T), DbError>
    where
        F: FnOnce(&mut Image, &mut Task) -> Result<T, DomainError>,
    {
        if let Some(g) = &guard {
            self.ensure_lock_row(g).await?;
        }
        let mut tx = self.begin_write().await?;
        let img_before = self.fetch_one(&mut tx, image, true, true).await?;
        let task_before = self.fetch_task(&mut tx, task, true).await?;
        let (mut img, mut t) = (img_before.clone(), task_before.clone());
        let out = f(&mut img, &mut t)?;
        if let Some(g) = guard {
            self.run_guard(&mut tx, g, &img_before, &img, true).await?;
        }
        let a = self.write_image(&mut tx, &img_before, &mut img).await?;
        let b = self.write_task(&mut tx, &task_before, &mut t).await?;
        if a || b {
            tx.commit().await?;
        }
        Ok((img, t, out))
    }

    /// One page of tasks: `owner` limits them to one project (None: all, for admins).
    pub async fn list_tasks(
        &self,
        q: &TaskQuery,
        owner: Option<&str>,
        now: Micros,
    ) -> Result<Vec<Task>, DbError> {
        let mut conn = self.read.acquire().await?;
        let marker =
            match &q.marker {
                Some(m) => Some(self.fetch_task(&mut conn, m, false).await.map_err(
                    |e| match e {
                        DbError::NotFound => DbError::Domain(DomainError::BadRequest(format!(
                            "Task with the given id {m} was not found"
                        ))),
                        other => other,
                    },
                )?),
                None => None,
            };
        let mut s = self.sql(&format!(
            "SELECT {COLUMNS} FROM tasks WHERE deleted = 0 AND (expires_at IS NULL OR expires_at > "
        ));
        s.bind(now).push(")");
        push_task_filters(&mut s, q, owner);
        let col = q.sort_key.column();
        if let Some(m) = &marker {
            let op = if q.ascending { ">" } else { "<" };
            let value = sort_value(m, col);
            // (col, id) beyond the marker's, NULLs first in ascending order.
            match value {
                SortValue::Null => {
                    if q.ascending {
                        s.push(&format!(
                            " AND ({col} IS NOT NULL OR ({col} IS NULL AND id > "
                        ))
                        .bind(m.id.clone())
                        .push("))");
                    } else {
                        s.push(&format!(" AND {col} IS NULL AND id < "))
                            .bind(m.id.clone());
                    }
                }
                v => {
                    s.push(&format!(" AND ({col} {op} "));
                    v.bind(&mut s);
                    s.push(&format!(" OR ({col} = "));
                    v.bind(&mut s);
                    s.push(&format!(" AND id {op} ")).bind(m.id.clone());
                    s.push(")");
                    if !q.ascending {
                        s.push(&format!(" OR {col} IS NULL"));
                    }
                    s.push(")");
                }
            }
        }
        let dir = if q.ascending { "ASC" } else { "DESC" };
        // NULL sorts as the smallest value everywhere (PostgreSQL's default is the opposite).
        let nulls = match (self.dialect, col) {
            (crate::Dialect::Postgres, "expires_at" | "owner") if q.ascending => " NULLS FIRST",
            (crate::Dialect::Postgres, "expires_at" | "owner") => " NULLS LAST",
            _ => "",
        };
        s.push(&format!(" ORDER BY {col} {dir}{nulls}, id {dir} LIMIT "))
            .bind(q.limit);
        let rows = sqlx::query_with(&s.text, s.args)
            .fetch_all(&mut *conn)
            .await?;
        rows.iter().map(task_from_row).collect()
    }

    /// The unexpired tasks of an image (of `owner` only, when given), newest first.
    pub async fn image_tasks(
        &self,
        image: &ImageId,
        owner: Option<&str>,
        now: Micros,
    ) -> Result<Vec<Task>, DbError> {
        let mut s = self.sql(&format!(
            "SELECT {COLUMNS} FROM tasks WHERE deleted = 0 AND image_id = "
        ));
        s.bind(image.as_str().to_owned());
        s.push(" AND (expires_at IS NULL OR expires_at > ")
            .bind(now)
            .push(")");
        if let Some(o) = owner {
            s.push(" AND owner = ").bind(o.to_owned());
        }
        s.push(" ORDER BY created_at DESC, id DESC");
        let rows = sqlx::query_with(&s.text, s.args)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(task_from_row).collect()
    }

    /// Ids of tasks that are not finished (pending or processing).
    pub async fn unfinished_tasks(&self) -> Result<Vec<String>, DbError> {
        let rows = sqlx::query(
            "SELECT id FROM tasks WHERE deleted = 0 AND status IN ('pending', 'processing')",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|r| text(r, "id")).collect()
    }

    /// Removes tasks that expired before `now` (nothing shows them any more); returns how
    /// many.
    pub async fn purge_expired_tasks(&self, now: Micros) -> Result<u64, DbError> {
        let mut q = self.sql("DELETE FROM tasks WHERE expires_at IS NOT NULL AND expires_at <= ");
        q.bind(now);
        let done = sqlx::query_with(&q.text, q.args)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected())
    }
}

fn push_task_filters(s: &mut Sql, q: &TaskQuery, owner: Option<&str>) {
    if let Some(o) = owner {
        s.push(" AND owner = ").bind(o.to_owned());
    }
    if let Some(st) = q.status {
        s.push(" AND status = ").bind(st.as_str().to_owned());
    }
    if let Some(t) = q.kind {
        s.push(" AND type = ").bind(t.as_str().to_owned());
    }
}

enum SortValue {
    Null,
    Int(i64),
    Text(String),
}

impl SortValue {
    fn bind(&self, s: &mut Sql) {
        match self {
            SortValue::Null => {}
            SortValue::Int(i) => {
                s.bind(*i);
            }
            SortValue::Text(t) => {
                s.bind(t.clone());
            }
        }
    }
}

fn sort_value(t: &Task, col: &str) -> SortValue {
    let text = |v: Option<&str>| v.map_or(SortValue::Null, |v| SortValue::Text(v.to_owned()));
    match col {
        "created_at" => SortValue::Int(t.created_at),
        "updated_at" => SortValue::Int(t.updated_at),
        "expires_at" => t.expires_at.map_or(SortValue::Null, SortValue::Int),
        "status" => SortValue::Text(t.status.as_str().to_owned()),
        "type" => SortValue::Text(t.kind.as_str().to_owned()),
        "owner" => text(t.owner.as_deref()),
        _ => SortValue::Text(t.id.clone()),
    }
}
