//! Image data stores.
//!
//! A [`Store`] keeps image bytes somewhere (a local directory, an S3 bucket) and
//! streams them both ways with bounded memory. Size and checksums are not the store's business:
//! [`digest::Digester`] wraps the upload stream, hashes it on separate threads and enforces the
//! size limits, so every backend gets the same accounting.

pub mod cache;
pub mod cinder;
pub mod digest;
pub mod fs;
pub mod http;
pub mod ingest;
pub mod object;
pub mod outbound;
pub mod rbd;
pub mod remote;
pub mod settings;
pub mod swift;
pub mod vmware;

pub use settings::StoreSettings;

use std::fmt::Debug;

pub use vela_domain::{ImageId, LocationUrl};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

/// A stream of image bytes.
pub type ByteStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// An inclusive byte range within an object, already checked against its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    /// Number of bytes in the range.
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// Always false: a range holds at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// What a successful [`Store::put`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Where the data now lives (store specific URL).
    pub location: LocationUrl,
    /// Bytes written.
    pub size: u64,
}

/// An open download.
pub struct Fetched {
    /// Size of the whole object.
    pub total_size: u64,
    /// The bytes (the whole object or the requested range).
    pub body: ByteStream,
}

/// An object found in a store by [`Store::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    /// Its location (for complete objects) as [`Store::put`] returned it.
    pub location: LocationUrl,
    /// The name the object was written under: the image id, for objects Vela wrote (any
    /// other name is listed as found).
    pub image_id: String,
    /// Last modification.
    pub modified: std::time::SystemTime,
    /// A partial write (never readable; removed with [`Store::abort_partial`]).
    pub partial: bool,
}

/// Store failures, by what the caller can do about them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Nothing at that location.
    #[error("no data at {0}")]
    NotFound(String),
    /// The location does not belong to this store.
    #[error("location {0} is not handled by this store")]
    ForeignLocation(String),
    /// The store is out of space.
    #[error("store is full: {0}")]
    StorageFull(#[source] std::io::Error),
    /// The incoming body failed (client went away, a size limit was hit...).
    #[error("upload stream failed: {0}")]
    Body(#[source] std::io::Error),
    /// The store itself failed.
    #[error("store I/O error: {0}")]
    Io(#[source] std::io::Error),
    /// The store could not be reached or answered with a server error.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store refused Vela's credentials.
    #[error("store refused access: {0}")]
    Denied(String),
    /// The store is misconfigured.
    #[error("store configuration: {0}")]
    Config(String),
    /// The store only serves data (the HTTP store): nothing can be written to it.
    #[error("store {0} is read-only")]
    ReadOnly(String),
    /// The data is in use outside Vela (clones of an RBD snapshot) and cannot be deleted.
    #[error("data in use: {0}")]
    InUse(String),
    /// A location URL this store cannot use (malformed, or refused by its server).
    #[error("bad location: {0}")]
    BadLocation(String),
}

impl StoreError {
    /// Classifies an I/O error of the store itself.
    pub fn io(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::StorageFull {
            StoreError::StorageFull(e)
        } else {
            StoreError::Io(e)
        }
    }
}

/// A place image data is kept.
///
/// Behaviour every backend guarantees:
/// - `put` makes nothing readable unless it returns `Ok`; on any error it removes what it wrote.
///   Data is durable when `put` returns.
/// - `get` with a range returns exactly those bytes; ranges are validated by the caller.
/// - `delete` of a missing object is `Ok`.
#[async_trait]
pub trait Store: Send + Sync + Debug + 'static {
    /// The configured id of this store (shown in `/v2/info/stores`).
    fn id(&self) -> &str;
    /// The driver name ("file").
    fn kind(&self) -> &'static str;
    /// Whether `location` is one of this store's URLs.
    fn owns(&self, location: &LocationUrl) -> bool;
    /// Whether API users may add locations of this store to images. Stores that reach their
    /// data with Vela's own credentials refuse (a client could otherwise point an image at
    /// another image's data); a public URL store accepts.
    fn external_locations(&self) -> bool {
        false
    }
    /// A store that only serves data (uploads get [`StoreError::ReadOnly`]).
    fn read_only(&self) -> bool {
        false
    }
    /// The local file holding the data at `location`, for stores that keep plain files
    /// (tools such as `qemu-img` then read it in place).
    fn local_path(&self, _location: &LocationUrl) -> Option<std::path::PathBuf> {
        None
    }
    /// Writes the whole stream as the data of `image_id`.
    async fn put(&self, image_id: &ImageId, body: ByteStream) -> Result<Stored, StoreError>;
    /// Opens the data at `location`, optionally only `range`.
    async fn get(
        &self,
        location: &LocationUrl,
        range: Option<ByteRange>,
    ) -> Result<Fetched, StoreError>;
    /// Size of the data at `location`.
    async fn size(&self, location: &LocationUrl) -> Result<u64, StoreError>;
    /// Removes the data at `location`.
    async fn delete(&self, location: &LocationUrl) -> Result<(), StoreError>;
    /// Removes whatever an interrupted `put` of `image_id` (possibly by another process)
    /// left behind. Only called once that upload is known to be abandoned.
    async fn abort_partial(&self, image_id: &ImageId) -> Result<(), StoreError>;
    /// Everything the store holds, complete and partial, for garbage collection.
    async fn list(&self) -> Result<Vec<ListedObject>, StoreError>;
    /// Removes exactly one object found by [`Store::list`]. Missing is `Ok`.
    async fn delete_listed(&self, obj: &ListedObject) -> Result<(), StoreError>;
}

/// The configured stores: several named ones (Glance's multi-store), one of them the default
/// for new data. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Stores {
    all: std::sync::Arc<Vec<std::sync::Arc<dyn Store>>>,
    default: usize,
    /// Stores that serve locations but are not configured ones (the implicit HTTP store of
    /// single-store mode, as Glance's default `stores = file,http`).
    implicit: Option<std::sync::Arc<dyn Store>>,
}

impl Stores {
    /// `all` in display order; `default_id` must name one of them, and ids must be unique.
    pub fn new(all: Vec<std::sync::Arc<dyn Store>>, default_id: &str) -> Result<Self, String> {
        for (i, s) in all.iter().enumerate() {
            if all[..i].iter().any(|o| o.id() == s.id()) {
                return Err(format!("store id '{}' is used twice", s.id()));
            }
        }
        let default = all
            .iter()
            .position(|s| s.id() == default_id)
            .ok_or_else(|| format!("the default store '{default_id}' is not configured"))?;
        Ok(Stores {
            all: std::sync::Arc::new(all),
            default,
            implicit: None,
        })
    }

    /// Just one store.
    pub fn single(store: std::sync::Arc<dyn Store>) -> Self {
        Stores {
            all: std::sync::Arc::new(vec![store]),
            default: 0,
            implicit: None,
        }
    }

    /// Adds a store that serves locations without being a configured one.
    pub fn with_implicit(mut self, store: std::sync::Arc<dyn Store>) -> Self {
        self.implicit = Some(store);
        self
    }

    /// The store (configured or implicit) whose URL `location` is.
    pub fn owner_of(&self, location: &LocationUrl) -> Option<&std::sync::Arc<dyn Store>> {
        self.all
            .iter()
            .chain(self.implicit.iter())
            .find(|s| s.owns(location))
    }

    /// Where new data goes unless a store is asked for.
    pub fn default_store(&self) -> &std::sync::Arc<dyn Store> {
        &self.all[self.default]
    }

    /// The store with this id.
    pub fn get(&self, id: &str) -> Option<&std::sync::Arc<dyn Store>> {
        self.all.iter().find(|s| s.id() == id)
    }

    /// The store holding a location of `id`; a store no longer configured is a typed error.
    pub fn store_of(&self, id: &str) -> Result<&std::sync::Arc<dyn Store>, StoreError> {
        self.get(id)
            .or(self.implicit.as_ref().filter(|s| s.id() == id))
            .ok_or_else(|| {
                StoreError::Config(format!(
                    "image data is in store '{id}', which is not configured"
                ))
            })
    }

    /// Every store, in configuration order.
    pub fn all(&self) -> &[std::sync::Arc<dyn Store>] {
        &self.all
    }

    /// More than one store is configured (Glance's multi-store mode).
    pub fn is_multi(&self) -> bool {
        self.all.len() > 1
    }
}
