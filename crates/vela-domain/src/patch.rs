//! `PATCH /v2/images/{id}`: the two JSON-patch dialects Glance accepts and their rules.
//!
//! A patch is parsed completely first, then applied to a copy of the image; the caller stores
//! the copy only if every operation succeeded, so a patch applies atomically or not at all.

use serde_json::Value;

use crate::create::check_visibility_change;
use crate::policy::protections::PropOp;
use crate::policy::Policy;
use crate::rules::{classify, read_only, reserved, KeyKind};
use crate::{DomainError, Image, ImageRules, ImageStatus, RequestContext};

/// Media type of the current JSON-patch dialect.
pub const MEDIA_TYPE_V21: &str = "application/openstack-images-v2.1-json-patch";
/// Media type of the older (draft-04 style) dialect, still used by the conformance tests.
pub const MEDIA_TYPE_V20: &str = "application/openstack-images-v2.0-json-patch";

/// Which dialect a patch document is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    V20,
    V21,
}

impl Dialect {
    /// The dialect for a Content-Type (parameters ignored), if supported.
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let base = ct.split(';').next().unwrap_or("").trim();
        if base.eq_ignore_ascii_case(MEDIA_TYPE_V21) {
            Some(Dialect::V21)
        } else if base.eq_ignore_ascii_case(MEDIA_TYPE_V20) {
            Some(Dialect::V20)
        } else {
            None
        }
    }
}

/// A patch operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Remove,
    Replace,
}

/// One parsed operation: its kind, the attribute it targets and the value (add/replace).
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOp {
    pub op: Op,
    pub path: Vec<String>,
    pub value: Option<Value>,
}

fn bad(msg: impl Into<String>) -> DomainError {
    DomainError::BadRequest(msg.into())
}

/// Parses a JSON pointer into unescaped, trimmed segments, with Glance's leniency: leading
/// slashes collapse (`//name` is `/name`) and `/` names the property "".
pub fn parse_pointer(pointer: &str) -> Result<Vec<String>, DomainError> {
    let rest = pointer
        .strip_prefix('/')
        .ok_or_else(|| bad(format!("Pointer `{pointer}` does not start with \"/\".")))?;
    // A slash, optional whitespace, a slash (after the first character).
    let adjacent = rest
        .split('/')
        .skip(1)
        .zip(rest.split('/').skip(2))
        .any(|(between, _)| between.trim().is_empty());
    if adjacent {
        return Err(bad(format!("Pointer `{pointer}` contains adjacent \"/\".")));
    }
    if pointer.len() > 1 && pointer.ends_with('/') {
        return Err(bad(format!("Pointer `{pointer}` end with \"/\".")));
    }
    if rest.trim() == "/" {
        return Err(bad(format!(
            "Pointer `{pointer}` does not contains valid token."
        )));
    }
    if pointer.contains('~') && !pointer.contains("~0") && !pointer.contains("~1") {
        return Err(bad(format!(
            "Pointer `{pointer}` contains \"~\" not part of a recognized escape sequence."
        )));
    }
    Ok(pointer
        .trim_start_matches('/')
        .split('/')
        .map(|seg| seg.replace("~1", "/").replace("~0", "~").trim().to_owned())
        .collect())
}

/// Parses a patch document in the given dialect.
pub fn parse(doc: &Value, dialect: Dialect) -> Result<Vec<PatchOp>, DomainError> {
    let items = doc
        .as_array()
        .ok_or_else(|| bad("Request body must be a JSON array of operation objects."))?;
    let mut ops = Vec::with_capacity(items.len());
    for item in items {
        let obj = item
            .as_object()
            .ok_or_else(|| bad("Operations must be JSON objects."))?;
        let (op, pointer) = match dialect {
            Dialect::V21 => {
                let op = match obj.get("op").and_then(Value::as_str) {
                    Some("add") => Op::Add,
                    Some("remove") => Op::Remove,
                    Some("replace") => Op::Replace,
                    Some(other) => {
                        return Err(bad(format!(
                            "Invalid operation: `{other}`. It must be one of the following: add, remove, replace."
                        )))
                    }
                    None => return Err(bad("Unable to find `op` in JSON Schema change. It must be one of the following: add, remove, replace.")),
                };
                let path = obj
                    .get("path")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("Unable to find 'path' in JSON Schema change"))?;
                (op, path)
            }
            Dialect::V20 => {
                let present: Vec<(Op, &Value)> = [
                    ("add", Op::Add),
                    ("remove", Op::Remove),
                    ("replace", Op::Replace),
                ]
                .into_iter()
                .filter_map(|(k, op)| obj.get(k).map(|v| (op, v)))
                .collect();
                let [(op, path)] = present.as_slice() else {
                    return Err(bad(
                        "Operation objects must contain exactly one member named \"add\", \"remove\", or \"replace\".",
                    ));
                };
                let path = path
                    .as_str()
                    .ok_or_else(|| bad("Unable to find 'path' in JSON Schema change"))?;
                (*op, path)
            }
        };
        let path = parse_pointer(pointer)?;
        let depth_ok = if path[0] == "locations" {
            path.len() == if op == Op::Replace { 1 } else { 2 }
        } else {
            path.len() == 1
        };
        if !depth_ok {
            return Err(bad(format!("Nested paths are not allowed: {pointer}")));
        }
        let value = match op {
            Op::Remove => None,
            Op::Add | Op::Replace => Some(
                obj.get("value")
                    .cloned()
                    .ok_or_else(|| bad("Operation object must contain a \"value\" member."))?,
            ),
        };
        ops.push(PatchOp { op, path, value });
    }
    Ok(ops)
}

/// Applies parsed operations to `img` in order. On error `img` may be half-changed: apply to a
/// copy and keep it only on success.
pub fn apply(
    img: &mut Image,
    ops: &[PatchOp],
    dialect: Dialect,
    ctx: &RequestContext,
    rules: &ImageRules,
    policy: &Policy,
) -> Result<(), DomainError> {
    for op in ops {
        apply_op(img, op, dialect, ctx, rules, policy)?;
    }
    rules.check_quotas(img)
}

/// Applies one operation (not the quotas, which hold for the whole patch). Operations on
/// `/locations` are refused here: they need the stores (see [`crate::location`]).
pub fn apply_op(
    img: &mut Image,
    op: &PatchOp,
    dialect: Dialect,
    ctx: &RequestContext,
    rules: &ImageRules,
    policy: &Policy,
) -> Result<(), DomainError> {
    apply_one(img, op, dialect, ctx, rules, policy)?;
    // Like Glance, every visibility operation is checked for its value, changed or not.
    if op.path[0] == "visibility" {
        check_visibility_change(img, ctx, policy)?;
    }
    Ok(())
}

fn apply_one(
    img: &mut Image,
    op: &PatchOp,
    dialect: Dialect,
    ctx: &RequestContext,
    rules: &ImageRules,
    policy: &Policy,
) -> Result<(), DomainError> {
    let key = op.path[0].as_str();
    match classify(key) {
        KeyKind::ReadOnly => Err(read_only(key)),
        KeyKind::Reserved if key == "locations" => Err(DomainError::Forbidden(
            "It's not allowed to update locations if locations are invisible.".into(),
        )),
        KeyKind::Reserved => Err(reserved(key)),
        KeyKind::Base => {
            let Some(value) = &op.value else {
                return Err(DomainError::Forbidden(format!(
                    "Properties {key} must not be removed."
                )));
            };
            match key {
                "owner" if !ctx.is_admin() => {
                    return Err(DomainError::Forbidden(
                        "Owner can't be updated by non admin.".into(),
                    ))
                }
                "disk_format" | "container_format"
                    if !matches!(img.status, ImageStatus::Queued | ImageStatus::Importing) =>
                {
                    return Err(DomainError::Forbidden(format!(
                        "Attribute {key} can be only replaced for a queued image."
                    )))
                }
                _ => {}
            }
            rules.set_base(img, key, value)
        }
        KeyKind::Custom => {
            // A property the caller may not read does not exist for it.
            let allowed = |o| policy.property_allowed(key, o, ctx);
            let exists = img.properties.contains_key(key) && allowed(PropOp::Read);
            let needed = match op.op {
                Op::Remove => PropOp::Delete,
                _ if exists => PropOp::Update,
                _ => PropOp::Create,
            };
            if (exists || op.op != Op::Remove) && !allowed(needed) {
                return Err(reserved(key));
            }
            match op.op {
                Op::Add if dialect == Dialect::V20 && exists => Err(DomainError::Conflict(
                    format!("Property {key} already present."),
                )),
                Op::Replace | Op::Remove if !exists => Err(DomainError::Conflict(format!(
                    "Property {key} does not exist."
                ))),
                Op::Remove => {
                    img.properties.remove(key);
                    Ok(())
                }
                Op::Add | Op::Replace => {
                    let value = op.value.as_ref().unwrap_or(&Value::Null);
                    rules.set_custom(img, key, value)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ImageId;
    use serde_json::json;

    fn admin() -> RequestContext {
        RequestContext::new(None, None, ["admin".to_string()], "req".into())
    }

    fn run(img: &mut Image, doc: Value, d: Dialect) -> Result<(), DomainError> {
        let ops = parse(&doc, d)?;
        apply(
            img,
            &ops,
            d,
            &admin(),
            &ImageRules::default(),
            &Policy::default(),
        )
    }

    #[test]
    fn pointers() {
        assert_eq!(parse_pointer("/a~1b~0c").unwrap(), vec!["a/b~c"]);
        assert_eq!(parse_pointer("//name").unwrap(), vec!["name"]);
        assert_eq!(parse_pointer("/ name ").unwrap(), vec!["name"]);
        assert_eq!(parse_pointer("/").unwrap(), vec![""]);
        assert!(parse_pointer("a").is_err());
        assert!(parse_pointer("/a//b").is_err());
        assert!(parse_pointer("/a/ /b").is_err());
        assert!(parse_pointer("/a/").is_err());
        assert!(parse_pointer("/a~2").is_err());
    }

    #[test]
    fn both_dialects() {
        let mut img = Image::new(ImageId::generate(), None, 0);
        run(&mut img, json!([{"op": "add", "path": "/color", "value": "blue"}, {"op": "replace", "path": "/name", "value": "n"}]), Dialect::V21).unwrap();
        assert_eq!(img.properties["color"], "blue");
        assert_eq!(img.name.as_deref(), Some("n"));
        run(
            &mut img,
            json!([{"replace": "/name", "value": "m"}]),
            Dialect::V20,
        )
        .unwrap();
        assert_eq!(img.name.as_deref(), Some("m"));
        assert!(matches!(
            run(
                &mut img,
                json!([{"add": "/color", "value": "x"}]),
                Dialect::V20
            ),
            Err(DomainError::Conflict(_))
        ));
        assert!(run(
            &mut img,
            json!([{"add": "/a", "remove": "/b"}]),
            Dialect::V20
        )
        .is_err());
    }

    #[test]
    fn refusals() {
        let mut img = Image::new(ImageId::generate(), None, 0);
        let err = run(
            &mut img,
            json!([{"op": "replace", "path": "/status", "value": "x"}]),
            Dialect::V21,
        )
        .unwrap_err();
        assert_eq!(
            err,
            DomainError::Forbidden("Attribute 'status' is read-only.".into())
        );
        assert!(matches!(
            run(
                &mut img,
                json!([{"op": "remove", "path": "/nope"}]),
                Dialect::V21
            ),
            Err(DomainError::Conflict(_))
        ));
        assert!(matches!(
            run(
                &mut img,
                json!([{"op": "replace", "path": "/nope", "value": "v"}]),
                Dialect::V21
            ),
            Err(DomainError::Conflict(_))
        ));
        assert!(matches!(
            run(
                &mut img,
                json!([{"op": "remove", "path": "/name"}]),
                Dialect::V21
            ),
            Err(DomainError::Forbidden(_))
        ));
        assert!(matches!(
            run(
                &mut img,
                json!([{"op": "test", "path": "/name", "value": 1}]),
                Dialect::V21
            ),
            Err(DomainError::BadRequest(_))
        ));
        assert!(matches!(
            run(
                &mut img,
                json!([{"op": "add", "path": "/tags/-", "value": "x"}]),
                Dialect::V21
            ),
            Err(DomainError::BadRequest(_))
        ));
        assert!(matches!(
            run(&mut img, json!({"op": "add"}), Dialect::V21),
            Err(DomainError::BadRequest(_))
        ));
        img.status = ImageStatus::Active;
        assert!(matches!(
            run(
                &mut img,
                json!([{"op": "replace", "path": "/disk_format", "value": "raw"}]),
                Dialect::V21
            ),
            Err(DomainError::Forbidden(_))
        ));
    }
}
