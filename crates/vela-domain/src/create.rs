//! `POST /v2/images`: turning a request body into a new `queued` image.

use serde_json::Value;

use crate::policy::protections::PropOp;
use crate::policy::{Action, Policy, Target};
use crate::rules::{classify, read_only, reserved, KeyKind};
use crate::{DomainError, Image, ImageId, ImageRules, Micros, RequestContext, Visibility};

/// Builds the image a create request asks for, or refuses it as Glance would.
pub fn new_image(
    body: &Value,
    ctx: &RequestContext,
    rules: &ImageRules,
    policy: &Policy,
    now: Micros,
) -> Result<Image, DomainError> {
    let obj = body
        .as_object()
        .ok_or_else(|| DomainError::BadRequest("Request body must be a JSON object".into()))?;

    let id = match obj.get("id") {
        None => ImageId::generate(),
        Some(Value::String(s)) => ImageId::parse(s).ok_or_else(|| {
            DomainError::schema(format!(
                "'{s}' does not match '^([0-9a-fA-F]){{8}}-([0-9a-fA-F]){{4}}-([0-9a-fA-F]){{4}}-([0-9a-fA-F]){{4}}-([0-9a-fA-F]){{12}}$'"
            ))
        })?,
        Some(other) => {
            return Err(DomainError::schema(format!("{other} is not of type 'string'")))
        }
    };

    let mut img = Image::new(id, ctx.project_id.clone(), now);
    for (key, value) in obj {
        match classify(key) {
            KeyKind::ReadOnly if key == "id" => {}
            KeyKind::ReadOnly => return Err(read_only(key)),
            KeyKind::Reserved => return Err(reserved(key)),
            KeyKind::Base => rules.set_base(&mut img, key, value)?,
            KeyKind::Custom if !policy.property_allowed(key, PropOp::Create, ctx) => {
                return Err(reserved(key))
            }
            KeyKind::Custom => rules.set_custom(&mut img, key, value)?,
        }
    }

    let target = Target::image(&img, ctx);
    if !policy.allows(Action::AddImage, ctx, &target) {
        if img.owner != ctx.project_id {
            return Err(DomainError::Forbidden(format!(
                "You are not permitted to create images owned by '{}'",
                img.owner.as_deref().unwrap_or("None")
            )));
        }
        policy.enforce(Action::AddImage, ctx, &target)?;
    }
    check_visibility_change(&img, ctx, policy)?;
    rules.check_quotas(&img)?;
    Ok(img)
}

/// `public` needs `publicize_image`, `community` needs `communitize_image`.
pub fn check_visibility_change(
    img: &Image,
    ctx: &RequestContext,
    policy: &Policy,
) -> Result<(), DomainError> {
    let action = match img.visibility {
        Visibility::Public => Action::PublicizeImage,
        Visibility::Community => Action::CommunitizeImage,
        _ => return Ok(()),
    };
    policy.enforce(action, ctx, &Target::image(img, ctx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn admin() -> RequestContext {
        RequestContext::new(None, None, ["admin".to_string()], "req".into())
    }

    fn member(p: &str) -> RequestContext {
        RequestContext::new(None, Some(p.into()), ["member".to_string()], "req".into())
    }

    fn create(body: Value, ctx: &RequestContext) -> Result<Image, DomainError> {
        new_image(&body, ctx, &ImageRules::default(), &Policy::default(), 0)
    }

    #[test]
    fn defaults_and_custom_properties() {
        let img = create(json!({"name": "x", "os_distro": "cirros"}), &admin()).unwrap();
        assert_eq!(img.visibility, Visibility::Shared);
        assert_eq!(img.owner, None);
        assert_eq!(img.properties["os_distro"], "cirros");
        let img = create(json!({}), &member("p1")).unwrap();
        assert_eq!(img.owner.as_deref(), Some("p1"));
    }

    #[test]
    fn refusals() {
        let a = admin();
        for key in [
            "status",
            "size",
            "checksum",
            "self",
            "file",
            "schema",
            "created_at",
        ] {
            assert!(
                matches!(
                    create(json!({key: "x"}), &a),
                    Err(DomainError::Forbidden(_))
                ),
                "{key}"
            );
        }
        for key in ["locations", "deleted", "os_glance_x"] {
            assert!(
                matches!(
                    create(json!({key: "x"}), &a),
                    Err(DomainError::Forbidden(_))
                ),
                "{key}"
            );
        }
        assert!(matches!(
            create(json!({"id": "nope"}), &a),
            Err(DomainError::BadRequest(_))
        ));
        assert!(matches!(
            create(json!([]), &a),
            Err(DomainError::BadRequest(_))
        ));
        let m = member("p1");
        assert!(matches!(
            create(json!({"visibility": "public"}), &m),
            Err(DomainError::Forbidden(_))
        ));
        assert!(matches!(
            create(json!({"owner": "p2"}), &m),
            Err(DomainError::Forbidden(_))
        ));
        assert!(create(json!({"visibility": "community"}), &m).is_ok());
    }
}
