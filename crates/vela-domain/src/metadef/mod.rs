//! Metadata definitions (metadefs): a catalog of the properties that images, volumes, flavors
//! and other resources may carry, grouped in namespaces.
//!
//! A namespace holds objects (named groups of properties), properties (JSON-schema-like
//! definitions) and tags, and is associated with the resource types it applies to, each with
//! an optional property-name prefix. Request bodies and definition files share one shape,
//! Glance's, checked against the schema documents in [`schema`].

pub mod schema;

use serde_json::{Map, Value};

use crate::{DomainError, Micros, Visibility};

/// The longest name of a namespace, object, property, tag or resource type (and prefix).
pub const NAME_MAX: usize = 80;
/// The most objects, properties or tags one namespace may hold (each kind counted apart).
pub const ITEMS_MAX: usize = 2000;
/// The most resource types one namespace may be associated with.
pub const ASSOCIATIONS_MAX: usize = 100;

/// Who may see a namespace: everyone, or its owner's project (and admins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NsVisibility {
    Public,
    Private,
}

impl NsVisibility {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "public" => Some(NsVisibility::Public),
            "private" => Some(NsVisibility::Private),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NsVisibility::Public => "public",
            NsVisibility::Private => "private",
        }
    }

    /// The same word as an image visibility, for policy targets (`%(visibility)s`).
    pub fn as_image_visibility(self) -> Visibility {
        match self {
            NsVisibility::Public => Visibility::Public,
            NsVisibility::Private => Visibility::Private,
        }
    }
}

/// A stored namespace (without its contents).
#[derive(Debug, Clone, PartialEq)]
pub struct Namespace {
    /// Surrogate key; never shown.
    pub id: String,
    pub namespace: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub visibility: NsVisibility,
    pub protected: bool,
    pub owner: Option<String>,
    pub created_at: Micros,
    pub updated_at: Micros,
}

/// The settable fields of a namespace (POST and PUT bodies, definition files).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NamespaceFields {
    pub namespace: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub visibility: Option<NsVisibility>,
    pub protected: Option<bool>,
    pub owner: Option<String>,
}

/// A namespace's association with a resource type.
#[derive(Debug, Clone, PartialEq)]
pub struct Association {
    pub resource_type: String,
    pub prefix: Option<String>,
    pub properties_target: Option<String>,
    pub created_at: Micros,
    pub updated_at: Micros,
}

/// An association as requested.
#[derive(Debug, Clone, PartialEq)]
pub struct AssociationInput {
    pub resource_type: String,
    pub prefix: Option<String>,
    pub properties_target: Option<String>,
}

/// A resource type (`OS::Glance::Image`, …).
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceType {
    pub name: String,
    pub protected: bool,
    pub created_at: Micros,
    pub updated_at: Micros,
}

/// The resource types every deployment has (protected: they are never removed).
pub const STANDARD_RESOURCE_TYPES: [&str; 5] = [
    "OS::Glance::Image",
    "OS::Cinder::Volume",
    "OS::Nova::Flavor",
    "OS::Nova::Aggregate",
    "OS::Nova::Server",
];

/// What a namespace holds besides its associations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    Object,
    Property,
    Tag,
}

impl ItemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::Object => "object",
            ItemKind::Property => "property",
            ItemKind::Tag => "tag",
        }
    }

    /// The word Glance's messages use ("Metadata definition object not found …").
    pub fn title(self) -> &'static str {
        self.as_str()
    }
}

/// An object, property or tag: its name and its definition (empty for a tag).
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub name: String,
    /// Object: `description`, `required`, `properties`. Property: its schema fields.
    pub body: Map<String, Value>,
    pub created_at: Micros,
    pub updated_at: Micros,
}

/// An item as requested: name and definition.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemInput {
    pub name: String,
    pub body: Map<String, Value>,
}

/// A whole namespace: a POST body, or a definition file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NamespaceDoc {
    pub fields: NamespaceFields,
    pub associations: Vec<AssociationInput>,
    pub objects: Vec<ItemInput>,
    pub properties: Vec<ItemInput>,
    pub tags: Vec<ItemInput>,
}

/// Fields a client may not send (`Attribute 'x' is read-only.`, 403).
const READ_ONLY: [&str; 4] = ["self", "schema", "created_at", "updated_at"];

/// 403 when a body carries one of `keys`.
pub fn check_read_only(body: &Value, keys: &[&str]) -> Result<(), DomainError> {
    for k in keys {
        if body.get(k).is_some() {
            return Err(DomainError::Forbidden(format!(
                "Attribute '{k}' is read-only."
            )));
        }
    }
    Ok(())
}

/// 400 unless `body` matches the schema document `name`.
pub fn validate(name: &str, body: &Value) -> Result<(), DomainError> {
    // Every body is an object (the documents leave their top-level type open).
    let checked = if body.is_object() {
        schema::validate(name, body)
    } else {
        Err(format!("{} is not of type 'object'", schema::py_repr(body)))
    };
    checked.map_err(|reason| {
        let shown = schema::document(name)
            .and_then(|d| d.get("name"))
            .and_then(Value::as_str)
            .unwrap_or(name);
        DomainError::BadRequest(format!(
            "Provided object does not match schema '{shown}': {reason}"
        ))
    })
}

fn check_name(what: &str, name: &str) -> Result<(), DomainError> {
    if name.is_empty() {
        return Err(DomainError::BadRequest(format!(
            "The {what} name may not be empty."
        )));
    }
    if name.chars().count() > NAME_MAX {
        return Err(DomainError::BadRequest(format!(
            "The {what} name '{name}' is longer than {NAME_MAX} characters."
        )));
    }
    if name.contains('/') || name.chars().any(char::is_control) {
        return Err(DomainError::BadRequest(format!(
            "The {what} name '{name}' may not contain '/' or control characters."
        )));
    }
    Ok(())
}

fn opt_str(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

impl NamespaceFields {
    /// The fields of a validated namespace body.
    fn from_value(v: &Value) -> Result<Self, DomainError> {
        let namespace = opt_str(v, "namespace").unwrap_or_default();
        check_name("namespace", &namespace)?;
        Ok(NamespaceFields {
            namespace,
            display_name: opt_str(v, "display_name"),
            description: opt_str(v, "description"),
            visibility: v
                .get("visibility")
                .and_then(Value::as_str)
                .and_then(NsVisibility::parse),
            protected: v.get("protected").and_then(Value::as_bool),
            owner: opt_str(v, "owner"),
        })
    }

    /// A PUT body: the whole namespace record, nothing inside it.
    pub fn parse_update(body: &Value) -> Result<Self, DomainError> {
        check_read_only(body, &READ_ONLY)?;
        validate("namespace", body)?;
        Self::from_value(body)
    }
}

impl AssociationInput {
    /// A `POST …/resource_types` body.
    pub fn parse(body: &Value) -> Result<Self, DomainError> {
        check_read_only(body, &["created_at", "updated_at"])?;
        validate("resource_type", body)?;
        Self::from_value(body)
    }

    fn from_value(v: &Value) -> Result<Self, DomainError> {
        let resource_type = opt_str(v, "name").unwrap_or_default();
        check_name("resource type", &resource_type)?;
        let a = AssociationInput {
            resource_type,
            prefix: opt_str(v, "prefix"),
            properties_target: opt_str(v, "properties_target"),
        };
        for s in [&a.prefix, &a.properties_target].into_iter().flatten() {
            if s.chars().count() > NAME_MAX {
                return Err(DomainError::BadRequest(format!(
                    "'{s}' is longer than {NAME_MAX} characters."
                )));
            }
        }
        Ok(a)
    }
}

impl ItemInput {
    /// A `POST`/`PUT` body of an object, property or tag (`kind`); the name comes from the
    /// body (or, for tags, from the path: `name`).
    pub fn parse(kind: ItemKind, body: &Value) -> Result<Self, DomainError> {
        match kind {
            ItemKind::Object => check_read_only(body, &READ_ONLY)?,
            ItemKind::Property | ItemKind::Tag => {
                check_read_only(body, &["created_at", "updated_at"])?
            }
        }
        validate(kind.as_str(), body)?;
        if kind == ItemKind::Object {
            // Each property of an object is also a property document (its name is the key).
            if let Some(props) = body.get("properties").and_then(Value::as_object) {
                for (name, def) in props {
                    let mut def = def.clone();
                    if let Some(m) = def.as_object_mut() {
                        m.entry("name").or_insert_with(|| name.clone().into());
                    }
                    validate("property", &def)?;
                }
            }
        }
        Self::from_value(kind, body)
    }

    fn from_value(kind: ItemKind, v: &Value) -> Result<Self, DomainError> {
        let name = opt_str(v, "name").unwrap_or_default();
        check_name(kind.as_str(), &name)?;
        let mut body = v.as_object().cloned().unwrap_or_default();
        // A property sent on its own keeps its name in the definition (Glance stores it so,
        // and shows it in the property list); objects and tags keep theirs apart.
        if kind != ItemKind::Property {
            body.remove("name");
        }
        for k in READ_ONLY {
            body.remove(k);
        }
        if kind == ItemKind::Tag {
            body.clear();
        }
        Ok(ItemInput { name, body })
    }

    /// A property from a namespace's `properties` map.
    fn property(name: &str, def: &Value) -> Result<Self, DomainError> {
        check_name("property", name)?;
        let mut body = def.as_object().cloned().unwrap_or_default();
        body.remove("name");
        Ok(ItemInput {
            name: name.to_owned(),
            body,
        })
    }
}

/// A `POST …/tags` body: `{"tags": [{"name": …}, …]}`.
pub fn parse_tags(body: &Value) -> Result<Vec<ItemInput>, DomainError> {
    check_read_only(body, &["created_at", "updated_at"])?;
    validate("tags", body)?;
    let tags = body
        .get("tags")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            DomainError::BadRequest(
                "Provided object does not match schema 'tags': 'tags' is a required property\n\n\
                 Failed validating 'required' in schema."
                    .to_owned(),
            )
        })?
        .iter()
        .map(|t| ItemInput::from_value(ItemKind::Tag, t))
        .collect::<Result<Vec<_>, _>>()?;
    if tags.len() > ITEMS_MAX {
        return Err(DomainError::BadRequest(format!(
            "A namespace may hold at most {ITEMS_MAX} tags."
        )));
    }
    Ok(tags)
}

impl NamespaceDoc {
    /// A `POST /v2/metadefs/namespaces` body.
    pub fn parse(body: &Value) -> Result<Self, DomainError> {
        check_read_only(body, &READ_ONLY)?;
        Self::parse_unchecked(body)
    }

    /// A definition file (Glance's format): as a POST body, but timestamps and links that an
    /// export or an older tool wrote are dropped rather than refused.
    pub fn parse_file(doc: &Value) -> Result<Self, DomainError> {
        let mut doc = doc.clone();
        if let Some(m) = doc.as_object_mut() {
            for k in READ_ONLY {
                m.remove(k);
            }
            for list in ["objects", "tags", "resource_type_associations"] {
                if let Some(items) = m.get_mut(list).and_then(Value::as_array_mut) {
                    for item in items.iter_mut().filter_map(Value::as_object_mut) {
                        for k in READ_ONLY {
                            item.remove(k);
                        }
                    }
                }
            }
        }
        Self::parse_unchecked(&doc)
    }

    fn parse_unchecked(body: &Value) -> Result<Self, DomainError> {
        validate("namespace", body)?;
        let fields = NamespaceFields::from_value(body)?;
        let list = |key: &str| {
            body.get(key)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let associations = list("resource_type_associations")
            .iter()
            .map(AssociationInput::from_value)
            .collect::<Result<Vec<_>, _>>()?;
        let objects = list("objects")
            .iter()
            .map(|o| ItemInput::from_value(ItemKind::Object, o))
            .collect::<Result<Vec<_>, _>>()?;
        let tags = list("tags")
            .iter()
            .map(|t| ItemInput::from_value(ItemKind::Tag, t))
            .collect::<Result<Vec<_>, _>>()?;
        let properties = body
            .get("properties")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| ItemInput::property(k, v))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        if associations.len() > ASSOCIATIONS_MAX {
            return Err(DomainError::BadRequest(format!(
                "A namespace may be associated with at most {ASSOCIATIONS_MAX} resource types."
            )));
        }
        for (kind, n) in [
            ("objects", objects.len()),
            ("properties", properties.len()),
            ("tags", tags.len()),
        ] {
            if n > ITEMS_MAX {
                return Err(DomainError::BadRequest(format!(
                    "A namespace may hold at most {ITEMS_MAX} {kind}."
                )));
            }
        }
        Ok(NamespaceDoc {
            fields,
            associations,
            objects,
            properties,
            tags,
        })
    }

    /// The document in Glance's file format (what `vela metadefs export` writes).
    pub fn to_file_json(&self) -> Value {
        let f = &self.fields;
        let mut m = Map::new();
        m.insert("namespace".into(), f.namespace.clone().into());
        for (k, v) in [
            ("display_name", &f.display_name),
            ("description", &f.description),
            ("owner", &f.owner),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), v.clone().into());
            }
        }
        if let Some(v) = f.visibility {
            m.insert("visibility".into(), v.as_str().into());
        }
        if let Some(p) = f.protected {
            m.insert("protected".into(), p.into());
        }
        let assoc: Vec<Value> = self
            .associations
            .iter()
            .map(|a| {
                let mut o = Map::new();
                o.insert("name".into(), a.resource_type.clone().into());
                if let Some(p) = &a.prefix {
                    o.insert("prefix".into(), p.clone().into());
                }
                if let Some(t) = &a.properties_target {
                    o.insert("properties_target".into(), t.clone().into());
                }
                Value::Object(o)
            })
            .collect();
        m.insert("resource_type_associations".into(), assoc.into());
        let props: Map<String, Value> = self
            .properties
            .iter()
            .map(|p| (p.name.clone(), Value::Object(p.body.clone())))
            .collect();
        m.insert("properties".into(), props.into());
        let objects: Vec<Value> = self
            .objects
            .iter()
            .map(|o| {
                let mut body = Map::new();
                body.insert("name".into(), o.name.clone().into());
                body.extend(o.body.clone());
                Value::Object(body)
            })
            .collect();
        m.insert("objects".into(), objects.into());
        if !self.tags.is_empty() {
            let tags: Vec<Value> = self
                .tags
                .iter()
                .map(|t| serde_json::json!({"name": t.name}))
                .collect();
            m.insert("tags".into(), tags.into());
        }
        Value::Object(m)
    }
}

/// Adds `prefix` to each property name of an object body (and to its `required` list), as a
/// namespace shown for a resource type does.
pub fn prefix_object(body: &mut Map<String, Value>, prefix: &str) {
    if let Some(Value::Object(props)) = body.get_mut("properties") {
        let renamed: Map<String, Value> = std::mem::take(props)
            .into_iter()
            .map(|(k, v)| (format!("{prefix}{k}"), v))
            .collect();
        *props = renamed;
    }
    if let Some(Value::Array(req)) = body.get_mut("required") {
        for r in req.iter_mut() {
            if let Value::String(s) = r {
                *s = format!("{prefix}{s}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn namespace_documents_parse() {
        let doc = NamespaceDoc::parse(&json!({
            "namespace": "OS::Test",
            "visibility": "public",
            "resource_type_associations": [{"name": "OS::Glance::Image", "prefix": "hw_"}],
            "properties": {"cpu": {"title": "CPU", "type": "integer", "minimum": 1}},
            "objects": [{"name": "o", "properties": {"x": {"title": "X", "type": "string"}}}],
            "tags": [{"name": "t1"}, {"name": "t2"}],
        }))
        .unwrap();
        assert_eq!(doc.fields.visibility, Some(NsVisibility::Public));
        assert_eq!(doc.associations[0].prefix.as_deref(), Some("hw_"));
        assert_eq!(doc.properties[0].name, "cpu");
        assert_eq!(doc.properties[0].body["minimum"], 1);
        assert_eq!(doc.objects[0].name, "o");
        assert_eq!(doc.tags.len(), 2);
        // And back to a file, then parsed again: the same document.
        let again = NamespaceDoc::parse_file(&doc.to_file_json()).unwrap();
        assert_eq!(again, doc);
    }

    #[test]
    fn bad_documents_are_refused() {
        let e = NamespaceDoc::parse(&json!({"namespace": "a", "created_at": "x"})).unwrap_err();
        assert!(matches!(e, DomainError::Forbidden(_)));
        let e = NamespaceDoc::parse(&json!({"namespace": "a/b"})).unwrap_err();
        assert!(matches!(e, DomainError::BadRequest(_)));
        let e = ItemInput::parse(ItemKind::Property, &json!({"name": "p", "type": "string"}))
            .unwrap_err();
        assert!(
            e.to_string().contains("'title' is a required property"),
            "{e}"
        );
    }

    #[test]
    fn object_properties_take_the_prefix() {
        let mut body = json!({"required": ["a"], "properties": {"a": {}, "b": {}}})
            .as_object()
            .cloned()
            .unwrap();
        prefix_object(&mut body, "hw_");
        assert_eq!(body["required"], json!(["hw_a"]));
        assert!(body["properties"].get("hw_b").is_some());
    }
}
