//! Image member queries. Changes lock the image row first, so a membership change and a
//! visibility or ownership change of the same image never interleave, and `check` sees the
//! image as it is when the change is made.

use sqlx::any::AnyRow;
use sqlx::Row;
use vela_domain::member::{member_not_found, Member, MemberStatus};
use vela_domain::notify;
use vela_domain::{DomainError, Image, ImageId, Micros};

use crate::{Db, DbError};

fn member_from_row(row: &AnyRow) -> Result<Member, DbError> {
    let image_id: String = row.try_get("image_id")?;
    let status: String = row.try_get("status")?;
    Ok(Member {
        image_id: ImageId::parse(&image_id)
            .ok_or_else(|| DbError::Corrupt(format!("member image id '{image_id}'")))?,
        member_id: crate::images::text(row, "member")?,
        status: MemberStatus::parse(&status)
            .ok_or_else(|| DbError::Corrupt(format!("member status '{status}'")))?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

const MEMBER_COLUMNS: &str = "image_id, member, status, created_at, updated_at";

impl Db {
    /// The image's current members; only `member`'s own row when given.
    pub async fn list_members(
        &self,
        id: &ImageId,
        member: Option<&str>,
    ) -> Result<Vec<Member>, DbError> {
        let mut q = self.sql(&format!(
            "SELECT {MEMBER_COLUMNS} FROM image_members WHERE deleted = 0 AND image_id = "
        ));
        q.bind(id.as_str().to_owned());
        if let Some(m) = member {
            q.push(" AND member = ").bind(m.to_owned());
        }
        q.push(" ORDER BY created_at, member");
        let rows = sqlx::query_with(&q.text, q.args)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(member_from_row).collect()
    }

    /// Shares the image with `member` (status `pending`). `check` vets the locked image. A
    /// current member is a conflict; more than `quota` members is refused (413). A removed
    /// member's row is reused.
    pub async fn add_member(
        &self,
        id: &ImageId,
        member: &str,
        quota: u64,
        now: Micros,
        check: impl FnOnce(&Image) -> Result<(), DomainError>,
    ) -> Result<Member, DbError> {
        let mut tx = self.begin_write().await?;
        let img = self.fetch_one(&mut tx, id, false, true).await?;
        check(&img)?;
        let mut q = self.sql("SELECT deleted FROM image_members WHERE image_id = ");
        q.bind(id.as_str().to_owned())
            .push(" AND member = ")
            .bind(member.to_owned());
        let existing: Option<i64> = sqlx::query_with(&q.text, q.args)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get("deleted"))
            .transpose()?;
        if existing == Some(0) {
            return Err(DbError::Conflict(format!(
                "Member {member} is duplicated for image {id}"
            )));
        }
        let mut q =
            self.sql("SELECT COUNT(*) AS n FROM image_members WHERE deleted = 0 AND image_id = ");
        q.bind(id.as_str().to_owned());
        let n: i64 = sqlx::query_with(&q.text, q.args)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        if n as u64 >= quota {
            return Err(DomainError::TooLarge(format!(
                "Image member limit exceeded for image {id}: Maximum number of image members \
                 exceeded: {quota}:"
            ))
            .into());
        }
        let mut q = self.sql("");
        if existing.is_some() {
            q.push("UPDATE image_members SET deleted = 0, status = ")
                .bind(MemberStatus::Pending.as_str().to_owned())
                .push(", created_at = ")
                .bind(now)
                .push(", updated_at = ")
                .bind(now)
                .push(" WHERE image_id = ")
                .bind(id.as_str().to_owned())
                .push(" AND member = ")
                .bind(member.to_owned());
        } else {
            q.push(&format!(
                "INSERT INTO image_members ({MEMBER_COLUMNS}, deleted) VALUES ("
            ))
            .bind(id.as_str().to_owned())
            .push(", ")
            .bind(member.to_owned())
            .push(", ")
            .bind(MemberStatus::Pending.as_str().to_owned())
            .push(", ")
            .bind(now)
            .push(", ")
            .bind(now)
            .push(", 0)");
        }
        sqlx::query_with(&q.text, q.args).execute(&mut *tx).await?;
        let added = Member {
            image_id: id.clone(),
            member_id: member.to_owned(),
            status: MemberStatus::Pending,
            created_at: now,
            updated_at: now,
        };
        if self.noting() {
            let n = notify::member_event("image.member.create", &added, None);
            self.enqueue(&mut tx, vec![n]).await?;
        }
        tx.commit().await?;
        Ok(added)
    }

    /// Sets `member`'s status. `check` vets the locked image and the current membership.
    pub async fn set_member_status(
        &self,
        id: &ImageId,
        member: &str,
        status: MemberStatus,
        now: Micros,
        check: impl FnOnce(&Image, &Member) -> Result<(), DomainError>,
    ) -> Result<Member, DbError> {
        let changed = |m: &Member| Member {
            status,
            updated_at: now,
            ..m.clone()
        };
        self.change_member(
            id,
            member,
            check,
            |q| {
                q.push("UPDATE image_members SET status = ")
                    .bind(status.as_str().to_owned())
                    .push(", updated_at = ")
                    .bind(now);
            },
            |m| notify::member_event("image.member.update", &changed(m), None),
        )
        .await
        .map(|m| changed(&m))
    }

    /// Ends `member`'s membership. `check` vets the locked image and the membership.
    pub async fn remove_member(
        &self,
        id: &ImageId,
        member: &str,
        check: impl FnOnce(&Image, &Member) -> Result<(), DomainError>,
    ) -> Result<Member, DbError> {
        let now = vela_domain::now_micros();
        self.change_member(
            id,
            member,
            check,
            |q| {
                q.push("UPDATE image_members SET deleted = 1");
            },
            |m| notify::member_event("image.member.delete", m, Some(now)),
        )
        .await
    }

    async fn change_member(
        &self,
        id: &ImageId,
        member: &str,
        check: impl FnOnce(&Image, &Member) -> Result<(), DomainError>,
        set: impl FnOnce(&mut crate::sql::Sql),
        event: impl FnOnce(&Member) -> notify::Notice,
    ) -> Result<Member, DbError> {
        let mut tx = self.begin_write().await?;
        let img = self.fetch_one(&mut tx, id, false, true).await?;
        let mut q = self.sql(&format!(
            "SELECT {MEMBER_COLUMNS} FROM image_members WHERE deleted = 0 AND image_id = "
        ));
        q.bind(id.as_str().to_owned())
            .push(" AND member = ")
            .bind(member.to_owned());
        let current = sqlx::query_with(&q.text, q.args)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| member_from_row(&r))
            .transpose()?
            .ok_or_else(|| DbError::Domain(member_not_found(member, id)))?;
        check(&img, &current)?;
        let mut q = self.sql("");
        set(&mut q);
        q.push(" WHERE image_id = ")
            .bind(id.as_str().to_owned())
            .push(" AND member = ")
            .bind(member.to_owned());
        sqlx::query_with(&q.text, q.args).execute(&mut *tx).await?;
        if self.noting() {
            self.enqueue(&mut tx, vec![event(&current)]).await?;
        }
        tx.commit().await?;
        Ok(current)
    }
}
