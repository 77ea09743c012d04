//! Who is calling: the request context every action is checked against.

/// Identity and roles of the caller of one request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestContext {
    pub user_id: Option<String>,
    pub user_domain_id: Option<String>,
    /// The project the caller's token is scoped to.
    pub project_id: Option<String>,
    pub project_domain_id: Option<String>,
    /// `all` for a system-scoped token; such callers pass no image rule (all are
    /// project-scoped, as in Glance).
    pub system_scope: Option<String>,
    /// Role names, lower-cased.
    pub roles: Vec<String>,
    /// Glance's `is_admin`: the result of the `context_is_admin` rule (by default the `admin`
    /// role). Set by [`RequestContext::new`] from the roles; the API layer re-evaluates it
    /// with the configured policy.
    pub admin: bool,
    /// An anonymous caller: every write is refused before anything else (Glance's read-only
    /// context).
    pub read_only: bool,
    /// `x-openstack-request-id` of this request.
    pub request_id: String,
}

/// The role Keystone implies from another (`admin` ⇒ `member` ⇒ `reader`).
fn implied(role: &str) -> Option<&'static str> {
    match role {
        "admin" => Some("member"),
        "member" => Some("reader"),
        _ => None,
    }
}

impl RequestContext {
    /// A project-scoped context with the given roles (lower-cased).
    pub fn new(
        user_id: Option<String>,
        project_id: Option<String>,
        roles: impl IntoIterator<Item = String>,
        request_id: String,
    ) -> Self {
        let roles: Vec<String> = roles.into_iter().map(|r| r.to_lowercase()).collect();
        let admin = roles.iter().any(|r| r == "admin");
        RequestContext {
            user_id,
            project_id,
            roles,
            admin,
            request_id,
            ..RequestContext::default()
        }
    }

    /// The context of a caller without any identity (anonymous access).
    pub fn anonymous(request_id: String) -> Self {
        RequestContext {
            read_only: true,
            request_id,
            ..RequestContext::default()
        }
    }

    /// Whether the caller has no identity at all.
    pub fn is_anonymous(&self) -> bool {
        self.user_id.is_none() && self.project_id.is_none() && self.roles.is_empty()
    }

    /// Adds the roles Keystone's default role hierarchy implies (`admin` ⇒ `member` ⇒
    /// `reader`), as a Keystone token would carry them.
    pub fn with_implied_roles(mut self) -> Self {
        let mut i = 0;
        while i < self.roles.len() {
            if let Some(r) = implied(&self.roles[i]) {
                if !self.has_role(r) {
                    self.roles.push(r.to_owned());
                }
            }
            i += 1;
        }
        self
    }

    /// Whether the caller holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Glance's `is_admin` (see [`RequestContext::admin`]).
    pub fn is_admin(&self) -> bool {
        self.admin
    }

    /// Whether the caller's project owns an image with this owner.
    pub fn owns(&self, owner: Option<&str>) -> bool {
        match (owner, self.project_id.as_deref()) {
            (Some(o), Some(p)) => o == p,
            _ => false,
        }
    }
}
