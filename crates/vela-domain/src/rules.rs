//! Field rules shared by image create and JSON-patch: which attributes are read-only or
//! reserved, the image schema's value checks, formats and quotas.

use serde_json::Value;

use crate::{DomainError, Image, Visibility};

/// Attributes the API never lets a client write.
pub const READ_ONLY: &[&str] = &[
    "id",
    "status",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "size",
    "virtual_size",
    "created_at",
    "updated_at",
    "direct_url",
    "self",
    "file",
    "schema",
    "stores",
];

/// Attribute names reserved for the service itself.
pub const RESERVED: &[&str] = &["location", "deleted", "deleted_at"];

/// Prefix of properties only the service may write.
pub const RESERVED_PREFIX: &str = "os_glance";

/// Base (schema) attributes a client may write.
pub const BASE_WRITABLE: &[&str] = &[
    "name",
    "visibility",
    "protected",
    "os_hidden",
    "owner",
    "container_format",
    "disk_format",
    "min_disk",
    "min_ram",
    "tags",
];

/// Glance's default `disk_formats`.
pub const DEFAULT_DISK_FORMATS: &[&str] = &[
    "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop",
];

/// Glance's default `container_formats`.
pub const DEFAULT_CONTAINER_FORMATS: &[&str] = &[
    "ami",
    "ari",
    "aki",
    "bare",
    "ovf",
    "ova",
    "docker",
    "compressed",
];

const MAX_INT32: i64 = 2_147_483_647;

/// How a key is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    ReadOnly,
    Reserved,
    Base,
    Custom,
}

/// Classifies an attribute name.
pub fn classify(key: &str) -> KeyKind {
    if READ_ONLY.contains(&key) {
        KeyKind::ReadOnly
    } else if RESERVED.contains(&key) || key == "locations" || key.starts_with(RESERVED_PREFIX) {
        KeyKind::Reserved
    } else if BASE_WRITABLE.contains(&key) {
        KeyKind::Base
    } else {
        KeyKind::Custom
    }
}

/// 403 for a read-only attribute.
pub fn read_only(key: &str) -> DomainError {
    DomainError::Forbidden(format!("Attribute '{key}' is read-only."))
}

/// 403 for a reserved attribute.
pub fn reserved(key: &str) -> DomainError {
    DomainError::Forbidden(format!("Attribute '{key}' is reserved."))
}

/// Renders a JSON value roughly as Python's `repr`, as Glance's schema messages show it.
fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::String(s) => format!("'{s}'"),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(py_repr).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

/// Operator-tunable image rules (formats, quotas).
#[derive(Debug, Clone)]
pub struct ImageRules {
    pub disk_formats: Vec<String>,
    pub container_formats: Vec<String>,
    /// Custom properties per image; negative means unlimited.
    pub image_property_quota: i64,
    /// Tags per image; negative means unlimited.
    pub image_tag_quota: i64,
    /// Members per shared image; negative means unlimited.
    pub image_member_quota: i64,
    /// Bytes of one custom property value (400 beyond).
    pub max_property_value_bytes: usize,
    /// Bytes of an image's name, tags and custom properties together (413 beyond).
    pub max_image_metadata_bytes: usize,
    /// Operations in one JSON-patch request (413 beyond).
    pub max_patch_operations: usize,
}

/// Default of [`ImageRules::max_property_value_bytes`]: what a MariaDB `TEXT` column (Glance's
/// property value column there) holds.
pub const DEFAULT_MAX_PROPERTY_VALUE_BYTES: usize = 65_535;
/// Default of [`ImageRules::max_image_metadata_bytes`].
pub const DEFAULT_MAX_IMAGE_METADATA_BYTES: usize = 256 * 1024;
/// Default of [`ImageRules::max_patch_operations`].
pub const DEFAULT_MAX_PATCH_OPERATIONS: usize = 1000;

impl Default for ImageRules {
    fn default() -> Self {
        ImageRules {
            disk_formats: DEFAULT_DISK_FORMATS.iter().map(|s| s.to_string()).collect(),
            container_formats: DEFAULT_CONTAINER_FORMATS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            image_property_quota: 128,
            image_tag_quota: 128,
            image_member_quota: 128,
            max_property_value_bytes: DEFAULT_MAX_PROPERTY_VALUE_BYTES,
            max_image_metadata_bytes: DEFAULT_MAX_IMAGE_METADATA_BYTES,
            max_patch_operations: DEFAULT_MAX_PATCH_OPERATIONS,
        }
    }
}

impl ImageRules {
    fn format_value(
        &self,
        key: &str,
        allowed: &[String],
        v: &Value,
    ) -> Result<Option<String>, DomainError> {
        match v {
            Value::Null => Ok(None),
            Value::String(s) if allowed.iter().any(|a| a == s) => Ok(Some(s.clone())),
            other => {
                let mut all = vec![Value::Null];
                all.extend(allowed.iter().map(|a| Value::String(a.clone())));
                Err(DomainError::schema(format!(
                    "{} is not one of {}  Failed validating 'enum' in schema['properties']['{key}']",
                    py_repr(other),
                    py_repr(&Value::Array(all))
                )))
            }
        }
    }

    /// Validates `value` for the writable base attribute `key` and stores it on `img`.
    /// Policy-dependent checks (owner, visibility) are the caller's.
    pub fn set_base(&self, img: &mut Image, key: &str, value: &Value) -> Result<(), DomainError> {
        match key {
            "name" => img.name = opt_string(key, value, 255)?,
            "owner" => img.owner = opt_string(key, value, 255)?,
            "visibility" => {
                img.visibility = value.as_str().and_then(Visibility::parse).ok_or_else(|| {
                    DomainError::schema(format!(
                        "{} is not one of ['community', 'public', 'private', 'shared']",
                        py_repr(value)
                    ))
                })?
            }
            "protected" => img.protected = boolean(key, value)?,
            "os_hidden" => img.os_hidden = boolean(key, value)?,
            "min_disk" => img.min_disk = non_negative_int(key, value)?,
            "min_ram" => img.min_ram = non_negative_int(key, value)?,
            "disk_format" => img.disk_format = self.format_value(key, &self.disk_formats, value)?,
            "container_format" => {
                img.container_format = self.format_value(key, &self.container_formats, value)?
            }
            "tags" => {
                let items = value.as_array().ok_or_else(|| {
                    DomainError::schema(format!("{} is not of type 'array'", py_repr(value)))
                })?;
                let mut tags = std::collections::BTreeSet::new();
                for t in items {
                    tags.insert(tag_value(t)?);
                }
                img.tags = tags;
            }
            _ => {
                return Err(DomainError::BadRequest(format!(
                    "Unknown attribute '{key}'"
                )))
            }
        }
        Ok(())
    }

    /// Validates a custom property and stores it.
    pub fn set_custom(&self, img: &mut Image, key: &str, value: &Value) -> Result<(), DomainError> {
        check_custom_key(key)?;
        let Value::String(s) = value else {
            return Err(DomainError::schema(format!(
                "{} is not of type 'string'  Failed validating 'type' in schema['additionalProperties']",
                py_repr(value)
            )));
        };
        if s.len() > self.max_property_value_bytes {
            return Err(DomainError::BadRequest(format!(
                "Property '{key}' is too long: {} bytes, at most {} allowed.",
                s.len(),
                self.max_property_value_bytes
            )));
        }
        img.properties.insert(key.to_owned(), s.clone());
        Ok(())
    }

    /// The patch operation count (413 beyond `max_patch_operations`).
    pub fn check_patch_size(&self, operations: usize) -> Result<(), DomainError> {
        if operations > self.max_patch_operations {
            return Err(DomainError::TooLarge(format!(
                "Too many patch operations: {operations}, at most {} allowed.",
                self.max_patch_operations
            )));
        }
        Ok(())
    }

    /// Property and tag quotas (413).
    pub fn check_quotas(&self, img: &Image) -> Result<(), DomainError> {
        let props = img
            .properties
            .keys()
            .filter(|k| !k.starts_with(RESERVED_PREFIX))
            .count() as i64;
        if self.image_property_quota >= 0 && props > self.image_property_quota {
            return Err(DomainError::TooLarge(format!(
                "Attempted: {props}, Maximum: {}",
                self.image_property_quota
            )));
        }
        let tags = img.tags.len() as i64;
        if self.image_tag_quota >= 0 && tags > self.image_tag_quota {
            return Err(DomainError::TooLarge(format!(
                "Attempted: {tags}, Maximum: {}",
                self.image_tag_quota
            )));
        }
        let bytes = metadata_bytes(img);
        if bytes > self.max_image_metadata_bytes {
            return Err(DomainError::TooLarge(format!(
                "Image metadata is too large: {bytes} bytes, at most {} allowed.",
                self.max_image_metadata_bytes
            )));
        }
        Ok(())
    }
}

/// The size of what a client writes on an image: name, tags and custom properties.
fn metadata_bytes(img: &Image) -> usize {
    let name = img.name.as_ref().map_or(0, String::len);
    let tags: usize = img.tags.iter().map(String::len).sum();
    let props: usize = img.properties.iter().map(|(k, v)| k.len() + v.len()).sum();
    name + tags + props
}

/// A tag must be a string of at most 255 characters.
pub fn tag_value(v: &Value) -> Result<String, DomainError> {
    match v {
        Value::String(s) if s.chars().count() <= 255 => Ok(s.clone()),
        Value::String(s) => Err(DomainError::schema(format!("'{s}' is too long"))),
        other => Err(DomainError::schema(format!(
            "{} is not of type 'string'",
            py_repr(other)
        ))),
    }
}

/// Custom property names are at most 255 characters and not empty.
pub fn check_custom_key(key: &str) -> Result<(), DomainError> {
    if key.is_empty() || key.chars().count() > 255 {
        return Err(DomainError::BadRequest(format!(
            "Property name '{key}' is invalid: names must have 1 to 255 characters."
        )));
    }
    Ok(())
}

fn opt_string(key: &str, v: &Value, max: usize) -> Result<Option<String>, DomainError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.chars().count() <= max => Ok(Some(s.clone())),
        Value::String(s) => Err(DomainError::schema(format!(
            "'{s}' is too long  Failed validating 'maxLength' in schema['properties']['{key}']"
        ))),
        other => Err(DomainError::schema(format!(
            "{} is not of type 'null', 'string'  Failed validating 'type' in schema['properties']['{key}']",
            py_repr(other)
        ))),
    }
}

fn boolean(key: &str, v: &Value) -> Result<bool, DomainError> {
    v.as_bool().ok_or_else(|| {
        DomainError::schema(format!(
            "{} is not of type 'boolean'  Failed validating 'type' in schema['properties']['{key}']",
            py_repr(v)
        ))
    })
}

fn non_negative_int(key: &str, v: &Value) -> Result<i64, DomainError> {
    let n = v.as_i64().ok_or_else(|| {
        DomainError::schema(format!(
            "{} is not of type 'integer'  Failed validating 'type' in schema['properties']['{key}']",
            py_repr(v)
        ))
    })?;
    if n < 0 {
        return Err(DomainError::BadRequest(format!(
            "{key}: Cannot be a negative value"
        )));
    }
    if n > MAX_INT32 {
        return Err(DomainError::BadRequest(format!(
            "{key}: Value must be less than or equal to {MAX_INT32}"
        )));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ImageId;
    use serde_json::json;

    #[test]
    fn classification() {
        assert_eq!(classify("status"), KeyKind::ReadOnly);
        assert_eq!(classify("os_glance_foo"), KeyKind::Reserved);
        assert_eq!(classify("deleted"), KeyKind::Reserved);
        assert_eq!(classify("name"), KeyKind::Base);
        assert_eq!(classify("os_distro"), KeyKind::Custom);
    }

    #[test]
    fn schema_checks() {
        let rules = ImageRules::default();
        let mut img = Image::new(ImageId::generate(), None, 0);
        let err = rules
            .set_base(&mut img, "disk_format", &json!("floppy"))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("'floppy' is not one of [None, 'ami'"),
            "{err}"
        );
        assert!(rules.set_base(&mut img, "min_ram", &json!(-1)).is_err());
        assert!(rules.set_base(&mut img, "min_ram", &json!(1.5)).is_err());
        assert!(rules
            .set_base(&mut img, "min_ram", &json!(2_147_483_648_i64))
            .is_err());
        assert!(rules
            .set_base(&mut img, "name", &json!("x".repeat(256)))
            .is_err());
        assert!(rules
            .set_base(&mut img, "protected", &json!("true"))
            .is_err());
        assert!(rules.set_custom(&mut img, "k", &json!(1)).is_err());
        rules
            .set_base(&mut img, "tags", &json!(["a", "a", "b"]))
            .unwrap();
        assert_eq!(img.tags.len(), 2);
        for f in DEFAULT_DISK_FORMATS {
            rules.set_base(&mut img, "disk_format", &json!(f)).unwrap();
        }
        for f in DEFAULT_CONTAINER_FORMATS {
            rules
                .set_base(&mut img, "container_format", &json!(f))
                .unwrap();
        }
    }

    #[test]
    fn quotas() {
        let rules = ImageRules {
            image_tag_quota: 1,
            ..ImageRules::default()
        };
        let mut img = Image::new(ImageId::generate(), None, 0);
        img.tags.insert("a".into());
        rules.check_quotas(&img).unwrap();
        img.tags.insert("b".into());
        assert!(matches!(
            rules.check_quotas(&img),
            Err(DomainError::TooLarge(_))
        ));
    }
}
