//! Import plugins (`[import] plugins`): conversion with `qemu-img` (the staged data is
//! inspected first and refused when unsafe), decompression of gzip and zip archives, and
//! injected properties. Vela-only configuration (Glance's plugins are configured in its own
//! files).

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{md5_hex, qemu_img, run_tool, test_data, web_server, Persona, TestApp, OCTET};

fn config(plugins: &str, extra: &str) -> String {
    format!(
        "[import]\nplugins = [{plugins}]\n{extra}\n\
         [import_filtering_opts]\nallowed_ports = []\nallowed_networks = [\"127.0.0.0/8\"]\n"
    )
}

async fn image(app: &TestApp, who: Option<&Persona>, disk_format: &str) -> String {
    let body = json!({"name": app.name("plugin"), "disk_format": disk_format,
                      "container_format": "bare"});
    let mut rb = app.request(Method::POST, "/v2/images").json(&body);
    if let Some(p) = who {
        rb = rb.headers(p.headers());
    }
    let resp = app.send(rb).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let v: Value = resp.json().await.unwrap();
    v["id"].as_str().unwrap().to_owned()
}

async fn glance_direct(app: &TestApp, who: Option<&Persona>, id: &str, data: Vec<u8>) {
    let mut rb = app
        .request(Method::PUT, &format!("/v2/images/{id}/stage"))
        .header("content-type", OCTET)
        .body(data);
    if let Some(p) = who {
        rb = rb.headers(p.headers());
    }
    assert_eq!(app.send(rb).await.status(), StatusCode::NO_CONTENT);
    let mut rb = app
        .request(Method::POST, &format!("/v2/images/{id}/import"))
        .json(&json!({"method": {"name": "glance-direct"}}));
    if let Some(p) = who {
        rb = rb.headers(p.headers());
    }
    assert_eq!(app.send(rb).await.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn conversion_turns_qcow2_into_raw_and_refuses_unsafe_data() {
    let app = TestApp::spawn_with_config(&config(
        "\"image_conversion\"",
        "[import.conversion]\noutput_format = \"raw\"\n",
    ))
    .await;
    if app.is_external() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("disk.raw"), test_data(3 << 20)).unwrap();
    qemu_img(
        d,
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "qcow2",
            "disk.raw",
            "disk.qcow2",
        ],
    );
    qemu_img(d, &["resize", "-f", "qcow2", "disk.qcow2", "4M"]);
    qemu_img(
        d,
        &[
            "convert",
            "-f",
            "qcow2",
            "-O",
            "raw",
            "disk.qcow2",
            "want.raw",
        ],
    );
    let want = std::fs::read(d.join("want.raw")).unwrap();
    let id = image(&app, None, "qcow2").await;
    glance_direct(
        &app,
        None,
        &id,
        std::fs::read(d.join("disk.qcow2")).unwrap(),
    )
    .await;
    let (img, task) = app.wait_for_import(&id).await;
    assert_eq!(task["status"], "success", "{task}");
    assert_eq!(img["status"], "active", "{img}");
    assert_eq!(img["disk_format"], "raw", "{img}");
    assert_eq!(img["container_format"], "bare", "{img}");
    assert_eq!(img["size"], 4 << 20, "{img}");
    assert_eq!(img["virtual_size"], 4 << 20, "{img}");
    assert_eq!(img["checksum"], md5_hex(&want), "{img}");

    // A qcow2 with a backing file never reaches qemu-img: the inspector refuses it.
    qemu_img(
        d,
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
    let id = image(&app, None, "qcow2").await;
    glance_direct(&app, None, &id, std::fs::read(d.join("bad.qcow2")).unwrap()).await;
    let (img, task) = app.wait_for_import(&id).await;
    assert_eq!(task["status"], "failure", "{task}");
    assert!(
        task["message"].as_str().unwrap().contains("safety checks"),
        "{task}"
    );
    assert_eq!(img["status"], "queued", "{img}");
    // A raw image declared raw is left as it is.
    let raw = test_data(1 << 20);
    let id = image(&app, None, "raw").await;
    glance_direct(&app, None, &id, raw.clone()).await;
    let (img, _) = app.wait_for_import(&id).await;
    assert_eq!(img["status"], "active", "{img}");
    assert_eq!(img["checksum"], md5_hex(&raw), "{img}");
}

#[tokio::test]
async fn decompression_unpacks_gzip_and_zip() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = test_data(2 << 20);
    std::fs::write(d.join("disk.raw"), &data).unwrap();
    let gz = run_tool(d, "gzip", &["-c", "disk.raw"]);
    let (web, _dir) = web_server(&[("disk.raw.gz", &gz)]).await;
    let app = TestApp::spawn_with_config(&config("\"image_decompression\"", "")).await;
    if app.is_external() {
        return;
    }
    let id = image(&app, None, "raw").await;
    app.import_accepted(
        &id,
        &json!({"method": {"name": "web-download", "uri": format!("{web}/disk.raw.gz")}}),
    )
    .await;
    let (img, task) = app.wait_for_import(&id).await;
    assert_eq!(task["status"], "success", "{task}");
    assert_eq!(img["size"], data.len() as u64, "{img}");
    assert_eq!(img["checksum"], md5_hex(&data), "{img}");

    // A zip holding one file, staged.
    let zipped = zip_one("disk.raw", &data);
    let id = image(&app, None, "raw").await;
    glance_direct(&app, None, &id, zipped).await;
    let (img, task) = app.wait_for_import(&id).await;
    assert_eq!(task["status"], "success", "{task}");
    assert_eq!(img["checksum"], md5_hex(&data), "{img}");
}

/// A stored (uncompressed) zip archive of one file.
fn zip_one(name: &str, data: &[u8]) -> Vec<u8> {
    let crc = crc32(data);
    let (n, len) = (name.len() as u16, data.len() as u32);
    let mut out = Vec::new();
    let local = |out: &mut Vec<u8>| {
        out.extend_from_slice(b"PK\x03\x04");
        out.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&n.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
    };
    local(&mut out);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(data);
    let central = out.len() as u32;
    out.extend_from_slice(b"PK\x01\x02");
    out.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(&[0; 12]);
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(name.as_bytes());
    let size = out.len() as u32 - central;
    out.extend_from_slice(b"PK\x05\x06");
    out.extend_from_slice(&[0, 0, 0, 0, 1, 0, 1, 0]);
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&central.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in data {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[tokio::test]
async fn injected_properties_skip_ignored_roles() {
    let app = TestApp::spawn_with_config(&config(
        "\"inject_image_metadata\"",
        "[import.inject_metadata]\nproperties = { hw_scsi_model = \"virtio-scsi\", os_glance_x = \"no\" }\n\
         ignore_user_roles = [\"admin\"]\n",
    ))
    .await;
    if app.is_external() {
        return;
    }
    let member = Persona::member(&app.name("proj"));
    let data = test_data(10_000);
    let id = image(&app, Some(&member), "raw").await;
    glance_direct(&app, Some(&member), &id, data.clone()).await;
    let (img, task) = app.wait_for_import(&id).await;
    assert_eq!(task["status"], "success", "{task}");
    assert_eq!(img["hw_scsi_model"], "virtio-scsi", "{img}");
    assert!(img.get("os_glance_x").is_none(), "{img}");
    // An admin's import gets nothing.
    let id = image(&app, None, "raw").await;
    glance_direct(&app, None, &id, data).await;
    let (img, _) = app.wait_for_import(&id).await;
    assert_eq!(img["status"], "active", "{img}");
    assert!(img.get("hw_scsi_model").is_none(), "{img}");
}
