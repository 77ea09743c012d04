//! PATCH /v2/images/{id}: samples 11, 12, 18, 20.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{
    assert_image_shape, expect_error, expect_json, keys, sorted_strings, test_data, TestApp,
    PATCH_V20, PATCH_V21,
};

async fn new_image(app: &TestApp, extra: Value) -> (String, Value) {
    let mut body = json!({"name": app.name("p"), "disk_format": "raw", "container_format": "bare"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let img = app.create_image(body).await;
    (img["id"].as_str().unwrap().to_owned(), img)
}

/// The image minus `updated_at` (which Glance may bump on any save).
fn stable(img: &Value) -> Value {
    let mut v = img.clone();
    v.as_object_mut().unwrap().remove("updated_at");
    v
}

#[tokio::test]
async fn patch_v21_replace_name_and_add_property() {
    let app = TestApp::spawn().await;
    let (id, before) = new_image(&app, json!({})).await;
    let new_name = app.name("renamed");
    let img = app
        .patch_ok(
            &id,
            &json!([{"op": "replace", "path": "/name", "value": new_name},
                    {"op": "add", "path": "/color", "value": "blue"}]),
        )
        .await;
    assert_image_shape(&img);
    assert_eq!(img["name"], new_name.as_str());
    assert_eq!(img["color"], "blue");
    let mut want = keys(&before);
    want.push("color".into());
    want.sort();
    assert_eq!(keys(&img), want);
    assert_eq!(app.show(&id).await, img);
}

#[tokio::test]
async fn patch_v20_media_type() {
    let app = TestApp::spawn().await;
    let (id, _) = new_image(&app, json!({"kernel": "k1"})).await;
    let new_name = app.name("again");
    let resp = app
        .patch(
            &id,
            PATCH_V20,
            &json!([{"replace": "/name", "value": new_name},
                    {"add": "/color", "value": "red"},
                    {"remove": "/kernel"}]),
        )
        .await;
    let img = expect_json(resp, StatusCode::OK).await;
    assert_eq!(img["name"], new_name.as_str());
    assert_eq!(img["color"], "red");
    assert!(img.get("kernel").is_none(), "{img}");
    // v2.1 style operation objects are not valid in the 2.0 media type and vice versa.
    let resp = app
        .patch(
            &id,
            PATCH_V20,
            &json!([{"op": "replace", "path": "/name", "value": "x"}]),
        )
        .await;
    expect_error(resp, StatusCode::BAD_REQUEST).await;
    let resp = app
        .patch(&id, PATCH_V21, &json!([{"replace": "/name", "value": "x"}]))
        .await;
    expect_error(resp, StatusCode::BAD_REQUEST).await;
    // Several operation keys in one draft-04 object.
    let resp = app
        .patch(
            &id,
            PATCH_V20,
            &json!([{"replace": "/name", "add": "/name", "value": "x"}]),
        )
        .await;
    expect_error(resp, StatusCode::BAD_REQUEST).await;
    assert_eq!(app.show(&id).await["name"], new_name.as_str());
}

#[tokio::test]
async fn patch_v20_add_existing_property_is_409() {
    let app = TestApp::spawn().await;
    let (id, _) = new_image(&app, json!({"color": "blue"})).await;
    let resp = app
        .patch(&id, PATCH_V20, &json!([{"add": "/color", "value": "red"}]))
        .await;
    expect_error(resp, StatusCode::CONFLICT).await;
    // v2.1 add overwrites.
    let img = app
        .patch_ok(
            &id,
            &json!([{"op": "add", "path": "/color", "value": "red"}]),
        )
        .await;
    assert_eq!(img["color"], "red");
}

#[tokio::test]
async fn patch_custom_properties_add_replace_remove() {
    let app = TestApp::spawn().await;
    let (id, _) = new_image(&app, json!({"os_distro": "cirros"})).await;
    let img = app
        .patch_ok(
            &id,
            &json!([{"op": "add", "path": "/hw_disk_bus", "value": "scsi"},
                    {"op": "replace", "path": "/os_distro", "value": "ubuntu"},
                    {"op": "add", "path": "/empty", "value": ""}]),
        )
        .await;
    assert_eq!(img["hw_disk_bus"], "scsi");
    assert_eq!(img["os_distro"], "ubuntu");
    assert_eq!(img["empty"], "");
    let img = app
        .patch_ok(&id, &json!([{"op": "remove", "path": "/hw_disk_bus"}]))
        .await;
    assert!(img.get("hw_disk_bus").is_none(), "{img}");
    assert_eq!(img["os_distro"], "ubuntu");
    let shown = app.show(&id).await;
    assert!(shown.get("hw_disk_bus").is_none());
    assert_eq!(shown["empty"], "");
}

#[tokio::test]
async fn patch_missing_custom_property_is_409() {
    let app = TestApp::spawn().await;
    let (id, _) = new_image(&app, json!({})).await;
    let resp = app
        .patch(
            &id,
            PATCH_V21,
            &json!([{"op": "remove", "path": "/nothere"}]),
        )
        .await;
    expect_error(resp, StatusCode::CONFLICT).await;
    let resp = app
        .patch(
            &id,
            PATCH_V21,
            &json!([{"op": "replace", "path": "/nothere", "value": "x"}]),
        )
        .await;
    expect_error(resp, StatusCode::CONFLICT).await;
}

#[tokio::test]
async fn patch_base_attributes() {
    let app = TestApp::spawn().await;
    let (id, _) = new_image(&app, json!({"tags": ["old"]})).await;
    let img = app
        .patch_ok(
            &id,
            &json!([
                {"op": "replace", "path": "/min_ram", "value": 1024},
                {"op": "replace", "path": "/min_disk", "value": 20},
                {"op": "replace", "path": "/visibility", "value": "private"},
                {"op": "replace", "path": "/protected", "value": true},
                {"op": "replace", "path": "/os_hidden", "value": true},
                {"op": "replace", "path": "/tags", "value": ["b", "a", "b"]},
                {"op": "replace", "path": "/disk_format", "value": "qcow2"},
                {"op": "replace", "path": "/container_format", "value": "ovf"},
            ]),
        )
        .await;
    assert_eq!(img["min_ram"], 1024);
    assert_eq!(img["min_disk"], 20);
    assert_eq!(img["visibility"], "private");
    assert_eq!(img["protected"], true);
    assert_eq!(img["os_hidden"], true);
    assert_eq!(sorted_strings(&img["tags"]), ["a", "b"]);
    assert_eq!(img["disk_format"], "qcow2");
    assert_eq!(img["container_format"], "ovf");
    // `add` on a base attribute sets it too (v2.1).
    let img = app
        .patch_ok(
            &id,
            &json!([{"op": "add", "path": "/name", "value": null},
                    {"op": "add", "path": "/protected", "value": false},
                    {"op": "replace", "path": "/visibility", "value": "community"}]),
        )
        .await;
    assert!(img["name"].is_null());
    assert_eq!(img["protected"], false);
    assert_eq!(img["visibility"], "community");
    assert_eq!(stable(&app.show(&id).await), stable(&img));
}

#[tokio::test]
async fn patch_schema_violations_are_400() {
    let app = TestApp::spawn().await;
    let (id, before) = new_image(&app, json!({})).await;
    let cases = [
        json!([{"op": "replace", "path": "/min_ram", "value": -1}]),
        json!([{"op": "replace", "path": "/min_ram", "value": "1"}]),
        json!([{"op": "replace", "path": "/name", "value": "n".repeat(256)}]),
        json!([{"op": "replace", "path": "/visibility", "value": "everyone"}]),
        json!([{"op": "replace", "path": "/protected", "value": "yes"}]),
        json!([{"op": "add", "path": "/custom", "value": 5}]),
        json!([{"op": "replace", "path": "/tags", "value": "t"}]),
        json!([{"op": "replace", "path": "/disk_format", "value": "floppy"}]),
        json!([{"op": "test", "path": "/name", "value": "x"}]),
        json!([{"op": "move", "from": "/name", "path": "/x"}]),
        json!([{"path": "/name", "value": "x"}]),
        json!([{"op": "replace", "value": "x"}]),
        json!([{"op": "replace", "path": "/name"}]),
        json!([{"op": "add", "path": "/custom"}]),
        json!({"op": "replace", "path": "/name", "value": "x"}),
        json!(["replace"]),
    ];
    for body in cases {
        let resp = app.patch(&id, PATCH_V21, &body).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "patch {body}");
    }
    let resp = app
        .send(
            app.request(Method::PATCH, &format!("/v2/images/{id}"))
                .header("content-type", PATCH_V21)
                .body("[{"),
        )
        .await;
    expect_error(resp, StatusCode::BAD_REQUEST).await;
    assert_eq!(stable(&app.show(&id).await), stable(&before));
}

#[tokio::test]
async fn patch_read_only_path_is_403() {
    let app = TestApp::spawn().await;
    let (id, before) = new_image(&app, json!({})).await;
    // Exact plain-text body (sample 20): ask for it without Accept.
    let body =
        serde_json::to_vec(&json!([{"op": "replace", "path": "/status", "value": "queued"}]))
            .unwrap();
    let raw = app
        .raw_request(
            &format!(
                "PATCH /v2/images/{id} HTTP/1.1\r\nContent-Type: {PATCH_V21}\r\nContent-Length: {}",
                body.len()
            ),
            &body,
        )
        .await;
    assert_eq!(raw.status, 403);
    assert_eq!(
        raw.header("content-type"),
        Some("text/plain; charset=UTF-8")
    );
    assert_eq!(
        raw.text(),
        "403 Forbidden\n\nAttribute 'status' is read-only.\n\n   "
    );
    for (op, path) in [
        ("replace", "/status"),
        ("add", "/status"),
        ("remove", "/status"),
        ("replace", "/id"),
        ("replace", "/checksum"),
        ("replace", "/size"),
        ("replace", "/virtual_size"),
        ("replace", "/os_hash_algo"),
        ("replace", "/os_hash_value"),
        ("replace", "/created_at"),
        ("replace", "/updated_at"),
        ("replace", "/self"),
        ("replace", "/file"),
        ("replace", "/schema"),
        ("replace", "/direct_url"),
        ("add", "/os_glance_foo"),
        ("add", "/deleted"),
        ("add", "/location"),
    ] {
        let value = match path {
            "/size" | "/virtual_size" => json!(1),
            _ => json!("x"),
        };
        let body = if op == "remove" {
            json!([{ "op": op, "path": path }])
        } else {
            json!([{ "op": op, "path": path, "value": value }])
        };
        let resp = app.patch(&id, PATCH_V21, &body).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{op} {path}");
    }
    let resp = app
        .patch(
            &id,
            PATCH_V21,
            &json!([{"op": "replace", "path": "/status", "value": "x"}]),
        )
        .await;
    let msg = expect_error(resp, StatusCode::FORBIDDEN).await;
    assert_eq!(msg, "Attribute 'status' is read-only.<br /><br />\n\n\n");
    assert_eq!(stable(&app.show(&id).await), stable(&before));
}

#[tokio::test]
async fn patch_remove_base_attribute_is_403() {
    let app = TestApp::spawn().await;
    let (id, _) = new_image(&app, json!({})).await;
    for path in [
        "/name",
        "/visibility",
        "/protected",
        "/os_hidden",
        "/min_ram",
        "/min_disk",
        "/disk_format",
        "/container_format",
        "/tags",
        "/owner",
    ] {
        let resp = app
            .patch(&id, PATCH_V21, &json!([{"op": "remove", "path": path}]))
            .await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "remove {path}");
    }
}

#[tokio::test]
async fn patch_wrong_media_type_is_415_with_accept_patch() {
    let app = TestApp::spawn().await;
    let (id, _) = new_image(&app, json!({})).await;
    for ct in [
        "application/json",
        "application/json-patch+json",
        "text/plain",
    ] {
        let resp = app
            .patch(
                &id,
                ct,
                &json!([{"op": "replace", "path": "/name", "value": "x"}]),
            )
            .await;
        assert_eq!(
            resp.headers()["accept-patch"],
            "application/openstack-images-v2.0-json-patch, application/openstack-images-v2.1-json-patch"
        );
        let msg = expect_error(resp, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
        assert!(
            msg.contains("Image PATCH expects Content-Type one of"),
            "{msg}"
        );
    }
    let resp = app
        .send(
            app.request(Method::PATCH, &format!("/v2/images/{id}"))
                .body(r#"[{"op": "replace", "path": "/name", "value": "x"}]"#),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Exact plain-text body (sample 18).
    let body = br#"[{"op": "replace", "path": "/name", "value": "x"}]"#;
    let raw = app
        .raw_request(
            &format!(
                "PATCH /v2/images/{id} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}",
                body.len()
            ),
            body,
        )
        .await;
    assert_eq!(raw.status, 415);
    assert_eq!(
        raw.header("content-type"),
        Some("text/plain; charset=UTF-8")
    );
    assert_eq!(
        raw.text(),
        "415 Unsupported Media Type\n\nThe request media type application/json is not supported \
         by this server. \n\n Image PATCH expects Content-Type one of: \
         application/openstack-images-v2.0-json-patch, \
         application/openstack-images-v2.1-json-patch"
    );
}

#[tokio::test]
async fn patch_bad_json_pointer_is_400() {
    let app = TestApp::spawn().await;
    let (id, _) = new_image(&app, json!({})).await;
    for path in [
        "name", "/name/", "/a//b", "/a/ /b", "/tags/-", "/name/x", "", "/a~2b", "/a~",
    ] {
        let resp = app
            .patch(
                &id,
                PATCH_V21,
                &json!([{"op": "replace", "path": path, "value": "x"}]),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "path {path:?}");
    }
    // "/" is the (absent) custom property named "": replace → 409.
    let resp = app
        .patch(
            &id,
            PATCH_V21,
            &json!([{"op": "replace", "path": "/", "value": "x"}]),
        )
        .await;
    expect_error(resp, StatusCode::CONFLICT).await;
    // `~1` and `~0` are valid escapes (custom property names with / and ~).
    let img = app
        .patch_ok(
            &id,
            &json!([{"op": "add", "path": "/a~1b", "value": "slash"},
                    {"op": "add", "path": "/c~0d", "value": "tilde"}]),
        )
        .await;
    assert_eq!(img["a/b"], "slash");
    assert_eq!(img["c~d"], "tilde");
    // Quirk (Glance strips every leading '/'; segments are whitespace-trimmed).
    let new_name = app.name("slashes");
    let img = app
        .patch_ok(
            &id,
            &json!([{"op": "replace", "path": "//name", "value": new_name},
                    {"op": "add", "path": "/ spaced ", "value": "trimmed"}]),
        )
        .await;
    assert_eq!(img["name"], new_name.as_str());
    assert_eq!(img["spaced"], "trimmed");
}

#[tokio::test]
async fn patch_is_atomic() {
    let app = TestApp::spawn().await;
    let (id, before) = new_image(&app, json!({"keep": "me"})).await;
    let cases = [
        (
            json!([{"op": "replace", "path": "/name", "value": "changed"},
                   {"op": "add", "path": "/extra", "value": "x"},
                   {"op": "remove", "path": "/nothere"}]),
            StatusCode::CONFLICT,
        ),
        (
            json!([{"op": "remove", "path": "/keep"},
                   {"op": "replace", "path": "/status", "value": "active"}]),
            StatusCode::FORBIDDEN,
        ),
        (
            json!([{"op": "replace", "path": "/min_ram", "value": 5},
                   {"op": "replace", "path": "/min_disk", "value": -5}]),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (body, status) in cases {
        let resp = app.patch(&id, PATCH_V21, &body).await;
        assert_eq!(resp.status(), status, "{body}");
        assert_eq!(stable(&app.show(&id).await), stable(&before), "{body}");
    }
}

#[tokio::test]
async fn patch_formats_after_upload_is_403() {
    let app = TestApp::spawn().await;
    let img = app
        .create_active_image(json!({"name": app.name("act")}), &test_data(100))
        .await;
    let id = img["id"].as_str().unwrap();
    for (path, value) in [("/disk_format", "qcow2"), ("/container_format", "ovf")] {
        let resp = app
            .patch(
                id,
                PATCH_V21,
                &json!([{"op": "replace", "path": path, "value": value}]),
            )
            .await;
        expect_error(resp, StatusCode::FORBIDDEN).await;
    }
    // Other attributes stay editable on an active image.
    let img2 = app
        .patch_ok(
            id,
            &json!([{"op": "replace", "path": "/min_ram", "value": 64}]),
        )
        .await;
    assert_eq!(img2["min_ram"], 64);
    assert_eq!(img2["disk_format"], "raw");
    assert_eq!(img2["checksum"], img["checksum"]);
}

#[tokio::test]
async fn patch_empty_is_200() {
    let app = TestApp::spawn().await;
    let (id, before) = new_image(&app, json!({"k": "v"})).await;
    let img = app.patch_ok(&id, &json!([])).await;
    assert_image_shape(&img);
    assert_eq!(stable(&img), stable(&before));
}

#[tokio::test]
async fn patch_unknown_image_is_404() {
    let app = TestApp::spawn().await;
    let resp = app
        .patch(
            "00000000-0000-0000-0000-000000000000",
            PATCH_V21,
            &json!([{"op": "replace", "path": "/name", "value": "x"}]),
        )
        .await;
    expect_error(resp, StatusCode::NOT_FOUND).await;
}
