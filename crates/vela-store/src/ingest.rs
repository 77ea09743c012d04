//! Writing image data into a store: the one path every way data comes in takes (upload,
//! stage, each store write of an import). The stream is counted, limited, hashed and
//! inspected on its way to the store; refused or broken data is never left behind.

use crate::digest::{digesting_with, BodyError, Digest, Options};
use crate::{ByteStream, ImageId, Store, StoreError, Stored};

/// Why data could not be written.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The data itself was refused (size, format) or its source failed.
    #[error(transparent)]
    Body(#[from] BodyError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What was written, and its digest.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub stored: Stored,
    pub digest: Digest,
}

/// Streams `body` into `store` as the data of `image_id`. On any failure nothing stays in
/// the store.
pub async fn ingest(
    store: &dyn Store,
    image_id: &ImageId,
    body: ByteStream,
    opts: Options,
) -> Result<Ingested, IngestError> {
    let (stream, digest) = digesting_with(body, opts);
    match store.put(image_id, stream).await {
        Ok(stored) => match digest.finish().await {
            Ok(digest) => Ok(Ingested { stored, digest }),
            Err(e) => {
                if let Err(del) = store.delete(&stored.location).await {
                    tracing::error!(%image_id, error = %del, "could not remove refused data");
                }
                Err(e.into())
            }
        },
        Err(StoreError::Body(e)) => Err(match digest.failure() {
            Some(body_err) => body_err.into(),
            None => BodyError::Client(e.to_string()).into(),
        }),
        Err(e) => Err(e.into()),
    }
}
