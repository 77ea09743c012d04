//! Metadata definitions: namespaces, resource types and their associations, and the objects,
//! properties and tags of each namespace (one table, `metadef_items`, told apart by `kind`).
//!
//! Visibility is applied here for lists (an admin sees everything; others see public
//! namespaces, those without an owner, and their project's); the API layer applies it to
//! single namespaces, together with the policy check.

use std::collections::HashMap;

use serde_json::{Map, Value};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use vela_domain::metadef::{
    Association, AssociationInput, Item, ItemInput, ItemKind, Namespace, NamespaceDoc,
    NamespaceFields, NsVisibility, ResourceType, STANDARD_RESOURCE_TYPES,
};
use vela_domain::Micros;

use crate::images::text;
use crate::sql::Sql;
use crate::tasks::opt_text;
use crate::{Db, DbError};

const NS_COLUMNS: &str =
    "id, namespace, display_name, description, visibility, protected, owner, created_at, updated_at";

/// Who is listing: an admin sees every namespace, others public ones and their project's.
#[derive(Debug, Clone, Copy)]
pub struct NsViewer<'a> {
    pub admin: bool,
    pub project: Option<&'a str>,
}

/// A column a list may be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Name,
    CreatedAt,
    UpdatedAt,
}

impl SortKey {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "namespace" | "name" => Some(SortKey::Name),
            "created_at" => Some(SortKey::CreatedAt),
            "updated_at" => Some(SortKey::UpdatedAt),
            _ => None,
        }
    }

    /// The columns ordered by, most significant first; the last one is unique.
    fn columns(self, name_col: &'static str) -> Vec<&'static str> {
        match self {
            SortKey::Name => vec![name_col],
            SortKey::CreatedAt => vec!["created_at", name_col],
            SortKey::UpdatedAt => vec!["updated_at", "created_at", name_col],
        }
    }
}

/// Order and page of a list: sort key and direction, and the name after which it starts.
#[derive(Debug, Clone)]
pub struct Page {
    pub sort_key: SortKey,
    pub descending: bool,
    pub marker: Option<String>,
    pub limit: usize,
}

/// Filters of the namespace list.
#[derive(Debug, Clone, Default)]
pub struct NsFilter {
    pub visibility: Option<NsVisibility>,
    /// Only namespaces associated with one of these resource types.
    pub resource_types: Option<Vec<String>>,
}

/// What loading a definition file did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadOutcome {
    Created,
    Replaced,
    Skipped,
}

fn corrupt(what: &str, v: &str) -> DbError {
    DbError::Corrupt(format!("{what} '{v}'"))
}

fn namespace_from_row(row: &AnyRow) -> Result<Namespace, DbError> {
    let vis = text(row, "visibility")?;
    Ok(Namespace {
        id: text(row, "id")?,
        namespace: text(row, "namespace")?,
        display_name: opt_text(row, "display_name")?,
        description: opt_text(row, "description")?,
        visibility: NsVisibility::parse(&vis).ok_or_else(|| corrupt("visibility", &vis))?,
        protected: row.try_get::<i64, _>("protected")? != 0,
        owner: opt_text(row, "owner")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn item_from_row(row: &AnyRow) -> Result<Item, DbError> {
    let body = text(row, "body")?;
    let body: Map<String, Value> =
        serde_json::from_str(&body).map_err(|_| corrupt("invalid JSON in", "body"))?;
    Ok(Item {
        name: text(row, "name")?,
        body,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn association_from_row(row: &AnyRow) -> Result<Association, DbError> {
    Ok(Association {
        resource_type: text(row, "resource_type")?,
        prefix: opt_text(row, "prefix")?,
        properties_target: opt_text(row, "properties_target")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Appends the keyset condition "after the marker row" for `columns` (the marker's values
/// come from a subquery on `table` by `marker_col = marker`, plus `scope` conditions).
fn push_after_marker(q: &mut Sql, columns: &[&str], descending: bool, marker_values: &[Value]) {
    let op = if descending { " < " } else { " > " };
    q.push(" AND (");
    for i in 0..columns.len() {
        if i > 0 {
            q.push(" OR ");
        }
        q.push("(");
        for (j, col) in columns.iter().enumerate().take(i) {
            q.push(col).push(" = ");
            bind_value(q, &marker_values[j]);
            q.push(" AND ");
        }
        q.push(columns[i]).push(op);
        bind_value(q, &marker_values[i]);
        q.push(")");
    }
    q.push(")");
}

fn bind_value(q: &mut Sql, v: &Value) {
    match v {
        Value::Number(n) => q.bind(n.as_i64().unwrap_or_default()),
        other => q.bind(other.as_str().unwrap_or_default().to_owned()),
    };
}

fn push_order(q: &mut Sql, columns: &[&str], descending: bool) {
    let dir = if descending { " DESC" } else { " ASC" };
    q.push(" ORDER BY ");
    for (i, col) in columns.iter().enumerate() {
        if i > 0 {
            q.push(", ");
        }
        q.push(col).push(dir);
    }
}

/// The sort values of a row for `columns` (`namespace`/`name` text, timestamps numbers).
fn sort_values(columns: &[&str], name: &str, created: Micros, updated: Micros) -> Vec<Value> {
    columns
        .iter()
        .map(|c| match *c {
            "created_at" => Value::from(created),
            "updated_at" => Value::from(updated),
            _ => Value::from(name),
        })
        .collect()
}

impl Db {
    async fn namespace_where(
        &self,
        conn: &mut AnyConnection,
        col: &str,
        value: &str,
    ) -> Result<Namespace, DbError> {
        let mut q = self.sql(&format!(
            "SELECT {NS_COLUMNS} FROM metadef_namespaces WHERE {col} = "
        ));
        q.bind(value.to_owned());
        let row = sqlx::query_with(&q.text, q.args)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or(DbError::NotFound)?;
        namespace_from_row(&row)
    }

    /// The namespace called `name` (NotFound if none).
    pub async fn get_namespace(&self, name: &str) -> Result<Namespace, DbError> {
        let mut conn = self.read.acquire().await?;
        self.namespace_where(&mut conn, "namespace", name).await
    }

    /// Namespaces `viewer` may see, filtered, in the page's order.
    pub async fn list_namespaces(
        &self,
        viewer: NsViewer<'_>,
        filter: &NsFilter,
        page: &Page,
    ) -> Result<Vec<Namespace>, DbError> {
        let mut conn = self.read.acquire().await?;
        let columns = page.sort_key.columns("namespace");
        let marker = match &page.marker {
            Some(m) => {
                let ns = self.namespace_where(&mut conn, "namespace", m).await?;
                Some(sort_values(
                    &columns,
                    &ns.namespace,
                    ns.created_at,
                    ns.updated_at,
                ))
            }
            None => None,
        };
        let mut q = self.sql(&format!(
            "SELECT {NS_COLUMNS} FROM metadef_namespaces WHERE 1 = 1"
        ));
        if !viewer.admin {
            q.push(" AND (visibility = 'public' OR owner IS NULL");
            if let Some(p) = viewer.project {
                q.push(" OR owner = ").bind(p.to_owned());
            }
            q.push(")");
        }
        if let Some(v) = filter.visibility {
            q.push(" AND visibility = ").bind(v.as_str().to_owned());
        }
        if let Some(types) = &filter.resource_types {
            q.push(
                " AND id IN (SELECT namespace_id FROM metadef_associations WHERE resource_type IN ",
            );
            q.bind_list(types.iter().cloned());
            q.push(")");
        }
        if let Some(values) = &marker {
            push_after_marker(&mut q, &columns, page.descending, values);
        }
        push_order(&mut q, &columns, page.descending);
        q.push(&format!(" LIMIT {}", page.limit));
        let rows = sqlx::query_with(&q.text, q.args)
            .fetch_all(&mut *conn)
            .await?;
        rows.iter().map(namespace_from_row).collect()
    }

    /// The associations of each of `namespaces` (by namespace id), oldest first.
    pub async fn associations_of(
        &self,
        namespaces: &[&Namespace],
    ) -> Result<HashMap<String, Vec<Association>>, DbError> {
        let mut out: HashMap<String, Vec<Association>> = HashMap::new();
        if namespaces.is_empty() {
            return Ok(out);
        }
        let mut q = self.sql(
            "SELECT namespace_id, resource_type, prefix, properties_target, created_at, \
             updated_at FROM metadef_associations WHERE namespace_id IN ",
        );
        q.bind_list(namespaces.iter().map(|n| n.id.clone()));
        q.push(" ORDER BY created_at, resource_type");
        let rows = sqlx::query_with(&q.text, q.args)
            .fetch_all(&self.read)
            .await?;
        for row in &rows {
            out.entry(text(row, "namespace_id")?)
                .or_default()
                .push(association_from_row(row)?);
        }
        Ok(out)
    }

    /// The associations of one namespace, oldest first.
    pub async fn associations_of_one(&self, ns: &Namespace) -> Result<Vec<Association>, DbError> {
        Ok(self
            .associations_of(&[ns])
            .await?
            .remove(&ns.id)
            .unwrap_or_default())
    }

    /// Runs a write that must touch a row (NotFound if it touched none).
    async fn write_one(&self, q: Sql) -> Result<(), DbError> {
        let done = sqlx::query_with(&q.text, q.args)
            .execute(&self.write)
            .await?;
        if done.rows_affected() == 0 {
            return Err(DbError::NotFound);
        }
        Ok(())
    }

    async fn insert_namespace(
        &self,
        conn: &mut AnyConnection,
        ns: &Namespace,
    ) -> Result<(), DbError> {
        let mut q = self.sql(&format!(
            "INSERT INTO metadef_namespaces ({NS_COLUMNS}) VALUES ("
        ));
        q.bind(ns.id.clone()).push(", ");
        q.bind(ns.namespace.clone()).push(", ");
        q.bind(ns.display_name.clone()).push(", ");
        q.bind(ns.description.clone()).push(", ");
        q.bind(ns.visibility.as_str().to_owned()).push(", ");
        q.bind(ns.protected as i64).push(", ");
        q.bind(ns.owner.clone()).push(", ");
        q.bind(ns.created_at).push(", ");
        q.bind(ns.updated_at).push(")");
        sqlx::query_with(&q.text, q.args)
            .execute(&mut *conn)
            .await
            .map_err(|e| match DbError::from(e) {
                DbError::Conflict(_) => DbError::Conflict(format!(
                    "The metadata definition namespace={} already exists.",
                    ns.namespace
                )),
                other => other,
            })?;
        Ok(())
    }

    /// Creates resource types that do not exist yet (the standard ones are protected).
    async fn ensure_types(
        &self,
        conn: &mut AnyConnection,
        names: &[&str],
        protected: bool,
        now: Micros,
    ) -> Result<(), DbError> {
        for name in names {
            let mut q = self.sql("SELECT name FROM metadef_resource_types WHERE name = ");
            q.bind((*name).to_owned());
            let found = sqlx::query_with(&q.text, q.args)
                .fetch_optional(&mut *conn)
                .await?;
            if found.is_some() {
                continue;
            }
            let mut q = self.sql(
                "INSERT INTO metadef_resource_types (name, protected, created_at, updated_at) \
                 VALUES (",
            );
            q.bind((*name).to_owned()).push(", ");
            q.bind(protected as i64).push(", ");
            q.bind(now).push(", ").bind(now).push(")");
            sqlx::query_with(&q.text, q.args)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    /// Makes sure the standard resource types exist (at start; idempotent).
    pub async fn ensure_standard_resource_types(&self) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        let now = vela_domain::now_micros();
        self.ensure_types(&mut tx, &STANDARD_RESOURCE_TYPES, true, now)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_association(
        &self,
        conn: &mut AnyConnection,
        ns: &Namespace,
        a: &AssociationInput,
        protect_new_type: bool,
        now: Micros,
    ) -> Result<Association, DbError> {
        self.ensure_types(conn, &[a.resource_type.as_str()], protect_new_type, now)
            .await?;
        let mut q = self.sql(
            "INSERT INTO metadef_associations (namespace_id, resource_type, prefix, \
             properties_target, created_at, updated_at) VALUES (",
        );
        q.bind(ns.id.clone()).push(", ");
        q.bind(a.resource_type.clone()).push(", ");
        q.bind(a.prefix.clone()).push(", ");
        q.bind(a.properties_target.clone()).push(", ");
        q.bind(now).push(", ").bind(now).push(")");
        sqlx::query_with(&q.text, q.args)
            .execute(&mut *conn)
            .await
            .map_err(|e| match DbError::from(e) {
                DbError::Conflict(_) => DbError::Conflict(format!(
                    "The metadata definition resource-type association of resource-type={} to \
                     namespace={} already exists.",
                    a.resource_type, ns.namespace
                )),
                other => other,
            })?;
        Ok(Association {
            resource_type: a.resource_type.clone(),
            prefix: a.prefix.clone(),
            properties_target: a.properties_target.clone(),
            created_at: now,
            updated_at: now,
        })
    }

    async fn insert_item(
        &self,
        conn: &mut AnyConnection,
        ns: &Namespace,
        kind: ItemKind,
        item: &ItemInput,
        now: Micros,
    ) -> Result<Item, DbError> {
        let body = Value::Object(item.body.clone()).to_string();
        let mut q = self.sql(
            "INSERT INTO metadef_items (namespace_id, kind, name, body, created_at, updated_at) \
             VALUES (",
        );
        q.bind(ns.id.clone()).push(", ");
        q.bind(kind.as_str().to_owned()).push(", ");
        q.bind(item.name.clone()).push(", ");
        q.bind(body).push(", ");
        q.bind(now).push(", ").bind(now).push(")");
        sqlx::query_with(&q.text, q.args)
            .execute(&mut *conn)
            .await
            .map_err(|e| match DbError::from(e) {
                DbError::Conflict(_) => DbError::Conflict(duplicate_item(kind, &item.name, ns)),
                other => other,
            })?;
        Ok(Item {
            name: item.name.clone(),
            body: item.body.clone(),
            created_at: now,
            updated_at: now,
        })
    }

    async fn insert_doc(
        &self,
        conn: &mut AnyConnection,
        ns: &Namespace,
        doc: &NamespaceDoc,
        loading: bool,
        now: Micros,
    ) -> Result<(), DbError> {
        self.insert_namespace(conn, ns).await?;
        // Each item is a microsecond younger than the one before, so that lists in creation
        // order show them in the order they were given.
        for (i, a) in doc.associations.iter().enumerate() {
            self.insert_association(conn, ns, a, loading, now + i as i64)
                .await?;
        }
        for (kind, items) in [
            (ItemKind::Object, &doc.objects),
            (ItemKind::Property, &doc.properties),
            (ItemKind::Tag, &doc.tags),
        ] {
            for (i, item) in items.iter().enumerate() {
                self.insert_item(conn, ns, kind, item, now + i as i64)
                    .await?;
            }
        }
        Ok(())
    }

    /// Creates a namespace with everything in it, in one transaction (Conflict if the name, or
    /// a name inside it, is taken).
    pub async fn create_namespace(
        &self,
        doc: &NamespaceDoc,
        owner: Option<String>,
        now: Micros,
    ) -> Result<Namespace, DbError> {
        let ns = new_namespace(&doc.fields, owner, now);
        let mut tx = self.begin_write().await?;
        self.insert_doc(&mut tx, &ns, doc, false, now).await?;
        tx.commit().await?;
        Ok(ns)
    }

    /// Replaces the record of namespace `id` (a rename included) with `ns`.
    pub async fn update_namespace(&self, ns: &Namespace) -> Result<(), DbError> {
        let mut q = self.sql("UPDATE metadef_namespaces SET namespace = ");
        q.bind(ns.namespace.clone());
        q.push(", display_name = ").bind(ns.display_name.clone());
        q.push(", description = ").bind(ns.description.clone());
        q.push(", visibility = ")
            .bind(ns.visibility.as_str().to_owned());
        q.push(", protected = ").bind(ns.protected as i64);
        q.push(", owner = ").bind(ns.owner.clone());
        q.push(", updated_at = ").bind(ns.updated_at);
        q.push(" WHERE id = ").bind(ns.id.clone());
        let done = sqlx::query_with(&q.text, q.args)
            .execute(&self.write)
            .await
            .map_err(|e| match DbError::from(e) {
                DbError::Conflict(_) => DbError::Conflict(format!(
                    "Invalid update. It would result in a duplicate metadata definition \
                     namespace with the same name of {}",
                    ns.namespace
                )),
                other => other,
            })?;
        if done.rows_affected() == 0 {
            return Err(DbError::NotFound);
        }
        Ok(())
    }

    async fn delete_namespace_in(
        &self,
        conn: &mut AnyConnection,
        id: &str,
    ) -> Result<u64, DbError> {
        for table in ["metadef_items", "metadef_associations"] {
            let mut q = self.sql(&format!("DELETE FROM {table} WHERE namespace_id = "));
            q.bind(id.to_owned());
            sqlx::query_with(&q.text, q.args)
                .execute(&mut *conn)
                .await?;
        }
        let mut q = self.sql("DELETE FROM metadef_namespaces WHERE id = ");
        q.bind(id.to_owned());
        Ok(sqlx::query_with(&q.text, q.args)
            .execute(&mut *conn)
            .await?
            .rows_affected())
    }

    /// Deletes a namespace and everything in it.
    pub async fn delete_namespace(&self, id: &str) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        if self.delete_namespace_in(&mut tx, id).await? == 0 {
            return Err(DbError::NotFound);
        }
        tx.commit().await?;
        Ok(())
    }

    /// The objects, properties or tags of a namespace: all of them in creation order, or one
    /// page.
    pub async fn list_items(
        &self,
        ns: &Namespace,
        kind: ItemKind,
        page: Option<&Page>,
    ) -> Result<Vec<Item>, DbError> {
        let mut conn = self.read.acquire().await?;
        let columns = page.map_or_else(
            || vec!["created_at", "name"],
            |p| p.sort_key.columns("name"),
        );
        let descending = page.is_some_and(|p| p.descending);
        let marker = match page.and_then(|p| p.marker.as_deref()) {
            Some(m) => {
                let item = self.item_in(&mut conn, ns, kind, m).await?;
                Some(sort_values(
                    &columns,
                    &item.name,
                    item.created_at,
                    item.updated_at,
                ))
            }
            None => None,
        };
        let mut q = self.sql(
            "SELECT name, body, created_at, updated_at FROM metadef_items WHERE namespace_id = ",
        );
        q.bind(ns.id.clone());
        q.push(" AND kind = ").bind(kind.as_str().to_owned());
        if let Some(values) = &marker {
            push_after_marker(&mut q, &columns, descending, values);
        }
        push_order(&mut q, &columns, descending);
        if let Some(p) = page {
            q.push(&format!(" LIMIT {}", p.limit));
        }
        let rows = sqlx::query_with(&q.text, q.args)
            .fetch_all(&mut *conn)
            .await?;
        rows.iter().map(item_from_row).collect()
    }

    async fn item_in(
        &self,
        conn: &mut AnyConnection,
        ns: &Namespace,
        kind: ItemKind,
        name: &str,
    ) -> Result<Item, DbError> {
        let mut q = self.sql(
            "SELECT name, body, created_at, updated_at FROM metadef_items WHERE namespace_id = ",
        );
        q.bind(ns.id.clone());
        q.push(" AND kind = ").bind(kind.as_str().to_owned());
        q.push(" AND name = ").bind(name.to_owned());
        let row = sqlx::query_with(&q.text, q.args)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or(DbError::NotFound)?;
        item_from_row(&row)
    }

    /// One object, property or tag (NotFound if none).
    pub async fn get_item(
        &self,
        ns: &Namespace,
        kind: ItemKind,
        name: &str,
    ) -> Result<Item, DbError> {
        let mut conn = self.read.acquire().await?;
        self.item_in(&mut conn, ns, kind, name).await
    }

    async fn count_items(
        &self,
        conn: &mut AnyConnection,
        ns: &Namespace,
        kind: ItemKind,
    ) -> Result<usize, DbError> {
        let mut q = self.sql("SELECT COUNT(*) AS n FROM metadef_items WHERE namespace_id = ");
        q.bind(ns.id.clone());
        q.push(" AND kind = ").bind(kind.as_str().to_owned());
        let row = sqlx::query_with(&q.text, q.args)
            .fetch_one(&mut *conn)
            .await?;
        Ok(usize::try_from(row.try_get::<i64, _>("n")?).unwrap_or(usize::MAX))
    }

    /// Adds an object, property or tag (Conflict if the name is taken; `max` items a kind).
    pub async fn create_item(
        &self,
        ns: &Namespace,
        kind: ItemKind,
        item: &ItemInput,
        max: usize,
        now: Micros,
    ) -> Result<Item, DbError> {
        let mut tx = self.begin_write().await?;
        if self.count_items(&mut tx, ns, kind).await? >= max {
            return Err(too_many(kind, max));
        }
        let created = self.insert_item(&mut tx, ns, kind, item, now).await?;
        tx.commit().await?;
        Ok(created)
    }

    /// Replaces the object, property or tag `name` with `item` (which may rename it).
    pub async fn update_item(
        &self,
        ns: &Namespace,
        kind: ItemKind,
        name: &str,
        item: &ItemInput,
        now: Micros,
    ) -> Result<Item, DbError> {
        let mut tx = self.begin_write().await?;
        let old = self.item_in(&mut tx, ns, kind, name).await?;
        let body = Value::Object(item.body.clone()).to_string();
        let mut q = self.sql("UPDATE metadef_items SET name = ");
        q.bind(item.name.clone());
        q.push(", body = ").bind(body);
        q.push(", updated_at = ").bind(now);
        q.push(" WHERE namespace_id = ").bind(ns.id.clone());
        q.push(" AND kind = ").bind(kind.as_str().to_owned());
        q.push(" AND name = ").bind(name.to_owned());
        sqlx::query_with(&q.text, q.args)
            .execute(&mut *tx)
            .await
            .map_err(|e| match DbError::from(e) {
                DbError::Conflict(_) if kind == ItemKind::Tag => {
                    DbError::Conflict(duplicate_item(kind, &item.name, ns))
                }
                DbError::Conflict(_) => DbError::Conflict(format!(
                    "Invalid update. It would result in a duplicate metadata definition {} \
                     with the same name={} in namespace={}.",
                    kind.title(),
                    item.name,
                    ns.namespace
                )),
                other => other,
            })?;
        tx.commit().await?;
        Ok(Item {
            name: item.name.clone(),
            body: item.body.clone(),
            created_at: old.created_at,
            updated_at: now,
        })
    }

    /// Deletes one object, property or tag (NotFound if none).
    pub async fn delete_item(
        &self,
        ns: &Namespace,
        kind: ItemKind,
        name: &str,
    ) -> Result<(), DbError> {
        let mut q = self.sql("DELETE FROM metadef_items WHERE namespace_id = ");
        q.bind(ns.id.clone());
        q.push(" AND kind = ").bind(kind.as_str().to_owned());
        q.push(" AND name = ").bind(name.to_owned());
        self.write_one(q).await
    }

    /// Deletes every object, property or tag of a namespace.
    pub async fn delete_items(&self, ns: &Namespace, kind: ItemKind) -> Result<(), DbError> {
        let mut q = self.sql("DELETE FROM metadef_items WHERE namespace_id = ");
        q.bind(ns.id.clone());
        q.push(" AND kind = ").bind(kind.as_str().to_owned());
        sqlx::query_with(&q.text, q.args)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Sets a namespace's tags to `tags` (or, with `append`, adds them), in one transaction.
    pub async fn put_tags(
        &self,
        ns: &Namespace,
        tags: &[ItemInput],
        append: bool,
        max: usize,
        now: Micros,
    ) -> Result<Vec<Item>, DbError> {
        let mut tx = self.begin_write().await?;
        if !append {
            let mut q = self.sql("DELETE FROM metadef_items WHERE namespace_id = ");
            q.bind(ns.id.clone()).push(" AND kind = 'tag'");
            sqlx::query_with(&q.text, q.args).execute(&mut *tx).await?;
        }
        let mut out = Vec::with_capacity(tags.len());
        for (i, t) in tags.iter().enumerate() {
            let at = now + i as i64;
            out.push(self.insert_item(&mut tx, ns, ItemKind::Tag, t, at).await?);
        }
        if self.count_items(&mut tx, ns, ItemKind::Tag).await? > max {
            return Err(too_many(ItemKind::Tag, max));
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Every resource type, by name.
    pub async fn list_resource_types(&self) -> Result<Vec<ResourceType>, DbError> {
        let rows = sqlx::query(
            "SELECT name, protected, created_at, updated_at FROM metadef_resource_types \
             ORDER BY created_at, name",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ResourceType {
                    name: text(row, "name")?,
                    protected: row.try_get::<i64, _>("protected")? != 0,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            })
            .collect()
    }

    /// Associates a namespace with a resource type (created if new; Conflict if associated).
    pub async fn associate(
        &self,
        ns: &Namespace,
        a: &AssociationInput,
        now: Micros,
    ) -> Result<Association, DbError> {
        let mut tx = self.begin_write().await?;
        let created = self.insert_association(&mut tx, ns, a, false, now).await?;
        tx.commit().await?;
        Ok(created)
    }

    /// Removes an association (NotFound if there is none).
    pub async fn dissociate(&self, ns: &Namespace, resource_type: &str) -> Result<(), DbError> {
        let mut q = self.sql("DELETE FROM metadef_associations WHERE namespace_id = ");
        q.bind(ns.id.clone());
        q.push(" AND resource_type = ")
            .bind(resource_type.to_owned());
        self.write_one(q).await
    }

    /// Loads a definition: creates the namespace, or, when one of that name exists, replaces
    /// it whole (`replace`) or leaves it (Skipped). One transaction.
    pub async fn load_namespace(
        &self,
        doc: &NamespaceDoc,
        replace: bool,
        now: Micros,
    ) -> Result<LoadOutcome, DbError> {
        let mut tx = self.begin_write().await?;
        let existing = match self
            .namespace_where(&mut tx, "namespace", &doc.fields.namespace)
            .await
        {
            Ok(ns) => Some(ns),
            Err(DbError::NotFound) => None,
            Err(e) => return Err(e),
        };
        let outcome = match &existing {
            Some(_) if !replace => return Ok(LoadOutcome::Skipped),
            Some(old) => {
                self.delete_namespace_in(&mut tx, &old.id).await?;
                LoadOutcome::Replaced
            }
            None => LoadOutcome::Created,
        };
        let mut ns = new_namespace(&doc.fields, doc.fields.owner.clone(), now);
        if let Some(old) = &existing {
            ns.created_at = old.created_at;
        }
        self.insert_doc(&mut tx, &ns, doc, true, now).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// Every namespace with its contents, by name (for `vela metadefs export`).
    pub async fn export_namespaces(&self) -> Result<Vec<NamespaceDoc>, DbError> {
        let viewer = NsViewer {
            admin: true,
            project: None,
        };
        let mut out = Vec::new();
        let mut marker = None;
        loop {
            let page = Page {
                sort_key: SortKey::Name,
                descending: false,
                marker: marker.clone(),
                limit: 200,
            };
            let batch = self
                .list_namespaces(viewer, &NsFilter::default(), &page)
                .await?;
            let refs: Vec<&Namespace> = batch.iter().collect();
            let mut assoc = self.associations_of(&refs).await?;
            for ns in &batch {
                let items = |kind| self.list_items(ns, kind, None);
                let inputs = |v: Vec<Item>| {
                    v.into_iter()
                        .map(|i| ItemInput {
                            name: i.name,
                            body: i.body,
                        })
                        .collect::<Vec<_>>()
                };
                out.push(NamespaceDoc {
                    fields: NamespaceFields {
                        namespace: ns.namespace.clone(),
                        display_name: ns.display_name.clone(),
                        description: ns.description.clone(),
                        visibility: Some(ns.visibility),
                        protected: Some(ns.protected),
                        owner: ns.owner.clone(),
                    },
                    associations: assoc
                        .remove(&ns.id)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|a| AssociationInput {
                            resource_type: a.resource_type,
                            prefix: a.prefix,
                            properties_target: a.properties_target,
                        })
                        .collect(),
                    objects: inputs(items(ItemKind::Object).await?),
                    properties: inputs(items(ItemKind::Property).await?),
                    tags: inputs(items(ItemKind::Tag).await?),
                });
            }
            match batch.last() {
                Some(last) if batch.len() == page.limit => marker = Some(last.namespace.clone()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// Whether the one-time event `name` has happened.
    pub async fn event_done(&self, name: &str) -> Result<bool, DbError> {
        let mut q = self.sql("SELECT done_at FROM vela_events WHERE name = ");
        q.bind(name.to_owned());
        Ok(sqlx::query_with(&q.text, q.args)
            .fetch_optional(&self.read)
            .await?
            .is_some())
    }

    /// Runs `f` once per deployment: records `name` and runs `f` in one transaction unless
    /// the event is recorded already (then false). Nodes starting together run it once.
    pub async fn once<F, Fut>(&self, name: &str, f: F) -> Result<bool, DbError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(), DbError>>,
    {
        let mut q = self.sql("INSERT INTO vela_events (name, done_at) VALUES (");
        q.bind(name.to_owned())
            .push(", ")
            .bind(vela_domain::now_micros())
            .push(")");
        match sqlx::query_with(&q.text, q.args).execute(&self.write).await {
            Ok(_) => {}
            Err(e) => {
                return match DbError::from(e) {
                    DbError::Conflict(_) => Ok(false),
                    other => Err(other),
                }
            }
        }
        if let Err(e) = f().await {
            // Let a later start try again.
            let mut q = self.sql("DELETE FROM vela_events WHERE name = ");
            q.bind(name.to_owned());
            let _ = sqlx::query_with(&q.text, q.args).execute(&self.write).await;
            return Err(e);
        }
        Ok(true)
    }
}

fn new_namespace(fields: &NamespaceFields, owner: Option<String>, now: Micros) -> Namespace {
    Namespace {
        id: uuid::Uuid::new_v4().to_string(),
        namespace: fields.namespace.clone(),
        display_name: fields.display_name.clone(),
        description: fields.description.clone(),
        visibility: fields.visibility.unwrap_or(NsVisibility::Private),
        protected: fields.protected.unwrap_or(false),
        owner,
        created_at: now,
        updated_at: now,
    }
}

fn duplicate_item(kind: ItemKind, name: &str, ns: &Namespace) -> String {
    match kind {
        ItemKind::Tag => format!(
            "A metadata tag with name={name} already exists in namespace={}. (Please note \
             that metadata tag names are case insensitive).",
            ns.namespace
        ),
        _ => format!(
            "A metadata definition {} with name={name} already exists in namespace={}.",
            kind.title(),
            ns.namespace
        ),
    }
}

fn too_many(kind: ItemKind, max: usize) -> DbError {
    DbError::Domain(vela_domain::DomainError::TooLarge(format!(
        "A namespace may hold at most {max} items of kind {}.",
        kind.as_str()
    )))
}
