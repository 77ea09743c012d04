//! Size accounting, limits and checksums for an upload, computed while the bytes stream by.
//!
//! [`digesting`] wraps the incoming body. Chunks are coalesced into large buffers, counted,
//! checked against the size cap and the announced size, and handed (by reference count, not
//! copied) to two hashing threads: MD5 for `checksum` and the configured multihash for
//! `os_hash_value`, so the two digests run on separate cores while the store writes.
//!
//! With a [`FormatCheck`], the bytes also pass through the disk-image format inspector
//! (`vela-inspect`), which keeps only the few regions it needs. At the end of the stream the
//! data is judged against the declared `disk_format`/`container_format`; refused data ends the
//! stream with an error, so the store never commits it.

use std::io;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use sha2::digest::DynDigest;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::ByteStream;

/// Size of the buffers handed to the store and the hashers.
pub const CHUNK: usize = 1 << 20;
/// Buffers in flight per hasher.
const HASH_QUEUE: usize = 8;

/// A multihash algorithm (`os_hash_algo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgo {
    Md5,
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlgo {
    /// Parses a hashlib-style name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "md5" => HashAlgo::Md5,
            "sha1" => HashAlgo::Sha1,
            "sha224" => HashAlgo::Sha224,
            "sha256" => HashAlgo::Sha256,
            "sha384" => HashAlgo::Sha384,
            "sha512" => HashAlgo::Sha512,
            _ => return None,
        })
    }

    /// Length of the digest in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            HashAlgo::Md5 => 16,
            HashAlgo::Sha1 => 20,
            HashAlgo::Sha224 => 28,
            HashAlgo::Sha256 => 32,
            HashAlgo::Sha384 => 48,
            HashAlgo::Sha512 => 64,
        }
    }

    /// The name stored in `os_hash_algo`.
    pub fn name(self) -> &'static str {
        match self {
            HashAlgo::Md5 => "md5",
            HashAlgo::Sha1 => "sha1",
            HashAlgo::Sha224 => "sha224",
            HashAlgo::Sha256 => "sha256",
            HashAlgo::Sha384 => "sha384",
            HashAlgo::Sha512 => "sha512",
        }
    }

    fn hasher(self) -> Box<dyn DynDigest + Send> {
        match self {
            HashAlgo::Md5 => Box::new(md5::Md5::default()),
            HashAlgo::Sha1 => Box::new(sha1::Sha1::default()),
            HashAlgo::Sha224 => Box::new(sha2::Sha224::default()),
            HashAlgo::Sha256 => Box::new(sha2::Sha256::default()),
            HashAlgo::Sha384 => Box::new(sha2::Sha384::default()),
            HashAlgo::Sha512 => Box::new(sha2::Sha512::default()),
        }
    }
}

/// Size limits of one upload.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Refuse more than this many bytes (`image_size_cap`).
    pub max_size: Option<u64>,
    /// The body must be exactly this long (Content-Length or `x-openstack-image-size`).
    pub expected_size: Option<u64>,
}

/// Why an upload body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("Image exceeds the storage quota: the upload is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("{}", size_message(*expected, *got))]
    SizeMismatch { expected: u64, got: u64 },
    #[error("Error reading the request body: {0}")]
    Client(String),
    #[error("The upload stream was not read to its end")]
    Incomplete,
    /// The format inspector refused the data (unsafe, or not the declared format).
    #[error("{0}")]
    Rejected(String),
}

/// Glance's words for a body longer than announced; a shorter one is said plainly.
fn size_message(expected: u64, got: u64) -> String {
    if got > expected {
        format!("Size exceeds: expected {expected} bytes, got {got} bytes")
    } else {
        format!("Size mismatch: expected {expected} bytes, got only {got} bytes")
    }
}

/// What the data must be: the image's declared formats and the inspector's rules.
#[derive(Debug, Clone)]
pub struct FormatCheck {
    pub disk_format: Option<String>,
    pub container_format: Option<String>,
    pub rules: Arc<vela_inspect::Rules>,
}

/// What the format inspector found in accepted data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// The detected format's name (`raw`, `qcow2`, ...).
    pub detected: &'static str,
    /// The virtual size, when the formats give one (Glance's rules: bare containers only).
    pub virtual_size: Option<u64>,
}

/// How [`digesting_with`] treats a stream.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The multihash (`os_hash_value`); with `None` nothing is hashed (staging), and the
    /// digest's `md5` and `hash` are empty.
    pub algo: Option<HashAlgo>,
    pub limits: Limits,
    /// Inspect the data and judge it against the declared formats.
    pub check: Option<FormatCheck>,
}

/// Size and checksums of a complete upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    pub size: u64,
    /// Hex MD5 (`checksum`).
    pub md5: String,
    pub algo: HashAlgo,
    /// Hex digest (`os_hash_value`).
    pub hash: String,
    /// The first bytes of the data (up to [`HEAD`]).
    pub head: Vec<u8>,
    /// The inspector's verdict, when a [`FormatCheck`] was given.
    pub inspection: Option<Inspection>,
}

impl Digest {
    /// Records this data's size, virtual size and checksums on the image.
    pub fn record(&self, img: &mut vela_domain::Image) {
        img.size = i64::try_from(self.size).ok();
        img.virtual_size = self
            .inspection
            .as_ref()
            .and_then(|i| i.virtual_size)
            .and_then(|v| i64::try_from(v).ok());
        self.record_checksums(img);
    }

    /// Records only the checksums (`checksum`, `os_hash_algo`, `os_hash_value`).
    pub fn record_checksums(&self, img: &mut vela_domain::Image) {
        img.checksum = Some(self.md5.clone());
        img.os_hash_algo = Some(self.algo.name().to_owned());
        img.os_hash_value = Some(self.hash.clone());
    }
}

/// How many leading bytes are kept in [`Digest::head`].
pub const HEAD: usize = 4096;

#[derive(Default)]
struct Shared {
    failure: Option<BodyError>,
    complete: bool,
    size: u64,
    head: Vec<u8>,
    inspection: Option<Inspection>,
}

/// Collects the digest once the wrapped stream has been consumed.
pub struct DigestHandle {
    shared: Arc<Mutex<Shared>>,
    md5: Option<JoinHandle<Vec<u8>>>,
    hash: Option<JoinHandle<Vec<u8>>>,
    algo: HashAlgo,
}

impl DigestHandle {
    /// Why the body failed, if it did.
    pub fn failure(&self) -> Option<BodyError> {
        self.shared.lock().ok().and_then(|s| s.failure.clone())
    }

    /// Waits for the hashers and returns the digest, or why the body was refused.
    pub async fn finish(self) -> Result<Digest, BodyError> {
        let (size, failure, complete, head, inspection) = {
            let mut s = self
                .shared
                .lock()
                .map_err(|_| BodyError::Client("digest state poisoned".into()))?;
            (
                s.size,
                s.failure.clone(),
                s.complete,
                std::mem::take(&mut s.head),
                s.inspection.take(),
            )
        };
        if let Some(f) = failure {
            return Err(f);
        }
        if !complete {
            return Err(BodyError::Incomplete);
        }
        let joined = |h: Option<JoinHandle<Vec<u8>>>| async move {
            match h {
                Some(h) => h
                    .await
                    .map(hex::encode)
                    .map_err(|e| BodyError::Client(e.to_string())),
                None => Ok(String::new()),
            }
        };
        let md5 = joined(self.md5).await?;
        let hash = joined(self.hash).await?;
        Ok(Digest {
            size,
            md5,
            algo: self.algo,
            hash,
            head,
            inspection,
        })
    }
}

fn spawn_hasher(
    mut hasher: Box<dyn DynDigest + Send>,
) -> (mpsc::Sender<Bytes>, JoinHandle<Vec<u8>>) {
    let (tx, mut rx) = mpsc::channel::<Bytes>(HASH_QUEUE);
    let handle = tokio::task::spawn_blocking(move || {
        while let Some(chunk) = rx.blocking_recv() {
            hasher.update(&chunk);
        }
        hasher.finalize().to_vec()
    });
    (tx, handle)
}

struct Tee {
    inner: ByteStream,
    md5: Option<mpsc::Sender<Bytes>>,
    hash: Option<mpsc::Sender<Bytes>>,
    shared: Arc<Mutex<Shared>>,
    limits: Limits,
    size: u64,
    done: bool,
    inspector: Option<(vela_inspect::Inspector, FormatCheck)>,
}

impl Tee {
    fn fail(&mut self, err: BodyError) -> io::Error {
        self.md5 = None;
        self.hash = None;
        self.done = true;
        let e = io::Error::other(err.to_string());
        if let Ok(mut s) = self.shared.lock() {
            s.failure.get_or_insert(err);
        }
        e
    }

    async fn forward(&mut self, chunk: Bytes) -> Result<(), io::Error> {
        for tx in [&self.md5, &self.hash].into_iter().flatten() {
            if tx.send(chunk.clone()).await.is_err() {
                return Err(io::Error::other("hasher stopped"));
            }
        }
        Ok(())
    }

    /// Reads the next coalesced buffer, or None at the (verified) end.
    async fn next_chunk(&mut self) -> Option<Result<Bytes, io::Error>> {
        if self.done {
            return None;
        }
        let mut buf = BytesMut::new();
        loop {
            match self.inner.next().await {
                Some(Ok(b)) => {
                    if let Some((inspector, _)) = &mut self.inspector {
                        inspector.feed(&b);
                    }
                    if self.size < HEAD as u64 {
                        let take = b.len().min(HEAD - self.size as usize);
                        if let Ok(mut s) = self.shared.lock() {
                            s.head.extend_from_slice(&b[..take]);
                        }
                    }
                    self.size += b.len() as u64;
                    if let Some(limit) = self.limits.max_size.filter(|l| self.size > *l) {
                        return Some(Err(self.fail(BodyError::TooLarge { limit })));
                    }
                    if let Some(expected) = self.limits.expected_size.filter(|e| self.size > *e) {
                        let got = self.size;
                        return Some(Err(self.fail(BodyError::SizeMismatch { expected, got })));
                    }
                    if buf.is_empty() && b.len() >= CHUNK {
                        return Some(self.forward(b.clone()).await.map(|_| b));
                    }
                    if buf.capacity() == 0 {
                        buf.reserve(CHUNK);
                    }
                    buf.extend_from_slice(&b);
                    if buf.len() >= CHUNK {
                        let out = buf.freeze();
                        return Some(self.forward(out.clone()).await.map(|_| out));
                    }
                }
                Some(Err(e)) => {
                    let msg = e.to_string();
                    return Some(Err(self.fail(BodyError::Client(msg))));
                }
                None => {
                    if let Some(expected) = self.limits.expected_size.filter(|e| self.size != *e) {
                        let got = self.size;
                        return Some(Err(self.fail(BodyError::SizeMismatch { expected, got })));
                    }
                    let inspection = match self.inspector.take() {
                        Some((inspector, check)) => match judge(inspector, &check) {
                            Ok(i) => Some(i),
                            Err(refusal) => return Some(Err(self.fail(refusal))),
                        },
                        None => None,
                    };
                    self.done = true;
                    if let Ok(mut s) = self.shared.lock() {
                        s.size = self.size;
                        s.complete = true;
                        s.inspection = inspection;
                    }
                    if buf.is_empty() {
                        self.md5 = None;
                        self.hash = None;
                        return None;
                    }
                    let out = buf.freeze();
                    let sent = self.forward(out.clone()).await;
                    self.md5 = None;
                    self.hash = None;
                    return Some(sent.map(|_| out));
                }
            }
        }
    }
}

/// The inspector's verdict on complete data.
fn judge(inspector: vela_inspect::Inspector, check: &FormatCheck) -> Result<Inspection, BodyError> {
    let report = inspector.finish();
    match vela_inspect::judge(
        check.disk_format.as_deref(),
        check.container_format.as_deref(),
        &report,
        &check.rules,
    ) {
        Ok(accepted) => {
            for w in &accepted.warnings {
                tracing::warn!(warning = %w, "format inspection");
            }
            Ok(Inspection {
                detected: accepted.detected.name(),
                virtual_size: accepted.virtual_size,
            })
        }
        Err(refusal) => {
            tracing::warn!(refusal = %refusal, "image data refused by the format inspector");
            Err(BodyError::Rejected(refusal.to_string()))
        }
    }
}

/// Wraps `body` so that it is counted, limited and hashed as it is consumed.
pub fn digesting(body: ByteStream, algo: HashAlgo, limits: Limits) -> (ByteStream, DigestHandle) {
    digesting_with(
        body,
        Options {
            algo: Some(algo),
            limits,
            check: None,
        },
    )
}

/// Wraps `body` so that it is counted, limited, and (as `opts` say) hashed and inspected as
/// it is consumed.
pub fn digesting_with(body: ByteStream, opts: Options) -> (ByteStream, DigestHandle) {
    let (md5_tx, md5, hash_tx, hash) = match opts.algo {
        Some(algo) => {
            let (md5_tx, md5) = spawn_hasher(HashAlgo::Md5.hasher());
            let (hash_tx, hash) = spawn_hasher(algo.hasher());
            (Some(md5_tx), Some(md5), Some(hash_tx), Some(hash))
        }
        None => (None, None, None, None),
    };
    let algo = opts.algo.unwrap_or(HashAlgo::Sha512);
    let shared = Arc::new(Mutex::new(Shared::default()));
    let tee = Tee {
        inner: body,
        md5: md5_tx,
        hash: hash_tx,
        shared: shared.clone(),
        limits: opts.limits,
        size: 0,
        done: false,
        inspector: opts.check.map(|c| (vela_inspect::Inspector::new(), c)),
    };
    let stream = futures::stream::unfold(tee, |mut tee| async move {
        tee.next_chunk().await.map(|item| (item, tee))
    })
    .boxed();
    (
        stream,
        DigestHandle {
            shared,
            md5,
            hash,
            algo,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    fn body(parts: Vec<Result<&'static [u8], io::Error>>) -> ByteStream {
        futures::stream::iter(parts.into_iter().map(|r| r.map(Bytes::from_static))).boxed()
    }

    #[tokio::test]
    async fn digests_match_known_values() {
        let (s, h) = digesting(
            body(vec![Ok(b"hello "), Ok(b"world")]),
            HashAlgo::Sha256,
            Limits::default(),
        );
        let out: Vec<Bytes> = s.try_collect().await.unwrap();
        assert_eq!(out.concat(), b"hello world");
        let d = h.finish().await.unwrap();
        assert_eq!(d.size, 11);
        assert_eq!(d.md5, "5eb63bbbe01eeed093cb22bb8f5acdc3");
        assert_eq!(
            d.hash,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
    }

    #[tokio::test]
    async fn empty_body_has_digests_of_nothing() {
        let (s, h) = digesting(body(vec![]), HashAlgo::Sha512, Limits::default());
        let out: Vec<Bytes> = s.try_collect().await.unwrap();
        assert!(out.is_empty());
        let d = h.finish().await.unwrap();
        assert_eq!(d.size, 0);
        assert_eq!(d.md5, "d41d8cd98f00b204e9800998ecf8427e");
        assert!(d.hash.starts_with("cf83e1357eefb8bd"));
    }

    #[tokio::test]
    async fn limits_are_enforced() {
        let cap = Limits {
            max_size: Some(5),
            expected_size: None,
        };
        let (s, h) = digesting(body(vec![Ok(b"abc"), Ok(b"def")]), HashAlgo::Sha512, cap);
        assert!(s.try_collect::<Vec<Bytes>>().await.is_err());
        assert_eq!(h.finish().await, Err(BodyError::TooLarge { limit: 5 }));

        let short = Limits {
            max_size: None,
            expected_size: Some(10),
        };
        let (s, h) = digesting(body(vec![Ok(b"abc")]), HashAlgo::Sha512, short);
        assert!(s.try_collect::<Vec<Bytes>>().await.is_err());
        assert_eq!(
            h.finish().await,
            Err(BodyError::SizeMismatch {
                expected: 10,
                got: 3
            })
        );

        let (s, h) = digesting(
            body(vec![Ok(b"abc"), Err(io::Error::other("reset"))]),
            HashAlgo::Sha512,
            Limits::default(),
        );
        assert!(s.try_collect::<Vec<Bytes>>().await.is_err());
        assert!(matches!(h.finish().await, Err(BodyError::Client(_))));
    }
}

#[cfg(test)]
mod speed {
    use super::*;

    #[test]
    #[ignore = "measurement, run with --ignored --nocapture"]
    fn hash_speed() {
        let buf = vec![7u8; 1 << 20];
        for algo in [HashAlgo::Md5, HashAlgo::Sha512, HashAlgo::Sha256] {
            let mut h = algo.hasher();
            let t = std::time::Instant::now();
            for _ in 0..512 {
                h.update(&buf);
            }
            let _ = h.finalize();
            println!(
                "{algo:?}: {:.0} MB/s",
                512.0 * 1.048576 / t.elapsed().as_secs_f64()
            );
        }
    }
}
