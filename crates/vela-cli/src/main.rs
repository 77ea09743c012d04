//! `vela`: the Vela image service.

mod identity;

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use vela_server::config::{Config, Overrides};
use vela_server::Application;

/// Vela: an OpenStack Image service (Glance Images API v2) in Rust.
///
/// With no configuration `vela serve` listens on 127.0.0.1:9292 and keeps its SQLite database
/// and image files under ./vela-data. Settings come from built-in defaults, then the TOML file
/// given with --config (see vela.example.toml), then VELA_SECTION__KEY environment variables
/// (e.g. VELA_SERVER__BIND, VELA_IMAGES__IMAGE_SIZE_CAP), then the flags below.
/// Logging follows RUST_LOG (default "info"); VELA_LOG_FORMAT=json logs JSON lines.
#[derive(Parser, Debug)]
#[command(name = "vela", version, about, long_about)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (database and image files unless configured elsewhere).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the API server.
    Serve {
        /// Listen address, ADDR:PORT (port 0 picks a free one).
        #[arg(long, value_name = "ADDR:PORT")]
        bind: Option<String>,
    },
    /// Database maintenance.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Image store maintenance.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Remove the data of images deleted with delayed_delete once scrub_time_secs passed.
    Scrub,
    /// Users, projects and roles of the embedded identity service (`[auth] mode = "embedded"`).
    Identity {
        #[command(subcommand)]
        command: identity::IdentityCommand,
    },
    /// Print the effective configuration as JSON (passwords masked).
    Config,
    /// The metadata definitions catalog (`/v2/metadefs`).
    Metadefs {
        #[command(subcommand)]
        command: MetadefsCommand,
    },
    /// This node's image cache (`[cache]`).
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
}

#[derive(Subcommand, Debug)]
enum CacheCommand {
    /// Remove stalled partial files, then evict the least recently used images until the cache
    /// fits cache.max_size (the server also does this every cache.prune_interval_secs).
    Prune,
    /// List the cached and the queued images.
    List,
}

#[derive(Subcommand, Debug)]
enum MetadefsCommand {
    /// Load definition files in Glance's format: a file, or every *.json file of a directory
    /// (such as Glance's etc/metadefs). Existing namespaces are left alone unless --overwrite.
    Load {
        path: std::path::PathBuf,
        /// Replace a namespace that exists already, with everything in it.
        #[arg(long)]
        overwrite: bool,
    },
    /// Write every namespace to DIR in Glance's format, one file each.
    Export { dir: std::path::PathBuf },
}

#[derive(Subcommand, Debug)]
enum StoreCommand {
    /// Remove image data that no image references (deleted images, interrupted uploads).
    Gc {
        /// Keep unreferenced data younger than this many seconds (default: store.gc_grace_secs).
        #[arg(long, value_name = "SECS")]
        grace_secs: Option<u64>,
    },
}

#[derive(Subcommand, Debug)]
enum DbCommand {
    /// Create or upgrade the schema.
    Migrate,
    /// Remove the rows of records deleted more than N days ago (ended memberships, deleted and
    /// expired tasks; with --images also deleted images with their properties, tags, locations
    /// and members), as `glance-manage db purge` / `db purge_images_table`.
    Purge {
        /// Purge what was deleted at least this many days ago.
        #[arg(long, value_name = "DAYS", default_value_t = 30)]
        age_in_days: u64,
        /// Also purge deleted images' rows (their ids may then be used again).
        #[arg(long)]
        images: bool,
    },
    /// Check the deployment without changing it: the schema version, images whose data is
    /// missing from their store (or has another size), and store data no image refers to.
    /// Exits with 1 when it finds a problem.
    Check {
        /// Check only the schema, not the stores.
        #[arg(long)]
        schema_only: bool,
    },
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if std::env::var("VELA_LOG_FORMAT").is_ok_and(|v| v == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing();
    let cli = Cli::parse();
    let bind = match &cli.command {
        Command::Serve { bind } => bind.clone(),
        _ => None,
    };
    let cfg = Config::load(
        cli.config.as_deref(),
        Overrides {
            data_dir: cli.data_dir.clone(),
            bind,
        },
    )?;
    match cli.command {
        Command::Serve { .. } => {
            let app = Application::build(cfg).await?;
            let addr = app.local_addr()?;
            tracing::info!(%addr, "listening");
            let mut out = std::io::stdout();
            if let Some(m) = app.metrics_addr() {
                tracing::info!(addr = %m, "metrics listening");
                writeln!(out, "vela metrics on http://{m}").context("writing to stdout")?;
            }
            writeln!(out, "vela listening on http://{addr}").context("writing to stdout")?;
            out.flush().ok();
            app.run_until(shutdown_signal()).await
        }
        Command::Db {
            command: DbCommand::Migrate,
        } => {
            vela_server::create_private_dir(&cfg.data_dir)?;
            let db = vela_server::open_db(&cfg).await?;
            db.close().await;
            println!("database schema is at version {}", vela_db::SCHEMA_VERSION);
            Ok(())
        }
        Command::Db {
            command:
                DbCommand::Purge {
                    age_in_days,
                    images,
                },
        } => {
            let db = vela_server::open_db(&cfg).await?;
            let age = i64::try_from(age_in_days.saturating_mul(86_400_000_000)).unwrap_or(i64::MAX);
            let before = vela_domain::now_micros().saturating_sub(age);
            let r = db.purge(before, images).await?;
            db.close().await;
            println!(
                "purged rows deleted more than {age_in_days} days ago: {} image members, {} tasks, {} images",
                r.members, r.tasks, r.images
            );
            Ok(())
        }
        Command::Db {
            command: DbCommand::Check { schema_only },
        } => {
            let db = vela_server::connect_db(&cfg).await?;
            let stores = vela_server::open_stores(&cfg)?;
            let grace = std::time::Duration::from_secs(cfg.store.gc_grace_secs);
            let r = vela_server::check::check(&db, &stores, !schema_only, grace).await?;
            db.close().await;
            println!(
                "schema version {} (this build: {}); {} locations checked; {} unreferenced store objects",
                r.schema_version,
                vela_db::SCHEMA_VERSION,
                r.locations_checked,
                r.unreferenced_objects
            );
            for p in &r.problems {
                println!("problem: {p}");
            }
            println!("{} problems", r.problems.len());
            if !r.problems.is_empty() {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Store {
            command: StoreCommand::Gc { grace_secs },
        } => {
            let db = vela_server::open_db(&cfg).await?;
            let stores = vela_server::open_stores(&cfg)?;
            let grace =
                std::time::Duration::from_secs(grace_secs.unwrap_or(cfg.store.gc_grace_secs));
            let report = vela_server::gc_stores(&db, &stores, grace).await?;
            db.close().await;
            println!("removed {} objects, kept {}", report.removed, report.kept);
            Ok(())
        }
        Command::Scrub => {
            let db = vela_server::open_db(&cfg).await?;
            let stores = vela_server::open_stores(&cfg)?;
            let delay = std::time::Duration::from_secs(cfg.images.scrub_time_secs);
            let n = vela_server::scrub(&db, &stores, delay).await?;
            db.close().await;
            println!("scrubbed {n} images");
            Ok(())
        }
        Command::Identity { command } => identity::run(&cfg, command).await,
        Command::Metadefs { command } => {
            let db = vela_server::open_db(&cfg).await?;
            let done = match command {
                MetadefsCommand::Load { path, overwrite } => {
                    let docs = vela_server::metadefs::read_path(&path)?;
                    let r = vela_server::metadefs::load(&db, &docs, overwrite).await?;
                    for (what, names) in [
                        ("created", &r.created),
                        ("replaced", &r.replaced),
                        ("skipped (exists; --overwrite replaces it)", &r.skipped),
                    ] {
                        for n in names {
                            println!("{what}: {n}");
                        }
                    }
                    println!(
                        "{} created, {} replaced, {} skipped",
                        r.created.len(),
                        r.replaced.len(),
                        r.skipped.len()
                    );
                    Ok(())
                }
                MetadefsCommand::Export { dir } => {
                    let n = vela_server::metadefs::export(&db, &dir).await?;
                    println!("wrote {n} namespaces to {}", dir.display());
                    Ok(())
                }
            };
            db.close().await;
            done
        }
        Command::Cache { command } => {
            let cache = vela_server::open_cache(&cfg)?.ok_or_else(|| {
                anyhow::anyhow!("the image cache is not enabled ([cache] enabled)")
            })?;
            match command {
                CacheCommand::Prune => {
                    let cleaned = cache.clean().await?;
                    let p = cache.prune().await?;
                    println!(
                        "removed {cleaned} partial or orphaned files; pruned {} images, {} bytes",
                        p.total_files_pruned, p.total_bytes_pruned
                    );
                }
                CacheCommand::List => {
                    let listed = serde_json::json!({
                        "cached_images": cache.list().await?,
                        "queued_images": cache.queued().await?,
                    });
                    println!("{}", serde_json::to_string_pretty(&listed)?);
                }
            }
            Ok(())
        }
        Command::Config => {
            // Passwords and keys are `Secret`s and print as ***; the database URL's
            // password is masked here.
            let mut shown = cfg.clone();
            shown.database.url = shown.database.url.map(|u| vela_server::redact_str(&u));
            println!("{}", serde_json::to_string_pretty(&shown)?);
            Ok(())
        }
    }
}
