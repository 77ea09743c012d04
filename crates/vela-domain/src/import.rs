//! Interoperable image import: the body of `POST /v2/images/{id}/import`, its checks against
//! the image, the choice of target stores, and the image properties that track an import.

use serde_json::Value;

use crate::{DomainError, Image, ImageStatus};

/// Holds the id of the task that has the image locked for an import or a location import.
pub const IMPORT_LOCK: &str = "os_glance_import_task";
/// Stores an import still has to write to (comma-separated).
pub const IMPORTING_TO: &str = "os_glance_importing_to_stores";
/// Stores an import failed to write to (comma-separated).
pub const FAILED_IMPORT: &str = "os_glance_failed_import";
/// Where the data staged for an image lives in the staging store (never shown).
pub const STAGED_DATA: &str = "os_glance_staged_data";

/// Internal properties that are never shown to clients.
pub const HIDDEN_PROPERTIES: &[&str] = &[
    "os_glance_stage_host",
    "os_glance_hash_op_host",
    STAGED_DATA,
];

/// The import methods Vela knows, in Glance's order.
pub const METHODS: &[&str] = &[
    "glance-direct",
    "web-download",
    "copy-image",
    "glance-download",
];

/// How the data of an import is obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportMethod {
    /// From the staging area (`PUT /stage`).
    GlanceDirect,
    /// From a URL.
    WebDownload { uri: String },
    /// From the image's own data in another store.
    CopyImage,
    /// From an image of another region's image service.
    GlanceDownload {
        region: String,
        image_id: String,
        interface: String,
    },
}

impl ImportMethod {
    /// The wire name.
    pub fn name(&self) -> &'static str {
        match self {
            ImportMethod::GlanceDirect => "glance-direct",
            ImportMethod::WebDownload { .. } => "web-download",
            ImportMethod::CopyImage => "copy-image",
            ImportMethod::GlanceDownload { .. } => "glance-download",
        }
    }
}

/// A parsed import request.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportRequest {
    pub method: ImportMethod,
    /// `stores`, when given.
    pub stores: Option<Vec<String>>,
    pub all_stores: bool,
    pub all_stores_must_succeed: bool,
    /// The body as sent (kept in the task's input).
    pub body: Value,
}

fn bad(m: impl Into<String>) -> DomainError {
    DomainError::BadRequest(m.into())
}

fn conflict(m: impl Into<String>) -> DomainError {
    DomainError::Conflict(m.into())
}

fn flag(
    body: &serde_json::Map<String, Value>,
    key: &str,
    default: bool,
) -> Result<bool, DomainError> {
    match body.get(key) {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(bad(format!("'{key}' must be boolean value only"))),
    }
}

impl ImportRequest {
    /// Parses the body; `enabled` are the configured import methods.
    pub fn parse(body: &Value, enabled: &[String]) -> Result<Self, DomainError> {
        let obj = body
            .as_object()
            .ok_or_else(|| bad("Import request requires a 'method' field."))?;
        let method = obj
            .get("method")
            .ok_or_else(|| bad("Import request requires a 'method' field."))?;
        let m = method
            .as_object()
            .ok_or_else(|| bad("Import request requires a 'name' field."))?;
        let name = match m.get("name") {
            Some(Value::String(n)) => n.clone(),
            Some(other) => other.to_string(),
            None => return Err(bad("Import request requires a 'name' field.")),
        };
        if !enabled.contains(&name) {
            return Err(bad(format!("Unknown import method name '{name}'.")));
        }
        let all_stores_must_succeed = flag(obj, "all_stores_must_succeed", true)?;
        let all_stores = flag(obj, "all_stores", false)?;
        let text = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
        let method = match name.as_str() {
            "glance-direct" => ImportMethod::GlanceDirect,
            "web-download" => ImportMethod::WebDownload {
                uri: text("uri").unwrap_or_default(),
            },
            "copy-image" => ImportMethod::CopyImage,
            "glance-download" => ImportMethod::GlanceDownload {
                region: text("glance_region").unwrap_or_default(),
                image_id: text("glance_image_id").unwrap_or_default(),
                interface: text("glance_service_interface").unwrap_or_else(|| "public".into()),
            },
            other => return Err(bad(format!("Unknown import method name '{other}'."))),
        };
        let stores = match obj.get("stores") {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => Some(
                a.iter()
                    .map(|s| match s {
                        Value::String(s) => Ok(s.clone()),
                        other => Err(bad(format!("Invalid store identifier {other}"))),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(_) => return Err(bad("'stores' must be a list of store identifiers")),
        };
        Ok(ImportRequest {
            method,
            stores,
            all_stores,
            all_stores_must_succeed,
            body: body.clone(),
        })
    }

    /// Glance's checks of the image's state for this method (409), and of the method's own
    /// parameters that only make sense once the image is known (400).
    pub fn check_image(&self, img: &Image) -> Result<(), DomainError> {
        let method = self.method.name();
        let copy = matches!(self.method, ImportMethod::CopyImage);
        if img.status == ImageStatus::Active && !copy {
            return Err(conflict(
                "Image with status active cannot be target for import",
            ));
        }
        if img.status != ImageStatus::Active && copy {
            return Err(conflict(
                "Only images with status active can be targeted for copying",
            ));
        }
        if img.status != ImageStatus::Queued
            && matches!(
                self.method,
                ImportMethod::WebDownload { .. } | ImportMethod::GlanceDownload { .. }
            )
        {
            return Err(conflict(format!(
                "Image needs to be in 'queued' state to use '{method}' method"
            )));
        }
        if img.status != ImageStatus::Uploading && self.method == ImportMethod::GlanceDirect {
            return Err(conflict(
                "Image needs to be staged before 'glance-direct' method can be used",
            ));
        }
        if img.container_format.as_deref().is_none_or(str::is_empty) {
            return Err(conflict("'container_format' needs to be set before import"));
        }
        if img.disk_format.as_deref().is_none_or(str::is_empty) {
            return Err(conflict("'disk_format' needs to be set before import"));
        }
        if let ImportMethod::GlanceDownload {
            region, image_id, ..
        } = &self.method
        {
            let m = &self.body["method"];
            if m.get("glance_region").is_none() || region.is_empty() {
                return Err(bad(
                    "'glance_region' needs to be set for glance-download import method",
                ));
            }
            if m.get("glance_image_id").is_none() {
                return Err(bad(
                    "'glance_image_id' needs to be set for glance-download import method",
                ));
            }
            if uuid::Uuid::parse_str(image_id).is_err() {
                return Err(bad(format!(
                    "Remote image id does not look like a UUID: {image_id}"
                )));
            }
        }
        Ok(())
    }

    /// The stores to import to: `all_stores` (every `writable` store), else `stores`, else
    /// the `X-Image-Meta-Store` header, else the default store. Unknown stores are a 409
    /// (Glance's answer); for copy-image, stores that already hold the image are dropped
    /// with `all_stores` and refused (400) when named.
    pub fn target_stores(
        &self,
        img: &Image,
        header: Option<&str>,
        writable: &[&str],
        default: &str,
        multi: bool,
    ) -> Result<Vec<String>, DomainError> {
        if !multi {
            if !self.all_stores_must_succeed {
                return Err(bad(
                    "All_stores_must_succeed can only be set with enabled_backends",
                ));
            }
            return Ok(vec![default.to_owned()]);
        }
        let mut stores = if self.all_stores {
            if self.stores.is_some() || header.is_some() {
                return Err(bad(
                    "All_stores parameter can't be used with x-image-meta-store header or stores parameter",
                ));
            }
            writable.iter().map(|s| (*s).to_owned()).collect()
        } else if let Some(s) = &self.stores {
            if header.is_some() {
                return Err(bad(
                    "Stores parameter and x-image-meta-store header can't be both specified",
                ));
            }
            s.clone()
        } else {
            vec![header.unwrap_or(default).to_owned()]
        };
        for s in &stores {
            if !writable.contains(&s.as_str()) {
                return Err(conflict(format!("Store for identifier {s} not found")));
            }
        }
        let mut seen = std::collections::HashSet::new();
        stores.retain(|s| seen.insert(s.clone()));
        if self.method == ImportMethod::CopyImage {
            let held: Vec<&str> = img.locations.iter().map(|l| l.store.as_str()).collect();
            if self.all_stores {
                stores.retain(|s| !held.contains(&s.as_str()));
            } else if let Some(s) = stores.iter().find(|s| held.contains(&s.as_str())) {
                return Err(bad(format!("Image is already present at store '{s}'")));
            }
        }
        Ok(stores)
    }
}

/// A comma-separated store list property as a list.
pub fn store_list(img: &Image, key: &str) -> Vec<String> {
    img.properties
        .get(key)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Sets a comma-separated store list property (kept, empty, once an import has used it:
/// Glance leaves `""` behind).
pub fn set_store_list(img: &mut Image, key: &str, stores: &[String]) {
    img.properties.insert(key.to_owned(), stores.join(","));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn enabled() -> Vec<String> {
        ["glance-direct", "web-download", "copy-image"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    }

    fn image(status: ImageStatus) -> Image {
        let mut img = Image::new(crate::ImageId::generate(), Some("p".into()), 0);
        img.status = status;
        img.disk_format = Some("raw".into());
        img.container_format = Some("bare".into());
        img
    }

    #[test]
    fn parses_bodies() {
        let r = ImportRequest::parse(
            &json!({"method": {"name": "web-download", "uri": "http://x/y"}}),
            &enabled(),
        )
        .unwrap();
        assert_eq!(
            r.method,
            ImportMethod::WebDownload {
                uri: "http://x/y".into()
            }
        );
        assert!(r.all_stores_must_succeed);
        for (body, msg) in [
            (json!({}), "Import request requires a 'method' field."),
            (
                json!({"method": {}}),
                "Import request requires a 'name' field.",
            ),
            (
                json!({"method": {"name": "glance-download"}}),
                "Unknown import method name 'glance-download'.",
            ),
            (
                json!({"method": {"name": "copy-image"}, "all_stores": "x"}),
                "'all_stores' must be boolean value only",
            ),
            (
                json!({"method": {"name": "copy-image"}, "all_stores_must_succeed": 1}),
                "'all_stores_must_succeed' must be boolean value only",
            ),
        ] {
            assert_eq!(
                ImportRequest::parse(&body, &enabled()).unwrap_err(),
                bad(msg),
                "{body}"
            );
        }
    }

    #[test]
    fn checks_status_per_method() {
        let direct =
            ImportRequest::parse(&json!({"method": {"name": "glance-direct"}}), &enabled())
                .unwrap();
        assert!(direct.check_image(&image(ImageStatus::Uploading)).is_ok());
        assert!(matches!(
            direct.check_image(&image(ImageStatus::Queued)),
            Err(DomainError::Conflict(_))
        ));
        assert!(matches!(
            direct.check_image(&image(ImageStatus::Active)),
            Err(DomainError::Conflict(_))
        ));
        let copy =
            ImportRequest::parse(&json!({"method": {"name": "copy-image"}}), &enabled()).unwrap();
        assert!(copy.check_image(&image(ImageStatus::Active)).is_ok());
        assert!(copy.check_image(&image(ImageStatus::Queued)).is_err());
        let mut img = image(ImageStatus::Queued);
        img.disk_format = None;
        let web = ImportRequest::parse(
            &json!({"method": {"name": "web-download", "uri": "http://a/"}}),
            &enabled(),
        )
        .unwrap();
        assert_eq!(
            web.check_image(&img).unwrap_err(),
            conflict("'disk_format' needs to be set before import")
        );
    }

    #[test]
    fn chooses_stores() {
        let copy = |extra: Value| {
            let mut body = json!({"method": {"name": "copy-image"}});
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            ImportRequest::parse(&body, &enabled()).unwrap()
        };
        let mut img = image(ImageStatus::Active);
        img.locations.push(crate::image::ImageLocation {
            store: "fast".into(),
            url: "file:///x".into(),
            metadata: Default::default(),
        });
        let writable = ["fast", "cheap"];
        assert_eq!(
            copy(json!({"all_stores": true}))
                .target_stores(&img, None, &writable, "fast", true)
                .unwrap(),
            vec!["cheap".to_owned()]
        );
        assert!(copy(json!({"stores": ["fast"]}))
            .target_stores(&img, None, &writable, "fast", true)
            .is_err());
        assert!(matches!(
            copy(json!({"stores": ["nope"]})).target_stores(&img, None, &writable, "fast", true),
            Err(DomainError::Conflict(_))
        ));
        assert!(copy(json!({"stores": ["cheap"]}))
            .target_stores(&img, Some("cheap"), &writable, "fast", true)
            .is_err());
        assert!(copy(json!({"all_stores": true}))
            .target_stores(&img, Some("cheap"), &writable, "fast", true)
            .is_err());
        assert_eq!(
            copy(json!({}))
                .target_stores(&img, Some("cheap"), &writable, "fast", true)
                .unwrap(),
            vec!["cheap".to_owned()]
        );
    }
}
