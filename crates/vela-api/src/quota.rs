//! Per-project quotas (unified limits) at the API: the early checks Glance makes, and the
//! guards that decide again inside the change's transaction, so that concurrent requests of
//! one project cannot all pass on the same usage.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Map};
use vela_db::quota::{Guard, Quotas};
use vela_domain::quota::{self, Limits, Resource, Usage};
use vela_domain::RequestContext;

use crate::auth::Ctx;
use crate::wire::json_response;
use crate::{ApiError, AppState};

/// The quotas, when enforced, and the caller's project they apply to.
fn scope<'a>(state: &'a AppState, ctx: &'a RequestContext) -> Option<(&'a Quotas, &'a str)> {
    let quotas = state.importer.config().quotas.as_ref()?;
    Some((quotas, ctx.project_id.as_deref()?))
}

/// Glance's early check: `deltas` on top of the project's usage now. Returns what the
/// transaction guards need (`None` when quotas are off or the caller has no project).
pub async fn precheck(
    state: &AppState,
    ctx: &RequestContext,
    deltas: &[(Resource, i64)],
) -> Result<Option<Scoped>, ApiError> {
    let Some((quotas, project)) = scope(state, ctx) else {
        return Ok(None);
    };
    let limits = quotas.precheck(&state.db, project, deltas).await?;
    Ok(Some(Scoped {
        quotas: quotas.clone(),
        project: project.to_owned(),
        limits,
    }))
}

/// A project and the limits its checks use.
#[derive(Debug, Clone)]
pub struct Scoped {
    quotas: Quotas,
    project: String,
    limits: Limits,
}

impl Scoped {
    /// A guard checking `deltas` on the usage with the image as the change leaves it
    /// (`after`) or as it was (`!after`).
    pub fn guard(&self, after: bool, deltas: Vec<(Resource, i64)>) -> Option<Guard<'static>> {
        self.guard_with(Some(after), deltas)
    }

    /// `own`: which state of the image counts (`None`: none, for a new image).
    fn guard_with(
        &self,
        own: Option<bool>,
        deltas: Vec<(Resource, i64)>,
    ) -> Option<Guard<'static>> {
        let project = self.project.clone();
        self.quotas.guard(
            self.project.clone(),
            self.limits.clone(),
            deltas.iter().map(|d| d.0).collect(),
            move |limits, others, before, changed| {
                let own = match own {
                    Some(after) => Usage::of(if after { changed } else { before }),
                    None => Usage::default(),
                };
                quota::enforce(&project, limits, &others.plus(own), &deltas)
            },
        )
    }
}

/// The guard of a new image: `image_count_total` with a delta of one, as Glance checks it
/// (in the insert's transaction; there is no early check to make).
pub async fn create_guard(
    state: &AppState,
    ctx: &RequestContext,
) -> Result<Option<Guard<'static>>, ApiError> {
    let Some((quotas, project)) = scope(state, ctx) else {
        return Ok(None);
    };
    let scoped = Scoped {
        quotas: quotas.clone(),
        project: project.to_owned(),
        limits: quotas.limits(project, false).await?,
    };
    Ok(scoped.guard_with(None, vec![(Resource::ImageCountTotal, 1)]))
}

/// `GET /v2/info/usage`: each resource's usage and limit for the caller's project, as Glance
/// reports them (`{}` when quotas are off).
pub async fn usage(
    axum::extract::State(state): axum::extract::State<AppState>,
    Ctx(ctx): Ctx,
) -> Result<Response, ApiError> {
    let mut out = Map::new();
    if let Some((quotas, project)) = scope(&state, &ctx) {
        for (r, used, limit) in quotas.report(&state.db, project).await? {
            out.insert(r.name().into(), json!({"usage": used, "limit": limit}));
        }
    }
    Ok(json_response(StatusCode::OK, &json!({ "usage": out })))
}
