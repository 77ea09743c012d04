//! Connection and request limits (`[server]`): head deadline and size, connection and request
//! caps, stalled bodies, oversized JSON bodies. Vela-only: they need Vela's configuration.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{expect_error, read_response, RawResponse, TestApp};

/// Writes `head` and `body` on one connection while reading the answer, so that a server that
/// answers before the body ends is heard.
async fn send_reading(app: &TestApp, head: &str, body: Vec<u8>) -> std::io::Result<RawResponse> {
    let s = app.connect_raw().await;
    let (mut r, mut w) = s.into_split();
    let msg = format!(
        "{head}\r\nHost: {}\r\nConnection: close\r\n\r\n",
        app.host_port()
    );
    let writer = tokio::spawn(async move {
        w.write_all(msg.as_bytes()).await?;
        w.write_all(&body).await?;
        w.flush().await?;
        // Keep the write half open until the answer has been read.
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok::<_, std::io::Error>(())
    });
    let answer = read_response(&mut r, false).await;
    writer.abort();
    answer
}

/// True when the server has closed `s` (EOF or reset) within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut tmp = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut tmp)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn oversized_head_is_431_and_large_ones_pass() {
    let app = TestApp::spawn().await;
    if app.is_external() {
        return;
    }
    let big = "a".repeat(100 * 1024);
    let raw = send_reading(
        &app,
        &format!("GET /v2/images HTTP/1.1\r\nX-Big: {big}"),
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(raw.status, 431);
    let fine = "a".repeat(32 * 1024);
    let raw = app
        .raw_request(&format!("GET /v2/images HTTP/1.1\r\nX-Big: {fine}"), b"")
        .await;
    assert_eq!(raw.status, 200);
    // 200 headers: more than the parser takes.
    let many: String = (0..200).map(|i| format!("\r\nX-H{i}: v")).collect();
    let raw = send_reading(&app, &format!("GET /v2/images HTTP/1.1{many}"), vec![])
        .await
        .unwrap();
    assert_eq!(raw.status, 431);
}

#[tokio::test]
async fn oversized_json_body_gets_a_readable_413() {
    let app = TestApp::spawn().await;
    if app.is_external() {
        return;
    }
    let name = "a".repeat(20 * 1024 * 1024);
    let body = serde_json::to_vec(&json!({"name": name})).unwrap();
    for framing in ["Content-Length", "chunked"] {
        let (head, payload) = if framing == "chunked" {
            let mut p = format!("{:x}\r\n", body.len()).into_bytes();
            p.extend_from_slice(&body);
            p.extend_from_slice(b"\r\n0\r\n\r\n");
            (
                "POST /v2/images HTTP/1.1\r\nAccept: application/json\r\nContent-Type: \
                 application/json\r\nTransfer-Encoding: chunked"
                    .to_owned(),
                p,
            )
        } else {
            (
                format!(
                    "POST /v2/images HTTP/1.1\r\nAccept: application/json\r\nContent-Type: \
                     application/json\r\nContent-Length: {}",
                    body.len()
                ),
                body.clone(),
            )
        };
        let raw = send_reading(&app, &head, payload).await.unwrap();
        assert_eq!(raw.status, 413, "{framing}: {}", raw.text());
        let v: serde_json::Value = serde_json::from_slice(&raw.body).unwrap();
        assert_eq!(v["code"], "413 Request Entity Too Large", "{v}");
    }
    // A body within the limit still works.
    let resp = app
        .send(
            app.request(reqwest::Method::POST, "/v2/images")
                .json(&json!({"name": "a".repeat(200)})),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn slowloris_connections_do_not_block_and_are_closed() {
    let app = TestApp::spawn_with_config("[server]\nheader_read_timeout_secs = 2\n").await;
    if app.is_external() {
        return;
    }
    let mut idle = Vec::new();
    for i in 0..500 {
        let mut s = app.connect_raw().await;
        if i % 2 == 0 {
            // Half a request head, never finished.
            s.write_all(b"GET /v2/images HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .await
                .unwrap();
        }
        idle.push(s);
    }
    let started = Instant::now();
    let resp = app.get("/v2/images?limit=1").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "served in {:?}",
        started.elapsed()
    );
    // A client trickling its head a byte at a time is cut off at the same deadline.
    let mut trickle = app.connect_raw().await;
    let trickled = tokio::spawn(async move {
        for b in b"GET /v2/images HTTP/1.1\r\nHost: x\r\nX-A: aaaaaaaaaaaaaaaaaaaa" {
            if trickle.write_all(&[*b]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        closed_within(&mut trickle, Duration::from_secs(1)).await
    });
    for (i, s) in idle.iter_mut().enumerate() {
        assert!(
            closed_within(s, Duration::from_secs(6)).await,
            "connection {i} still open"
        );
    }
    assert!(trickled.await.unwrap(), "trickling client still connected");
    // And the server still answers.
    assert_eq!(app.get("/v2/images?limit=1").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn connection_cap_answers_503_then_recovers() {
    let app = TestApp::spawn_with_config("[server]\nmax_connections = 8\n").await;
    if app.is_external() {
        return;
    }
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(app.connect_raw().await);
    }
    // Let the server accept them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let raw = app.raw_request("GET /v2/images HTTP/1.1", b"").await;
    assert_eq!(raw.status, 503);
    assert_eq!(raw.header("retry-after"), Some("1"));
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let raw = app.raw_request("GET /v2/images HTTP/1.1", b"").await;
    assert_eq!(raw.status, 200);
}

#[tokio::test]
async fn request_cap_answers_503_and_stalled_bodies_time_out() {
    let app = TestApp::spawn_with_config(
        "[server]\nmax_concurrent_requests = 2\nbody_idle_timeout_secs = 2\n",
    )
    .await;
    if app.is_external() {
        return;
    }
    let mut stalled = Vec::new();
    let mut ids = Vec::new();
    for i in 0..2 {
        let img = app
            .create_image(json!({"name": app.name(&format!("stall{i}")), "disk_format": "raw", "container_format": "bare"}))
            .await;
        let id = img["id"].as_str().unwrap().to_owned();
        let mut s = app.connect_raw().await;
        let head = format!(
            "PUT /v2/images/{id}/file HTTP/1.1\r\nHost: x\r\nContent-Type: \
             application/octet-stream\r\nContent-Length: 1000000\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&[7u8; 1000]).await.unwrap();
        stalled.push(s);
        ids.push(id);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let resp = app.get("/v2/images?limit=1").await;
    assert_eq!(resp.headers()["retry-after"], "1");
    expect_error(resp, StatusCode::SERVICE_UNAVAILABLE).await;
    // The stalled uploads fail once their bodies have been idle for 2 s.
    for s in &mut stalled {
        let raw = read_response(s, false).await.unwrap();
        assert_eq!(raw.status, 400, "{}", raw.text());
    }
    for id in &ids {
        let img = app.show(id).await;
        assert_eq!(img["status"], "queued");
        assert_eq!(img["size"], serde_json::Value::Null);
    }
    assert_eq!(app.get("/v2/images?limit=1").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn metadata_is_bounded() {
    let app = TestApp::spawn().await;
    if app.is_external() {
        return;
    }
    let base =
        || json!({"name": app.name("meta"), "disk_format": "raw", "container_format": "bare"});
    // One value over 65535 bytes: 400 on create and on patch; 65535 is fine.
    let mut body = base();
    body["big"] = json!("v".repeat(65_536));
    let msg = expect_error(
        app.post_json("/v2/images", &body).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(msg.contains("'big' is too long"), "{msg}");
    let mut body = base();
    body["big"] = json!("v".repeat(65_535));
    let img = app.create_image(body).await;
    let id = img["id"].as_str().unwrap();
    let patch = json!([{"op": "add", "path": "/big2", "value": "v".repeat(70_000)}]);
    let resp = app
        .patch(id, "application/openstack-images-v2.1-json-patch", &patch)
        .await;
    expect_error(resp, StatusCode::BAD_REQUEST).await;
    // 256 KiB of metadata in all: the fifth 60 KB property tips it over (413).
    let mut ok = 0;
    let mut refused = None;
    for i in 0..6 {
        let patch = json!([{"op": "add", "path": format!("/p{i}"), "value": "v".repeat(60_000)}]);
        let resp = app
            .patch(id, "application/openstack-images-v2.1-json-patch", &patch)
            .await;
        if resp.status() == StatusCode::OK {
            ok += 1;
        } else {
            refused = Some(expect_error(resp, StatusCode::PAYLOAD_TOO_LARGE).await);
            break;
        }
    }
    assert_eq!(ok, 3, "{refused:?}");
    assert!(refused.unwrap().contains("metadata is too large"));
    // Too many operations in one patch: 413.
    let ops: Vec<_> = (0..1001)
        .map(|i| json!({"op": "replace", "path": "/min_ram", "value": i}))
        .collect();
    let resp = app
        .patch(
            id,
            "application/openstack-images-v2.1-json-patch",
            &json!(ops),
        )
        .await;
    expect_error(resp, StatusCode::PAYLOAD_TOO_LARGE).await;
    // Long query strings: 400.
    let q = "a".repeat(17 * 1024);
    let resp = app.get(&format!("/v2/images?name={q}")).await;
    expect_error(resp, StatusCode::BAD_REQUEST).await;
    app.delete(&format!("/v2/images/{id}")).await;
}
