//! What Vela adds to Glance's import safety: web-download refuses internal addresses unless
//! the operator allows them (checked after name resolution and on every redirect), and a
//! location added with validation data passes the format inspector. Vela-only (Glance 33
//! fetches from private networks and never inspects locations).

use std::sync::atomic::Ordering;

use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Digest;

use crate::helpers::{counting_server, expect_error, qemu_img, test_data, TestApp};

fn filtering(networks: &[&str]) -> String {
    let nets: Vec<String> = networks.iter().map(|n| format!("\"{n}\"")).collect();
    format!(
        "[import_filtering_opts]\nallowed_ports = []\nallowed_networks = [{}]\n",
        nets.join(", ")
    )
}

async fn queued(app: &TestApp, disk_format: &str) -> String {
    let img = app
        .create_image(
            json!({"name": app.name("safety"), "disk_format": disk_format,
                             "container_format": "bare"}),
        )
        .await;
    img["id"].as_str().unwrap().to_owned()
}

fn web_download(uri: &str) -> Value {
    json!({"method": {"name": "web-download", "uri": uri}})
}

/// Whether this host has IPv6 loopback.
fn has_ipv6_loopback() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

#[tokio::test]
async fn web_download_refuses_internal_addresses_unless_allowed() {
    let data = test_data(4096);
    let (local, _d1, local_hits) = counting_server("127.0.0.1", &[("x.raw", &data)]).await;
    let port = local.rsplit(':').next().unwrap().to_owned();
    let v6 = if has_ipv6_loopback() {
        Some(counting_server("::1", &[("x.raw", &data)]).await)
    } else {
        None
    };
    // A server the operator allows (127.0.0.2) that redirects to a refused one.
    let (front, _d2, front_hits) = counting_server("127.0.0.2", &[]).await;
    let redirect = format!("{front}/redirect?{local}/x.raw");

    let app = TestApp::spawn_with_config(&filtering(&["127.0.0.2/32"])).await;
    if app.is_external() {
        return;
    }
    let mut refused = vec![
        format!("{local}/x.raw"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.1/x.raw".to_owned(),
        format!("http://localhost:{port}/x.raw"),
    ];
    if let Some((url, _, _)) = &v6 {
        refused.push(format!("{url}/x.raw"));
    }
    for uri in &refused {
        let id = queued(&app, "raw").await;
        let msg = expect_error(
            app.import(&id, &web_download(uri)).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert!(
            msg.starts_with(&format!(
                "URI for web-download does not pass filtering: {uri}"
            )),
            "{uri}: {msg}"
        );
        let img = app.show(&id).await;
        assert_eq!(img["status"], "queued", "{uri}: {img}");
        assert!(img.get("os_glance_import_task").is_none(), "{img}");
        assert!(app.image_tasks(&id).await.is_empty());
    }
    // The redirect passes the request-time check (its first hop is allowed) and is refused
    // when followed: the task fails, the image is back to queued, the target never saw a
    // request.
    let id = queued(&app, "raw").await;
    app.import_accepted(&id, &web_download(&redirect)).await;
    let (img, task) = app.wait_for_import(&id).await;
    assert_eq!(task["status"], "failure", "{task}");
    assert_eq!(img["status"], "queued", "{img}");
    assert!(front_hits.load(Ordering::SeqCst) >= 1);
    assert_eq!(
        local_hits.load(Ordering::SeqCst),
        0,
        "the loopback server was reached"
    );
    if let Some((_, _, hits)) = &v6 {
        assert_eq!(hits.load(Ordering::SeqCst), 0);
    }

    // The operator allows loopback: the same URLs work (the metadata address stays out).
    let app = TestApp::spawn_with_config(&filtering(&["127.0.0.0/8", "::1/128"])).await;
    let mut allowed = vec![
        format!("{local}/x.raw"),
        format!("http://localhost:{port}/x.raw"),
        redirect.clone(),
    ];
    if let Some((url, _, _)) = &v6 {
        allowed.push(format!("{url}/x.raw"));
    }
    for uri in &allowed {
        let id = queued(&app, "raw").await;
        app.import_accepted(&id, &web_download(uri)).await;
        let (img, task) = app.wait_for_import(&id).await;
        assert_eq!(task["status"], "success", "{uri}: {task}");
        assert_eq!(img["status"], "active", "{uri}: {img}");
        assert_eq!(img["size"], data.len() as u64);
    }
    let id = queued(&app, "raw").await;
    expect_error(
        app.import(
            &id,
            &web_download("http://169.254.169.254/latest/meta-data/"),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
}

#[tokio::test]
async fn a_location_with_validation_data_is_inspected() {
    let dir = tempfile::tempdir().unwrap();
    qemu_img(
        dir.path(),
        &[
            "create",
            "-f",
            "qcow2",
            "-b",
            "/etc/passwd",
            "-F",
            "raw",
            "bad.qcow2",
            "1M",
        ],
    );
    qemu_img(dir.path(), &["create", "-f", "qcow2", "good.qcow2", "1M"]);
    let bad = std::fs::read(dir.path().join("bad.qcow2")).unwrap();
    let good = std::fs::read(dir.path().join("good.qcow2")).unwrap();
    let (web, _d, _) =
        counting_server("127.0.0.1", &[("bad.qcow2", &bad), ("good.qcow2", &good)]).await;
    let app = TestApp::spawn_with_config(&filtering(&["127.0.0.0/8"])).await;
    if app.is_external() {
        return;
    }
    let add = |file: &str, data: &[u8]| {
        json!({"url": format!("{web}/{file}"), "validation_data": {
            "os_hash_algo": "sha512", "os_hash_value": hex::encode(sha2::Sha512::digest(data))}})
    };
    let id = queued(&app, "qcow2").await;
    let resp = app
        .post_json(
            &format!("/v2/images/{id}/locations"),
            &add("bad.qcow2", &bad),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let (img, task) = app.wait_for_import(&id).await;
    assert_eq!(task["type"], "location_import", "{task}");
    assert_eq!(task["status"], "failure", "{task}");
    assert!(
        task["message"].as_str().unwrap().contains("safety checks"),
        "{task}"
    );
    assert!(!task["input"].to_string().contains("@"), "{task}");
    assert_eq!(img["status"], "queued", "{img}");
    assert!(img["size"].is_null(), "{img}");

    let id = queued(&app, "qcow2").await;
    let resp = app
        .post_json(
            &format!("/v2/images/{id}/locations"),
            &add("good.qcow2", &good),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let (img, task) = app.wait_for_import(&id).await;
    assert_eq!(task["status"], "success", "{task}");
    assert_eq!(img["status"], "active", "{img}");
    assert_eq!(img["virtual_size"], 1 << 20, "{img}");
    assert_eq!(img["size"], good.len() as u64, "{img}");
}
