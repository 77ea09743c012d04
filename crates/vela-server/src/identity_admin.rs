//! Managing the embedded identity service's users, projects and roles (`vela identity …`).

use anyhow::{bail, Context};
use vela_auth::identity::hash_password;
use vela_db::identity::{Project, Role, User, SYSTEM};
use vela_db::Db;

/// The roles Glance's default policy knows.
pub const STANDARD_ROLES: &[&str] = &["admin", "member", "reader", "service"];

fn hash(password: &str) -> anyhow::Result<String> {
    anyhow::ensure!(!password.is_empty(), "the password must not be empty");
    hash_password(password).map_err(anyhow::Error::msg)
}

async fn user(db: &Db, key: &str) -> anyhow::Result<User> {
    db.find_user(key)
        .await?
        .with_context(|| format!("no user '{key}'"))
}

async fn project(db: &Db, key: &str) -> anyhow::Result<Project> {
    db.find_project(key)
        .await?
        .with_context(|| format!("no project '{key}'"))
}

/// Creates the standard roles (those missing); returns `admin`.
async fn standard_roles(db: &Db) -> anyhow::Result<Role> {
    let mut admin_role = None;
    for name in STANDARD_ROLES {
        let r = db.ensure_role(name).await?;
        if *name == "admin" {
            admin_role = Some(r);
        }
    }
    admin_role.context("admin role missing")
}

/// Creates the standard roles, the admin project and the admin user (or resets its
/// password), with `admin` on the project and on the system.
pub async fn bootstrap(
    db: &Db,
    username: &str,
    password: &str,
    project_name: &str,
) -> anyhow::Result<(User, Project)> {
    let hashed = hash(password)?;
    let admin_role = standard_roles(db).await?;
    let project = match db.find_project(project_name).await? {
        Some(p) => p,
        None => db.create_project(project_name).await?,
    };
    let user = match db.find_user(username).await? {
        Some(u) => {
            db.set_password(&u.id, &hashed).await?;
            u
        }
        None => db.create_user(username, &hashed, Some(&project.id)).await?,
    };
    db.grant(&user.id, &project.id, &admin_role.id).await?;
    db.grant(&user.id, SYSTEM, &admin_role.id).await?;
    Ok((user, project))
}

/// A fresh random password for the first-run admin: 128 random bits, hex.
pub fn generated_password() -> String {
    vela_auth::identity::new_signing_key()[..32].to_owned()
}

/// On a first start with no users: creates the standard roles, the `admin` project and the
/// `admin` user with `password`, as [`bootstrap`] does. Never resets an existing user, so a
/// node that loses the race against another node starting at once returns `None` (the other
/// node's password stands).
pub async fn first_admin(db: &Db, password: &str) -> anyhow::Result<Option<(User, Project)>> {
    if db.count_users().await? > 0 {
        return Ok(None);
    }
    let hashed = hash(password)?;
    let admin_role = standard_roles(db).await?;
    let project = match db.find_project("admin").await? {
        Some(p) => p,
        None => match db.create_project("admin").await {
            Ok(p) => p,
            Err(vela_db::DbError::Conflict(_)) => project(db, "admin").await?,
            Err(e) => return Err(e.into()),
        },
    };
    let user = match db.create_user("admin", &hashed, Some(&project.id)).await {
        Ok(u) => u,
        Err(vela_db::DbError::Conflict(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    db.grant(&user.id, &project.id, &admin_role.id).await?;
    db.grant(&user.id, SYSTEM, &admin_role.id).await?;
    Ok(Some((user, project)))
}

pub async fn create_project(db: &Db, name: &str) -> anyhow::Result<Project> {
    anyhow::ensure!(!name.is_empty(), "the project name must not be empty");
    Ok(db.create_project(name).await?)
}

pub async fn delete_project(db: &Db, key: &str) -> anyhow::Result<()> {
    let p = project(db, key).await?;
    db.delete_project(&p.id).await?;
    Ok(())
}

/// Creates a user; with a project, gives it `roles` there (and makes it the default project).
pub async fn create_user(
    db: &Db,
    name: &str,
    password: &str,
    project_key: Option<&str>,
    roles: &[String],
) -> anyhow::Result<User> {
    anyhow::ensure!(!name.is_empty(), "the user name must not be empty");
    let hashed = hash(password)?;
    let project = match project_key {
        Some(k) => Some(project(db, k).await?),
        None => None,
    };
    if project.is_none() && !roles.is_empty() {
        bail!("--role needs --project");
    }
    let user = db
        .create_user(name, &hashed, project.as_ref().map(|p| p.id.as_str()))
        .await?;
    if let Some(p) = &project {
        for r in roles {
            let role = db.ensure_role(r).await?;
            db.grant(&user.id, &p.id, &role.id).await?;
        }
    }
    Ok(user)
}

pub async fn delete_user(db: &Db, key: &str) -> anyhow::Result<()> {
    let u = user(db, key).await?;
    db.delete_user(&u.id).await?;
    Ok(())
}

/// Sets a new password; the user's earlier tokens stop working.
pub async fn set_password(db: &Db, key: &str, password: &str) -> anyhow::Result<()> {
    let u = user(db, key).await?;
    db.set_password(&u.id, &hash(password)?).await?;
    Ok(())
}

/// Where a role is granted: a project (id or name) or the system.
pub enum Target<'a> {
    Project(&'a str),
    System,
}

async fn target_id(db: &Db, t: &Target<'_>) -> anyhow::Result<String> {
    Ok(match t {
        Target::Project(k) => project(db, k).await?.id,
        Target::System => SYSTEM.to_owned(),
    })
}

pub async fn grant(db: &Db, role: &str, user_key: &str, t: &Target<'_>) -> anyhow::Result<()> {
    let u = user(db, user_key).await?;
    let target = target_id(db, t).await?;
    let r = db.ensure_role(role).await?;
    db.grant(&u.id, &target, &r.id).await?;
    Ok(())
}

pub async fn revoke(db: &Db, role: &str, user_key: &str, t: &Target<'_>) -> anyhow::Result<()> {
    let u = user(db, user_key).await?;
    let target = target_id(db, t).await?;
    let r: Role = db
        .list_roles()
        .await?
        .into_iter()
        .find(|r| r.name == role)
        .with_context(|| format!("no role '{role}'"))?;
    if !db.revoke_grant(&u.id, &target, &r.id).await? {
        bail!("user '{user_key}' does not hold role '{role}' there");
    }
    Ok(())
}

/// One line per user: name, id, default project, roles per project.
pub async fn describe_users(db: &Db) -> anyhow::Result<Vec<String>> {
    let projects = db.list_projects().await?;
    let mut out = Vec::new();
    for u in db.list_users().await? {
        let mut grants = Vec::new();
        for p in &projects {
            let roles = db.roles_on(&u.id, &p.id).await?;
            if !roles.is_empty() {
                let names: Vec<_> = roles.iter().map(|r| r.name.as_str()).collect();
                grants.push(format!("{}:{}", p.name, names.join("+")));
            }
        }
        let sys = db.roles_on(&u.id, SYSTEM).await?;
        if !sys.is_empty() {
            let names: Vec<_> = sys.iter().map(|r| r.name.as_str()).collect();
            grants.push(format!("system:{}", names.join("+")));
        }
        out.push(format!(
            "{}\t{}\t{}{}",
            u.name,
            u.id,
            grants.join(","),
            if u.enabled { "" } else { "\t(disabled)" }
        ));
    }
    Ok(out)
}

/// Makes a new token signing key; the previous ones keep verifying for `overlap_secs`.
/// Returns the new key's id.
pub async fn rotate_key(db: &Db, overlap_secs: u64) -> anyhow::Result<String> {
    let overlap = i64::try_from(overlap_secs.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
    let retire_at = vela_domain::now_micros().saturating_add(overlap);
    db.rotate_signing_key(vela_auth::identity::new_signing_key(), retire_at)
        .await
        .context("rotating the token signing key")
}

/// Stores a mapping after checking its rules.
pub async fn put_mapping(db: &Db, name: &str, rules: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !name.is_empty() && name.len() <= 64,
        "a mapping name has 1 to 64 characters"
    );
    vela_auth::federation::mapping::Mapping::parse(rules)?;
    db.put_mapping(name, rules).await?;
    Ok(())
}

pub async fn mapping(db: &Db, name: &str) -> anyhow::Result<String> {
    Ok(db
        .find_mapping(name)
        .await?
        .with_context(|| format!("no mapping '{name}'"))?
        .rules)
}

pub async fn delete_mapping(db: &Db, name: &str) -> anyhow::Result<()> {
    anyhow::ensure!(db.delete_mapping(name).await?, "no mapping '{name}'");
    Ok(())
}

/// Stores an identity provider after checking its URLs and that its mapping exists.
pub async fn put_idp(db: &Db, idp: &vela_db::federation::Idp) -> anyhow::Result<()> {
    anyhow::ensure!(
        !idp.id.is_empty() && idp.id.len() <= 64,
        "an identity provider name has 1 to 64 characters"
    );
    for url in std::iter::once(&idp.issuer).chain(&idp.jwks_uri) {
        anyhow::ensure!(
            url.starts_with("https://") || url.starts_with("http://"),
            "'{url}' is not an http(s) URL"
        );
    }
    anyhow::ensure!(!idp.audience.is_empty(), "the audience must not be empty");
    mapping(db, &idp.mapping_id).await?;
    db.put_idp(idp).await?;
    Ok(())
}

pub async fn delete_idp(db: &Db, name: &str) -> anyhow::Result<()> {
    anyhow::ensure!(db.delete_idp(name).await?, "no identity provider '{name}'");
    Ok(())
}

/// Sets a unified limit of the image service (no region): a project's (`project` by name or
/// id), or the registered default for every project.
pub async fn set_limit(
    db: &Db,
    project: Option<&str>,
    resource: &str,
    limit: i64,
) -> anyhow::Result<vela_db::quota::UnifiedLimit> {
    use vela_db::quota::{UnifiedLimit, IMAGE_SERVICE_ID};
    if vela_domain::quota::Resource::parse(resource).is_none() {
        bail!(
            "unknown resource '{resource}': use image_size_total, image_stage_total, \
             image_count_total or image_count_uploading"
        );
    }
    if limit < -1 {
        bail!("a limit is -1 (unlimited) or more");
    }
    let project_id = limit_project(db, project).await?;
    let existing = db
        .unified_limits(project_id.as_deref(), Some(IMAGE_SERVICE_ID), None)
        .await?
        .into_iter()
        .find(|l| l.resource_name == resource && l.region_id.is_none());
    let l = UnifiedLimit {
        id: existing.map(|l| l.id).unwrap_or_else(UnifiedLimit::new_id),
        project_id,
        service_id: IMAGE_SERVICE_ID.into(),
        region_id: None,
        resource_name: resource.into(),
        limit,
        description: None,
    };
    db.put_unified_limit(&l).await?;
    Ok(l)
}

/// Removes a project's limit on `resource` (or the registered default); false if none.
pub async fn unset_limit(db: &Db, project: Option<&str>, resource: &str) -> anyhow::Result<bool> {
    let project_id = limit_project(db, project).await?;
    let found = db
        .unified_limits(project_id.as_deref(), None, None)
        .await?
        .into_iter()
        .filter(|l| l.resource_name == resource);
    let mut removed = false;
    for l in found {
        removed |= db.delete_unified_limit(&l.id).await?;
    }
    Ok(removed)
}

/// The project id a limit is for: an embedded project by name or id, else the text itself
/// as a project id (Keystone's or a front end's, which this database does not hold).
async fn limit_project(db: &Db, project: Option<&str>) -> anyhow::Result<Option<String>> {
    let Some(key) = project else {
        return Ok(None);
    };
    Ok(Some(match db.find_project(key).await? {
        Some(p) => p.id,
        None => key.to_owned(),
    }))
}
