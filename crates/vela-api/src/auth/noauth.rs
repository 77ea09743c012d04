//! `noauth` mode: trust the identity headers a Keystone front end sets (`X-Roles`,
//! `X-Project-Id`/`X-Tenant-Id`, `X-User-Id`), with Keystone's implied roles added, and give
//! requests without them a configurable default context (admin by default, as Glance without
//! Keystone does). Only for a service behind a trusted proxy, or for tests.

use axum::http::HeaderMap;
use vela_domain::RequestContext;

/// The context given to requests that carry no identity headers.
#[derive(Debug, Clone)]
pub struct NoAuth {
    pub default_roles: Vec<String>,
    pub default_project: Option<String>,
    pub default_user: Option<String>,
}

impl Default for NoAuth {
    fn default() -> Self {
        NoAuth {
            default_roles: vec!["admin".into()],
            default_project: None,
            default_user: None,
        }
    }
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

impl NoAuth {
    /// The caller's context from the trusted headers, or the default one.
    pub fn context(&self, h: &HeaderMap, request_id: String) -> RequestContext {
        let roles = header(h, "x-roles");
        let project = header(h, "x-project-id").or_else(|| header(h, "x-tenant-id"));
        let user = header(h, "x-user-id");
        if roles.is_none() && project.is_none() && user.is_none() {
            return RequestContext::new(
                self.default_user.clone(),
                self.default_project.clone(),
                self.default_roles.clone(),
                request_id,
            )
            .with_implied_roles();
        }
        let roles: Vec<String> = roles
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect();
        RequestContext::new(user, project, roles, request_id).with_implied_roles()
    }
}
