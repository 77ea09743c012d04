//! Test harness: starts the real `vela` binary (or uses `VELA_TEST_URL`) and
//! offers small HTTP helpers plus a raw HTTP/1.1 client for the cases reqwest
//! cannot express (no `Accept` header, truncated bodies, interleaved writes).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use md5::Md5;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256, Sha512};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const PATCH_V21: &str = "application/openstack-images-v2.1-json-patch";
pub const PATCH_V20: &str = "application/openstack-images-v2.0-json-patch";
pub const OCTET: &str = "application/octet-stream";

/// The base fields every image representation carries (samples 05/06/09).
pub const BASE_FIELDS: &[&str] = &[
    "checksum",
    "container_format",
    "created_at",
    "disk_format",
    "file",
    "id",
    "min_disk",
    "min_ram",
    "name",
    "os_hash_algo",
    "os_hash_value",
    "os_hidden",
    "owner",
    "protected",
    "schema",
    "self",
    "size",
    "status",
    "tags",
    "updated_at",
    "virtual_size",
    "visibility",
];

pub const DISK_FORMATS: &[&str] = &[
    "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop",
];
pub const CONTAINER_FORMATS: &[&str] = &[
    "ami",
    "ari",
    "aki",
    "bare",
    "ovf",
    "ova",
    "docker",
    "compressed",
];

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh random-looking UUID (v4 layout) without pulling in a uuid crate.
pub fn new_uuid() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let mut h = Sha256::new();
    h.update(nanos.to_le_bytes());
    h.update(n.to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    let mut b: [u8; 16] = [0; 16];
    b.copy_from_slice(&h.finalize()[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

/// `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`
pub fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// Canonical (lower or upper case) 8-4-4-4-12 hex UUID.
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

pub fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// `req-<uuid>`
pub fn is_request_id(s: &str) -> bool {
    s.strip_prefix("req-").is_some_and(is_uuid)
}

pub fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

pub fn sha512_hex(data: &[u8]) -> String {
    hex::encode(Sha512::digest(data))
}

/// Deterministic printable payload: detected as `raw` by Glance's format
/// inspector (no magic numbers anywhere), distinct bytes at nearby offsets.
pub fn test_data(len: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    (0..len)
        .map(|i| ALPHABET[(i * 7 + i / ALPHABET.len()) % ALPHABET.len()])
        .collect()
}

/// Sorted list of the keys of a JSON object.
pub fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

pub fn sorted_strings(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| {
            x.as_str()
                .unwrap_or_else(|| panic!("not a string: {x}"))
                .to_owned()
        })
        .collect();
    out.sort();
    out
}

pub fn ids_of(list: &Value) -> Vec<String> {
    list["images"]
        .as_array()
        .unwrap_or_else(|| panic!("no images array: {list}"))
        .iter()
        .map(|i| i["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Checks an image representation field by field against the shape of the samples.
pub fn assert_image_shape(img: &Value) {
    let obj = img
        .as_object()
        .unwrap_or_else(|| panic!("image not an object: {img}"));
    for f in BASE_FIELDS {
        assert!(obj.contains_key(*f), "missing base field {f} in {img}");
    }
    let id = img["id"].as_str().unwrap_or_else(|| panic!("id: {img}"));
    assert!(is_uuid(id), "id {id}");
    assert_eq!(img["self"], format!("/v2/images/{id}"));
    assert_eq!(img["file"], format!("/v2/images/{id}/file"));
    assert_eq!(img["schema"], "/v2/schemas/image");
    for f in ["created_at", "updated_at"] {
        let t = img[f].as_str().unwrap_or_else(|| panic!("{f}: {img}"));
        assert!(is_timestamp(t), "{f} = {t}");
    }
    for f in ["min_disk", "min_ram"] {
        assert!(img[f].is_u64(), "{f} not an unsigned integer: {img}");
    }
    for f in ["protected", "os_hidden"] {
        assert!(img[f].is_boolean(), "{f} not a boolean: {img}");
    }
    for f in ["size", "virtual_size"] {
        assert!(img[f].is_null() || img[f].is_u64(), "{f}: {img}");
    }
    for f in [
        "name",
        "checksum",
        "os_hash_algo",
        "os_hash_value",
        "owner",
        "disk_format",
        "container_format",
    ] {
        assert!(img[f].is_null() || img[f].is_string(), "{f}: {img}");
    }
    assert!(img["status"].is_string(), "status: {img}");
    let vis = img["visibility"].as_str().unwrap_or_default();
    assert!(
        ["public", "private", "shared", "community"].contains(&vis),
        "visibility {vis}"
    );
    let tags = img["tags"]
        .as_array()
        .unwrap_or_else(|| panic!("tags: {img}"));
    assert!(tags.iter().all(Value::is_string), "tags: {img}");
    // Custom properties are strings.
    for (k, v) in obj {
        if !BASE_FIELDS.contains(&k.as_str()) && k != "locations" && k != "direct_url" {
            assert!(v.is_string(), "custom property {k} not a string: {img}");
        }
    }
}

/// Identity headers for a non-admin (or admin) caller; ignored by external
/// noauth Glance, so tests using them are Vela-only.
pub struct Persona {
    pub project: String,
    pub roles: String,
    pub user: String,
}

impl Persona {
    pub fn member(project: &str) -> Persona {
        Persona {
            project: project.to_owned(),
            roles: "member,reader".to_owned(),
            user: format!("user-of-{project}"),
        }
    }

    pub fn admin(project: &str) -> Persona {
        Persona {
            project: project.to_owned(),
            roles: "admin,member,reader".to_owned(),
            user: format!("admin-of-{project}"),
        }
    }

    pub fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-roles", HeaderValue::from_str(&self.roles).unwrap());
        h.insert(
            "x-project-id",
            HeaderValue::from_str(&self.project).unwrap(),
        );
        h.insert("x-user-id", HeaderValue::from_str(&self.user).unwrap());
        h
    }
}

/// A parsed response read off a raw TCP connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub struct TestApp {
    pub url: String,
    pub client: reqwest::Client,
    /// Unique per test: use it in names/tags so tests sharing a server don't collide.
    pub prefix: String,
    external: bool,
    child: Option<Child>,
    data_dir: Option<tempfile::TempDir>,
    database: Option<TestDatabase>,
    cluster: Option<ClusterInfo>,
    /// The server's log file.
    log: Option<PathBuf>,
}

/// What nodes of one cluster share.
#[derive(Clone)]
pub struct ClusterInfo {
    config: String,
    db_url: String,
    /// Settings every node gets from the environment.
    env: Vec<(String, String)>,
    /// The shared directory; images live in `root/images`.
    pub root: PathBuf,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // A failed test shows the end of each server's log.
        if std::thread::panicking() {
            if let Some(log) = self
                .log
                .as_ref()
                .and_then(|p| std::fs::read_to_string(p).ok())
            {
                let lines: Vec<&str> = log.lines().collect();
                let tail = &lines[lines.len().saturating_sub(40)..];
                eprintln!("---- server log {} (end)\n{}", self.url, tail.join("\n"));
            }
        }
        if let Some(db) = self.database.take() {
            db.drop_database();
        }
    }
}

/// A throw-away database on the server named by `VELA_TEST_DB` (`postgres` or `mysql`),
/// created with the database's own command-line client. Unset: each server uses its own
/// SQLite file in its data directory.
pub struct TestDatabase {
    kind: String,
    name: String,
    pub url: String,
}

fn run_sql_client(kind: &str, sql: &str) -> Result<(), String> {
    let out = match kind {
        "postgres" => {
            let base = std::env::var("VELA_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
            Command::new("psql")
                .arg(format!("{base}/postgres"))
                .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
                .output()
        }
        "mysql" => Command::new("mariadb")
            .args(["-h", "127.0.0.1", "-P", "3306", "-u", "root", "-e", sql])
            .output(),
        other => return Err(format!("VELA_TEST_DB={other}: use postgres or mysql")),
    }
    .map_err(|e| format!("running the {kind} client: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

impl TestDatabase {
    fn create() -> Option<TestDatabase> {
        let kind = std::env::var("VELA_TEST_DB")
            .ok()
            .filter(|k| k != "sqlite")?;
        let name = format!("vela_t_{}", new_uuid().replace('-', "")[..16].to_owned());
        run_sql_client(&kind, &format!("CREATE DATABASE {name}")).unwrap_or_else(|e| panic!("{e}"));
        let url = match kind.as_str() {
            "postgres" => format!(
                "{}/{name}",
                std::env::var("VELA_TEST_POSTGRES_URL")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
            ),
            _ => format!("mysql://root@127.0.0.1:3306/{name}"),
        };
        Some(TestDatabase { kind, name, url })
    }

    fn drop_database(&self) {
        let force = if self.kind == "postgres" {
            " WITH (FORCE)"
        } else {
            ""
        };
        let _ = run_sql_client(
            &self.kind,
            &format!("DROP DATABASE IF EXISTS {}{force}", self.name),
        );
    }
}

fn make_client() -> reqwest::Client {
    let mut headers = HeaderMap::new();
    // Like python-glanceclient / tempest: error bodies come back as JSON.
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::start(None).await
    }

    pub async fn spawn_with_config(toml: &str) -> TestApp {
        Self::start(Some(toml.to_owned())).await
    }

    async fn start(config: Option<String>) -> TestApp {
        let prefix = format!("vt-{}", &new_uuid()[..8]);
        if let Ok(url) = std::env::var("VELA_TEST_URL") {
            let url = url.trim_end_matches('/').to_owned();
            return TestApp {
                url,
                client: make_client(),
                prefix,
                external: true,
                child: None,
                data_dir: None,
                database: None,
                cluster: None,
                log: None,
            };
        }
        let dir = tempfile::tempdir().unwrap();
        let database = tokio::task::spawn_blocking(TestDatabase::create)
            .await
            .unwrap();
        let (child, url) = tokio::task::spawn_blocking({
            let dir = dir.path().to_owned();
            let db_url = database.as_ref().map(|d| d.url.clone());
            move || start_child(&dir, config.as_deref(), db_url.as_deref(), &[])
        })
        .await
        .unwrap();
        let log = Some(dir.path().join("stderr.log"));
        TestApp {
            url,
            client: make_client(),
            prefix,
            external: false,
            child: Some(child),
            data_dir: Some(dir),
            database,
            cluster: None,
            log,
        }
    }

    /// Starts `n` nodes sharing one database (the `VELA_TEST_DB` server, else one SQLite file)
    /// and one image directory, as a fleet of stateless API nodes. None with `VELA_TEST_URL`.
    pub async fn spawn_cluster(n: usize) -> Option<Vec<TestApp>> {
        Self::spawn_cluster_with(n, "").await
    }

    /// As [`TestApp::spawn_cluster`], with extra TOML for every node.
    pub async fn spawn_cluster_with(n: usize, extra: &str) -> Option<Vec<TestApp>> {
        if std::env::var("VELA_TEST_URL").is_ok() {
            return None;
        }
        let shared = tempfile::tempdir().unwrap();
        let database = tokio::task::spawn_blocking(TestDatabase::create)
            .await
            .unwrap();
        let db_url = database.as_ref().map_or_else(
            || format!("sqlite://{}/vela.sqlite", shared.path().display()),
            |d| d.url.clone(),
        );
        // The image directory and the staging area are shared by every node (through the
        // environment, so that `extra` may have `[store]` and `[import]` tables of its own).
        let env = vec![
            (
                "VELA_STORE__PATH".to_owned(),
                format!("{}/images", shared.path().display()),
            ),
            (
                "VELA_IMPORT__STAGING_PATH".to_owned(),
                format!("{}/staging", shared.path().display()),
            ),
        ];
        let info = ClusterInfo {
            config: extra.to_owned(),
            db_url,
            root: shared.path().to_owned(),
            env,
        };
        let mut nodes = Vec::with_capacity(n);
        for _ in 0..n {
            nodes.push(Self::start_node(&info).await);
        }
        // The last node to be dropped owns the shared directory and database.
        if let Some(last) = nodes.last_mut() {
            last.data_dir = Some(shared);
            last.database = database;
        }
        Some(nodes)
    }

    async fn start_node(info: &ClusterInfo) -> TestApp {
        let dir = info.root.join(format!("node-{}", &new_uuid()[..8]));
        std::fs::create_dir_all(&dir).unwrap();
        let (config, db_url, env) = (info.config.clone(), info.db_url.clone(), info.env.clone());
        let log = Some(dir.join("stderr.log"));
        let (child, url) = tokio::task::spawn_blocking(move || {
            start_child(&dir, Some(&config), Some(&db_url), &env)
        })
        .await
        .unwrap();
        TestApp {
            url,
            client: make_client(),
            prefix: format!("vt-{}", &new_uuid()[..8]),
            external: false,
            child: Some(child),
            data_dir: None,
            database: None,
            cluster: Some(info.clone()),
            log,
        }
    }

    /// Starts one more node of this node's cluster.
    pub async fn spawn_sibling(&self) -> TestApp {
        let info = self.cluster.as_ref().expect("not a cluster node");
        Self::start_node(info).await
    }

    /// What the cluster shares (None outside a cluster).
    pub fn cluster(&self) -> Option<&ClusterInfo> {
        self.cluster.as_ref()
    }

    /// Runs a `vela` subcommand against this node's (or cluster's) configuration, database
    /// and store, whatever its outcome.
    pub fn run_vela_output(&self, args: &[&str]) -> std::process::Output {
        let Some(info) = self.cluster.as_ref() else {
            let dir = self.data_dir().expect("a server this suite started");
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_vela"));
            let cfg = dir.join("config.toml");
            if cfg.exists() {
                cmd.arg("--config").arg(cfg);
            }
            if let Some(db) = &self.database {
                cmd.env("VELA_DATABASE__URL", &db.url);
            }
            return cmd
                .arg("--data-dir")
                .arg(dir.join("data"))
                .args(args)
                .output()
                .unwrap();
        };
        let cfg = info.root.join(format!("cli-{}.toml", &new_uuid()[..8]));
        std::fs::write(&cfg, &info.config).unwrap();
        // The shared settings come from the environment; the data directory is the
        // cluster's own (not `vela-data` in the working directory).
        Command::new(env!("CARGO_BIN_EXE_vela"))
            .arg("--config")
            .arg(&cfg)
            .arg("--data-dir")
            .arg(info.root.join("cli-data"))
            .args(args)
            .env("VELA_DATABASE__URL", &info.db_url)
            .envs(info.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap()
    }

    /// Runs a `vela` subcommand as [`TestApp::run_vela_output`]; returns stdout.
    pub fn run_vela(&self, args: &[&str]) -> String {
        let out = self.run_vela_output(args);
        assert!(
            out.status.success(),
            "vela {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Kills the server process with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// True when running against `VELA_TEST_URL` (e.g. the real Glance):
    /// Vela-only tests return early.
    pub fn is_external(&self) -> bool {
        self.external
    }

    /// The server's data directory (None for an external server).
    /// The server process's id (None for an external server).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// What the server has logged so far (empty for an external server).
    /// The operators' listener (`[metrics] bind`), when the server has one.
    pub fn metrics_url(&self) -> Option<String> {
        let dir = self.log.as_ref()?.parent()?;
        std::fs::read_to_string(dir.join("metrics.url")).ok()
    }

    pub fn server_log(&self) -> String {
        self.log
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    pub fn data_dir(&self) -> Option<&Path> {
        self.data_dir.as_ref().map(|d| d.path())
    }

    /// A name unique to this test.
    pub fn name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.prefix)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub fn host_port(&self) -> String {
        let rest = self
            .url
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("only http:// URLs supported: {}", self.url));
        rest.split('/').next().unwrap_or(rest).to_owned()
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// Sends a request; every response under /v2 must carry a
    /// `x-openstack-request-id: req-<uuid>` header.
    pub async fn send(&self, rb: RequestBuilder) -> Response {
        let resp = rb.send().await.unwrap();
        // The version document (300) comes from the version-negotiation
        // layer, which runs before the request-id middleware in Glance.
        if resp.url().path().starts_with("/v2") && resp.status() != StatusCode::MULTIPLE_CHOICES {
            let rid = resp
                .headers()
                .get("x-openstack-request-id")
                .map(|v| v.to_str().unwrap_or_default().to_owned());
            let rid = rid.unwrap_or_else(|| panic!("no x-openstack-request-id on {}", resp.url()));
            assert!(is_request_id(&rid), "bad request id {rid}");
        }
        resp
    }

    pub async fn get(&self, path: &str) -> Response {
        self.send(self.request(Method::GET, path)).await
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.send(self.request(Method::DELETE, path)).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.send(self.request(Method::POST, path).json(body)).await
    }

    pub async fn post_empty(&self, path: &str) -> Response {
        self.send(self.request(Method::POST, path)).await
    }

    pub async fn put_empty(&self, path: &str) -> Response {
        self.send(self.request(Method::PUT, path)).await
    }

    pub fn patch_request(&self, id: &str, media_type: &str, body: &Value) -> RequestBuilder {
        self.request(Method::PATCH, &format!("/v2/images/{id}"))
            .header(CONTENT_TYPE, media_type)
            .body(serde_json::to_vec(body).unwrap())
    }

    pub async fn patch(&self, id: &str, media_type: &str, body: &Value) -> Response {
        self.send(self.patch_request(id, media_type, body)).await
    }

    /// PATCH (v2.1 media type) that must succeed; returns the image.
    pub async fn patch_ok(&self, id: &str, body: &Value) -> Value {
        let resp = self.patch(id, PATCH_V21, body).await;
        expect_json(resp, StatusCode::OK).await
    }

    /// Fixed-length upload with `Content-Type: application/octet-stream`.
    pub async fn put_file(&self, id: &str, data: Vec<u8>) -> Response {
        self.send(
            self.request(Method::PUT, &format!("/v2/images/{id}/file"))
                .header(CONTENT_TYPE, OCTET)
                .body(data),
        )
        .await
    }

    /// Streaming (chunked transfer-encoding) upload of the given chunks.
    pub async fn upload(&self, id: &str, chunks: Vec<Vec<u8>>) -> Response {
        let stream = futures::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<bytes::Bytes, std::io::Error>(bytes::Bytes::from(c))),
        );
        self.send(
            self.request(Method::PUT, &format!("/v2/images/{id}/file"))
                .header(CONTENT_TYPE, OCTET)
                .body(reqwest::Body::wrap_stream(stream)),
        )
        .await
    }

    pub async fn download(&self, id: &str) -> Response {
        self.get(&format!("/v2/images/{id}/file")).await
    }

    pub async fn download_range(&self, id: &str, range: &str) -> Response {
        self.send(
            self.request(Method::GET, &format!("/v2/images/{id}/file"))
                .header("Range", range),
        )
        .await
    }

    /// POST /v2/images that must answer 201; returns the image.
    pub async fn create_image(&self, body: Value) -> Value {
        let resp = self.post_json("/v2/images", &body).await;
        expect_json(resp, StatusCode::CREATED).await
    }

    /// Creates a raw/bare image, uploads `data` and returns the active image.
    pub async fn create_active_image(&self, mut body: Value, data: &[u8]) -> Value {
        let obj = body.as_object_mut().unwrap();
        obj.entry("disk_format").or_insert("raw".into());
        obj.entry("container_format").or_insert("bare".into());
        let img = self.create_image(body).await;
        let id = img["id"].as_str().unwrap().to_owned();
        let resp = self.put_file(&id, data.to_vec()).await;
        assert_eq!(resp.status(), StatusCode::NO_CONTENT, "upload of {id}");
        let img = self.show(&id).await;
        assert_eq!(img["status"], "active");
        img
    }

    /// GET /v2/images/{id} that must answer 200.
    pub async fn show(&self, id: &str) -> Value {
        let resp = self.get(&format!("/v2/images/{id}")).await;
        expect_json(resp, StatusCode::OK).await
    }

    pub async fn status_of(&self, path: &str) -> StatusCode {
        self.get(path).await.status()
    }

    /// GET /v2/images?{query} that must answer 200.
    pub async fn list(&self, query: &str) -> Value {
        let path = if query.is_empty() {
            "/v2/images".to_owned()
        } else {
            format!("/v2/images?{query}")
        };
        let resp = self.get(&path).await;
        expect_json(resp, StatusCode::OK).await
    }

    /// Polls the image until it has `status` (panics after 15 s).
    pub async fn wait_for_status(&self, id: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let img = self.show(id).await;
            if img["status"] == status {
                return img;
            }
            assert!(
                Instant::now() < deadline,
                "image {id} stuck in {} (want {status})",
                img["status"]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn connect_raw(&self) -> TcpStream {
        let s = TcpStream::connect(self.host_port()).await.unwrap();
        s.set_nodelay(true).unwrap();
        s
    }

    /// One request over a fresh connection, written verbatim (`head` is the
    /// request line plus headers without the final blank line; Host and
    /// `Connection: close` are added).
    pub async fn raw_request(&self, head: &str, body: &[u8]) -> RawResponse {
        let mut s = self.connect_raw().await;
        let msg = format!(
            "{head}\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.host_port()
        );
        s.write_all(msg.as_bytes()).await.unwrap();
        s.write_all(body).await.unwrap();
        s.flush().await.unwrap();
        read_response(&mut s, head.starts_with("HEAD "))
            .await
            .unwrap()
    }
}

fn start_child(
    dir: &Path,
    config: Option<&str>,
    database_url: Option<&str>,
    env: &[(String, String)],
) -> (Child, String) {
    let data_dir: PathBuf = dir.join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let stderr_path = dir.join("stderr.log");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vela"));
    cmd.arg("serve")
        .arg("--bind")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(&data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr));
    if let Some(url) = database_url {
        cmd.env("VELA_DATABASE__URL", url);
    }
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    // The suite speaks as personas through trusted identity headers (noauth) unless a test
    // configures an identity mode itself.
    if !config.is_some_and(|c| c.contains("mode =")) {
        cmd.env("VELA_AUTH__MODE", "noauth");
    }
    if let Some(toml) = config {
        let cfg = dir.join("config.toml");
        std::fs::write(&cfg, toml).unwrap();
        cmd.arg("--config").arg(cfg);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let metrics_file = dir.join("metrics.url");
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(url) = line.trim().strip_prefix("vela metrics on ") {
                std::fs::write(&metrics_file, url).unwrap();
            }
            if !sent {
                if let Some(url) = line.trim().strip_prefix("vela listening on ") {
                    let _ = tx.send(url.trim_end_matches('/').to_owned());
                    sent = true;
                }
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(url) => (child, url),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            let mut log = String::new();
            if let Ok(mut f) = std::fs::File::open(&stderr_path) {
                let _ = f.read_to_string(&mut log);
            }
            panic!("vela did not report its listening address; stderr:\n{log}");
        }
    }
}

/// Asserts the status and parses a JSON body (Content-Type must be JSON).
pub async fn expect_json(resp: Response, status: StatusCode) -> Value {
    let got = resp.status();
    let ct = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let url = resp.url().clone();
    let text = resp.text().await.unwrap();
    assert_eq!(got, status, "{url}: body {text}");
    assert!(
        ct.starts_with("application/json"),
        "{url}: content-type {ct}"
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: bad JSON {e}: {text}"))
}

/// Asserts an error status; returns the webob `message` (the client asks for
/// JSON errors, see `make_client`).
pub async fn expect_error(resp: Response, status: StatusCode) -> String {
    let got = resp.status();
    let url = resp.url().clone();
    let text = resp.text().await.unwrap();
    assert_eq!(got, status, "{url}: body {text}");
    let v: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: bad JSON {e}: {text}"));
    let code = v["code"].as_str().unwrap_or_default();
    assert!(
        code.starts_with(&format!("{} ", status.as_u16())),
        "{url}: code {code} in {text}"
    );
    assert!(v["title"].is_string(), "{url}: title in {text}");
    v["message"].as_str().unwrap_or_default().to_owned()
}

/// Reads one HTTP/1.1 response (30 s timeout).
pub async fn read_response<R: tokio::io::AsyncRead + Unpin>(
    s: &mut R,
    head_only: bool,
) -> std::io::Result<RawResponse> {
    tokio::time::timeout(Duration::from_secs(30), read_response_inner(s, head_only))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "response timeout"))?
}

async fn read_response_inner<R: tokio::io::AsyncRead + Unpin>(
    s: &mut R,
    head_only: bool,
) -> std::io::Result<RawResponse> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = s.read(&mut tmp).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("EOF in headers: {:?}", String::from_utf8_lossy(&buf)),
            ));
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut rest = buf[head_end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let no_body = head_only || status == 204 || status == 304 || (100..200).contains(&status);
    let body = if no_body {
        Vec::new()
    } else if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while rest.len() < len {
            let n = s.read(&mut tmp).await?;
            if n == 0 {
                break;
            }
            rest.extend_from_slice(&tmp[..n]);
        }
        rest.truncate(len);
        rest
    } else {
        loop {
            let n = s.read(&mut tmp).await?;
            if n == 0 {
                break;
            }
            rest.extend_from_slice(&tmp[..n]);
        }
        if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            dechunk(&rest)
        } else {
            rest
        }
    };
    Ok(RawResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(p) = data.windows(2).position(|w| w == b"\r\n") {
        let size_str = String::from_utf8_lossy(&data[..p]);
        let size = usize::from_str_radix(size_str.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        data = &data[p + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
    out
}

/// A web server publishing `files` (name, bytes) with tower-http's `ServeDir` (Range support)
/// on an ephemeral loopback port; returns its base URL and the directory.
pub async fn web_server(files: &[(&str, &[u8])]) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    for (name, data) in files {
        std::fs::write(dir.path().join(name), data).unwrap();
    }
    let app = axum::Router::new().fallback_service(tower_http::services::ServeDir::new(dir.path()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), dir)
}

/// A web server on `ip` (port 0) publishing `files` (name, bytes), with `/redirect?URL`
/// answering 307 to URL; returns its base URL, the directory and the number of requests
/// it received.
pub async fn counting_server(
    ip: &str,
    files: &[(&str, &[u8])],
) -> (
    String,
    tempfile::TempDir,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let dir = tempfile::tempdir().unwrap();
    for (name, data) in files {
        std::fs::write(dir.path().join(name), data).unwrap();
    }
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new()
        .route(
            "/redirect",
            axum::routing::get(
                |axum::extract::RawQuery(q): axum::extract::RawQuery| async move {
                    axum::response::Redirect::temporary(&q.unwrap_or_default())
                },
            ),
        )
        .fallback_service(tower_http::services::ServeDir::new(dir.path()))
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                next.run(req)
            },
        ));
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), dir, hits)
}

/// A web server that holds every request until [`HeldServer::release`] (or drop), then answers
/// 200 with `body`: keeps a web-download import in flight for as long as a test needs.
pub struct HeldServer {
    pub url: String,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    release: tokio::sync::watch::Sender<bool>,
}

impl HeldServer {
    pub async fn start(body: Vec<u8>) -> HeldServer {
        let (release, rx) = tokio::sync::watch::channel(false);
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hits.clone();
        let app = axum::Router::new().fallback(move || {
            let mut rx = rx.clone();
            let body = body.clone();
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                let _ = rx.wait_for(|open| *open).await;
                body
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        HeldServer {
            url: format!("http://{addr}/held.raw"),
            hits,
            release,
        }
    }

    /// Requests received so far (held or answered).
    pub fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn release(&self) {
        let _ = self.release.send(true);
    }
}

impl Drop for HeldServer {
    fn drop(&mut self) {
        self.release();
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffff` (naive, microseconds): the timestamps of
/// `GET /v2/images/{id}/tasks`, which returns raw database rows.
pub fn is_naive_micro_timestamp(s: &str) -> bool {
    s.len() == 26 && s.is_ascii() && is_timestamp(&format!("{}Z", &s[..19])) && {
        let b = s.as_bytes();
        b[19] == b'.' && b[20..].iter().all(u8::is_ascii_digit)
    }
}

/// Deterministic bytes without any disk-format magic (xorshift64): "random" data.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The configuration shared by the import, tasks and inspection tests (and mirrored by
/// `scripts/glance.sh` for the real Glance): file stores `fast` (default) and `cheap`, the three
/// import methods, web-download from loopback on any port but 9.
pub fn import_config(cheap_dir: &Path) -> String {
    format!(
        "[store]\nid = \"fast\"\n\n[stores.cheap]\ntype = \"file\"\npath = \"{}\"\n\n\
         [images]\nenabled_import_methods = [\"glance-direct\", \"web-download\", \"copy-image\"]\n\n\
         [import_filtering_opts]\nallowed_ports = []\ndisallowed_ports = [9]\n\
         allowed_hosts = [\"127.0.0.1\"]\nallowed_networks = [\"127.0.0.0/8\", \"::1/128\"]\n\n\
         [auth]\ndefault_project = \"glance-test-project\"\ndefault_user = \"glance-test-admin\"\n",
        cheap_dir.display()
    )
}

/// A server with [`import_config`]; keep the directory (the `cheap` store) alive with it.
pub async fn spawn_import_app() -> (TestApp, tempfile::TempDir) {
    let cheap = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with_config(&import_config(cheap.path())).await;
    (app, cheap)
}

/// How long an import may take before a test gives up.
pub const IMPORT_DEADLINE: Duration = Duration::from_secs(30);

/// Pause between two polls of an import (a busier loop slows Glance's two workers down).
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

impl TestApp {
    /// PUT /v2/images/{id}/stage with `Content-Type: application/octet-stream`.
    pub async fn stage(&self, id: &str, data: Vec<u8>) -> Response {
        self.send(
            self.request(Method::PUT, &format!("/v2/images/{id}/stage"))
                .header(CONTENT_TYPE, OCTET)
                .body(data),
        )
        .await
    }

    /// POST /v2/images/{id}/import with a JSON body.
    pub async fn import(&self, id: &str, body: &Value) -> Response {
        self.post_json(&format!("/v2/images/{id}/import"), body)
            .await
    }

    /// POST /v2/images/{id}/import that must answer 202 with an empty body.
    pub async fn import_accepted(&self, id: &str, body: &Value) {
        let resp = self.import(id, body).await;
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert_eq!(status, StatusCode::ACCEPTED, "import {body}: {text}");
        assert!(text.is_empty(), "202 body: {text}");
    }

    /// GET /v2/images/{id}/tasks that must answer 200; the `tasks` array.
    pub async fn image_tasks(&self, id: &str) -> Vec<Value> {
        let v = expect_json(
            self.get(&format!("/v2/images/{id}/tasks")).await,
            StatusCode::OK,
        )
        .await;
        v["tasks"]
            .as_array()
            .unwrap_or_else(|| panic!("no tasks array: {v}"))
            .clone()
    }

    /// Polls the image until `pred` holds (panics after [`IMPORT_DEADLINE`]).
    pub async fn wait_for_image(
        &self,
        id: &str,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + IMPORT_DEADLINE;
        loop {
            let img = self.show(id).await;
            if pred(&img) {
                return img;
            }
            assert!(
                Instant::now() < deadline,
                "image {id}: no {what} in time: {img}"
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Waits until the image's newest task is finished (`success` or `failure`) and the image
    /// lock `os_glance_import_task` is gone; returns the image and that task.
    pub async fn wait_for_import(&self, id: &str) -> (Value, Value) {
        let deadline = Instant::now() + IMPORT_DEADLINE;
        loop {
            let tasks = self.image_tasks(id).await;
            let newest = tasks
                .iter()
                .max_by_key(|t| t["created_at"].as_str().unwrap_or_default().to_owned())
                .cloned();
            if let Some(task) = newest {
                if task["status"] == "success" || task["status"] == "failure" {
                    let img = self.show(id).await;
                    if img.get("os_glance_import_task").is_none() {
                        return (img, task);
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "import of {id} did not finish: {:?} {}",
                tasks,
                self.show(id).await
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

/// Runs a tool in `dir` (required: the test fails without it); its standard output.
pub fn run_tool(dir: &Path, program: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program} is required for this test: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `qemu-img` in `dir` (Debian's qemu-utils; required).
pub fn qemu_img(dir: &Path, args: &[&str]) {
    run_tool(dir, "qemu-img", args);
}
