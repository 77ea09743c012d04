//! Browser sign-on (Keystone's WebSSO) with OpenID Connect: the state of one sign-on between
//! the browser's trip to the provider and its return, and the authorization request.
//!
//! Nothing is kept on the server: the sign-on travels in a short-lived cookie of the
//! browser that started it, sealed with the token signing key (so it cannot be forged or
//! changed) and named after the `state` parameter (so sign-ons in several tabs do not meet),
//! and any node can finish it. The `state` must come back in the provider's
//! redirect, the PKCE verifier (RFC 7636, S256) binds the authorization code to this
//! browser, and the id_token's `nonce` binds the provider's answer to this sign-on.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How long a browser may take at the provider, in seconds.
pub const SIGN_ON_TTL: i64 = 600;
/// Prefix of the cookie names.
pub const COOKIE_PREFIX: &str = "vela_sso_";
/// What the cookie's value is sealed for.
pub const SEAL_PURPOSE: &str = "sso";
/// Longest cookie value read.
const MAX_COOKIE: usize = 4096;

/// One sign-on in progress.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SignOn {
    /// The `state` parameter (also in the cookie's name).
    pub state: String,
    /// The identity provider signing the browser in.
    pub idp: String,
    /// Where the token goes at the end (a trusted dashboard).
    pub origin: String,
    /// Vela's redirect URI as given to the provider (the token request repeats it).
    pub redirect_uri: String,
    pub nonce: String,
    /// The PKCE code verifier.
    pub verifier: String,
    /// Seconds since the epoch after which the sign-on is refused.
    pub exp: i64,
}

/// Random text with 244 bits of entropy: two v4 UUIDs in hex (the characters RFC 7636
/// allows in a verifier, 64 of them).
fn random() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

impl SignOn {
    /// A new sign-on of the browser at `idp`, returning to `origin`.
    pub fn new(idp: &str, origin: &str, redirect_uri: &str, now_secs: i64) -> Self {
        SignOn {
            state: random(),
            idp: idp.to_owned(),
            origin: origin.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            nonce: random(),
            verifier: random(),
            exp: now_secs + SIGN_ON_TTL,
        }
    }

    /// The cookie that carries this sign-on.
    pub fn cookie_name(&self) -> String {
        format!("{COOKIE_PREFIX}{}", self.state)
    }

    /// The sign-on as bytes, to be sealed into the cookie's value (purpose [`SEAL_PURPOSE`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The value of the cookie a returning browser carries for `state`, if any.
    pub fn cookie_value<'a>(
        cookies: impl IntoIterator<Item = &'a str>,
        state: &str,
    ) -> Option<&'a str> {
        if state.len() != 64 || !state.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let name = format!("{COOKIE_PREFIX}{state}");
        cookies
            .into_iter()
            .flat_map(|h| h.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.trim_matches('"'))
            .filter(|v| v.len() <= MAX_COOKIE)
    }

    /// The sign-on in an unsealed cookie value, when it is whole, for `state`, and in date.
    pub fn decode(bytes: &[u8], state: &str, now_secs: i64) -> Option<Self> {
        let s: SignOn = serde_json::from_slice(bytes).ok()?;
        (s.state == state && s.exp > now_secs).then_some(s)
    }

    /// The PKCE challenge of the verifier (S256).
    pub fn challenge(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(self.verifier.as_bytes()))
    }

    /// The provider's authorization URL for this sign-on: the code flow with PKCE.
    pub fn authorization_url(&self, endpoint: &str, client_id: &str, scope: &str) -> String {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("scope", scope)
            .append_pair("state", &self.state)
            .append_pair("nonce", &self.nonce)
            .append_pair("code_challenge", &self.challenge())
            .append_pair("code_challenge_method", "S256")
            .finish();
        let sep = if endpoint.contains('?') { '&' } else { '?' };
        format!("{endpoint}{sep}{query}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sign_on_comes_back_from_its_cookie_only() {
        let s = SignOn::new("corp", "https://dash/auth/websso/", "https://vela/r", 1000);
        assert_eq!(s.state.len(), 64);
        assert_ne!(s.state, s.nonce);
        let cookie = format!("other=1; {}=\"v1\"; x=y", s.cookie_name());
        assert_eq!(
            SignOn::cookie_value([cookie.as_str()], &s.state),
            Some("v1")
        );
        assert_eq!(SignOn::cookie_value([cookie.as_str()], "../x"), None);
        let other = SignOn::new("corp", "o", "r", 1000);
        assert_eq!(SignOn::cookie_value([cookie.as_str()], &other.state), None);
        let bytes = s.to_bytes();
        assert_eq!(SignOn::decode(&bytes, &s.state, 1001), Some(s.clone()));
        // Expired, another state, garbage: nothing.
        assert_eq!(SignOn::decode(&bytes, &s.state, 1600), None);
        assert_eq!(SignOn::decode(&bytes, &other.state, 1001), None);
        assert_eq!(SignOn::decode(b"!!!", &s.state, 1001), None);
    }

    #[test]
    fn the_authorization_url_carries_pkce_and_the_nonce() {
        let s = SignOn::new("corp", "o", "http://vela/v3/x?y=1", 0);
        let u = s.authorization_url("https://op/auth?tenant=a", "vela", "openid email");
        assert!(u.starts_with("https://op/auth?tenant=a&response_type=code&client_id=vela"));
        assert!(u.contains("redirect_uri=http%3A%2F%2Fvela%2Fv3%2Fx%3Fy%3D1"));
        assert!(u.contains("scope=openid+email"));
        assert!(u.contains(&format!("nonce={}", s.nonce)));
        assert!(u.contains("code_challenge_method=S256"));
        // RFC 7636 appendix B's example.
        let mut t = s.clone();
        t.verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into();
        assert_eq!(t.challenge(), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }
}
