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

/// The stores as `/v2/info/stores` lists them: `"default": "true"` on the default one only.
fn store_list(state: &AppState, detail: bool) -> serde_json::Value {
    let default = state.stores.default_store().id();
    let stores: Vec<_> = state
        .stores
        .all()
        .iter()
        .map(|s| {
            let mut v = json!({"id": s.id()});
            if s.id() == default {
                v["default"] = json!("true");
            }
            if s.read_only() {
                v["read-only"] = json!("true");
            }
            if detail {
                v["type"] = json!(s.kind());
                v["weight"] = json!(0);
                v["properties"] = json!({});
            }
            v
        })
        .collect();
    json!({ "stores": stores })
}

/// `GET /v2/info/stores`: the configured stores (Vela always answers, also with one store).
pub async fn stores(State(state): State<AppState>) -> Response {
    json_response(StatusCode::OK, &store_list(&state, false))
}

/// `GET /v2/info/stores/detail`: admin (or service) only.
pub async fn stores_detail(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
) -> Result<Response, ApiError> {
    state
        .policy
        .enforce(Action::StoresInfoDetail, &ctx, &Target::default())?;
    Ok(json_response(StatusCode::OK, &store_list(&state, true)))
}
