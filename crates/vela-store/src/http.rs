//! The read-only HTTP store: image data that lives at an `http://` or `https://` URL (a location
//! added through the locations API) is streamed through Vela, ranges passed on to the server.
//! Nothing can be written to it, and deleting an image leaves the remote data alone.

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};

use crate::outbound::{
    redact_str, ClientOpts, FilterOpts, OutboundClient, OutboundError, OutboundResponse,
};
use crate::{
    ByteRange, ByteStream, Fetched, ImageId, ListedObject, LocationUrl, Store, StoreError, Stored,
};

/// The HTTP store's settings.
#[derive(Debug, Clone, Default)]
pub struct HttpConfig {
    /// Accept any TLS certificate (Glance's `https_insecure`; off by default here).
    pub insecure: bool,
    /// Extra PEM CA certificates to trust for https locations.
    pub ca_file: Option<std::path::PathBuf>,
    /// What URLs may be fetched (`[import_filtering_opts]`; the built-in address refusal
    /// applies whatever they say, outside `allowed_networks`).
    pub filter: FilterOpts,
}

/// `[stores.NAME] type = "http"`: read-only; serves locations that are http(s) URLs.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Accept any TLS certificate (default false: certificates are verified).
    pub insecure: bool,
    /// A PEM file of extra CA certificates to trust.
    pub ca_file: Option<std::path::PathBuf>,
}

impl HttpSettings {
    /// The store's settings, fetching what `filter` allows.
    pub fn config(&self, filter: &FilterOpts) -> HttpConfig {
        HttpConfig {
            insecure: self.insecure,
            ca_file: self.ca_file.clone(),
            filter: filter.clone(),
        }
    }
}

/// A read-only store of http(s) URLs, fetched through the guarded [`OutboundClient`].
#[derive(Debug)]
pub struct HttpStore {
    id: String,
    http: OutboundClient,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!(
        "Remote server where the image is present is unavailable: {e}"
    ))
}

/// A failed request as the store's error (messages never show URL credentials).
fn store_error(location: &str, e: OutboundError) -> StoreError {
    let shown = || redact_str(location);
    match e {
        OutboundError::Status(404 | 410) => {
            StoreError::NotFound("HTTP datastore could not find image at URI.".into())
        }
        OutboundError::Status(s @ (401 | 403)) => {
            StoreError::Denied(format!("HTTP URL {} returned a {s} status code.", shown()))
        }
        OutboundError::Status(s) if s >= 500 => unavailable(format!("status {s}")),
        OutboundError::Status(s) => {
            StoreError::BadLocation(format!("HTTP URL {} returned a {s} status code.", shown()))
        }
        e @ (OutboundError::Refused(_)
        | OutboundError::BadUrl(_)
        | OutboundError::TooManyRedirects
        | OutboundError::TooLarge(_)) => StoreError::BadLocation(format!("{}: {e}", shown())),
        OutboundError::Config(m) => StoreError::Config(m),
        e @ (OutboundError::Timeout(_) | OutboundError::Unavailable(_)) => unavailable(e),
    }
}

impl HttpStore {
    pub fn new(id: &str, cfg: &HttpConfig) -> Result<Self, StoreError> {
        let opts = ClientOpts {
            insecure: cfg.insecure,
            ca_file: cfg.ca_file.clone(),
            ..ClientOpts::default()
        };
        let http = OutboundClient::new(cfg.filter.clone(), &opts)
            .map_err(|e| StoreError::Config(e.to_string()))?;
        Ok(HttpStore {
            id: id.to_owned(),
            http,
        })
    }

    fn check_owned(&self, location: &LocationUrl) -> Result<(), StoreError> {
        if !self.owns(location) {
            return Err(StoreError::ForeignLocation(location.to_string()));
        }
        Ok(())
    }

    async fn head(&self, location: &LocationUrl) -> Result<OutboundResponse, StoreError> {
        self.check_owned(location)?;
        self.http
            .head(location.as_str())
            .await
            .map_err(|e| store_error(location.as_str(), e))
    }

    async fn fetch(
        &self,
        location: &LocationUrl,
        range: Option<ByteRange>,
    ) -> Result<OutboundResponse, StoreError> {
        self.check_owned(location)?;
        self.http
            .get(location.as_str(), range, None)
            .await
            .map_err(|e| store_error(location.as_str(), e))
    }
}

#[async_trait]
impl Store for HttpStore {
    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "http"
    }

    fn owns(&self, location: &LocationUrl) -> bool {
        let location = location.as_str();
        let l = location.as_bytes();
        let has = |p: &str| l.len() > p.len() && l[..p.len()].eq_ignore_ascii_case(p.as_bytes());
        has("http://") || has("https://")
    }

    fn external_locations(&self) -> bool {
        true
    }

    fn read_only(&self) -> bool {
        true
    }

    async fn put(&self, _image_id: &ImageId, _body: ByteStream) -> Result<Stored, StoreError> {
        Err(StoreError::ReadOnly(self.id.clone()))
    }

    async fn get(
        &self,
        location: &LocationUrl,
        range: Option<ByteRange>,
    ) -> Result<Fetched, StoreError> {
        let resp = self.fetch(location, range).await?;
        let partial = resp.status() == 206;
        let total = if partial {
            resp.range_total()
        } else {
            resp.content_length()
        };
        let total = match total {
            Some(t) => t,
            None => self.size(location).await?,
        };
        let body = resp.into_stream().map_err(OutboundError::into_io);
        let body: ByteStream = match range {
            // The server ignored the range: skip to it and stop after it.
            Some(r) if !partial => skip_take(body.boxed(), r.start, r.len()),
            _ => body.boxed(),
        };
        Ok(Fetched {
            total_size: total,
            body,
        })
    }

    async fn size(&self, location: &LocationUrl) -> Result<u64, StoreError> {
        let resp = self.head(location).await?;
        resp.content_length().ok_or_else(|| {
            StoreError::BadLocation(format!("{location} answered without a Content-Length"))
        })
    }

    /// The data is not Vela's: nothing is deleted (Glance logs and goes on, too).
    async fn delete(&self, location: &LocationUrl) -> Result<(), StoreError> {
        tracing::info!(
            store = %self.id,
            %location,
            "read-only store: the remote data is left in place"
        );
        Ok(())
    }

    async fn abort_partial(&self, _image_id: &ImageId) -> Result<(), StoreError> {
        Ok(())
    }

    async fn list(&self) -> Result<Vec<ListedObject>, StoreError> {
        Ok(Vec::new())
    }

    async fn delete_listed(&self, _obj: &ListedObject) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The bytes `skip..skip+take` of `body`.
fn skip_take(body: ByteStream, skip: u64, take: u64) -> ByteStream {
    let state = (body, skip, take);
    futures::stream::unfold(state, |(mut body, mut skip, mut take)| async move {
        loop {
            if take == 0 {
                return None;
            }
            let chunk = match body.next().await? {
                Ok(c) => c,
                Err(e) => return Some((Err(e), (body, 0, 0))),
            };
            let len = chunk.len() as u64;
            if skip >= len {
                skip -= len;
                continue;
            }
            let start = skip as usize;
            let end = (skip + take).min(len) as usize;
            take -= (end - start) as u64;
            return Some((Ok(chunk.slice(start..end)), (body, 0, take)));
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[tokio::test]
    async fn skip_take_slices_across_chunks() {
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from_static(b"abc")),
            Ok(Bytes::from_static(b"defg")),
            Ok(Bytes::from_static(b"hij")),
        ];
        let out: Vec<Bytes> = skip_take(futures::stream::iter(chunks).boxed(), 2, 6)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(out.concat(), b"cdefgh");
    }

    #[test]
    fn owns_http_urls_only() {
        let s = HttpStore::new("web", &HttpConfig::default()).unwrap();
        assert!(s.owns(&"http://example.org/x".into()));
        assert!(s.owns(&"HTTPS://example.org/x".into()));
        assert!(!s.owns(&"file:///x".into()));
        assert!(!s.owns(&"http://".into()));
    }

    #[tokio::test]
    async fn internal_addresses_are_refused() {
        let s = HttpStore::new("web", &HttpConfig::default()).unwrap();
        for url in [
            "http://127.0.0.1/x",
            "http://user:secret@169.254.169.254/latest/meta-data/",
            "http://localhost/x",
            "http://[::1]/x",
        ] {
            let url = LocationUrl::from(url);
            match s.size(&url).await {
                Err(StoreError::BadLocation(m)) => {
                    assert!(m.contains("refused"), "{url}: {m}");
                    assert!(!m.contains("secret"), "{m}");
                }
                other => panic!("{url}: {other:?}"),
            }
            assert!(matches!(
                s.get(&url, None).await,
                Err(StoreError::BadLocation(_))
            ));
        }
    }
}
