//! OpenStack Swift (and Swift-API) object stores.
//!
//! Each image is a static large object (SLO): its bytes go up as segments of at most
//! `segment_size`, each streamed in its own PUT, under `<prefix><image id>/seg/<run>/<n>` in the
//! segment container; the image object `<prefix><image id>` is the manifest, written last, so
//! nothing is visible before the upload completes. A failed upload removes its segments; a
//! crashed one leaves segments that garbage collection lists as partial. Deletes remove the
//! manifest with its segments. Authentication is Swift's v1 (tempauth, radosgw) or Keystone
//! v3 password auth, with the storage URL from the catalog; the token is renewed when Swift
//! refuses it.

use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::remote::{check_status, keystone_login, KeystoneAuth};
use crate::{
    ByteRange, ByteStream, Fetched, ImageId, ListedObject, LocationUrl, Store, StoreError, Stored,
};

/// How to authenticate to Swift.
#[derive(Debug, Clone)]
pub enum SwiftAuth {
    /// `GET auth_url` with `X-Auth-User`/`X-Auth-Key` (tempauth, radosgw).
    V1 {
        auth_url: String,
        user: String,
        key: vela_domain::Secret,
    },
    /// Keystone v3 password auth; the storage URL is the catalog's `object-store` endpoint.
    Keystone(KeystoneAuth),
}

/// A Swift store's settings.
#[derive(Debug, Clone)]
pub struct SwiftConfig {
    pub auth: SwiftAuth,
    pub container: String,
    /// Object name prefix.
    pub prefix: String,
    /// Largest segment, bytes.
    pub segment_size: u64,
}

/// `[stores.NAME] type = "swift"`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwiftSettings {
    /// Auth endpoint: v1 (`…/auth/1.0`) or Keystone v3 (`…/v3`).
    pub auth_url: String,
    /// `1` (X-Auth-User/X-Auth-Key) or `3` (Keystone password; default).
    #[serde(default)]
    pub auth_version: Option<u8>,
    /// v1: user (`account:user`) and key.
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub key: vela_domain::Secret,
    /// v3: Keystone user, password, project and domains (`Default`), and the catalog
    /// interface of the object-store endpoint (`public`).
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: vela_domain::Secret,
    #[serde(default)]
    pub project_name: String,
    #[serde(default)]
    pub user_domain_name: Option<String>,
    #[serde(default)]
    pub project_domain_name: Option<String>,
    #[serde(default)]
    pub interface: Option<String>,
    /// The container (created if missing).
    pub container: String,
    /// Object name prefix.
    #[serde(default)]
    pub prefix: String,
    /// Largest segment of an image in MiB (default 200).
    #[serde(default)]
    pub segment_size_mib: Option<u64>,
}

impl SwiftSettings {
    pub fn check(&self) -> Result<(), String> {
        if self.auth_url.is_empty() || self.container.is_empty() {
            return Err("needs an auth_url and a container".into());
        }
        if !matches!(self.auth_version, None | Some(1) | Some(3)) {
            return Err("auth_version must be 1 or 3".into());
        }
        Ok(())
    }

    pub fn config(&self) -> SwiftConfig {
        let or_default = |v: &Option<String>| v.clone().unwrap_or_else(|| "Default".into());
        let auth = match self.auth_version {
            Some(1) => SwiftAuth::V1 {
                auth_url: self.auth_url.clone(),
                user: self.user.clone(),
                key: self.key.clone(),
            },
            _ => SwiftAuth::Keystone(KeystoneAuth {
                auth_url: self.auth_url.clone(),
                username: self.username.clone(),
                password: self.password.clone(),
                project_name: self.project_name.clone(),
                user_domain_name: or_default(&self.user_domain_name),
                project_domain_name: or_default(&self.project_domain_name),
                interface: self.interface.clone().unwrap_or_else(|| "public".into()),
                region: None,
            }),
        };
        SwiftConfig {
            auth,
            container: self.container.clone(),
            prefix: self.prefix.clone(),
            segment_size: self.segment_size_mib.unwrap_or(200).max(1) << 20,
        }
    }
}

/// A Swift store.
pub struct SwiftStore {
    id: String,
    cfg: SwiftConfig,
    http: reqwest::Client,
    /// (storage URL, token)
    session: Mutex<Option<(String, String)>>,
}

impl std::fmt::Debug for SwiftStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwiftStore")
            .field("id", &self.id)
            .field("container", &self.cfg.container)
            .finish()
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

const SCHEME: &str = "swift://";

/// Headers of a PUT without a body (Swift wants the length said).
const EMPTY: [(&str, &str); 1] = [("content-length", "0")];

impl SwiftStore {
    pub fn new(id: &str, cfg: SwiftConfig) -> Result<Self, StoreError> {
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| StoreError::Config(e.to_string()))?;
        Ok(SwiftStore {
            id: id.to_owned(),
            cfg,
            http,
            session: Mutex::new(None),
        })
    }

    async fn login(&self) -> Result<(String, String), StoreError> {
        match &self.cfg.auth {
            SwiftAuth::V1 {
                auth_url,
                user,
                key,
            } => {
                let resp = self
                    .http
                    .get(auth_url)
                    .header("x-auth-user", user)
                    .header("x-auth-key", key.expose())
                    .send()
                    .await
                    .map_err(unavailable)?;
                match resp.status() {
                    s if s.is_success() => {}
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                        return Err(StoreError::Denied("Swift refused the credentials".into()))
                    }
                    s => return Err(unavailable(format!("Swift auth answered {s}"))),
                }
                let h = |name: &str| {
                    resp.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                        .ok_or_else(|| unavailable(format!("Swift auth sent no {name}")))
                };
                Ok((h("x-storage-url")?, h("x-auth-token")?))
            }
            SwiftAuth::Keystone(auth) => {
                let t = keystone_login(&self.http, auth, &["object-store"]).await?;
                let url = t
                    .endpoint
                    .ok_or_else(|| unavailable("no object-store endpoint in the catalog"))?;
                Ok((url, t.token))
            }
        }
    }

    async fn session(&self, renew: bool) -> Result<(String, String), StoreError> {
        let mut s = self.session.lock().await;
        if renew || s.is_none() {
            *s = Some(self.login().await?);
        }
        s.clone().ok_or_else(|| unavailable("no Swift session"))
    }

    /// Sends a request to `container/object` (object may be empty), logging in again once if
    /// the token was refused. `body` is rebuilt for the retry.
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &str,
        headers: &[(&str, &str)],
        body: impl Fn() -> reqwest::Body,
    ) -> Result<reqwest::Response, StoreError> {
        self.call_with(method, path, query, headers, body, true)
            .await
    }

    /// As [`SwiftStore::call`]; without `retry` a refused token is an error (a streamed body
    /// cannot be sent twice).
    async fn call_with(
        &self,
        method: Method,
        path: &str,
        query: &str,
        headers: &[(&str, &str)],
        body: impl Fn() -> reqwest::Body,
        retry: bool,
    ) -> Result<reqwest::Response, StoreError> {
        let mut renew = false;
        loop {
            let (url, token) = self.session(renew).await?;
            let mut rb = self
                .http
                .request(
                    method.clone(),
                    format!("{}/{path}{query}", url.trim_end_matches('/')),
                )
                .header("x-auth-token", token)
                .body(body());
            for (k, v) in headers {
                rb = rb.header(*k, *v);
            }
            let resp = rb.send().await.map_err(unavailable)?;
            if resp.status() == StatusCode::UNAUTHORIZED && retry && !renew {
                renew = true;
                continue;
            }
            return Ok(resp);
        }
    }

    fn object_path(&self, key: &str) -> String {
        format!("{}/{key}", self.cfg.container)
    }

    fn key_of(&self, location: &str) -> Result<String, StoreError> {
        location
            .strip_prefix(SCHEME)
            .and_then(|r| r.strip_prefix(&self.cfg.container))
            .and_then(|r| r.strip_prefix('/'))
            .filter(|k| k.starts_with(&self.cfg.prefix) && k.len() > self.cfg.prefix.len())
            .map(str::to_owned)
            .ok_or_else(|| StoreError::ForeignLocation(location.to_owned()))
    }

    fn location_of(&self, key: &str) -> String {
        format!("{SCHEME}{}/{key}", self.cfg.container)
    }

    async fn ensure_container(&self) -> Result<(), StoreError> {
        let resp = self
            .call(
                Method::PUT,
                &self.cfg.container,
                "",
                &EMPTY,
                reqwest::Body::default,
            )
            .await?;
        check(resp.status(), &self.cfg.container)
    }

    /// Streams one segment of at most `segment_size` bytes (`first`, then `body`): its size,
    /// its ETag, and the bytes read past its end (the next segment's start).
    async fn put_segment(
        &self,
        path: &str,
        first: Bytes,
        body: &mut ByteStream,
    ) -> Result<(u64, String, Option<Bytes>), StoreError> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        let rx = std::sync::Mutex::new(Some(rx));
        let body_once = || {
            let rx = rx.lock().ok().and_then(|mut r| r.take());
            match rx {
                Some(rx) => reqwest::Body::wrap_stream(tokio_stream(rx)),
                None => reqwest::Body::default(),
            }
        };
        let send = self.call_with(Method::PUT, path, "", &[], body_once, false);
        let limit = self.cfg.segment_size;
        let pump = async {
            let mut n = 0u64;
            let mut pending = Some(first).filter(|b| !b.is_empty());
            loop {
                let chunk = match pending.take() {
                    Some(c) => c,
                    None => {
                        if n >= limit {
                            break;
                        }
                        match body.next().await {
                            None => break,
                            Some(Ok(c)) => c,
                            Some(Err(e)) => {
                                let _ = tx.send(Err(std::io::Error::other("aborted"))).await;
                                return Err(StoreError::Body(e));
                            }
                        }
                    }
                };
                let room = (limit - n) as usize;
                let (now, later) = if chunk.len() > room {
                    (chunk.slice(..room), Some(chunk.slice(room..)))
                } else {
                    (chunk, None)
                };
                n += now.len() as u64;
                if tx.send(Ok(now)).await.is_err() {
                    break;
                }
                if let Some(rest) = later {
                    return Ok((n, Some(rest)));
                }
            }
            drop(tx);
            Ok((n, None))
        };
        let (resp, pumped) = tokio::join!(send, pump);
        let (n, rest) = pumped?;
        let resp = resp?;
        check(resp.status(), path)?;
        let etag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .trim_matches('"')
            .to_owned();
        Ok((n, etag, rest))
    }

    async fn delete_path(&self, path: &str, query: &str) -> Result<(), StoreError> {
        let resp = self
            .call(Method::DELETE, path, query, &[], reqwest::Body::default)
            .await?;
        match resp.status() {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            s => Err(unavailable(format!("DELETE {path} answered {s}"))),
        }
    }
}

fn tokio_stream(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn check(status: StatusCode, what: &str) -> Result<(), StoreError> {
    check_status("Swift", status, what)
}

#[async_trait]
impl Store for SwiftStore {
    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "swift"
    }

    fn owns(&self, location: &LocationUrl) -> bool {
        let location = location.as_str();
        self.key_of(location).is_ok()
    }
    async fn put(&self, image_id: &ImageId, mut body: ByteStream) -> Result<Stored, StoreError> {
        let image_id = image_id.as_str();
        if image_id.is_empty() || image_id.contains(['/', '\\', '.']) {
            return Err(StoreError::Io(std::io::Error::other("invalid object name")));
        }
        self.ensure_container().await?;
        let key = format!("{}{image_id}", self.cfg.prefix);
        let run = uuid::Uuid::new_v4().simple().to_string();
        let mut segments: Vec<(String, u64, String)> = Vec::new();
        let mut total = 0u64;
        let outcome: Result<(), StoreError> = async {
            let mut carry: Option<Bytes> = None;
            loop {
                // Only start a segment when there is a byte for it (or for the first one).
                let first = match carry.take() {
                    Some(c) => c,
                    None => match body.next().await {
                        None if !segments.is_empty() => break,
                        None => Bytes::new(),
                        Some(Ok(c)) => c,
                        Some(Err(e)) => return Err(StoreError::Body(e)),
                    },
                };
                let path = self.object_path(&format!("{key}/seg/{run}/{:08}", segments.len()));
                let (n, etag, rest) = self.put_segment(&path, first, &mut body).await?;
                total += n;
                segments.push((path, n, etag));
                if n < self.cfg.segment_size {
                    break;
                }
                carry = rest;
            }
            Ok(())
        }
        .await;
        let cleanup = |segs: Vec<(String, u64, String)>| async move {
            for (p, _, _) in segs {
                let _ = self.delete_path(&p, "").await;
            }
        };
        if let Err(e) = outcome {
            cleanup(segments).await;
            return Err(e);
        }
        let object = self.object_path(&key);
        let written = if total == 0 {
            // Swift refuses empty segments in a manifest: an empty image is a plain object.
            cleanup(std::mem::take(&mut segments)).await;
            self.call(Method::PUT, &object, "", &EMPTY, reqwest::Body::default)
                .await
        } else {
            let manifest: Vec<Value> = segments
                .iter()
                .map(|(p, n, etag)| json!({"path": format!("/{p}"), "etag": etag, "size_bytes": n}))
                .collect();
            let manifest = Bytes::from(serde_json::to_vec(&manifest).unwrap_or_default());
            self.call(Method::PUT, &object, "?multipart-manifest=put", &[], || {
                reqwest::Body::from(manifest.clone())
            })
            .await
        };
        let status = match written {
            Ok(resp) => check(resp.status(), &object),
            Err(e) => Err(e),
        };
        if let Err(e) = status {
            cleanup(segments).await;
            return Err(e);
        }
        // A Swift without the `slo` middleware keeps the manifest as a plain object and says
        // nothing: the object must have the image's size, or nothing was stored.
        let location = LocationUrl::from(self.location_of(&key));
        if total > 0 {
            match self.size(&location).await {
                Ok(n) if n == total => {}
                found => {
                    let _ = self
                        .delete_path(&object, "?multipart-manifest=delete")
                        .await;
                    let _ = self.delete_path(&object, "").await;
                    cleanup(segments).await;
                    return Err(match found {
                        Err(e) => e,
                        Ok(n) => StoreError::Config(format!(
                            "Swift stored {n} bytes for a {total}-byte image: static large \
                             objects are not supported there (the proxy needs the slo middleware)"
                        )),
                    });
                }
            }
        }
        Ok(Stored {
            location,
            size: total,
        })
    }

    async fn get(
        &self,
        location: &LocationUrl,
        range: Option<ByteRange>,
    ) -> Result<Fetched, StoreError> {
        let location = location.as_str();
        let key = self.key_of(location)?;
        let path = self.object_path(&key);
        let range_header = range.map(|r| format!("bytes={}-{}", r.start, r.end));
        let headers: Vec<(&str, &str)> = range_header
            .as_deref()
            .map(|r| ("range", r))
            .into_iter()
            .collect();
        let resp = self
            .call(Method::GET, &path, "", &headers, reqwest::Body::default)
            .await?;
        check(resp.status(), &path)?;
        let total_size = match range {
            None => resp.content_length(),
            Some(_) => resp
                .headers()
                .get("content-range")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit('/').next())
                .and_then(|n| n.parse().ok()),
        }
        .ok_or_else(|| unavailable("Swift sent no object size"))?;
        let body = resp
            .bytes_stream()
            .map(|r| r.map_err(std::io::Error::other))
            .boxed();
        Ok(Fetched { total_size, body })
    }

    async fn size(&self, location: &LocationUrl) -> Result<u64, StoreError> {
        let location = location.as_str();
        let key = self.key_of(location)?;
        let path = self.object_path(&key);
        let resp = self
            .call(Method::HEAD, &path, "", &[], reqwest::Body::default)
            .await?;
        check(resp.status(), &path)?;
        resp.headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| unavailable("Swift sent no object size"))
    }

    async fn delete(&self, location: &LocationUrl) -> Result<(), StoreError> {
        let location = location.as_str();
        let key = self.key_of(location)?;
        let path = self.object_path(&key);
        // Removes the manifest and its segments; then the object itself, in case it was a plain
        // (empty) object, which not every Swift API deletes with the manifest query.
        self.delete_path(&path, "?multipart-manifest=delete")
            .await?;
        self.delete_path(&path, "").await
    }

    async fn abort_partial(&self, image_id: &ImageId) -> Result<(), StoreError> {
        let image_id = image_id.as_str();
        let prefix = format!("{}{image_id}/seg/", self.cfg.prefix);
        for obj in self.listing(&prefix).await? {
            self.delete_path(&self.object_path(&obj.0), "").await?;
        }
        Ok(())
    }

    async fn list(&self) -> Result<Vec<ListedObject>, StoreError> {
        let mut out = Vec::new();
        for (name, modified) in self.listing(&self.cfg.prefix).await? {
            let Some(rest) = name.strip_prefix(&self.cfg.prefix) else {
                continue;
            };
            let (image_id, partial) = match rest.split_once("/seg/") {
                Some((id, _)) => (id.to_owned(), true),
                None => (rest.to_owned(), false),
            };
            out.push(ListedObject {
                location: self.location_of(&name).into(),
                image_id,
                modified,
                partial,
            });
        }
        Ok(out)
    }

    async fn delete_listed(&self, obj: &ListedObject) -> Result<(), StoreError> {
        if obj.partial {
            let key = self.key_of(obj.location.as_str())?;
            return self.delete_path(&self.object_path(&key), "").await;
        }
        self.delete(&obj.location).await
    }
}

impl SwiftStore {
    /// Object names (and last modification) under `prefix`, all pages.
    async fn listing(&self, prefix: &str) -> Result<Vec<(String, SystemTime)>, StoreError> {
        let mut out = Vec::new();
        let mut marker = String::new();
        loop {
            let query = format!(
                "?{}",
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("format", "json")
                    .append_pair("prefix", prefix)
                    .append_pair("marker", &marker)
                    .finish()
            );
            let resp = self
                .call(
                    Method::GET,
                    &self.cfg.container,
                    &query,
                    &[],
                    reqwest::Body::default,
                )
                .await?;
            if resp.status() == StatusCode::NOT_FOUND {
                return Ok(out);
            }
            check(resp.status(), &self.cfg.container)?;
            let page: Vec<Value> = resp.json().await.map_err(unavailable)?;
            let Some(last) = page.last().and_then(|o| o["name"].as_str()) else {
                return Ok(out);
            };
            marker = last.to_owned();
            for o in &page {
                let Some(name) = o["name"].as_str() else {
                    continue;
                };
                // Swift's `last_modified` is UTC without a zone: `2026-11-25T09:00:00.123456`.
                let modified = o["last_modified"]
                    .as_str()
                    .and_then(|t| {
                        chrono::NaiveDateTime::parse_from_str(
                            t.trim_end_matches('Z'),
                            "%Y-%m-%dT%H:%M:%S%.f",
                        )
                        .ok()
                    })
                    .map(|t| SystemTime::from(t.and_utc()))
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                out.push((name.to_owned(), modified));
            }
        }
    }
}
