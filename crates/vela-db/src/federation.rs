//! Federation records of the embedded identity service: mappings, OpenID Connect identity
//! providers, and the users federated logins make.

use sqlx::any::AnyRow;
use sqlx::Row;
use vela_domain::{Micros, Secret};

use crate::identity::{new_id, user, User, USER_SELECT};
use crate::images::text;
use crate::{Db, DbError};

/// A mapping: rules in Keystone's JSON format (checked by the caller before storing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingRecord {
    pub id: String,
    pub rules: String,
}

/// An OpenID Connect identity provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idp {
    pub id: String,
    /// The `iss` its tokens carry.
    pub issuer: String,
    /// The `aud` its access tokens must carry for Vela.
    pub audience: String,
    /// Where its signing keys are; `None`: from its discovery document.
    pub jwks_uri: Option<String>,
    /// The mapping of its `openid` protocol.
    pub mapping_id: String,
    /// The client Vela signs browsers in with (WebSSO).
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub enabled: bool,
}

fn idp(r: &AnyRow) -> Result<Idp, DbError> {
    let secret: Option<String> = r.try_get("client_secret")?;
    Ok(Idp {
        id: text(r, "id")?,
        issuer: text(r, "issuer")?,
        audience: text(r, "audience")?,
        jwks_uri: r.try_get("jwks_uri")?,
        mapping_id: text(r, "mapping_id")?,
        client_id: r.try_get("client_id")?,
        client_secret: secret.map(Secret::new),
        enabled: r.try_get::<i64, _>("enabled")? != 0,
    })
}

const IDP_COLUMNS: &str =
    "id, issuer, audience, jwks_uri, mapping_id, client_id, client_secret, enabled";

/// Password hash of federated users: not a PHC string, so no password ever matches it.
const NO_PASSWORD: &str = "!federated";

impl Db {
    /// Stores a mapping (replacing one of the same id).
    pub async fn put_mapping(&self, id: &str, rules: &str) -> Result<(), DbError> {
        let mut q = self.sql("DELETE FROM identity_mappings WHERE id = ");
        q.bind(id.to_owned());
        self.exec(q).await?;
        let mut q = self.sql("INSERT INTO identity_mappings (id, rules, created_at) VALUES (");
        q.bind(id.to_owned())
            .push(", ")
            .bind(rules.to_owned())
            .push(", ")
            .bind(vela_domain::now_micros())
            .push(")");
        self.exec(q).await?;
        Ok(())
    }

    pub async fn find_mapping(&self, id: &str) -> Result<Option<MappingRecord>, DbError> {
        let mut q = self.sql("SELECT id, rules FROM identity_mappings WHERE id = ");
        q.bind(id.to_owned());
        self.one(q, mapping).await
    }

    pub async fn list_mappings(&self) -> Result<Vec<MappingRecord>, DbError> {
        let q = self.sql("SELECT id, rules FROM identity_mappings ORDER BY id");
        self.all(q, mapping).await
    }

    /// Deletes a mapping no identity provider uses; whether it existed.
    pub async fn delete_mapping(&self, id: &str) -> Result<bool, DbError> {
        let mut q = self.sql("SELECT COUNT(*) AS n FROM identity_idps WHERE mapping_id = ");
        q.bind(id.to_owned());
        let used = sqlx::query_with(&q.text, q.args)
            .fetch_one(&self.read)
            .await?
            .try_get::<i64, _>("n")?;
        if used > 0 {
            return Err(DbError::Conflict(format!(
                "mapping '{id}' is used by an identity provider"
            )));
        }
        let mut q = self.sql("DELETE FROM identity_mappings WHERE id = ");
        q.bind(id.to_owned());
        Ok(self.exec(q).await? > 0)
    }

    /// Stores an identity provider (replacing one of the same id).
    pub async fn put_idp(&self, p: &Idp) -> Result<(), DbError> {
        let mut q = self.sql("DELETE FROM identity_idps WHERE id = ");
        q.bind(p.id.clone());
        self.exec(q).await?;
        let mut q = self.sql(&format!(
            "INSERT INTO identity_idps ({IDP_COLUMNS}, created_at) VALUES ("
        ));
        q.bind(p.id.clone())
            .push(", ")
            .bind(p.issuer.clone())
            .push(", ")
            .bind(p.audience.clone())
            .push(", ")
            .bind(p.jwks_uri.clone())
            .push(", ")
            .bind(p.mapping_id.clone())
            .push(", ")
            .bind(p.client_id.clone())
            .push(", ")
            .bind(p.client_secret.as_ref().map(|s| s.expose().to_owned()))
            .push(", ")
            .bind(i64::from(p.enabled))
            .push(", ")
            .bind(vela_domain::now_micros())
            .push(")");
        self.exec(q).await?;
        Ok(())
    }

    pub async fn find_idp(&self, id: &str) -> Result<Option<Idp>, DbError> {
        let mut q = self.sql(&format!(
            "SELECT {IDP_COLUMNS} FROM identity_idps WHERE id = "
        ));
        q.bind(id.to_owned());
        self.one(q, idp).await
    }

    pub async fn list_idps(&self) -> Result<Vec<Idp>, DbError> {
        let q = self.sql(&format!(
            "SELECT {IDP_COLUMNS} FROM identity_idps ORDER BY id"
        ));
        self.all(q, idp).await
    }

    /// Deletes an identity provider and the users its logins made; whether it existed.
    pub async fn delete_idp(&self, id: &str) -> Result<bool, DbError> {
        let mut q = self.sql(&format!(
            "SELECT {USER_SELECT} FROM identity_users WHERE idp_id = "
        ));
        q.bind(id.to_owned());
        for u in self.all(q, user).await? {
            self.delete_user(&u.id).await?;
        }
        let mut q = self.sql("DELETE FROM identity_idps WHERE id = ");
        q.bind(id.to_owned());
        Ok(self.exec(q).await? > 0)
    }

    /// The user a federated login of `idp_id` made under `name`, created if new. A local
    /// user, or another provider's, of that name is a conflict.
    pub async fn federated_user(&self, idp_id: &str, name: &str) -> Result<User, DbError> {
        if let Some(u) = self.find_user(name).await? {
            return if u.name == name && u.idp_id.as_deref() == Some(idp_id) {
                Ok(u)
            } else {
                Err(DbError::Conflict(format!(
                    "user '{name}' exists and is not from identity provider '{idp_id}'"
                )))
            };
        }
        let now: Micros = vela_domain::now_micros();
        let id = new_id();
        let mut q = self.sql(
            "INSERT INTO identity_users (id, name, password_hash, enabled, default_project_id, \
             tokens_valid_after, idp_id, created_at) VALUES (",
        );
        q.bind(id.clone())
            .push(", ")
            .bind(name.to_owned())
            .push(", ")
            .bind(NO_PASSWORD.to_owned())
            .push(", 1, NULL, ")
            .bind(now)
            .push(", ")
            .bind(idp_id.to_owned())
            .push(", ")
            .bind(now)
            .push(")");
        match self.exec(q).await {
            Ok(_) => {}
            // Two first logins at once: the other one made it.
            Err(DbError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
        match self.find_user(name).await? {
            Some(u) if u.idp_id.as_deref() == Some(idp_id) => Ok(u),
            _ => Err(DbError::Conflict(format!(
                "user '{name}' could not be made"
            ))),
        }
    }

    /// Makes `user_id`'s role assignments exactly `wanted` (target, role id) pairs.
    pub async fn set_assignments(
        &self,
        user_id: &str,
        wanted: &[(String, String)],
    ) -> Result<(), DbError> {
        let have = self.assignments(Some(user_id), None).await?;
        for a in &have {
            if !wanted
                .iter()
                .any(|(t, r)| *t == a.target && *r == a.role.id)
            {
                self.revoke_grant(user_id, &a.target, &a.role.id).await?;
            }
        }
        for (t, r) in wanted {
            if !have.iter().any(|a| a.target == *t && a.role.id == *r) {
                self.grant(user_id, t, r).await?;
            }
        }
        Ok(())
    }
}

fn mapping(r: &AnyRow) -> Result<MappingRecord, DbError> {
    Ok(MappingRecord {
        id: text(r, "id")?,
        rules: text(r, "rules")?,
    })
}
