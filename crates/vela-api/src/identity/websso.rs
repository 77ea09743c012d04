//! Keystone's browser sign-on (WebSSO) with OpenID Connect, what Horizon's `WEBSSO_ENABLED`
//! login uses:
//!
//! 1. `GET /v3/auth/OS-FEDERATION/websso/openid?origin=…` (or
//!    `…/identity_providers/{idp}/protocols/openid/websso?origin=…`): the origin must be a
//!    trusted dashboard (`[auth.federation] trusted_dashboard`); the browser is sent to the
//!    provider's authorization endpoint (code flow, PKCE S256, state and nonce) with the
//!    sign-on in a short-lived cookie sealed with the token signing key (a forged or changed
//!    one is refused before the provider is asked anything).
//! 2. The provider sends the browser back to `GET /v3/auth/OS-FEDERATION/websso/openid/redirect`
//!    with a code; Vela redeems it as the provider's client, verifies the id_token (signature,
//!    issuer, audience = the client, expiry, nonce), maps its claims like any federated login
//!    and answers with a page that posts the unscoped token to the origin, as Keystone's
//!    callback template does.
//!
//! Where Keystone leaves the provider conversation to a web-server module (mod_auth_openidc),
//! Vela holds it itself; the provider must list Vela's redirect URI for the client.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use vela_auth::federation::websso::{SignOn, COOKIE_PREFIX, SEAL_PURPOSE, SIGN_ON_TTL};
use vela_auth::identity::Identity;
use vela_auth::AuthError;
use vela_db::federation::Idp;

use super::directory::params;
use super::federation::{enabled_idp, login, protocol_error, refused};
use super::{db_error, error, from_auth, mint};
use crate::wire::base_url;
use crate::AppState;

/// Where Vela's redirect endpoint is, below `/v3`.
const REDIRECT_PATH: &str = "/auth/OS-FEDERATION/websso/openid/redirect";
/// Longest origin accepted (trusted ones are compared whole).
const MAX_ORIGIN: usize = 2048;
/// Longest authorization code accepted.
const MAX_CODE: usize = 4096;

/// `[auth.federation]`: browser sign-on settings.
#[derive(Debug, Clone, Default)]
pub struct WebSsoConfig {
    /// Dashboards a sign-on may hand its token to (Keystone's `trusted_dashboard`), whole
    /// URLs as their `origin` parameter gives them, e.g. `https://dash.example.com/auth/websso/`.
    pub trusted_dashboards: Vec<String>,
    /// Vela's redirect URI as registered at the providers; default: the public endpoint (or
    /// the request's host) with `/v3/auth/OS-FEDERATION/websso/openid/redirect`.
    pub redirect_uri: Option<String>,
    /// The scopes asked for (`openid` and what the mappings need, e.g. `groups`).
    pub scope: String,
}

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/auth/OS-FEDERATION/websso/{protocol}",
            get(start_any).post(start_any),
        )
        .route(
            "/auth/OS-FEDERATION/identity_providers/{idp}/protocols/{protocol}/websso",
            get(start_idp).post(start_idp),
        )
        .route(REDIRECT_PATH, get(finish))
}

/// `…/websso/{protocol}`: the one provider that offers browser sign-on.
async fn start_any(
    State(state): State<AppState>,
    axum::Extension(id): axum::Extension<Arc<Identity>>,
    Path(protocol): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let idp = match sign_on_idp(&id).await {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    start(&state, &id, &idp, &protocol, &query, &headers).await
}

/// `…/identity_providers/{idp}/protocols/{protocol}/websso`.
async fn start_idp(
    State(state): State<AppState>,
    axum::Extension(id): axum::Extension<Arc<Identity>>,
    Path((idp_id, protocol)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let idp = match enabled_idp(&id, &idp_id).await {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    start(&state, &id, &idp, &protocol, &query, &headers).await
}

/// The enabled provider with a client for browser sign-on, when there is exactly one.
async fn sign_on_idp(id: &Identity) -> Result<Idp, Response> {
    let mut found: Vec<Idp> = id
        .db()
        .list_idps()
        .await
        .map_err(db_error)?
        .into_iter()
        .filter(|p| p.enabled && p.client_id.is_some() && p.client_secret.is_some())
        .collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(error(
            StatusCode::NOT_FOUND,
            "No identity provider offers browser sign-on (one needs a client id and secret).",
        )),
        _ => Err(error(
            StatusCode::BAD_REQUEST,
            "Several identity providers offer browser sign-on: use \
             /v3/auth/OS-FEDERATION/identity_providers/{idp}/protocols/openid/websso.",
        )),
    }
}

fn now_secs() -> i64 {
    vela_domain::now_micros() / 1_000_000
}

async fn start(
    state: &AppState,
    id: &Identity,
    idp: &Idp,
    protocol: &str,
    query: &Option<String>,
    headers: &HeaderMap,
) -> Response {
    if let Some(resp) = protocol_error(protocol) {
        return resp;
    }
    let cfg = &state.cfg.websso;
    let Some(origin) = params(query).remove("origin").filter(|o| !o.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "Request must have an origin query parameter",
        );
    };
    if origin.len() > MAX_ORIGIN || !cfg.trusted_dashboards.contains(&origin) {
        tracing::warn!(origin = %origin.chars().take(200).collect::<String>(),
                       "browser sign-on refused: not a trusted dashboard");
        return error(
            StatusCode::UNAUTHORIZED,
            &format!(
                "{} is not a trusted dashboard host",
                origin.chars().take(200).collect::<String>()
            ),
        );
    }
    let (Some(client_id), Some(_)) = (&idp.client_id, &idp.client_secret) else {
        return error(
            StatusCode::BAD_REQUEST,
            &format!(
                "Identity Provider {} has no client for browser sign-on.",
                idp.id
            ),
        );
    };
    let endpoints = match id.oidc.endpoints(idp).await {
        Ok(e) => e,
        Err(e) => return from_auth(e),
    };
    let redirect_uri = match &cfg.redirect_uri {
        Some(u) => u.clone(),
        None => format!("{}/v3{REDIRECT_PATH}", base_url(state, headers)),
    };
    let sign_on = SignOn::new(&idp.id, &origin, &redirect_uri, now_secs());
    let sealed = match id.seal(SEAL_PURPOSE, &sign_on.to_bytes()).await {
        Ok(v) => v,
        Err(e) => return from_auth(e),
    };
    let location = sign_on.authorization_url(&endpoints.authorization, client_id, &cfg.scope);
    let secure = if redirect_uri.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{}={}; Path=/v3{REDIRECT_PATH}; Max-Age={SIGN_ON_TTL}; HttpOnly; SameSite=Lax{secure}",
        sign_on.cookie_name(),
        sealed
    );
    tracing::info!(idp = %idp.id, "browser sign-on started");
    let mut resp = StatusCode::FOUND.into_response();
    let h = resp.headers_mut();
    for (name, value) in [
        (header::LOCATION, location),
        (header::SET_COOKIE, cookie),
        (header::CACHE_CONTROL, "no-store".to_owned()),
    ] {
        match HeaderValue::from_str(&value) {
            Ok(v) => {
                h.insert(name, v);
            }
            Err(_) => {
                return error(
                    StatusCode::BAD_GATEWAY,
                    "The identity provider's authorization endpoint is not a usable URL.",
                )
            }
        }
    }
    resp
}

/// The provider's redirect back: redeem the code, log the mapped user in, hand the token to
/// the dashboard.
async fn finish(
    State(app): State<AppState>,
    axum::Extension(id): axum::Extension<Arc<Identity>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let mut q = params(&query);
    let state = q.remove("state").unwrap_or_default();
    let cookies = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let sign_on = match SignOn::cookie_value(cookies, &state) {
        Some(sealed) => match id.unseal(SEAL_PURPOSE, sealed).await {
            Ok(bytes) => SignOn::decode(&bytes, &state, now_secs()),
            Err(AuthError::Invalid(_)) => None,
            Err(e) => return from_auth(e),
        },
        None => None,
    };
    let Some(sign_on) = sign_on else {
        return forget(
            &state,
            refused("no browser sign-on of this browser with that state (or it expired)"),
        );
    };
    // The cookie is the browser's own; the origin is checked again (and the list may have
    // changed since).
    if !app.cfg.websso.trusted_dashboards.contains(&sign_on.origin) {
        return forget(
            &state,
            refused("the sign-on's origin is not a trusted dashboard"),
        );
    }
    let resp = match redeem(&id, &sign_on, q.remove("code"), q.remove("error")).await {
        Ok(token) => post_to_dashboard(&sign_on.origin, &token),
        Err(resp) => resp,
    };
    forget(&state, resp)
}

async fn redeem(
    id: &Identity,
    sign_on: &SignOn,
    code: Option<String>,
    provider_error: Option<String>,
) -> Result<String, Response> {
    if let Some(e) = provider_error {
        return Err(refused(&format!(
            "the provider answered the sign-on with an error: {}",
            e.chars().take(100).collect::<String>()
        )));
    }
    let code = code
        .filter(|c| !c.is_empty() && c.len() <= MAX_CODE)
        .ok_or_else(|| refused("the provider's redirect has no usable code"))?;
    let idp = enabled_idp(id, &sign_on.idp).await?;
    let checked = async {
        let id_token = id
            .oidc
            .redeem_code(&idp, &code, &sign_on.redirect_uri, &sign_on.verifier)
            .await?;
        id.oidc
            .verify_id_token(&idp, &id_token, &sign_on.nonce)
            .await
    };
    let claims = match checked.await {
        Ok(c) => c,
        Err(AuthError::Invalid(why)) => return Err(refused(&why)),
        Err(e) => return Err(from_auth(e)),
    };
    let user = login(id, &idp, &claims).await?;
    tracing::info!(user = %user.name, idp = %idp.id, "federated browser sign-on");
    let claims = id.claims(&user, None, false, vec!["openid".into()], None, Vec::new());
    Ok(mint(id, claims).await?.0)
}

/// `resp` with the sign-on's cookie removed (it is good for one return only).
fn forget(state: &str, mut resp: Response) -> Response {
    if !state.is_empty() && state.len() <= 64 && state.bytes().all(|b| b.is_ascii_hexdigit()) {
        let gone = format!("{COOKIE_PREFIX}{state}=; Path=/v3{REDIRECT_PATH}; Max-Age=0; HttpOnly");
        if let Ok(v) = HeaderValue::from_str(&gone) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `scheme://host[:port]` of a URL (for the page's `form-action`).
fn url_origin(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let len = scheme.len() + 3 + end;
    (end > 0).then(|| &url[..len])
}

/// The page that posts `token` to the dashboard at `origin` (Keystone's callback template:
/// a form with one `token` field, submitted on load).
fn post_to_dashboard(origin: &str, token: &str) -> Response {
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let page = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Signing in</title></head>\
         <body><form id=\"sso\" name=\"sso\" action=\"{action}\" method=\"post\">\
         <input type=\"hidden\" name=\"token\" id=\"token\" value=\"{token}\">\
         <noscript><button type=\"submit\">Continue</button></noscript></form>\
         <script nonce=\"{nonce}\">document.getElementById('sso').submit();</script>\
         </body></html>\n",
        action = escape(origin),
        token = escape(token),
    );
    let form_action = url_origin(origin).unwrap_or("'none'");
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; form-action {form_action}; \
         base-uri 'none'; frame-ancestors 'none'"
    );
    let mut resp = (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        page,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        resp.headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_of_urls() {
        assert_eq!(
            url_origin("https://dash.example.com:8443/auth/websso/"),
            Some("https://dash.example.com:8443")
        );
        assert_eq!(url_origin("http://h?x"), Some("http://h"));
        assert_eq!(url_origin("http:///x"), None);
        assert_eq!(url_origin("nothing"), None);
    }

    #[test]
    fn the_page_escapes_what_it_embeds() {
        let resp = post_to_dashboard("http://d/\"><script>", "t<k>");
        let csp = resp.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap_or_default()
            .to_owned();
        assert!(csp.contains("form-action http://d;"), "{csp}");
        assert_eq!(resp.headers()[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(
            escape("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
    }
}
