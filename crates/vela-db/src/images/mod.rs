//! Image records: reading, creating and changing one image with its properties, tags and
//! locations. The list query is in [`list`].

mod list;

pub use list::Scope;

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::AnyConnection;
use sqlx::Row;
use vela_domain::image::ImageLocation;
use vela_domain::notify;
use vela_domain::{DomainError, Image, ImageId, ImageStatus, Visibility};

use crate::quota::Guard;
use crate::sql::Sql;
use crate::{Db, DbError};

pub(crate) const COLUMNS: &str =
    "id, name, status, visibility, protected, os_hidden, owner, container_format, \
    disk_format, min_disk, min_ram, size, virtual_size, checksum, os_hash_algo, os_hash_value, \
    created_at, updated_at, deleted, deleted_at, upload_lease_until";

fn corrupt(what: &str, v: &str) -> DbError {
    DbError::Corrupt(format!("{what} '{v}'"))
}

/// A TEXT column. MySQL reports TEXT with a binary collation as a blob, so accept bytes too.
/// A location's metadata column: NULL is an empty object.
fn location_metadata(row: &AnyRow) -> Result<serde_json::Map<String, serde_json::Value>, DbError> {
    let raw: Option<String> = match row.try_get::<Option<String>, _>("metadata") {
        Ok(v) => v,
        Err(_) => row
            .try_get::<Option<Vec<u8>>, _>("metadata")?
            .map(String::from_utf8)
            .transpose()
            .map_err(|_| corrupt("non-UTF-8 text in", "metadata"))?,
    };
    match raw {
        None => Ok(serde_json::Map::new()),
        Some(s) => match serde_json::from_str(&s) {
            Ok(serde_json::Value::Object(m)) => Ok(m),
            _ => Err(corrupt("invalid JSON in", "metadata")),
        },
    }
}

pub(crate) fn text(row: &AnyRow, col: &str) -> Result<String, DbError> {
    match row.try_get::<String, _>(col) {
        Ok(s) => Ok(s),
        Err(_) => {
            let bytes: Vec<u8> = row.try_get(col)?;
            String::from_utf8(bytes).map_err(|_| corrupt("non-UTF-8 text in", col))
        }
    }
}

fn image_from_row(row: &AnyRow) -> Result<Image, DbError> {
    let id: String = row.try_get("id")?;
    let status: String = row.try_get("status")?;
    let visibility: String = row.try_get("visibility")?;
    Ok(Image {
        id: ImageId::parse(&id).ok_or_else(|| corrupt("image id", &id))?,
        name: row.try_get("name")?,
        status: ImageStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
        visibility: Visibility::parse(&visibility)
            .ok_or_else(|| corrupt("visibility", &visibility))?,
        protected: row.try_get::<i64, _>("protected")? != 0,
        os_hidden: row.try_get::<i64, _>("os_hidden")? != 0,
        owner: row.try_get("owner")?,
        container_format: row.try_get("container_format")?,
        disk_format: row.try_get("disk_format")?,
        min_disk: row.try_get("min_disk")?,
        min_ram: row.try_get("min_ram")?,
        size: row.try_get("size")?,
        virtual_size: row.try_get("virtual_size")?,
        checksum: row.try_get("checksum")?,
        os_hash_algo: row.try_get("os_hash_algo")?,
        os_hash_value: row.try_get("os_hash_value")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        deleted: row.try_get::<i64, _>("deleted")? != 0,
        deleted_at: row.try_get("deleted_at")?,
        upload_lease_until: row.try_get("upload_lease_until")?,
        properties: Default::default(),
        tags: Default::default(),
        locations: Vec::new(),
    })
}

impl Db {
    pub(crate) fn sql(&self, text: &str) -> Sql {
        Sql::new(self.dialect, text)
    }

    /// Fills properties, tags and locations of `images` (two or three queries in all).
    async fn load_children(
        &self,
        conn: &mut AnyConnection,
        images: &mut [Image],
    ) -> Result<(), DbError> {
        if images.is_empty() {
            return Ok(());
        }
        let index: HashMap<String, usize> = images
            .iter()
            .enumerate()
            .map(|(i, img)| (img.id.as_str().to_owned(), i))
            .collect();
        let ids: Vec<String> = index.keys().cloned().collect();
        for (table, cols) in [
            ("image_properties", "image_id, name, value"),
            ("image_tags", "image_id, value"),
            (
                "image_locations",
                "image_id, position, store, url, metadata",
            ),
        ] {
            let mut q = self.sql(&format!("SELECT {cols} FROM {table} WHERE image_id IN "));
            q.bind_list(ids.clone());
            if table == "image_locations" {
                q.push(" ORDER BY position");
            }
            let rows = sqlx::query_with(&q.text, q.args)
                .fetch_all(&mut *conn)
                .await?;
            for row in rows {
                let image_id: String = row.try_get("image_id")?;
                let Some(img) = index.get(&image_id).map(|i| &mut images[*i]) else {
                    continue;
                };
                match table {
                    "image_properties" => {
                        img.properties
                            .insert(text(&row, "name")?, text(&row, "value")?);
                    }
                    "image_tags" => {
                        img.tags.insert(text(&row, "value")?);
                    }
                    _ => img.locations.push(ImageLocation {
                        store: text(&row, "store")?,
                        url: text(&row, "url")?.into(),
                        metadata: location_metadata(&row)?,
                    }),
                }
            }
        }
        Ok(())
    }

    pub(crate) async fn fetch_one(
        &self,
        conn: &mut AnyConnection,
        id: &ImageId,
        include_deleted: bool,
        for_update: bool,
    ) -> Result<Image, DbError> {
        let mut q = self.sql(&format!("SELECT {COLUMNS} FROM images WHERE id = "));
        q.bind(id.as_str().to_owned());
        if !include_deleted {
            q.push(" AND deleted = 0");
        }
        // SQLite serialises writers on its single writer connection; servers lock the row.
        if for_update && self.dialect != crate::Dialect::Sqlite {
            q.push(" FOR UPDATE");
        }
        let row = sqlx::query_with(&q.text, q.args)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or(DbError::NotFound)?;
        let mut img = [image_from_row(&row)?];
        self.load_children(conn, &mut img).await?;
        let [img] = img;
        Ok(img)
    }

    /// The image with `id`, deleted ones only if `include_deleted`.
    pub async fn get_image(&self, id: &ImageId, include_deleted: bool) -> Result<Image, DbError> {
        let mut tx = self.begin_read().await?;
        let img = self.fetch_one(&mut tx, id, include_deleted, false).await?;
        tx.commit().await?;
        Ok(img)
    }

    /// Whether `project` is a (non-deleted) member of the image, in any member status.
    pub async fn is_member(&self, id: &ImageId, project: &str) -> Result<bool, DbError> {
        let mut q =
            self.sql("SELECT 1 AS one FROM image_members WHERE deleted = 0 AND image_id = ");
        q.bind(id.as_str().to_owned())
            .push(" AND member = ")
            .bind(project.to_owned());
        Ok(sqlx::query_with(&q.text, q.args)
            .fetch_optional(&self.read)
            .await?
            .is_some())
    }

    /// Inserts a new image. An existing id (even of a deleted image) is a conflict.
    pub async fn create_image(&self, img: &Image) -> Result<(), DbError> {
        self.create_image_guarded(img, None).await
    }

    /// Inserts a new image once `guard` (if any) agrees, under its project's lock.
    pub async fn create_image_guarded(
        &self,
        img: &Image,
        guard: Option<Guard<'_>>,
    ) -> Result<(), DbError> {
        if let Some(g) = &guard {
            self.ensure_lock_row(g).await?;
        }
        // Built before the transaction, which on SQLite holds the one writer.
        let rows = self
            .noting()
            .then(|| self.outbox_rows(notify::image_created(img)))
            .flatten();
        let mut tx = self.begin_write().await?;
        let empty = Image::new(img.id.clone(), None, 0);
        if let Some(g) = guard {
            self.run_guard(&mut tx, g, &empty, img, false).await?;
        }
        let mut q = self.sql("");
        self.outbox_before(&mut q, rows.as_ref());
        q.push(&format!("INSERT INTO images ({COLUMNS}) VALUES "));
        push_row_values(&mut q, img);
        self.outbox_after(&mut q, rows.as_ref());
        sqlx::query_with(&q.text, q.args)
            .execute(&mut *tx)
            .await
            .map_err(|e| match DbError::from(e) {
                DbError::Conflict(_) => {
                    DbError::Conflict(format!("Image with identifier {} already exists!", img.id))
                }
                other => other,
            })?;
        self.write_children(&mut tx, &empty, img).await?;
        self.outbox_written(&mut tx, rows).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Reads the image inside a write transaction, lets `f` change it, and stores the result
    /// if `f` succeeds. `f` sees deleted images only when `include_deleted` is set.
    pub async fn update_image<T, F>(
        &self,
        id: &ImageId,
        include_deleted: bool,
        f: F,
    ) -> Result<(Image, T), DbError>
    where
        F: FnOnce(&mut Image) -> Result<T, DomainError>,
    {
        self.update_image_guarded(id, include_deleted, None, f)
            .await
    }

    /// [`Db::update_image`], with `guard` (if any) deciding on the change under its project's
    /// lock before it is stored.
    pub async fn update_image_guarded<T, F>(
        &self,
        id: &ImageId,
        include_deleted: bool,
        guard: Option<Guard<'_>>,
        f: F,
    ) -> Result<(Image, T), DbError>
    where
        F: FnOnce(&mut Image) -> Result<T, DomainError>,
    {
        if let Some(g) = &guard {
            self.ensure_lock_row(g).await?;
        }
        let mut tx = self.begin_write().await?;
        let before = self.fetch_one(&mut tx, id, include_deleted, true).await?;
        let mut after = before.clone();
        let out = f(&mut after)?;
        if let Some(g) = guard {
            self.run_guard(&mut tx, g, &before, &after, true).await?;
        }
        if self.write_image(&mut tx, &before, &mut after).await? {
            tx.commit().await?;
        }
        Ok((after, out))
    }

    /// Stores `after` over `before` (the record as read in this transaction); false when
    /// nothing changed.
    pub(crate) async fn write_image(
        &self,
        conn: &mut AnyConnection,
        before: &Image,
        after: &mut Image,
    ) -> Result<bool, DbError> {
        if after == before {
            return Ok(false);
        }
        if after.updated_at == before.updated_at {
            after.updated_at = vela_domain::now_micros().max(before.updated_at);
        }
        let rows = self
            .noting()
            .then(|| self.outbox_rows(notify::image_changed(before, after)))
            .flatten();
        let mut q = self.sql("");
        self.outbox_before(&mut q, rows.as_ref());
        q.push("UPDATE images SET name = ").bind(after.name.clone());
        q.push(", status = ").bind(after.status.as_str().to_owned());
        q.push(", visibility = ")
            .bind(after.visibility.as_str().to_owned());
        q.push(", protected = ").bind(after.protected as i64);
        q.push(", os_hidden = ").bind(after.os_hidden as i64);
        q.push(", owner = ").bind(after.owner.clone());
        q.push(", container_format = ")
            .bind(after.container_format.clone());
        q.push(", disk_format = ").bind(after.disk_format.clone());
        q.push(", min_disk = ").bind(after.min_disk);
        q.push(", min_ram = ").bind(after.min_ram);
        q.push(", size = ").bind(after.size);
        q.push(", virtual_size = ").bind(after.virtual_size);
        q.push(", checksum = ").bind(after.checksum.clone());
        q.push(", os_hash_algo = ").bind(after.os_hash_algo.clone());
        q.push(", os_hash_value = ")
            .bind(after.os_hash_value.clone());
        q.push(", updated_at = ").bind(after.updated_at);
        q.push(", deleted = ").bind(after.deleted as i64);
        q.push(", deleted_at = ").bind(after.deleted_at);
        q.push(", upload_lease_until = ")
            .bind(after.upload_lease_until);
        q.push(" WHERE id = ").bind(after.id.as_str().to_owned());
        self.outbox_after(&mut q, rows.as_ref());
        sqlx::query_with(&q.text, q.args)
            .execute(&mut *conn)
            .await?;
        self.write_children(conn, before, after).await?;
        self.outbox_written(conn, rows).await?;
        Ok(true)
    }

    /// Writes the differences in properties, tags and locations between `before` and `after`.
    async fn write_children(
        &self,
        conn: &mut AnyConnection,
        before: &Image,
        after: &Image,
    ) -> Result<(), DbError> {
        let id = after.id.as_str();
        for (name, value) in &before.properties {
            if after.properties.get(name) != Some(value) {
                let mut q = self.sql("DELETE FROM image_properties WHERE image_id = ");
                q.bind(id.to_owned())
                    .push(" AND name = ")
                    .bind(name.clone());
                sqlx::query_with(&q.text, q.args)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        for (name, value) in &after.properties {
            if before.properties.get(name) != Some(value) {
                let mut q =
                    self.sql("INSERT INTO image_properties (image_id, name, value) VALUES (");
                q.bind(id.to_owned())
                    .push(", ")
                    .bind(name.clone())
                    .push(", ")
                    .bind(value.clone())
                    .push(")");
                sqlx::query_with(&q.text, q.args)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        for tag in before.tags.difference(&after.tags) {
            let mut q = self.sql("DELETE FROM image_tags WHERE image_id = ");
            q.bind(id.to_owned())
                .push(" AND value = ")
                .bind(tag.clone());
            sqlx::query_with(&q.text, q.args)
                .execute(&mut *conn)
                .await?;
        }
        for tag in after.tags.difference(&before.tags) {
            let mut q = self.sql("INSERT INTO image_tags (image_id, value) VALUES (");
            q.bind(id.to_owned()).push(", ").bind(tag.clone()).push(")");
            sqlx::query_with(&q.text, q.args)
                .execute(&mut *conn)
                .await?;
        }
        if before.locations != after.locations {
            // No DELETE when there was nothing: on MariaDB a delete of absent rows takes gap
            // locks that make concurrent inserts deadlock.
            if !before.locations.is_empty() {
                let mut q = self.sql("DELETE FROM image_locations WHERE image_id = ");
                q.bind(id.to_owned());
                sqlx::query_with(&q.text, q.args)
                    .execute(&mut *conn)
                    .await?;
            }
            for (pos, loc) in after.locations.iter().enumerate() {
                let mut q = self.sql(
                    "INSERT INTO image_locations (image_id, position, store, url, metadata) VALUES (",
                );
                let metadata = (!loc.metadata.is_empty())
                    .then(|| serde_json::Value::Object(loc.metadata.clone()).to_string());
                q.bind(id.to_owned())
                    .push(", ")
                    .bind(pos as i64)
                    .push(", ")
                    .bind(loc.store.clone())
                    .push(", ")
                    .bind(loc.url.as_str().to_owned())
                    .push(", ")
                    .bind(metadata)
                    .push(")");
                sqlx::query_with(&q.text, q.args)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        Ok(())
    }

    /// Runs a query selecting `id` and parses the ids.
    async fn fetch_ids(&self, q: Sql) -> Result<Vec<ImageId>, DbError> {
        let rows = sqlx::query_with(&q.text, q.args)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("id")?;
                ImageId::parse(&id).ok_or_else(|| corrupt("image id", &id))
            })
            .collect()
    }

    /// Ids of (non-deleted) images in `status`.
    pub async fn images_in_status(&self, status: ImageStatus) -> Result<Vec<ImageId>, DbError> {
        let mut q = self.sql("SELECT id FROM images WHERE deleted = 0 AND status = ");
        q.bind(status.as_str().to_owned());
        self.fetch_ids(q).await
    }

    /// Ids of `pending_delete` images deleted before `before`.
    pub async fn pending_deletes(&self, before: i64) -> Result<Vec<ImageId>, DbError> {
        let mut q =
            self.sql("SELECT id FROM images WHERE status = 'pending_delete' AND deleted_at < ");
        q.bind(before);
        self.fetch_ids(q).await
    }

    /// The values of custom property `name` on images that are not deleted.
    pub async fn property_values(
        &self,
        name: &str,
    ) -> Result<std::collections::HashSet<String>, DbError> {
        let mut q = self.sql(
            "SELECT p.value AS value FROM image_properties p JOIN images i ON i.id = p.image_id \
             WHERE i.deleted = 0 AND p.name = ",
        );
        q.bind(name.to_owned());
        let rows = sqlx::query_with(&q.text, q.args)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(|r| text(r, "value")).collect()
    }

    /// One page of the locations of images that have data (`active`, `deactivated`), in
    /// image id order after `after`: (image id, image size, location).
    pub async fn data_locations_page(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<(String, Option<i64>, ImageLocation)>, DbError> {
        let mut q = self.sql(
            "SELECT l.image_id AS image_id, i.size AS size, l.store AS store, l.url AS url, \
             l.metadata AS metadata FROM image_locations l JOIN images i ON i.id = l.image_id \
             WHERE i.deleted = 0 AND i.status IN ('active', 'deactivated')",
        );
        if let Some(a) = after {
            q.push(" AND l.image_id > ").bind(a.to_owned());
        }
        q.push(" ORDER BY l.image_id, l.position LIMIT ")
            .bind(limit);
        let rows = sqlx::query_with(&q.text, q.args)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    text(r, "image_id")?,
                    r.try_get::<Option<i64>, _>("size")?,
                    ImageLocation {
                        store: text(r, "store")?,
                        url: text(r, "url")?.into(),
                        metadata: location_metadata(r)?,
                    },
                ))
            })
            .collect()
    }

    /// Locations of the data of every image that is not deleted (or awaits the scrubber).
    pub async fn referenced_locations(
        &self,
    ) -> Result<std::collections::HashSet<vela_domain::LocationUrl>, DbError> {
        let rows = sqlx::query(
            "SELECT l.url AS url FROM image_locations l JOIN images i ON i.id = l.image_id \
             WHERE i.deleted = 0 OR i.status = 'pending_delete'",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| text(r, "url").map(Into::into))
            .collect()
    }
}

fn push_row_values(q: &mut Sql, img: &Image) {
    q.push("(");
    q.bind(img.id.as_str().to_owned()).push(", ");
    q.bind(img.name.clone()).push(", ");
    q.bind(img.status.as_str().to_owned()).push(", ");
    q.bind(img.visibility.as_str().to_owned()).push(", ");
    q.bind(img.protected as i64).push(", ");
    q.bind(img.os_hidden as i64).push(", ");
    q.bind(img.owner.clone()).push(", ");
    q.bind(img.container_format.clone()).push(", ");
    q.bind(img.disk_format.clone()).push(", ");
    q.bind(img.min_disk).push(", ");
    q.bind(img.min_ram).push(", ");
    q.bind(img.size).push(", ");
    q.bind(img.virtual_size).push(", ");
    q.bind(img.checksum.clone()).push(", ");
    q.bind(img.os_hash_algo.clone()).push(", ");
    q.bind(img.os_hash_value.clone()).push(", ");
    q.bind(img.created_at).push(", ");
    q.bind(img.updated_at).push(", ");
    q.bind(img.deleted as i64).push(", ");
    q.bind(img.deleted_at).push(", ");
    q.bind(img.upload_lease_until).push(")");
}
