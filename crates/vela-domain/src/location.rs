//! Changing an image's locations: the JSON-patch operations on `/locations` and the location
//! API, with Glance's rules (status, positions, validation data, duplicates, quota).
//!
//! The caller resolves each new location first (which store holds it, its size): that needs
//! I/O, this module does not.

use serde_json::{Map, Value};

use crate::image::ImageLocation;
use crate::patch::{Op, PatchOp};
use crate::{DomainError, Image, ImageStatus};

/// Most locations an image may have (Glance's `image_location_quota` default).
pub const LOCATION_QUOTA: usize = 10;

/// Checksums a client vouches for when it adds a location (`validation_data`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationData {
    pub checksum: Option<String>,
    pub os_hash_algo: Option<String>,
    pub os_hash_value: Option<String>,
}

/// A location value from a request, before it is resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct LocationValue {
    pub url: String,
    pub metadata: Map<String, Value>,
    pub validation: ValidationData,
}

/// A location value resolved by the caller: the store that serves its URL and the size the
/// store reports.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedLocation {
    pub location: ImageLocation,
    pub size: u64,
    pub validation: ValidationData,
}

/// Where an `add`/`remove` applies: a position or `-` (the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    At(usize),
    End,
}

/// One change to the locations, as requested.
#[derive(Debug, Clone, PartialEq)]
pub enum LocationChange {
    Add(Position, LocationValue),
    Replace(Vec<LocationValue>),
    Remove(Position),
}

fn bad(msg: impl Into<String>) -> DomainError {
    DomainError::BadRequest(msg.into())
}

fn conflict(msg: impl Into<String>) -> DomainError {
    DomainError::Conflict(msg.into())
}

fn schema(reason: &str) -> DomainError {
    DomainError::schema(reason)
}

fn opt_str(obj: &Map<String, Value>, key: &str, max: usize) -> Result<Option<String>, DomainError> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s.clone())),
        Some(Value::String(s)) => Err(schema(&format!("'{s}' is too long"))),
        Some(v) => Err(schema(&format!("{v} is not of type 'string'"))),
    }
}

impl ValidationData {
    /// Parses the `validation_data` object of the image schema's location items.
    pub fn parse(v: Option<&Value>) -> Result<Self, DomainError> {
        let Some(v) = v else {
            return Ok(ValidationData::default());
        };
        let obj = v
            .as_object()
            .ok_or_else(|| schema(&format!("{v} is not of type 'object'")))?;
        if let Some(k) = obj
            .keys()
            .find(|k| !matches!(k.as_str(), "checksum" | "os_hash_algo" | "os_hash_value"))
        {
            return Err(schema(&format!(
                "Additional properties are not allowed ('{k}' was unexpected)"
            )));
        }
        let data = ValidationData {
            checksum: opt_str(obj, "checksum", 32)?,
            os_hash_algo: opt_str(obj, "os_hash_algo", 64)?,
            os_hash_value: opt_str(obj, "os_hash_value", 128)?,
        };
        if data.checksum.as_ref().is_some_and(|c| c.len() < 32) {
            return Err(schema("checksum is too short"));
        }
        for key in ["os_hash_algo", "os_hash_value"] {
            if !obj.contains_key(key) {
                return Err(schema(&format!("'{key}' is a required property")));
            }
        }
        Ok(data)
    }

    fn fields(&self) -> [(&'static str, Option<&String>); 3] {
        [
            ("checksum", self.checksum.as_ref()),
            ("os_hash_algo", self.os_hash_algo.as_ref()),
            ("os_hash_value", self.os_hash_value.as_ref()),
        ]
    }

    /// Checks the values themselves: hex digits of the right length for md5 and for the
    /// configured hash algorithm (`hash_algo`, its digest `hash_bytes` long).
    pub fn check_values(&self, hash_algo: &str, hash_bytes: usize) -> Result<(), DomainError> {
        let hex = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_hexdigit());
        if let Some(c) = &self.checksum {
            if !hex(c) {
                return Err(conflict(format!(
                    "checksum ({c}) is not a valid hexadecimal value"
                )));
            }
            if c.len() != 32 {
                return Err(conflict(format!(
                    "checksum ({c}) is not the correct size for md5 (should be 16 bytes)"
                )));
            }
        }
        if let Some(algo) = &self.os_hash_algo {
            if algo != hash_algo {
                return Err(conflict(format!(
                    "os_hash_algo must be {hash_algo}, not {algo}"
                )));
            }
        }
        if let Some(v) = &self.os_hash_value {
            if !hex(v) {
                return Err(conflict(format!(
                    "os_hash_value ({v}) is not a valid hexadecimal value"
                )));
            }
            if v.len() != hash_bytes * 2 {
                return Err(conflict(format!(
                    "os_hash_value ({v}) is not the correct size for {hash_algo} (should be {hash_bytes} bytes)"
                )));
            }
        }
        Ok(())
    }
}

impl LocationValue {
    /// Parses one location item of the image schema: `url` and `metadata` required,
    /// `validation_data` optional.
    pub fn parse(v: &Value) -> Result<Self, DomainError> {
        let obj = v
            .as_object()
            .ok_or_else(|| schema(&format!("{v} is not of type 'object'")))?;
        let url = match obj.get("url") {
            Some(Value::String(u)) if u.chars().count() <= 255 => u.clone(),
            Some(Value::String(u)) => return Err(schema(&format!("'{u}' is too long"))),
            Some(other) => return Err(schema(&format!("{other} is not of type 'string'"))),
            None => return Err(schema("'url' is a required property")),
        };
        let metadata = match obj.get("metadata") {
            Some(Value::Object(m)) => m.clone(),
            Some(other) => return Err(schema(&format!("{other} is not of type 'object'"))),
            None => return Err(schema("'metadata' is a required property")),
        };
        if let Some((key, _)) = metadata
            .iter()
            .find(|(_, v)| !matches!(v, Value::String(_) | Value::Object(_) | Value::Array(_)))
        {
            return Err(bad(format!(
                "The image metadata key {key} has an invalid type. Only dict, list, and unicode are supported."
            )));
        }
        Ok(LocationValue {
            url,
            metadata,
            validation: ValidationData::parse(obj.get("validation_data"))?,
        })
    }
}

fn position(s: &str, what: &str) -> Result<Position, DomainError> {
    if s == "-" {
        return Ok(Position::End);
    }
    s.parse::<usize>()
        .map(Position::At)
        .map_err(|_| bad(format!("Invalid position for {what} a location.")))
}

impl LocationChange {
    /// The change a parsed JSON-patch operation on `/locations` asks for (`None` for other
    /// paths).
    pub fn from_patch(op: &PatchOp) -> Result<Option<Self>, DomainError> {
        if op.path.first().map(String::as_str) != Some("locations") {
            return Ok(None);
        }
        let value = op.value.as_ref().unwrap_or(&Value::Null);
        Ok(Some(match op.op {
            Op::Add => LocationChange::Add(
                position(&op.path[1], "adding")?,
                LocationValue::parse(value)?,
            ),
            Op::Remove => LocationChange::Remove(position(&op.path[1], "removing")?),
            Op::Replace => {
                let items = value
                    .as_array()
                    .ok_or_else(|| schema(&format!("{value} is not of type 'array'")))?;
                LocationChange::Replace(
                    items
                        .iter()
                        .map(LocationValue::parse)
                        .collect::<Result<_, _>>()?,
                )
            }
        }))
    }

    /// In a `replace`, a URL the API showed without its credentials stands for the stored
    /// location it was shown for, so a client can send back what it read to change metadata.
    pub fn restore_credentials(&mut self, current: &[ImageLocation]) {
        if let LocationChange::Replace(values) = self {
            for v in values {
                if let Some(l) = current
                    .iter()
                    .find(|l| l.url.as_str() != v.url && l.shown_url() == v.url)
                {
                    v.url = l.url.as_str().to_owned();
                }
            }
        }
    }

    /// The values this change adds (to be resolved by the caller).
    pub fn values(&self) -> &[LocationValue] {
        match self {
            LocationChange::Add(_, v) => std::slice::from_ref(v),
            LocationChange::Replace(vs) => vs,
            LocationChange::Remove(_) => &[],
        }
    }

    /// The verb Glance's messages use for this change.
    pub fn verb(&self) -> &'static str {
        match self {
            LocationChange::Add(..) => "add",
            LocationChange::Replace(_) => "replace",
            LocationChange::Remove(_) => "remove",
        }
    }
}

impl Image {
    /// Applies `change` with its resolved values (in the order of [`LocationChange::values`]).
    /// Returns the locations it removed, whose data the caller deletes once the change is
    /// stored. A `queued` image that gets a location becomes `active`.
    pub fn change_locations(
        &mut self,
        change: &LocationChange,
        resolved: &[ResolvedLocation],
        hash_algo: &str,
        hash_bytes: usize,
    ) -> Result<Vec<ImageLocation>, DomainError> {
        let verb = change.verb();
        let allowed = match change {
            LocationChange::Remove(_) => self.status == ImageStatus::Active,
            _ => matches!(self.status, ImageStatus::Active | ImageStatus::Queued),
        };
        if !allowed {
            return Err(conflict(format!(
                "It's not allowed to {verb} locations if image status is {}.",
                self.status.as_str()
            )));
        }
        match change {
            LocationChange::Remove(pos) => {
                if self.locations.len() == 1 {
                    return Err(DomainError::Forbidden(
                        "Cannot remove last location in the image.".into(),
                    ));
                }
                let at = match *pos {
                    Position::End if !self.locations.is_empty() => self.locations.len() - 1,
                    Position::At(i) if i < self.locations.len() => i,
                    _ => return Err(bad("Invalid position for removing a location.")),
                };
                Ok(vec![self.locations.remove(at)])
            }
            LocationChange::Add(pos, _) => {
                self.accept_validation(resolved, hash_algo, hash_bytes)?;
                let [new] = resolved else {
                    return Err(bad("Invalid location"));
                };
                self.check_not_present(&new.location)?;
                let at = match *pos {
                    Position::End => self.locations.len(),
                    Position::At(i) => i.min(self.locations.len()),
                };
                self.locations.insert(at, new.location.clone());
                self.check_location_quota()?;
                self.activate_with(new.size)?;
                Ok(Vec::new())
            }
            LocationChange::Replace(_) => {
                self.accept_validation(resolved, hash_algo, hash_bytes)?;
                if !self.locations.is_empty() {
                    let mut old: Vec<&str> =
                        self.locations.iter().map(|l| l.url.as_str()).collect();
                    let mut new: Vec<&str> =
                        resolved.iter().map(|l| l.location.url.as_str()).collect();
                    old.sort_unstable();
                    new.sort_unstable();
                    if old != new {
                        // (Without the URLs: they may hold credentials.)
                        return Err(bad(format!(
                            "Original locations is not empty: {} location(s)",
                            old.len()
                        )));
                    }
                    // Same URLs: only the metadata changes.
                    self.locations = resolved.iter().map(|r| r.location.clone()).collect();
                    return Ok(Vec::new());
                }
                for r in resolved {
                    self.check_not_present(&r.location)?;
                    self.locations.push(r.location.clone());
                }
                self.check_location_quota()?;
                if let Some(first) = resolved.first() {
                    self.activate_with(first.size)?;
                }
                Ok(Vec::new())
            }
        }
    }

    fn check_not_present(&self, loc: &ImageLocation) -> Result<(), DomainError> {
        if self
            .locations
            .iter()
            .any(|l| l.url == loc.url && l.metadata == loc.metadata)
        {
            return Err(bad(format!(
                "The location {} already exists",
                loc.shown_url()
            )));
        }
        Ok(())
    }

    fn check_location_quota(&self) -> Result<(), DomainError> {
        if self.locations.len() > LOCATION_QUOTA {
            return Err(DomainError::TooLarge(format!(
                "The limit has been exceeded on the number of allowed image locations. Attempted: {}, Maximum: {LOCATION_QUOTA}",
                self.locations.len()
            )));
        }
        Ok(())
    }

    /// Glance's validation-data rules: one value per key across the new locations, equal to
    /// what the image has, and new values only while the image is `queued`; new values are
    /// then recorded.
    fn accept_validation(
        &mut self,
        resolved: &[ResolvedLocation],
        hash_algo: &str,
        hash_bytes: usize,
    ) -> Result<(), DomainError> {
        let mut wanted: [(&'static str, Option<String>); 3] = [
            ("checksum", None),
            ("os_hash_algo", None),
            ("os_hash_value", None),
        ];
        for r in resolved {
            r.validation.check_values(hash_algo, hash_bytes)?;
            for (slot, (key, value)) in wanted.iter_mut().zip(r.validation.fields()) {
                let Some(value) = value else { continue };
                match &slot.1 {
                    Some(have) if have != value => {
                        return Err(conflict(format!("Conflicting values for {key}")))
                    }
                    _ => slot.1 = Some(value.clone()),
                }
            }
        }
        let mut new_keys = Vec::new();
        for (key, value) in &wanted {
            let Some(value) = value else { continue };
            let current = match *key {
                "checksum" => &self.checksum,
                "os_hash_algo" => &self.os_hash_algo,
                _ => &self.os_hash_value,
            };
            match current {
                Some(c) if c == value => {}
                Some(_) => {
                    return Err(conflict(format!(
                        "{key} is already set with a different value"
                    )))
                }
                None => new_keys.push(*key),
            }
        }
        if !new_keys.is_empty() && self.status != ImageStatus::Queued {
            return Err(conflict(format!(
                "New value(s) for {} may only be provided when image status is 'queued'",
                new_keys.join(", ")
            )));
        }
        let [(_, checksum), (_, algo), (_, value)] = wanted;
        self.checksum = self.checksum.take().or(checksum);
        self.os_hash_algo = self.os_hash_algo.take().or(algo);
        self.os_hash_value = self.os_hash_value.take().or(value);
        Ok(())
    }

    /// A `queued` image with a location is `active`, its size the store's.
    fn activate_with(&mut self, size: u64) -> Result<(), DomainError> {
        if self.size.is_none() {
            self.size = i64::try_from(size).ok();
        }
        if self.status != ImageStatus::Queued {
            return Ok(());
        }
        let missing: Vec<&str> = [
            ("container_format", self.container_format.is_none()),
            ("disk_format", self.disk_format.is_none()),
        ]
        .into_iter()
        .filter(|(_, m)| *m)
        .map(|(k, _)| k)
        .collect();
        match missing.as_slice() {
            [] => {}
            [one] => {
                return Err(bad(format!(
                    "Property {one} must be set prior to saving data."
                )))
            }
            _ => {
                return Err(bad(
                    "Properties container_format, disk_format must be set prior to saving data.",
                ))
            }
        }
        self.status = self.status.transition(ImageStatus::Active)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ImageId;
    use serde_json::json;

    fn image(status: ImageStatus, locs: &[&str]) -> Image {
        let mut img = Image::new(
            ImageId::parse("11111111-1111-4111-8111-111111111111").unwrap(),
            Some("p".into()),
            0,
        );
        img.status = status;
        img.disk_format = Some("raw".into());
        img.container_format = Some("bare".into());
        img.locations = locs.iter().map(|u| loc(u)).collect();
        if !locs.is_empty() {
            img.size = Some(10);
        }
        img
    }

    fn loc(url: &str) -> ImageLocation {
        ImageLocation {
            store: "web".into(),
            url: url.into(),
            metadata: Map::new(),
        }
    }

    fn resolved(url: &str, validation: ValidationData) -> ResolvedLocation {
        ResolvedLocation {
            location: loc(url),
            size: 10,
            validation,
        }
    }

    fn add(url: &str) -> LocationChange {
        LocationChange::Add(
            Position::End,
            LocationValue::parse(&json!({"url": url, "metadata": {}})).unwrap(),
        )
    }

    #[test]
    fn adding_to_a_queued_image_activates_it() {
        let mut img = image(ImageStatus::Queued, &[]);
        let v = ValidationData {
            checksum: Some("0".repeat(32)),
            ..Default::default()
        };
        img.change_locations(&add("http://a"), &[resolved("http://a", v)], "sha512", 64)
            .unwrap();
        assert_eq!(img.status, ImageStatus::Active);
        assert_eq!(img.size, Some(10));
        assert_eq!(img.checksum.as_deref(), Some(&*"0".repeat(32)));
        // New validation data on an active image is refused; the same value is fine.
        let v = ValidationData {
            checksum: Some("1".repeat(32)),
            ..Default::default()
        };
        let e = img
            .change_locations(&add("http://b"), &[resolved("http://b", v)], "sha512", 64)
            .unwrap_err();
        assert_eq!(
            e,
            conflict("checksum is already set with a different value")
        );
        let e = img
            .change_locations(
                &add("http://a"),
                &[resolved("http://a", ValidationData::default())],
                "sha512",
                64,
            )
            .unwrap_err();
        assert_eq!(e, bad("The location http://a already exists"));
    }

    #[test]
    fn removal_rules() {
        let mut img = image(ImageStatus::Active, &["http://a"]);
        let e = img
            .change_locations(&LocationChange::Remove(Position::End), &[], "sha512", 64)
            .unwrap_err();
        assert!(matches!(e, DomainError::Forbidden(_)));
        img.locations.push(loc("http://b"));
        let e = img
            .change_locations(&LocationChange::Remove(Position::At(2)), &[], "sha512", 64)
            .unwrap_err();
        assert_eq!(e, bad("Invalid position for removing a location."));
        let gone = img
            .change_locations(&LocationChange::Remove(Position::At(0)), &[], "sha512", 64)
            .unwrap();
        assert_eq!(gone[0].url.as_str(), "http://a");
        img.status = ImageStatus::Deactivated;
        let e = img
            .change_locations(&LocationChange::Remove(Position::End), &[], "sha512", 64)
            .unwrap_err();
        assert!(matches!(e, DomainError::Conflict(_)));
    }

    #[test]
    fn validation_values_are_checked() {
        let v = |c: &str| ValidationData {
            checksum: Some(c.into()),
            ..Default::default()
        };
        assert!(v(&"z".repeat(32)).check_values("sha512", 64).is_err());
        assert!(v(&"a".repeat(30)).check_values("sha512", 64).is_err());
        let algo = ValidationData {
            os_hash_algo: Some("sha256".into()),
            ..Default::default()
        };
        assert_eq!(
            algo.check_values("sha512", 64).unwrap_err(),
            conflict("os_hash_algo must be sha512, not sha256")
        );
        assert!(ValidationData::parse(Some(&json!({"checksum": "x"}))).is_err());
        assert!(LocationValue::parse(&json!({"url": "http://a"})).is_err());
        assert!(LocationValue::parse(&json!({"url": "http://a", "metadata": {"n": 1}})).is_err());
    }
}
