//! Image data: PUT/GET /v2/images/{id}/file (samples 07, 08, 09, 10, 19, 21, 24).

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::helpers::{
    expect_error, is_lower_hex, is_timestamp, md5_hex, read_response, sha512_hex, test_data,
    TestApp, OCTET,
};

async fn raw_image(app: &TestApp) -> String {
    let img = app
        .create_image(json!({"name": app.name("data"), "disk_format": "raw",
                             "container_format": "bare"}))
        .await;
    img["id"].as_str().unwrap().to_owned()
}

fn assert_active_with(img: &Value, data: &[u8]) {
    assert_eq!(img["status"], "active", "{img}");
    assert_eq!(img["size"], data.len() as u64);
    assert_eq!(img["virtual_size"], data.len() as u64);
    assert_eq!(img["checksum"], md5_hex(data));
    assert!(is_lower_hex(img["checksum"].as_str().unwrap(), 32));
    assert!(is_lower_hex(img["os_hash_value"].as_str().unwrap(), 128));
    assert_eq!(img["os_hash_algo"], "sha512");
    assert_eq!(img["os_hash_value"], sha512_hex(data));
    assert!(is_timestamp(img["updated_at"].as_str().unwrap()));
}

fn assert_queued_without_data(img: &Value) {
    assert_eq!(img["status"], "queued", "{img}");
    for f in [
        "size",
        "virtual_size",
        "checksum",
        "os_hash_algo",
        "os_hash_value",
    ] {
        assert!(img[f].is_null(), "{f} should be null: {img}");
    }
}

async fn download_ok(app: &TestApp, id: &str, data: &[u8]) {
    let resp = app.download(id).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let h = resp.headers().clone();
    assert_eq!(h["content-type"], OCTET);
    assert_eq!(h["content-length"], data.len().to_string().as_str());
    assert_eq!(h["content-md5"], md5_hex(data).as_str());
    let body = resp.bytes().await.unwrap();
    assert!(body[..] == data[..], "downloaded bytes differ");
}

/// Writes the head of a PUT /file with the given Content-Length (no body yet).
async fn start_raw_upload(app: &TestApp, id: &str, content_length: usize) -> TcpStream {
    let mut s = app.connect_raw().await;
    let head = format!(
        "PUT /v2/images/{id}/file HTTP/1.1\r\nHost: {}\r\nContent-Type: {OCTET}\r\n\
         Content-Length: {content_length}\r\nConnection: close\r\n\r\n",
        app.host_port()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s
}

#[tokio::test]
async fn upload_then_download() {
    let app = TestApp::spawn().await;
    let id = raw_image(&app).await;
    let data = test_data(200_000);
    let resp = app.put_file(&id, data.clone()).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(resp.content_length().unwrap_or(0), 0);
    assert!(resp.bytes().await.unwrap().is_empty());
    let img = app.show(&id).await;
    assert_active_with(&img, &data);
    crate::helpers::assert_image_shape(&img);
    download_ok(&app, &id, &data).await;
}

#[tokio::test]
async fn upload_empty_image() {
    let app = TestApp::spawn().await;
    let id = raw_image(&app).await;
    let resp = app.put_file(&id, Vec::new()).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let img = app.show(&id).await;
    assert_eq!(img["status"], "active");
    assert_eq!(img["size"], 0);
    assert_eq!(img["checksum"], md5_hex(b""));
    assert_eq!(img["os_hash_value"], sha512_hex(b""));
}

#[tokio::test]
async fn chunked_upload() {
    let app = TestApp::spawn().await;
    let id = raw_image(&app).await;
    let data = test_data(300_001);
    let chunks = vec![
        data[..1].to_vec(),
        data[1..65_537].to_vec(),
        data[65_537..65_547].to_vec(),
        data[65_547..].to_vec(),
    ];
    let resp = app.upload(&id, chunks).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let img = app.show(&id).await;
    assert_active_with(&img, &data);
    download_ok(&app, &id, &data).await;
}

#[tokio::test]
async fn reupload_is_409() {
    let app = TestApp::spawn().await;
    let data = test_data(100);
    let img = app
        .create_active_image(json!({"name": app.name("re")}), &data)
        .await;
    let id = img["id"].as_str().unwrap();
    let resp = app.put_file(id, vec![b'x']).await;
    let msg = expect_error(resp, StatusCode::CONFLICT).await;
    assert_eq!(
        msg,
        "Image status transition from active to saving is not allowed<br /><br />\n\n\n"
    );
    assert_eq!(app.show(id).await, img);
    download_ok(&app, id, &data).await;
}

#[tokio::test]
async fn upload_wrong_content_type_is_415() {
    let app = TestApp::spawn().await;
    let id = raw_image(&app).await;
    for ct in [
        "application/json",
        "text/plain",
        "application/x-www-form-urlencoded",
    ] {
        let resp = app
            .send(
                app.request(Method::PUT, &format!("/v2/images/{id}/file"))
                    .header("content-type", ct)
                    .body(test_data(10)),
            )
            .await;
        expect_error(resp, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    }
    let resp = app
        .send(
            app.request(Method::PUT, &format!("/v2/images/{id}/file"))
                .body(test_data(10)),
        )
        .await;
    expect_error(resp, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    assert_queued_without_data(&app.show(&id).await);
    // Parameters on the media type are ignored.
    let resp = app
        .send(
            app.request(Method::PUT, &format!("/v2/images/{id}/file"))
                .header("content-type", "application/octet-stream; charset=binary")
                .body(test_data(10)),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn upload_without_formats_is_400() {
    let app = TestApp::spawn().await;
    for body in [
        json!({}),
        json!({"disk_format": "raw"}),
        json!({"container_format": "bare"}),
    ] {
        let mut body = body;
        body["name"] = json!(app.name("nofmt"));
        let img = app.create_image(body.clone()).await;
        let id = img["id"].as_str().unwrap();
        let resp = app.put_file(id, test_data(10)).await;
        expect_error(resp, StatusCode::BAD_REQUEST).await;
        assert_queued_without_data(&app.show(id).await);
    }
}

#[tokio::test]
async fn upload_unknown_image_is_404() {
    let app = TestApp::spawn().await;
    let resp = app
        .put_file("00000000-0000-0000-0000-000000000000", test_data(10))
        .await;
    expect_error(resp, StatusCode::NOT_FOUND).await;
    let resp = app.download("00000000-0000-0000-0000-000000000000").await;
    expect_error(resp, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn download_queued_is_204() {
    let app = TestApp::spawn().await;
    let id = raw_image(&app).await;
    let resp = app.download(&id).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(resp.headers().get("content-md5").is_none());
    assert!(resp.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn download_ranges() {
    let app = TestApp::spawn().await;
    let data = test_data(1000);
    let img = app
        .create_active_image(json!({"name": app.name("rng")}), &data)
        .await;
    let id = img["id"].as_str().unwrap();
    let md5 = md5_hex(&data);
    for (range, start, end) in [
        ("bytes=0-9", 0usize, 9usize),
        ("bytes=5-", 5, 999),
        ("bytes=-3", 997, 999),
        ("bytes=0-0", 0, 0),
        ("bytes=999-999", 999, 999),
        ("bytes=0-999", 0, 999),
        ("bytes=100-199", 100, 199),
    ] {
        let resp = app.download_range(id, range).await;
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        let h = resp.headers().clone();
        assert_eq!(
            h["content-range"].to_str().unwrap(),
            format!("bytes {start}-{end}/1000"),
            "{range}"
        );
        assert_eq!(h["content-length"], (end - start + 1).to_string().as_str());
        assert_eq!(h["content-type"], OCTET);
        assert_eq!(h["content-md5"], md5.as_str());
        let body = resp.bytes().await.unwrap();
        assert!(body[..] == data[start..=end], "{range}: wrong bytes");
    }
    // Several ranges are refused.
    let resp = app.download_range(id, "bytes=0-1,5-6").await;
    expect_error(resp, StatusCode::BAD_REQUEST).await;
    // Start beyond the data.
    for range in ["bytes=1000-", "bytes=99999999-", "bytes=1000-1001"] {
        let resp = app.download_range(id, range).await;
        let msg = expect_error(resp, StatusCode::RANGE_NOT_SATISFIABLE).await;
        assert!(
            msg.contains("Invalid start position in Range header. Start position MUST be in the inclusive range [0, 999]."),
            "{range}: {msg}"
        );
    }
}

#[tokio::test]
async fn download_range_416_plain_body() {
    let app = TestApp::spawn().await;
    let data = test_data(50);
    let img = app
        .create_active_image(json!({"name": app.name("r416")}), &data)
        .await;
    let id = img["id"].as_str().unwrap();
    let raw = app
        .raw_request(
            &format!("GET /v2/images/{id}/file HTTP/1.1\r\nRange: bytes=99999999-"),
            b"",
        )
        .await;
    assert_eq!(raw.status, 416);
    assert_eq!(
        raw.header("content-type"),
        Some("text/plain; charset=UTF-8")
    );
    assert_eq!(
        raw.text(),
        "416 Request Range Not Satisfiable\n\nThe Range requested is not available.\n\n \
         Invalid start position in Range header. Start position MUST be in the inclusive \
         range [0, 49].  "
    );
}

#[tokio::test]
async fn upload_over_size_cap_is_413() {
    let app = TestApp::spawn_with_config("[images]\nimage_size_cap = 1024\n").await;
    if app.is_external() {
        return;
    }
    let id = raw_image(&app).await;
    let resp = app.put_file(&id, test_data(1025)).await;
    expect_error(resp, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_queued_without_data(&app.show(&id).await);
    // Chunked (size unknown up front) is cut off too.
    let resp = app.upload(&id, vec![test_data(600), test_data(600)]).await;
    expect_error(resp, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_queued_without_data(&app.show(&id).await);
    assert_eq!(app.download(&id).await.status(), StatusCode::NO_CONTENT);
    // Exactly at the cap is fine.
    let data = test_data(1024);
    let resp = app.put_file(&id, data.clone()).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_active_with(&app.show(&id).await, &data);
}

#[tokio::test]
async fn aborted_upload_leaves_image_queued() {
    let app = TestApp::spawn().await;
    let id = raw_image(&app).await;
    let mut s = start_raw_upload(&app, &id, 2000).await;
    s.write_all(&test_data(1000)).await.unwrap();
    s.flush().await.unwrap();
    // The server is now blocked reading the rest of the body.
    app.wait_for_status(&id, "saving").await;
    drop(s);
    let img = app.wait_for_status(&id, "queued").await;
    assert_queued_without_data(&img);
    assert_eq!(app.download(&id).await.status(), StatusCode::NO_CONTENT);
    let data = test_data(3000);
    let resp = app.put_file(&id, data.clone()).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_active_with(&app.show(&id).await, &data);
    download_ok(&app, &id, &data).await;
}

#[tokio::test]
async fn short_body_with_half_close_leaves_image_queued() {
    let app = TestApp::spawn().await;
    let id = raw_image(&app).await;
    let mut s = start_raw_upload(&app, &id, 2000).await;
    s.write_all(&test_data(500)).await.unwrap();
    s.flush().await.unwrap();
    app.wait_for_status(&id, "saving").await;
    s.shutdown().await.unwrap();
    // Whatever the server answers (or if it just closes), it must not be a success.
    if let Ok(resp) = read_response(&mut s, false).await {
        assert!(resp.status >= 400, "short upload accepted: {resp:?}");
    }
    let img = app.wait_for_status(&id, "queued").await;
    assert_queued_without_data(&img);
    let data = test_data(2000);
    let resp = app.put_file(&id, data.clone()).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_active_with(&app.show(&id).await, &data);
}

#[tokio::test]
async fn image_size_header_mismatch_is_400() {
    let app = TestApp::spawn().await;
    let id = raw_image(&app).await;
    for (size, status) in [
        ("999", StatusCode::BAD_REQUEST),
        ("1001", StatusCode::BAD_REQUEST),
        ("abc", StatusCode::BAD_REQUEST),
    ] {
        let resp = app
            .send(
                app.request(Method::PUT, &format!("/v2/images/{id}/file"))
                    .header("content-type", OCTET)
                    .header("x-openstack-image-size", size)
                    .body(test_data(1000)),
            )
            .await;
        expect_error(resp, status).await;
        assert_queued_without_data(&app.show(&id).await);
    }
    let data = test_data(1000);
    let resp = app
        .send(
            app.request(Method::PUT, &format!("/v2/images/{id}/file"))
                .header("content-type", OCTET)
                .header("x-openstack-image-size", "1000")
                .body(data.clone()),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_active_with(&app.show(&id).await, &data);
}

#[tokio::test]
async fn delete_during_upload_is_410() {
    let app = TestApp::spawn().await;
    if app.is_external() {
        return;
    }
    let id = raw_image(&app).await;
    let data = test_data(200_000);
    let mut s = start_raw_upload(&app, &id, data.len()).await;
    s.write_all(&data[..100_000]).await.unwrap();
    s.flush().await.unwrap();
    app.wait_for_status(&id, "saving").await;
    let resp = app.delete(&format!("/v2/images/{id}")).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    // The server may answer before reading the rest; ignore write errors.
    let _ = s.write_all(&data[100_000..]).await;
    let _ = s.flush().await;
    let resp = read_response(&mut s, false).await.unwrap();
    assert_eq!(resp.status, 410, "{}", resp.text());
    assert_eq!(
        app.status_of(&format!("/v2/images/{id}")).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.download(&id).await.status(), StatusCode::NOT_FOUND);
    // No stored object for the image is left behind.
    let dir = app.data_dir().unwrap().to_owned();
    let leftovers = find_files_containing(&dir, &id);
    assert!(leftovers.is_empty(), "data left behind: {leftovers:?}");
}

fn find_files_containing(dir: &std::path::Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(find_files_containing(&p, needle));
        } else if p.to_string_lossy().contains(needle) {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn deleted_image_data_is_gone() {
    let app = TestApp::spawn().await;
    let data = test_data(5000);
    let img = app
        .create_active_image(json!({"name": app.name("gone")}), &data)
        .await;
    let id = img["id"].as_str().unwrap();
    let resp = app.delete(&format!("/v2/images/{id}")).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = app.download(id).await;
    expect_error(resp, StatusCode::NOT_FOUND).await;
    if let Some(dir) = app.data_dir() {
        let leftovers = find_files_containing(dir, id);
        assert!(leftovers.is_empty(), "data left behind: {leftovers:?}");
    }
}
