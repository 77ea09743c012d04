//! Vela's HTTP layer: the Glance Images API v2.
//!
//! [`router`] lists every route. Requests pass through [`wire::layer`] (request id, error
//! bodies negotiated on `Accept`) and version negotiation; handlers parse path and body values
//! into domain types, check policy, and call the repository and the store.

pub mod auth;
pub mod cache;
pub mod error;
mod http_rules;
pub mod identity;
mod images;
mod info;
mod limits;
mod metadefs;
pub mod metrics;
pub mod quota;
mod schemas;
mod tasks;
mod versions;
pub mod wire;

use std::sync::Arc;

use axum::routing::{delete, get, post, put};
use axum::Router;
use vela_db::Db;
use vela_domain::list::Paging;
use vela_domain::policy::Policy;
use vela_domain::ImageRules;
use vela_store::digest::HashAlgo;
use vela_store::Stores;

pub use auth::{Authenticator, NoAuth};
pub use error::ApiError;

/// Settings of the API layer.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Default and maximum page sizes of lists.
    pub paging: Paging,
    /// Largest image accepted, in bytes (413 beyond).
    pub image_size_cap: u64,
    /// Requests handled at once (503 beyond).
    pub max_concurrent_requests: usize,
    /// Largest JSON request body, bytes (413 beyond).
    pub max_request_body: usize,
    /// `os_hash_algo` for new data.
    pub hash_algo: HashAlgo,
    /// Import methods advertised (`/v2/info/import`, `OpenStack-image-import-methods`).
    pub import_methods: Vec<String>,
    /// Base URL clients should use (`Location`, version links); else taken from `Host`.
    pub public_endpoint: Option<String>,
    /// How callers are identified.
    pub auth: Authenticator,
    /// The policy rules (Glance's defaults plus the operator's overrides).
    pub policy: Policy,
    /// Formats and quotas.
    pub rules: ImageRules,
    /// Delete keeps the data (`pending_delete`) for the scrubber instead of removing it.
    pub delayed_delete: bool,
    /// How long an upload's lease lasts without renewal (renewed every third of it).
    pub upload_lease: std::time::Duration,
    /// Show `direct_url` (Glance's `show_image_direct_url`).
    pub show_image_direct_url: bool,
    /// Show `locations` (Glance's `show_multiple_locations`).
    pub show_multiple_locations: bool,
    /// The format inspector's rules for incoming data.
    pub inspection: Arc<vela_inspect::Rules>,
    /// The guarded client for URLs API users give (`[import_filtering_opts]`): handlers
    /// check such URLs with it before recording them, and fetch with it.
    pub outbound: vela_store::outbound::OutboundClient,
    /// Browser sign-on of the embedded identity service.
    pub websso: identity::WebSsoConfig,
}

/// Shared state of all handlers.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    /// The image stores (one, or several with a default).
    pub stores: Stores,
    pub cfg: Arc<ApiConfig>,
    pub policy: Policy,
    /// The embedded identity service, when it serves `/v3`.
    pub identity: Option<Arc<vela_auth::identity::Identity>>,
    /// Runs imports (and owns the staging area).
    pub importer: vela_import::Importer,
    /// This node's image cache, when enabled.
    pub cache: Option<cache::CacheService>,
    /// This process's Prometheus metrics.
    pub metrics: Arc<metrics::Metrics>,
    schemas: Arc<schemas::Schemas>,
}

impl AppState {
    /// Bundles the layers below the API.
    pub fn new(db: Db, stores: Stores, cfg: ApiConfig, importer: vela_import::Importer) -> Self {
        let schemas = Arc::new(schemas::Schemas::new(&cfg.rules));
        AppState {
            db,
            stores,
            policy: cfg.policy.clone(),
            identity: None,
            importer,
            cache: None,
            metrics: Arc::new(metrics::Metrics::new()),
            cfg: Arc::new(cfg),
            schemas,
        }
    }
}

impl AppState {
    /// Serves the embedded identity service at `/v3`.
    pub fn with_identity(mut self, identity: Arc<vela_auth::identity::Identity>) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Serves downloads through this node's image cache, and the `/v2/cache` API.
    pub fn with_cache(mut self, cache: vela_store::cache::ImageCache) -> Self {
        self.cache = Some(cache::CacheService::new(cache));
        self
    }
}

/// Every route of the service.
pub fn router(state: AppState) -> Router {
    let v2 = Router::new()
        .route(
            "/images",
            get(images::list::list).post(images::create::create),
        )
        .route(
            "/images/{id}",
            get(images::show::show)
                .patch(images::patch::patch)
                .delete(images::delete::delete),
        )
        .route(
            "/images/{id}/file",
            get(images::data::download).put(images::data::upload),
        )
        .route(
            "/images/{id}/tags/{tag}",
            put(images::tags::add).delete(images::tags::remove),
        )
        .route(
            "/images/{id}/actions/deactivate",
            post(images::actions::deactivate),
        )
        .route(
            "/images/{id}/actions/reactivate",
            post(images::actions::reactivate),
        )
        .route("/images/{id}/tasks", get(tasks::of_image))
        .route("/images/{id}/stage", put(images::data::stage))
        .route("/images/{id}/import", post(images::import::import))
        .route("/tasks", get(tasks::list).post(tasks::create))
        .route("/tasks/{id}", get(tasks::show).delete(tasks::delete))
        .route(
            "/images/{id}/locations",
            get(images::locations::list).post(images::locations::add),
        )
        .route(
            "/images/{id}/members",
            get(images::members::list).post(images::members::create),
        )
        .route(
            "/images/{id}/members/{member}",
            get(images::members::show)
                .put(images::members::update)
                .delete(images::members::delete),
        )
        .route(
            "/stores/{store}/{id}",
            delete(images::stores::delete_from_store),
        )
        .route("/schemas/{name}", get(schemas::get))
        .route("/schemas/metadefs/{name}", get(schemas::get_metadef))
        .merge(metadefs::routes())
        .merge(cache::routes())
        .route("/info/import", get(info::import))
        .route("/info/stores", get(info::stores))
        .route("/info/stores/detail", get(info::stores_detail))
        .route("/info/usage", get(quota::usage))
        .route_layer(axum::middleware::from_fn(http_rules::route_layer))
        .fallback(wire::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::layer,
        ));

    let negotiation = versions::Negotiation {
        public: state.cfg.public_endpoint.clone(),
        identity: state.identity.is_some(),
        cache: state.cache.is_some(),
    };
    let mut api = Router::new().nest("/v2", v2);
    if let Some(id) = &state.identity {
        api = api.nest("/v3", identity::router(id.clone()));
    }
    let metrics = state.metrics.clone();
    let api = api
        .route("/healthcheck", get(|| async { "OK" }))
        .route_layer(axum::middleware::from_fn(metrics::mark_route))
        .fallback(wire::not_found)
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            limits::Limiter::new(&state.cfg),
            limits::layer,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            wire::layer,
        ))
        .with_state(state);
    // Version negotiation rewrites URIs, so it must run before `api` routes the request.
    Router::new()
        .fallback_service(api)
        .layer(axum::middleware::from_fn_with_state(
            negotiation,
            versions::negotiate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            metrics::layer,
        ))
}
