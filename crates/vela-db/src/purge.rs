//! `vela db purge`: removes the rows of records deleted (or tasks expired) before a cutoff, as
//! `glance-manage db purge` does, and with `images` also the rows of deleted images with their
//! properties, tags, locations and members (Glance's `db purge_images_table`).
//!
//! Image rows are kept by default for the same reason as in Glance: while a deleted image's
//! row exists its id cannot be used again, so a purged id could be taken by a new image that
//! clients (or a cache) still know under the old one. Images awaiting the scrubber
//! (`pending_delete`) are never purged.

use crate::images::text;
use crate::sql::Sql;
use crate::{Db, DbError};

/// Images purged per transaction.
const BATCH: i64 = 500;

/// How many rows `purge` removed, by table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PurgeReport {
    pub members: u64,
    pub tasks: u64,
    /// Images (their properties, tags, locations and members go with them).
    pub images: u64,
}

impl Db {
    /// Purges what was deleted before `before` (microseconds since the epoch).
    pub async fn purge(&self, before: i64, images: bool) -> Result<PurgeReport, DbError> {
        let mut report = PurgeReport::default();
        let mut q = self.sql("DELETE FROM image_members WHERE deleted = 1 AND updated_at < ");
        q.bind(before);
        report.members = self.execute(q).await?;
        let mut q = self.sql("DELETE FROM tasks WHERE (deleted = 1 AND deleted_at < ");
        q.bind(before)
            .push(") OR (expires_at IS NOT NULL AND expires_at < ")
            .bind(before)
            .push(")");
        report.tasks = self.execute(q).await?;
        if images {
            loop {
                let n = self.purge_images_batch(before).await?;
                report.images += n;
                if n < BATCH as u64 {
                    break;
                }
            }
        }
        Ok(report)
    }

    async fn execute(&self, q: Sql) -> Result<u64, DbError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query_with(&q.text, q.args)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(done)
    }

    /// One batch of deleted images, with the rows that refer to them, in one transaction.
    async fn purge_images_batch(&self, before: i64) -> Result<u64, DbError> {
        let mut tx = self.begin_write().await?;
        let mut q = self.sql(
            "SELECT id FROM images WHERE deleted = 1 AND status = 'deleted' AND deleted_at < ",
        );
        q.bind(before)
            .push(" ORDER BY deleted_at LIMIT ")
            .bind(BATCH);
        let rows = sqlx::query_with(&q.text, q.args)
            .fetch_all(&mut *tx)
            .await?;
        let ids = rows
            .iter()
            .map(|r| text(r, "id"))
            .collect::<Result<Vec<_>, _>>()?;
        if ids.is_empty() {
            return Ok(0);
        }
        for table in [
            "image_properties",
            "image_tags",
            "image_locations",
            "image_members",
        ] {
            let mut q = self.sql(&format!("DELETE FROM {table} WHERE image_id IN "));
            q.bind_list(ids.clone());
            sqlx::query_with(&q.text, q.args).execute(&mut *tx).await?;
        }
        let mut q =
            self.sql("DELETE FROM images WHERE deleted = 1 AND status = 'deleted' AND id IN ");
        q.bind_list(ids);
        let done = sqlx::query_with(&q.text, q.args)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(done)
    }
}
