//! Glance's HTTP rules outside the resources themselves, checked against Glance 33 first
//! (`VELA_TEST_URL`): bodies refused on `body_reject` routes, HEAD answered 405 with `Allow`,
//! `/v2` redirected to `/v2/`, and `Accept`-header versioning.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{expect_error, expect_json, TestApp};

const BODY_ERROR: &str = "A body is not expected with this request.";

#[tokio::test]
async fn body_is_refused_where_glance_refuses_it() {
    let app = TestApp::spawn().await;
    let img = app
        .create_image(
            json!({"name": app.name("body"), "disk_format": "raw", "container_format": "bare"}),
        )
        .await;
    let id = img["id"].as_str().unwrap();
    let member = "0123456789abcdef0123456789abcdef";
    let cases: Vec<(Method, String)> = vec![
        (Method::GET, format!("/v2/images/{id}")),
        (Method::GET, format!("/v2/images/{id}/tasks")),
        (Method::GET, format!("/v2/images/{id}/file")),
        (Method::GET, format!("/v2/images/{id}/members")),
        (Method::GET, format!("/v2/images/{id}/members/{member}")),
        (Method::DELETE, format!("/v2/images/{id}/members/{member}")),
        (Method::PUT, format!("/v2/images/{id}/tags/t1")),
        (Method::DELETE, format!("/v2/images/{id}/tags/t1")),
        (Method::POST, format!("/v2/images/{id}/actions/deactivate")),
        (Method::POST, format!("/v2/images/{id}/actions/reactivate")),
        (Method::GET, "/v2/schemas/image".to_owned()),
        (Method::GET, "/v2/schemas/members".to_owned()),
        (Method::GET, "/v2/info/import".to_owned()),
        (Method::DELETE, format!("/v2/images/{id}")),
    ];
    for (method, path) in &cases {
        for body in [&b"x"[..], &br#"{"a": 1}"#[..]] {
            let rb = app
                .request(method.clone(), path)
                .header("content-type", "application/json")
                .body(body.to_vec());
            let msg = expect_error(app.send(rb).await, StatusCode::BAD_REQUEST).await;
            assert!(msg.contains(BODY_ERROR), "{method} {path}: {msg}");
        }
    }
    // Nothing happened: no tag, still there and queued.
    let shown = app.show(id).await;
    assert_eq!(shown["tags"], json!([]));
    assert_eq!(shown["status"], "queued");
    // An empty body is no body; the list and PATCH take bodies (or ignore them).
    let resp = app
        .send(
            app.request(Method::GET, &format!("/v2/images/{id}"))
                .header("content-length", "0"),
        )
        .await;
    expect_json(resp, StatusCode::OK).await;
    let resp = app
        .send(app.request(Method::GET, "/v2/images?limit=1").body("zz"))
        .await;
    expect_json(resp, StatusCode::OK).await;
    // An empty chunked body is accepted too.
    let raw = app
        .raw_request(
            &format!("GET /v2/images/{id} HTTP/1.1\r\nTransfer-Encoding: chunked"),
            b"0\r\n\r\n",
        )
        .await;
    assert_eq!(raw.status, 200, "{}", raw.text());
    // Glance 33 under uwsgi does not see chunked bodies at all; Vela refuses one with data.
    let raw = app
        .raw_request(
            &format!("GET /v2/images/{id} HTTP/1.1\r\nTransfer-Encoding: chunked"),
            b"2\r\nab\r\n0\r\n\r\n",
        )
        .await;
    let expected = if app.is_external() { 200 } else { 400 };
    assert_eq!(raw.status, expected, "{}", raw.text());
    app.delete(&format!("/v2/images/{id}")).await;
}

#[tokio::test]
async fn head_is_405_with_allow() {
    let app = TestApp::spawn().await;
    let img = app
        .create_image(
            json!({"name": app.name("head"), "disk_format": "raw", "container_format": "bare"}),
        )
        .await;
    let id = img["id"].as_str().unwrap();
    let cases = [
        ("/v2/images".to_owned(), "GET, POST"),
        (format!("/v2/images/{id}"), "GET, PATCH, DELETE"),
        (format!("/v2/images/{id}/file"), "GET, PUT"),
        (format!("/v2/images/{id}/members"), "GET, POST"),
        ("/v2/schemas/image".to_owned(), "GET"),
        ("/v2.1/images".to_owned(), "GET, POST"),
    ];
    for (path, allow) in &cases {
        let raw = app.raw_request(&format!("HEAD {path} HTTP/1.1"), b"").await;
        assert_eq!(raw.status, 405, "HEAD {path}");
        assert_eq!(raw.header("allow"), Some(*allow), "HEAD {path}");
        assert!(
            raw.header("x-openstack-request-id").is_some(),
            "HEAD {path}"
        );
    }
    app.delete(&format!("/v2/images/{id}")).await;
}

#[tokio::test]
async fn v2_without_slash_redirects() {
    let app = TestApp::spawn().await;
    for method in [Method::GET, Method::POST] {
        let resp = app.send(app.request(method.clone(), "/v2?x=1")).await;
        assert_eq!(resp.status(), StatusCode::FOUND, "{method}");
        assert_eq!(
            resp.headers()["location"],
            format!("{}/v2/", app.url).as_str()
        );
        assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf8");
        assert!(resp.headers().contains_key("x-openstack-request-id"));
    }
    let resp = app.get("/v2/").await;
    expect_error(resp, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn accept_header_selects_the_version() {
    let app = TestApp::spawn().await;
    let vnd = |v: &str| format!("application/vnd.openstack.images-{v}");
    for v in ["v2", "v2.1", "v2.5", "v2.17"] {
        let resp = app
            .send(
                app.request(Method::GET, "/images?limit=1")
                    .header("accept", vnd(v)),
            )
            .await;
        let list = expect_json(resp, StatusCode::OK).await;
        assert!(list["images"].is_array(), "{v}: {list}");
        let resp = app
            .send(
                app.request(Method::GET, "/schemas/image")
                    .header("accept", vnd(v)),
            )
            .await;
        let schema = expect_json(resp, StatusCode::OK).await;
        assert_eq!(schema["name"], "image");
    }
    // The version comes from the header, so a versioned path is one level too deep.
    let resp = app
        .send(
            app.request(Method::GET, "/v2/images")
                .header("accept", vnd("v2")),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // Unknown versions get the version document; /versions stays the version document.
    for v in ["v2.x", "v3", "v1.0"] {
        let resp = app
            .send(app.request(Method::GET, "/images").header("accept", vnd(v)))
            .await;
        let doc = expect_json(resp, StatusCode::MULTIPLE_CHOICES).await;
        assert!(doc["versions"].is_array(), "{v}");
    }
    let resp = app
        .send(
            app.request(Method::GET, "/versions")
                .header("accept", vnd("v2")),
        )
        .await;
    expect_json(resp, StatusCode::OK).await;
}
