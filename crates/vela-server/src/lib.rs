//! Vela's application wiring: configuration, startup (migrations, store, crash recovery),
//! serving and graceful shutdown.

pub mod config;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use vela_api::{ApiConfig, AppState, NoAuth};
use vela_db::{Db, DbOptions, Dialect};
use vela_domain::list::Paging;
use vela_domain::{ImageRules, ImageStatus};
use vela_store::digest::HashAlgo;
use vela_store::fs::FsStore;

pub use config::Config;

/// A built, bound, not yet serving Vela.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    db: Db,
}

/// Opens the database named by the configuration and migrates it.
pub async fn open_db(cfg: &Config) -> anyhow::Result<Db> {
    let url = cfg.database_url();
    let db = Db::connect(&DbOptions {
        url: url.clone(),
        max_connections: cfg.database.max_connections,
        acquire_timeout: Duration::from_secs(cfg.database.acquire_timeout_secs),
    })
    .await
    .with_context(|| format!("connecting to the database {url}"))?;
    let version = db.migrate().await.context("migrating the database")?;
    tracing::info!(%url, version, "database ready");
    Ok(db)
}

/// Uploads that were in flight when the process stopped can never finish: their images go
/// back to `queued` (their partial data was already removed with the store's partial files).
async fn recover_interrupted_uploads(db: &Db) -> anyhow::Result<usize> {
    let stuck = db.images_in_status(ImageStatus::Saving).await?;
    for id in &stuck {
        db.update_image(id, false, |img| {
            if img.status == ImageStatus::Saving {
                img.set_status(ImageStatus::Queued)?;
            }
            Ok(())
        })
        .await?;
        tracing::warn!(image_id = %id, "interrupted upload: image returned to queued");
    }
    Ok(stuck.len())
}

impl Application {
    /// Prepares everything and binds the listener (`bind` may use port 0).
    pub async fn build(cfg: Config) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&cfg.data_dir)
            .with_context(|| format!("creating data dir {}", cfg.data_dir.display()))?;
        let db = open_db(&cfg).await?;

        let store_dir = cfg.store_dir();
        let store = FsStore::open(cfg.store.id.clone(), &store_dir)
            .with_context(|| format!("opening the image store at {}", store_dir.display()))?;
        if db.dialect() == Dialect::Sqlite {
            // SQLite means one node: whatever is in flight was ours. With a shared database
            // (several nodes) other nodes' uploads may be in flight; their recovery needs
            // upload leases and is not done here.
            let removed = store.clean_partial()?;
            if removed > 0 {
                tracing::warn!(
                    removed,
                    "removed partial image files of interrupted uploads"
                );
            }
            recover_interrupted_uploads(&db).await?;
        }

        let hash_algo = HashAlgo::parse(&cfg.images.hashing_algorithm).with_context(|| {
            format!(
                "unknown hashing_algorithm '{}'",
                cfg.images.hashing_algorithm
            )
        })?;
        let api = ApiConfig {
            paging: Paging {
                default_limit: cfg.images.limit_param_default,
                max_limit: cfg.images.api_limit_max,
            },
            image_size_cap: cfg.images.image_size_cap,
            hash_algo,
            import_methods: cfg.images.enabled_import_methods.clone(),
            public_endpoint: cfg.server.public_endpoint.clone(),
            noauth: NoAuth {
                default_roles: cfg.auth.default_roles.clone(),
                default_project: cfg.auth.default_project.clone(),
                default_user: cfg.auth.default_user.clone(),
            },
            rules: ImageRules {
                disk_formats: cfg.images.disk_formats.clone(),
                container_formats: cfg.images.container_formats.clone(),
                image_property_quota: cfg.images.image_property_quota,
                image_tag_quota: cfg.images.image_tag_quota,
            },
        };
        let state = AppState::new(db.clone(), Arc::new(store), api);
        let router = vela_api::router(state).layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(
                    tower_http::trace::DefaultMakeSpan::new().level(tracing::Level::DEBUG),
                )
                .on_response(
                    tower_http::trace::DefaultOnResponse::new().level(tracing::Level::DEBUG),
                ),
        );
        let listener = TcpListener::bind(&cfg.server.bind)
            .await
            .with_context(|| format!("binding {}", cfg.server.bind))?;
        Ok(Application {
            listener,
            router,
            db,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then drains in-flight requests.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving")?;
        self.db.close().await;
        Ok(())
    }
}
