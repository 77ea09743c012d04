//! Authentication without HTTP: who a token belongs to.
//!
//! - [`identity`]: the embedded identity service's core (passwords, signed tokens, signing-key
//!   rotation, revocation, login throttling);
//! - [`keystone`]: validation of Keystone tokens, as keystonemiddleware does it;
//! - [`cache`]: the validation cache both use;
//! - [`federation`]: Keystone's mapping rules for federated (OpenID Connect) logins.
//!
//! The HTTP side (the `/v3` routes, the middleware that turns a request into a
//! `RequestContext`) lives in `vela-api`.

pub mod cache;
pub mod federation;
pub mod identity;
pub mod keystone;
pub mod limits;

use vela_domain::RequestContext;

/// Why a token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Missing, malformed, expired, revoked or unknown token (401).
    #[error("{0}")]
    Invalid(String),
    /// The identity service could not be asked (503).
    #[error("{0}")]
    Unavailable(String),
}

/// Validates tokens: Keystone's, or Vela's own.
#[async_trait::async_trait]
pub trait TokenValidator: Send + Sync {
    /// The caller's context for `token` (`request_id` is copied into it).
    async fn validate(&self, token: &str, request_id: &str) -> Result<RequestContext, AuthError>;
}
