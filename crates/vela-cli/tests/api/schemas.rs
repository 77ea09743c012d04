//! Schema documents (sample 03), `/v2/info/import` (sample 04) and the
//! request-id header.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{expect_json, is_request_id, new_uuid, TestApp};

async fn check_schema(name: &str, expected: &str) {
    let app = TestApp::spawn().await;
    let resp = app.get(&format!("/v2/schemas/{name}")).await;
    let got = expect_json(resp, StatusCode::OK).await;
    let want: Value = serde_json::from_str(expected).unwrap();
    assert_eq!(got, want, "schema {name} differs from Glance's");
}

#[tokio::test]
async fn schema_image() {
    check_schema("image", include_str!("fixtures/schema-image.json")).await;
}

#[tokio::test]
async fn schema_images() {
    check_schema("images", include_str!("fixtures/schema-images.json")).await;
}

#[tokio::test]
async fn schema_member() {
    check_schema("member", include_str!("fixtures/schema-member.json")).await;
}

#[tokio::test]
async fn schema_members() {
    check_schema("members", include_str!("fixtures/schema-members.json")).await;
}

#[tokio::test]
async fn schema_task() {
    check_schema("task", include_str!("fixtures/schema-task.json")).await;
}

#[tokio::test]
async fn schema_tasks() {
    check_schema("tasks", include_str!("fixtures/schema-tasks.json")).await;
}

#[tokio::test]
async fn unknown_schema_is_404() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.status_of("/v2/schemas/nope").await,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn info_import() {
    // Glance's default methods.
    let app = TestApp::spawn().await;
    check_import_document(&app).await;
    if app.is_external() {
        return;
    }
    // The configured list is what clients see; with none, no header at all.
    let app =
        TestApp::spawn_with_config("[images]\nenabled_import_methods = [\"web-download\"]\n").await;
    let got = expect_json(app.get("/v2/info/import").await, StatusCode::OK).await;
    assert_eq!(got["import-methods"]["value"], json!(["web-download"]));
    let resp = app
        .post_json("/v2/images", &json!({"name": app.name("im")}))
        .await;
    assert_eq!(
        resp.headers()["openstack-image-import-methods"],
        "web-download"
    );
    let id = expect_json(resp, StatusCode::CREATED).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Staging needs glance-direct.
    let resp = app
        .send(
            app.request(reqwest::Method::PUT, &format!("/v2/images/{id}/stage"))
                .header("content-type", "application/octet-stream")
                .body("x"),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let app = TestApp::spawn_with_config("[images]\nenabled_import_methods = []\n").await;
    let resp = app
        .post_json("/v2/images", &json!({"name": app.name("im")}))
        .await;
    assert!(resp
        .headers()
        .get("openstack-image-import-methods")
        .is_none());
}

async fn check_import_document(app: &TestApp) {
    let resp = app.get("/v2/info/import").await;
    let got = expect_json(resp, StatusCode::OK).await;
    assert_eq!(
        got,
        json!({
            "import-methods": {
                "description": "Import methods available.",
                "type": "array",
                "value": ["glance-direct", "web-download", "copy-image"]
            }
        })
    );
}

#[tokio::test]
async fn request_id_on_success_and_error_responses() {
    let app = TestApp::spawn().await;
    let mut seen = Vec::new();
    for path in [
        "/v2/images",
        "/v2/schemas/image",
        "/v2/info/import",
        "/v2/images/00000000-0000-0000-0000-000000000000",
        "/v2/images?sort_key=nope",
    ] {
        let resp = app.get(path).await;
        let rid = resp.headers()["x-openstack-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(is_request_id(&rid), "{path}: {rid}");
        seen.push(rid);
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        seen.len(),
        "request ids must be fresh: {seen:?}"
    );
}

/// Glance's keystone context middleware reuses an incoming request id
/// (prefixing `req-` when missing; > 64 chars → 431). Glance's noauth
/// `unauthenticated-context` ignores the header, so this is Vela-only.
#[tokio::test]
async fn incoming_request_id_is_echoed() {
    let app = TestApp::spawn().await;
    if app.is_external() {
        return;
    }
    let rid = format!("req-{}", new_uuid());
    for (method, path) in [
        (Method::GET, "/v2/images"),
        (
            Method::GET,
            "/v2/images/00000000-0000-0000-0000-000000000000",
        ),
    ] {
        let resp = app
            .send(
                app.request(method, path)
                    .header("X-Openstack-Request-ID", &rid),
            )
            .await;
        assert_eq!(
            resp.headers()["x-openstack-request-id"],
            rid.as_str(),
            "{path}"
        );
    }
    let bare = new_uuid();
    let resp = app
        .send(
            app.request(Method::GET, "/v2/images")
                .header("X-Openstack-Request-ID", &bare),
        )
        .await;
    assert_eq!(
        resp.headers()["x-openstack-request-id"],
        format!("req-{bare}").as_str()
    );
    let resp = app
        .request(Method::GET, "/v2/images")
        .header("X-Openstack-Request-ID", "x".repeat(65))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
}
