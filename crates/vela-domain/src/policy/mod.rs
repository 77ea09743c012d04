//! One policy check per API action, in oslo.policy's rule language.
//!
//! The defaults are Glance's secure-RBAC rules (`glance/policies/`): `admin` may do everything,
//! a project `reader` may look, a project `member` may change what its project owns, and
//! sharing grants members of a shared image read and download access. Operators override any
//! rule by name from a policy file ([`Policy::with_overrides`]).
//!
//! Visibility is a separate question ([`visible`]): an image a caller cannot see is a 404, never
//! a 403, whatever the policy says.

pub mod check;
pub mod protections;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use crate::metadef::Namespace;
use crate::{DomainError, Image, RequestContext, Visibility};
pub use check::{Check, ParseError};
use check::{Cred, Env};
use protections::{PropOp, PropertyProtections};

/// An API action that is subject to policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    GetImages,
    GetImage,
    AddImage,
    ModifyImage,
    DeleteImage,
    PublicizeImage,
    CommunitizeImage,
    UploadImage,
    DownloadImage,
    Deactivate,
    Reactivate,
    AddMember,
    DeleteMember,
    GetMember,
    GetMembers,
    ModifyMember,
    TasksApiAccess,
    GetTask,
    GetTasks,
    AddTask,
    CopyImage,
    StoresInfoDetail,
    GetImageLocation,
    DeleteImageLocation,
    SetImageLocation,
    AddImageLocation,
    FetchImageLocation,
    GetMetadefNamespace,
    GetMetadefNamespaces,
    ModifyMetadefNamespace,
    AddMetadefNamespace,
    DeleteMetadefNamespace,
    GetMetadefObject,
    GetMetadefObjects,
    ModifyMetadefObject,
    AddMetadefObject,
    DeleteMetadefObject,
    ListMetadefResourceTypes,
    GetMetadefResourceType,
    AddMetadefResourceTypeAssociation,
    RemoveMetadefResourceTypeAssociation,
    GetMetadefProperty,
    GetMetadefProperties,
    ModifyMetadefProperty,
    AddMetadefProperty,
    RemoveMetadefProperty,
    GetMetadefTag,
    GetMetadefTags,
    ModifyMetadefTag,
    AddMetadefTag,
    AddMetadefTags,
    DeleteMetadefTag,
    DeleteMetadefTags,
    CacheImage,
    CacheList,
    CacheDelete,
    CacheClean,
    CachePrune,
    ListCachedNodes,
}

impl Action {
    /// Glance's policy name for the action.
    pub fn name(self) -> &'static str {
        match self {
            Action::GetImages => "get_images",
            Action::GetImage => "get_image",
            Action::AddImage => "add_image",
            Action::ModifyImage => "modify_image",
            Action::DeleteImage => "delete_image",
            Action::PublicizeImage => "publicize_image",
            Action::CommunitizeImage => "communitize_image",
            Action::UploadImage => "upload_image",
            Action::DownloadImage => "download_image",
            Action::Deactivate => "deactivate",
            Action::Reactivate => "reactivate",
            Action::AddMember => "add_member",
            Action::DeleteMember => "delete_member",
            Action::GetMember => "get_member",
            Action::GetMembers => "get_members",
            Action::ModifyMember => "modify_member",
            Action::TasksApiAccess => "tasks_api_access",
            Action::GetTask => "get_task",
            Action::GetTasks => "get_tasks",
            Action::AddTask => "add_task",
            Action::CopyImage => "copy_image",
            Action::StoresInfoDetail => "stores_info_detail",
            Action::GetImageLocation => "get_image_location",
            Action::DeleteImageLocation => "delete_image_location",
            Action::SetImageLocation => "set_image_location",
            Action::AddImageLocation => "add_image_location",
            Action::FetchImageLocation => "fetch_image_location",
            Action::GetMetadefNamespace => "get_metadef_namespace",
            Action::GetMetadefNamespaces => "get_metadef_namespaces",
            Action::ModifyMetadefNamespace => "modify_metadef_namespace",
            Action::AddMetadefNamespace => "add_metadef_namespace",
            Action::DeleteMetadefNamespace => "delete_metadef_namespace",
            Action::GetMetadefObject => "get_metadef_object",
            Action::GetMetadefObjects => "get_metadef_objects",
            Action::ModifyMetadefObject => "modify_metadef_object",
            Action::AddMetadefObject => "add_metadef_object",
            Action::DeleteMetadefObject => "delete_metadef_object",
            Action::ListMetadefResourceTypes => "list_metadef_resource_types",
            Action::GetMetadefResourceType => "get_metadef_resource_type",
            Action::AddMetadefResourceTypeAssociation => "add_metadef_resource_type_association",
            Action::RemoveMetadefResourceTypeAssociation => {
                "remove_metadef_resource_type_association"
            }
            Action::GetMetadefProperty => "get_metadef_property",
            Action::GetMetadefProperties => "get_metadef_properties",
            Action::ModifyMetadefProperty => "modify_metadef_property",
            Action::AddMetadefProperty => "add_metadef_property",
            Action::RemoveMetadefProperty => "remove_metadef_property",
            Action::GetMetadefTag => "get_metadef_tag",
            Action::GetMetadefTags => "get_metadef_tags",
            Action::ModifyMetadefTag => "modify_metadef_tag",
            Action::AddMetadefTag => "add_metadef_tag",
            Action::AddMetadefTags => "add_metadef_tags",
            Action::DeleteMetadefTag => "delete_metadef_tag",
            Action::DeleteMetadefTags => "delete_metadef_tags",
            Action::CacheImage => "cache_image",
            Action::CacheList => "cache_list",
            Action::CacheDelete => "cache_delete",
            Action::CacheClean => "cache_clean",
            Action::CachePrune => "cache_prune",
            Action::ListCachedNodes => "list_cached_nodes",
        }
    }
}

const ADMIN: &str = "rule:context_is_admin";
const PROJECT_MEMBER: &str = "role:member and project_id:%(project_id)s";
const PROJECT_READER: &str = "role:reader and project_id:%(project_id)s";
const IMAGE_ACCESS: &str = "(project_id:%(project_id)s or project_id:%(member_id)s \
     or 'community':%(visibility)s or 'public':%(visibility)s or 'shared':%(visibility)s)";

/// Glance's default rules, by name.
fn defaults() -> Vec<(&'static str, String)> {
    let admin_or_member = format!("{ADMIN} or ({PROJECT_MEMBER})");
    let admin_or_reader = format!("{ADMIN} or ({PROJECT_READER})");
    let get_image = format!("{ADMIN} or (role:reader and {IMAGE_ACCESS})");
    let download = format!("{ADMIN} or (role:member and {IMAGE_ACCESS})");
    let get_member = format!(
        "{ADMIN} or role:reader and (project_id:%(project_id)s or project_id:%(member_id)s)"
    );
    let mut rules = vec![
        ("default", String::new()),
        ("context_is_admin", "role:admin".to_owned()),
        ("service_api", "role:service or role:admin".to_owned()),
        (
            "add_image",
            format!("{ADMIN} or ({PROJECT_MEMBER} and project_id:%(owner)s)"),
        ),
        ("get_images", admin_or_reader.clone()),
        ("get_image", get_image),
        ("download_image", download.clone()),
        ("download_from_store", download),
        ("publicize_image", ADMIN.to_owned()),
        ("get_image_location", admin_or_reader),
        ("delete_image_location", ADMIN.to_owned()),
        (
            "add_image_location",
            format!("rule:service_api or ({PROJECT_MEMBER} and project_id:%(owner)s)"),
        ),
        ("fetch_image_location", "rule:service_api".to_owned()),
        ("get_member", get_member.clone()),
        ("get_members", get_member),
        (
            "modify_member",
            format!("{ADMIN} or (role:member and project_id:%(member_id)s)"),
        ),
        ("stores_info_detail", format!("{ADMIN} or rule:service_api")),
        ("tasks_api_access", ADMIN.to_owned()),
    ];
    for name in [
        "delete_image",
        "modify_image",
        "communitize_image",
        "upload_image",
        "set_image_location",
        "add_member",
        "delete_member",
        "deactivate",
        "reactivate",
    ] {
        rules.push((name, admin_or_member.clone()));
    }
    for name in [
        "manage_image_cache",
        "copy_image",
        "list_cached_nodes",
        "cache_image",
        "cache_list",
        "cache_delete",
        "cache_clean",
        "cache_prune",
    ] {
        rules.push((name, ADMIN.to_owned()));
    }
    for name in ["get_task", "get_tasks", "add_task", "modify_task"] {
        rules.push((name, "rule:default".to_owned()));
    }
    // Metadefs: reads for admins and readers of the owning project or of public namespaces,
    // writes for admins (`metadef_admin`).
    rules.push(("metadef_default", String::new()));
    rules.push(("metadef_admin", ADMIN.to_owned()));
    rules.push((
        "get_metadef_namespaces",
        format!("{ADMIN} or ({PROJECT_READER})"),
    ));
    let get_namespace = format!(
        "{ADMIN} or (role:reader and (project_id:%(project_id)s or 'public':%(visibility)s))"
    );
    for name in [
        "get_metadef_namespace",
        "get_metadef_object",
        "get_metadef_objects",
        "list_metadef_resource_types",
        "get_metadef_resource_type",
        "get_metadef_property",
        "get_metadef_properties",
        "get_metadef_tag",
        "get_metadef_tags",
    ] {
        rules.push((name, get_namespace.clone()));
    }
    for name in [
        "modify_metadef_namespace",
        "add_metadef_namespace",
        "delete_metadef_namespace",
        "modify_metadef_object",
        "add_metadef_object",
        "delete_metadef_object",
        "add_metadef_resource_type_association",
        "remove_metadef_resource_type_association",
        "modify_metadef_property",
        "add_metadef_property",
        "remove_metadef_property",
        "modify_metadef_tag",
        "add_metadef_tag",
        "add_metadef_tags",
        "delete_metadef_tag",
        "delete_metadef_tags",
    ] {
        rules.push((name, "rule:metadef_admin".to_owned()));
    }
    rules
}

/// A rule of a policy file that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy rule '{rule}' is invalid: {reason}")]
pub struct PolicyError {
    pub rule: String,
    pub reason: String,
}

/// What an action is applied to: an image (existing or proposed), or nothing in particular.
#[derive(Debug, Clone, Copy, Default)]
pub struct Target<'a> {
    /// The owning project (`project_id` and `owner` in rules).
    pub owner: Option<&'a str>,
    pub visibility: Option<Visibility>,
    /// The caller's project when it reaches a shared image it does not own.
    pub member_id: Option<&'a str>,
    /// The image itself, for rules on its other attributes and properties.
    pub image: Option<&'a Image>,
}

impl<'a> Target<'a> {
    /// An existing (or proposed) image as `ctx` sees it.
    pub fn image(img: &'a Image, ctx: &'a RequestContext) -> Self {
        let member_id = match img.visibility {
            Visibility::Shared if !ctx.owns(img.owner.as_deref()) => ctx.project_id.as_deref(),
            _ => None,
        };
        Target {
            owner: img.owner.as_deref(),
            visibility: Some(img.visibility),
            member_id,
            image: Some(img),
        }
    }

    /// A metadef namespace: its owner and visibility.
    pub fn namespace(ns: &'a Namespace) -> Self {
        Target {
            owner: ns.owner.as_deref(),
            visibility: Some(ns.visibility.as_image_visibility()),
            member_id: None,
            image: None,
        }
    }

    /// A collection of the caller's project (`GET /v2/images`).
    pub fn project(ctx: &'a RequestContext) -> Self {
        Target {
            owner: ctx.project_id.as_deref(),
            visibility: Some(Visibility::Private),
            ..Target::default()
        }
    }

    fn get(&self, key: &str) -> Option<String> {
        let none = || "None".to_owned();
        match key {
            "project_id" | "owner" => return Some(self.owner.map_or_else(none, str::to_owned)),
            "member_id" | "member" => return Some(self.member_id.map_or_else(none, str::to_owned)),
            "visibility" => return self.visibility.map(|v| v.as_str().to_owned()),
            _ => {}
        }
        let img = self.image?;
        let opt = |v: &Option<String>| Some(v.clone().unwrap_or_else(none));
        match key {
            "id" | "image_id" => Some(img.id.as_str().to_owned()),
            "name" => opt(&img.name),
            "status" => Some(img.status.as_str().to_owned()),
            "disk_format" => opt(&img.disk_format),
            "container_format" => opt(&img.container_format),
            "protected" => Some(py_bool(img.protected)),
            "os_hidden" => Some(py_bool(img.os_hidden)),
            _ => img.properties.get(key).cloned(),
        }
    }
}

fn py_bool(b: bool) -> String {
    if b { "True" } else { "False" }.to_owned()
}

/// The policy engine: named rules, Glance's defaults unless overridden. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Arc<HashMap<String, Check>>,
    protections: Option<Arc<PropertyProtections>>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy::with_overrides(std::iter::empty()).unwrap_or_else(|e| panic!("built-in {e}"))
    }
}

struct Eval<'a> {
    rules: &'a HashMap<String, Check>,
    ctx: &'a RequestContext,
    target: &'a Target<'a>,
}

impl Env for Eval<'_> {
    fn cred(&self, key: &str) -> Option<Cred<'_>> {
        fn s(v: &Option<String>) -> Option<Cred<'_>> {
            v.as_deref().map(Cred::Str)
        }
        let c = self.ctx;
        match key {
            "roles" => Some(Cred::List(&c.roles)),
            "project_id" | "tenant" | "owner" => s(&c.project_id),
            "user_id" | "user" => s(&c.user_id),
            "user_domain_id" => s(&c.user_domain_id),
            "project_domain_id" => s(&c.project_domain_id),
            "system_scope" => s(&c.system_scope),
            "is_admin" => Some(Cred::Bool(c.is_admin())),
            "is_admin_project" => Some(Cred::Bool(true)),
            _ => None,
        }
    }

    fn target(&self, key: &str) -> Option<String> {
        self.target.get(key)
    }

    fn rule(&self, name: &str) -> Option<&Check> {
        self.rules.get(name)
    }
}

impl Policy {
    /// Glance's defaults with `overrides` (rule name → oslo.policy rule) applied.
    pub fn with_overrides(
        overrides: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Policy, PolicyError> {
        let parse = |name: &str, rule: &str| {
            check::parse(rule).map_err(|e| PolicyError {
                rule: name.to_owned(),
                reason: e.0,
            })
        };
        let mut rules = HashMap::new();
        for (name, rule) in defaults() {
            rules.insert(name.to_owned(), parse(name, &rule)?);
        }
        for (name, rule) in overrides {
            let check = parse(&name, &rule)?;
            rules.insert(name, check);
        }
        Ok(Policy {
            rules: Arc::new(rules),
            protections: None,
        })
    }

    /// Adds property protections.
    pub fn with_protections(mut self, p: PropertyProtections) -> Self {
        self.protections = Some(Arc::new(p));
        self
    }

    /// Whether `ctx` may apply `op` to the custom property `name` (always, without property
    /// protections).
    pub fn property_allowed(&self, name: &str, op: PropOp, ctx: &RequestContext) -> bool {
        self.protections
            .as_ref()
            .is_none_or(|p| p.allows(name, op, ctx, self))
    }

    /// The image as `ctx` may see it: without the custom properties it may not read.
    pub fn redact<'i>(&self, img: &'i Image, ctx: &RequestContext) -> Cow<'i, Image> {
        let hidden = |k: &String| !self.property_allowed(k, PropOp::Read, ctx);
        if self.protections.is_none() || !img.properties.keys().any(hidden) {
            return Cow::Borrowed(img);
        }
        let mut img = img.clone();
        img.properties.retain(|k, _| !hidden(k));
        Cow::Owned(img)
    }

    /// Whether `ctx` passes the rule `name` on `target` (an unknown rule falls back to
    /// `default`, as in oslo.policy). Every Glance rule is project-scoped: a system-scoped
    /// caller passes none of them.
    pub fn check(&self, name: &str, ctx: &RequestContext, target: &Target<'_>) -> bool {
        if ctx.system_scope.is_some() {
            return false;
        }
        let Some(rule) = self.rules.get(name).or_else(|| self.rules.get("default")) else {
            return false;
        };
        rule.eval(&Eval {
            rules: &self.rules,
            ctx,
            target,
        })
    }

    /// Whether `ctx` passes the rule `name`, which must exist (as oslo.policy's `rule:NAME`
    /// check: a missing rule is false, not `default`).
    pub fn check_defined(&self, name: &str, ctx: &RequestContext, target: &Target<'_>) -> bool {
        self.rules.contains_key(name) && self.check(name, ctx, target)
    }

    /// Whether the rule `name` is defined.
    pub fn defines(&self, name: &str) -> bool {
        self.rules.contains_key(name)
    }

    /// Whether `action` passes for `ctx` on `target`.
    pub fn allows(&self, action: Action, ctx: &RequestContext, target: &Target<'_>) -> bool {
        self.check(action.name(), ctx, target)
    }

    /// Checks `action`; a refusal is a 403 naming the action.
    pub fn enforce(
        &self,
        action: Action,
        ctx: &RequestContext,
        target: &Target<'_>,
    ) -> Result<(), DomainError> {
        if self.allows(action, ctx, target) {
            Ok(())
        } else {
            Err(forbidden(action))
        }
    }

    /// Checks `action` on an existing image: a refusal is a 404 when the caller may not even
    /// `get_image` it, else a 403 (Glance's rule, so that policy never reveals an image).
    pub fn enforce_on_image(
        &self,
        action: Action,
        ctx: &RequestContext,
        img: &Image,
    ) -> Result<(), DomainError> {
        let target = Target::image(img, ctx);
        if self.allows(action, ctx, &target) {
            return Ok(());
        }
        if action == Action::GetImage || !self.allows(Action::GetImage, ctx, &target) {
            return Err(DomainError::image_not_found(img.id.as_str()));
        }
        Err(forbidden(action))
    }

    /// Checks `action` on a metadef namespace: a refusal is a 404 when the caller may not
    /// even `get_metadef_namespace` it, else a 403 (as for images).
    pub fn enforce_on_namespace(
        &self,
        action: Action,
        ctx: &RequestContext,
        ns: &Namespace,
    ) -> Result<(), DomainError> {
        let target = Target::namespace(ns);
        if self.allows(action, ctx, &target) {
            return Ok(());
        }
        if action == Action::GetMetadefNamespace
            || !self.allows(Action::GetMetadefNamespace, ctx, &target)
        {
            return Err(DomainError::NotFound(
                "The resource could not be found.".to_owned(),
            ));
        }
        Err(forbidden(action))
    }

    /// Glance's `context_is_admin`.
    pub fn is_admin(&self, ctx: &RequestContext) -> bool {
        self.check("context_is_admin", ctx, &Target::default())
    }
}

fn forbidden(action: Action) -> DomainError {
    DomainError::Forbidden(format!(
        "You are not authorized to complete {} action.",
        action.name()
    ))
}

/// Whether `ctx` may see `img` at all (`is_member` tells whether the caller's project is a
/// member of a shared image). Admins see everything; an image without owner is everyone's.
pub fn visible(ctx: &RequestContext, img: &Image, is_member: bool) -> bool {
    if ctx.is_admin() || img.owner.is_none() || ctx.owns(img.owner.as_deref()) {
        return true;
    }
    match img.visibility {
        Visibility::Public | Visibility::Community => true,
        Visibility::Shared => is_member,
        Visibility::Private => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ImageId;

    fn ctx(project: &str, roles: &[&str]) -> RequestContext {
        RequestContext::new(
            None,
            Some(project.into()),
            roles.iter().map(|r| r.to_string()),
            "req-x".into(),
        )
        .with_implied_roles()
    }

    fn image(owner: &str, vis: Visibility) -> Image {
        let mut img = Image::new(ImageId::generate(), Some(owner.into()), 0);
        img.visibility = vis;
        img
    }

    #[test]
    fn glance_defaults() {
        let p = Policy::default();
        let img = image("p1", Visibility::Private);
        let t = |c: &RequestContext, a: Action| p.allows(a, c, &Target::image(&img, c));
        let (member, reader) = (ctx("p1", &["member"]), ctx("p1", &["reader"]));
        let (other, admin) = (ctx("p2", &["member"]), ctx("p2", &["admin"]));
        assert!(t(&member, Action::ModifyImage));
        assert!(t(&member, Action::Deactivate));
        assert!(!t(&reader, Action::ModifyImage));
        assert!(t(&reader, Action::GetImage));
        assert!(!t(&reader, Action::DownloadImage));
        assert!(!t(&other, Action::ModifyImage));
        assert!(!t(&other, Action::GetImage));
        assert!(t(&admin, Action::ModifyImage));
        assert!(!t(&member, Action::PublicizeImage));
        assert!(t(&member, Action::CommunitizeImage));
        assert!(!t(&member, Action::ModifyMember));
        // A project the image is shared with may read and download, and answer its membership.
        let shared = image("p1", Visibility::Shared);
        let m = |a: Action| p.allows(a, &other, &Target::image(&shared, &other));
        assert!(m(Action::GetImage) && m(Action::DownloadImage) && m(Action::ModifyMember));
        assert!(m(Action::GetMember) && !m(Action::AddMember) && !m(Action::DeleteMember));
        // A system-scoped admin passes no project-scoped rule.
        let mut system = ctx("p1", &["admin"]);
        system.system_scope = Some("all".into());
        assert!(!p.allows(Action::GetImages, &system, &Target::project(&system)));
    }

    #[test]
    fn refusals_hide_images_the_caller_cannot_get() {
        let p = Policy::default();
        let img = image("p1", Visibility::Public);
        let e = p
            .enforce_on_image(Action::DeleteImage, &ctx("p2", &["reader"]), &img)
            .unwrap_err();
        assert!(matches!(e, DomainError::Forbidden(_)), "{e:?}");
        let e = p
            .enforce_on_image(Action::DeleteImage, &ctx("p2", &["nobody"]), &img)
            .unwrap_err();
        assert!(matches!(e, DomainError::NotFound(_)), "{e:?}");
    }

    #[test]
    fn overrides_replace_rules_and_bad_ones_are_named() {
        let p = Policy::with_overrides([
            ("publicize_image".to_string(), "role:member".to_string()),
            ("delete_image".to_string(), "!".to_string()),
        ])
        .unwrap();
        let c = ctx("p1", &["member"]);
        let img = image("p1", Visibility::Private);
        assert!(p.allows(Action::PublicizeImage, &c, &Target::image(&img, &c)));
        assert!(!p.allows(
            Action::DeleteImage,
            &ctx("p1", &["admin"]),
            &Target::image(&img, &c)
        ));
        let e = Policy::with_overrides([("get_image".to_string(), "role:a or".to_string())])
            .unwrap_err();
        assert_eq!(e.rule, "get_image");
    }

    #[test]
    fn visibility_matrix() {
        let mut img = image("p1", Visibility::Private);
        let other = ctx("p2", &["member"]);
        for (vis, seen) in [
            (Visibility::Public, true),
            (Visibility::Community, true),
            (Visibility::Shared, false),
            (Visibility::Private, false),
        ] {
            img.visibility = vis;
            assert_eq!(visible(&other, &img, false), seen, "{vis:?}");
            assert!(visible(&ctx("p1", &["reader"]), &img, false));
        }
        img.visibility = Visibility::Shared;
        assert!(visible(&other, &img, true));
    }
}
