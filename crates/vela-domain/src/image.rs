//! The image entity and its newtypes.

use std::collections::{BTreeMap, BTreeSet};

use crate::{DomainError, ImageStatus, Micros};

/// An image id: a UUID in 8-4-4-4-12 hex form (either case), kept as the client wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageId(String);

impl ImageId {
    /// A fresh random (v4) id.
    pub fn generate() -> Self {
        ImageId(uuid::Uuid::new_v4().to_string())
    }

    /// Parses an id; anything that is not a UUID in the canonical layout is refused.
    pub fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 36 {
            return None;
        }
        let ok = b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        });
        ok.then(|| ImageId(s.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ImageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who may see an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Visibility {
    Public,
    Private,
    Shared,
    Community,
}

impl Visibility {
    /// Values in the order of the image schema's enum.
    pub const ALL: [Visibility; 4] = [
        Visibility::Community,
        Visibility::Public,
        Visibility::Private,
        Visibility::Shared,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Visibility::Public => "public",
            Visibility::Private => "private",
            Visibility::Shared => "shared",
            Visibility::Community => "community",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// A store location URL, e.g. `file:///var/lib/vela/images/<id>` or
/// `swift+https://user:key@host/v1/…`. It may hold credentials, so `Debug` and `Display` show
/// it without them ([`LocationUrl::shown`]); the store that serves it reads
/// [`LocationUrl::as_str`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocationUrl(String);

impl LocationUrl {
    pub fn new(url: impl Into<String>) -> Self {
        LocationUrl(url.into())
    }

    /// The URL as stored, credentials included: for the store that serves it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL without a `user:password@` part: for logs, messages and image readers.
    pub fn shown(&self) -> std::borrow::Cow<'_, str> {
        without_credentials(&self.0)
    }
}

impl std::fmt::Debug for LocationUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LocationUrl({:?})", self.shown())
    }
}

impl std::fmt::Display for LocationUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown())
    }
}

impl From<String> for LocationUrl {
    fn from(url: String) -> Self {
        LocationUrl(url)
    }
}

impl From<&str> for LocationUrl {
    fn from(url: &str) -> Self {
        LocationUrl(url.to_owned())
    }
}

/// Where an image's data lives in a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageLocation {
    /// Store id (the configured store name).
    pub store: String,
    /// Store-specific URL.
    pub url: LocationUrl,
    /// The location's metadata, as a client gave it (empty for uploaded data).
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl ImageLocation {
    /// The URL as the API shows it to image readers: without a `user:password@` part.
    pub fn shown_url(&self) -> std::borrow::Cow<'_, str> {
        self.url.shown()
    }
}

/// `url` without the user information of its authority (`scheme://user:pw@host/p` →
/// `scheme://host/p`), as URL parsers split it: the authority ends at the first `/`, `?` or
/// `#` after `://`, and the user part at its last `@`.
pub fn without_credentials(url: &str) -> std::borrow::Cow<'_, str> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.into();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]).into(),
        None => url.into(),
    }
}

/// An image record with its custom properties and tags.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub id: ImageId,
    pub name: Option<String>,
    pub status: ImageStatus,
    pub visibility: Visibility,
    pub protected: bool,
    pub os_hidden: bool,
    pub owner: Option<String>,
    pub container_format: Option<String>,
    pub disk_format: Option<String>,
    pub min_disk: i64,
    pub min_ram: i64,
    pub size: Option<i64>,
    pub virtual_size: Option<i64>,
    pub checksum: Option<String>,
    pub os_hash_algo: Option<String>,
    pub os_hash_value: Option<String>,
    pub created_at: Micros,
    pub updated_at: Micros,
    pub deleted: bool,
    pub deleted_at: Option<Micros>,
    /// While `saving`: until when the node receiving the data vouches for the upload. The
    /// node renews it; once it has expired, any node may return the image to `queued`.
    pub upload_lease_until: Option<Micros>,
    /// Custom (additional) properties; values are strings.
    pub properties: BTreeMap<String, String>,
    pub tags: BTreeSet<String>,
    pub locations: Vec<ImageLocation>,
}

impl Image {
    /// A new `queued` image with Glance's defaults.
    pub fn new(id: ImageId, owner: Option<String>, now: Micros) -> Self {
        Image {
            id,
            name: None,
            status: ImageStatus::Queued,
            visibility: Visibility::Shared,
            protected: false,
            os_hidden: false,
            owner,
            container_format: None,
            disk_format: None,
            min_disk: 0,
            min_ram: 0,
            size: None,
            virtual_size: None,
            checksum: None,
            os_hash_algo: None,
            os_hash_value: None,
            created_at: now,
            updated_at: now,
            deleted: false,
            deleted_at: None,
            upload_lease_until: None,
            properties: BTreeMap::new(),
            tags: BTreeSet::new(),
            locations: Vec::new(),
        }
    }

    /// Moves the image to `to` through the status machine, applying the side effects Glance
    /// ties to a status: data fields are cleared when the image goes back to `queued`.
    pub fn set_status(&mut self, to: ImageStatus) -> Result<(), DomainError> {
        self.status = self.status.transition(to)?;
        if to != ImageStatus::Saving && to != ImageStatus::Uploading {
            self.upload_lease_until = None;
        }
        if to == ImageStatus::Queued {
            self.properties.remove(crate::import::STAGED_DATA);
            self.size = None;
            self.virtual_size = None;
            self.checksum = None;
            self.os_hash_algo = None;
            self.os_hash_value = None;
            self.locations.clear();
        }
        Ok(())
    }

    /// Checks that data may be written: status `queued` and both formats set.
    pub fn check_can_receive_data(&self) -> Result<(), DomainError> {
        self.status.transition(ImageStatus::Saving)?;
        if self.disk_format.is_none() || self.container_format.is_none() {
            return Err(DomainError::BadRequest(
                "Properties disk_format, container_format must be set prior to saving data.".into(),
            ));
        }
        Ok(())
    }

    /// Whether this is an upload (or a stage still receiving data) whose node stopped
    /// renewing its lease before `now`. A completed stage holds no lease and is not abandoned.
    pub fn upload_abandoned(&self, now: Micros) -> bool {
        match self.status {
            ImageStatus::Saving => {
                !self.deleted && self.upload_lease_until.is_none_or(|until| until < now)
            }
            ImageStatus::Uploading => {
                !self.deleted && self.upload_lease_until.is_some_and(|until| until < now)
            }
            _ => false,
        }
    }

    /// Soft-deletes the record.
    /// With `delayed` (the operator's `delayed_delete`), an image with data goes to
    /// `pending_delete` instead: the record is gone for the API, the data stays until the
    /// scrubber removes it.
    pub fn mark_deleted(&mut self, now: Micros, delayed: bool) -> Result<(), DomainError> {
        if self.protected {
            return Err(DomainError::Forbidden(format!(
                "Image {} is protected and cannot be deleted.",
                self.id
            )));
        }
        let target = if delayed
            && !self.locations.is_empty()
            && self.status.can_become(ImageStatus::PendingDelete)
        {
            ImageStatus::PendingDelete
        } else {
            ImageStatus::Deleted
        };
        self.status = self
            .status
            .transition(target)
            .map_err(|e| DomainError::BadRequest(e.to_string()))?;
        self.deleted = true;
        self.deleted_at = Some(now);
        self.upload_lease_until = None;
        self.updated_at = now;
        Ok(())
    }

    /// The scrubber's step: `pending_delete → deleted` once the data is gone.
    pub fn finish_delete(&mut self, now: Micros) -> Result<(), DomainError> {
        self.status = self.status.transition(ImageStatus::Deleted)?;
        self.locations.clear();
        self.updated_at = now;
        Ok(())
    }

    /// `active → deactivated`; already deactivated is a no-op. Any other status is refused.
    pub fn deactivate(&mut self) -> Result<bool, DomainError> {
        match self.status {
            ImageStatus::Deactivated => Ok(false),
            ImageStatus::Active => {
                self.status = self.status.transition(ImageStatus::Deactivated)?;
                Ok(true)
            }
            other => Err(DomainError::Forbidden(format!(
                "Not allowed to deactivate image in status '{other}'"
            ))),
        }
    }

    /// `deactivated → active`; already active is a no-op. Any other status is refused.
    pub fn reactivate(&mut self) -> Result<bool, DomainError> {
        match self.status {
            ImageStatus::Active => Ok(false),
            ImageStatus::Deactivated => {
                self.status = self.status.transition(ImageStatus::Active)?;
                Ok(true)
            }
            other => Err(DomainError::Forbidden(format!(
                "Not allowed to reactivate image in status '{other}'"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_leave_shown_urls() {
        for (url, shown) in [
            ("http://u:p@h:8/a@b?c@d", "http://h:8/a@b?c@d"),
            (
                "swift+https://acct:user:k@ey@auth/v1/c/o",
                "swift+https://auth/v1/c/o",
            ),
            ("http://@h/x", "http://h/x"),
            ("rbd://fsid/pool/img/snap", "rbd://fsid/pool/img/snap"),
            ("file:///var/lib/vela/x", "file:///var/lib/vela/x"),
            ("http://h?x=u@v", "http://h?x=u@v"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(without_credentials(url), shown, "{url}");
        }
        let url = LocationUrl::from("http://u:secret@h/x");
        assert_eq!(url.as_str(), "http://u:secret@h/x");
        assert_eq!(
            format!("{url} {url:?}"),
            "http://h/x LocationUrl(\"http://h/x\")"
        );
    }

    #[test]
    fn ids_must_be_uuid_shaped() {
        assert!(ImageId::parse("11111111-2222-3333-4444-555555555555").is_some());
        assert!(ImageId::parse("ABCDEF00-2222-3333-4444-555555555555").is_some());
        assert!(ImageId::parse("11111111-2222-3333-4444-55555555555").is_none());
        assert!(ImageId::parse("11111111x2222-3333-4444-555555555555").is_none());
        assert!(ImageId::parse("g1111111-2222-3333-4444-555555555555").is_none());
        assert!(ImageId::parse("").is_none());
        assert!(ImageId::parse(&ImageId::generate().to_string()).is_some());
    }

    #[test]
    fn going_back_to_queued_clears_data_fields() {
        let mut img = Image::new(ImageId::generate(), None, 1);
        img.set_status(ImageStatus::Saving).unwrap();
        img.size = Some(3);
        img.checksum = Some("x".into());
        img.set_status(ImageStatus::Queued).unwrap();
        assert_eq!(img.size, None);
        assert_eq!(img.checksum, None);
    }

    #[test]
    fn deactivate_rules() {
        let mut img = Image::new(ImageId::generate(), None, 1);
        assert!(matches!(img.deactivate(), Err(DomainError::Forbidden(_))));
        img.status = ImageStatus::Active;
        assert_eq!(img.deactivate(), Ok(true));
        assert_eq!(img.deactivate(), Ok(false));
        assert_eq!(img.reactivate(), Ok(true));
        assert_eq!(img.reactivate(), Ok(false));
    }

    #[test]
    fn protected_images_are_not_deleted() {
        let mut img = Image::new(ImageId::generate(), None, 1);
        img.protected = true;
        assert!(matches!(
            img.mark_deleted(2, false),
            Err(DomainError::Forbidden(_))
        ));
        img.protected = false;
        img.mark_deleted(2, false).unwrap();
        assert!(img.deleted);
        assert_eq!(img.status, ImageStatus::Deleted);

        let mut img = Image::new(ImageId::generate(), None, 1);
        img.status = ImageStatus::Active;
        img.locations.push(ImageLocation {
            store: "file".into(),
            url: "file:///x".into(),
            metadata: Default::default(),
        });
        img.mark_deleted(3, true).unwrap();
        assert_eq!(img.status, ImageStatus::PendingDelete);
        assert!(img.deleted);
        img.finish_delete(4).unwrap();
        assert_eq!(img.status, ImageStatus::Deleted);
        assert!(img.locations.is_empty());
    }
}
