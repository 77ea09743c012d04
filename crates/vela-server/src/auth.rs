//! Turning `[auth]` into the API's policy and authenticator.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use vela_api::{Authenticator, NoAuth};
use vela_auth::identity::Identity;
use vela_auth::keystone::{Keystone, KeystoneConfig};
use vela_db::Db;
use vela_domain::policy::protections::{PropOp, PropertyProtections, RuleFormat};
use vela_domain::policy::Policy;

use crate::config::{AuthConfig, Config};
use crate::identity_admin;

/// The policy `[auth]` describes: Glance's defaults, the operator's policy file, property
/// protections. Any unreadable or invalid file stops startup, naming the file and the rule.
pub fn load_policy(cfg: &AuthConfig) -> anyhow::Result<Policy> {
    let policy = load_policy_file(cfg.policy_file.as_deref())?;
    let Some(path) = &cfg.property_protection_file else {
        return Ok(policy);
    };
    let format = match cfg.property_protection_rule_format.as_str() {
        "policies" => RuleFormat::Policies,
        _ => RuleFormat::Roles,
    };
    let protections = load_protections(path, format, &policy)
        .with_context(|| format!("property protection file {}", path.display()))?;
    Ok(policy.with_protections(protections))
}

fn load_protections(
    path: &Path,
    format: RuleFormat,
    policy: &Policy,
) -> anyhow::Result<PropertyProtections> {
    let ini = ini::Ini::load_from_file_noescape(path).context("cannot read it")?;
    let mut sections = Vec::new();
    for (name, props) in ini.iter() {
        let Some(name) = name else { continue };
        let mut perms: [String; 4] = Default::default();
        for (slot, op) in perms.iter_mut().zip(PropOp::ALL) {
            *slot = props
                .get(op.as_str())
                .with_context(|| format!("[{name}] has no '{}' permission", op.as_str()))?
                .to_owned();
        }
        if format == RuleFormat::Policies {
            for p in perms.iter().map(|p| p.trim()) {
                if !matches!(p, "" | "@" | "!") && !policy.defines(p) {
                    tracing::warn!(
                        section = name,
                        rule = p,
                        "property protection names a policy rule the policy does not define: \
                         it refuses everyone"
                    );
                }
            }
        }
        sections.push((name.to_owned(), perms));
    }
    anyhow::ensure!(!sections.is_empty(), "it has no [property] sections");
    PropertyProtections::new(sections, format).map_err(anyhow::Error::msg)
}

fn load_policy_file(file: Option<&Path>) -> anyhow::Result<Policy> {
    let Some(path) = file else {
        return Ok(Policy::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read policy file {}", path.display()))?;
    // oslo.policy files are YAML (JSON is YAML too): rule name -> rule string.
    let rules: BTreeMap<String, String> = if text.trim().is_empty() {
        BTreeMap::new()
    } else {
        serde_yaml_ng::from_str(&text).with_context(|| {
            format!(
                "policy file {} is not a mapping of rule names to rule strings",
                path.display()
            )
        })?
    };
    Policy::with_overrides(rules).with_context(|| format!("policy file {}", path.display()))
}

/// The embedded identity service, when `[auth] mode = "embedded"`. Says how to create the
/// first user when there is none.
pub async fn identity(cfg: &AuthConfig, db: &Db) -> anyhow::Result<Option<Arc<Identity>>> {
    if cfg.mode != "embedded" {
        return Ok(None);
    }
    let id = Identity::new(
        db.clone(),
        Duration::from_secs(cfg.token_ttl_secs.max(1)),
        Duration::from_secs(cfg.token_cache_secs),
        cfg.region.clone(),
        vela_auth::identity::throttle::ThrottleConfig {
            window: Duration::from_secs(cfg.login_failure_window_secs.max(1)),
            per_user: cfg.login_failures_per_user,
            per_address: cfg.login_failures_per_address,
            lockout_attempts: cfg.lockout_failure_attempts,
            lockout: Duration::from_secs(cfg.lockout_duration_secs),
        },
    )
    .await
    .context("cannot start the embedded identity service")?;
    if !cfg.first_run_admin && db.count_users().await? == 0 {
        tracing::warn!(
            "the embedded identity service has no users yet: create the admin with \
             `vela identity bootstrap --password <PASSWORD>` (same --config/--data-dir)"
        );
    }
    Ok(Some(Arc::new(id)))
}

/// The first start of the embedded identity service (no users, `first_run_admin` on): creates
/// the admin with a generated password and writes `<data_dir>/openrc` for clients of the
/// listener at `local`. Logs the file's path, never the password.
pub async fn first_run(cfg: &Config, db: &Db, local: SocketAddr) -> anyhow::Result<()> {
    if cfg.auth.mode != "embedded" || !cfg.auth.first_run_admin {
        return Ok(());
    }
    let password = identity_admin::generated_password();
    let Some((user, project)) = identity_admin::first_admin(db, &password).await? else {
        return Ok(());
    };
    let url = match &cfg.server.public_endpoint {
        Some(e) => e.trim_end_matches('/').to_owned(),
        None => {
            let ip = match local.ip() {
                IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
                ip => ip,
            };
            format!("http://{}", SocketAddr::new(ip, local.port()))
        }
    };
    let path = cfg.data_dir.join("openrc");
    let text = format!(
        "# Credentials of the admin Vela created on its first start.\n\
         export OS_AUTH_URL={url}/v3\n\
         export OS_IDENTITY_API_VERSION=3\n\
         export OS_AUTH_TYPE=password\n\
         export OS_USERNAME={}\n\
         export OS_PASSWORD={password}\n\
         export OS_PROJECT_NAME={}\n\
         export OS_USER_DOMAIN_NAME=Default\n\
         export OS_PROJECT_DOMAIN_NAME=Default\n\
         export OS_REGION_NAME={}\n\
         export OS_IMAGE_API_VERSION=2\n",
        user.name, project.name, cfg.auth.region
    );
    write_private(&path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    tracing::info!(
        user = %user.name,
        project = %project.name,
        openrc = %path.display(),
        "first start: created the admin with a generated password; \
         `source` the openrc file to use the OpenStack clients"
    );
    Ok(())
}

/// Writes a file only its owner may read (mode 0600), replacing any earlier one whole.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The authenticator `[auth]` describes (`identity` is the embedded service, if enabled).
/// The Keystone client, when `[auth] mode = "keystone"`: it validates tokens and reads
/// unified limits.
pub fn keystone(cfg: &AuthConfig) -> anyhow::Result<Option<Arc<Keystone>>> {
    if cfg.mode != "keystone" {
        return Ok(None);
    }
    let k = &cfg.keystone;
    let ks = Keystone::new(KeystoneConfig {
        auth_url: k.auth_url.clone(),
        username: k.username.clone(),
        password: k.password.clone(),
        project_name: k.project_name.clone(),
        user_domain_name: k.user_domain_name.clone(),
        project_domain_name: k.project_domain_name.clone(),
        timeout: Duration::from_secs(k.timeout_secs.max(1)),
        cache_ttl: Duration::from_secs(k.cache_ttl_secs),
        cache_size: k.cache_size.max(1),
    })
    .map_err(anyhow::Error::msg)?;
    Ok(Some(Arc::new(ks)))
}

/// Where quota limits come from, when `[quota] enabled`: Keystone in keystone mode, else
/// the embedded identity service's tables.
pub fn quotas(
    cfg: &Config,
    db: &Db,
    keystone: Option<&Arc<Keystone>>,
) -> Option<vela_db::quota::Quotas> {
    let q = &cfg.quota;
    if !q.enabled {
        return None;
    }
    let source: Arc<dyn vela_domain::quota::LimitSource> = match keystone {
        Some(ks) => Arc::new(vela_auth::limits::KeystoneLimits::new(
            ks.clone(),
            vela_auth::limits::LimitsConfig {
                endpoint_id: q.endpoint_id.clone(),
                service_type: q.endpoint_service_type.clone(),
                service_name: q.endpoint_service_name.clone(),
                region: q.endpoint_region_name.clone(),
                interface: q.endpoint_interface.clone(),
                cache_ttl: Duration::from_secs(q.cache_secs),
            },
        )),
        None => Arc::new(vela_db::quota::DbLimits::new(
            db.clone(),
            cfg.auth.region.clone(),
        )),
    };
    Some(vela_db::quota::Quotas::new(source))
}

pub fn authenticator(
    cfg: &AuthConfig,
    identity: Option<&Arc<Identity>>,
    keystone: Option<&Arc<Keystone>>,
) -> anyhow::Result<Authenticator> {
    if let Some(id) = identity {
        return Ok(Authenticator::Token {
            validator: id.clone(),
            www_authenticate_uri: String::new(),
            allow_anonymous: cfg.allow_anonymous_access,
        });
    }
    Ok(match cfg.mode.as_str() {
        "keystone" => {
            let k = &cfg.keystone;
            let validator = keystone
                .cloned()
                .context("the keystone client was not built")?;
            Authenticator::Token {
                validator,
                www_authenticate_uri: k
                    .www_authenticate_uri
                    .clone()
                    .unwrap_or_else(|| k.auth_url.clone()),
                allow_anonymous: cfg.allow_anonymous_access,
            }
        }
        _ => Authenticator::NoAuth(NoAuth {
            default_roles: cfg.default_roles.clone(),
            default_project: cfg.default_project.clone(),
            default_user: cfg.default_user.clone(),
        }),
    })
}
