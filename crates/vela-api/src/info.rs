//! Discovery: `/v2/info/*`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;
use vela_domain::policy::{Action, Target};

use crate::auth::Ctx;
use crate::wire::json_response;
use crate::{ApiError, AppState};

/// `GET /v2/info/import`: the enabled import methods.
pub async fn import(State(state): State<AppState>) -> Response {
    json_response(
        StatusCode::OK,
        &json!({"import-methods": {
            "description": "Import methods available.",
            "type": "array",
            "value": state.cfg.import_methods,
        }}),
    )
}

/// `GET /v2/info/stores`: the configured store (Vela always answers, also with one store).
pub async fn stores(State(state): State<AppState>) -> Response {
    json_response(
        StatusCode::OK,
        &json!({"stores": [{"id": state.store.id(), "default": "true"}]}),
    )
}

/// `GET /v2/info/stores/detail`: admin (or service) only.
pub async fn stores_detail(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
) -> Result<Response, ApiError> {
    state
        .policy
        .enforce(Action::StoresInfoDetail, &ctx, &Target::default())?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"stores": [{
            "id": state.store.id(),
            "default": "true",
            "type": state.store.kind(),
            "weight": 0,
            "properties": {},
        }]}),
    ))
}

/// `GET /v2/info/usage`: no unified limits, so no usage to report.
pub async fn usage(Ctx(_ctx): Ctx) -> Response {
    json_response(StatusCode::OK, &json!({"usage": {}}))
}
