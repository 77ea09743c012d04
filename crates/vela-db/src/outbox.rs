//! The notification outbox (a transactional outbox).
//!
//! A change stores its notifications in the transaction that makes it, so a notification exists
//! exactly when its change was committed. A sender (`vela-server`) publishes them in `seq`
//! order and deletes each once the broker has confirmed it: a broker outage or a restart delays
//! notifications but loses none, and a crash between publish and delete sends one again
//! (at-least-once, with the same `message_id`). One node sends at a time, the holder of a lease
//! row, so a fleet keeps each image's notifications in order.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::AnyConnection;
use sqlx::Row;
use vela_domain::notify::{self, Filter, Notice, Priority};

use crate::images::text;
use crate::sql::Sql;
use crate::{Db, DbError};

/// What the outbox needs to know to write notifications, shared by every clone of a [`Db`].
#[derive(Debug)]
pub struct Notifications {
    publisher_id: String,
    filter: Filter,
    max_depth: u64,
    /// Set by the sender when the outbox holds `max_depth` messages: new ones are dropped
    /// (and counted) until it drains, so a long outage cannot fill the database.
    full: AtomicBool,
    dropped: AtomicU64,
    wake: tokio::sync::Notify,
}

impl Notifications {
    pub fn new(publisher_id: String, filter: Filter, max_depth: u64) -> Arc<Self> {
        Arc::new(Notifications {
            publisher_id,
            filter,
            max_depth: max_depth.max(1),
            full: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            wake: tokio::sync::Notify::new(),
        })
    }

    /// Resolves when a notification was written (or at once if one was written since the last
    /// call).
    pub async fn written(&self) {
        self.wake.notified().await
    }

    /// Notifications dropped because the outbox was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Records the outbox depth the sender saw.
    pub fn set_depth(&self, depth: u64) {
        let full = depth >= self.max_depth;
        if self.full.swap(full, Ordering::Relaxed) != full {
            if full {
                tracing::error!(
                    depth,
                    "notification outbox is full: new notifications are dropped until it drains"
                );
            } else {
                tracing::info!(depth, "notification outbox drains again");
            }
        }
    }
}

/// Outbox rows ready to be inserted: (priority, message) and the time.
pub(crate) struct OutboxRows {
    rows: Vec<(&'static str, String)>,
    now: i64,
}

/// A stored notification.
#[derive(Debug, Clone)]
pub struct OutboxMessage {
    pub seq: i64,
    pub priority: Priority,
    /// oslo.messaging's message (the envelope's `oslo.message`), JSON.
    pub message: String,
}

impl Db {
    /// Makes writes store notifications (not set: none are stored).
    pub fn with_notifications(mut self, n: Arc<Notifications>) -> Self {
        self.notifications = Some(n);
        self
    }

    /// The notification settings, when notifications are on.
    pub fn notifications(&self) -> Option<&Arc<Notifications>> {
        self.notifications.as_ref()
    }

    /// The outbox rows of `notices`: None when notifications are off, all are disabled, or
    /// the outbox is full (then they are counted as dropped).
    pub(crate) fn outbox_rows(&self, notices: Vec<Notice>) -> Option<OutboxRows> {
        let n = self.notifications.as_ref()?;
        let notices: Vec<Notice> = notices
            .into_iter()
            .filter(|x| n.filter.enabled(x.event_type))
            .collect();
        if notices.is_empty() {
            return None;
        }
        if n.full.load(Ordering::Relaxed) {
            n.dropped.fetch_add(notices.len() as u64, Ordering::Relaxed);
            tracing::warn!(
                events = ?notices.iter().map(|x| x.event_type).collect::<Vec<_>>(),
                "notification outbox full: notifications dropped"
            );
            return None;
        }
        let now = vela_domain::now_micros();
        let rows = notices
            .iter()
            .map(|notice| {
                let id = uuid::Uuid::new_v4().to_string();
                (
                    notice.priority.as_str(),
                    notify::message(notice, &n.publisher_id, &id, now),
                )
            })
            .collect();
        Some(OutboxRows { rows, now })
    }

    fn push_outbox_insert(q: &mut Sql, rows: &OutboxRows) {
        q.push("INSERT INTO notification_outbox (priority, message, created_at) VALUES ");
        for (i, (priority, message)) in rows.rows.iter().enumerate() {
            q.push(if i == 0 { "(" } else { ", (" })
                .bind((*priority).to_owned())
                .push(", ")
                .bind(message.clone())
                .push(", ")
                .bind(rows.now)
                .push(")");
        }
    }

    /// Starts `q`, an empty statement of a change, with the outbox insert where the dialect
    /// allows one statement to do both: a data-modifying `WITH` on PostgreSQL. Each statement
    /// saved is a round trip (on SQLite, a hand-off to its worker thread), which is most of
    /// what the outbox costs.
    pub(crate) fn outbox_before(&self, q: &mut Sql, rows: Option<&OutboxRows>) {
        if let (Some(rows), crate::Dialect::Postgres) = (rows, self.dialect) {
            q.push("WITH vela_outbox AS (");
            Self::push_outbox_insert(q, rows);
            q.push(") ");
        }
    }

    /// Ends `q` with the outbox insert as a second statement on SQLite (sqlx binds the
    /// arguments of both in order).
    pub(crate) fn outbox_after(&self, q: &mut Sql, rows: Option<&OutboxRows>) {
        if let (Some(rows), crate::Dialect::Sqlite) = (rows, self.dialect) {
            q.push("; ");
            Self::push_outbox_insert(q, rows);
        }
    }

    /// After a statement built with [`Db::outbox_before`] and [`Db::outbox_after`] ran: writes
    /// the rows in a statement of their own where the dialect could not take them along
    /// (MariaDB), and wakes the sender.
    pub(crate) async fn outbox_written(
        &self,
        conn: &mut AnyConnection,
        rows: Option<OutboxRows>,
    ) -> Result<(), DbError> {
        let separate = self.dialect == crate::Dialect::Mysql;
        self.finish_outbox(conn, rows, separate).await
    }

    /// Stores `notices` on `conn` (inside the caller's transaction) in a statement of their
    /// own.
    pub(crate) async fn enqueue(
        &self,
        conn: &mut AnyConnection,
        notices: Vec<Notice>,
    ) -> Result<(), DbError> {
        let rows = self.outbox_rows(notices);
        self.finish_outbox(conn, rows, true).await
    }

    /// Inserts `rows` in a statement of their own when `insert`, then wakes the sender.
    async fn finish_outbox(
        &self,
        conn: &mut AnyConnection,
        rows: Option<OutboxRows>,
        insert: bool,
    ) -> Result<(), DbError> {
        let Some(rows) = rows else {
            return Ok(());
        };
        if insert {
            let mut q = self.sql("");
            Self::push_outbox_insert(&mut q, &rows);
            sqlx::query_with(&q.text, q.args)
                .execute(&mut *conn)
                .await?;
        }
        if let Some(n) = &self.notifications {
            n.wake.notify_one();
        }
        Ok(())
    }

    /// Stores one notification that belongs to no change (`image.send`).
    pub async fn notify(&self, notice: Notice) -> Result<(), DbError> {
        if self.notifications.is_none() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        self.enqueue(&mut tx, vec![notice]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Takes or renews the sender lease for `holder`; false while another node holds it.
    pub async fn outbox_lease(&self, holder: &str, lease: Duration) -> Result<bool, DbError> {
        let now = vela_domain::now_micros();
        let until = now + i64::try_from(lease.as_micros()).unwrap_or(i64::MAX / 4);
        let mut q = self.sql("UPDATE notification_sender SET holder = ");
        q.bind(holder.to_owned())
            .push(", lease_until = ")
            .bind(until)
            .push(" WHERE id = 1 AND (holder = ")
            .bind(holder.to_owned())
            .push(" OR holder IS NULL OR lease_until < ")
            .bind(now)
            .push(")");
        let done = sqlx::query_with(&q.text, q.args)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives the sender lease up (on shutdown), so another node takes over at once.
    pub async fn outbox_release(&self, holder: &str) -> Result<(), DbError> {
        let mut q = self
            .sql("UPDATE notification_sender SET holder = NULL, lease_until = 0 WHERE holder = ");
        q.bind(holder.to_owned());
        sqlx::query_with(&q.text, q.args)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// The oldest `limit` stored notifications, in order.
    pub async fn outbox_batch(&self, limit: i64) -> Result<Vec<OutboxMessage>, DbError> {
        let mut q =
            self.sql("SELECT seq, priority, message FROM notification_outbox ORDER BY seq LIMIT ");
        q.bind(limit);
        let rows = sqlx::query_with(&q.text, q.args)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                let p = text(r, "priority")?;
                Ok(OutboxMessage {
                    seq: r.try_get("seq")?,
                    priority: Priority::parse(&p)
                        .ok_or_else(|| DbError::Corrupt(format!("notification priority '{p}'")))?,
                    message: text(r, "message")?,
                })
            })
            .collect()
    }

    /// Deletes sent notifications.
    pub async fn outbox_remove(&self, seqs: &[i64]) -> Result<(), DbError> {
        let (Some(&first), Some(&last)) = (seqs.first(), seqs.last()) else {
            return Ok(());
        };
        // Seqs without a gap (the usual case) are exactly the rows of their range: one short
        // statement whose text does not change with the batch size, so it stays prepared.
        let q = if seqs.windows(2).all(|w| w[1] == w[0] + 1) {
            let mut q = self.sql("DELETE FROM notification_outbox WHERE seq >= ");
            q.bind(first).push(" AND seq <= ").bind(last);
            q
        } else {
            let mut q = self.sql("DELETE FROM notification_outbox WHERE seq IN ");
            q.bind_list(seqs.iter().copied());
            q
        };
        sqlx::query_with(&q.text, q.args)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// How many notifications wait to be sent.
    pub async fn outbox_depth(&self) -> Result<u64, DbError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM notification_outbox")
            .fetch_one(&self.read)
            .await?;
        Ok(u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0))
    }
}
