//! Resource types, and the associations of a namespace with them.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use vela_domain::format_timestamp;
use vela_domain::metadef::AssociationInput;
use vela_domain::policy::{Action, Target};

use super::{association_json, find, Missing};
use crate::auth::Ctx;
use crate::wire::{json_body, json_response};
use crate::{ApiError, AppState};

/// `GET /v2/metadefs/resource_types`: every resource type.
pub async fn list(State(state): State<AppState>, Ctx(ctx): Ctx) -> Result<Response, ApiError> {
    state.policy.enforce(
        Action::ListMetadefResourceTypes,
        &ctx,
        &Target::project(&ctx),
    )?;
    let types = state.db.list_resource_types().await?;
    let list: Vec<Value> = types
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "created_at": format_timestamp(t.created_at),
                "updated_at": format_timestamp(t.updated_at),
            })
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "resource_types": list }),
    ))
}

/// `GET /v2/metadefs/namespaces/{ns}/resource_types`.
pub async fn list_associations(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let ns = find(&state, &ctx, &name, Missing::Other).await?;
    state
        .policy
        .enforce_on_namespace(Action::ListMetadefResourceTypes, &ctx, &ns)?;
    let list: Vec<Value> = state
        .db
        .associations_of_one(&ns)
        .await?
        .iter()
        .map(association_json)
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "resource_type_associations": list }),
    ))
}

/// `POST /v2/metadefs/namespaces/{ns}/resource_types`.
pub async fn associate(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let input = AssociationInput::parse(&json_body(&body)?)?;
    let ns = find(&state, &ctx, &name, Missing::Other).await?;
    state
        .policy
        .enforce_on_namespace(Action::AddMetadefResourceTypeAssociation, &ctx, &ns)?;
    let a = state
        .db
        .associate(&ns, &input, vela_domain::now_micros())
        .await?;
    Ok(json_response(StatusCode::CREATED, &association_json(&a)))
}

/// `DELETE /v2/metadefs/namespaces/{ns}/resource_types/{rt}`.
pub async fn dissociate(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path((name, rt)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let ns = find(&state, &ctx, &name, Missing::Other).await?;
    state
        .policy
        .enforce_on_namespace(Action::RemoveMetadefResourceTypeAssociation, &ctx, &ns)?;
    let missing = || ApiError::not_found(format!("Failed to find resource type {rt} to delete"));
    let assoc = state.db.associations_of_one(&ns).await?;
    if !assoc.iter().any(|a| a.resource_type == rt) {
        return Err(missing());
    }
    if ns.protected {
        return Err(super::protected_error("resource-type-association", &rt));
    }
    match state.db.dissociate(&ns, &rt).await {
        Err(vela_db::DbError::NotFound) => Err(missing()),
        other => {
            other?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
    }
}
