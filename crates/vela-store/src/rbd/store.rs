//! The RBD store itself: uploads, reads, deletes and listing over [`super::librbd`].

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::BytesMut;
use futures::StreamExt;

use super::librbd::{Cluster, Image, IoCtx};
use super::location::{self, RbdLocation};
use super::RbdConfig;
use crate::{
    ByteRange, ByteStream, Fetched, ImageId, ListedObject, LocationUrl, Store, StoreError, Stored,
};

/// The snapshot every stored image carries (Glance's name).
const SNAP: &str = "snap";
/// Largest growth step of an image while data streams in (Glance's 8 GiB).
const MAX_GROWTH: u64 = 8 << 30;

/// A Ceph RBD store.
pub struct RbdStore {
    id: String,
    cfg: RbdConfig,
    cluster: Mutex<Option<Arc<Cluster>>>,
}

impl std::fmt::Debug for RbdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RbdStore")
            .field("id", &self.id)
            .field("pool", &self.cfg.pool)
            .finish()
    }
}

/// Runs a blocking librbd call on tokio's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))?
}

impl RbdStore {
    pub fn new(id: &str, cfg: RbdConfig) -> Result<Self, StoreError> {
        if !cfg.chunk_size.is_power_of_two() || cfg.chunk_size < 4096 {
            return Err(StoreError::Config(
                "the chunk size must be a power of two of at least 4 KiB".into(),
            ));
        }
        Ok(RbdStore {
            id: id.to_owned(),
            cfg,
            cluster: Mutex::new(None),
        })
    }

    /// The cluster connection, made on first use and kept.
    async fn cluster(&self) -> Result<Arc<Cluster>, StoreError> {
        if let Some(c) = self.cluster.lock().map_err(poisoned)?.as_ref() {
            return Ok(c.clone());
        }
        let cfg = self.cfg.clone();
        let c = Arc::new(blocking(move || Cluster::connect(&cfg)).await?);
        let mut slot = self.cluster.lock().map_err(poisoned)?;
        Ok(slot.get_or_insert(c).clone())
    }

    async fn ioctx(&self, pool: Option<&str>) -> Result<IoCtx, StoreError> {
        let cluster = self.cluster().await?;
        let pool = pool.unwrap_or(&self.cfg.pool).to_owned();
        blocking(move || cluster.ioctx(&pool)).await
    }

    fn location_of(&self, fsid: &str, image: &str) -> String {
        location::format(fsid, &self.cfg.pool, image, SNAP)
    }

    fn parse(&self, location: &str) -> Result<RbdLocation, StoreError> {
        RbdLocation::parse(location)
            .filter(|l| l.pool.as_deref().is_none_or(|p| p == self.cfg.pool))
            .ok_or_else(|| StoreError::ForeignLocation(location.to_owned()))
    }

    /// Opens the data of a location read-only, at its snapshot.
    async fn open_location(&self, location: &str) -> Result<Image, StoreError> {
        let loc = self.parse(location)?;
        let io = self.ioctx(loc.pool.as_deref()).await?;
        blocking(move || Image::open(io, &loc.image, loc.snap.as_deref(), true)).await
    }

    /// Removes an image with its snapshot (see [`IoCtx::remove_image`]).
    async fn remove(
        &self,
        pool: Option<String>,
        name: String,
        snap: Option<String>,
    ) -> Result<(), StoreError> {
        let io = self.ioctx(pool.as_deref()).await?;
        blocking(move || io.remove_image(&name, snap.as_deref())).await
    }

    /// Streams `body` into `image`, growing it ahead of the data and trimming it to the data
    /// at the end; gives the image back with the size written.
    async fn put_inner(
        &self,
        mut image: Image,
        mut body: ByteStream,
    ) -> Result<(Image, u64), StoreError> {
        let chunk = self.cfg.chunk_size as usize;
        let mut buf = BytesMut::with_capacity(chunk);
        let (mut written, mut capacity, mut step) = (0u64, 0u64, self.cfg.chunk_size);
        let mut ended = false;
        while !ended {
            while buf.len() < chunk {
                match body.next().await {
                    Some(Ok(b)) => buf.extend_from_slice(&b),
                    Some(Err(e)) => return Err(StoreError::Body(e)),
                    None => {
                        ended = true;
                        break;
                    }
                }
            }
            if buf.is_empty() {
                break;
            }
            let data = buf.split().freeze();
            let len = data.len() as u64;
            // Grow ahead of the data in doubling steps (at most 8 GiB), trimmed at the end.
            let grow_to = if written + len > capacity {
                step = (step * 2).min(MAX_GROWTH);
                capacity = (written + len).max(capacity + step);
                Some(capacity)
            } else {
                None
            };
            let ofs = written;
            image = blocking(move || {
                if let Some(size) = grow_to {
                    image.resize(size)?;
                }
                image.write_at(ofs, &data)?;
                Ok(image)
            })
            .await?;
            written += len;
        }
        blocking(move || {
            image.resize(written)?;
            image.flush()?;
            Ok((image, written))
        })
        .await
    }
}

/// Bytes `start..end` of an open image, read `chunk` bytes at a time on the blocking pool
/// (one chunk in memory); `guard` lives as long as the stream (what keeps the image
/// reachable, such as a Cinder attachment).
pub(crate) fn read_chunks<G: Send + 'static>(
    image: Arc<Mutex<Image>>,
    start: u64,
    end: u64,
    chunk: u64,
    guard: G,
) -> ByteStream {
    futures::stream::unfold(
        (image, guard, start),
        move |(image, guard, ofs)| async move {
            if ofs >= end {
                return None;
            }
            let len = (end - ofs).min(chunk) as usize;
            let img = image.clone();
            let read = blocking(move || img.lock().map_err(poisoned)?.read_exact(ofs, len)).await;
            match read {
                Ok(b) => Some((Ok(b), (image, guard, ofs + len as u64))),
                Err(e) => Some((
                    Err(std::io::Error::other(e.to_string())),
                    (image, guard, end),
                )),
            }
        },
    )
    .boxed()
}

pub(crate) fn poisoned<T>(_: T) -> StoreError {
    StoreError::Io(std::io::Error::other("RBD store lock poisoned"))
}

#[async_trait]
impl Store for RbdStore {
    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "rbd"
    }

    fn owns(&self, location: &LocationUrl) -> bool {
        let location = location.as_str();
        self.parse(location).is_ok()
    }

    async fn put(&self, image_id: &ImageId, body: ByteStream) -> Result<Stored, StoreError> {
        let image_id = image_id.as_str();
        let io = self.ioctx(None).await?;
        let fsid = io.cluster.fsid.clone();
        let name = image_id.to_owned();
        let order = u64::from(self.cfg.chunk_size.trailing_zeros());
        let image = blocking(move || {
            io.create_image(&name, order)?;
            Image::open(io, &name, None, false)
        })
        .await?;
        let result = match self.put_inner(image, body).await {
            Ok((image, size)) => blocking(move || image.snapshot_protected(SNAP))
                .await
                .map(|()| size),
            Err(e) => Err(e),
        };
        match result {
            Ok(size) => Ok(Stored {
                location: self.location_of(&fsid, image_id).into(),
                size,
            }),
            Err(e) => {
                if let Err(del) = self
                    .remove(None, image_id.to_owned(), Some(SNAP.to_owned()))
                    .await
                {
                    tracing::error!(image_id, error = %del, "could not remove a failed RBD upload");
                }
                Err(e)
            }
        }
    }

    async fn get(
        &self,
        location: &LocationUrl,
        range: Option<ByteRange>,
    ) -> Result<Fetched, StoreError> {
        let location = location.as_str();
        let image = self.open_location(location).await?;
        let image = Arc::new(Mutex::new(image));
        let img = image.clone();
        let total = blocking(move || img.lock().map_err(poisoned)?.size()).await?;
        let (start, end) = match range {
            Some(r) => (r.start, r.end + 1),
            None => (0, total),
        };
        let body = read_chunks(image, start, end, self.cfg.chunk_size, ());
        Ok(Fetched {
            total_size: total,
            body,
        })
    }

    async fn size(&self, location: &LocationUrl) -> Result<u64, StoreError> {
        let location = location.as_str();
        let image = self.open_location(location).await?;
        blocking(move || image.size()).await
    }

    async fn delete(&self, location: &LocationUrl) -> Result<(), StoreError> {
        let location = location.as_str();
        let loc = self.parse(location)?;
        self.remove(loc.pool, loc.image, loc.snap).await
    }

    /// The upload wrote an image named by the image id (perhaps without its snapshot yet).
    async fn abort_partial(&self, image_id: &ImageId) -> Result<(), StoreError> {
        let image_id = image_id.as_str();
        self.remove(None, image_id.to_owned(), Some(SNAP.to_owned()))
            .await
    }

    /// The pool's images named by an image id (other services' images, such as Nova's
    /// `<id>_disk` or Cinder's `volume-<id>`, are never listed). An image without its
    /// snapshot is a partial upload.
    async fn list(&self) -> Result<Vec<ListedObject>, StoreError> {
        let io = self.ioctx(None).await?;
        let pool = self.cfg.pool.clone();
        let objects = blocking(move || {
            let mut out = Vec::new();
            for name in io.list_names()? {
                if uuid::Uuid::parse_str(&name).is_err() {
                    continue;
                }
                let Some(info) = io.describe(&name, SNAP)? else {
                    continue;
                };
                out.push(ListedObject {
                    location: location::format(&io.cluster.fsid, &pool, &name, SNAP).into(),
                    image_id: name,
                    modified: info.created,
                    partial: !info.has_snap,
                });
            }
            Ok(out)
        })
        .await?;
        Ok(objects)
    }

    async fn delete_listed(&self, obj: &ListedObject) -> Result<(), StoreError> {
        let snap = (!obj.partial).then(|| SNAP.to_owned());
        self.remove(None, obj.image_id.clone(), snap).await
    }
}
