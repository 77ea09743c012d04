//! Authentication: every `/v2` request gets a [`RequestContext`] before it is routed.
//!
//! Three modes:
//! - `noauth`: trust identity headers set by a front end ([`NoAuth`]);
//! - `keystone`: validate `X-Auth-Token` against a Keystone v3 service
//!   ([`vela_auth::keystone::Keystone`]);
//! - `embedded`: validate tokens issued by Vela's own identity service (`/v3`).
//!
//! In the token modes a request without a token is refused with 401 and
//! `WWW-Authenticate: Keystone uri="…"`, unless anonymous access is allowed; then it runs
//! with a context that has no project and no roles (Glance's default rules grant it nothing;
//! policy overrides decide what it may do).

pub mod noauth;

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use vela_domain::RequestContext;

pub use noauth::NoAuth;
pub use vela_auth::{AuthError, TokenValidator};

use crate::wire::RequestId;
use crate::{ApiError, AppState};

/// How callers are identified.
#[derive(Clone)]
pub enum Authenticator {
    NoAuth(NoAuth),
    Token {
        validator: Arc<dyn TokenValidator>,
        /// Advertised in `WWW-Authenticate` on 401.
        www_authenticate_uri: String,
        /// Requests without a token run with an empty context instead of getting 401.
        allow_anonymous: bool,
    },
}

impl Default for Authenticator {
    fn default() -> Self {
        Authenticator::NoAuth(NoAuth::default())
    }
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Authenticator::NoAuth(n) => f.debug_tuple("NoAuth").field(n).finish(),
            Authenticator::Token {
                www_authenticate_uri,
                allow_anonymous,
                ..
            } => f
                .debug_struct("Token")
                .field("www_authenticate_uri", www_authenticate_uri)
                .field("allow_anonymous", allow_anonymous)
                .finish(),
        }
    }
}

/// keystonemiddleware's 401: always JSON, with the identity service to ask.
fn unauthorized(www_authenticate_uri: &str) -> Response {
    let body = r#"{"error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}}"#;
    let mut resp = (StatusCode::UNAUTHORIZED, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("Keystone uri=\"{www_authenticate_uri}\"")) {
        h.insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

/// The identity service to name on 401: the configured one, else this node's own `/v3`.
fn challenge_uri(state: &AppState, req: &Request, configured: &str) -> String {
    if configured.is_empty() {
        format!("{}/v3", crate::wire::base_url(state, req.headers()))
    } else {
        configured.to_owned()
    }
}

/// The token of a request: `X-Auth-Token`, or the legacy `X-Storage-Token`.
pub fn request_token(h: &axum::http::HeaderMap) -> Option<&str> {
    h.get("x-auth-token")
        .or_else(|| h.get("x-storage-token"))
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Middleware: authenticates the request and stores its context for [`Ctx`].
pub async fn layer(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let mut ctx = match &state.cfg.auth {
        Authenticator::NoAuth(n) => n.context(req.headers(), request_id),
        Authenticator::Token {
            validator,
            www_authenticate_uri,
            allow_anonymous,
        } => match request_token(req.headers()) {
            None if *allow_anonymous => RequestContext::anonymous(request_id),
            None => return unauthorized(&challenge_uri(&state, &req, www_authenticate_uri)),
            Some(token) => match validator.validate(token, &request_id).await {
                Ok(ctx) => ctx,
                Err(AuthError::Invalid(why)) => {
                    tracing::info!(reason = %why, "token refused");
                    return unauthorized(&challenge_uri(&state, &req, www_authenticate_uri));
                }
                Err(AuthError::Unavailable(why)) => {
                    tracing::error!(reason = %why, "identity service unavailable");
                    return ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "The identity service is temporarily unavailable.",
                    )
                    .into_response();
                }
            },
        },
    };
    ctx.admin = state.policy.is_admin(&ctx);
    if let Some(project) = &ctx.project_id {
        tracing::Span::current().record("project", project.as_str());
    }
    // Glance's read-only (anonymous) context: every mutating call is a 403 up front.
    ctx.read_only |= ctx.is_anonymous();
    if ctx.read_only && !matches!(*req.method(), Method::GET | Method::HEAD) {
        return ApiError::forbidden("Read-only access").into_response();
    }
    req.extensions_mut().insert(ctx);
    next.run(req).await
}

/// Extractor for the caller's [`RequestContext`] (set by [`layer`]).
pub struct Ctx(pub RequestContext);

impl FromRequestParts<AppState> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<RequestContext>()
            .cloned()
            .map(Ctx)
            .ok_or_else(|| {
                ApiError::internal(std::io::Error::other("route served without authentication"))
            })
    }
}
