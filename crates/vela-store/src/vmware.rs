//! VMware vSphere datastores (vCenter or ESXi), as Glance's vmware driver uses them: a session
//! from the vSphere SOAP API (`/sdk`: `RetrieveServiceContent`, `Login`), image data through
//! the datastore HTTP interface (`/folder/<path>?dcPath=…&dsName=…`) with the session cookie,
//! and file operations as vSphere tasks (`MoveDatastoreFile_Task`, `DeleteDatastoreFile_Task`,
//! polled through the property collector).
//!
//! An upload streams to `<image dir>/<image id>.partial` on the datastore of highest weight and
//! is moved to `<image id>` once complete, so a half-written image is never readable and a
//! crashed upload leaves a `.partial` file that garbage collection lists as partial. Locations
//! are Glance's: `vsphere://<host>/folder<image dir>/<image id>?dcPath=<dc>&dsName=<ds>`.
//! The session is renewed when vSphere says it is gone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use tokio::sync::Mutex;

use crate::{
    ByteRange, ByteStream, Fetched, ImageId, ListedObject, LocationUrl, Store, StoreError, Stored,
};

const SCHEME: &str = "vsphere://";
const PARTIAL: &str = ".partial";
/// Largest SOAP answer or directory listing read.
const MAX_DOCUMENT: usize = 4 << 20;
/// How long a vSphere task may run before the operation is given up.
const TASK_TIMEOUT: Duration = Duration::from_secs(300);

/// One datastore images may go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datastore {
    pub datacenter: String,
    pub name: String,
    /// Uploads go to the datastore of highest weight (the first of those on a tie).
    pub weight: i64,
}

/// A vSphere store's settings.
#[derive(Debug, Clone)]
pub struct VmwareConfig {
    /// `host` or `host:port` of vCenter or ESXi.
    pub host: String,
    pub username: String,
    pub password: vela_domain::Secret,
    pub datastores: Vec<Datastore>,
    /// Directory of the images on each datastore, e.g. `/openstack_glance`.
    pub image_dir: String,
    /// Accept any TLS certificate (Glance's `vmware_insecure`).
    pub insecure: bool,
    /// A PEM file of the CA that signed the server's certificate.
    pub ca_file: Option<std::path::PathBuf>,
    /// Time between two looks at a running vSphere task.
    pub task_poll: Duration,
}

/// `[stores.NAME] type = "vmware"` (Glance's `vmware_*` options).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmwareSettings {
    /// vCenter or ESXi: `host` or `host:port` (always HTTPS).
    pub server_host: String,
    pub server_username: String,
    #[serde(default)]
    pub server_password: vela_domain::Secret,
    /// `datacenter:datastore[:weight]`, one or more.
    pub datastores: Vec<String>,
    /// Image directory on the datastores (default `/openstack_glance`).
    #[serde(default)]
    pub store_image_dir: Option<String>,
    /// Do not check the server's certificate (default false).
    #[serde(default)]
    pub insecure: bool,
    /// CA bundle (PEM) for the server's certificate.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Milliseconds between two looks at a running task (default 500).
    #[serde(default)]
    pub task_poll_interval_ms: Option<u64>,
}

fn parse_datastore(s: &str) -> Result<Datastore, String> {
    let mut parts = s.split(':');
    let (Some(dc), Some(ds)) = (parts.next(), parts.next()) else {
        return Err(format!(
            "datastore '{s}' is not datacenter:datastore[:weight]"
        ));
    };
    let weight = match parts.next() {
        None => 0,
        Some(w) => w
            .parse()
            .map_err(|_| format!("datastore '{s}': the weight is not a number"))?,
    };
    if dc.is_empty() || ds.is_empty() || parts.next().is_some() {
        return Err(format!(
            "datastore '{s}' is not datacenter:datastore[:weight]"
        ));
    }
    Ok(Datastore {
        datacenter: dc.to_owned(),
        name: ds.to_owned(),
        weight,
    })
}

impl VmwareSettings {
    pub fn check(&self) -> Result<(), String> {
        if self.server_host.is_empty() || self.server_host.contains(['/', '?', '#', '@']) {
            return Err("server_host must be a host or host:port".into());
        }
        if self.datastores.is_empty() {
            return Err("needs at least one datastore (datacenter:datastore[:weight])".into());
        }
        for d in &self.datastores {
            parse_datastore(d)?;
        }
        if let Some(dir) = &self.store_image_dir {
            if !dir.starts_with('/') || dir.contains("..") || dir.contains(['?', '#', '[', ']']) {
                return Err(
                    "store_image_dir must be an absolute path like /openstack_glance".into(),
                );
            }
        }
        Ok(())
    }

    pub fn config(&self) -> Result<VmwareConfig, String> {
        self.check()?;
        Ok(VmwareConfig {
            host: self.server_host.clone(),
            username: self.server_username.clone(),
            password: self.server_password.clone(),
            datastores: self
                .datastores
                .iter()
                .map(|d| parse_datastore(d))
                .collect::<Result<_, _>>()?,
            image_dir: self
                .store_image_dir
                .clone()
                .unwrap_or_else(|| "/openstack_glance".into())
                .trim_end_matches('/')
                .to_owned(),
            insecure: self.insecure,
            ca_file: self.ca_file.clone(),
            task_poll: Duration::from_millis(self.task_poll_interval_ms.unwrap_or(500).max(10)),
        })
    }
}

/// Sessions older than this are renewed before use (vCenter ends idle sessions after 30
/// minutes by default, and an upload cannot be repeated once its body has streamed).
const SESSION_REFRESH: Duration = Duration::from_secs(15 * 60);

/// What the service content names, and the session cookie.
#[derive(Clone)]
struct Session {
    cookie: String,
    logged_in: std::time::Instant,
    property_collector: String,
    file_manager: String,
    search_index: String,
    /// Datacenter references by name.
    datacenters: HashMap<String, String>,
}

/// A vSphere datastore store.
pub struct VmwareStore {
    id: String,
    cfg: VmwareConfig,
    http: reqwest::Client,
    session: Mutex<Option<Session>>,
}

impl std::fmt::Debug for VmwareStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmwareStore")
            .field("id", &self.id)
            .field("host", &self.cfg.host)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("vSphere: {e}"))
}

/// Escapes text for an XML element.
fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The text of the first element `name` (any namespace prefix, any attributes) in `xml`.
fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(at) = xml[from..].find('<').map(|i| i + from) {
        let rest = &xml[at + 1..];
        let tag_end = rest.find('>')?;
        let tag = &rest[..tag_end];
        let tag_name = tag.split([' ', '/', '\t', '\n']).next().unwrap_or("");
        let local = tag_name.rsplit(':').next().unwrap_or(tag_name);
        if local == name && !tag.starts_with('/') {
            if tag.ends_with('/') {
                return Some("");
            }
            let body = &rest[tag_end + 1..];
            let close = format!("</{tag_name}>");
            return body.find(&close).map(|end| &body[..end]);
        }
        from = at + 1;
    }
    None
}

/// The fault of a SOAP answer: its type (e.g. `InvalidLogin`) and message.
fn soap_fault(xml: &str) -> Option<(String, String)> {
    let fault = element(xml, "Fault")?;
    let message = element(fault, "faultstring")
        .map(xml_unescape)
        .unwrap_or_default();
    let kind = fault_type(fault).unwrap_or_default();
    Some((kind, message))
}

/// The `xsi:type` of a fault detail (`<…Fault xsi:type="FileNotFound">` or
/// `<FileNotFoundFault …>`).
fn fault_type(xml: &str) -> Option<String> {
    if let Some(at) = xml.find("type=\"") {
        let rest = &xml[at + 6..];
        let end = rest.find('"')?;
        let t = &rest[..end];
        return Some(t.rsplit(':').next().unwrap_or(t).to_owned());
    }
    let detail = element(xml, "detail")?;
    let start = detail.find('<')? + 1;
    let name = detail[start..].split([' ', '>', '/']).next()?;
    Some(name.trim_end_matches("Fault").to_owned())
}

impl VmwareStore {
    pub fn new(id: &str, cfg: VmwareConfig) -> Result<Self, StoreError> {
        let http = crate::remote::client(cfg.insecure, cfg.ca_file.as_deref())?;
        Ok(VmwareStore {
            id: id.to_owned(),
            cfg,
            http,
            session: Mutex::new(None),
        })
    }

    fn base(&self) -> String {
        format!("https://{}", self.cfg.host)
    }

    /// One SOAP call; the answer's body, or the fault as an error (`NotAuthenticated`:
    /// [`SoapError::Session`]).
    async fn soap(&self, cookie: Option<&str>, body: &str) -> Result<String, SoapError> {
        self.soap_with_cookie(cookie, body)
            .await
            .map(|(text, _)| text)
    }

    /// As [`VmwareStore::soap`], with the session cookie the answer set.
    async fn soap_with_cookie(
        &self,
        cookie: Option<&str>,
        body: &str,
    ) -> Result<(String, Option<String>), SoapError> {
        let envelope = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
             <soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" \
             xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns=\"urn:vim25\">\
             <soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"
        );
        let mut rb = self
            .http
            .post(format!("{}/sdk", self.base()))
            .header("content-type", "text/xml; charset=utf-8")
            .header("soapaction", "urn:vim25/6.5")
            .timeout(Duration::from_secs(60))
            .body(envelope);
        if let Some(c) = cookie {
            rb = rb.header("cookie", c);
        }
        let resp = rb
            .send()
            .await
            .map_err(|e| SoapError::Store(unavailable(e)))?;
        let status = resp.status();
        let set_cookie = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with("vmware_soap_session="))
            .and_then(|c| c.split(';').next())
            .map(str::to_owned);
        let text = read_text(resp).await.map_err(SoapError::Store)?;
        if status.is_success() {
            return Ok((text, set_cookie));
        }
        match soap_fault(&text) {
            Some((kind, _)) if kind == "NotAuthenticated" => Err(SoapError::Session),
            Some((kind, msg)) if kind == "InvalidLogin" => Err(SoapError::Store(
                StoreError::Denied(format!("vSphere refused the login: {msg}")),
            )),
            Some((kind, msg)) => Err(SoapError::Fault(kind, msg)),
            None => Err(SoapError::Store(unavailable(format!(
                "/sdk answered {status}"
            )))),
        }
    }

    async fn login(&self) -> Result<Session, StoreError> {
        let content = self
            .soap(
                None,
                "<RetrieveServiceContent><_this type=\"ServiceInstance\">ServiceInstance</_this>\
                 </RetrieveServiceContent>",
            )
            .await
            .map_err(SoapError::into_store)?;
        let field = |name: &str| {
            element(&content, name)
                .map(xml_unescape)
                .ok_or_else(|| unavailable(format!("the service content names no {name}")))
        };
        let session_manager = field("sessionManager")?;
        let (_, cookie) = self
            .soap_with_cookie(
                None,
                &format!(
                    "<Login><_this type=\"SessionManager\">{}</_this><userName>{}</userName>\
                     <password>{}</password></Login>",
                    xml_escape(&session_manager),
                    xml_escape(&self.cfg.username),
                    xml_escape(self.cfg.password.expose())
                ),
            )
            .await
            .map_err(SoapError::into_store)?;
        let cookie = cookie.ok_or_else(|| unavailable("the login set no session cookie"))?;
        let mut s = Session {
            cookie,
            logged_in: std::time::Instant::now(),
            property_collector: field("propertyCollector")?,
            file_manager: field("fileManager")?,
            search_index: field("searchIndex")?,
            datacenters: HashMap::new(),
        };
        for d in &self.cfg.datastores {
            if s.datacenters.contains_key(&d.datacenter) {
                continue;
            }
            let found = self
                .soap(
                    Some(&s.cookie),
                    &format!(
                        "<FindByInventoryPath><_this type=\"SearchIndex\">{}</_this>\
                         <inventoryPath>{}</inventoryPath></FindByInventoryPath>",
                        xml_escape(&s.search_index),
                        xml_escape(&d.datacenter)
                    ),
                )
                .await
                .map_err(SoapError::into_store)?;
            let dc = element(&found, "returnval")
                .map(xml_unescape)
                .ok_or_else(|| {
                    StoreError::Config(format!("vSphere has no datacenter '{}'", d.datacenter))
                })?;
            s.datacenters.insert(d.datacenter.clone(), dc);
        }
        Ok(s)
    }

    async fn session(&self, renew: bool) -> Result<Session, StoreError> {
        let mut s = self.session.lock().await;
        let stale = s
            .as_ref()
            .is_none_or(|s| s.logged_in.elapsed() > SESSION_REFRESH);
        if renew || stale {
            *s = Some(self.login().await?);
        }
        s.clone().ok_or_else(|| unavailable("no session"))
    }

    /// A task-returning call on the file manager, run to its end. The session is renewed
    /// once if vSphere says it is gone. A task that fails gives its fault type and message.
    async fn file_task(&self, make: impl Fn(&Session) -> String) -> Result<(), SoapError> {
        let mut renew = false;
        let (session, task) = loop {
            let s = self.session(renew).await.map_err(SoapError::Store)?;
            match self.soap(Some(&s.cookie), &make(&s)).await {
                Ok(answer) => {
                    let task =
                        element(&answer, "returnval")
                            .map(xml_unescape)
                            .ok_or_else(|| {
                                SoapError::Store(unavailable("a task call named no task"))
                            })?;
                    break (s, task);
                }
                Err(SoapError::Session) if !renew => renew = true,
                Err(e) => return Err(e),
            }
        };
        let started = std::time::Instant::now();
        loop {
            let info = self
                .soap(
                    Some(&session.cookie),
                    &format!(
                        "<RetrievePropertiesEx><_this type=\"PropertyCollector\">{}</_this>\
                         <specSet><propSet><type>Task</type><pathSet>info</pathSet></propSet>\
                         <objectSet><obj type=\"Task\">{}</obj></objectSet></specSet>\
                         <options></options></RetrievePropertiesEx>",
                        xml_escape(&session.property_collector),
                        xml_escape(&task)
                    ),
                )
                .await?;
            match element(&info, "state") {
                Some("success") => return Ok(()),
                Some("error") => {
                    let err = element(&info, "error").unwrap_or("");
                    let kind = element(err, "fault")
                        .and(fault_type(err))
                        .unwrap_or_default();
                    let msg = element(err, "localizedMessage")
                        .map(xml_unescape)
                        .unwrap_or_default();
                    return Err(SoapError::Fault(kind, msg));
                }
                _ if started.elapsed() > TASK_TIMEOUT => {
                    return Err(SoapError::Store(unavailable(format!(
                        "task {task} still running after {} s",
                        TASK_TIMEOUT.as_secs()
                    ))))
                }
                _ => tokio::time::sleep(self.cfg.task_poll).await,
            }
        }
    }

    /// `[datastore] path` of a file of the image directory.
    fn ds_path(&self, ds: &Datastore, file: &str) -> String {
        format!(
            "[{}] {}/{file}",
            ds.name,
            self.cfg.image_dir.trim_start_matches('/')
        )
    }

    fn datacenter_arg(s: &Session, ds: &Datastore, element_name: &str) -> String {
        s.datacenters
            .get(&ds.datacenter)
            .map(|r| {
                format!(
                    "<{element_name} type=\"Datacenter\">{}</{element_name}>",
                    xml_escape(r)
                )
            })
            .unwrap_or_default()
    }

    /// Deletes a file of the image directory; a missing file is fine.
    async fn delete_file(&self, ds: &Datastore, file: &str) -> Result<(), StoreError> {
        let name = self.ds_path(ds, file);
        let res = self
            .file_task(|s| {
                format!(
                    "<DeleteDatastoreFile_Task><_this type=\"FileManager\">{}</_this>\
                     <name>{}</name>{}</DeleteDatastoreFile_Task>",
                    xml_escape(&s.file_manager),
                    xml_escape(&name),
                    Self::datacenter_arg(s, ds, "datacenter")
                )
            })
            .await;
        match res {
            Ok(()) => Ok(()),
            Err(SoapError::Fault(kind, _)) if kind == "FileNotFound" => Ok(()),
            Err(e) => Err(e.into_store()),
        }
    }

    /// The datastore HTTP URL of a file of the image directory.
    fn folder_url(&self, ds: &Datastore, file: &str) -> String {
        let q = form_urlencoded::Serializer::new(String::new())
            .append_pair("dcPath", &ds.datacenter)
            .append_pair("dsName", &ds.name)
            .finish();
        format!("{}/folder{}/{file}?{q}", self.base(), self.cfg.image_dir)
    }

    fn location_of(&self, ds: &Datastore, file: &str) -> LocationUrl {
        let url = self.folder_url(ds, file);
        let rest = url.strip_prefix("https://").unwrap_or(&url);
        format!("{SCHEME}{rest}").into()
    }

    /// The datastore and file name of one of this store's locations.
    fn parse(&self, location: &LocationUrl) -> Result<(Datastore, String), StoreError> {
        let foreign = || StoreError::ForeignLocation(location.as_str().to_owned());
        let rest = location
            .as_str()
            .strip_prefix(SCHEME)
            .and_then(|r| r.strip_prefix(&self.cfg.host))
            .and_then(|r| r.strip_prefix("/folder"))
            .and_then(|r| r.strip_prefix(&self.cfg.image_dir))
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(foreign)?;
        let (file, query) = rest.split_once('?').ok_or_else(foreign)?;
        let q: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let ds = self
            .cfg
            .datastores
            .iter()
            .find(|d| q.get("dcPath") == Some(&d.datacenter) && q.get("dsName") == Some(&d.name))
            .ok_or_else(foreign)?;
        if file.is_empty() || file.contains(['/', '\\']) || file.starts_with('.') {
            return Err(StoreError::BadLocation(location.as_str().to_owned()));
        }
        Ok((ds.clone(), file.to_owned()))
    }

    /// A request on the datastore HTTP interface with the session cookie, renewing the
    /// session once when refused (bodyless requests only).
    async fn folder(
        &self,
        method: Method,
        url: &str,
        range: Option<ByteRange>,
    ) -> Result<reqwest::Response, StoreError> {
        let mut renew = false;
        loop {
            let s = self.session(renew).await?;
            let mut rb = self
                .http
                .request(method.clone(), url)
                .header("cookie", &s.cookie);
            if let Some(r) = range {
                rb = rb.header("range", format!("bytes={}-{}", r.start, r.end));
            }
            let resp = rb.send().await.map_err(unavailable)?;
            if matches!(
                resp.status(),
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
            ) && !renew
            {
                renew = true;
                continue;
            }
            return Ok(resp);
        }
    }

    /// The datastore of highest weight (the first of those on a tie).
    fn upload_datastore(&self) -> Result<&Datastore, StoreError> {
        let best = self.cfg.datastores.iter().map(|d| d.weight).max();
        self.cfg
            .datastores
            .iter()
            .find(|d| Some(d.weight) == best)
            .ok_or_else(|| StoreError::Config("no datastore configured".into()))
    }

    /// The files of the image directory on `ds` (from the directory's HTTP listing).
    async fn listing(&self, ds: &Datastore) -> Result<Vec<String>, StoreError> {
        let url = self.folder_url(ds, "");
        let resp = self.folder(Method::GET, &url, None).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        check(resp.status(), &url)?;
        let page = read_text(resp).await?;
        let mut names = Vec::new();
        for part in page.split("href=\"").skip(1) {
            let Some(href) = part.split('"').next() else {
                continue;
            };
            let path = href.split('?').next().unwrap_or("");
            let last = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
            let name: String = form_urlencoded::parse(format!("n={last}").as_bytes())
                .map(|(_, v)| v.into_owned())
                .next()
                .unwrap_or_default();
            // Only what Vela writes: image ids, complete or partial (a datastore directory
            // may hold other files, and listing pages link parents and siblings).
            let stem = name.strip_suffix(PARTIAL).unwrap_or(&name);
            if path.ends_with('/') || ImageId::parse(stem).is_none() {
                continue;
            }
            if !names.contains(&name) {
                names.push(name);
            }
        }
        Ok(names)
    }
}

/// Why a SOAP call failed.
enum SoapError {
    /// vSphere no longer knows the session.
    Session,
    /// A vSphere fault: its type and message.
    Fault(String, String),
    Store(StoreError),
}

impl SoapError {
    fn into_store(self) -> StoreError {
        match self {
            SoapError::Session => unavailable("the session was refused after a new login"),
            SoapError::Fault(kind, msg) => unavailable(format!("{kind}: {msg}")),
            SoapError::Store(e) => e,
        }
    }
}

/// A response's text, at most [`MAX_DOCUMENT`] bytes.
async fn read_text(resp: reqwest::Response) -> Result<String, StoreError> {
    let body = crate::remote::read_bounded(resp, MAX_DOCUMENT, "vSphere").await?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn check(status: StatusCode, what: &str) -> Result<(), StoreError> {
    crate::remote::check_status("vSphere", status, what)
}

#[async_trait]
impl Store for VmwareStore {
    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "vmware"
    }

    fn owns(&self, location: &LocationUrl) -> bool {
        location
            .as_str()
            .strip_prefix(SCHEME)
            .is_some_and(|r| r.starts_with(&format!("{}/folder", self.cfg.host)))
    }

    async fn put(&self, image_id: &ImageId, body: ByteStream) -> Result<Stored, StoreError> {
        let ds = self.upload_datastore()?.clone();
        let id = image_id.as_str();
        let partial = format!("{id}{PARTIAL}");
        let session = self.session(false).await?;
        // The body is counted, and its own failure told apart from the server's.
        let size = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let failure: Arc<StdMutex<Option<std::io::Error>>> = Arc::default();
        let counted = {
            let (size, failure) = (size.clone(), failure.clone());
            body.map(move |r| {
                match &r {
                    Ok(b) => {
                        size.fetch_add(b.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(e) => {
                        if let Ok(mut f) = failure.lock() {
                            *f = Some(std::io::Error::new(e.kind(), e.to_string()));
                        }
                    }
                }
                r
            })
        };
        let sent = self
            .http
            .put(self.folder_url(&ds, &partial))
            .header("cookie", &session.cookie)
            .header("content-type", "application/octet-stream")
            .body(reqwest::Body::wrap_stream(counted))
            .send()
            .await;
        let body_failure = failure.lock().ok().and_then(|mut f| f.take());
        let outcome = match (sent, body_failure) {
            (_, Some(e)) => Err(StoreError::Body(e)),
            (Err(e), None) => Err(unavailable(e)),
            (Ok(resp), None) => check(resp.status(), &partial),
        };
        if let Err(e) = outcome {
            if let Err(cleanup) = self.delete_file(&ds, &partial).await {
                tracing::warn!(store = %self.id, file = %partial, error = %cleanup,
                               "could not remove a failed upload");
            }
            return Err(e);
        }
        let (from, to) = (self.ds_path(&ds, &partial), self.ds_path(&ds, id));
        self.file_task(|s| {
            format!(
                "<MoveDatastoreFile_Task><_this type=\"FileManager\">{}</_this>\
                 <sourceName>{}</sourceName>{}<destinationName>{}</destinationName>{}\
                 <force>true</force></MoveDatastoreFile_Task>",
                xml_escape(&s.file_manager),
                xml_escape(&from),
                Self::datacenter_arg(s, &ds, "sourceDatacenter"),
                xml_escape(&to),
                Self::datacenter_arg(s, &ds, "destinationDatacenter"),
            )
        })
        .await
        .map_err(SoapError::into_store)?;
        Ok(Stored {
            location: self.location_of(&ds, id),
            size: size.load(std::sync::atomic::Ordering::Relaxed),
        })
    }

    async fn get(
        &self,
        location: &LocationUrl,
        range: Option<ByteRange>,
    ) -> Result<Fetched, StoreError> {
        let (ds, file) = self.parse(location)?;
        let url = self.folder_url(&ds, &file);
        let resp = self.folder(Method::GET, &url, range).await?;
        check(resp.status(), location.as_str())?;
        let total_size = match resp.status() {
            StatusCode::PARTIAL_CONTENT => resp
                .headers()
                .get("content-range")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit('/').next())
                .and_then(|n| n.parse().ok()),
            _ if range.is_some() => None,
            _ => resp.content_length(),
        }
        .ok_or_else(|| unavailable("the datastore sent no size (or ignored the range)"))?;
        let body = resp
            .bytes_stream()
            .map(|r| r.map_err(std::io::Error::other))
            .boxed();
        Ok(Fetched { total_size, body })
    }

    async fn size(&self, location: &LocationUrl) -> Result<u64, StoreError> {
        let (ds, file) = self.parse(location)?;
        let url = self.folder_url(&ds, &file);
        let resp = self.folder(Method::HEAD, &url, None).await?;
        check(resp.status(), location.as_str())?;
        resp.headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| unavailable("the datastore sent no size"))
    }

    async fn delete(&self, location: &LocationUrl) -> Result<(), StoreError> {
        let (ds, file) = self.parse(location)?;
        self.delete_file(&ds, &file).await
    }

    async fn abort_partial(&self, image_id: &ImageId) -> Result<(), StoreError> {
        let partial = format!("{}{PARTIAL}", image_id.as_str());
        for ds in &self.cfg.datastores {
            self.delete_file(ds, &partial).await?;
        }
        Ok(())
    }

    async fn list(&self) -> Result<Vec<ListedObject>, StoreError> {
        let mut out = Vec::new();
        for ds in &self.cfg.datastores {
            for name in self.listing(ds).await? {
                let location = self.location_of(ds, &name);
                let modified = match self
                    .folder(Method::HEAD, &self.folder_url(ds, &name), None)
                    .await
                {
                    Ok(resp) => resp
                        .headers()
                        .get("last-modified")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
                        .map(SystemTime::from)
                        .unwrap_or_else(SystemTime::now),
                    Err(_) => SystemTime::now(),
                };
                let (image_id, partial) = match name.strip_suffix(PARTIAL) {
                    Some(id) => (id.to_owned(), true),
                    None => (name.clone(), false),
                };
                out.push(ListedObject {
                    location,
                    image_id,
                    modified,
                    partial,
                });
            }
        }
        Ok(out)
    }

    async fn delete_listed(&self, obj: &ListedObject) -> Result<(), StoreError> {
        let (ds, file) = self.parse(&obj.location)?;
        self.delete_file(&ds, &file).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        let s = |ds: &[&str], dir: Option<&str>| VmwareSettings {
            server_host: "vc.example:443".into(),
            server_username: "u".into(),
            server_password: Default::default(),
            datastores: ds.iter().map(|d| (*d).to_owned()).collect(),
            store_image_dir: dir.map(str::to_owned),
            insecure: false,
            ca_file: None,
            task_poll_interval_ms: None,
        };
        let cfg = s(&["DC0:LocalDS_0", "DC0:fast:10"], None).config().unwrap();
        assert_eq!(cfg.image_dir, "/openstack_glance");
        assert_eq!(cfg.datastores[1].weight, 10);
        assert!(s(&[], None).check().is_err());
        assert!(s(&["DC0"], None).check().is_err());
        assert!(s(&["DC0:ds:heavy"], None).check().is_err());
        assert!(s(&["DC0:ds"], Some("rel/dir")).check().is_err());
        assert!(s(&["DC0:ds"], Some("/a/../b")).check().is_err());
    }

    #[test]
    fn elements_and_faults_are_read() {
        let xml = r#"<soapenv:Body><RetrieveServiceContentResponse xmlns="urn:vim25"><returnval>
            <rootFolder type="Folder">group-d1</rootFolder>
            <sessionManager type="SessionManager">SessionManager</sessionManager>
            <about><name>x &amp; y</name></about></returnval></RetrieveServiceContentResponse>"#;
        assert_eq!(element(xml, "sessionManager"), Some("SessionManager"));
        assert_eq!(
            element(xml, "name").map(xml_unescape).as_deref(),
            Some("x & y")
        );
        assert_eq!(element(xml, "missing"), None);
        let fault = r#"<soapenv:Body><soapenv:Fault><faultcode>ServerFaultCode</faultcode>
            <faultstring>Login failure</faultstring><detail>
            <InvalidLoginFault xmlns="urn:vim25" xsi:type="InvalidLogin"></InvalidLoginFault>
            </detail></soapenv:Fault></soapenv:Body>"#;
        assert_eq!(
            soap_fault(fault),
            Some(("InvalidLogin".into(), "Login failure".into()))
        );
    }

    #[test]
    fn locations_round_trip_and_foreign_ones_are_refused() {
        let settings = VmwareSettings {
            server_host: "vc:8989".into(),
            server_username: "u".into(),
            server_password: Default::default(),
            datastores: vec!["DC 0:LocalDS_0".into()],
            store_image_dir: None,
            insecure: true,
            ca_file: None,
            task_poll_interval_ms: None,
        };
        let store = VmwareStore::new("vm", settings.config().unwrap()).unwrap();
        let ds = store.cfg.datastores[0].clone();
        let loc = store.location_of(&ds, "abc");
        assert_eq!(
            loc.as_str(),
            "vsphere://vc:8989/folder/openstack_glance/abc?dcPath=DC+0&dsName=LocalDS_0"
        );
        assert!(store.owns(&loc));
        assert_eq!(store.parse(&loc).unwrap(), (ds, "abc".to_owned()));
        for bad in [
            "vsphere://other:1/folder/openstack_glance/abc?dcPath=DC+0&dsName=LocalDS_0",
            "vsphere://vc:8989/folder/openstack_glance/abc?dcPath=DC1&dsName=LocalDS_0",
            "vsphere://vc:8989/folder/elsewhere/abc?dcPath=DC+0&dsName=LocalDS_0",
        ] {
            assert!(matches!(
                store.parse(&bad.into()),
                Err(StoreError::ForeignLocation(_))
            ));
        }
        let sneaky: LocationUrl =
            "vsphere://vc:8989/folder/openstack_glance/../x?dcPath=DC+0&dsName=LocalDS_0".into();
        assert!(store.parse(&sneaky).is_err());
    }
}
