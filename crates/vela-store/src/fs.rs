//! The filesystem store: one file per image under a data directory.
//!
//! Writes go to `<dir>/.partial/<image>.<random>`, are synced, then renamed into place and the
//! directory is synced, so an image's file exists only once its bytes are durable. Partial files
//! left by a crash are removed through [`Store::abort_partial`] once the upload's lease expired.

use std::io::{self, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::digest::CHUNK;
use crate::{
    ByteRange, ByteStream, Fetched, ImageId, ListedObject, LocationUrl, Store, StoreError, Stored,
};

const PARTIAL: &str = ".partial";
const SCHEME: &str = "file://";

/// `[stores.NAME] type = "file"`: a directory.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    pub path: std::path::PathBuf,
}

/// A store in a local directory.
#[derive(Debug, Clone)]
pub struct FsStore {
    id: String,
    dir: PathBuf,
}

impl FsStore {
    /// Opens (and creates) the store directory.
    pub fn open(id: impl Into<String>, dir: impl AsRef<Path>) -> io::Result<Self> {
        let dir = dir.as_ref();
        create_private_dir(&dir.join(PARTIAL))?;
        let dir = dir.canonicalize()?;
        Ok(FsStore { id: id.into(), dir })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, location: &str) -> Result<PathBuf, StoreError> {
        let foreign = || StoreError::ForeignLocation(location.to_owned());
        let path = Path::new(location.strip_prefix(SCHEME).ok_or_else(foreign)?);
        // Only plain files directly inside our directory.
        match (path.parent(), path.file_name()) {
            (Some(parent), Some(name))
                if parent == self.dir && !name.to_string_lossy().starts_with('.') =>
            {
                Ok(path.to_path_buf())
            }
            _ => Err(foreign()),
        }
    }
}

/// Streams `len` bytes of `f` from `start`: a blocking thread reads CHUNK-sized buffers a
/// few ahead of the consumer, so reading overlaps with whatever the stream feeds (hashing, a
/// socket, another store).
pub fn read_stream(mut f: std::fs::File, start: u64, len: u64) -> ByteStream {
    use std::io::{Read, Seek};
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        if start > 0 {
            if let Err(e) = f.seek(SeekFrom::Start(start)) {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        }
        let mut left = len;
        while left > 0 {
            let want = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
            let mut buf = vec![0u8; want];
            let mut got = 0;
            while got < want {
                match f.read(&mut buf[got..]) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
            }
            if got == 0 {
                return;
            }
            buf.truncate(got);
            left -= got as u64;
            if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                return;
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed()
}

/// Creates `dir` and its missing parents readable by their owner only (0700; directories that
/// exist keep their mode).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
}

/// Creates (or truncates) a file only its owner may read and write (0600).
pub fn create_private_file(path: &Path) -> io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

/// The permission bits of `path` when other local users may read, write or enter it (any
/// group or other bit set); None when it is private or cannot be read.
pub fn looser_than_private(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Receives chunks and writes them to `tmp`; on a clean end syncs and renames to `dest`.
/// Bytes written between two background flushes.
const WRITEBACK_WINDOW: u64 = 32 << 20;

/// A thread that flushes the file while it is still being written, so the disk works during
/// the upload and the final `fsync` has little left to do. Requests that arrive while a flush
/// runs are merged.
struct Flusher {
    tx: Option<std::sync::mpsc::SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flusher {
    fn start(f: &std::fs::File) -> io::Result<Self> {
        let file = f.try_clone()?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("vela-flush".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    // Only a head start: errors surface at the final fsync.
                    let _ = file.sync_data();
                }
            })?;
        Ok(Flusher {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    fn request(&self) {
        if let Some(tx) = &self.tx {
            let _ = tx.try_send(());
        }
    }

    fn finish(mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// If `abort` is set when the channel closes, nothing is committed.
fn write_file(
    tmp: &Path,
    dest: &Path,
    mut rx: mpsc::Receiver<Bytes>,
    abort: &AtomicBool,
) -> io::Result<u64> {
    let mut f = create_private_file(tmp)?;
    let mut size = 0u64;
    let mut flushed = 0u64;
    let flusher = Flusher::start(&f)?;
    while let Some(chunk) = rx.blocking_recv() {
        if let Err(e) = f.write_all(&chunk) {
            flusher.finish();
            return Err(e);
        }
        size += chunk.len() as u64;
        if size - flushed >= WRITEBACK_WINDOW {
            flusher.request();
            flushed = size;
        }
    }
    flusher.finish();
    if abort.load(Ordering::SeqCst) {
        drop(f);
        std::fs::remove_file(tmp)?;
        return Err(io::Error::other("upload aborted"));
    }
    let synced = std::time::Instant::now();
    f.sync_all()?;
    tracing::debug!(
        size,
        sync_ms = synced.elapsed().as_millis() as u64,
        "image file synced"
    );
    drop(f);
    std::fs::rename(tmp, dest)?;
    if let Some(parent) = dest.parent() {
        sync_dir(parent)?;
    }
    Ok(size)
}

#[async_trait]
impl Store for FsStore {
    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "file"
    }

    fn owns(&self, location: &LocationUrl) -> bool {
        let location = location.as_str();
        self.path_of(location).is_ok()
    }

    fn local_path(&self, location: &LocationUrl) -> Option<PathBuf> {
        let location = location.as_str();
        self.path_of(location).ok()
    }

    async fn put(&self, image_id: &ImageId, mut body: ByteStream) -> Result<Stored, StoreError> {
        let image_id = image_id.as_str();
        if image_id.is_empty() || image_id.contains(['/', '\\', '.']) {
            return Err(StoreError::Io(io::Error::other("invalid object name")));
        }
        let dest = self.dir.join(image_id);
        let tmp = self
            .dir
            .join(PARTIAL)
            .join(format!("{image_id}.{}", uuid::Uuid::new_v4().simple()));
        let (tx, rx) = mpsc::channel::<Bytes>(8);
        let (tmp2, dest2) = (tmp.clone(), dest.clone());
        let abort = Arc::new(AtomicBool::new(false));
        let abort2 = abort.clone();
        let writer = tokio::task::spawn_blocking(move || write_file(&tmp2, &dest2, rx, &abort2));

        let mut body_err = None;
        while let Some(item) = body.next().await {
            match item {
                Ok(chunk) => {
                    if tx.send(chunk).await.is_err() {
                        break; // the writer failed; its error is reported below
                    }
                }
                Err(e) => {
                    body_err = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = body_err {
            // Stop the writer without letting it commit.
            abort.store(true, Ordering::SeqCst);
            drop(tx);
            let _ = writer.await;
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(StoreError::Body(e));
        }
        drop(tx);
        match writer.await {
            Ok(Ok(size)) => Ok(Stored {
                location: format!("{SCHEME}{}", dest.display()).into(),
                size,
            }),
            Ok(Err(e)) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(StoreError::io(e))
            }
            Err(join) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(StoreError::Io(io::Error::other(join.to_string())))
            }
        }
    }

    async fn get(
        &self,
        location: &LocationUrl,
        range: Option<ByteRange>,
    ) -> Result<Fetched, StoreError> {
        let location = location.as_str();
        let path = self.path_of(location)?;
        let f = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound(location.to_owned()))
            }
            Err(e) => return Err(StoreError::io(e)),
        };
        let total_size = f.metadata().await.map_err(StoreError::io)?.len();
        let body = match range {
            None => read_stream(f.into_std().await, 0, total_size),
            Some(r) => read_stream(f.into_std().await, r.start, r.len()),
        };
        Ok(Fetched { total_size, body })
    }

    async fn size(&self, location: &LocationUrl) -> Result<u64, StoreError> {
        let location = location.as_str();
        let path = self.path_of(location)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::NotFound(location.to_owned()))
            }
            Err(e) => Err(StoreError::io(e)),
        }
    }

    async fn abort_partial(&self, image_id: &ImageId) -> Result<(), StoreError> {
        let image_id = image_id.as_str();
        let prefix = format!("{image_id}.");
        let mut entries = tokio::fs::read_dir(self.dir.join(PARTIAL))
            .await
            .map_err(StoreError::io)?;
        while let Some(entry) = entries.next_entry().await.map_err(StoreError::io)? {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                match tokio::fs::remove_file(entry.path()).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(StoreError::io(e)),
                }
            }
        }
        Ok(())
    }

    async fn list(&self) -> Result<Vec<ListedObject>, StoreError> {
        let mut out = Vec::new();
        for (dir, partial) in [(self.dir.clone(), false), (self.dir.join(PARTIAL), true)] {
            let mut entries = tokio::fs::read_dir(&dir).await.map_err(StoreError::io)?;
            while let Some(entry) = entries.next_entry().await.map_err(StoreError::io)? {
                let name = entry.file_name().to_string_lossy().into_owned();
                let meta = entry.metadata().await.map_err(StoreError::io)?;
                if !meta.is_file() || name.starts_with('.') {
                    continue;
                }
                let image_id = match partial {
                    true => name.split('.').next().unwrap_or_default().to_owned(),
                    false => name.clone(),
                };
                out.push(ListedObject {
                    location: format!("{SCHEME}{}", entry.path().display()).into(),
                    image_id,
                    modified: meta.modified().map_err(StoreError::io)?,
                    partial,
                });
            }
        }
        Ok(out)
    }

    async fn delete_listed(&self, obj: &ListedObject) -> Result<(), StoreError> {
        if !obj.partial {
            return self.delete(&obj.location).await;
        }
        let foreign = || StoreError::ForeignLocation(obj.location.to_string());
        let path = Path::new(
            obj.location
                .as_str()
                .strip_prefix(SCHEME)
                .ok_or_else(foreign)?,
        );
        if path.parent() != Some(self.dir.join(PARTIAL).as_path()) {
            return Err(foreign());
        }
        match tokio::fs::remove_file(path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(e)),
        }
    }

    async fn delete(&self, location: &LocationUrl) -> Result<(), StoreError> {
        let location = location.as_str();
        let path = self.path_of(location)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    fn body(parts: Vec<Result<Bytes, io::Error>>) -> ByteStream {
        futures::stream::iter(parts).boxed()
    }

    async fn read_all(s: &FsStore, loc: &LocationUrl, r: Option<ByteRange>) -> Vec<u8> {
        let f = s.get(loc, r).await.unwrap();
        let chunks: Vec<Bytes> = f.body.try_collect().await.unwrap();
        chunks.concat()
    }

    #[tokio::test]
    async fn round_trip_range_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStore::open("file", dir.path()).unwrap();
        let stored = s
            .put(
                &ImageId::generate(),
                body(vec![
                    Ok(Bytes::from_static(b"hello ")),
                    Ok(Bytes::from_static(b"world")),
                ]),
            )
            .await
            .unwrap();
        assert_eq!(stored.size, 11);
        assert_eq!(read_all(&s, &stored.location, None).await, b"hello world");
        assert_eq!(
            read_all(&s, &stored.location, Some(ByteRange { start: 6, end: 10 })).await,
            b"world"
        );
        assert_eq!(s.size(&stored.location).await.unwrap(), 11);
        s.delete(&stored.location).await.unwrap();
        s.delete(&stored.location).await.unwrap();
        assert!(matches!(
            s.get(&stored.location, None).await,
            Err(StoreError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn failed_body_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStore::open("file", dir.path()).unwrap();
        let id = ImageId::generate();
        let err = s
            .put(
                &id,
                body(vec![
                    Ok(Bytes::from_static(b"abc")),
                    Err(io::Error::other("cut")),
                ]),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Body(_)));
        assert!(!dir.path().join(id.as_str()).exists());
        assert_eq!(
            std::fs::read_dir(dir.path().join(PARTIAL)).unwrap().count(),
            0
        );
    }

    #[tokio::test]
    async fn foreign_locations_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = FsStore::open("file", dir.path()).unwrap();
        assert!(matches!(
            s.get(&"file:///etc/passwd".into(), None).await,
            Err(StoreError::ForeignLocation(_))
        ));
        assert!(matches!(
            s.delete(&"s3://x/y".into()).await,
            Err(StoreError::ForeignLocation(_))
        ));
        let partial = format!("file://{}/.partial", s.dir().display());
        assert!(matches!(
            s.delete(&partial.into()).await,
            Err(StoreError::ForeignLocation(_))
        ));
    }
}
