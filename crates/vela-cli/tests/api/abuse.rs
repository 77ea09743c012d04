//! Thousands of malformed requests, as hostile clients send them: bad JSON, bad bytes in paths
//! and headers, oversized bodies, wrong and invented methods, uploads cut off halfway. Every one
//! must get an answer below 500 on its connection, the server must stay up, and every cut-off
//! upload must leave its image `queued` without data. Vela-only (it needs fresh images).

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

use crate::helpers::{read_response, TestApp};

/// xorshift64: the same requests on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next() >> 24) as u8).collect()
    }
}

/// One raw request: head bytes (request line and headers, without the blank line) and body.
struct Raw {
    head: Vec<u8>,
    body: Vec<u8>,
    /// Close the connection after sending this much of a longer announced body.
    cut: bool,
}

fn request(method: &[u8], path: &[u8], headers: &[(&[u8], &[u8])], body: Vec<u8>) -> Raw {
    let mut head = Vec::new();
    head.extend_from_slice(method);
    head.push(b' ');
    head.extend_from_slice(path);
    head.extend_from_slice(b" HTTP/1.1\r\nHost: vela\r\nConnection: close");
    for (k, v) in headers {
        head.extend_from_slice(b"\r\n");
        head.extend_from_slice(k);
        head.extend_from_slice(b": ");
        head.extend_from_slice(v);
    }
    head.extend_from_slice(format!("\r\nContent-Length: {}", body.len()).as_bytes());
    Raw {
        head,
        body,
        cut: false,
    }
}

fn malformed(rng: &mut Rng, image: &str) -> Raw {
    let routes: Vec<String> = vec![
        "/v2/images".into(),
        format!("/v2/images/{image}"),
        format!("/v2/images/{image}/file"),
        format!("/v2/images/{image}/stage"),
        format!("/v2/images/{image}/import"),
        format!("/v2/images/{image}/members"),
        format!("/v2/images/{image}/members/x"),
        format!("/v2/images/{image}/tags/t"),
        format!("/v2/images/{image}/actions/deactivate"),
        format!("/v2/images/{image}/locations"),
        "/v2/tasks".into(),
        "/v2/schemas/image".into(),
        "/v2/info/import".into(),
        "/v3/auth/tokens".into(),
        "/".into(),
    ];
    let methods: &[&[u8]] = &[
        b"GET", b"POST", b"PUT", b"PATCH", b"DELETE", b"HEAD", b"OPTIONS", b"FOO", b"TRACE",
    ];
    let json_types: &[&[u8]] = &[
        b"application/json",
        b"application/openstack-images-v2.1-json-patch",
        b"application/octet-stream",
        b"text/plain",
        b"\xff\xfe",
    ];
    let bad_json: &[&[u8]] = &[
        b"{",
        b"[",
        b"null",
        b"{\"name\": \"\xff\xfe\"}",
        b"{\"name\": 1e999999}",
        b"[{\"op\": \"add\", \"path\": \"/\xc3\", \"value\": 1}]",
        b"{\"member\": {\"a\": [[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]}}",
        b"{\"method\": {\"name\": \"web-download\", \"uri\": \"gopher://x\"}}",
        b"\"just a string\"",
        b"{\"visibility\": \"\\ud800\"}",
    ];
    let route = routes[rng.below(routes.len())].clone();
    match rng.below(7) {
        // Bad JSON on any route and method.
        0 => {
            let body = rng.pick(bad_json).to_vec();
            request(
                rng.pick(methods),
                route.as_bytes(),
                &[(&b"Content-Type"[..], rng.pick(json_types))],
                body,
            )
        }
        // Bad bytes in the path.
        1 => {
            let mut path = route.into_bytes();
            let junk: &[&[u8]] = &[
                b"%FF%FE",
                b"%",
                b"%zz",
                b"\xff",
                b"/../..",
                b"%00",
                b"?limit=\xff",
            ];
            path.extend_from_slice(rng.pick(junk));
            request(rng.pick(methods), &path, &[], Vec::new())
        }
        // Bad bytes in headers that mean something.
        2 => {
            let names: &[&[u8]] = &[
                b"X-Auth-Token",
                b"X-Roles",
                b"X-Project-Id",
                b"Accept",
                b"Content-Type",
                b"X-Image-Meta-Store",
                b"x-openstack-request-id",
                b"Range",
                b"x-image-meta-size",
                b"X-Openstack-Append",
            ];
            let n = 1 + rng.below(40);
            let mut value = rng.bytes(n);
            value.retain(|b| *b != b'\r' && *b != b'\n' && *b != 0);
            request(
                b"GET",
                route.as_bytes(),
                &[(rng.pick(names), &value[..])],
                Vec::new(),
            )
        }
        // Oversized JSON bodies.
        3 => {
            let mut body = b"{\"name\": \"".to_vec();
            body.extend(std::iter::repeat_n(b'a', 3 * 1024 * 1024));
            body.extend_from_slice(b"\"}");
            request(
                b"POST",
                b"/v2/images",
                &[(&b"Content-Type"[..], &b"application/json"[..])],
                body,
            )
        }
        // Invented and wrong methods.
        4 => {
            let odd: &[&[u8]] = &[b"FOO", b"PROPFIND", b"CONNECT", b"get", b"PATCH", b"DELETE"];
            request(rng.pick(odd), route.as_bytes(), &[], Vec::new())
        }
        // A body where none belongs, or a random one.
        5 => {
            let n = rng.below(2048);
            let body = rng.bytes(n);
            request(
                rng.pick(methods),
                route.as_bytes(),
                &[(&b"Content-Type"[..], rng.pick(json_types))],
                body,
            )
        }
        // Random query strings.
        _ => {
            let keys = [
                "limit",
                "marker",
                "sort",
                "sort_key",
                "sort_dir",
                "name",
                "size_min",
                "created_at",
                "tag",
                "visibility",
                "member_status",
                "os_hidden",
                "id",
            ];
            let values = [
                "-1",
                "abc",
                "in:",
                "in:,,,",
                "gte:",
                "name:sideways",
                "99999999999999999999",
                "%FF",
                "",
                "null",
            ];
            let q: Vec<String> = (0..1 + rng.below(4))
                .map(|_| format!("{}={}", rng.pick(&keys), rng.pick(&values)))
                .collect();
            request(
                b"GET",
                format!("/v2/images?{}", q.join("&")).as_bytes(),
                &[],
                Vec::new(),
            )
        }
    }
}

async fn send(app: &TestApp, raw: Raw) -> Result<u16, String> {
    let mut s = app.connect_raw().await;
    let mut msg = raw.head.clone();
    msg.extend_from_slice(b"\r\n\r\n");
    s.write_all(&msg).await.map_err(|e| e.to_string())?;
    if raw.cut {
        // Half the announced body, then the connection is gone.
        let _ = s.write_all(&raw.body[..raw.body.len() / 2]).await;
        return Ok(0);
    }
    // The server may answer (and stop reading) before the body is all sent.
    let (mut r, mut w) = s.into_split();
    let body = raw.body;
    let writer = tokio::spawn(async move {
        let _ = w.write_all(&body).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(w);
    });
    let answer = read_response(&mut r, raw.head.starts_with(b"HEAD ")).await;
    writer.abort();
    let head = String::from_utf8_lossy(&raw.head).into_owned();
    answer
        .map(|a| a.status)
        .map_err(|e| format!("{head:?}: {e}"))
}

#[tokio::test]
async fn malformed_requests_get_4xx_and_leave_nothing_behind() {
    let app = TestApp::spawn().await;
    if app.is_external() {
        return;
    }
    let app = Arc::new(app);
    let target = app
        .create_image(
            json!({"name": app.name("abuse"), "disk_format": "raw", "container_format": "bare"}),
        )
        .await;
    let target = target["id"].as_str().unwrap().to_owned();
    // Images whose uploads will be cut off halfway.
    let mut cut_images = Vec::new();
    for i in 0..40 {
        let img = app
            .create_image(json!({"name": app.name(&format!("cut{i}")), "disk_format": "raw", "container_format": "bare"}))
            .await;
        cut_images.push(img["id"].as_str().unwrap().to_owned());
    }
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let mut requests: Vec<Raw> = (0..2000).map(|_| malformed(&mut rng, &target)).collect();
    for (i, id) in cut_images.iter().enumerate() {
        let mut raw = request(
            b"PUT",
            format!("/v2/images/{id}/file").as_bytes(),
            &[(&b"Content-Type"[..], &b"application/octet-stream"[..])],
            rng.bytes(200_000),
        );
        raw.cut = true;
        requests.insert(i * 50, raw);
    }
    let slots = Arc::new(Semaphore::new(16));
    let mut running = Vec::new();
    for raw in requests {
        let permit = slots.clone().acquire_owned().await.unwrap();
        let app = app.clone();
        running.push(tokio::spawn(async move {
            let r = send(&app, raw).await;
            drop(permit);
            r
        }));
    }
    let mut failures = Vec::new();
    let mut statuses = std::collections::BTreeMap::new();
    for r in running {
        match r.await.unwrap() {
            Ok(0) => {}
            Ok(status) if status >= 500 => failures.push(format!("status {status}")),
            Ok(status) => *statuses.entry(status).or_insert(0) += 1,
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    eprintln!("statuses: {statuses:?}");
    assert!(statuses.keys().any(|s| *s == 413), "{statuses:?}");
    // Still serving, and the cut-off uploads left nothing: queued, no size, no checksum.
    assert_eq!(app.get("/v2/images?limit=1").await.status(), StatusCode::OK);
    for id in &cut_images {
        let img = app.wait_for_status(id, "queued").await;
        assert_eq!(img["size"], serde_json::Value::Null, "{img}");
        assert_eq!(img["checksum"], serde_json::Value::Null, "{img}");
    }
    let data = app.data_dir().unwrap().join("data").join("images");
    let leftovers: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        // The target may have received a (random, raw) upload: its data is legitimate.
        .filter(|e| e.file_name().to_string_lossy() != target)
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
