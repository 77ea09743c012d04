//! Interoperable image import: `PUT /v2/images/{id}/stage` and `POST /v2/images/{id}/import`
//! with glance-direct, web-download and copy-image; request validation and its messages, stores
//! selection, the import lock and the `os_glance_*` import properties. Every expectation was
//! checked against Glance 33 (`scripts/glance.sh`, same stores and filtering as
//! [`import_config`](crate::helpers::import_config)).

use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{
    assert_image_shape, expect_error, expect_json, md5_hex, new_uuid, sha512_hex, spawn_import_app,
    test_data, web_server, HeldServer, TestApp, OCTET,
};

/// A queued raw/bare image.
async fn queued(app: &TestApp, name: &str) -> String {
    let img = app
        .create_image(json!({"name": app.name(name), "disk_format": "raw",
                             "container_format": "bare"}))
        .await;
    img["id"].as_str().unwrap().to_owned()
}

/// Asserts a finished, successful import of `data` into `stores`.
fn assert_imported(img: &Value, data: &[u8], stores: &str) {
    assert_eq!(img["status"], "active", "{img}");
    assert_eq!(img["size"], data.len() as u64, "{img}");
    assert_eq!(img["virtual_size"], data.len() as u64, "{img}");
    assert_eq!(img["checksum"], md5_hex(data), "{img}");
    assert_eq!(img["os_hash_algo"], "sha512", "{img}");
    assert_eq!(img["os_hash_value"], sha512_hex(data), "{img}");
    assert_eq!(img["stores"], stores, "{img}");
    // Both properties stay on the image as empty strings once the import is done.
    assert_eq!(img["os_glance_importing_to_stores"], "", "{img}");
    assert_eq!(img["os_glance_failed_import"], "", "{img}");
    assert!(img.get("os_glance_import_task").is_none(), "{img}");
    assert_image_shape(img);
}

async fn download_is(app: &TestApp, id: &str, data: &[u8]) {
    let resp = app.download(id).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.bytes().await.unwrap();
    assert!(body[..] == data[..], "downloaded bytes differ");
}

/// An import error: the status and the message Glance gives (webob appends `<br /><br />`).
async fn import_error(app: &TestApp, id: &str, body: &Value, status: StatusCode, msg: &str) {
    let got = expect_error(app.import(id, body).await, status).await;
    assert!(
        got.starts_with(msg),
        "import {body}: message {got:?}, want {msg:?}"
    );
}

#[tokio::test]
async fn discovery_advertises_methods_and_stores() {
    let (app, _cheap) = spawn_import_app().await;
    let v = expect_json(app.get("/v2/info/import").await, StatusCode::OK).await;
    assert_eq!(
        v,
        json!({"import-methods": {"description": "Import methods available.", "type": "array",
                                  "value": ["glance-direct", "web-download", "copy-image"]}})
    );
    let v = expect_json(app.get("/v2/info/stores").await, StatusCode::OK).await;
    assert_eq!(
        v,
        json!({"stores": [{"id": "fast", "default": "true"}, {"id": "cheap"}]})
    );
    // Image creation advertises both.
    let resp = app
        .post_json(
            "/v2/images",
            &json!({"name": app.name("hdr"), "disk_format": "raw", "container_format": "bare"}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let h = resp.headers();
    assert_eq!(
        h["openstack-image-import-methods"],
        "glance-direct,web-download,copy-image"
    );
    let ids = h["openstack-image-store-ids"].to_str().unwrap();
    if app.is_external() {
        // A Glance worker that has run an import lists its reserved stores too
        // (`fast,cheap,os_glance_staging_store,os_glance_tasks_store`); a fresh one does not.
        let mut ids = ids.split(',');
        assert_eq!((ids.next(), ids.next()), (Some("fast"), Some("cheap")));
        assert!(ids.all(|s| s.starts_with("os_glance_")));
    } else {
        assert_eq!(ids, "fast,cheap");
    }
}

#[tokio::test]
async fn glance_direct_imports_the_staged_data() {
    let (app, _cheap) = spawn_import_app().await;
    let data = test_data(3000);
    let id = queued(&app, "gd").await;

    let resp = app.stage(&id, data.clone()).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(resp.bytes().await.unwrap().is_empty());
    let img = app.show(&id).await;
    assert_eq!(img["status"], "uploading", "{img}");
    assert_eq!(img["size"], 3000, "{img}");
    for f in ["checksum", "virtual_size", "os_hash_algo", "os_hash_value"] {
        assert!(img[f].is_null(), "{f} after stage: {img}");
    }
    assert!(img.get("stores").is_none(), "{img}");
    // Staged data is not image data yet.
    assert_eq!(app.download(&id).await.status(), StatusCode::NO_CONTENT);
    let msg = expect_error(app.put_file(&id, data.clone()).await, StatusCode::CONFLICT).await;
    assert!(
        msg.starts_with("Image status transition from uploading to saving is not allowed"),
        "{msg}"
    );
    let msg = expect_error(app.stage(&id, data.clone()).await, StatusCode::CONFLICT).await;
    assert!(
        msg.starts_with("Image status transition from uploading to uploading is not allowed"),
        "{msg}"
    );

    let body = json!({"method": {"name": "glance-direct"}});
    app.import_accepted(&id, &body).await;
    let (img, task) = app.wait_for_import(&id).await;
    assert_imported(&img, &data, "fast");
    download_is(&app, &id, &data).await;

    assert_eq!(task["type"], "api_image_import", "{task}");
    assert_eq!(task["status"], "success", "{task}");
    assert_eq!(task["image_id"], id.as_str());
    assert_eq!(task["result"], json!({"image_id": id}));
    assert_eq!(
        task["input"],
        json!({"image_id": id, "import_req": body, "backend": ["fast"]})
    );
    // Progress is reported in whole MiB copied.
    assert_eq!(task["message"], "Copied 0 MiB", "{task}");

    import_error(
        &app,
        &id,
        &body,
        StatusCode::CONFLICT,
        "Image with status active cannot be target for import",
    )
    .await;
}

#[tokio::test]
async fn stage_refusals() {
    let (app, _cheap) = spawn_import_app().await;
    let id = queued(&app, "stage").await;
    // Content-Type must be application/octet-stream (webob's explanation comes first).
    let resp = app
        .send(
            app.request(Method::PUT, &format!("/v2/images/{id}/stage"))
                .header(CONTENT_TYPE, "text/plain")
                .body(b"abc".to_vec()),
        )
        .await;
    let msg = expect_error(resp, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    assert_eq!(
        msg,
        "The request media type text/plain is not supported by this server.\n<br /><br />\n\
         Invalid content type text/plain"
    );
    // A size announced by the client must match.
    let resp = app
        .send(
            app.request(Method::PUT, &format!("/v2/images/{id}/stage"))
                .header(CONTENT_TYPE, OCTET)
                .header("x-openstack-image-size", "5")
                .body(test_data(10)),
        )
        .await;
    let msg = expect_error(resp, StatusCode::BAD_REQUEST).await;
    assert!(
        msg.starts_with("Size exceeds: expected 5 bytes, got 10 bytes"),
        "{msg}"
    );
    let img = app.show(&id).await;
    assert_eq!(img["status"], "queued", "{img}");
    assert!(img["size"].is_null(), "{img}");

    // Only queued images can be staged.
    let active = app
        .create_active_image(json!({"name": app.name("active")}), b"data")
        .await;
    let aid = active["id"].as_str().unwrap();
    let msg = expect_error(app.stage(aid, b"x".to_vec()).await, StatusCode::CONFLICT).await;
    assert!(
        msg.starts_with("Image status transition from active to uploading is not allowed"),
        "{msg}"
    );
    let unknown = new_uuid();
    let msg = expect_error(
        app.stage(&unknown, b"x".to_vec()).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert!(
        msg.starts_with(&format!("No image found with ID {unknown}")),
        "{msg}"
    );

    // An image without formats can be staged, but not imported.
    let bare = app
        .create_image(json!({"name": app.name("noformat")}))
        .await;
    let bid = bare["id"].as_str().unwrap();
    assert_eq!(
        app.stage(bid, b"xyz".to_vec()).await.status(),
        StatusCode::NO_CONTENT
    );
    import_error(
        &app,
        bid,
        &json!({"method": {"name": "glance-direct"}}),
        StatusCode::CONFLICT,
        "'container_format' needs to be set before import",
    )
    .await;
    let img = app.show(bid).await;
    assert_eq!(img["status"], "uploading", "{img}");
    assert!(img.get("os_glance_import_task").is_none(), "{img}");
}

#[tokio::test]
async fn import_request_validation() {
    let (app, _cheap) = spawn_import_app().await;
    let id = queued(&app, "validation").await;
    let web = "http://127.0.0.1:8000/x.raw";
    let bad = StatusCode::BAD_REQUEST;
    for (body, msg) in [
        (json!({}), "Import request requires a 'method' field."),
        (
            json!({"stores": ["fast"]}),
            "Import request requires a 'method' field.",
        ),
        (
            json!({"method": {"uri": web}}),
            "Import request requires a 'name' field.",
        ),
        (
            json!({"method": {"name": "bogus"}}),
            "Unknown import method name 'bogus'.",
        ),
        // Known to Glance, but not enabled here.
        (
            json!({"method": {"name": "glance-download"}}),
            "Unknown import method name 'glance-download'.",
        ),
        (
            json!({"method": {"name": "web-download", "uri": web}, "all_stores_must_succeed": "x"}),
            "'all_stores_must_succeed' must be boolean value only",
        ),
        (
            json!({"method": {"name": "web-download", "uri": web}, "all_stores": "yes"}),
            "'all_stores' must be boolean value only",
        ),
    ] {
        import_error(&app, &id, &body, bad, msg).await;
    }
    // No body, and a body that is not JSON.
    let msg = expect_error(
        app.post_empty(&format!("/v2/images/{id}/import")).await,
        bad,
    )
    .await;
    assert!(msg.starts_with("Body expected in request."), "{msg}");
    let resp = app
        .send(
            app.request(Method::POST, &format!("/v2/images/{id}/import"))
                .header(CONTENT_TYPE, "application/json")
                .body("{\"method\": "),
        )
        .await;
    let msg = expect_error(resp, bad).await;
    assert!(msg.starts_with("Malformed JSON in request body."), "{msg}");

    // Without an Accept header the error is plain text.
    let body = br#"{"method": {"name": "bogus"}}"#;
    let raw = app
        .raw_request(
            &format!(
                "POST /v2/images/{id}/import HTTP/1.1\r\nContent-Type: application/json\r\n\
                 Content-Length: {}",
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
    assert_eq!(
        raw.text(),
        "400 Bad Request\n\nUnknown import method name 'bogus'.\n\n   "
    );

    // Nothing happened to the image.
    let img = app.show(&id).await;
    assert_eq!(img["status"], "queued", "{img}");
    assert!(img.get("os_glance_import_task").is_none(), "{img}");
    assert!(app.image_tasks(&id).await.is_empty());
}

#[tokio::test]
async fn import_needs_the_right_status_and_formats() {
    let (app, _cheap) = spawn_import_app().await;
    let conflict = StatusCode::CONFLICT;
    let gd = json!({"method": {"name": "glance-direct"}});
    let copy = json!({"method": {"name": "copy-image"}, "stores": ["cheap"]});
    let web = json!({"method": {"name": "web-download", "uri": "http://127.0.0.1:8000/x.raw"}});

    let q = queued(&app, "queued").await;
    import_error(
        &app,
        &q,
        &gd,
        conflict,
        "Image needs to be staged before 'glance-direct' method can be used",
    )
    .await;
    import_error(
        &app,
        &q,
        &copy,
        conflict,
        "Only images with status active can be targeted for copying",
    )
    .await;

    let active = app
        .create_active_image(json!({"name": app.name("active")}), b"data")
        .await;
    let a = active["id"].as_str().unwrap();
    for body in [&gd, &web] {
        import_error(
            &app,
            a,
            body,
            conflict,
            "Image with status active cannot be target for import",
        )
        .await;
    }
    let deact = app
        .create_active_image(json!({"name": app.name("deact")}), b"data")
        .await;
    let d = deact["id"].as_str().unwrap();
    assert_eq!(
        app.post_empty(&format!("/v2/images/{d}/actions/deactivate"))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    import_error(
        &app,
        d,
        &copy,
        conflict,
        "Only images with status active can be targeted for copying",
    )
    .await;

    // Formats: container_format is checked first.
    let none = app.create_image(json!({"name": app.name("none")})).await;
    let n = none["id"].as_str().unwrap();
    import_error(
        &app,
        n,
        &web,
        conflict,
        "'container_format' needs to be set before import",
    )
    .await;
    let no_disk = app
        .create_image(json!({"name": app.name("nodisk"), "container_format": "bare"}))
        .await;
    import_error(
        &app,
        no_disk["id"].as_str().unwrap(),
        &web,
        conflict,
        "'disk_format' needs to be set before import",
    )
    .await;

    // Unknown and deleted images.
    let unknown = new_uuid();
    import_error(
        &app,
        &unknown,
        &gd,
        StatusCode::NOT_FOUND,
        &format!("No image found with ID {unknown}"),
    )
    .await;
    let gone = queued(&app, "gone").await;
    assert_eq!(
        app.delete(&format!("/v2/images/{gone}")).await.status(),
        StatusCode::NO_CONTENT
    );
    import_error(
        &app,
        &gone,
        &gd,
        StatusCode::NOT_FOUND,
        &format!("No image found with ID {gone}"),
    )
    .await;
}

#[tokio::test]
async fn import_store_selection_errors() {
    let (app, _cheap) = spawn_import_app().await;
    let id = queued(&app, "stores").await;
    let method = json!({"name": "web-download", "uri": "http://127.0.0.1:8000/x.raw"});
    let both =
        "All_stores parameter can't be used with x-image-meta-store header or stores parameter";
    let cases: Vec<(Value, Option<&str>, StatusCode, &str)> = vec![
        (
            json!({"method": method, "stores": ["nope"]}),
            None,
            StatusCode::CONFLICT,
            "Store for identifier nope not found",
        ),
        (
            json!({"method": method}),
            Some("nope"),
            StatusCode::CONFLICT,
            "Store for identifier nope not found",
        ),
        (
            json!({"method": method, "stores": ["cheap"]}),
            Some("cheap"),
            StatusCode::BAD_REQUEST,
            "Stores parameter and x-image-meta-store header can't be both specified",
        ),
        (
            json!({"method": method, "all_stores": true, "stores": ["cheap"]}),
            None,
            StatusCode::BAD_REQUEST,
            both,
        ),
        (
            json!({"method": method, "all_stores": true}),
            Some("cheap"),
            StatusCode::BAD_REQUEST,
            both,
        ),
    ];
    for (body, header, status, msg) in cases {
        let mut rb = app
            .request(Method::POST, &format!("/v2/images/{id}/import"))
            .json(&body);
        if let Some(store) = header {
            rb = rb.header("x-image-meta-store", store);
        }
        let got = expect_error(app.send(rb).await, status).await;
        assert!(got.starts_with(msg), "{body} {header:?}: {got:?}");
    }
    let img = app.show(&id).await;
    assert_eq!(img["status"], "queued", "{img}");
    assert!(img.get("os_glance_import_task").is_none(), "{img}");
}

#[tokio::test]
async fn web_download_imports_from_a_web_server() {
    let data = test_data(300_000);
    let (web, _dir) = web_server(&[("x.raw", &data)]).await;
    let (app, _cheap) = spawn_import_app().await;
    let uri = format!("{web}/x.raw");

    let id = queued(&app, "wd").await;
    let body = json!({"method": {"name": "web-download", "uri": uri}});
    app.import_accepted(&id, &body).await;
    let (img, task) = app.wait_for_import(&id).await;
    assert_imported(&img, &data, "fast");
    download_is(&app, &id, &data).await;
    assert_eq!(task["status"], "success", "{task}");
    assert_eq!(
        task["input"],
        json!({"image_id": id, "import_req": body, "backend": ["fast"]})
    );
    assert_eq!(task["result"], json!({"image_id": id}));

    // Into both stores at once, and into the store named by the header.
    let both = queued(&app, "wd-both").await;
    app.import_accepted(
        &both,
        &json!({"method": {"name": "web-download", "uri": uri}, "stores": ["fast", "cheap"]}),
    )
    .await;
    let hdr = queued(&app, "wd-hdr").await;
    let resp = app
        .send(
            app.request(Method::POST, &format!("/v2/images/{hdr}/import"))
                .header("x-image-meta-store", "cheap")
                .json(&json!({"method": {"name": "web-download", "uri": uri}})),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let (img, task) = app.wait_for_import(&both).await;
    assert_imported(&img, &data, "fast,cheap");
    assert_eq!(task["input"]["backend"], json!(["fast", "cheap"]));
    let (img, task) = app.wait_for_import(&hdr).await;
    assert_imported(&img, &data, "cheap");
    assert_eq!(task["input"]["backend"], json!(["cheap"]));
    download_is(&app, &hdr, &data).await;
}

#[tokio::test]
async fn web_download_uri_filtering() {
    let (app, _cheap) = spawn_import_app().await;
    let id = queued(&app, "filter").await;
    let prefix = "URI for web-download does not pass filtering: ";
    // Without a uri Glance names it `None`.
    let msg = expect_error(
        app.import(&id, &json!({"method": {"name": "web-download"}}))
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(msg.starts_with(prefix), "{msg}");
    for uri in [
        "file:///etc/passwd",
        "ftp://127.0.0.1/x.img",
        // Port 9 is in disallowed_ports.
        "http://127.0.0.1:9/x.img",
    ] {
        import_error(
            &app,
            &id,
            &json!({"method": {"name": "web-download", "uri": uri}}),
            StatusCode::BAD_REQUEST,
            &format!("{prefix}{uri}"),
        )
        .await;
    }
    assert!(app.image_tasks(&id).await.is_empty());
    assert!(app.show(&id).await.get("os_glance_import_task").is_none());
}

#[tokio::test]
async fn failed_web_download_returns_the_image_to_queued() {
    let data = test_data(5000);
    let (web, _dir) = web_server(&[("x.raw", &data)]).await;
    let (app, _cheap) = spawn_import_app().await;
    let id = queued(&app, "wd-404").await;
    app.import_accepted(
        &id,
        &json!({"method": {"name": "web-download", "uri": format!("{web}/missing.raw")}}),
    )
    .await;
    let (img, task) = app.wait_for_import(&id).await;
    assert_eq!(task["status"], "failure", "{task}");
    if app.is_external() {
        assert_eq!(
            task["message"], "Task failed due to Internal Error",
            "{task}"
        );
    } else {
        // Vela says why (a deliberate difference: Glance's message is always the same).
        let msg = task["message"].as_str().unwrap_or_default();
        assert!(msg.contains("404"), "{task}");
    }
    assert!(task["result"].is_null(), "{task}");
    assert_eq!(img["status"], "queued", "{img}");
    assert!(img["size"].is_null(), "{img}");
    assert!(img.get("stores").is_none(), "{img}");
    assert_eq!(img["os_glance_failed_import"], "fast", "{img}");
    assert_eq!(img["os_glance_importing_to_stores"], "", "{img}");

    // The image can be imported again; the failed store is forgotten.
    app.import_accepted(
        &id,
        &json!({"method": {"name": "web-download", "uri": format!("{web}/x.raw")}}),
    )
    .await;
    let (img, task) = app.wait_for_import(&id).await;
    assert_eq!(task["status"], "success", "{task}");
    assert_imported(&img, &data, "fast");
    assert_eq!(app.image_tasks(&id).await.len(), 2);
}

#[tokio::test]
async fn import_lock_is_held_while_importing() {
    let data = test_data(4096);
    let held = HeldServer::start(data.clone()).await;
    let (app, _cheap) = spawn_import_app().await;
    let id = queued(&app, "lock").await;
    let body = json!({"method": {"name": "web-download", "uri": held.url}});
    app.import_accepted(&id, &body).await;

    // The download has started and is held: the image is importing, locked by its task.
    let img = app
        .wait_for_image(&id, "import in flight", |img| {
            img["status"] == "importing" && held.hits() > 0
        })
        .await;
    let tasks = app.image_tasks(&id).await;
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0]["status"], "processing", "{tasks:?}");
    assert_eq!(img["os_glance_import_task"], tasks[0]["id"], "{img}");
    assert_eq!(img["os_glance_importing_to_stores"], "fast", "{img}");
    assert_eq!(img["os_glance_failed_import"], "", "{img}");

    // Nothing else may touch the image meanwhile.
    import_error(
        &app,
        &id,
        &body,
        StatusCode::CONFLICT,
        "Image needs to be in 'queued' state to use 'web-download' method",
    )
    .await;
    let msg = expect_error(app.stage(&id, b"x".to_vec()).await, StatusCode::CONFLICT).await;
    assert!(
        msg.starts_with("Image status transition from importing to uploading is not allowed"),
        "{msg}"
    );
    let msg = expect_error(app.put_file(&id, b"x".to_vec()).await, StatusCode::CONFLICT).await;
    assert!(
        msg.starts_with("Image status transition from importing to saving is not allowed"),
        "{msg}"
    );
    // The import properties are reserved.
    let msg = expect_error(
        app.patch(
            &id,
            crate::helpers::PATCH_V21,
            &json!([{"op": "remove", "path": "/os_glance_import_task"}]),
        )
        .await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(
        msg.starts_with("Attribute 'os_glance_import_task' is reserved."),
        "{msg}"
    );

    held.release();
    let (img, task) = app.wait_for_import(&id).await;
    assert_eq!(task["status"], "success", "{task}");
    assert_imported(&img, &data, "fast");
}

#[tokio::test]
async fn copy_image_adds_a_store() {
    let (app, cheap) = spawn_import_app().await;
    let data = test_data(5000);
    let img = app
        .create_active_image(json!({"name": app.name("copy")}), &data)
        .await;
    let id = img["id"].as_str().unwrap().to_owned();
    assert_eq!(img["stores"], "fast");
    let checksum = img["checksum"].clone();

    let body = json!({"method": {"name": "copy-image"}, "stores": ["cheap"]});
    app.import_accepted(&id, &body).await;
    // The image stays active while it is copied.
    let deadline = std::time::Instant::now() + crate::helpers::IMPORT_DEADLINE;
    let (img, task) = loop {
        let img = app.show(&id).await;
        assert_eq!(img["status"], "active", "during the copy: {img}");
        if img["stores"] == "fast,cheap" && img.get("os_glance_import_task").is_none() {
            break app.wait_for_import(&id).await;
        }
        assert!(std::time::Instant::now() < deadline, "copy stuck: {img}");
        tokio::time::sleep(crate::helpers::POLL_INTERVAL).await;
    };
    assert_eq!(img["checksum"], checksum);
    assert_imported(&img, &data, "fast,cheap");
    assert_eq!(task["status"], "success", "{task}");
    assert_eq!(
        task["input"],
        json!({"image_id": id, "import_req": body, "backend": ["cheap"]})
    );
    if !app.is_external() {
        // Vela only (Glance's store directories are not known here): the data is in `cheap`.
        let copies = std::fs::read_dir(cheap.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(&id))
            .count();
        assert_eq!(copies, 1, "no copy of {id} in the cheap store");
    }
    download_is(&app, &id, &data).await;

    // Copying again to a store that holds the image is refused; all_stores has nothing to do.
    import_error(
        &app,
        &id,
        &body,
        StatusCode::BAD_REQUEST,
        "Image is already present at store 'cheap'",
    )
    .await;
    // Without stores the default store is meant.
    import_error(
        &app,
        &id,
        &json!({"method": {"name": "copy-image"}}),
        StatusCode::BAD_REQUEST,
        "Image is already present at store 'fast'",
    )
    .await;
    app.import_accepted(
        &id,
        &json!({"method": {"name": "copy-image"}, "all_stores": true}),
    )
    .await;
    assert_eq!(
        app.image_tasks(&id).await.len(),
        1,
        "no task for a no-op copy"
    );
    let img = app.show(&id).await;
    assert!(img.get("os_glance_import_task").is_none(), "{img}");
    assert_eq!(img["stores"], "fast,cheap");
}

#[tokio::test]
async fn copy_image_to_all_stores_copies_to_the_missing_ones() {
    let (app, _cheap) = spawn_import_app().await;
    let data = test_data(7000);
    let img = app
        .create_active_image(json!({"name": app.name("copy-all")}), &data)
        .await;
    let id = img["id"].as_str().unwrap();
    let resp = app
        .send(
            app.request(Method::POST, &format!("/v2/images/{id}/import"))
                .header("x-image-meta-store", "nope")
                .json(&json!({"method": {"name": "copy-image"}})),
        )
        .await;
    let msg = expect_error(resp, StatusCode::CONFLICT).await;
    assert!(
        msg.starts_with("Store for identifier nope not found"),
        "{msg}"
    );

    let body = json!({"method": {"name": "copy-image"}, "all_stores": true,
                      "all_stores_must_succeed": false});
    app.import_accepted(id, &body).await;
    let (img, task) = app.wait_for_import(id).await;
    assert_eq!(task["status"], "success", "{task}");
    // The stores already holding the image are left out of the task.
    assert_eq!(task["input"]["backend"], json!(["cheap"]), "{task}");
    assert_imported(&img, &data, "fast,cheap");
}
