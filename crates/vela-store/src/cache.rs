//! The image cache: verified copies of image data on this node's local disk, so that a node
//! in front of a remote store (S3, Swift, RBD, HTTP) serves popular images itself.
//!
//! The cache directory holds:
//! - `<image id>`: complete data, whose size and checksums matched the image's as it was
//!   written;
//! - `<image id>.json`: its [`Record`] (size, checksums, hits, times);
//! - `incomplete/<image id>.<uuid>`: a fill in progress, never served;
//! - `queue/<image id>`: an image queued for prefetching.
//!
//! A fill writes into `incomplete/`, hashing what passes, and only when the stream has ended
//! and size, MD5 and multihash match the image's does it write the record and rename the data
//! into place (record first, data second; eviction removes them in the other order). A lookup
//! needs the record, the data, and a record that matches the image's checksums now, so partial,
//! tampered or stale files are never served.

use std::collections::HashSet;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use vela_domain::{Image, ImageId};

use crate::digest::{self, HashAlgo, Limits};
use crate::fs::{create_private_dir, create_private_file, read_stream};
use crate::{ByteRange, ByteStream};

const INCOMPLETE: &str = "incomplete";
const QUEUE: &str = "queue";
const RECORD_EXT: &str = ".json";
/// Chunks in flight between a download and the cache writer.
const FILL_QUEUE: usize = 8;
/// A record without data younger than this may be a fill being committed.
const COMMIT_GRACE: Duration = Duration::from_secs(60);

/// Where and how much to cache.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    pub dir: PathBuf,
    /// Total bytes kept after pruning; larger images are never cached.
    pub max_size: u64,
    /// Partial files older than this are removed by [`ImageCache::clean`].
    pub stall_time: Duration,
}

/// Why a fill did not produce a cached file.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache I/O: {0}")]
    Io(#[from] io::Error),
    #[error("the data does not match the image: {0}")]
    Mismatch(String),
    #[error("the data stream ended early")]
    Incomplete,
}

/// What cached data of an image must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub size: u64,
    pub md5: String,
    pub algo: HashAlgo,
    pub hash: String,
}

impl Expected {
    /// The image's size and checksums; None when there is nothing to verify data against.
    pub fn of(img: &Image) -> Option<Self> {
        let size = u64::try_from(img.size?).ok()?;
        let md5 = img.checksum.clone()?;
        let (algo, hash) = match (&img.os_hash_algo, &img.os_hash_value) {
            (Some(a), Some(h)) => (HashAlgo::parse(a)?, h.clone()),
            _ => (HashAlgo::Md5, md5.clone()),
        };
        Some(Expected {
            size,
            md5,
            algo,
            hash,
        })
    }
}

/// The record kept beside each cached file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    size: u64,
    checksum: String,
    os_hash_algo: String,
    os_hash_value: String,
    /// When the data was cached (seconds since the epoch).
    last_modified: f64,
    last_accessed: f64,
    hits: u64,
}

impl Record {
    fn matches(&self, want: &Expected) -> bool {
        self.size == want.size
            && self.checksum.eq_ignore_ascii_case(&want.md5)
            && self.os_hash_algo == want.algo.name()
            && self.os_hash_value.eq_ignore_ascii_case(&want.hash)
    }
}

/// A cached image as `GET /v2/cache` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CachedImage {
    pub image_id: String,
    pub hits: u64,
    pub last_accessed: f64,
    pub last_modified: f64,
    pub size: u64,
}

/// What [`ImageCache::prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Pruned {
    pub total_files_pruned: u64,
    pub total_bytes_pruned: u64,
}

/// A cached file, open for reading.
#[derive(Debug)]
pub struct Hit {
    file: std::fs::File,
    /// Size of the whole image.
    pub size: u64,
}

impl Hit {
    /// Streams the whole file or one range of it.
    pub fn stream(self, range: Option<ByteRange>) -> ByteStream {
        match range {
            None => read_stream(self.file, 0, self.size),
            Some(r) => read_stream(self.file, r.start, r.len()),
        }
    }
}

/// This node's image cache. Cloning shares it.
#[derive(Debug, Clone)]
pub struct ImageCache {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    max_size: u64,
    stall_time: Duration,
    /// Images being written now (one fill per image at a time).
    filling: Mutex<HashSet<String>>,
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn older_than(meta: &std::fs::Metadata, age: Duration) -> bool {
    meta.modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .is_some_and(|a| a > age)
}

fn remove(path: &Path) -> io::Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}

impl ImageCache {
    /// Opens (and creates) the cache directory.
    pub fn open(settings: CacheSettings) -> io::Result<Self> {
        create_private_dir(&settings.dir.join(INCOMPLETE))?;
        create_private_dir(&settings.dir.join(QUEUE))?;
        let cache = ImageCache {
            inner: Arc::new(Inner {
                dir: settings.dir.canonicalize()?,
                max_size: settings.max_size,
                stall_time: settings.stall_time,
                filling: Mutex::new(HashSet::new()),
            }),
        };
        Ok(cache)
    }

    /// Removes every partial file: for a server starting, whose node fills nothing yet.
    pub async fn remove_partials(&self) -> io::Result<usize> {
        let dir = self.inner.dir.join(INCOMPLETE);
        blocking(move || {
            let mut n = 0;
            for entry in std::fs::read_dir(dir)? {
                if remove(&entry?.path())? {
                    n += 1;
                }
            }
            Ok(n)
        })
        .await
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The configured size limit.
    pub fn max_size(&self) -> u64 {
        self.inner.max_size
    }

    fn data_path(&self, id: &str) -> PathBuf {
        self.inner.dir.join(id)
    }

    fn record_path(&self, id: &str) -> PathBuf {
        self.inner.dir.join(format!("{id}{RECORD_EXT}"))
    }

    fn queue_path(&self, id: &str) -> PathBuf {
        self.inner.dir.join(QUEUE).join(id)
    }

    fn temp_path(&self, id: &str) -> PathBuf {
        self.inner
            .dir
            .join(INCOMPLETE)
            .join(format!("{id}.{}", uuid::Uuid::new_v4().simple()))
    }

    fn read_record(&self, id: &str) -> Option<Record> {
        let raw = std::fs::read(self.record_path(id)).ok()?;
        serde_json::from_slice(&raw).ok()
    }

    /// Writes `rec` as `id`'s record (temp file, then rename).
    fn write_record(&self, id: &str, rec: &Record) -> io::Result<()> {
        let tmp = self.temp_path(id);
        let written = (|| {
            let mut f = create_private_file(&tmp)?;
            f.write_all(&serde_json::to_vec(rec).map_err(io::Error::other)?)?;
            f.sync_all()?;
            std::fs::rename(&tmp, self.record_path(id))
        })();
        if written.is_err() {
            let _ = remove(&tmp);
        }
        written
    }

    fn lookup_sync(&self, id: &str, want: &Expected) -> Option<Hit> {
        let rec = self.read_record(id)?;
        let file = std::fs::File::open(self.data_path(id)).ok()?;
        let size = file.metadata().ok()?.len();
        if !rec.matches(want) || size != rec.size {
            tracing::warn!(
                image_id = id,
                "cached data does not match the image; evicting it"
            );
            drop(file);
            let _ = self.evict_sync(id);
            return None;
        }
        Some(Hit { file, size })
    }

    /// The cached data of `id`, if it is there and matches `want`. A cached file that does not
    /// match is evicted.
    pub async fn lookup(&self, id: &ImageId, want: &Expected) -> Option<Hit> {
        let (this, id, want) = (self.clone(), id.as_str().to_owned(), want.clone());
        blocking(move || Ok(this.lookup_sync(&id, &want)))
            .await
            .ok()
            .flatten()
    }

    /// Counts a hit on `id`.
    pub async fn touch(&self, id: &ImageId) {
        let (this, id) = (self.clone(), id.as_str().to_owned());
        let touched = blocking(move || {
            let Some(mut rec) = this.read_record(&id) else {
                return Ok(());
            };
            rec.hits += 1;
            rec.last_accessed = now_secs();
            if this.data_path(&id).exists() {
                this.write_record(&id, &rec)?;
            }
            Ok(())
        })
        .await;
        if let Err(e) = touched {
            tracing::warn!(error = %e, "could not record a cache hit");
        }
    }

    fn evict_sync(&self, id: &str) -> io::Result<bool> {
        let had_record = remove(&self.record_path(id))?;
        let had_data = remove(&self.data_path(id))?;
        Ok(had_record || had_data)
    }

    /// Removes `id`'s cached data; true if there was some.
    pub async fn evict(&self, id: &ImageId) -> io::Result<bool> {
        let (this, id) = (self.clone(), id.as_str().to_owned());
        blocking(move || this.evict_sync(&id)).await
    }

    /// Ids of the names in `dir` that are image ids after removing `suffix`.
    fn ids_in(dir: &Path, suffix: &str) -> io::Result<Vec<(String, std::fs::Metadata)>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(suffix)) else {
                continue;
            };
            if ImageId::parse(id).is_none() {
                continue;
            }
            let meta = entry.metadata()?;
            if meta.is_file() {
                out.push((id.to_owned(), meta));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn list_sync(&self) -> io::Result<Vec<CachedImage>> {
        let mut out = Vec::new();
        for (id, _) in Self::ids_in(&self.inner.dir, RECORD_EXT)? {
            let Some(rec) = self.read_record(&id) else {
                continue;
            };
            if !self.data_path(&id).is_file() {
                continue;
            }
            out.push(CachedImage {
                image_id: id,
                hits: rec.hits,
                last_accessed: rec.last_accessed,
                last_modified: rec.last_modified,
                size: rec.size,
            });
        }
        Ok(out)
    }

    /// The complete cached images.
    pub async fn list(&self) -> io::Result<Vec<CachedImage>> {
        let this = self.clone();
        blocking(move || this.list_sync()).await
    }

    /// Evicts every cached image; returns how many there were.
    pub async fn clear(&self) -> io::Result<usize> {
        let this = self.clone();
        blocking(move || {
            let mut n = 0;
            for img in this.list_sync()? {
                if this.evict_sync(&img.image_id)? {
                    n += 1;
                }
            }
            Ok(n)
        })
        .await
    }

    /// Queues `id` for prefetching.
    pub async fn queue(&self, id: &ImageId) -> io::Result<()> {
        let path = self.queue_path(id.as_str());
        blocking(move || create_private_file(&path).map(drop)).await
    }

    /// Takes `id` off the queue; true if it was queued.
    pub async fn dequeue(&self, id: &ImageId) -> io::Result<bool> {
        let path = self.queue_path(id.as_str());
        blocking(move || remove(&path)).await
    }

    /// The queued image ids, oldest first.
    pub async fn queued(&self) -> io::Result<Vec<String>> {
        let dir = self.inner.dir.join(QUEUE);
        blocking(move || {
            let mut ids = Self::ids_in(&dir, "")?;
            ids.sort_by_key(|(_, m)| m.modified().ok());
            Ok(ids.into_iter().map(|(id, _)| id).collect())
        })
        .await
    }

    /// Empties the queue; returns how many images were queued.
    pub async fn clear_queue(&self) -> io::Result<usize> {
        let dir = self.inner.dir.join(QUEUE);
        blocking(move || {
            let mut n = 0;
            for (id, _) in Self::ids_in(&dir, "")? {
                if remove(&dir.join(id))? {
                    n += 1;
                }
            }
            Ok(n)
        })
        .await
    }

    fn prune_sync(&self) -> io::Result<Pruned> {
        let mut images = self.list_sync()?;
        let mut total: u64 = images.iter().map(|i| i.size).sum();
        let mut pruned = Pruned::default();
        images.sort_by(|a, b| a.last_accessed.total_cmp(&b.last_accessed));
        for img in images {
            if total <= self.inner.max_size {
                break;
            }
            if self.evict_sync(&img.image_id)? {
                tracing::info!(image_id = %img.image_id, size = img.size, "pruned from the image cache");
                pruned.total_files_pruned += 1;
                pruned.total_bytes_pruned += img.size;
            }
            total = total.saturating_sub(img.size);
        }
        Ok(pruned)
    }

    /// Evicts the least recently used images until the cache fits its size limit.
    pub async fn prune(&self) -> io::Result<Pruned> {
        let this = self.clone();
        blocking(move || this.prune_sync()).await
    }

    /// Removes partial files older than the stall time and records or data missing their other
    /// half; returns how many files went.
    pub async fn clean(&self) -> io::Result<usize> {
        let this = self.clone();
        blocking(move || {
            let mut n = 0;
            let filling = this.filling_now();
            for entry in std::fs::read_dir(this.inner.dir.join(INCOMPLETE))? {
                let entry = entry?;
                let meta = entry.metadata()?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let id = name.split('.').next().unwrap_or("");
                let stalled = older_than(&meta, this.inner.stall_time);
                let abandoned = !filling.contains(id) && older_than(&meta, COMMIT_GRACE);
                if (stalled || abandoned) && remove(&entry.path())? {
                    n += 1;
                }
            }
            for (id, meta) in Self::ids_in(&this.inner.dir, RECORD_EXT)? {
                let orphan = !this.data_path(&id).is_file() && older_than(&meta, COMMIT_GRACE);
                let unreadable = this.read_record(&id).is_none();
                if (orphan || unreadable) && this.evict_sync(&id)? {
                    n += 1;
                }
            }
            for (id, _) in Self::ids_in(&this.inner.dir, "")? {
                if !this.record_path(&id).is_file() && remove(&this.data_path(&id))? {
                    n += 1;
                }
            }
            Ok(n)
        })
        .await
    }

    fn filling_now(&self) -> HashSet<String> {
        self.inner
            .filling
            .lock()
            .map(|f| f.clone())
            .unwrap_or_default()
    }

    /// Starts filling the cache with `id`'s data, unless it is being filled already or is
    /// larger than the whole cache.
    pub fn begin(&self, id: &ImageId, want: Expected) -> Option<Fill> {
        if want.size > self.inner.max_size {
            return None;
        }
        let mut filling = self.inner.filling.lock().ok()?;
        if !filling.insert(id.as_str().to_owned()) {
            return None;
        }
        Some(Fill {
            cache: self.clone(),
            id: id.as_str().to_owned(),
            want,
        })
    }
}

/// A fill of one image; releases its claim when dropped.
#[derive(Debug)]
pub struct Fill {
    cache: ImageCache,
    id: String,
    want: Expected,
}

impl Drop for Fill {
    fn drop(&mut self) {
        if let Ok(mut f) = self.cache.inner.filling.lock() {
            f.remove(&self.id);
        }
    }
}

/// The download side of a fill: passes the data on and copies it to the cache writer.
struct Tee {
    inner: ByteStream,
    to_writer: Option<mpsc::Sender<Bytes>>,
    ended: Option<oneshot::Sender<()>>,
    /// Bytes passed so far, and the image's size.
    seen: u64,
    size: u64,
    /// An item read ahead while looking for the end.
    pending: Option<io::Result<Bytes>>,
    done: bool,
}

impl Tee {
    /// The data ended: the copy is complete.
    fn finish(&mut self) {
        self.to_writer = None;
        if let Some(ended) = self.ended.take() {
            let _ = ended.send(());
        }
        self.done = true;
    }

    async fn next(&mut self) -> Option<io::Result<Bytes>> {
        if self.done {
            return None;
        }
        let item = match self.pending.take() {
            Some(p) => Some(p),
            None => self.inner.next().await,
        };
        match item {
            Some(Ok(chunk)) => {
                self.seen += chunk.len() as u64;
                if let Some(w) = &self.to_writer {
                    if w.send(chunk.clone()).await.is_err() {
                        self.to_writer = None;
                    }
                }
                // An HTTP server stops polling a body once its Content-Length went out, so
                // the end is looked for as soon as all the bytes have passed.
                if self.seen >= self.size && !self.done {
                    match self.inner.next().await {
                        None => self.finish(),
                        Some(more) => self.pending = Some(more),
                    }
                }
                Some(Ok(chunk))
            }
            Some(Err(e)) => {
                self.to_writer = None;
                self.ended = None;
                Some(Err(e))
            }
            None => {
                self.finish();
                None
            }
        }
    }
}

impl Fill {
    /// Passes `body` through, copying it into the cache. The returned task ends with the
    /// fill's outcome once the stream has ended (or was dropped, which abandons the fill).
    /// The copy follows the stream's pace; a writer that fails only stops the copy.
    pub fn tee(self, body: ByteStream) -> (ByteStream, JoinHandle<Result<(), CacheError>>) {
        let (digested, digest) = digest::digesting(body, self.want.algo, Limits::default());
        let (tx, mut rx) = mpsc::channel::<Bytes>(FILL_QUEUE);
        let (ended_tx, ended_rx) = oneshot::channel();
        let tmp = self.cache.temp_path(&self.id);
        let limit = self.want.size;
        let path = tmp.clone();
        let writer = tokio::task::spawn_blocking(move || -> io::Result<u64> {
            let mut f = create_private_file(&path)?;
            let mut n: u64 = 0;
            while let Some(chunk) = rx.blocking_recv() {
                n += chunk.len() as u64;
                if n > limit {
                    return Err(io::Error::other("more data than the image's size"));
                }
                f.write_all(&chunk)?;
            }
            f.sync_all()?;
            Ok(n)
        });
        let task = tokio::spawn(async move {
            let outcome = async {
                let written = writer.await.map_err(io::Error::other)??;
                ended_rx.await.map_err(|_| CacheError::Incomplete)?;
                let got = digest
                    .finish()
                    .await
                    .map_err(|e| CacheError::Mismatch(e.to_string()))?;
                let w = &self.want;
                if written != w.size
                    || got.size != w.size
                    || !got.md5.eq_ignore_ascii_case(&w.md5)
                    || !got.hash.eq_ignore_ascii_case(&w.hash)
                {
                    return Err(CacheError::Mismatch(format!(
                        "{} bytes, md5 {}, {} {}",
                        got.size,
                        got.md5,
                        w.algo.name(),
                        got.hash
                    )));
                }
                let (cache, id, tmp) = (self.cache.clone(), self.id.clone(), tmp.clone());
                let now = now_secs();
                let rec = Record {
                    size: w.size,
                    checksum: w.md5.to_ascii_lowercase(),
                    os_hash_algo: w.algo.name().to_owned(),
                    os_hash_value: w.hash.to_ascii_lowercase(),
                    last_modified: now,
                    last_accessed: now,
                    hits: 0,
                };
                blocking(move || {
                    cache.write_record(&id, &rec)?;
                    std::fs::rename(&tmp, cache.data_path(&id))?;
                    std::fs::File::open(cache.dir())?.sync_all()
                })
                .await?;
                Ok(())
            }
            .await;
            match &outcome {
                Ok(()) => {
                    tracing::info!(image_id = %self.id, size = self.want.size, "image cached");
                    if let Err(e) = self.cache.prune().await {
                        tracing::warn!(error = %e, "could not prune the image cache");
                    }
                }
                Err(e) => {
                    let _ = blocking(move || remove(&tmp)).await;
                    tracing::info!(image_id = %self.id, error = %e, "image not cached");
                }
            }
            outcome
        });
        let tee = Tee {
            inner: digested,
            to_writer: Some(tx),
            ended: Some(ended_tx),
            seen: 0,
            size: limit,
            pending: None,
            done: false,
        };
        let stream = futures::stream::unfold(tee, |mut t| async move {
            let item = t.next().await?;
            Some((item, t))
        })
        .boxed();
        (stream, task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected(data: &[u8]) -> Expected {
        use md5::Digest as _;
        Expected {
            size: data.len() as u64,
            md5: hex::encode(md5::Md5::digest(data)),
            algo: HashAlgo::Sha512,
            hash: hex::encode(sha2::Sha512::digest(data)),
        }
    }

    fn body(chunks: Vec<&'static [u8]>) -> ByteStream {
        futures::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from_static(c)))).boxed()
    }

    fn open(dir: &Path, max_size: u64) -> ImageCache {
        ImageCache::open(CacheSettings {
            dir: dir.to_path_buf(),
            max_size,
            stall_time: Duration::from_secs(3600),
        })
        .unwrap()
    }

    async fn drain(mut s: ByteStream) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn verified_fill_is_served_and_pruned_lru() {
        let dir = tempfile::tempdir().unwrap();
        let cache = open(dir.path(), 10);
        let (a, b) = (ImageId::generate(), ImageId::generate());
        let data: &'static [u8] = b"abcdef";
        let fill = cache.begin(&a, expected(data)).unwrap();
        assert!(
            cache.begin(&a, expected(data)).is_none(),
            "one fill at a time"
        );
        let (s, task) = fill.tee(body(vec![b"abc", b"def"]));
        assert_eq!(drain(s).await, data);
        task.await.unwrap().unwrap();
        let hit = cache.lookup(&a, &expected(data)).await.unwrap();
        assert_eq!(
            drain(hit.stream(Some(ByteRange { start: 2, end: 3 }))).await,
            b"cd"
        );
        cache.touch(&a).await;
        assert_eq!(cache.list().await.unwrap()[0].hits, 1);
        // A second image pushes the total over 10 bytes: the least recently used one goes.
        let (s, task) = cache
            .begin(&b, expected(data))
            .unwrap()
            .tee(body(vec![data]));
        drain(s).await;
        task.await.unwrap().unwrap();
        let left: Vec<_> = cache
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.image_id)
            .collect();
        assert_eq!(left, vec![b.as_str().to_owned()]);
    }

    #[tokio::test]
    async fn wrong_or_partial_data_is_never_cached() {
        let dir = tempfile::tempdir().unwrap();
        let cache = open(dir.path(), 16 << 20);
        let id = ImageId::generate();
        // Same size, other bytes.
        let (s, task) = cache
            .begin(&id, expected(b"abcdef"))
            .unwrap()
            .tee(body(vec![b"abcdeX"]));
        drain(s).await;
        assert!(matches!(task.await.unwrap(), Err(CacheError::Mismatch(_))));
        // The client goes away half way.
        let big = vec![7u8; 3 * digest::CHUNK];
        let chunks = big
            .chunks(digest::CHUNK)
            .map(|c| Ok(Bytes::copy_from_slice(c)));
        let (mut s, task) = cache
            .begin(&id, expected(&big))
            .unwrap()
            .tee(futures::stream::iter(chunks.collect::<Vec<_>>()).boxed());
        s.next().await.unwrap().unwrap();
        drop(s);
        let r = task.await.unwrap();
        assert!(matches!(r, Err(CacheError::Incomplete)), "{r:?}");
        assert!(cache.lookup(&id, &expected(&big)).await.is_none());
        assert!(cache.list().await.unwrap().is_empty());
        assert_eq!(
            std::fs::read_dir(dir.path().join(INCOMPLETE))
                .unwrap()
                .count(),
            0
        );
    }

    #[tokio::test]
    async fn stale_records_are_evicted_and_queue_persists() {
        let dir = tempfile::tempdir().unwrap();
        let cache = open(dir.path(), 1 << 20);
        let id = ImageId::generate();
        let (s, task) = cache
            .begin(&id, expected(b"xyz"))
            .unwrap()
            .tee(body(vec![b"xyz"]));
        drain(s).await;
        task.await.unwrap().unwrap();
        // The image now says other checksums: the cached copy is not served, and goes.
        assert!(cache.lookup(&id, &expected(b"xyZ")).await.is_none());
        assert!(cache.list().await.unwrap().is_empty());
        cache.queue(&id).await.unwrap();
        let reopened = open(dir.path(), 1 << 20);
        assert_eq!(
            reopened.queued().await.unwrap(),
            vec![id.as_str().to_owned()]
        );
        assert!(reopened.dequeue(&id).await.unwrap());
        assert_eq!(reopened.clear_queue().await.unwrap(), 0);
    }
}
