//! `glance-download` between two Vela nodes behind the real Keystone: node A serves region R1
//! (a region made for the test, with an `image` endpoint pointing at A), node B imports A's
//! images with the caller's token. The region and its endpoint are removed at the end, so the
//! other users of the Keystone (the e2e suite uses RegionOne's image endpoint) see nothing.

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use futures::FutureExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::{call, config, keystone, token, Keystone};
use crate::helpers::{
    expect_error, expect_json, md5_hex, new_uuid, sha512_hex, test_data, TestApp, IMPORT_DEADLINE,
    OCTET, POLL_INTERVAL,
};

/// B's largest image: the big source image on A is beyond it.
const B_CAP: usize = 1 << 20;

/// A request to Keystone's admin API.
async fn ks_admin(
    ks: &Keystone,
    admin: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut rb = reqwest::Client::new()
        .request(method, format!("{}{path}", ks.url))
        .header("x-auth-token", admin);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    rb.send().await.unwrap()
}

/// A region of the test's own with an image endpoint; [`Region::remove`] takes it away.
struct Region {
    id: String,
    endpoint: String,
    /// The image service, when the test had to create it.
    created_service: Option<String>,
}

impl Region {
    async fn create(ks: &Keystone, admin: &str, image_url: &str) -> Region {
        let id = format!("vt-{}", &new_uuid()[..8]);
        let body = json!({"region": {"id": id, "description": "vela glance-download test"}});
        let resp = ks_admin(ks, admin, Method::POST, "/regions", Some(body)).await;
        assert_eq!(resp.status(), StatusCode::CREATED, "region {id}");
        // scripts/keystone.sh makes no image service; `endpoint` (and the e2e suite) may have.
        let services: Value = ks_admin(ks, admin, Method::GET, "/services?type=image", None)
            .await
            .json()
            .await
            .unwrap();
        let (service, created_service) = match services["services"][0]["id"].as_str() {
            Some(s) => (s.to_owned(), None),
            None => {
                let body = json!({"service": {"type": "image", "name": "glance"}});
                let resp = ks_admin(ks, admin, Method::POST, "/services", Some(body)).await;
                assert_eq!(resp.status(), StatusCode::CREATED, "image service");
                let v: Value = resp.json().await.unwrap();
                let s = v["service"]["id"].as_str().unwrap().to_owned();
                (s.clone(), Some(s))
            }
        };
        let body = json!({"endpoint": {"service_id": service, "interface": "public",
            "url": image_url, "region_id": id}});
        let resp = ks_admin(ks, admin, Method::POST, "/endpoints", Some(body)).await;
        assert_eq!(resp.status(), StatusCode::CREATED, "endpoint in {id}");
        let v: Value = resp.json().await.unwrap();
        Region {
            id,
            endpoint: v["endpoint"]["id"].as_str().unwrap().to_owned(),
            created_service,
        }
    }

    async fn remove(self, ks: &Keystone, admin: &str) {
        let path = format!("/endpoints/{}", self.endpoint);
        let resp = ks_admin(ks, admin, Method::DELETE, &path, None).await;
        assert_eq!(resp.status(), StatusCode::NO_CONTENT, "delete {path}");
        let path = format!("/regions/{}", self.id);
        let resp = ks_admin(ks, admin, Method::DELETE, &path, None).await;
        assert_eq!(resp.status(), StatusCode::NO_CONTENT, "delete {path}");
        // A service this test made goes too, unless someone gave it endpoints meanwhile.
        if let Some(s) = self.created_service {
            let eps: Value = ks_admin(
                ks,
                admin,
                Method::GET,
                &format!("/endpoints?service_id={s}"),
                None,
            )
            .await
            .json()
            .await
            .unwrap();
            if eps["endpoints"].as_array().is_some_and(Vec::is_empty) {
                ks_admin(ks, admin, Method::DELETE, &format!("/services/{s}"), None).await;
            }
        }
    }
}

fn id_of(img: &Value) -> String {
    img["id"].as_str().unwrap().to_owned()
}

async fn create(app: &TestApp, tok: &str, body: Value) -> Value {
    expect_json(
        call(app, Method::POST, "/v2/images", tok, Some(body)).await,
        StatusCode::CREATED,
    )
    .await
}

async fn show(app: &TestApp, tok: &str, id: &str) -> Value {
    let path = format!("/v2/images/{id}");
    expect_json(
        call(app, Method::GET, &path, tok, None).await,
        StatusCode::OK,
    )
    .await
}

/// Creates an image on `app` and uploads `data`; returns the active image.
async fn active_image(app: &TestApp, tok: &str, body: Value, data: &[u8]) -> Value {
    let id = id_of(&create(app, tok, body).await);
    let rb = app
        .request(Method::PUT, &format!("/v2/images/{id}/file"))
        .header("x-auth-token", tok)
        .header("content-type", OCTET)
        .body(data.to_vec());
    assert_eq!(app.send(rb).await.status(), StatusCode::NO_CONTENT);
    let img = show(app, tok, &id).await;
    assert_eq!(img["status"], "active", "{img}");
    img
}

fn glance_download(region: &str, remote_id: &str) -> Value {
    json!({"method": {"name": "glance-download", "glance_image_id": remote_id,
        "glance_region": region, "glance_service_interface": "public"}})
}

async fn import(app: &TestApp, tok: &str, id: &str, body: Value) -> reqwest::Response {
    let path = format!("/v2/images/{id}/import");
    call(app, Method::POST, &path, tok, Some(body)).await
}

/// Imports into a new qcow2/ovf image of B (with a property of its own and an `os_distro` the
/// remote one replaces); 202 expected. Returns the image id.
async fn start_import(b: &TestApp, tok: &str, region: &str, remote_id: &str) -> String {
    let body = json!({"name": b.name("gd"), "disk_format": "qcow2", "container_format": "ovf",
        "os_distro": "old", "local_note": "mine"});
    let id = id_of(&create(b, tok, body).await);
    let resp = import(b, tok, &id, glance_download(region, remote_id)).await;
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "import: {text}");
    assert!(text.is_empty(), "202 body: {text}");
    id
}

/// Waits for the image's task to finish and its lock to go; returns the image and the task.
async fn finished(app: &TestApp, tok: &str, id: &str) -> (Value, Value) {
    let deadline = Instant::now() + IMPORT_DEADLINE;
    let path = format!("/v2/images/{id}/tasks");
    loop {
        let v = expect_json(
            call(app, Method::GET, &path, tok, None).await,
            StatusCode::OK,
        )
        .await;
        let tasks = v["tasks"].as_array().unwrap().clone();
        assert!(tasks.len() <= 1, "one import, one task: {v}");
        if let Some(task) = tasks.first() {
            if task["status"] == "success" || task["status"] == "failure" {
                let img = show(app, tok, id).await;
                if img.get("os_glance_import_task").is_none() {
                    return (img, task.clone());
                }
            }
        }
        assert!(Instant::now() < deadline, "import of {id} did not end: {v}");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// A failed import left B's image as it was before: queued, its own formats and properties.
async fn assert_failed_and_put_back(b: &TestApp, tok: &str, id: &str, why: &str) -> Value {
    let (img, task) = finished(b, tok, id).await;
    assert_eq!(task["status"], "failure", "{task}");
    let msg = task["message"].as_str().unwrap();
    assert!(msg.contains(why), "task message {msg:?} lacks {why:?}");
    assert_eq!(img["status"], "queued", "{img}");
    assert_eq!(img["disk_format"], "qcow2", "{img}");
    assert_eq!(img["container_format"], "ovf", "{img}");
    assert_eq!(img["os_distro"], "old", "{img}");
    assert_eq!(img["local_note"], "mine", "{img}");
    for k in ["hw_disk_bus", "os_type", "trait:CUSTOM_VELA"] {
        assert!(img.get(k).is_none(), "{k} left on {img}");
    }
    assert!(img["checksum"].is_null() && img["size"].is_null(), "{img}");
    img
}

#[tokio::test]
async fn glance_download_from_another_region() {
    let Some(ks) = keystone() else { return };
    let a = TestApp::spawn_with_config(&config(&ks, &ks.url, "")).await;
    if a.is_external() {
        return;
    }
    let b_extra = format!(
        "\n[images]\nimage_size_cap = {B_CAP}\nenabled_import_methods = [\"glance-direct\", \
         \"web-download\", \"copy-image\", \"glance-download\"]\n"
    );
    let b = TestApp::spawn_with_config(&config(&ks, &ks.url, &b_extra)).await;
    let (admin, _) = token(&ks, "admin", &ks.admin_password, "admin").await;
    let region = Region::create(&ks, &admin, &a.url).await;
    let outcome = AssertUnwindSafe(scenarios(&ks, &a, &b, &region.id))
        .catch_unwind()
        .await;
    region.remove(&ks, &admin).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn scenarios(ks: &Keystone, a: &TestApp, b: &TestApp, region: &str) {
    let (tok, _) = token(ks, "alpha-member", "secret", "alpha").await;

    // The source: an active raw image on A with properties, some of which are copied.
    let data = test_data(300_000);
    let src = active_image(
        a,
        &tok,
        json!({"name": a.name("src"), "disk_format": "raw", "container_format": "bare",
            "hw_disk_bus": "scsi", "os_distro": "debian", "os_type": "linux",
            "trait:CUSTOM_VELA": "required", "os_version": "12", "owner_note": "stays on A"}),
        &data,
    )
    .await;
    let src_id = id_of(&src);
    assert_eq!(src["checksum"], md5_hex(&data).as_str());
    assert_eq!(src["os_hash_value"], sha512_hex(&data).as_str());

    // Imported on B: the same data and checksums, A's formats and the copied properties only.
    // (The region is named in capitals: regions compare without case, as in Glance.)
    let id = start_import(b, &tok, &region.to_uppercase(), &src_id).await;
    let (img, task) = finished(b, &tok, &id).await;
    assert_eq!(task["status"], "success", "{task}");
    assert_eq!(task["type"], "api_image_import", "{task}");
    assert_eq!(task["result"]["image_id"], id.as_str(), "{task}");
    assert_eq!(img["status"], "active", "{img}");
    for k in ["checksum", "size", "os_hash_algo", "os_hash_value"] {
        assert_eq!(img[k], src[k], "{k}: {img}");
    }
    assert_eq!(img["disk_format"], "raw");
    assert_eq!(img["container_format"], "bare");
    assert_eq!(img["hw_disk_bus"], "scsi");
    assert_eq!(img["os_distro"], "debian");
    assert_eq!(img["os_type"], "linux");
    assert_eq!(img["trait:CUSTOM_VELA"], "required");
    assert_eq!(img["local_note"], "mine", "B's own property stays");
    for k in ["os_version", "owner_note"] {
        assert!(img.get(k).is_none(), "{k} was copied: {img}");
    }
    for k in ["os_glance_importing_to_stores", "os_glance_failed_import"] {
        assert!(img[k].as_str().unwrap_or_default().is_empty(), "{img}");
    }
    let path = format!("/v2/images/{id}/file");
    let resp = call(b, Method::GET, &path, &tok, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.bytes().await.unwrap() == data, "B's data is not A's");

    // A remote image that is not active: the task fails, B's image is queued again.
    let queued = create(
        a,
        &tok,
        json!({"name": a.name("q"), "disk_format": "raw",
        "container_format": "bare", "hw_disk_bus": "virtio"}),
    )
    .await;
    let id = start_import(b, &tok, region, &id_of(&queued)).await;
    assert_failed_and_put_back(b, &tok, &id, "not active").await;

    // Data B refuses (beyond its image_size_cap), after the metadata was copied: the image gets
    // its own formats and properties back.
    let big = active_image(
        a,
        &tok,
        json!({"name": a.name("big"), "disk_format": "raw", "container_format": "bare",
            "hw_disk_bus": "scsi", "os_distro": "debian", "os_type": "linux",
            "trait:CUSTOM_VELA": "required"}),
        &test_data(B_CAP + 4096),
    )
    .await;
    let id = start_import(b, &tok, region, &id_of(&big)).await;
    assert_failed_and_put_back(b, &tok, &id, "larger than").await;

    // The remote service is asked with the caller's token: beta does not see alpha's image.
    let (beta, _) = token(ks, "beta-member", "secret", "beta").await;
    let id = start_import(b, &beta, region, &src_id).await;
    assert_failed_and_put_back(b, &beta, &id, "404").await;

    // A region without an image endpoint: found out by the task (as Glance does), not at
    // request time.
    let id = start_import(b, &tok, "vt-nowhere", &src_id).await;
    assert_failed_and_put_back(
        b,
        &tok,
        &id,
        "No image service endpoint for region vt-nowhere",
    )
    .await;

    // Refused at request time: a remote id that is no UUID, no region; and on A, where the
    // method is not enabled.
    let id = id_of(
        &create(
            b,
            &tok,
            json!({"disk_format": "raw", "container_format": "bare"}),
        )
        .await,
    );
    let resp = import(b, &tok, &id, glance_download(region, "not-a-uuid")).await;
    let msg = expect_error(resp, StatusCode::BAD_REQUEST).await;
    assert!(
        msg.contains("Remote image id does not look like a UUID: not-a-uuid"),
        "{msg}"
    );
    let body = json!({"method": {"name": "glance-download", "glance_image_id": src_id}});
    let msg = expect_error(import(b, &tok, &id, body).await, StatusCode::BAD_REQUEST).await;
    assert!(msg.contains("'glance_region' needs to be set"), "{msg}");
    assert_eq!(show(b, &tok, &id).await["status"], "queued");
    let id = id_of(
        &create(
            a,
            &tok,
            json!({"disk_format": "raw", "container_format": "bare"}),
        )
        .await,
    );
    let resp = import(a, &tok, &id, glance_download(region, &src_id)).await;
    let msg = expect_error(resp, StatusCode::BAD_REQUEST).await;
    assert!(
        msg.starts_with("Unknown import method name 'glance-download'."),
        "{msg}"
    );
}
