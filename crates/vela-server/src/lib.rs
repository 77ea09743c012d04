//! Vela's application wiring: configuration, startup (migrations, store, crash recovery),
//! serving and graceful shutdown.

pub mod auth;
pub mod check;
pub mod config;
mod cors;
pub mod identity_admin;
pub mod metadefs;
pub mod notifier;
mod serve;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use vela_api::{ApiConfig, AppState};
use vela_db::{Db, DbOptions};
use vela_domain::list::Paging;
use vela_domain::{ImageRules, ImageStatus};
use vela_import::{ImportConfig, Importer};
use vela_store::cache::{CacheSettings, ImageCache};
use vela_store::digest::HashAlgo;
use vela_store::fs::{create_private_file, looser_than_private, FsStore};
use vela_store::http::{HttpConfig, HttpStore};
use vela_store::outbound::{ClientOpts, FilterOpts, OutboundClient};
use vela_store::{Store, Stores};

pub use config::Config;
/// Creates a directory (and missing parents) readable by its owner only.
pub use vela_store::fs::create_private_dir;
/// A URL without its user and password, for logs and output.
pub use vela_store::outbound::redact_str;

/// A built, bound, not yet serving Vela.
pub struct Application {
    listener: TcpListener,
    limits: serve::Limits,
    router: axum::Router,
    db: Db,
    store: Stores,
    importer: Importer,
    sweep_every: Duration,
    gc_every: Duration,
    gc_grace: Duration,
    scrub_every: Option<Duration>,
    scrub_delay: Duration,
    /// The API state, when the image cache runs (for its prefetcher and maintenance).
    cache: Option<(AppState, config::CacheSection)>,
    /// The notification sender, unless notifications are off.
    notifier: Option<notifier::Notifier>,
    /// The operators' listener (`/metrics`, detailed `/healthcheck`), when configured.
    metrics: Option<(TcpListener, axum::Router)>,
}

/// Opens the image cache when it is enabled.
pub fn open_cache(cfg: &Config) -> anyhow::Result<Option<ImageCache>> {
    if !cfg.cache.enabled {
        return Ok(None);
    }
    let dir = cfg.cache_dir();
    let cache = ImageCache::open(CacheSettings {
        dir: dir.clone(),
        max_size: cfg.cache.max_size,
        stall_time: Duration::from_secs(cfg.cache.stall_time_secs),
    })
    .with_context(|| format!("opening the image cache {}", dir.display()))?;
    Ok(Some(cache))
}

/// Warns about the data directory, the SQLite file (it holds the token signing key and the
/// password hashes) and the image directory when other local users may read them.
fn warn_if_shared(cfg: &Config) {
    let mut paths = vec![cfg.data_dir.clone()];
    if let Some(file) = cfg.sqlite_path() {
        paths.push(file);
    }
    paths.push(cfg.store_dir());
    for path in paths {
        if let Some(mode) = looser_than_private(&path) {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:o}"),
                "other local users may read this; `chmod go-rwx` it"
            );
        }
    }
}

/// Opens the database named by the configuration and migrates it.
pub async fn open_db(cfg: &Config) -> anyhow::Result<Db> {
    let db = connect_db(cfg).await?;
    let version = db.migrate().await.context("migrating the database")?;
    tracing::info!(url = %redact_str(&cfg.database_url()), version, "database ready");
    Ok(db)
}

/// Opens the database named by the configuration as it is (no migration).
pub async fn connect_db(cfg: &Config) -> anyhow::Result<Db> {
    let url = cfg.database_url();
    // A new SQLite file is created private (SQLite gives its journal files the same mode).
    if let Some(file) = cfg.sqlite_path().filter(|f| !f.exists()) {
        if let Some(dir) = file.parent() {
            create_private_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        create_private_file(&file).with_context(|| format!("creating {}", file.display()))?;
    }
    let db = Db::connect(&DbOptions {
        url: url.clone(),
        max_connections: cfg.database.max_connections,
        acquire_timeout: Duration::from_secs(cfg.database.acquire_timeout_secs),
    })
    .await
    .with_context(|| format!("connecting to the database {}", redact_str(&url)))?;
    Ok(db)
}

/// Returns abandoned uploads and stages (their node stopped renewing the lease) to `queued`
/// and removes their partial data. Safe to run on every node at once: each image is
/// reclaimed under its row lock, and only if its lease is still expired then.
pub async fn sweep_abandoned_uploads(
    db: &Db,
    stores: &Stores,
    staging: &Arc<dyn Store>,
) -> anyhow::Result<usize> {
    let now = vela_domain::now_micros();
    let mut reclaimed = 0;
    let mut ids = db.images_in_status(ImageStatus::Saving).await?;
    ids.extend(db.images_in_status(ImageStatus::Uploading).await?);
    for id in ids {
        // Partial data goes first, while the image is still `saving`/`uploading` (no new
        // upload can start), then the image is returned to `queued` if it is still abandoned.
        match db.get_image(&id, false).await {
            Ok(img) if img.upload_abandoned(now) => {}
            Ok(_) | Err(vela_db::DbError::NotFound) => continue,
            Err(e) => return Err(e.into()),
        }
        for store in stores.all().iter().chain(std::iter::once(staging)) {
            store.abort_partial(&id).await?;
        }
        let res = db
            .update_image(&id, false, |img| {
                if img.upload_abandoned(now) {
                    img.set_status(ImageStatus::Queued)?;
                    Ok(true)
                } else {
                    Ok(false)
                }
            })
            .await;
        match res {
            Ok((_, true)) => {
                tracing::warn!(image_id = %id, "abandoned upload: image returned to queued");
                reclaimed += 1;
            }
            Ok((_, false)) | Err(vela_db::DbError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(reclaimed)
}

/// The scrubber: removes the data of `pending_delete` images deleted more than `delay` ago,
/// then marks them `deleted`. Returns how many images were scrubbed.
pub async fn scrub(db: &Db, stores: &Stores, delay: Duration) -> anyhow::Result<usize> {
    let delay = i64::try_from(delay.as_micros()).unwrap_or(i64::MAX);
    let before = vela_domain::now_micros().saturating_sub(delay);
    let mut scrubbed = 0;
    for id in db.pending_deletes(before).await? {
        let img = db.get_image(&id, true).await?;
        // Data first: if this stops half-way the image stays pending and the next pass retries.
        for loc in &img.locations {
            stores.store_of(&loc.store)?.delete(&loc.url).await?;
        }
        db.update_image(&id, true, |img| {
            if img.status == ImageStatus::PendingDelete {
                img.finish_delete(vela_domain::now_micros())?;
            }
            Ok(())
        })
        .await?;
        tracing::info!(image_id = %id, "scrubbed image data");
        scrubbed += 1;
    }
    Ok(scrubbed)
}

/// What a store garbage collection did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GcReport {
    pub removed: usize,
    pub kept: usize,
}

/// Removes store objects no image references: complete files of deleted or unknown images,
/// and partial files of uploads that are no longer running. Objects younger than `grace` are
/// kept (a file is renamed into place a moment before its image becomes active).
pub async fn gc_stores(db: &Db, stores: &Stores, grace: Duration) -> anyhow::Result<GcReport> {
    gc_all(db, stores, grace, true).await
}

/// What [`gc_stores`] would remove (`removed`), removing nothing.
pub async fn gc_stores_dry_run(
    db: &Db,
    stores: &Stores,
    grace: Duration,
) -> anyhow::Result<GcReport> {
    gc_all(db, stores, grace, false).await
}

async fn gc_all(
    db: &Db,
    stores: &Stores,
    grace: Duration,
    remove: bool,
) -> anyhow::Result<GcReport> {
    let mut report = GcReport::default();
    for store in stores.all() {
        let r = gc_store(db, store.as_ref(), grace, remove).await?;
        report.removed += r.removed;
        report.kept += r.kept;
    }
    Ok(report)
}

async fn gc_store(
    db: &Db,
    store: &dyn Store,
    grace: Duration,
    remove: bool,
) -> anyhow::Result<GcReport> {
    // List first, read references second: an object activated in between counts as referenced.
    let objects = store.list().await?;
    let referenced = db.referenced_locations().await?;
    let saving: std::collections::HashSet<String> = db
        .images_in_status(ImageStatus::Saving)
        .await?
        .into_iter()
        .map(|id| id.to_string())
        .collect();
    let cutoff = std::time::SystemTime::now()
        .checked_sub(grace)
        .unwrap_or(std::time::UNIX_EPOCH);
    let mut report = GcReport::default();
    for obj in objects {
        let in_use = match obj.partial {
            true => saving.contains(&obj.image_id),
            false => referenced.contains(&obj.location),
        };
        if in_use || obj.modified > cutoff {
            report.kept += 1;
            continue;
        }
        if remove {
            store.delete_listed(&obj).await?;
            tracing::warn!(location = %obj.location, image_id = %obj.image_id, "removed unreferenced image data");
        }
        report.removed += 1;
    }
    Ok(report)
}

/// Removes staged data no image refers to any more (a stage or import that ended without
/// cleaning up), keeping partial data of stages and imports that are still running.
pub async fn gc_staging(
    db: &Db,
    staging: &Arc<dyn Store>,
    grace: Duration,
) -> anyhow::Result<GcReport> {
    let objects = staging.list().await?;
    let referenced = db.property_values(vela_domain::import::STAGED_DATA).await?;
    let mut busy: std::collections::HashSet<String> = std::collections::HashSet::new();
    for status in [ImageStatus::Uploading, ImageStatus::Importing] {
        busy.extend(
            db.images_in_status(status)
                .await?
                .into_iter()
                .map(|id| id.to_string()),
        );
    }
    let cutoff = std::time::SystemTime::now()
        .checked_sub(grace)
        .unwrap_or(std::time::UNIX_EPOCH);
    let mut report = GcReport::default();
    for obj in objects {
        let in_use = referenced.contains(obj.location.as_str()) || busy.contains(&obj.image_id);
        if in_use || obj.modified > cutoff {
            report.kept += 1;
            continue;
        }
        staging.delete_listed(&obj).await?;
        tracing::warn!(location = %obj.location, image_id = %obj.image_id, "removed unreferenced staged data");
        report.removed += 1;
    }
    Ok(report)
}

/// The importer of this node.
fn importer(
    cfg: &Config,
    db: &Db,
    stores: &Stores,
    staging: Arc<dyn Store>,
    api: &ApiConfig,
    quotas: Option<vela_db::quota::Quotas>,
) -> anyhow::Result<Importer> {
    let c = &cfg.import.conversion;
    let plugins = cfg
        .import
        .plugins
        .iter()
        .filter_map(|p| vela_import::Plugin::parse(p))
        .collect();
    let import = ImportConfig {
        methods: cfg.images.enabled_import_methods.clone(),
        lease: api.upload_lease,
        task_ttl: Duration::from_secs(cfg.import.task_time_to_live_hours.saturating_mul(3600)),
        image_size_cap: cfg.images.image_size_cap,
        hash_algo: api.hash_algo,
        inspection: api.inspection.clone(),
        plugins,
        conversion: vela_import::Conversion {
            output_format: c.output_format.clone(),
            qemu_img: c.qemu_img.clone(),
            prlimit: "prlimit".into(),
            cpu_time_secs: c.cpu_time_secs,
            memory_bytes: c.memory_mib.saturating_mul(1 << 20),
            timeout: Duration::from_secs(c.timeout_secs),
        },
        inject: vela_import::Inject {
            properties: cfg
                .import
                .inject_metadata
                .properties
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ignore_user_roles: cfg.import.inject_metadata.ignore_user_roles.clone(),
        },
        remote_properties: cfg.import.glance_download_properties.clone(),
        work_dir: cfg.work_dir(),
        node: format!("vela-{}", &uuid_like()),
        max_running: cfg.import.max_running,
        identity_url: (cfg.auth.mode == "keystone").then(|| cfg.auth.keystone.auth_url.clone()),
        quotas,
    };
    let trusted =
        OutboundClient::trusted(&ClientOpts::default()).context("the outbound HTTP client")?;
    Ok(Importer::new(
        db.clone(),
        stores.clone(),
        staging,
        import,
        api.outbound.clone(),
        trusted,
    ))
}

/// This machine's name, for the notification sender lease.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// A short random name for this node.
fn uuid_like() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{:08x}-{}",
        (n as u64) ^ u64::from(std::process::id()),
        std::process::id()
    )
}

fn open_dir(id: &str, dir: &std::path::Path) -> anyhow::Result<Arc<dyn Store>> {
    let store = FsStore::open(id, dir)
        .with_context(|| format!("opening the image store at {}", dir.display()))?;
    Ok(Arc::new(store))
}

/// Opens `[stores.NAME]`.
fn open_named(
    name: &str,
    s: &vela_store::StoreSettings,
    filter: &FilterOpts,
) -> anyhow::Result<Arc<dyn Store>> {
    s.open(name, filter)
        .with_context(|| format!("store '{name}' ({})", s.kind()))
}

/// Opens the configured stores: the file store of `[store]`, then each `[stores.NAME]` (but
/// the staging area's).
pub fn open_stores(cfg: &Config) -> anyhow::Result<Stores> {
    let filter = cfg.import_filtering_opts.filter()?;
    let mut all = vec![open_dir(&cfg.store.id, &cfg.store_dir())?];
    for (name, s) in &cfg.stores {
        if name != config::STAGING_STORE {
            all.push(open_named(name, s, &filter)?);
        }
    }
    let default = cfg.store.default.as_deref().unwrap_or(&cfg.store.id);
    let single = all.len() == 1;
    let stores = Stores::new(all, default).map_err(anyhow::Error::msg)?;
    if single {
        // Single-store mode serves http(s) locations, as Glance's default `stores = file,http`.
        let http = HttpStore::new(
            "http",
            &HttpConfig {
                filter,
                ..HttpConfig::default()
            },
        )
        .context("the http store")?;
        return Ok(stores.with_implicit(Arc::new(http)));
    }
    Ok(stores)
}

/// Opens the staging area: `[stores.os_glance_staging_store]` when configured (shared by
/// every node), else a directory (`import.staging_path`).
pub fn open_staging(cfg: &Config) -> anyhow::Result<Arc<dyn Store>> {
    match cfg.stores.get(config::STAGING_STORE) {
        Some(s) => open_named(
            config::STAGING_STORE,
            s,
            &cfg.import_filtering_opts.filter()?,
        ),
        None => open_dir(config::STAGING_STORE, &cfg.staging_dir()),
    }
}

impl Application {
    /// Prepares everything and binds the listener (`bind` may use port 0).
    pub async fn build(cfg: Config) -> anyhow::Result<Self> {
        create_private_dir(&cfg.data_dir)
            .with_context(|| format!("creating data dir {}", cfg.data_dir.display()))?;
        let notifier = notifier::Notifier::new(&cfg.notifications)?;
        let mut db = open_db(&cfg).await?;
        if let Some(n) = &notifier {
            db = db.with_notifications(n.outbox());
        }
        warn_if_shared(&cfg);
        metadefs::prepare(&db, &cfg)
            .await
            .context("preparing the metadata definitions catalog")?;

        let stores = open_stores(&cfg)?;
        let staging = open_staging(&cfg)?;
        // Uploads this or another node abandoned (their lease expired) go back to `queued`.
        let reclaimed = sweep_abandoned_uploads(&db, &stores, &staging).await?;
        if reclaimed > 0 {
            tracing::warn!(reclaimed, "returned abandoned uploads to queued");
        }

        let hash_algo = HashAlgo::parse(&cfg.images.hashing_algorithm).with_context(|| {
            format!(
                "unknown hashing_algorithm '{}'",
                cfg.images.hashing_algorithm
            )
        })?;
        let identity = auth::identity(&cfg.auth, &db).await?;
        let keystone = auth::keystone(&cfg.auth)?;
        let quotas = auth::quotas(&cfg, &db, keystone.as_ref());
        let outbound =
            OutboundClient::new(cfg.import_filtering_opts.filter()?, &ClientOpts::default())
                .context("the outbound HTTP client")?;
        let api = ApiConfig {
            outbound,
            paging: Paging {
                default_limit: cfg.images.limit_param_default,
                max_limit: cfg.images.api_limit_max,
            },
            image_size_cap: cfg.images.image_size_cap,
            max_concurrent_requests: cfg.server.max_concurrent_requests,
            max_request_body: cfg.server.max_request_body_bytes,
            hash_algo,
            import_methods: cfg.images.enabled_import_methods.clone(),
            public_endpoint: cfg.server.public_endpoint.clone(),
            auth: auth::authenticator(&cfg.auth, identity.as_ref(), keystone.as_ref())?,
            policy: auth::load_policy(&cfg.auth)?,
            delayed_delete: cfg.images.delayed_delete,
            show_image_direct_url: cfg.images.show_image_direct_url,
            show_multiple_locations: cfg.images.show_multiple_locations,
            upload_lease: Duration::from_secs(cfg.images.upload_lease_secs.max(1)),
            rules: ImageRules {
                disk_formats: cfg.images.disk_formats.clone(),
                container_formats: cfg.images.container_formats.clone(),
                image_property_quota: cfg.images.image_property_quota,
                image_tag_quota: cfg.images.image_tag_quota,
                image_member_quota: cfg.images.image_member_quota,
                max_property_value_bytes: cfg.images.max_property_value_bytes,
                max_image_metadata_bytes: cfg.images.max_image_metadata_bytes,
                max_patch_operations: cfg.images.max_patch_operations,
            },
            inspection: Arc::new(cfg.image_format.rules()),
            websso: vela_api::identity::WebSsoConfig {
                trusted_dashboards: cfg.auth.federation.trusted_dashboard.clone(),
                redirect_uri: cfg.auth.federation.websso_redirect_uri.clone(),
                scope: cfg.auth.federation.websso_scope.clone(),
            },
        };
        let importer = importer(&cfg, &db, &stores, staging, &api, quotas)?;
        importer
            .clean_work_dir()
            .await
            .with_context(|| format!("preparing {}", cfg.work_dir().display()))?;
        let recovered = importer.recover().await?;
        if recovered > 0 {
            tracing::warn!(recovered, "failed the imports of stopped nodes");
        }
        let sweep_every = (api.upload_lease / 4).max(Duration::from_millis(500));
        let mut state = AppState::new(db.clone(), stores.clone(), api, importer.clone());
        let state_has_identity = identity.is_some();
        if let Some(id) = identity {
            state = state.with_identity(id);
        }
        let cache = open_cache(&cfg)?;
        if let Some(cache) = cache {
            let removed = cache.remove_partials().await?;
            if removed > 0 {
                tracing::info!(removed, "removed partial image cache files");
            }
            state = state.with_cache(cache);
        }
        let cache = state
            .cache
            .is_some()
            .then(|| (state.clone(), cfg.cache.clone()));
        let metrics = if cfg.metrics.bind.is_empty() {
            None
        } else {
            let l = TcpListener::bind(&cfg.metrics.bind)
                .await
                .with_context(|| format!("binding [metrics] {}", cfg.metrics.bind))?;
            Some((l, vela_api::metrics::router(state.clone())))
        };
        let mut router = vela_api::router(state);
        if let Some(cors) = cors::layer(&cfg.cors)? {
            router = router.layer(cors);
        }
        let listener = TcpListener::bind(&cfg.server.bind)
            .await
            .with_context(|| format!("binding {}", cfg.server.bind))?;
        if state_has_identity {
            let local = listener.local_addr().context("the listener's address")?;
            auth::first_run(&cfg, &db, local).await?;
        }
        let srv = &cfg.server;
        let limits = serve::Limits {
            header_read_timeout: Duration::from_secs(srv.header_read_timeout_secs),
            max_header_bytes: srv.max_header_bytes,
            max_connections: srv.max_connections,
            body_idle_timeout: Duration::from_secs(srv.body_idle_timeout_secs),
        };
        Ok(Application {
            listener,
            limits,
            router,
            db,
            store: stores,
            importer,
            sweep_every,
            gc_every: Duration::from_secs(cfg.store.gc_interval_secs),
            scrub_every: cfg
                .images
                .delayed_delete
                .then(|| Duration::from_secs(cfg.images.scrub_interval_secs.max(1))),
            scrub_delay: Duration::from_secs(cfg.images.scrub_time_secs),
            gc_grace: Duration::from_secs(cfg.store.gc_grace_secs),
            cache,
            notifier,
            metrics,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The operators' listener's address, when it is on.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then drains in-flight requests.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (db, store, every) = (self.db.clone(), self.store.clone(), self.sweep_every);
        let importer = self.importer.clone();
        let sweeper = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Err(e) = sweep_abandoned_uploads(&db, &store, importer.staging()).await {
                    tracing::error!(error = %e, "sweeping abandoned uploads failed");
                }
                if let Err(e) = importer.recover().await {
                    tracing::error!(error = %e, "recovering abandoned imports failed");
                }
            }
        });
        let (db, store, every, grace) = (
            self.db.clone(),
            self.store.clone(),
            self.gc_every,
            self.gc_grace,
        );
        let staging = self.importer.staging().clone();
        let gc = tokio::spawn(async move {
            if every.is_zero() {
                return;
            }
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                match gc_stores(&db, &store, grace).await {
                    Ok(r) => tracing::info!(removed = r.removed, kept = r.kept, "store gc"),
                    Err(e) => tracing::error!(error = %e, "store gc failed"),
                }
                match gc_staging(&db, &staging, grace).await {
                    Ok(r) => tracing::info!(removed = r.removed, kept = r.kept, "staging gc"),
                    Err(e) => tracing::error!(error = %e, "staging gc failed"),
                }
            }
        });
        let (db, store, every, delay) = (
            self.db.clone(),
            self.store.clone(),
            self.scrub_every,
            self.scrub_delay,
        );
        let scrubber = tokio::spawn(async move {
            let Some(every) = every else { return };
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Err(e) = scrub(&db, &store, delay).await {
                    tracing::error!(error = %e, "scrubbing failed");
                }
            }
        });
        let cache_tasks = self.cache.map(|(state, c)| {
            let prefetch = Duration::from_secs(c.prefetch_interval_secs.max(1));
            let prefetcher = tokio::spawn(vela_api::cache::prefetcher(state.clone(), prefetch));
            let every = Duration::from_secs(c.prune_interval_secs.max(1));
            let maintenance = tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tick.tick().await;
                    if let Err(e) = vela_api::cache::maintain(&state).await {
                        tracing::error!(error = %e.message, "image cache maintenance failed");
                    }
                }
            });
            [prefetcher, maintenance]
        });
        let node = format!("{}-{}", hostname(), uuid_like());
        let sender = self
            .notifier
            .map(|n| tokio::spawn(n.run(self.db.clone(), node.clone())));
        let operators = self.metrics.map(|(listener, router)| {
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, router).await {
                    tracing::error!(error = %e, "the metrics listener stopped");
                }
            })
        });
        let served = serve::serve(self.listener, self.router, self.limits, shutdown)
            .await
            .context("serving");
        sweeper.abort();
        if let Some(t) = operators {
            t.abort();
        }
        gc.abort();
        scrubber.abort();
        for task in cache_tasks.into_iter().flatten() {
            task.abort();
        }
        // Running imports fail and put their images back before the node goes.
        self.importer.cancel_all();
        self.importer.wait_idle(Duration::from_secs(10)).await;
        if let Some(sender) = sender {
            // What is left waits in the outbox for the next sender.
            sender.abort();
            if let Err(e) = self.db.outbox_release(&node).await {
                tracing::warn!(error = %e, "could not release the notification sender lease");
            }
        }
        self.db.close().await;
        served
    }
}
