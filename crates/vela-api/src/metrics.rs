//! Prometheus metrics (text exposition format), served on the operators' listener
//! (`[metrics] bind`) with a detailed health check beside them.
//!
//! - `vela_http_requests_total{route,method,status}` and
//!   `vela_http_request_duration_seconds{route,method}` (time to the response head), by route
//!   template (`/v2/images/{id}`), so ids never become label values;
//! - `vela_store_bytes_uploaded_total{store}`, `vela_store_bytes_downloaded_total{store}`,
//!   `vela_store_errors_total{store,kind}`;
//! - `vela_uploads_in_flight`, `vela_imports_in_flight`;
//! - `vela_db_connections{pool,state}`;
//! - `vela_token_cache_requests_total{result}` (hit or miss);
//! - `vela_notification_outbox_depth`, `vela_notifications_dropped_total`;
//! - `vela_build_info{version}`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use vela_store::StoreError;

use crate::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    store: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreErrorLabels {
    store: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The process's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily,
    uploaded: Family<StoreLabels, Counter>,
    downloaded: Family<StoreLabels, Counter>,
    store_errors: Family<StoreErrorLabels, Counter>,
    uploads: Gauge,
    imports: Gauge,
    db_connections: Family<PoolLabels, Gauge>,
    token_cache: Family<ResultLabels, Counter>,
    outbox_depth: Gauge,
    dropped: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The kind label of a store error.
fn error_kind(e: &StoreError) -> &'static str {
    match e {
        StoreError::NotFound(_) => "not_found",
        StoreError::ForeignLocation(_) | StoreError::BadLocation(_) => "bad_location",
        StoreError::StorageFull(_) => "full",
        StoreError::Body(_) => "client_body",
        StoreError::Io(_) => "io",
        StoreError::Unavailable(_) => "unavailable",
        StoreError::Denied(_) => "denied",
        StoreError::Config(_) => "config",
        StoreError::ReadOnly(_) => "read_only",
        StoreError::InUse(_) => "in_use",
        #[allow(unreachable_patterns)]
        _ => "other",
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("vela");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route template, method and status",
            requests.clone(),
        );
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time to the response head by route template and method",
            latency.clone(),
        );
        let uploaded = Family::<StoreLabels, Counter>::default();
        registry.register(
            "store_bytes_uploaded",
            "Image data bytes written to each store",
            uploaded.clone(),
        );
        let downloaded = Family::<StoreLabels, Counter>::default();
        registry.register(
            "store_bytes_downloaded",
            "Image data bytes sent to clients from each store",
            downloaded.clone(),
        );
        let store_errors = Family::<StoreErrorLabels, Counter>::default();
        registry.register(
            "store_errors",
            "Store operations that failed, by store and kind",
            store_errors.clone(),
        );
        let uploads = Gauge::default();
        registry.register(
            "uploads_in_flight",
            "Image data uploads and stages being received",
            uploads.clone(),
        );
        let imports = Gauge::default();
        registry.register(
            "imports_in_flight",
            "Imports running on this node",
            imports.clone(),
        );
        let db_connections = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "db_connections",
            "Database connections by pool (read, write) and state (idle, in_use)",
            db_connections.clone(),
        );
        let token_cache = Family::<ResultLabels, Counter>::default();
        registry.register(
            "token_cache_requests",
            "Token validations answered from the cache (hit) or not (miss)",
            token_cache.clone(),
        );
        let outbox_depth = Gauge::default();
        registry.register(
            "notification_outbox_depth",
            "Notifications waiting to be sent",
            outbox_depth.clone(),
        );
        let dropped = Counter::default();
        registry.register(
            "notifications_dropped",
            "Notifications dropped because the outbox was full",
            dropped.clone(),
        );
        registry.register(
            "build",
            "Vela's version",
            Info::new(vec![(
                "version".to_owned(),
                env!("CARGO_PKG_VERSION").to_owned(),
            )]),
        );
        Metrics {
            registry,
            requests,
            latency,
            uploaded,
            downloaded,
            store_errors,
            uploads,
            imports,
            db_connections,
            token_cache,
            outbox_depth,
            dropped,
        }
    }

    /// Counts bytes received into `store`.
    pub fn uploaded(&self, store: &str, bytes: u64) {
        self.uploaded
            .get_or_create(&StoreLabels {
                store: store.to_owned(),
            })
            .inc_by(bytes);
    }

    /// The counter of bytes sent from `store` (one lookup per download, then an atomic add
    /// per chunk).
    pub fn downloaded(&self, store: &str) -> Counter {
        self.downloaded
            .get_or_create(&StoreLabels {
                store: store.to_owned(),
            })
            .clone()
    }

    /// Counts a failed store operation.
    pub fn store_error(&self, store: &str, e: &StoreError) {
        self.store_errors
            .get_or_create(&StoreErrorLabels {
                store: store.to_owned(),
                kind: error_kind(e).to_owned(),
            })
            .inc();
    }

    /// Counts an upload as in flight until the guard is dropped.
    pub fn upload_started(self: &Arc<Self>) -> InFlight {
        self.uploads.inc();
        InFlight(self.uploads.clone())
    }

    fn record(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
                method: method.to_owned(),
            })
            .observe(seconds);
    }

    /// Raises a counter to a total kept elsewhere (they only grow).
    fn catch_up(counter: &Counter, total: u64) {
        let now = counter.get();
        if total > now {
            counter.inc_by(total - now);
        }
    }

    /// The exposition text, with the point-in-time values read now.
    pub async fn render(&self, state: &AppState) -> String {
        for (pool, size, idle) in state.db.pool_stats() {
            let in_use = i64::from(size).saturating_sub(idle as i64);
            for (s, v) in [("idle", idle as i64), ("in_use", in_use)] {
                self.db_connections
                    .get_or_create(&PoolLabels {
                        pool: pool.to_owned(),
                        state: s.to_owned(),
                    })
                    .set(v);
            }
        }
        self.imports.set(state.importer.running() as i64);
        let (hits, misses) = vela_auth::cache::stats();
        for (result, total) in [("hit", hits), ("miss", misses)] {
            Self::catch_up(
                &self.token_cache.get_or_create(&ResultLabels {
                    result: result.to_owned(),
                }),
                total,
            );
        }
        if let Some(n) = state.db.notifications() {
            Self::catch_up(&self.dropped, n.dropped());
            match state.db.outbox_depth().await {
                Ok(d) => {
                    self.outbox_depth.set(i64::try_from(d).unwrap_or(i64::MAX));
                }
                Err(e) => tracing::warn!(error = %e, "metrics: outbox depth not read"),
            }
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "metrics: encoding failed");
        }
        out
    }
}

/// Keeps an upload counted as in flight.
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The route template a request matched, passed from the routing layer to [`layer`].
#[derive(Clone)]
struct RouteName(String);

/// Inside the router: remembers the matched route template on the response.
pub async fn mark_route(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| RouteName(p.as_str().to_owned()));
    let mut resp = next.run(req).await;
    if let Some(r) = route {
        resp.extensions_mut().insert(r);
    }
    resp
}

/// Outside the router: counts and times every request.
pub async fn layer(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_owned();
    let resp = next.run(req).await;
    let route = resp
        .extensions()
        .get::<RouteName>()
        .map_or("unmatched", |r| r.0.as_str());
    let method = match method.as_str() {
        "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" => method.as_str(),
        _ => "other",
    };
    metrics.record(
        route,
        method,
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    resp
}

async fn metrics_page(State(state): State<AppState>) -> Response {
    let body = state.metrics.render(&state).await;
    let mut resp = body.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}

/// `GET /healthcheck` for operators: each dependency and its state, 503 when the database
/// does not answer.
async fn detailed_health(State(state): State<AppState>) -> Response {
    let started = Instant::now();
    let db = match state.db.ping().await {
        Ok(()) => serde_json::json!({"status": "ok"}),
        Err(e) => serde_json::json!({"status": "error", "error": e.to_string()}),
    };
    let db_ok = db["status"] == "ok";
    let stores: serde_json::Map<String, serde_json::Value> = state
        .stores
        .all()
        .iter()
        .map(|s| (s.id().to_owned(), serde_json::json!({"type": s.kind()})))
        .collect();
    let notifications = match state.db.notifications() {
        None => serde_json::json!({"enabled": false}),
        Some(n) => serde_json::json!({
            "enabled": true,
            "outbox_depth": state.db.outbox_depth().await.ok(),
            "dropped": n.dropped(),
        }),
    };
    let body = serde_json::json!({
        "status": if db_ok { "ok" } else { "error" },
        "database": db,
        "stores": stores,
        "notifications": notifications,
        "imports_in_flight": state.importer.running(),
        "took_ms": started.elapsed().as_millis() as u64,
    });
    let status = if db_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// The operators' router: `/metrics` and the detailed `/healthcheck`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthcheck", get(detailed_health))
        .with_state(state)
}
