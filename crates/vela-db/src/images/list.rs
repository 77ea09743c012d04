//! `GET /v2/images` as one SQL query: the caller's scope (visibility and membership), the
//! filters, the marker (rows strictly after it in sort order) and the sort, NULL sorting as
//! the smallest value on every dialect. The column and operator names live here, not in the
//! domain's query model.

use sqlx::AnyConnection;
use vela_domain::list::{CmpOp, Column, Filter, FilterValue, ListQuery, SortDir, VisibilityFilter};
use vela_domain::{DomainError, Image, Visibility};

use super::{image_from_row, COLUMNS};
use crate::sql::Sql;
use crate::{Db, DbError};

/// Whose view of the images a list is computed for.
#[derive(Debug, Clone)]
pub struct Scope {
    pub project: Option<String>,
    pub is_admin: bool,
}

/// The `images` column a query column is.
fn column_name(col: Column) -> &'static str {
    match col {
        Column::Id => "id",
        Column::Name => "name",
        Column::Status => "status",
        Column::ContainerFormat => "container_format",
        Column::DiskFormat => "disk_format",
        Column::Owner => "owner",
        Column::Checksum => "checksum",
        Column::OsHashValue => "os_hash_value",
        Column::Size => "size",
        Column::VirtualSize => "virtual_size",
        Column::MinDisk => "min_disk",
        Column::MinRam => "min_ram",
        Column::CreatedAt => "created_at",
        Column::UpdatedAt => "updated_at",
        Column::Protected => "protected",
    }
}

/// The SQL operator of a comparison.
fn operator(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Eq => "=",
        CmpOp::Neq => "<>",
        CmpOp::Gt => ">",
        CmpOp::Gte => ">=",
        CmpOp::Lt => "<",
        CmpOp::Lte => "<=",
    }
}

impl Db {
    /// Whether `scope` may see `img` (as Glance's image visibility: admins all, owners theirs,
    /// everyone public and community images, members the shared images they belong to).
    async fn visible_in(
        &self,
        conn: &mut AnyConnection,
        img: &Image,
        scope: &Scope,
    ) -> Result<bool, DbError> {
        if scope.is_admin || img.owner.is_none() {
            return Ok(true);
        }
        let Some(project) = scope.project.as_deref() else {
            return Ok(matches!(
                img.visibility,
                Visibility::Public | Visibility::Community
            ));
        };
        if img.owner.as_deref() == Some(project) {
            return Ok(true);
        }
        match img.visibility {
            Visibility::Public | Visibility::Community => Ok(true),
            Visibility::Private => Ok(false),
            Visibility::Shared => {
                let mut q = self
                    .sql("SELECT 1 AS one FROM image_members WHERE deleted = 0 AND image_id = ");
                q.bind(img.id.as_str().to_owned());
                q.push(" AND member = ").bind(project.to_owned());
                let row = sqlx::query_with(&q.text, q.args)
                    .fetch_optional(&mut *conn)
                    .await?;
                Ok(row.is_some())
            }
        }
    }

    /// One page of images visible in `scope` that match `q`.
    pub async fn list_images(&self, q: &ListQuery, scope: &Scope) -> Result<Vec<Image>, DbError> {
        let mut conn = self.begin_read().await?;
        let marker = match &q.marker {
            Some(id) => {
                let invalid = || {
                    DbError::Domain(DomainError::BadRequest(format!(
                        "Invalid marker. Image {id} could not be found."
                    )))
                };
                let m = self
                    .fetch_one(&mut conn, id, false, false)
                    .await
                    .map_err(|e| match e {
                        DbError::NotFound => invalid(),
                        other => other,
                    })?;
                // An image the caller may not see is no marker: the answer (and the page
                // after it) must not tell that it exists, nor where it sorts.
                if !self.visible_in(&mut conn, &m, scope).await? {
                    return Err(invalid());
                }
                Some(m)
            }
            None => None,
        };
        let mut s = self.sql(&format!(
            "SELECT {COLUMNS} FROM images WHERE deleted = 0 AND status <> 'killed'"
        ));
        s.push(" AND os_hidden = ").bind(q.os_hidden as i64);
        push_scope(&mut s, q, scope);
        for f in &q.filters {
            push_filter(&mut s, f);
        }
        if let Some(m) = &marker {
            push_marker(&mut s, &q.sort, m);
        }
        s.push(" ORDER BY ");
        for (i, (col, dir)) in q.sort.iter().enumerate() {
            if i > 0 {
                s.push(", ");
            }
            s.push(&sort_expr(*col));
            s.push(match dir {
                SortDir::Asc => " ASC",
                SortDir::Desc => " DESC",
            });
            // NULL sorts as the smallest value everywhere (PostgreSQL's default is the opposite).
            if self.dialect == crate::Dialect::Postgres && col.nullable() {
                s.push(match dir {
                    SortDir::Asc => " NULLS FIRST",
                    SortDir::Desc => " NULLS LAST",
                });
            }
        }
        s.push(" LIMIT ").bind(q.limit);
        let rows = sqlx::query_with(&s.text, s.args)
            .fetch_all(&mut *conn)
            .await?;
        let mut images = rows
            .iter()
            .map(image_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        self.load_children(&mut conn, &mut images).await?;
        conn.commit().await?;
        Ok(images)
    }
}

fn member_exists(s: &mut Sql, project: &str, status: Option<&'static str>) {
    s.push("EXISTS (SELECT 1 FROM image_members m WHERE m.image_id = images.id AND m.deleted = 0 AND m.member = ");
    s.bind(project.to_owned());
    if let Some(st) = status {
        s.push(" AND m.status = ").bind(st.to_owned());
    }
    s.push(")");
}

fn push_owner_is(s: &mut Sql, project: Option<&str>) {
    match project {
        Some(p) => {
            s.push("images.owner = ").bind(p.to_owned());
        }
        None => {
            s.push("1 = 0");
        }
    }
}

fn push_scope(s: &mut Sql, q: &ListQuery, scope: &Scope) {
    if q.visibility == Some(VisibilityFilter::Nothing) {
        s.push(" AND 1 = 0");
        return;
    }
    let project = scope.project.as_deref();
    let ms = q.member_status.as_status();
    let vis = |s: &mut Sql, v: &str| {
        s.push(" AND images.visibility = ").bind(v.to_owned());
    };
    if scope.is_admin {
        match q.visibility {
            None => {
                s.push(" AND (images.visibility <> 'community' OR ");
                push_owner_is(s, project);
                s.push(")");
            }
            Some(VisibilityFilter::All | VisibilityFilter::Nothing) => {}
            Some(VisibilityFilter::Public) => vis(s, "public"),
            Some(VisibilityFilter::Private) => vis(s, "private"),
            Some(VisibilityFilter::Shared) => vis(s, "shared"),
            Some(VisibilityFilter::Community) => vis(s, "community"),
        }
        return;
    }
    let shared_member = |s: &mut Sql| {
        s.push("(images.visibility = 'shared' AND ");
        match project {
            Some(p) => member_exists(s, p, ms),
            None => {
                s.push("1 = 0");
            }
        }
        s.push(")");
    };
    match q.visibility {
        None => {
            s.push(" AND (");
            push_owner_is(s, project);
            s.push(" OR images.visibility = 'public' OR ");
            shared_member(s);
            s.push(")");
        }
        Some(VisibilityFilter::All | VisibilityFilter::Nothing) => {
            s.push(" AND (");
            push_owner_is(s, project);
            s.push(" OR images.visibility IN ('public', 'community') OR ");
            shared_member(s);
            s.push(")");
        }
        Some(VisibilityFilter::Public) => vis(s, "public"),
        Some(VisibilityFilter::Community) => vis(s, "community"),
        Some(VisibilityFilter::Private) => {
            vis(s, "private");
            s.push(" AND ");
            push_owner_is(s, project);
        }
        Some(VisibilityFilter::Shared) => {
            s.push(" AND (images.visibility = 'shared' AND (");
            push_owner_is(s, project);
            s.push(" OR ");
            shared_member(s);
            s.push("))");
        }
    }
}

fn bind_value(s: &mut Sql, v: &FilterValue) {
    match v {
        FilterValue::Text(t) => s.bind(t.clone()),
        FilterValue::Int(i) => s.bind(*i),
        FilterValue::Bool(b) => s.bind(*b as i64),
    };
}

fn push_filter(s: &mut Sql, f: &Filter) {
    match f {
        Filter::Cmp(col, op, v) => {
            s.push(" AND images.")
                .push(column_name(*col))
                .push(" ")
                .push(operator(*op))
                .push(" ");
            bind_value(s, v);
        }
        Filter::In(col, values) => {
            if values.is_empty() {
                s.push(" AND 1 = 0");
            } else {
                s.push(" AND images.").push(column_name(*col)).push(" IN ");
                s.bind_list(values.clone());
            }
        }
        Filter::Property(name, value) => {
            s.push(" AND EXISTS (SELECT 1 FROM image_properties p WHERE p.image_id = images.id AND p.name = ");
            s.bind(name.clone())
                .push(" AND p.value = ")
                .bind(value.clone())
                .push(")");
        }
        Filter::Tag(tag) => {
            s.push(" AND EXISTS (SELECT 1 FROM image_tags t WHERE t.image_id = images.id AND t.value = ");
            s.bind(tag.clone()).push(")");
        }
    }
}

/// The expression a column sorts by. Plain columns keep their indexes usable; NULL sorts as
/// the smallest value (SQLite's order), and [`push_marker`] follows the same rule.
fn sort_expr(col: Column) -> String {
    format!("images.{}", column_name(col))
}

fn marker_value(col: Column, m: &Image) -> Option<FilterValue> {
    let text = |v: Option<&str>| v.map(|s| FilterValue::Text(s.to_owned()));
    match col {
        Column::Id => text(Some(m.id.as_str())),
        Column::Name => text(m.name.as_deref()),
        Column::Status => text(Some(m.status.as_str())),
        Column::ContainerFormat => text(m.container_format.as_deref()),
        Column::DiskFormat => text(m.disk_format.as_deref()),
        Column::Owner => text(m.owner.as_deref()),
        Column::Checksum => text(m.checksum.as_deref()),
        Column::OsHashValue => text(m.os_hash_value.as_deref()),
        Column::Size => m.size.map(FilterValue::Int),
        Column::VirtualSize => m.virtual_size.map(FilterValue::Int),
        Column::MinDisk => Some(FilterValue::Int(m.min_disk)),
        Column::MinRam => Some(FilterValue::Int(m.min_ram)),
        Column::CreatedAt => Some(FilterValue::Int(m.created_at)),
        Column::UpdatedAt => Some(FilterValue::Int(m.updated_at)),
        Column::Protected => Some(FilterValue::Bool(m.protected)),
    }
}

/// `col` equals the marker's value (NULL-aware).
fn push_equal(s: &mut Sql, col: Column, v: &Option<FilterValue>) {
    s.push(&sort_expr(col));
    match v {
        None => {
            s.push(" IS NULL");
        }
        Some(v) => {
            s.push(" = ");
            bind_value(s, v);
        }
    }
}

/// `col` comes strictly after the marker's value in `dir` order, NULL being the smallest.
fn push_after(s: &mut Sql, col: Column, dir: SortDir, v: &Option<FilterValue>) {
    let e = sort_expr(col);
    match (dir, v) {
        (SortDir::Asc, None) => {
            s.push(&e).push(" IS NOT NULL");
        }
        (SortDir::Desc, None) => {
            s.push("1 = 0");
        }
        (SortDir::Asc, Some(v)) => {
            s.push(&e).push(" > ");
            bind_value(s, v);
        }
        (SortDir::Desc, Some(v)) => {
            s.push("(").push(&e).push(" < ");
            bind_value(s, v);
            if col.nullable() {
                s.push(" OR ").push(&e).push(" IS NULL");
            }
            s.push(")");
        }
    }
}

/// Rows strictly after the marker in sort order:
/// `(k1 after m1) OR (k1 = m1 AND k2 after m2) OR …`.
fn push_marker(s: &mut Sql, sort: &[(Column, SortDir)], m: &Image) {
    // A redundant bound on the first key lets the database range-scan its index.
    if let Some((col, dir)) = sort.first() {
        match (dir, marker_value(*col, m)) {
            (SortDir::Asc, Some(v)) => {
                s.push(" AND ").push(&sort_expr(*col)).push(" >= ");
                bind_value(s, &v);
            }
            (SortDir::Desc, Some(v)) if !col.nullable() => {
                s.push(" AND ").push(&sort_expr(*col)).push(" <= ");
                bind_value(s, &v);
            }
            _ => {}
        }
    }
    s.push(" AND (");
    for i in 0..sort.len() {
        if i > 0 {
            s.push(" OR ");
        }
        s.push("(");
        for (col, _) in &sort[..i] {
            push_equal(s, *col, &marker_value(*col, m));
            s.push(" AND ");
        }
        let (col, dir) = sort[i];
        push_after(s, col, dir, &marker_value(col, m));
        s.push(")");
    }
    s.push(")");
}
