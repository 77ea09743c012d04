//! Where the data of an import is read from, and the stream wrapper that stops a run.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use vela_store::{ByteStream, LocationUrl, Store};

/// The data an import writes to its stores.
#[derive(Debug, Clone)]
pub enum Source {
    /// Data in a store (the staging area, or the image's own store for a copy).
    Stored {
        store: Arc<dyn Store>,
        location: LocationUrl,
    },
    /// A file in the run's scratch space (a plugin's output).
    Local(PathBuf),
}

impl Source {
    /// Opens the data: the stream and its size.
    pub async fn open(&self) -> io::Result<(ByteStream, u64)> {
        match self {
            Source::Stored { store, location } => {
                let fetched = store.get(location, None).await.map_err(io::Error::other)?;
                Ok((fetched.body, fetched.total_size))
            }
            Source::Local(path) => {
                let file = tokio::fs::File::open(path).await?.into_std().await;
                let size = file.metadata()?.len();
                Ok((vela_store::fs::read_stream(file, 0, size), size))
            }
        }
    }

    /// The data as a local file, if it is one (a file-store location or a scratch file).
    pub fn local_path(&self) -> Option<PathBuf> {
        match self {
            Source::Stored { store, location } => store.local_path(location),
            Source::Local(p) => Some(p.clone()),
        }
    }
}

/// Counts the bytes of `body` into `progress` and ends it with an error (never a clean end,
/// which a store would commit) once `cancel` fires.
pub fn cancellable(
    body: ByteStream,
    cancel: CancellationToken,
    progress: Arc<AtomicU64>,
) -> ByteStream {
    futures::stream::unfold(Some((body, cancel, progress)), |state| async move {
        let (mut body, cancel, progress) = state?;
        let item = tokio::select! {
            biased;
            _ = cancel.cancelled() => Some(Err(io::Error::other("the import was cancelled"))),
            item = body.next() => item,
        };
        match item {
            Some(Ok(chunk)) => {
                progress.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                Some((Ok(chunk), Some((body, cancel, progress))))
            }
            Some(Err(e)) => Some((Err(e), None)),
            None => None,
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[tokio::test]
    async fn cancelling_ends_with_an_error() {
        let body: ByteStream = futures::stream::iter(vec![Ok(Bytes::from_static(b"ab"))])
            .chain(futures::stream::pending())
            .boxed();
        let cancel = CancellationToken::new();
        let progress = Arc::new(AtomicU64::new(0));
        let mut s = cancellable(body, cancel.clone(), progress.clone());
        assert_eq!(s.next().await.unwrap().unwrap(), Bytes::from_static(b"ab"));
        cancel.cancel();
        assert!(s.next().await.unwrap().is_err());
        assert!(s.next().await.is_none());
        assert_eq!(progress.load(Ordering::Relaxed), 2);
    }
}
