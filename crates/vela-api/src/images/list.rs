//! `GET /v2/images`.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use vela_db::Scope;
use vela_domain::list::{Filter, ListQuery};
use vela_domain::policy::protections::PropOp;
use vela_domain::policy::{Action, Target};

use crate::auth::Ctx;
use crate::wire::{json_response, ImageView};
use crate::{ApiError, AppState};

/// One page of a list response.
#[derive(Serialize)]
struct Page<'a> {
    images: Vec<ImageView<'a>>,
    first: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
    schema: &'static str,
}

fn link(pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        return "/v2/images".into();
    }
    let mut ser = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        ser.append_pair(k, v);
    }
    format!("/v2/images?{}", ser.finish())
}

/// Lists the images the caller may see, one page at a time.
pub async fn list(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    state
        .policy
        .enforce(Action::GetImages, &ctx, &Target::project(&ctx))?;
    let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    let query = ListQuery::parse(&pairs, state.cfg.paging)?;
    let scope = Scope {
        project: ctx.project_id.clone(),
        is_admin: ctx.is_admin(),
    };
    // A filter on a property the caller may not read matches nothing: it must not tell which
    // images carry the property, nor its values (Glance applies it regardless).
    let unreadable = query.filters.iter().any(|f| {
        matches!(f, Filter::Property(name, _)
            if !state.policy.property_allowed(name, PropOp::Read, &ctx))
    });
    let mut images = if unreadable {
        Vec::new()
    } else {
        state.db.list_images(&query, &scope).await?
    };
    let last = images
        .last()
        .filter(|_| images.len() as i64 == query.limit)
        .map(|img| img.id.to_string());
    // Like Glance, each image also passes `get_image` (always true under the default rules).
    images.retain(|img| {
        state
            .policy
            .allows(Action::GetImage, &ctx, &Target::image(img, &ctx))
    });

    let without_marker: Vec<(String, String)> =
        pairs.into_iter().filter(|(k, _)| k != "marker").collect();
    let next = last.map(|last| {
        let mut next = without_marker.clone();
        next.push(("marker".into(), last));
        link(&next)
    });
    let shown: Vec<_> = images
        .iter()
        .map(|img| state.policy.redact(img, &ctx))
        .collect();
    let page = Page {
        images: shown
            .iter()
            .map(|img| ImageView::new(&state, &ctx, img))
            .collect(),
        first: link(&without_marker),
        next,
        schema: "/v2/schemas/images",
    };
    Ok(json_response(StatusCode::OK, &page))
}
