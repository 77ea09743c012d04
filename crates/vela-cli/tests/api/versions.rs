//! Version discovery: `/` (300), `/versions` (200), unknown prefixes (300),
//! accepted `v2.N` URL prefixes (samples 01, 02).

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{expect_json, TestApp};

/// Order and statuses exactly as Glance 33 lists them (no cache, single store).
const VERSIONS: &[(&str, &str)] = &[
    ("v2.15", "SUPPORTED"),
    ("v2.9", "SUPPORTED"),
    ("v2.17", "CURRENT"),
    ("v2.7", "SUPPORTED"),
    ("v2.6", "SUPPORTED"),
    ("v2.5", "SUPPORTED"),
    ("v2.4", "SUPPORTED"),
    ("v2.3", "SUPPORTED"),
    ("v2.2", "SUPPORTED"),
    ("v2.1", "SUPPORTED"),
    ("v2.0", "SUPPORTED"),
];

fn expected_document(app: &TestApp) -> Value {
    let href = format!("{}/v2/", app.url);
    let versions: Vec<Value> = VERSIONS
        .iter()
        .map(|(id, status)| {
            json!({"id": id, "status": status, "links": [{"rel": "self", "href": href}]})
        })
        .collect();
    json!({ "versions": versions })
}

fn check_document(app: &TestApp, doc: &Value) {
    let versions = doc["versions"].as_array().unwrap();
    let ids: Vec<&str> = versions.iter().map(|v| v["id"].as_str().unwrap()).collect();
    for absent in [
        "v2.8", "v2.10", "v2.11", "v2.12", "v2.13", "v2.14", "v2.16", "v2.18",
    ] {
        assert!(!ids.contains(&absent), "{absent} listed: {ids:?}");
    }
    let current: Vec<&str> = versions
        .iter()
        .filter(|v| v["status"] == "CURRENT")
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(current, ["v2.17"]);
    for v in versions {
        let href = v["links"][0]["href"].as_str().unwrap();
        assert!(href.ends_with("/v2/"), "{href}");
    }
    assert_eq!(*doc, expected_document(app));
}

#[tokio::test]
async fn root_is_300_with_version_document() {
    let app = TestApp::spawn().await;
    let resp = app.get("/").await;
    let doc = expect_json(resp, StatusCode::MULTIPLE_CHOICES).await;
    check_document(&app, &doc);
}

#[tokio::test]
async fn versions_is_200_with_version_document() {
    let app = TestApp::spawn().await;
    let resp = app.get("/versions").await;
    let doc = expect_json(resp, StatusCode::OK).await;
    check_document(&app, &doc);
}

#[tokio::test]
async fn unknown_prefixes_get_300() {
    let app = TestApp::spawn().await;
    for path in [
        "/v1/images",
        "/v1",
        "/foo",
        "/v3/images",
        "/v2.8/images",
        "/v2.18/images",
        "/images",
    ] {
        let resp = app.get(path).await;
        let doc = expect_json(resp, StatusCode::MULTIPLE_CHOICES).await;
        assert_eq!(doc, expected_document(&app), "{path}");
    }
}

#[tokio::test]
async fn minor_version_prefixes_route_to_v2() {
    let app = TestApp::spawn().await;
    for prefix in [
        "v2", "v2.0", "v2.1", "v2.5", "v2.7", "v2.9", "v2.15", "v2.17",
    ] {
        let resp = app.get(&format!("/{prefix}/schemas/member")).await;
        let schema = expect_json(resp, StatusCode::OK).await;
        assert_eq!(schema["name"], "member", "{prefix}");
    }
}
