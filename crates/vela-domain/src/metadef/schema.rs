//! The metadef schema documents (`/v2/schemas/metadefs/*`, as Glance 33 serves them) and a
//! validator for request bodies against them.
//!
//! The validator covers the part of JSON Schema draft 4 these documents use: `type`,
//! `properties`, `required`, `additionalProperties`, `items`, `enum`, `maxLength`, `minimum`,
//! `maximum`, `uniqueItems`, `allOf` and local `$ref`s (`#/definitions/…`). `format` is not
//! checked, as Glance does not check it either. A full JSON Schema crate would bring far more
//! than these fixed documents need.

use std::sync::OnceLock;

use serde_json::{Map, Value};

/// The schema documents by name, in the order Glance lists them.
pub const NAMES: [&str; 10] = [
    "namespace",
    "namespaces",
    "resource_type",
    "resource_types",
    "property",
    "properties",
    "object",
    "objects",
    "tag",
    "tags",
];

fn text(name: &str) -> Option<&'static str> {
    Some(match name {
        "namespace" => include_str!("../../schemas/metadefs/namespace.json"),
        "namespaces" => include_str!("../../schemas/metadefs/namespaces.json"),
        "resource_type" => include_str!("../../schemas/metadefs/resource_type.json"),
        "resource_types" => include_str!("../../schemas/metadefs/resource_types.json"),
        "property" => include_str!("../../schemas/metadefs/property.json"),
        "properties" => include_str!("../../schemas/metadefs/properties.json"),
        "object" => include_str!("../../schemas/metadefs/object.json"),
        "objects" => include_str!("../../schemas/metadefs/objects.json"),
        "tag" => include_str!("../../schemas/metadefs/tag.json"),
        "tags" => include_str!("../../schemas/metadefs/tags.json"),
        _ => return None,
    })
}

/// The parsed document `name` (e.g. `namespace`), or None for an unknown name.
pub fn document(name: &str) -> Option<&'static Value> {
    static DOCS: OnceLock<Vec<Value>> = OnceLock::new();
    let docs = DOCS.get_or_init(|| {
        NAMES
            .iter()
            .map(|n| text(n).and_then(|t| serde_json::from_str(t).ok()))
            .map(|v| v.unwrap_or(Value::Null))
            .collect()
    });
    let i = NAMES.iter().position(|n| *n == name)?;
    Some(&docs[i])
}

/// Checks `value` against the document `name`; the error is the first violation found, worded
/// like Python's jsonschema.
pub fn validate(name: &str, value: &Value) -> Result<(), String> {
    let doc = document(name).ok_or_else(|| format!("unknown schema '{name}'"))?;
    check(doc, doc, value, 0)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn has_type(v: &Value, ty: &str) -> bool {
    let actual = type_name(v);
    actual == ty || (ty == "number" && actual == "integer")
}

/// Python's repr of a JSON value, as jsonschema's messages show it.
pub fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Array(a) => format!("[{}]", a.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("'{k}': {}", py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A violation, worded as jsonschema words it: the message, then which keyword failed.
fn fail_text(keyword: &str, message: String) -> String {
    format!("{message}\n\nFailed validating '{keyword}' in schema.")
}

fn fail(keyword: &str, message: String) -> Result<(), String> {
    Err(fail_text(keyword, message))
}

fn resolve<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let path = reference.strip_prefix("#/")?;
    path.split('/').try_fold(root, |v, part| v.get(part))
}

/// Nesting deeper than this is refused (the documents are shallow; bodies may not be).
const MAX_DEPTH: usize = 32;

fn check(root: &Value, schema: &Value, value: &Value, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return fail("depth", "the document is nested too deeply".into());
    }
    let Some(s) = schema.as_object() else {
        return Ok(());
    };
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let target = resolve(root, r)
            .ok_or_else(|| fail_text("$ref", format!("unresolvable reference {r}")))?;
        return check(root, target, value, depth + 1);
    }
    if let Some(all) = s.get("allOf").and_then(Value::as_array) {
        for sub in all {
            check(root, sub, value, depth + 1)?;
        }
    }
    if let Some(ty) = s.get("type") {
        let ok = match ty {
            Value::String(t) => has_type(value, t),
            Value::Array(ts) => ts
                .iter()
                .filter_map(Value::as_str)
                .any(|t| has_type(value, t)),
            _ => true,
        };
        if !ok {
            return fail(
                "type",
                format!("{} is not of type {}", py_repr(value), py_repr(ty)),
            );
        }
    }
    if let Some(options) = s.get("enum").and_then(Value::as_array) {
        if !options.contains(value) {
            return fail(
                "enum",
                format!(
                    "{} is not one of {}",
                    py_repr(value),
                    py_repr(&Value::Array(options.clone()))
                ),
            );
        }
    }
    match value {
        Value::String(text) => check_string(s, value, text),
        Value::Number(n) => check_number(s, value, n.as_f64().unwrap_or(0.0)),
        Value::Array(items) => check_array(root, s, value, items, depth),
        Value::Object(m) => check_object(root, s, m, depth),
        _ => Ok(()),
    }
}

fn check_string(s: &Map<String, Value>, value: &Value, text: &str) -> Result<(), String> {
    if let Some(max) = s.get("maxLength").and_then(Value::as_u64) {
        if text.chars().count() as u64 > max {
            return fail("maxLength", format!("{} is too long", py_repr(value)));
        }
    }
    Ok(())
}

fn check_number(s: &Map<String, Value>, value: &Value, n: f64) -> Result<(), String> {
    if let Some(min) = s.get("minimum").and_then(Value::as_f64) {
        if n < min {
            return fail(
                "minimum",
                format!(
                    "{} is less than the minimum of {}",
                    py_repr(value),
                    s["minimum"]
                ),
            );
        }
    }
    if let Some(max) = s.get("maximum").and_then(Value::as_f64) {
        if n > max {
            return fail(
                "maximum",
                format!(
                    "{} is greater than the maximum of {}",
                    py_repr(value),
                    s["maximum"]
                ),
            );
        }
    }
    Ok(())
}

fn check_array(
    root: &Value,
    s: &Map<String, Value>,
    value: &Value,
    items: &[Value],
    depth: usize,
) -> Result<(), String> {
    if let Some(item_schema) = s.get("items") {
        for item in items {
            check(root, item_schema, item, depth + 1)?;
        }
    }
    if s.get("uniqueItems") == Some(&Value::Bool(true)) {
        for (i, a) in items.iter().enumerate() {
            if items[..i].contains(a) {
                return fail(
                    "uniqueItems",
                    format!("{} has non-unique elements", py_repr(value)),
                );
            }
        }
    }
    Ok(())
}

fn check_object(
    root: &Value,
    s: &Map<String, Value>,
    m: &Map<String, Value>,
    depth: usize,
) -> Result<(), String> {
    if let Some(required) = s.get("required").and_then(Value::as_array) {
        for r in required.iter().filter_map(Value::as_str) {
            if !m.contains_key(r) {
                return fail("required", format!("'{r}' is a required property"));
            }
        }
    }
    let props = s.get("properties").and_then(Value::as_object);
    let mut extra = Vec::new();
    for (k, v) in m {
        match props.and_then(|p| p.get(k)) {
            Some(sub) => check(root, sub, v, depth + 1)?,
            None => match s.get("additionalProperties") {
                Some(Value::Bool(false)) => extra.push(k.as_str()),
                Some(sub @ Value::Object(_)) => check(root, sub, v, depth + 1)?,
                _ => {}
            },
        }
    }
    if !extra.is_empty() {
        let (list, verb) = if extra.len() == 1 {
            (format!("'{}'", extra[0]), "was")
        } else {
            let quoted: Vec<String> = extra.iter().map(|k| format!("'{k}'")).collect();
            (quoted.join(", "), "were")
        };
        return fail(
            "additionalProperties",
            format!("Additional properties are not allowed ({list} {verb} unexpected)"),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn first_line(r: Result<(), String>) -> String {
        r.unwrap_err().lines().next().unwrap_or_default().to_owned()
    }

    #[test]
    fn every_document_parses() {
        for n in NAMES {
            assert!(document(n).is_some_and(Value::is_object), "{n}");
        }
        assert!(document("nope").is_none());
    }

    #[test]
    fn namespace_bodies() {
        assert!(validate("namespace", &json!({"namespace": "a"})).is_ok());
        assert_eq!(
            first_line(validate("namespace", &json!({}))),
            "'namespace' is a required property"
        );
        assert_eq!(
            first_line(validate("namespace", &json!({"namespace": "a", "x": 1}))),
            "Additional properties are not allowed ('x' was unexpected)"
        );
        assert_eq!(
            first_line(validate(
                "namespace",
                &json!({"namespace": "a", "visibility": "x"})
            )),
            "'x' is not one of ['public', 'private']"
        );
        let long = "n".repeat(81);
        assert!(validate("namespace", &json!({ "namespace": long }))
            .unwrap_err()
            .contains("is too long\n"));
        assert_eq!(
            first_line(validate("namespace", &json!({"namespace": 5}))),
            "5 is not of type 'string'"
        );
        // Properties inside a namespace go through the shared definition.
        let bad = json!({"namespace": "a", "properties": {"p": {"title": "P", "type": "bogus"}}});
        assert!(validate("namespace", &bad)
            .unwrap_err()
            .contains("is not one of"));
        let bad = json!({"namespace": "a", "properties": {"p": {"type": "string"}}});
        assert_eq!(
            first_line(validate("namespace", &bad)),
            "'title' is a required property"
        );
        let bad = json!({"namespace": "a", "properties": {"p": {"title": "P", "type": "integer", "minLength": -1}}});
        assert!(validate("namespace", &bad)
            .unwrap_err()
            .contains("less than the minimum"));
    }

    #[test]
    fn deep_bodies_are_refused() {
        let mut v = json!("x");
        for _ in 0..100 {
            v = json!({ "default": v });
        }
        // `default` accepts anything, so depth comes only from the schema walk: no error.
        let body = json!({"name": "p", "title": "t", "type": "string", "default": v});
        assert!(validate("property", &body).is_ok());
    }
}
