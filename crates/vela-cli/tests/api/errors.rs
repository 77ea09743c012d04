//! Error bodies negotiated on `Accept` (samples 14, 15, 16, 17, 22), 405 + Allow.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{expect_error, is_request_id, TestApp};

const MISSING: &str = "00000000-0000-0000-0000-000000000000";

#[tokio::test]
async fn error_404_plain_text_without_accept() {
    let app = TestApp::spawn().await;
    let raw = app
        .raw_request(&format!("GET /v2/images/{MISSING} HTTP/1.1"), b"")
        .await;
    assert_eq!(raw.status, 404);
    assert_eq!(
        raw.header("content-type"),
        Some("text/plain; charset=UTF-8")
    );
    let body = format!("404 Not Found\n\nNo image found with ID {MISSING}\n\n   ");
    assert_eq!(raw.text(), body);
    assert_eq!(
        raw.header("content-length"),
        Some(body.len().to_string().as_str())
    );
    assert!(is_request_id(
        raw.header("x-openstack-request-id").unwrap_or_default()
    ));
    // text/plain and an empty Accept behave the same.
    for accept in ["text/plain", ""] {
        let raw = app
            .raw_request(
                &format!("GET /v2/images/{MISSING} HTTP/1.1\r\nAccept: {accept}"),
                b"",
            )
            .await;
        assert_eq!(raw.status, 404);
        assert_eq!(
            raw.header("content-type"),
            Some("text/plain; charset=UTF-8"),
            "{accept:?}"
        );
        assert_eq!(raw.text(), body, "{accept:?}");
    }
}

#[tokio::test]
async fn error_404_json_with_accept_json() {
    let app = TestApp::spawn().await;
    let resp = app
        .send(
            app.request(Method::GET, &format!("/v2/images/{MISSING}"))
                .header("accept", "application/json"),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body,
        json!({
            "code": "404 Not Found",
            "message": format!("No image found with ID {MISSING}<br /><br />\n\n\n"),
            "title": "Not Found"
        })
    );
}

#[tokio::test]
async fn error_404_html_with_accept_any() {
    let app = TestApp::spawn().await;
    let html = format!(
        "<html>\n <head>\n  <title>404 Not Found</title>\n </head>\n <body>\n  \
         <h1>404 Not Found</h1>\n  No image found with ID {MISSING}<br /><br />\n\n\n\n \
         </body>\n</html>"
    );
    for accept in [
        "*/*",
        "text/html",
        "application/json, */*",
        "text/html, application/json",
    ] {
        let resp = app
            .send(
                app.request(Method::GET, &format!("/v2/images/{MISSING}"))
                    .header("accept", accept),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            resp.headers()["content-type"],
            "text/html; charset=UTF-8",
            "{accept}"
        );
        assert_eq!(resp.text().await.unwrap(), html, "{accept}");
    }
}

#[tokio::test]
async fn error_400_schema_plain_text() {
    let app = TestApp::spawn().await;
    let body = br#"{"disk_format": "floppy"}"#;
    let raw = app
        .raw_request(
            &format!(
                "POST /v2/images HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}",
                body.len()
            ),
            body,
        )
        .await;
    assert_eq!(raw.status, 400);
    assert_eq!(
        raw.header("content-type"),
        Some("text/plain; charset=UTF-8")
    );
    let text = raw.text();
    assert!(
        text.starts_with(
            "400 Bad Request\n\nProvided object does not match schema 'image': 'floppy' is not \
             one of [None, 'ami', 'ari', 'aki', 'vhd', 'vhdx', 'vmdk', 'raw', 'qcow2', 'vdi', \
             'iso', 'ploop']"
        ),
        "{text:?}"
    );
    assert!(text.ends_with("\n\n   "), "{text:?}");
}

#[tokio::test]
async fn error_405_with_allow() {
    let app = TestApp::spawn().await;
    let raw = app
        .raw_request("PUT /v2/images HTTP/1.1\r\nContent-Length: 0", b"")
        .await;
    assert_eq!(raw.status, 405);
    assert_eq!(raw.header("allow"), Some("GET, POST"));
    assert_eq!(
        raw.header("content-type"),
        Some("text/plain; charset=UTF-8")
    );
    assert_eq!(
        raw.text(),
        "405 Method Not Allowed\n\nThe method PUT is not allowed for this resource. \n\n "
    );
    let resp = app.send(app.request(Method::PUT, "/v2/images")).await;
    assert_eq!(resp.headers()["allow"], "GET, POST");
    expect_error(resp, StatusCode::METHOD_NOT_ALLOWED).await;
    let cases = [
        (Method::DELETE, "/v2/images", "GET, POST"),
        (
            Method::POST,
            &format!("/v2/images/{MISSING}") as &str,
            "GET, PATCH, DELETE",
        ),
        (
            Method::GET,
            &format!("/v2/images/{MISSING}/tags/x") as &str,
            "PUT, DELETE",
        ),
        (
            Method::GET,
            &format!("/v2/images/{MISSING}/actions/deactivate") as &str,
            "POST",
        ),
        (
            Method::POST,
            &format!("/v2/images/{MISSING}/file") as &str,
            "GET, PUT",
        ),
        (Method::POST, "/v2/schemas/image", "GET"),
    ];
    for (method, path, allow) in cases {
        let resp = app.send(app.request(method.clone(), path)).await;
        assert_eq!(
            resp.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_eq!(resp.headers()["allow"], allow, "{method} {path}");
    }
}

#[tokio::test]
async fn unknown_v2_path_is_404() {
    let app = TestApp::spawn().await;
    for path in ["/v2/nothing", "/v2/images/x/y/z", "/v2/schemas"] {
        let resp = app.get(path).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
    }
}
