//! The Cinder store: volumes through [`super::api`], data through librbd.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use futures::StreamExt;
use serde_json::json;
use tokio::sync::Mutex;

use super::api::{Attachment, CinderApi, Connection, Volume};
use super::{volume_of, CinderConfig};
use crate::rbd::librbd::{Cluster, Image};
use crate::rbd::store::{blocking, poisoned, read_chunks};
use crate::rbd::RbdConfig;
use crate::{
    ByteRange, ByteStream, Fetched, ImageId, ListedObject, LocationUrl, Store, StoreError, Stored,
};

const GIB: u64 = 1 << 30;
/// Bytes moved per librbd call.
const CHUNK: usize = 8 << 20;
/// The metadata key that marks an upload in progress (`partial`) or done (`complete`).
const UPLOAD_KEY: &str = "vela_upload";
/// Longest wait for another attachment of a volume to go away (a reader's, or one an attach
/// that failed half way left reserved).
const ATTACH_RETRY: Duration = Duration::from_secs(45);

/// Detaches in progress, by volume: a new reader of the volume waits for them first.
type Detaching = Arc<StdMutex<HashMap<String, tokio::task::JoinHandle<()>>>>;

/// A read-only attachment shared by this process's downloads of one volume (a volume that is
/// not multi-attach takes one attachment at a time); removed when the last download ends.
struct Reader {
    api: Arc<CinderApi>,
    volume: String,
    attachment: Attachment,
    detaching: Detaching,
}

impl Drop for Reader {
    fn drop(&mut self) {
        let (api, id) = (self.api.clone(), self.attachment.id.clone());
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let task = rt.spawn(async move {
            if let Err(e) = api.detach(&id).await {
                tracing::warn!(attachment = id, error = %e, "could not remove a read attachment");
            }
        });
        if let Ok(mut d) = self.detaching.lock() {
            d.insert(self.volume.clone(), task);
        }
    }
}

/// A Cinder store.
pub struct CinderStore {
    id: String,
    api: Arc<CinderApi>,
    /// Cluster connections by `user@monitors`.
    clusters: StdMutex<HashMap<String, Arc<Cluster>>>,
    /// Read attachments in use, by volume.
    readers: Mutex<HashMap<String, Weak<Reader>>>,
    detaching: Detaching,
}

impl std::fmt::Debug for CinderStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CinderStore")
            .field("id", &self.id)
            .field("auth_url", &self.api.config().auth.auth_url)
            .finish_non_exhaustive()
    }
}

impl CinderStore {
    pub fn new(id: &str, cfg: CinderConfig) -> Result<Self, StoreError> {
        Ok(CinderStore {
            id: id.to_owned(),
            api: Arc::new(CinderApi::new(cfg)?),
            clusters: StdMutex::new(HashMap::new()),
            readers: Mutex::new(HashMap::new()),
            detaching: Arc::default(),
        })
    }

    fn volume_id(&self, location: &LocationUrl) -> Result<String, StoreError> {
        volume_of(location.as_str(), &self.id)
            .ok_or_else(|| StoreError::ForeignLocation(location.as_str().to_owned()))
    }

    /// Opens the RBD image of a connection.
    async fn open(&self, conn: &Connection, read_only: bool) -> Result<Image, StoreError> {
        let Connection::Rbd {
            pool,
            image,
            monitors,
            user,
            auth_enabled,
        } = conn.clone();
        let key = format!("{user}@{monitors}");
        let known = self.clusters.lock().map_err(poisoned)?.get(&key).cloned();
        let cluster = match known {
            Some(c) => c,
            None => {
                let mut options = vec![("mon_host".to_owned(), monitors)];
                if !auth_enabled {
                    options.push(("auth_client_required".to_owned(), "none".to_owned()));
                }
                let cfg = RbdConfig {
                    pool: pool.clone(),
                    ceph_conf: self.api.config().ceph_conf.clone(),
                    user,
                    chunk_size: CHUNK as u64,
                    connect_timeout_secs: 30,
                    options,
                };
                let c = Arc::new(blocking(move || Cluster::connect(&cfg)).await?);
                let mut all = self.clusters.lock().map_err(poisoned)?;
                all.entry(key).or_insert(c).clone()
            }
        };
        blocking(move || {
            let io = cluster.ioctx(&pool)?;
            Image::open(io, &image, None, read_only)
        })
        .await
    }

    /// Writes `body` into the (available) volume through write attachments, growing it by
    /// 1 GiB at a time while the data outlasts it; the bytes written.
    async fn fill(&self, volume: &str, mut body: ByteStream) -> Result<u64, StoreError> {
        let mut capacity = self.api.wait_status(volume, &["available"]).await?.size * GIB;
        let mut buf = BytesMut::with_capacity(CHUNK);
        let (mut written, mut ended) = (0u64, false);
        loop {
            let attachment = self
                .api
                .attach_when_free(volume, "rw", ATTACH_RETRY)
                .await?;
            let result = async {
                let mut image = self.open(&attachment.connection, false).await?;
                let full = loop {
                    while !ended && buf.len() < CHUNK {
                        match body.next().await {
                            Some(Ok(b)) => buf.extend_from_slice(&b),
                            Some(Err(e)) => return Err(StoreError::Body(e)),
                            None => ended = true,
                        }
                    }
                    if buf.is_empty() {
                        break false;
                    }
                    let room = capacity - written;
                    if room == 0 {
                        break true;
                    }
                    let data = buf.split_to((buf.len() as u64).min(room) as usize).freeze();
                    let (ofs, n) = (written, data.len() as u64);
                    image = blocking(move || {
                        image.write_at(ofs, &data)?;
                        Ok(image)
                    })
                    .await?;
                    written += n;
                };
                blocking(move || image.flush()).await?;
                Ok(full)
            }
            .await;
            let detached = self.api.detach(&attachment.id).await;
            let full = result?;
            detached?;
            if !full {
                return Ok(written);
            }
            capacity += GIB;
            self.api.extend(volume, capacity / GIB).await?;
        }
    }

    /// A read attachment of the volume, shared with this process's other downloads of it.
    async fn reader(&self, volume: &str) -> Result<Arc<Reader>, StoreError> {
        let mut readers = self.readers.lock().await;
        readers.retain(|_, r| r.strong_count() > 0);
        if let Some(r) = readers.get(volume).and_then(Weak::upgrade) {
            return Ok(r);
        }
        // The last reader's attachment may still be going away.
        let pending = self.detaching.lock().map_err(poisoned)?.remove(volume);
        if let Some(task) = pending {
            let _ = task.await;
        }
        // Another node's reader may hold the volume (it is not multi-attach).
        let attachment = self
            .api
            .attach_when_free(volume, "ro", ATTACH_RETRY)
            .await?;
        let r = Arc::new(Reader {
            api: self.api.clone(),
            volume: volume.to_owned(),
            attachment,
            detaching: self.detaching.clone(),
        });
        readers.insert(volume.to_owned(), Arc::downgrade(&r));
        Ok(r)
    }

    /// A volume that holds complete image data, with its data size.
    async fn complete_volume(&self, volume: &str) -> Result<(Volume, u64), StoreError> {
        let vol = self
            .api
            .volume(volume)
            .await?
            .filter(|v| v.status != "deleting")
            .ok_or_else(|| StoreError::NotFound(format!("Cinder volume {volume}")))?;
        if vol.metadata.get(UPLOAD_KEY).map(String::as_str) == Some("partial") {
            return Err(StoreError::NotFound(format!(
                "Cinder volume {volume} (an unfinished upload)"
            )));
        }
        let size = vol
            .metadata
            .get("image_size")
            .and_then(|s| s.parse().ok())
            .unwrap_or(vol.size * GIB);
        Ok((vol, size))
    }

    /// Removes a volume with any attachments it was left with; waits until it is gone. A
    /// volume this process is reading is [`StoreError::InUse`].
    async fn remove_volume(&self, volume: &str) -> Result<(), StoreError> {
        if self
            .readers
            .lock()
            .await
            .get(volume)
            .is_some_and(|r| r.strong_count() > 0)
        {
            return Err(StoreError::InUse(format!(
                "Cinder volume {volume} is being read"
            )));
        }
        let pending = self.detaching.lock().map_err(poisoned)?.remove(volume);
        if let Some(task) = pending {
            let _ = task.await;
        }
        let Some(vol) = self.api.volume(volume).await? else {
            return Ok(());
        };
        if vol.status == "deleting" {
            return self.api.wait_gone(volume).await;
        }
        // Let a create, extend or detach in progress end first.
        if matches!(
            vol.status.as_str(),
            "creating" | "extending" | "detaching" | "attaching" | "downloading"
        ) {
            match self
                .api
                .wait_status(volume, &["available", "in-use", "reserved"])
                .await
            {
                Ok(_) | Err(StoreError::Unavailable(_)) => {}
                Err(StoreError::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        for attachment in self.api.attachments_of(volume).await? {
            self.api.detach(&attachment).await?;
        }
        if self.api.delete_volume(volume).await? {
            self.api.wait_gone(volume).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Store for CinderStore {
    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "cinder"
    }

    fn owns(&self, location: &LocationUrl) -> bool {
        volume_of(location.as_str(), &self.id).is_some()
    }

    async fn put(&self, image_id: &ImageId, body: ByteStream) -> Result<Stored, StoreError> {
        let image_id = image_id.as_str();
        let metadata = json!({"glance_image_id": image_id, UPLOAD_KEY: "partial"});
        let volume = self
            .api
            .create_volume(&format!("image-{image_id}"), 1, &metadata)
            .await?;
        let result = match self.fill(&volume, body).await {
            Ok(size) => self
                .api
                .set_metadata(
                    &volume,
                    &json!({UPLOAD_KEY: "complete", "image_size": size.to_string()}),
                )
                .await
                .map(|()| size),
            Err(e) => Err(e),
        };
        match result {
            Ok(size) => Ok(Stored {
                location: format!("cinder://{volume}").into(),
                size,
            }),
            Err(e) => {
                if let Err(del) = self.remove_volume(&volume).await {
                    tracing::error!(image_id, volume, error = %del,
                        "could not remove the volume of a failed upload");
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
        let volume = self.volume_id(location)?;
        let (_, total) = self.complete_volume(&volume).await?;
        let reader = self.reader(&volume).await?;
        let image = self.open(&reader.attachment.connection, true).await?;
        let (start, end) = match range {
            Some(r) => (r.start, r.end + 1),
            None => (0, total),
        };
        let image = Arc::new(StdMutex::new(image));
        let body = read_chunks(image, start, end, CHUNK as u64, reader);
        Ok(Fetched {
            total_size: total,
            body,
        })
    }

    async fn size(&self, location: &LocationUrl) -> Result<u64, StoreError> {
        let volume = self.volume_id(location)?;
        Ok(self.complete_volume(&volume).await?.1)
    }

    async fn delete(&self, location: &LocationUrl) -> Result<(), StoreError> {
        let volume = self.volume_id(location)?;
        self.remove_volume(&volume).await
    }

    /// The upload made a volume named `image-<image id>` still marked partial.
    async fn abort_partial(&self, image_id: &ImageId) -> Result<(), StoreError> {
        let name = format!("image-{}", image_id.as_str());
        for vol in self.api.volumes(Some(&name)).await? {
            if vol.metadata.get(UPLOAD_KEY).map(String::as_str) != Some("complete") {
                self.remove_volume(&vol.id).await?;
            }
        }
        Ok(())
    }

    /// The project's volumes named `image-<uuid>` (other volumes are never listed); those
    /// still marked partial are interrupted uploads.
    async fn list(&self) -> Result<Vec<ListedObject>, StoreError> {
        Ok(self
            .api
            .volumes(None)
            .await?
            .into_iter()
            .filter_map(|vol| {
                let image_id = vol.name.as_deref()?.strip_prefix("image-")?.to_owned();
                uuid::Uuid::parse_str(&image_id).ok()?;
                if vol.status == "deleting" {
                    return None;
                }
                Some(ListedObject {
                    location: format!("cinder://{}", vol.id).into(),
                    partial: vol.metadata.get(UPLOAD_KEY).map(String::as_str) == Some("partial"),
                    modified: vol.modified(),
                    image_id,
                })
            })
            .collect())
    }

    async fn delete_listed(&self, obj: &ListedObject) -> Result<(), StoreError> {
        self.delete(&obj.location).await
    }
}
