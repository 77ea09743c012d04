//! Object stores (S3 and S3-compatible) through the `object_store` crate.
//!
//! Each image's data is one object, `<prefix><image id>`, at location
//! `s3://<bucket>/<prefix><image id>`. An upload smaller than one part is a single PUT;
//! anything larger is a multipart upload of `part_size` parts, `parts_in_flight` at a time, so
//! an upload's memory is bounded by a few parts whatever the image size. Nothing is visible before
//! the PUT or the multipart completion succeeds, and a failed multipart upload is aborted.
//! Multipart uploads a crashed node never completed are invisible; a bucket lifecycle rule
//! (`AbortIncompleteMultipartUpload`) reclaims their parts.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, PutPayload, WriteMultipart};

use crate::{
    ByteRange, ByteStream, Fetched, ImageId, ListedObject, LocationUrl, Store, StoreError, Stored,
};

/// Where an S3 store is and how to sign requests to it.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// `https://s3.amazonaws.com`, `http://127.0.0.1:7480`, …
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: vela_domain::Secret,
    /// Object name prefix (e.g. `images/`).
    pub prefix: String,
    /// `bucket.host` URLs instead of `host/bucket` (path style, the default).
    pub virtual_hosted_style: bool,
    /// Multipart part size in bytes (at least 5 MiB, as S3 requires).
    pub part_size: usize,
    /// Parts uploaded at once (at least 1).
    pub parts_in_flight: usize,
}

/// `[stores.NAME] type = "s3"`: AWS or any S3-compatible service.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    /// Endpoint URL (e.g. `https://s3.amazonaws.com`, `http://127.0.0.1:7480`).
    pub endpoint: String,
    /// Signing region (`us-east-1` when empty).
    #[serde(default)]
    pub region: String,
    pub bucket: String,
    #[serde(default)]
    pub access_key: String,
    #[serde(default)]
    pub secret_key: vela_domain::Secret,
    /// Object name prefix, e.g. `images/`.
    #[serde(default)]
    pub prefix: String,
    /// `bucket.host` addressing instead of path style.
    #[serde(default)]
    pub virtual_hosted_style: bool,
    /// Multipart part size in MiB (5 or more; default 5).
    #[serde(default)]
    pub part_size_mib: Option<u64>,
    /// Parts uploaded at once (default 1). Each costs a few part sizes of memory; more helps
    /// on links with high latency.
    #[serde(default)]
    pub parts_in_flight: Option<usize>,
}

impl S3Settings {
    pub fn check(&self) -> Result<(), String> {
        if self.endpoint.is_empty() || self.bucket.is_empty() {
            return Err("needs an endpoint and a bucket".into());
        }
        Ok(())
    }

    pub fn config(&self) -> S3Config {
        S3Config {
            endpoint: self.endpoint.clone(),
            region: if self.region.is_empty() {
                "us-east-1".into()
            } else {
                self.region.clone()
            },
            bucket: self.bucket.clone(),
            access_key: self.access_key.clone(),
            secret_key: self.secret_key.clone(),
            prefix: self.prefix.clone(),
            virtual_hosted_style: self.virtual_hosted_style,
            part_size: usize::try_from(self.part_size_mib.unwrap_or(5) << 20).unwrap_or(5 << 20),
            parts_in_flight: self.parts_in_flight.unwrap_or(1),
        }
    }
}

/// A store over an `object_store` backend.
pub struct ObjectBackend {
    id: String,
    kind: &'static str,
    store: Arc<dyn ObjectStore>,
    /// `s3://bucket/`
    base: String,
    prefix: String,
    part_size: usize,
    parts_in_flight: usize,
}

impl std::fmt::Debug for ObjectBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectBackend")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("base", &self.base)
            .finish()
    }
}

fn store_error(e: object_store::Error) -> StoreError {
    use object_store::Error as E;
    match e {
        E::NotFound { path, .. } => StoreError::NotFound(path),
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => StoreError::Denied(e.to_string()),
        other => StoreError::Unavailable(other.to_string()),
    }
}

impl ObjectBackend {
    /// An S3 (or S3-compatible) store.
    pub fn s3(id: &str, cfg: &S3Config) -> Result<Self, StoreError> {
        let store = AmazonS3Builder::new()
            .with_endpoint(cfg.endpoint.trim_end_matches('/'))
            .with_region(&cfg.region)
            .with_bucket_name(&cfg.bucket)
            .with_access_key_id(&cfg.access_key)
            .with_secret_access_key(cfg.secret_key.expose())
            .with_allow_http(cfg.endpoint.starts_with("http://"))
            .with_virtual_hosted_style_request(cfg.virtual_hosted_style)
            .build()
            .map_err(|e| StoreError::Config(e.to_string()))?;
        Ok(ObjectBackend {
            id: id.to_owned(),
            kind: "s3",
            store: Arc::new(store),
            base: format!("s3://{}/", cfg.bucket),
            prefix: cfg.prefix.clone(),
            part_size: cfg.part_size.max(5 << 20),
            parts_in_flight: cfg.parts_in_flight.max(1),
        })
    }

    fn path_of(&self, location: &str) -> Result<Path, StoreError> {
        let key = location
            .strip_prefix(&self.base)
            .filter(|k| k.starts_with(&self.prefix) && k.len() > self.prefix.len())
            .ok_or_else(|| StoreError::ForeignLocation(location.to_owned()))?;
        Path::parse(key).map_err(|_| StoreError::ForeignLocation(location.to_owned()))
    }

    fn location_of(&self, key: &str) -> String {
        format!("{}{key}", self.base)
    }

    /// Writes `first` and the rest of `body` as a multipart upload.
    async fn put_multipart(
        &self,
        path: &Path,
        first: Vec<Bytes>,
        mut body: ByteStream,
    ) -> Result<u64, StoreError> {
        let upload = self.store.put_multipart(path).await.map_err(store_error)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.part_size);
        let mut size = 0;
        for chunk in first {
            size += chunk.len() as u64;
            writer.put(chunk);
        }
        loop {
            let next = match body.next().await {
                None => break,
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => {
                    let _ = writer.abort().await;
                    return Err(StoreError::Body(e));
                }
            };
            if let Err(e) = writer.wait_for_capacity(self.parts_in_flight).await {
                let _ = writer.abort().await;
                return Err(store_error(e));
            }
            size += next.len() as u64;
            writer.put(next);
        }
        writer.finish().await.map_err(store_error)?;
        Ok(size)
    }
}

#[async_trait]
impl Store for ObjectBackend {
    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        self.kind
    }

    fn owns(&self, location: &LocationUrl) -> bool {
        let location = location.as_str();
        self.path_of(location).is_ok()
    }
    async fn put(&self, image_id: &ImageId, mut body: ByteStream) -> Result<Stored, StoreError> {
        let image_id = image_id.as_str();
        if image_id.is_empty() || image_id.contains(['/', '\\', '.']) {
            return Err(StoreError::Io(std::io::Error::other("invalid object name")));
        }
        let key = format!("{}{image_id}", self.prefix);
        let path = Path::parse(&key).map_err(|e| StoreError::Config(e.to_string()))?;
        // Up to one part: a single PUT. More: a multipart upload.
        // The received chunks are kept as they are (no copy into one buffer).
        let mut head: Vec<Bytes> = Vec::new();
        let mut head_len = 0;
        while head_len < self.part_size {
            match body.next().await {
                None => break,
                Some(Ok(chunk)) => {
                    head_len += chunk.len();
                    head.push(chunk);
                }
                Some(Err(e)) => return Err(StoreError::Body(e)),
            }
        }
        let size = if head_len < self.part_size {
            self.store
                .put(&path, head.into_iter().collect::<PutPayload>())
                .await
                .map_err(store_error)?;
            head_len as u64
        } else {
            self.put_multipart(&path, head, body).await?
        };
        Ok(Stored {
            location: self.location_of(&key).into(),
            size,
        })
    }

    async fn get(
        &self,
        location: &LocationUrl,
        range: Option<ByteRange>,
    ) -> Result<Fetched, StoreError> {
        let location = location.as_str();
        let path = self.path_of(location)?;
        let opts = GetOptions {
            range: range.map(|r| GetRange::Bounded(r.start..r.end + 1)),
            ..GetOptions::default()
        };
        let got = self
            .store
            .get_opts(&path, opts)
            .await
            .map_err(store_error)?;
        let total_size = got.meta.size;
        let body = got
            .into_stream()
            .map_err(|e| std::io::Error::other(e.to_string()))
            .boxed();
        Ok(Fetched { total_size, body })
    }

    async fn size(&self, location: &LocationUrl) -> Result<u64, StoreError> {
        let location = location.as_str();
        let path = self.path_of(location)?;
        Ok(self.store.head(&path).await.map_err(store_error)?.size)
    }

    async fn delete(&self, location: &LocationUrl) -> Result<(), StoreError> {
        let location = location.as_str();
        let path = self.path_of(location)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn abort_partial(&self, _image_id: &ImageId) -> Result<(), StoreError> {
        // An unfinished multipart upload is invisible; the bucket's lifecycle rule reclaims it.
        Ok(())
    }

    async fn list(&self) -> Result<Vec<ListedObject>, StoreError> {
        let prefix = (!self.prefix.is_empty())
            .then(|| Path::parse(self.prefix.trim_end_matches('/')))
            .transpose()
            .map_err(|e| StoreError::Config(e.to_string()))?;
        let metas: Vec<_> = self
            .store
            .list(prefix.as_ref())
            .try_collect()
            .await
            .map_err(store_error)?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let key = m.location.to_string();
                let image_id = key.strip_prefix(&self.prefix)?.to_owned();
                Some(ListedObject {
                    location: self.location_of(&key).into(),
                    image_id,
                    modified: m.last_modified.into(),
                    partial: false,
                })
            })
            .collect())
    }

    async fn delete_listed(&self, obj: &ListedObject) -> Result<(), StoreError> {
        self.delete(&obj.location).await
    }
}
