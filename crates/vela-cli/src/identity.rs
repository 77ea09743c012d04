//! `vela identity …`: users, projects and roles of the embedded identity service.

use clap::{Args, Subcommand};
use vela_server::config::Config;
use vela_server::identity_admin as admin;

/// Where a password comes from: a file or standard input, the environment, or (visible to
/// other local users in `ps`) the command line.
#[derive(Args)]
pub struct PasswordArgs {
    /// The password. It shows in `ps`: prefer --password-file or VELA_IDENTITY_PASSWORD.
    #[arg(
        long,
        env = "VELA_IDENTITY_PASSWORD",
        hide_env_values = true,
        conflicts_with = "password_file"
    )]
    password: Option<String>,
    /// Read the password from this file, or from standard input with `-` (its first line).
    #[arg(long, value_name = "PATH")]
    password_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for PasswordArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordArgs(***)")
    }
}

impl PasswordArgs {
    fn read(&self) -> anyhow::Result<String> {
        use anyhow::Context;
        let text = match (&self.password, &self.password_file) {
            (Some(p), _) => return Ok(p.clone()),
            (None, Some(path)) if path.as_os_str() == "-" => {
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .context("reading the password from standard input")?;
                line
            }
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("reading the password from {}", path.display()))?,
            (None, None) => anyhow::bail!(
                "give the password with --password-file PATH (or - for standard input), \
                 VELA_IDENTITY_PASSWORD or --password"
            ),
        };
        let password = text.lines().next().unwrap_or_default().to_owned();
        anyhow::ensure!(!password.is_empty(), "the password is empty");
        Ok(password)
    }
}

#[derive(Subcommand, Debug)]
pub enum IdentityCommand {
    /// Create the standard roles (admin, member, reader, service), the admin project and the
    /// admin user with `admin` on that project and on the system. Run again to reset the
    /// admin's password.
    Bootstrap {
        #[command(flatten)]
        password: PasswordArgs,
        #[arg(long, default_value = "admin")]
        username: String,
        #[arg(long, default_value = "admin")]
        project: String,
    },
    /// Manage projects.
    Project {
        #[command(subcommand)]
        command: ProjectCommand,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage role assignments.
    Role {
        #[command(subcommand)]
        command: RoleCommand,
    },
    /// Manage the mappings of federated logins: Keystone's rule format, from the claims of
    /// an identity provider's access token (as `OIDC-<claim>`) to a user, projects and roles.
    Mapping {
        #[command(subcommand)]
        command: MappingCommand,
    },
    /// Manage OpenID Connect identity providers (Keystone's OS-FEDERATION, protocol `openid`).
    Idp {
        #[command(subcommand)]
        command: IdpCommand,
    },
    /// Manage the unified limits of the image service (`[quota] enabled`): per project, or
    /// the registered defaults every project gets. Sizes are in MiB; -1 is unlimited; a
    /// resource with no limit at all allows nothing.
    Limit {
        #[command(subcommand)]
        command: LimitCommand,
    },
    /// Make a new token signing key. Tokens signed by the keys in use until now stay valid
    /// for the overlap; then those keys retire and their tokens are refused. Every node
    /// sharing the database signs with the new key at once.
    RotateKey {
        /// How long the previous keys keep verifying tokens, in seconds (default: the
        /// token lifetime, `auth.token_ttl_secs`, so no token is cut short; 0 retires them
        /// now, e.g. after a leak).
        #[arg(long)]
        overlap_secs: Option<u64>,
    },
}

#[derive(Subcommand, Debug)]
pub enum MappingCommand {
    /// Create or replace a mapping from a JSON file (`-`: standard input).
    Create {
        name: String,
        #[arg(long, value_name = "PATH")]
        rules: std::path::PathBuf,
    },
    Delete {
        name: String,
    },
    /// Print a mapping's rules.
    Show {
        name: String,
    },
    List,
}

#[derive(Subcommand, Debug)]
pub enum IdpCommand {
    /// Create or replace an identity provider.
    Create {
        name: String,
        /// The issuer (`iss`) of its tokens, e.g. https://login.example.com/realms/staff.
        #[arg(long)]
        issuer: String,
        /// The audience (`aud`) its access tokens carry for Vela.
        #[arg(long)]
        audience: String,
        /// The mapping its `openid` protocol uses.
        #[arg(long)]
        mapping: String,
        /// Where its signing keys are (default: its discovery document's jwks_uri).
        #[arg(long)]
        jwks_uri: Option<String>,
        /// The client browser sign-on uses at the provider.
        #[arg(long)]
        client_id: Option<String>,
        /// That client's secret.
        #[arg(long, env = "VELA_IDP_CLIENT_SECRET", hide_env_values = true)]
        client_secret: Option<String>,
        /// Refuse its logins for now.
        #[arg(long)]
        disabled: bool,
    },
    /// Delete an identity provider and the users its logins made.
    Delete {
        name: String,
    },
    List,
}

#[derive(Subcommand, Debug)]
pub enum LimitCommand {
    /// Set a project's limit on a resource (image_size_total, image_stage_total,
    /// image_count_total, image_count_uploading).
    Set {
        project: String,
        resource: String,
        #[arg(allow_negative_numbers = true)]
        limit: i64,
    },
    /// Set the registered default of a resource.
    Default {
        resource: String,
        #[arg(allow_negative_numbers = true)]
        limit: i64,
    },
    /// Remove a project's limit on a resource (or, with no project, the default).
    Unset {
        resource: String,
        #[arg(long)]
        project: Option<String>,
    },
    /// List the defaults and the project limits.
    List,
}

#[derive(Subcommand, Debug)]
pub enum ProjectCommand {
    Create {
        name: String,
    },
    /// Delete a project (by name or id) and its role assignments.
    Delete {
        project: String,
    },
    List,
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user; with --project it gets --role there (default: member).
    Create {
        name: String,
        #[command(flatten)]
        password: PasswordArgs,
        #[arg(long)]
        project: Option<String>,
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// Delete a user (its tokens stop working).
    Delete {
        user: String,
    },
    /// Set a new password (the user's earlier tokens stop working).
    SetPassword {
        user: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    List,
}

/// A role on a project or on the system, for a user.
#[derive(Args, Debug)]
pub struct Assignment {
    /// Role name (admin, member, reader, service, or any other).
    role: String,
    /// User name or id.
    #[arg(long)]
    user: String,
    /// Project name or id.
    #[arg(long, conflicts_with = "system", required_unless_present = "system")]
    project: Option<String>,
    /// The role applies to the whole system (system-scoped tokens).
    #[arg(long)]
    system: bool,
}

impl Assignment {
    fn target(&self) -> admin::Target<'_> {
        match &self.project {
            Some(p) if !self.system => admin::Target::Project(p),
            _ => admin::Target::System,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum RoleCommand {
    /// Give a user a role on a project or on the system.
    Grant(Assignment),
    /// Take a role away.
    Revoke(Assignment),
    List,
}

pub async fn run(cfg: &Config, command: IdentityCommand) -> anyhow::Result<()> {
    vela_server::create_private_dir(&cfg.data_dir)?;
    let db = vela_server::open_db(cfg).await?;
    let out = run_on(&db, cfg, command).await;
    db.close().await;
    out
}

async fn run_on(db: &vela_db::Db, cfg: &Config, command: IdentityCommand) -> anyhow::Result<()> {
    match command {
        IdentityCommand::Bootstrap {
            password,
            username,
            project,
        } => {
            let password = password.read()?;
            let (u, p) = admin::bootstrap(db, &username, &password, &project).await?;
            println!(
                "user '{}' ({}) is admin of project '{}' ({}) and of the system",
                u.name, u.id, p.name, p.id
            );
            if cfg.auth.mode != "embedded" {
                println!(
                    "note: auth.mode is '{}'; set it to 'embedded' to use these users",
                    cfg.auth.mode
                );
            }
            println!(
                "clients: openstack --os-auth-url http://{}/v3 --os-username {} --os-password … \
                 --os-project-name {} --os-user-domain-name Default --os-project-domain-name Default image list",
                cfg.server.bind, u.name, p.name
            );
        }
        IdentityCommand::Project { command } => match command {
            ProjectCommand::Create { name } => {
                let p = admin::create_project(db, &name).await?;
                println!("{}\t{}", p.name, p.id);
            }
            ProjectCommand::Delete { project } => admin::delete_project(db, &project).await?,
            ProjectCommand::List => {
                for p in db.list_projects().await? {
                    println!("{}\t{}", p.name, p.id);
                }
            }
        },
        IdentityCommand::User { command } => match command {
            UserCommand::Create {
                name,
                password,
                project,
                mut roles,
            } => {
                let password = password.read()?;
                if project.is_some() && roles.is_empty() {
                    roles.push("member".into());
                }
                let u =
                    admin::create_user(db, &name, &password, project.as_deref(), &roles).await?;
                println!("{}\t{}", u.name, u.id);
            }
            UserCommand::Delete { user } => admin::delete_user(db, &user).await?,
            UserCommand::SetPassword { user, password } => {
                admin::set_password(db, &user, &password.read()?).await?
            }
            UserCommand::List => {
                for line in admin::describe_users(db).await? {
                    println!("{line}");
                }
            }
        },
        IdentityCommand::Mapping { command } => match command {
            MappingCommand::Create { name, rules } => {
                let text = if rules.as_os_str() == "-" {
                    std::io::read_to_string(std::io::stdin())?
                } else {
                    std::fs::read_to_string(&rules)
                        .map_err(|e| anyhow::anyhow!("reading {}: {e}", rules.display()))?
                };
                admin::put_mapping(db, &name, &text).await?;
                println!("mapping '{name}' stored");
            }
            MappingCommand::Delete { name } => admin::delete_mapping(db, &name).await?,
            MappingCommand::Show { name } => println!("{}", admin::mapping(db, &name).await?),
            MappingCommand::List => {
                for m in db.list_mappings().await? {
                    println!("{}", m.id);
                }
            }
        },
        IdentityCommand::Idp { command } => match command {
            IdpCommand::Create {
                name,
                issuer,
                audience,
                mapping,
                jwks_uri,
                client_id,
                client_secret,
                disabled,
            } => {
                let idp = vela_db::federation::Idp {
                    id: name,
                    issuer,
                    audience,
                    jwks_uri,
                    mapping_id: mapping,
                    client_id,
                    client_secret: client_secret.map(vela_domain::Secret::new),
                    enabled: !disabled,
                };
                admin::put_idp(db, &idp).await?;
                println!(
                    "identity provider '{}': clients log in at /v3/OS-FEDERATION/identity_providers/{}/protocols/openid/auth",
                    idp.id, idp.id
                );
            }
            IdpCommand::Delete { name } => admin::delete_idp(db, &name).await?,
            IdpCommand::List => {
                for p in db.list_idps().await? {
                    println!(
                        "{}\t{}\t{}\t{}{}",
                        p.id,
                        p.issuer,
                        p.audience,
                        p.mapping_id,
                        if p.enabled { "" } else { "\t(disabled)" }
                    );
                }
            }
        },
        IdentityCommand::RotateKey { overlap_secs } => {
            let overlap = overlap_secs.unwrap_or(cfg.auth.token_ttl_secs);
            let id = admin::rotate_key(db, overlap).await?;
            println!(
                "signing key {id} is now in use; the previous keys verify tokens for {overlap} s more"
            );
        }
        IdentityCommand::Limit { command } => match command {
            LimitCommand::Set {
                project,
                resource,
                limit,
            } => {
                let l = admin::set_limit(db, Some(&project), &resource, limit).await?;
                println!(
                    "{}\t{}\t{}",
                    l.project_id.unwrap_or_default(),
                    resource,
                    limit
                );
            }
            LimitCommand::Default { resource, limit } => {
                admin::set_limit(db, None, &resource, limit).await?;
                println!("default\t{resource}\t{limit}");
            }
            LimitCommand::Unset { resource, project } => {
                if !admin::unset_limit(db, project.as_deref(), &resource).await? {
                    anyhow::bail!("no such limit");
                }
            }
            LimitCommand::List => {
                for l in db.unified_limits(None, None, None).await? {
                    println!("default\t{}\t{}", l.resource_name, l.limit);
                }
                for l in db.all_project_limits().await? {
                    let p = l.project_id.unwrap_or_default();
                    println!("{p}\t{}\t{}", l.resource_name, l.limit);
                }
            }
        },
        IdentityCommand::Role { command } => match command {
            RoleCommand::Grant(a) => admin::grant(db, &a.role, &a.user, &a.target()).await?,
            RoleCommand::Revoke(a) => admin::revoke(db, &a.role, &a.user, &a.target()).await?,
            RoleCommand::List => {
                for r in db.list_roles().await? {
                    println!("{}\t{}", r.name, r.id);
                }
            }
        },
    }
    Ok(())
}
