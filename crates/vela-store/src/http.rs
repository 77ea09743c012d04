//! The read-only HTTP store: image data that lives at an `http://` or `https://` URL (a location
//! added through the locations API) is streamed through Vela, ranges passed on to the server.
//! Nothing can be written to it, and deleting an image leaves the remote data alone.

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use reqwest::StatusCode;

use crate::{ByteRange, ByteStream, Fetched, ListedObject, Store, StoreError, Stored};

/// Redirects followed per request (Glance's http store follows five).
const MAX_REDIRECTS: usize = 5;

/// The HTTP store's settings.
#[derive(Debug, Clone, Default)]
pub struct HttpConfig {
    /// Accept any TLS certificate (Glance's `https_insecure`; off by default here).
    pub insecure: bool,
    /// Extra PEM CA certificates to trust for https locations.
    pub ca_file: Option<std::path::PathBuf>,
}

/// A read-only store of http(s) URLs.
#[derive(Debug)]
pub struct HttpStore {
    id: String,
    http: reqwest::Client,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!(
        "Remote server where the image is present is unavailable: {e}"
    ))
}

impl HttpStore {
    pub fn new(id: &str, cfg: &HttpConfig) -> Result<Self, StoreError> {
        let mut b = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
            .danger_accept_invalid_certs(cfg.insecure);
        if let Some(path) = &cfg.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| StoreError::Config(format!("{}: {e}", path.display())))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| StoreError::Config(format!("{}: {e}", path.display())))?
            {
                b = b.add_root_certificate(cert);
            }
        }
        let http = b.build().map_err(|e| StoreError::Config(e.to_string()))?;
        Ok(HttpStore {
            id: id.to_owned(),
            http,
        })
    }

    fn url(&self, location: &str) -> Result<reqwest::Url, StoreError> {
        if !self.owns(location) {
            return Err(StoreError::ForeignLocation(location.to_owned()));
        }
        let url = reqwest::Url::parse(location)
            .map_err(|e| StoreError::BadLocation(format!("{location}: {e}")))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(StoreError::BadLocation(format!(
                "The Store URI was malformed: {location}"
            )));
        }
        Ok(url)
    }

    /// Sends a request with the URL's credentials (if any) as basic auth.
    async fn send(
        &self,
        method: reqwest::Method,
        location: &str,
        range: Option<ByteRange>,
    ) -> Result<reqwest::Response, StoreError> {
        let mut url = self.url(location)?;
        let user = url.username().to_owned();
        let password = url.password().map(str::to_owned);
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let mut req = self.http.request(method, url);
        if !user.is_empty() {
            req = req.basic_auth(user, password);
        }
        if let Some(r) = range {
            req = req.header(RANGE, format!("bytes={}-{}", r.start, r.end));
        }
        let resp = req.send().await.map_err(unavailable)?;
        match resp.status() {
            s if s.is_success() => Ok(resp),
            StatusCode::NOT_FOUND | StatusCode::GONE => Err(StoreError::NotFound(
                "HTTP datastore could not find image at URI.".into(),
            )),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(StoreError::Denied(format!(
                "HTTP URL {location} returned a {} status code.",
                resp.status().as_u16()
            ))),
            s if s.is_server_error() => Err(unavailable(format!("status {s}"))),
            s => Err(StoreError::BadLocation(format!(
                "HTTP URL {location} returned a {} status code.",
                s.as_u16()
            ))),
        }
    }
}

/// The total size a ranged response announces (`Content-Range: bytes a-b/total`).
fn total_from_content_range(resp: &reqwest::Response) -> Option<u64> {
    resp.headers()
        .get(CONTENT_RANGE)?
        .to_str()
        .ok()?
        .rsplit_once('/')?
        .1
        .trim()
        .parse()
        .ok()
}

fn content_length(resp: &reqwest::Response) -> Option<u64> {
    resp.headers()
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[async_trait]
impl Store for HttpStore {
    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "http"
    }

    fn owns(&self, location: &str) -> bool {
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

    async fn put(&self, _image_id: &str, _body: ByteStream) -> Result<Stored, StoreError> {
        Err(StoreError::ReadOnly(self.id.clone()))
    }

    async fn get(&self, location: &str, range: Option<ByteRange>) -> Result<Fetched, StoreError> {
        let resp = self.send(reqwest::Method::GET, location, range).await?;
        let partial = resp.status() == StatusCode::PARTIAL_CONTENT;
        let total = match (partial, range) {
            (true, _) => total_from_content_range(&resp),
            (false, _) => content_length(&resp),
        };
        let total = match total {
            Some(t) => t,
            None => self.size(location).await?,
        };
        let body = resp.bytes_stream().map_err(std::io::Error::other);
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

    async fn size(&self, location: &str) -> Result<u64, StoreError> {
        let resp = self.send(reqwest::Method::HEAD, location, None).await?;
        content_length(&resp).ok_or_else(|| {
            StoreError::BadLocation(format!("{location} answered without a Content-Length"))
        })
    }

    /// The data is not Vela's: nothing is deleted (Glance logs and goes on, too).
    async fn delete(&self, location: &str) -> Result<(), StoreError> {
        tracing::info!(
            store = %self.id,
            location,
            "read-only store: the remote data is left in place"
        );
        Ok(())
    }

    async fn abort_partial(&self, _image_id: &str) -> Result<(), StoreError> {
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
        assert!(s.owns("http://example.org/x"));
        assert!(s.owns("HTTPS://example.org/x"));
        assert!(!s.owns("file:///x"));
        assert!(!s.owns("http://"));
    }
}
