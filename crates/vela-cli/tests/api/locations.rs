//! Image locations and the read-only HTTP store: locations added by JSON patch and by the
//! location API, the same image served from a second store, removal rules, uploads refused.
//! The remote data is served by a real HTTP file server (tower-http's `ServeDir`, with Range
//! support) on an ephemeral loopback port, which the tests allow with `allowed_networks`;
//! the SSRF tests check that internal URLs are refused by default.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Digest;

use crate::helpers::{
    counting_server, expect_error, expect_json, md5_hex, test_data, Persona, TestApp, PATCH_V21,
};

/// A web server on 127.0.0.1 publishing `files`; returns its base URL and the directory.
async fn web_server(files: &[(&str, &[u8])]) -> (String, tempfile::TempDir) {
    let (url, dir, _) = counting_server("127.0.0.1", files).await;
    (url, dir)
}

/// `[import_filtering_opts]` letting Vela fetch from any port of `networks` (the test web
/// servers live on loopback, which Vela refuses by default).
fn filtering(networks: &[&str]) -> String {
    let nets: Vec<String> = networks.iter().map(|n| format!("\"{n}\"")).collect();
    format!(
        "\n[import_filtering_opts]\nallowed_ports = []\nallowed_networks = [{}]\n",
        nets.join(", ")
    )
}

/// The loopback networks, for tests whose web servers must be reachable.
fn loopback_allowed() -> String {
    filtering(&["127.0.0.0/8", "::1/128"])
}

/// A server showing image locations (`[images]` settings `extra` added) that may fetch from
/// the loopback web servers; `None` against an external server.
async fn showing_locations(extra: &str) -> Option<TestApp> {
    let app = TestApp::spawn_with_config(&format!(
        "[images]\nshow_multiple_locations = true\n{extra}{}",
        loopback_allowed()
    ))
    .await;
    (!app.is_external()).then_some(app)
}

fn add_location(url: &str) -> Value {
    json!([{"op": "add", "path": "/locations/-", "value": {"url": url, "metadata": {}}}])
}

async fn patch_as(
    app: &TestApp,
    who: Option<&Persona>,
    id: &str,
    body: &Value,
) -> reqwest::Response {
    let mut rb = app.patch_request(id, PATCH_V21, body);
    if let Some(p) = who {
        rb = rb.headers(p.headers());
    }
    app.send(rb).await
}

#[tokio::test]
async fn the_same_image_is_served_from_a_second_store() {
    let data = test_data(3 << 20);
    let (web, _dir) = web_server(&[("copy.raw", &data), ("empty.raw", b"")]).await;
    let local = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with_config(&format!(
        "[store]\nid = \"local\"\npath = \"{}\"\n\n[stores.web]\ntype = \"http\"\n\n\
         [images]\nshow_multiple_locations = true\nshow_image_direct_url = true\n{}",
        local.path().display(),
        loopback_allowed()
    ))
    .await;
    if app.is_external() {
        return;
    }
    // The http store is listed, read-only.
    let v = expect_json(app.get("/v2/info/stores").await, StatusCode::OK).await;
    assert_eq!(
        v["stores"],
        json!([{"id": "local", "default": "true"}, {"id": "web", "read-only": "true"}])
    );

    let img = app
        .create_active_image(json!({"name": app.name("copied")}), &data)
        .await;
    let id = img["id"].as_str().unwrap();
    assert_eq!(img["stores"], "local");
    let url = format!("{web}/copy.raw");
    let v = expect_json(
        patch_as(&app, None, id, &add_location(&url)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(v["stores"], "local,web", "{v}");
    assert_eq!(
        v["locations"][1],
        json!({"url": url, "metadata": {"store": "web"}})
    );
    assert_eq!(v["locations"].as_array().unwrap().len(), 2);
    // The same location again is refused.
    let msg = expect_error(
        patch_as(&app, None, id, &add_location(&url)).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(msg.contains("already exists"), "{msg}");

    // Remove the first copy: the image is now served from the web server alone.
    assert_eq!(
        app.delete(&format!("/v2/stores/local/{id}")).await.status(),
        StatusCode::NO_CONTENT
    );
    let leftover: Vec<_> = std::fs::read_dir(local.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(id))
        .collect();
    assert!(leftover.is_empty(), "local data was not removed");
    let v = app.show(id).await;
    assert_eq!(v["stores"], "web");
    assert_eq!(v["direct_url"], url);
    let resp = app.download(id).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-md5"], md5_hex(&data).as_str());
    let body = resp.bytes().await.unwrap();
    assert_eq!(md5_hex(&body), img["checksum"].as_str().unwrap());
    let resp = app.download_range(id, "bytes=1000-1999").await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        resp.headers()["content-range"],
        format!("bytes 1000-1999/{}", data.len()).as_str()
    );
    assert_eq!(&resp.bytes().await.unwrap()[..], &data[1000..2000]);

    // The last location cannot be removed; the image keeps it.
    let msg = expect_error(
        patch_as(
            &app,
            None,
            id,
            &json!([{"op": "remove", "path": "/locations/0"}]),
        )
        .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(
        msg.contains("Cannot remove last location in the image."),
        "{msg}"
    );

    // Nothing can be uploaded to the http store; the image goes back to queued.
    let other = app
        .create_image(
            json!({"name": app.name("up"), "disk_format": "raw", "container_format": "bare"}),
        )
        .await;
    let oid = other["id"].as_str().unwrap();
    let resp = app
        .send(
            app.request(Method::PUT, &format!("/v2/images/{oid}/file"))
                .header("content-type", "application/octet-stream")
                .header("x-image-meta-store", "web")
                .body(b"abc".to_vec()),
        )
        .await;
    let msg = expect_error(resp, StatusCode::GONE).await;
    assert!(msg.contains("Adding images to store is disabled"), "{msg}");
    assert_eq!(app.show(oid).await["status"], "queued");

    // A queued image with a location is active, sized by the web server.
    let v = expect_json(
        patch_as(&app, None, oid, &add_location(&url)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(v["status"], "active");
    assert_eq!(v["size"], data.len());
    assert_eq!(v["stores"], "web");
    assert_eq!(
        app.download(oid).await.bytes().await.unwrap().len(),
        data.len()
    );
    // Deleting the image leaves the remote data alone.
    assert_eq!(
        app.delete(&format!("/v2/images/{oid}")).await.status(),
        StatusCode::NO_CONTENT
    );
    assert!(_dir.path().join("copy.raw").exists());
}

#[tokio::test]
async fn location_patches_follow_glance() {
    let data = test_data(1000);
    let (web, _dir) = web_server(&[("a.raw", &data), ("empty.raw", b"")]).await;
    let Some(app) = showing_locations("").await else {
        return;
    };
    let owner = Persona::member(&app.name("proj"));
    let id = queued_image(&app, &owner).await;
    for (url, want) in [
        (format!("{web}/missing.raw"), "Invalid location"),
        (format!("{web}/empty.raw"), "Invalid location"),
        ("ftp://example.org/x".to_owned(), "Invalid location"),
        // Vela's own store URLs are refused: they would reach other images' data.
        (format!("file:///tmp/{id}"), "Invalid location"),
        (
            "http://127.0.0.1:9/x".to_owned(),
            "The Store URI was malformed.",
        ),
    ] {
        let msg = expect_error(
            patch_as(&app, Some(&owner), &id, &add_location(&url)).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert!(msg.contains(want), "{url}: {msg}");
    }
    // Schema: url and metadata are required.
    let msg = expect_error(
        patch_as(
            &app,
            Some(&owner),
            &id,
            &json!([{"op": "add", "path": "/locations/-", "value": {"url": "http://a"}}]),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(msg.contains("'metadata' is a required property"), "{msg}");
    let msg = expect_error(
        patch_as(
            &app,
            Some(&owner),
            &id,
            &json!([{"op": "replace", "path": "/locations", "value": []}]),
        )
        .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(msg.contains("Cannot set locations to empty list."), "{msg}");

    // Validation data: wrong sizes and values are refused; the right ones are recorded.
    let url = format!("{web}/a.raw");
    let sha = hex::encode(sha2::Sha512::digest(&data));
    let with = |vd: Value| {
        json!([{"op": "add", "path": "/locations/-",
                "value": {"url": url, "metadata": {"k": "v"}, "validation_data": vd}}])
    };
    let msg = expect_error(
        patch_as(
            &app,
            Some(&owner),
            &id,
            &with(json!({"os_hash_algo": "sha256", "os_hash_value": sha})),
        )
        .await,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(
        msg.contains("os_hash_algo must be sha512, not sha256"),
        "{msg}"
    );
    let v = expect_json(
        patch_as(
            &app,
            Some(&owner),
            &id,
            &with(
                json!({"checksum": md5_hex(&data), "os_hash_algo": "sha512", "os_hash_value": sha}),
            ),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(v["status"], "active");
    assert_eq!(v["checksum"], md5_hex(&data).as_str());
    assert_eq!(v["os_hash_value"], sha.as_str());
    assert_eq!(
        v["locations"],
        json!([{"url": url, "metadata": {"k": "v"}}])
    );
    // Only admins remove locations (delete_image_location); the second copy can go.
    let second = format!("{url}?copy=2");
    let v = expect_json(
        patch_as(&app, Some(&owner), &id, &add_location(&second)).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(v["locations"].as_array().unwrap().len(), 2);
    let remove = json!([{"op": "remove", "path": "/locations/1"}]);
    let msg = expect_error(
        patch_as(&app, Some(&owner), &id, &remove).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(msg.contains("delete_image_location"), "{msg}");
    let msg = expect_error(
        patch_as(
            &app,
            None,
            &id,
            &json!([{"op": "remove", "path": "/locations/7"}]),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(
        msg.contains("Invalid position for removing a location."),
        "{msg}"
    );
    let v = expect_json(patch_as(&app, None, &id, &remove).await, StatusCode::OK).await;
    assert_eq!(
        v["locations"],
        json!([{"url": url, "metadata": {"k": "v"}}])
    );

    // Locations stay unchangeable where they are invisible (the default).
    let plain = TestApp::spawn().await;
    let img = plain
        .create_active_image(json!({"name": plain.name("p")}), b"abc")
        .await;
    let msg = expect_error(
        plain
            .patch(img["id"].as_str().unwrap(), PATCH_V21, &add_location(&url))
            .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(
        msg.contains("It's not allowed to add locations if locations are invisible."),
        "{msg}"
    );
}

/// Polls an image until the location API's lock is gone (10 s at most).
/// Credentials in a location URL reach the store, never an image reader: `locations`,
/// `direct_url`, lists and error messages show the URL without them; a `replace` sending back
/// the shown URLs changes the metadata and keeps the stored URL; the service-only location API
/// gives the URL as stored.
#[tokio::test]
async fn location_credentials_are_not_shown_to_readers() {
    let data = test_data(1000);
    let (web, _dir) = web_server(&[("a.raw", &data)]).await;
    let Some(app) = showing_locations("show_image_direct_url = true\n").await else {
        return;
    };
    let owner = Persona::member(&app.name("proj"));
    let id = queued_image(&app, &owner).await;
    let shown = format!("{web}/a.raw");
    let stored = shown.replacen("http://", "http://vela:s3cret@", 1);
    let resp = patch_as(&app, Some(&owner), &id, &add_location(&stored)).await;
    let text = resp.text().await.unwrap();
    assert!(!text.contains("s3cret"), "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["status"], "active", "{v}");
    assert_eq!(v["locations"], json!([{"url": shown, "metadata": {}}]));
    assert_eq!(v["direct_url"], shown.as_str());
    for path in [format!("/v2/images/{id}"), "/v2/images".to_owned()] {
        let resp = app
            .send(app.request(Method::GET, &path).headers(owner.headers()))
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let text = resp.text().await.unwrap();
        assert!(text.contains(&shown) && !text.contains("s3cret"), "{text}");
    }
    // Adding it again: refused, without the credentials in the message.
    let msg = expect_error(
        patch_as(&app, Some(&owner), &id, &add_location(&stored)).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(
        msg.contains("already exists") && !msg.contains("s3cret"),
        "{msg}"
    );

    // Sending back what was shown changes the metadata only.
    let replace = json!([{"op": "replace", "path": "/locations",
                          "value": [{"url": shown, "metadata": {"k": "v"}}]}]);
    let v = expect_json(
        patch_as(&app, Some(&owner), &id, &replace).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        v["locations"],
        json!([{"url": shown, "metadata": {"k": "v"}}])
    );
    let service = Persona {
        project: owner.project.clone(),
        roles: "service,reader".into(),
        user: "nova".into(),
    };
    let resp = app
        .send(
            app.request(Method::GET, &format!("/v2/images/{id}/locations"))
                .headers(service.headers()),
        )
        .await;
    assert_eq!(
        expect_json(resp, StatusCode::OK).await,
        json!([{"url": stored, "metadata": {"k": "v"}}])
    );
    let resp = app
        .send(
            app.request(Method::GET, &format!("/v2/images/{id}/file"))
                .headers(owner.headers()),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), data.as_slice());
}

async fn wait_unlocked(app: &TestApp, id: &str) -> Value {
    for _ in 0..200 {
        let v = app.show(id).await;
        if v.get("os_glance_import_task").is_none() {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("image {id} stayed locked: {}", app.show(id).await);
}

/// Polls an image until its status is `want` (10 s at most).
async fn wait_status(app: &TestApp, id: &str, want: &str) -> Value {
    for _ in 0..200 {
        let v = app.show(id).await;
        if v["status"] == want {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("image {id} never became {want}: {}", app.show(id).await);
}

#[tokio::test]
async fn the_location_api_serves_services() {
    let data = test_data(2 << 20);
    let (web, _dir) = web_server(&[("svc.raw", &data)]).await;
    let app = TestApp::spawn_with_config(&loopback_allowed()).await;
    if app.is_external() {
        return;
    }
    let project = app.name("proj");
    let service = Persona {
        project: project.clone(),
        roles: "service,reader".into(),
        user: "nova".into(),
    };
    let member = Persona::member(&project);
    let create = |who: &Persona| {
        app.request(Method::POST, "/v2/images")
            .headers(who.headers())
            .json(&json!({"name": "svc", "disk_format": "raw", "container_format": "bare"}))
    };
    let id = expect_json(app.send(create(&member)).await, StatusCode::CREATED).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v2/images/{id}/locations");
    let url = format!("{web}/svc.raw");
    let sha = hex::encode(sha2::Sha512::digest(&data));
    let post = |who: &Persona, body: Value| {
        app.request(Method::POST, &path)
            .headers(who.headers())
            .json(&body)
    };

    let msg = expect_error(
        app.send(post(&service, json!({"url": url, "validation_data": {"os_hash_algo": "sha512", "os_hash_value": "xyz"}})))
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(msg.contains("not a valid hexadecimal value"), "{msg}");
    // A wrong hash: accepted for checking; the image is locked meanwhile, then unlocked and
    // queued again.
    let resp = app
        .send(post(
            &service,
            json!({"url": url, "validation_data": {"os_hash_algo": "sha512", "os_hash_value": "ab".repeat(64)}}),
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let v = wait_unlocked(&app, &id).await;
    assert_eq!(v["status"], "queued");
    assert!(v.get("checksum").is_none_or(Value::is_null), "{v}");

    // The right hash, in another algorithm than the configured one: the data is read and
    // checked, then the image is active and records the client's algorithm (as Glance).
    let sha256 = hex::encode(sha2::Sha256::digest(&data));
    let resp = app
        .send(post(
            &service,
            json!({"url": url, "validation_data": {"os_hash_algo": "sha256", "os_hash_value": sha256}}),
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    wait_unlocked(&app, &id).await;
    let v = wait_status(&app, &id, "active").await;
    assert_eq!(v["checksum"], md5_hex(&data).as_str());
    assert_eq!(v["os_hash_algo"], "sha256");
    assert_eq!(v["os_hash_value"], sha256.as_str());
    assert_eq!(v["size"], data.len());
    assert_eq!(app.download(id.as_str()).await.bytes().await.unwrap(), data);
    // Only queued images take a location.
    let msg = expect_error(
        app.send(post(&service, json!({"url": url}))).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(msg.contains("if image status is active"), "{msg}");

    // Listing is for services.
    let resp = app
        .send(app.request(Method::GET, &path).headers(service.headers()))
        .await;
    assert_eq!(
        expect_json(resp, StatusCode::OK).await,
        json!([{"url": url, "metadata": {}}])
    );
    let resp = app
        .send(app.request(Method::GET, &path).headers(member.headers()))
        .await;
    expect_error(resp, StatusCode::FORBIDDEN).await;

    // Members may add http locations (the http store is on), without validation data: the
    // image is active at once and its checksums follow.
    let id2 = expect_json(app.send(create(&member)).await, StatusCode::CREATED).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = app
        .send(
            app.request(Method::POST, &format!("/v2/images/{id2}/locations"))
                .headers(member.headers())
                .json(&json!({"url": url})),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let v = wait_unlocked(&app, &id2).await;
    assert_eq!(v["status"], "active");
    assert_eq!(v["checksum"], md5_hex(&data).as_str());
    assert_eq!(v["os_hash_value"], sha.as_str());
    // Other schemes are for services only.
    let id3 = expect_json(app.send(create(&member)).await, StatusCode::CREATED).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = app
        .send(
            app.request(Method::POST, &format!("/v2/images/{id3}/locations"))
                .headers(member.headers())
                .json(&json!({"url": "rbd://fsid/pool/image/snap"})),
        )
        .await;
    let msg = expect_error(resp, StatusCode::FORBIDDEN).await;
    assert!(msg.contains("http store must be enabled"), "{msg}");
}

/// RBD data whose snapshot has clones (made here with Ceph's `rbd` tool, as Nova or Cinder
/// would) cannot be removed from its store: 409, and the image keeps the location.
#[tokio::test]
async fn rbd_data_in_use_stays() {
    let Some(rbd) = crate::stores::rbd_section() else {
        return;
    };
    let data = test_data(100_000);
    let (web, _dir) = web_server(&[("copy.raw", &data)]).await;
    let app = TestApp::spawn_with_config(&format!(
        "[store]\nid = \"local\"\ndefault = \"ceph\"\n\n{rbd}\n[stores.web]\ntype = \"http\"\n\n\
         [images]\nshow_multiple_locations = true\n{}",
        loopback_allowed()
    ))
    .await;
    if app.is_external() {
        return;
    }
    let img = app
        .create_active_image(json!({"name": app.name("rbd")}), &data)
        .await;
    let id = img["id"].as_str().unwrap();
    assert_eq!(img["stores"], "ceph");
    let url = format!("{web}/copy.raw");
    expect_json(
        patch_as(&app, None, id, &add_location(&url)).await,
        StatusCode::OK,
    )
    .await;
    let pool = std::env::var("CEPH_RBD_POOL").unwrap_or_else(|_| "rbd".into());
    let rbd_cli = |args: &[&str]| {
        let out = std::process::Command::new("rbd")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "rbd {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let child = format!("{pool}/clone-{id}");
    rbd_cli(&["clone", &format!("{pool}/{id}@snap"), &child]);
    let msg = expect_error(
        app.delete(&format!("/v2/stores/ceph/{id}")).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(msg.contains("in use"), "{msg}");
    let v = app.show(id).await;
    assert_eq!(v["locations"].as_array().unwrap().len(), 2, "{v}");
    rbd_cli(&["rm", "--no-progress", &child]);
    assert_eq!(
        app.delete(&format!("/v2/stores/ceph/{id}")).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.show(id).await["stores"], "web");
    assert_eq!(app.download(id).await.bytes().await.unwrap(), data);
}

/// The servers of the SSRF tests: a target on 127.0.0.1, another on [::1] (when the host
/// has IPv6 loopback), and a front on 127.0.0.2 redirecting wherever it is told; each counts
/// the requests it gets.
struct Ssrf {
    target: String,
    target_hits: Arc<AtomicUsize>,
    v6: String,
    v6_hits: Arc<AtomicUsize>,
    has_v6: bool,
    front: String,
    front_hits: Arc<AtomicUsize>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Ssrf {
    async fn start(data: &[u8]) -> Ssrf {
        let (target, d1, target_hits) = counting_server("127.0.0.1", &[("x", data)]).await;
        let (front, d2, front_hits) = counting_server("127.0.0.2", &[]).await;
        let mut dirs = vec![d1, d2];
        let has_v6 = std::net::TcpListener::bind("[::1]:0").is_ok();
        let (v6, v6_hits) = if has_v6 {
            let (v6, d3, hits) = counting_server("::1", &[("x", data)]).await;
            dirs.push(d3);
            (v6, hits)
        } else {
            ("http://[::1]:9".to_owned(), Arc::new(AtomicUsize::new(0)))
        };
        Ssrf {
            target,
            target_hits,
            v6,
            v6_hits,
            has_v6,
            front,
            front_hits,
            _dirs: dirs,
        }
    }

    /// Internal URLs a project member could give: loopback by address (v4, v6) and by name,
    /// the metadata service, a private address, and an allowed server redirecting to
    /// loopback.
    fn urls(&self) -> Vec<String> {
        let port = self.target.rsplit_once(':').unwrap().1;
        vec![
            format!("{}/x", self.target),
            format!("{}/x", self.v6),
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "http://10.0.0.1/x".to_owned(),
            format!("http://localhost:{port}/x"),
            format!("{}/redirect?{}/x", self.front, self.target),
        ]
    }

    /// Requests that reached the internal targets.
    fn fetched(&self) -> usize {
        self.target_hits.load(Ordering::SeqCst) + self.v6_hits.load(Ordering::SeqCst)
    }
}

/// A queued image of `owner`'s project.
/// A new queued raw image of `owner`'s project.
async fn queued_image(app: &TestApp, owner: &Persona) -> String {
    let resp = app
        .send(
            app.request(Method::POST, "/v2/images")
                .headers(owner.headers())
                .json(&json!({"name": app.name("img"), "disk_format": "raw", "container_format": "bare"})),
        )
        .await;
    expect_json(resp, StatusCode::CREATED).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn post_location(app: &TestApp, who: &Persona, id: &str, url: &str) -> reqwest::Response {
    app.send(
        app.request(Method::POST, &format!("/v2/images/{id}/locations"))
            .headers(who.headers())
            .json(&json!({"url": url})),
    )
    .await
}

/// Every SSRF URL is refused through the patch and the location API: 400 (or, when the
/// redirecting front server is allowed, so that the location API only meets the redirect in
/// the background, 202 and a failed fetch), the image stays queued without a location, and
/// the internal servers get no request.
async fn assert_all_refused(app: &TestApp, s: &Ssrf, front_allowed: bool) {
    let member = Persona::member(&app.name("proj"));
    for url in s.urls() {
        let redirect = front_allowed && url.contains("/redirect?");
        let id = queued_image(app, &member).await;
        let msg = expect_error(
            patch_as(app, Some(&member), &id, &add_location(&url)).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert!(msg.contains("Invalid location"), "{url}: {msg}");

        let resp = post_location(app, &member, &id, &url).await;
        if redirect {
            assert_eq!(resp.status(), StatusCode::ACCEPTED, "{url}");
            wait_unlocked(app, &id).await;
        } else {
            let msg = expect_error(resp, StatusCode::BAD_REQUEST).await;
            assert!(
                msg.contains("URI for location does not pass filtering"),
                "{url}: {msg}"
            );
        }
        let v = app.show(&id).await;
        assert_eq!(v["status"], "queued", "{url}: {v}");
        assert_eq!(v["locations"], json!([]), "{url}: {v}");
        assert_eq!(s.fetched(), 0, "{url} was fetched");
    }
}

#[tokio::test]
async fn internal_urls_are_refused_by_default() {
    let s = Ssrf::start(&test_data(1000)).await;
    // Glance's default filters (ports 80 and 443) and the address refusal.
    let app = TestApp::spawn_with_config("[images]\nshow_multiple_locations = true\n").await;
    if app.is_external() {
        return;
    }
    assert_all_refused(&app, &s, false).await;
    assert_eq!(s.front_hits.load(Ordering::SeqCst), 0);
    // Any port, and only the redirecting front server's address allowed: the address
    // refusal alone stops every URL, the redirect at its second hop.
    let app = TestApp::spawn_with_config(&format!(
        "[images]\nshow_multiple_locations = true\n{}",
        filtering(&["127.0.0.2/32"])
    ))
    .await;
    assert_all_refused(&app, &s, true).await;
    // The front server was asked (patch: HEAD; location API: HEAD), its redirect refused.
    assert_eq!(s.front_hits.load(Ordering::SeqCst), 2);
    // A refused URL says why, without the credentials it carries.
    let member = Persona::member(&app.name("proj"));
    let id = queued_image(&app, &member).await;
    let msg = expect_error(
        post_location(
            &app,
            &member,
            &id,
            "http://alice:s3cret@169.254.169.254/latest/meta-data/",
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(msg.contains("link-local"), "{msg}");
    assert!(!msg.contains("s3cret"), "{msg}");
}

#[tokio::test]
async fn internal_urls_work_when_the_operator_allows_them() {
    let data = test_data(5000);
    let s = Ssrf::start(&data).await;
    let Some(app) = showing_locations("").await else {
        return;
    };
    let member = Persona::member(&app.name("proj"));
    let sha = hex::encode(sha2::Sha512::digest(&data));
    // The URLs the test servers answer (the metadata service and 10.0.0.1 stay refused).
    let urls: Vec<String> = s
        .urls()
        .into_iter()
        .filter(|u| !u.contains("169.254.") && !u.contains("10.0.0.1"))
        .filter(|u| s.has_v6 || !u.contains("[::1]"))
        .collect();
    for url in &urls {
        let before = s.fetched();
        let id = queued_image(&app, &member).await;
        let v = expect_json(
            patch_as(&app, Some(&member), &id, &add_location(url)).await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(v["status"], "active", "{url}: {v}");
        assert_eq!(v["size"], data.len(), "{url}");
        assert_eq!(v["locations"][0]["url"], url.as_str());

        let id = queued_image(&app, &member).await;
        let resp = post_location(&app, &member, &id, url).await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED, "{url}");
        let v = wait_unlocked(&app, &id).await;
        assert_eq!(v["status"], "active", "{url}: {v}");
        assert_eq!(v["os_hash_value"], sha.as_str(), "{url}");
        assert!(s.fetched() > before, "{url} was not fetched");
    }
    // The metadata service stays refused: its network is not listed.
    let id = queued_image(&app, &member).await;
    let msg = expect_error(
        post_location(
            &app,
            &member,
            &id,
            "http://169.254.169.254/latest/meta-data/",
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(
        msg.contains("URI for location does not pass filtering"),
        "{msg}"
    );
}
