//! One policy check per API action.
//!
//! The rules are Glance's secure-RBAC defaults for the image actions: `admin` may do everything;
//! a project `reader` may look, a project `member` may change what its project owns. (Keystone
//! expands implied roles, so `admin` and `member` tokens also carry `reader`; trusted-header
//! callers may not send them all, so the implication is applied here too.)
//!
//! Visibility is a separate question ([`visible`]): an image a caller cannot see is a 404, never
//! a 403, whatever the policy says.

use crate::{DomainError, Image, RequestContext, Visibility};

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
    GetTasks,
    StoresInfoDetail,
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
            Action::GetTasks => "get_tasks",
            Action::StoresInfoDetail => "stores_info_detail",
        }
    }
}

/// What an action is applied to: the owner and visibility of the image (or of the image to be).
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub owner: Option<&'a str>,
    pub visibility: Visibility,
}

impl<'a> From<&'a Image> for Target<'a> {
    fn from(img: &'a Image) -> Self {
        Target {
            owner: img.owner.as_deref(),
            visibility: img.visibility,
        }
    }
}

/// The policy engine. Today it holds Glance's defaults; overrides plug in here.
#[derive(Debug, Clone, Default)]
pub struct Policy;

impl Policy {
    /// Checks `action` for `ctx` on `target`; a refusal is a 403 naming the action.
    pub fn enforce(
        &self,
        action: Action,
        ctx: &RequestContext,
        target: Option<Target<'_>>,
    ) -> Result<(), DomainError> {
        if self.allows(action, ctx, target) {
            Ok(())
        } else {
            Err(DomainError::Forbidden(format!(
                "You are not authorized to complete {} action.",
                action.name()
            )))
        }
    }

    /// Whether the default rule for `action` passes.
    pub fn allows(&self, action: Action, ctx: &RequestContext, target: Option<Target<'_>>) -> bool {
        if ctx.is_admin() {
            return true;
        }
        let member = ctx.has_role("member");
        let reader = member || ctx.has_role("reader");
        let owner_member = member && target.is_some_and(|t| ctx.owns(t.owner));
        match action {
            Action::GetImages | Action::GetImage => reader,
            Action::AddImage => {
                member && target.is_none_or(|t| t.owner.is_none() || ctx.owns(t.owner))
            }
            Action::ModifyImage
            | Action::DeleteImage
            | Action::UploadImage
            | Action::CommunitizeImage
            | Action::Deactivate
            | Action::Reactivate => owner_member,
            Action::DownloadImage => member,
            Action::PublicizeImage | Action::GetTasks | Action::StoresInfoDetail => false,
        }
    }
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
    }

    #[test]
    fn owner_member_may_modify_reader_may_not() {
        let mut img = Image::new(ImageId::generate(), Some("p1".into()), 0);
        img.visibility = Visibility::Private;
        let p = Policy;
        assert!(p.allows(
            Action::ModifyImage,
            &ctx("p1", &["member"]),
            Some((&img).into())
        ));
        assert!(!p.allows(
            Action::ModifyImage,
            &ctx("p1", &["reader"]),
            Some((&img).into())
        ));
        assert!(!p.allows(
            Action::ModifyImage,
            &ctx("p2", &["member"]),
            Some((&img).into())
        ));
        assert!(p.allows(
            Action::ModifyImage,
            &ctx("p2", &["admin"]),
            Some((&img).into())
        ));
        assert!(!p.allows(Action::PublicizeImage, &ctx("p1", &["member"]), None));
    }

    #[test]
    fn visibility_matrix() {
        let mut img = Image::new(ImageId::generate(), Some("p1".into()), 0);
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
