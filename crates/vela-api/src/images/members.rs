//! `/v2/images/{id}/members…`: sharing an image with other projects.
//!
//! Only `shared` images have members. The owner (a project member) adds and removes members;
//! a member answers for itself (`pending`, `accepted`, `rejected`); readers of the owning
//! project and the members see the memberships, a member only its own. The refusals follow
//! Glance: an image the caller cannot see is a 404, a refused action a 403 worded per call,
//! and `GET` of one member turns every refusal into a 404.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use vela_domain::member::{member_not_found, Member, MemberStatus, MAX_MEMBER_ID};
use vela_domain::policy::Action;
use vela_domain::{format_timestamp, DomainError, Image, ImageId, RequestContext, Visibility};

use super::load_visible;
use crate::auth::Ctx;
use crate::wire::{image_id, json_body, json_response};
use crate::{ApiError, AppState};

#[derive(Serialize)]
struct MemberView {
    created_at: String,
    image_id: String,
    member_id: String,
    schema: &'static str,
    status: &'static str,
    updated_at: String,
}

impl From<&Member> for MemberView {
    fn from(m: &Member) -> Self {
        MemberView {
            created_at: format_timestamp(m.created_at),
            image_id: m.image_id.to_string(),
            member_id: m.member_id.clone(),
            schema: "/v2/schemas/member",
            status: m.status.as_str(),
            updated_at: format_timestamp(m.updated_at),
        }
    }
}

fn member_response(m: &Member) -> Response {
    json_response(StatusCode::OK, &MemberView::from(m))
}

/// The call being made, for Glance's per-call 403 wording.
#[derive(Clone, Copy)]
enum Call {
    Create,
    Update,
    Delete,
}

impl Call {
    fn refused(self, id: &ImageId) -> DomainError {
        let verb = match self {
            Call::Create => "create",
            Call::Update => "update",
            Call::Delete => "delete",
        };
        DomainError::Forbidden(format!("Not allowed to {verb} members for image {id}."))
    }
}

const ONLY_SHARED: &str = "Only shared images have members.";

/// Policy for a member action: `get_image` first (404 when refused), then the action (403).
fn enforce(
    state: &AppState,
    ctx: &RequestContext,
    img: &Image,
    action: Action,
) -> Result<(), DomainError> {
    state.policy.enforce_on_image(Action::GetImage, ctx, img)?;
    state.policy.enforce_on_image(action, ctx, img)
}

/// The memberships `ctx` may know of: all for the owner and admins, else its own.
fn own_row_only<'a>(ctx: &'a RequestContext, img: &Image) -> Result<Option<&'a str>, ()> {
    if ctx.is_admin() || ctx.owns(img.owner.as_deref()) {
        return Ok(None);
    }
    ctx.project_id.as_deref().map(Some).ok_or(())
}

/// Looks up `member` as `ctx` may see it (Glance's `_lookup_member`).
async fn lookup_member(
    state: &AppState,
    ctx: &RequestContext,
    img: &Image,
    member: &str,
) -> Result<Member, ApiError> {
    enforce(state, ctx, img, Action::GetMember)?;
    let visible = match own_row_only(ctx, img) {
        Ok(None) => true,
        Ok(Some(own)) => own == member,
        Err(()) => false,
    };
    let found = if visible {
        state
            .db
            .list_members(&img.id, Some(member))
            .await?
            .into_iter()
            .next()
    } else {
        None
    };
    found.ok_or_else(|| member_not_found(member, &img.id).into())
}

fn body_object(body: &Bytes, expected: &str) -> Result<serde_json::Map<String, Value>, ApiError> {
    match json_body(body)? {
        Value::Object(o) => Ok(o),
        _ => Err(ApiError::bad_request(format!(
            "Expected a {expected} in the form: {{\"{expected}\": \"{}\"}}",
            if expected == "member" {
                "image_id"
            } else {
                "status"
            }
        ))),
    }
}

/// `GET /v2/images/{id}/members`
pub async fn list(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = image_id(&id)?;
    let img = load_visible(&state, &ctx, &id).await?;
    if img.visibility != Visibility::Shared {
        return Err(ApiError::forbidden(format!(
            "Not allowed to list members for image {id}: {ONLY_SHARED}"
        )));
    }
    enforce(&state, &ctx, &img, Action::GetMembers)?;
    let members = match own_row_only(&ctx, &img) {
        Ok(only) => state.db.list_members(&id, only).await?,
        Err(()) => Vec::new(),
    };
    // Glance filters each row through `get_member`; its target is the image, so one check
    // decides for all rows.
    let may_see = state
        .policy
        .enforce_on_image(Action::GetMember, &ctx, &img)
        .is_ok();
    let views: Vec<MemberView> = members
        .iter()
        .filter(|_| may_see)
        .map(MemberView::from)
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({"members": views, "schema": "/v2/schemas/members"}),
    ))
}

/// `GET /v2/images/{id}/members/{member}`: every refusal is a 404.
pub async fn show(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path((id, member)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = image_id(&id)?;
    let img = load_visible(&state, &ctx, &id).await?;
    if img.visibility != Visibility::Shared {
        return Err(ApiError::not_found(ONLY_SHARED));
    }
    match lookup_member(&state, &ctx, &img, &member).await {
        Ok(m) => Ok(member_response(&m)),
        Err(e) if e.status == StatusCode::FORBIDDEN => Err(ApiError::not_found(e.message)),
        Err(e) => Err(e),
    }
}

/// `POST /v2/images/{id}/members` with `{"member": "<project>"}`: 200 with a `pending` member.
pub async fn create(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = body_object(&body, "member")?;
    let member = match body.get("member") {
        None => return Err(ApiError::bad_request("Member to be added not specified")),
        Some(Value::Null) | Some(Value::Bool(false)) => {
            return Err(ApiError::bad_request("Member can't be empty"))
        }
        Some(Value::String(s)) if s.is_empty() => {
            return Err(ApiError::bad_request("Member can't be empty"))
        }
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(ApiError::bad_request(
                "Member must be a string naming a project",
            ))
        }
    };
    if member.chars().count() > MAX_MEMBER_ID {
        return Err(ApiError::bad_request(format!(
            "Member id must be at most {MAX_MEMBER_ID} characters"
        )));
    }
    let id = image_id(&id)?;
    let img = load_visible(&state, &ctx, &id).await?;
    let call = Call::Create;
    let check = |img: &Image| {
        if img.visibility != Visibility::Shared {
            return Err(call.refused(&img.id));
        }
        enforce(&state, &ctx, img, Action::AddMember)
    };
    check(&img)?;
    let quota = u64::try_from(state.cfg.rules.image_member_quota).unwrap_or(u64::MAX);
    let m = state
        .db
        .add_member(&id, &member, quota, vela_domain::now_micros(), check)
        .await
        .map_err(not_found_as_image(&id))?;
    tracing::info!(image_id = %id, member = %member, request_id = %ctx.request_id, "member added");
    Ok(member_response(&m))
}

/// `PUT /v2/images/{id}/members/{member}` with `{"status": "..."}`: only the member answers.
pub async fn update(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path((id, member)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = body_object(&body, "status")?;
    let status = match body.get("status") {
        None => return Err(ApiError::bad_request("Status not specified")),
        Some(v) => v.as_str().and_then(MemberStatus::parse).ok_or_else(|| {
            ApiError::bad_request(
                "Incorrect request: Status must be \"pending\", \"accepted\" or \"rejected\".",
            )
        })?,
    };
    let id = image_id(&id)?;
    let img = load_visible(&state, &ctx, &id).await?;
    changeable(&state, &ctx, &img, &member, Call::Update).await?;
    let m = state
        .db
        .set_member_status(&id, &member, status, vela_domain::now_micros(), |img, _| {
            still_allowed(&state, &ctx, img, Call::Update, Action::ModifyMember)
        })
        .await
        .map_err(not_found_as_image(&id))?;
    Ok(member_response(&m))
}

/// `DELETE /v2/images/{id}/members/{member}`: the owner ends a share (204).
pub async fn delete(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path((id, member)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = image_id(&id)?;
    let img = load_visible(&state, &ctx, &id).await?;
    changeable(&state, &ctx, &img, &member, Call::Delete).await?;
    state
        .db
        .remove_member(&id, &member, |img, _| {
            still_allowed(&state, &ctx, img, Call::Delete, Action::DeleteMember)
        })
        .await
        .map_err(not_found_as_image(&id))?;
    tracing::info!(image_id = %id, member = %member, request_id = %ctx.request_id, "member removed");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Checks before a status change or removal: shared image, visible membership, then policy.
async fn changeable(
    state: &AppState,
    ctx: &RequestContext,
    img: &Image,
    member: &str,
    call: Call,
) -> Result<(), ApiError> {
    if img.visibility != Visibility::Shared {
        return Err(call.refused(&img.id).into());
    }
    lookup_member(state, ctx, img, member).await?;
    let action = match call {
        Call::Update => Action::ModifyMember,
        _ => Action::DeleteMember,
    };
    enforce(state, ctx, img, action)?;
    Ok(())
}

/// The same checks on the locked image, in the write transaction.
fn still_allowed(
    state: &AppState,
    ctx: &RequestContext,
    img: &Image,
    call: Call,
    action: Action,
) -> Result<(), DomainError> {
    if img.visibility != Visibility::Shared {
        return Err(call.refused(&img.id));
    }
    enforce(state, ctx, img, action)
}

/// The image vanished between the check and the change: Glance's 404 for the image.
fn not_found_as_image(id: &ImageId) -> impl Fn(vela_db::DbError) -> ApiError + '_ {
    move |e| match e {
        vela_db::DbError::NotFound => DomainError::image_not_found(id.as_str()).into(),
        other => other.into(),
    }
}
