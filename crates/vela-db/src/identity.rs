//! The embedded identity service's records: projects, users, roles, role assignments, revoked
//! tokens and the token signing key. One domain (`default`) holds everything.

use sqlx::any::AnyRow;
use sqlx::Row;
use vela_domain::Micros;

use crate::images::text;
use crate::{Db, DbError};

/// The assignment target of system-scope roles.
pub const SYSTEM: &str = "system";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub id: String,
    pub name: String,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub name: String,
    /// PHC string (argon2id).
    pub password_hash: String,
    pub enabled: bool,
    pub default_project_id: Option<String>,
    /// Tokens issued before this instant are invalid (password change, user disabled).
    pub tokens_valid_after: Micros,
    /// The identity provider whose federated logins made this user (it has no password).
    pub idp_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub id: String,
    pub name: String,
}

/// A role held by a user on a project or on the system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub user_id: String,
    /// A project id or [`SYSTEM`].
    pub target: String,
    pub role: Role,
}

fn project(r: &AnyRow) -> Result<Project, DbError> {
    Ok(Project {
        id: text(r, "id")?,
        name: text(r, "name")?,
        enabled: r.try_get::<i64, _>("enabled")? != 0,
    })
}

pub(crate) fn user(r: &AnyRow) -> Result<User, DbError> {
    Ok(User {
        id: text(r, "id")?,
        name: text(r, "name")?,
        password_hash: text(r, "password_hash")?,
        enabled: r.try_get::<i64, _>("enabled")? != 0,
        default_project_id: r.try_get("default_project_id")?,
        tokens_valid_after: r.try_get("tokens_valid_after")?,
        idp_id: r.try_get("idp_id")?,
    })
}

/// A token signing key (its secret shows as `***`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKey {
    pub id: String,
    pub secret: vela_domain::Secret,
    pub created_at: Micros,
    /// When it stops verifying tokens; `None` for the key that signs.
    pub retire_at: Option<Micros>,
}

fn signing_key(r: &AnyRow) -> Result<SigningKey, DbError> {
    Ok(SigningKey {
        id: text(r, "id")?,
        secret: vela_domain::Secret::new(text(r, "secret")?),
        created_at: r.try_get("created_at")?,
        retire_at: r.try_get("retire_at")?,
    })
}

fn role(r: &AnyRow) -> Result<Role, DbError> {
    Ok(Role {
        id: text(r, "id")?,
        name: text(r, "name")?,
    })
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

const USER_COLUMNS: &str =
    "id, name, password_hash, enabled, default_project_id, tokens_valid_after";

/// What user reads select: the written columns and the federation link.
pub(crate) const USER_SELECT: &str =
    "id, name, password_hash, enabled, default_project_id, tokens_valid_after, idp_id";

impl Db {
    pub(crate) async fn one<T>(
        &self,
        q: crate::sql::Sql,
        f: fn(&AnyRow) -> Result<T, DbError>,
    ) -> Result<Option<T>, DbError> {
        sqlx::query_with(&q.text, q.args)
            .fetch_optional(&self.read)
            .await?
            .as_ref()
            .map(f)
            .transpose()
    }

    pub(crate) async fn all<T>(
        &self,
        q: crate::sql::Sql,
        f: fn(&AnyRow) -> Result<T, DbError>,
    ) -> Result<Vec<T>, DbError> {
        let rows = sqlx::query_with(&q.text, q.args)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(f).collect()
    }

    pub(crate) async fn exec(&self, q: crate::sql::Sql) -> Result<u64, DbError> {
        Ok(sqlx::query_with(&q.text, q.args)
            .execute(&self.write)
            .await?
            .rows_affected())
    }

    fn by_id_or_name(&self, select: &str, key: &str) -> crate::sql::Sql {
        let mut q = self.sql(select);
        q.push(" WHERE id = ")
            .bind(key.to_owned())
            .push(" OR name = ")
            .bind(key.to_owned());
        q
    }

    // ---- projects

    pub async fn create_project(&self, name: &str) -> Result<Project, DbError> {
        let p = Project {
            id: new_id(),
            name: name.to_owned(),
            enabled: true,
        };
        let mut q =
            self.sql("INSERT INTO identity_projects (id, name, enabled, created_at) VALUES (");
        q.bind(p.id.clone())
            .push(", ")
            .bind(p.name.clone())
            .push(", 1, ")
            .bind(vela_domain::now_micros())
            .push(")");
        self.exec(q).await.map_err(|e| match e {
            DbError::Conflict(_) => DbError::Conflict(format!("project '{name}' already exists")),
            e => e,
        })?;
        Ok(p)
    }

    /// A project by id or name.
    pub async fn find_project(&self, key: &str) -> Result<Option<Project>, DbError> {
        let q = self.by_id_or_name("SELECT id, name, enabled FROM identity_projects", key);
        self.one(q, project).await
    }

    pub async fn list_projects(&self) -> Result<Vec<Project>, DbError> {
        let q = self.sql("SELECT id, name, enabled FROM identity_projects ORDER BY name");
        self.all(q, project).await
    }

    /// Deletes a project and every role assignment on it (its tokens stop validating).
    pub async fn delete_project(&self, id: &str) -> Result<bool, DbError> {
        let mut q = self.sql("DELETE FROM identity_assignments WHERE target = ");
        q.bind(id.to_owned());
        self.exec(q).await?;
        let mut q = self.sql("DELETE FROM identity_projects WHERE id = ");
        q.bind(id.to_owned());
        Ok(self.exec(q).await? > 0)
    }

    // ---- users

    pub async fn create_user(
        &self,
        name: &str,
        password_hash: &str,
        default_project_id: Option<&str>,
    ) -> Result<User, DbError> {
        let now = vela_domain::now_micros();
        let u = User {
            id: new_id(),
            name: name.to_owned(),
            password_hash: password_hash.to_owned(),
            enabled: true,
            default_project_id: default_project_id.map(str::to_owned),
            tokens_valid_after: now,
            idp_id: None,
        };
        let mut q = self.sql(&format!(
            "INSERT INTO identity_users ({USER_COLUMNS}, created_at) VALUES ("
        ));
        q.bind(u.id.clone())
            .push(", ")
            .bind(u.name.clone())
            .push(", ")
            .bind(u.password_hash.clone())
            .push(", 1, ")
            .bind(u.default_project_id.clone())
            .push(", ")
            .bind(now)
            .push(", ")
            .bind(now)
            .push(")");
        self.exec(q).await.map_err(|e| match e {
            DbError::Conflict(_) => DbError::Conflict(format!("user '{name}' already exists")),
            e => e,
        })?;
        Ok(u)
    }

    /// A user by id or name.
    pub async fn find_user(&self, key: &str) -> Result<Option<User>, DbError> {
        let q = self.by_id_or_name(&format!("SELECT {USER_SELECT} FROM identity_users"), key);
        self.one(q, user).await
    }

    pub async fn list_users(&self) -> Result<Vec<User>, DbError> {
        let q = self.sql(&format!(
            "SELECT {USER_SELECT} FROM identity_users ORDER BY name"
        ));
        self.all(q, user).await
    }

    /// Replaces the password hash; tokens issued before now stop validating.
    pub async fn set_password(&self, user_id: &str, password_hash: &str) -> Result<bool, DbError> {
        let mut q = self.sql("UPDATE identity_users SET password_hash = ");
        q.bind(password_hash.to_owned())
            .push(", tokens_valid_after = ")
            .bind(vela_domain::now_micros())
            .push(" WHERE id = ")
            .bind(user_id.to_owned());
        Ok(self.exec(q).await? > 0)
    }

    /// Deletes a user and its role assignments (its tokens stop validating).
    pub async fn delete_user(&self, user_id: &str) -> Result<bool, DbError> {
        let mut q = self.sql("DELETE FROM identity_assignments WHERE user_id = ");
        q.bind(user_id.to_owned());
        self.exec(q).await?;
        let mut q = self.sql("DELETE FROM identity_users WHERE id = ");
        q.bind(user_id.to_owned());
        Ok(self.exec(q).await? > 0)
    }

    pub async fn count_users(&self) -> Result<i64, DbError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM identity_users")
            .fetch_one(&self.read)
            .await?;
        Ok(row.try_get("n")?)
    }

    // ---- roles and assignments

    /// The role named `name`, created if missing.
    pub async fn ensure_role(&self, name: &str) -> Result<Role, DbError> {
        let mut q = self.sql("SELECT id, name FROM identity_roles WHERE name = ");
        q.bind(name.to_owned());
        if let Some(r) = self.one(q, role).await? {
            return Ok(r);
        }
        let mut q = self.sql("INSERT INTO identity_roles (id, name) VALUES (");
        q.bind(new_id()).push(", ").bind(name.to_owned()).push(")");
        match self.exec(q).await {
            Ok(_) | Err(DbError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
        let mut q = self.sql("SELECT id, name FROM identity_roles WHERE name = ");
        q.bind(name.to_owned());
        self.one(q, role)
            .await?
            .ok_or_else(|| DbError::Corrupt(format!("role '{name}' vanished")))
    }

    pub async fn list_roles(&self) -> Result<Vec<Role>, DbError> {
        self.all(
            self.sql("SELECT id, name FROM identity_roles ORDER BY name"),
            role,
        )
        .await
    }

    /// Gives `user_id` the role on `target` (a project id or [`SYSTEM`]); idempotent.
    pub async fn grant(&self, user_id: &str, target: &str, role_id: &str) -> Result<(), DbError> {
        let mut q =
            self.sql("INSERT INTO identity_assignments (user_id, target, role_id) VALUES (");
        q.bind(user_id.to_owned())
            .push(", ")
            .bind(target.to_owned())
            .push(", ")
            .bind(role_id.to_owned())
            .push(")");
        match self.exec(q).await {
            Ok(_) | Err(DbError::Conflict(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Takes the role away; whether it was held.
    pub async fn revoke_grant(
        &self,
        user_id: &str,
        target: &str,
        role_id: &str,
    ) -> Result<bool, DbError> {
        let mut q = self.sql("DELETE FROM identity_assignments WHERE user_id = ");
        q.bind(user_id.to_owned())
            .push(" AND target = ")
            .bind(target.to_owned())
            .push(" AND role_id = ")
            .bind(role_id.to_owned());
        Ok(self.exec(q).await? > 0)
    }

    /// The roles `user_id` holds on `target`.
    pub async fn roles_on(&self, user_id: &str, target: &str) -> Result<Vec<Role>, DbError> {
        let mut q = self.sql(
            "SELECT r.id AS id, r.name AS name FROM identity_assignments a \
             JOIN identity_roles r ON r.id = a.role_id WHERE a.user_id = ",
        );
        q.bind(user_id.to_owned())
            .push(" AND a.target = ")
            .bind(target.to_owned())
            .push(" ORDER BY r.name");
        self.all(q, role).await
    }

    /// Role assignments, optionally only those of a user and/or on a target (a project id
    /// or [`SYSTEM`]), ordered by user, target and role name.
    pub async fn assignments(
        &self,
        user_id: Option<&str>,
        target: Option<&str>,
    ) -> Result<Vec<Assignment>, DbError> {
        let mut q = self.sql(
            "SELECT a.user_id AS user_id, a.target AS target, r.id AS id, r.name AS name \
             FROM identity_assignments a JOIN identity_roles r ON r.id = a.role_id WHERE 1 = 1",
        );
        if let Some(u) = user_id {
            q.push(" AND a.user_id = ").bind(u.to_owned());
        }
        if let Some(t) = target {
            q.push(" AND a.target = ").bind(t.to_owned());
        }
        q.push(" ORDER BY a.user_id, a.target, r.name");
        self.all(q, |r| {
            Ok(Assignment {
                user_id: text(r, "user_id")?,
                target: text(r, "target")?,
                role: role(r)?,
            })
        })
        .await
    }

    // ---- tokens

    /// Records a revoked token until it would have expired; drops records of expired ones.
    pub async fn revoke_token(&self, token_id: &str, expires_at: Micros) -> Result<(), DbError> {
        let mut q = self.sql("DELETE FROM identity_revoked_tokens WHERE expires_at < ");
        q.bind(vela_domain::now_micros());
        self.exec(q).await?;
        let mut q = self.sql("INSERT INTO identity_revoked_tokens (token_id, expires_at) VALUES (");
        q.bind(token_id.to_owned())
            .push(", ")
            .bind(expires_at)
            .push(")");
        match self.exec(q).await {
            Ok(_) | Err(DbError::Conflict(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Whether any of `token_ids` (a token and the tokens it was rescoped from) is revoked.
    pub async fn any_token_revoked(&self, token_ids: &[&str]) -> Result<bool, DbError> {
        if token_ids.is_empty() {
            return Ok(false);
        }
        let mut q = self.sql("SELECT 1 AS one FROM identity_revoked_tokens WHERE token_id IN ");
        q.bind_list(token_ids.iter().map(|id| (*id).to_owned()))
            .push(" LIMIT 1");
        Ok(self.one(q, |_| Ok(())).await?.is_some())
    }

    /// The token signing keys that still verify, the signing one (the newest without a
    /// retirement time) first. The first key is created on first use (`fresh` supplies
    /// it); every node sharing the database reads the same keys.
    pub async fn signing_keys(
        &self,
        fresh: impl FnOnce() -> String,
    ) -> Result<Vec<SigningKey>, DbError> {
        let keys = self.read_signing_keys().await?;
        if keys.iter().any(|k| k.retire_at.is_none()) {
            return Ok(keys);
        }
        let mut q =
            self.sql("INSERT INTO identity_keys (id, secret, created_at) VALUES ('primary', ");
        q.bind(fresh())
            .push(", ")
            .bind(vela_domain::now_micros())
            .push(")");
        match self.exec(q).await {
            Ok(_) | Err(DbError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
        // Read back: a racing node's key wins if it was first.
        let keys = self.read_signing_keys().await?;
        if keys.iter().any(|k| k.retire_at.is_none()) {
            Ok(keys)
        } else {
            Err(DbError::Corrupt("no current token signing key".into()))
        }
    }

    async fn read_signing_keys(&self) -> Result<Vec<SigningKey>, DbError> {
        let mut q = self.sql(
            "SELECT id, secret, created_at, retire_at FROM identity_keys \
             WHERE retire_at IS NULL OR retire_at > ",
        );
        q.bind(vela_domain::now_micros())
            .push(" ORDER BY CASE WHEN retire_at IS NULL THEN 0 ELSE 1 END, created_at DESC, id");
        self.all(q, signing_key).await
    }

    /// Makes `secret` the signing key. The keys that signed until now keep verifying
    /// tokens until `retire_at` (tokens they signed stay valid that long); keys retired
    /// before now are deleted. Returns the new key's id.
    pub async fn rotate_signing_key(
        &self,
        secret: String,
        retire_at: Micros,
    ) -> Result<String, DbError> {
        let now = vela_domain::now_micros();
        let id = new_id();
        let mut tx = self.begin_write().await?;
        let mut q = self.sql("UPDATE identity_keys SET retire_at = ");
        q.bind(retire_at.max(now)).push(" WHERE retire_at IS NULL");
        sqlx::query_with(&q.text, q.args).execute(&mut *tx).await?;
        let mut q = self.sql("DELETE FROM identity_keys WHERE retire_at <= ");
        q.bind(now);
        sqlx::query_with(&q.text, q.args).execute(&mut *tx).await?;
        let mut q = self.sql("INSERT INTO identity_keys (id, secret, created_at) VALUES (");
        q.bind(id.clone())
            .push(", ")
            .bind(secret)
            .push(", ")
            .bind(now)
            .push(")");
        sqlx::query_with(&q.text, q.args).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(id)
    }
}
