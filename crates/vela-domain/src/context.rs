//! Who is calling: the request context every action is checked against.

/// Identity and roles of the caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    pub user_id: Option<String>,
    pub project_id: Option<String>,
    /// Role names, lower-cased.
    pub roles: Vec<String>,
    /// `x-openstack-request-id` of this request.
    pub request_id: String,
}

impl RequestContext {
    /// A context with the given roles (lower-cased).
    pub fn new(
        user_id: Option<String>,
        project_id: Option<String>,
        roles: impl IntoIterator<Item = String>,
        request_id: String,
    ) -> Self {
        RequestContext {
            user_id,
            project_id,
            roles: roles.into_iter().map(|r| r.to_lowercase()).collect(),
            request_id,
        }
    }

    /// Whether the caller holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Glance's `context_is_admin`: the `admin` role.
    pub fn is_admin(&self) -> bool {
        self.has_role("admin")
    }

    /// Whether the caller's project owns an image with this owner.
    pub fn owns(&self, owner: Option<&str>) -> bool {
        match (owner, self.project_id.as_deref()) {
            (Some(o), Some(p)) => o == p,
            _ => false,
        }
    }
}
