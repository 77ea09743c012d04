//! Tags, deactivate/reactivate, delete, and per-persona authorization
//! (samples 25, 26, 27).

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{
    expect_error, expect_json, sorted_strings, test_data, Persona, TestApp, PATCH_V21,
};

fn id_of(img: &Value) -> String {
    img["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn tags_put_and_delete() {
    let app = TestApp::spawn().await;
    let img = app
        .create_image(json!({"name": app.name("tags"), "tags": ["t1"]}))
        .await;
    let id = id_of(&img);
    for _ in 0..2 {
        let resp = app.put_empty(&format!("/v2/images/{id}/tags/t2")).await;
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        assert!(resp.bytes().await.unwrap().is_empty());
    }
    assert_eq!(sorted_strings(&app.show(&id).await["tags"]), ["t1", "t2"]);
    // URL-decoded tag names.
    let resp = app
        .put_empty(&format!("/v2/images/{id}/tags/with%20space"))
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        sorted_strings(&app.show(&id).await["tags"]),
        ["t1", "t2", "with space"]
    );
    let resp = app.delete(&format!("/v2/images/{id}/tags/t1")).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = app.delete(&format!("/v2/images/{id}/tags/t1")).await;
    expect_error(resp, StatusCode::NOT_FOUND).await;
    let resp = app.delete(&format!("/v2/images/{id}/tags/never")).await;
    expect_error(resp, StatusCode::NOT_FOUND).await;
    assert_eq!(
        sorted_strings(&app.show(&id).await["tags"]),
        ["t2", "with space"]
    );
    // Too long.
    let long = "x".repeat(256);
    let resp = app.put_empty(&format!("/v2/images/{id}/tags/{long}")).await;
    expect_error(resp, StatusCode::BAD_REQUEST).await;
    // Unknown image.
    let resp = app
        .put_empty("/v2/images/00000000-0000-0000-0000-000000000000/tags/x")
        .await;
    expect_error(resp, StatusCode::NOT_FOUND).await;
    let resp = app
        .delete("/v2/images/00000000-0000-0000-0000-000000000000/tags/x")
        .await;
    expect_error(resp, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn tags_on_active_image() {
    let app = TestApp::spawn().await;
    let img = app
        .create_active_image(json!({"name": app.name("tact")}), &test_data(10))
        .await;
    let id = id_of(&img);
    let resp = app.put_empty(&format!("/v2/images/{id}/tags/later")).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(sorted_strings(&app.show(&id).await["tags"]), ["later"]);
}

#[tokio::test]
async fn deactivate_and_reactivate() {
    let app = TestApp::spawn().await;
    let data = test_data(64);
    let img = app
        .create_active_image(json!({"name": app.name("deact")}), &data)
        .await;
    let id = id_of(&img);
    let deact = format!("/v2/images/{id}/actions/deactivate");
    let react = format!("/v2/images/{id}/actions/reactivate");
    for _ in 0..2 {
        let resp = app.post_empty(&deact).await;
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        assert!(resp.bytes().await.unwrap().is_empty());
        assert_eq!(app.show(&id).await["status"], "deactivated");
    }
    // Still listed.
    let l = app.list(&format!("name={}", app.name("deact"))).await;
    assert_eq!(l["images"][0]["status"], "deactivated");
    // The (header-less) admin can still download.
    let resp = app.download(&id).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.bytes().await.unwrap()[..] == data[..]);
    for _ in 0..2 {
        let resp = app.post_empty(&react).await;
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        assert_eq!(app.show(&id).await["status"], "active");
    }
    assert_eq!(app.download(&id).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn deactivate_queued_is_403() {
    let app = TestApp::spawn().await;
    let img = app.create_image(json!({"name": app.name("q")})).await;
    let id = id_of(&img);
    for action in ["deactivate", "reactivate"] {
        let resp = app
            .post_empty(&format!("/v2/images/{id}/actions/{action}"))
            .await;
        expect_error(resp, StatusCode::FORBIDDEN).await;
    }
    assert_eq!(app.show(&id).await["status"], "queued");
    for action in ["deactivate", "reactivate"] {
        let resp = app
            .post_empty(&format!(
                "/v2/images/00000000-0000-0000-0000-000000000000/actions/{action}"
            ))
            .await;
        expect_error(resp, StatusCode::NOT_FOUND).await;
    }
    // Unknown action.
    let resp = app
        .post_empty(&format!("/v2/images/{id}/actions/explode"))
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn deactivated_download_forbidden_for_non_admin() {
    let app = TestApp::spawn().await;
    if app.is_external() {
        return;
    }
    let owner = Persona::member("proj-deact");
    let data = test_data(64);
    let resp = app
        .send(
            app.request(Method::POST, "/v2/images")
                .headers(owner.headers())
                .json(&json!({"name": app.name("d"), "disk_format": "raw",
                              "container_format": "bare"})),
        )
        .await;
    let img = expect_json(resp, StatusCode::CREATED).await;
    let id = id_of(&img);
    let resp = app
        .send(
            app.request(Method::PUT, &format!("/v2/images/{id}/file"))
                .headers(owner.headers())
                .header("content-type", "application/octet-stream")
                .body(data.clone()),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    // The owner (member role) may deactivate its own image.
    let resp = app
        .send(
            app.request(Method::POST, &format!("/v2/images/{id}/actions/deactivate"))
                .headers(owner.headers()),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = app
        .send(
            app.request(Method::GET, &format!("/v2/images/{id}/file"))
                .headers(owner.headers()),
        )
        .await;
    expect_error(resp, StatusCode::FORBIDDEN).await;
    // Admins (explicit role or header-less) can still download.
    let resp = app
        .send(
            app.request(Method::GET, &format!("/v2/images/{id}/file"))
                .headers(Persona::admin("other").headers()),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.bytes().await.unwrap()[..] == data[..]);
    assert_eq!(app.download(&id).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn delete_image() {
    let app = TestApp::spawn().await;
    let img = app.create_image(json!({"name": app.name("del")})).await;
    let id = id_of(&img);
    let resp = app.delete(&format!("/v2/images/{id}")).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(resp.bytes().await.unwrap().is_empty());
    let resp = app.get(&format!("/v2/images/{id}")).await;
    expect_error(resp, StatusCode::NOT_FOUND).await;
    let resp = app.delete(&format!("/v2/images/{id}")).await;
    expect_error(resp, StatusCode::NOT_FOUND).await;
    let l = app.list(&format!("name={}", app.name("del"))).await;
    assert_eq!(l["images"], json!([]));
    // The id of a deleted image cannot be reused.
    let resp = app.post_json("/v2/images", &json!({"id": id})).await;
    expect_error(resp, StatusCode::CONFLICT).await;
    let resp = app
        .delete("/v2/images/00000000-0000-0000-0000-000000000000")
        .await;
    expect_error(resp, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn delete_active_and_deactivated_images() {
    let app = TestApp::spawn().await;
    let img = app
        .create_active_image(json!({"name": app.name("da")}), &test_data(10))
        .await;
    let id = id_of(&img);
    assert_eq!(
        app.post_empty(&format!("/v2/images/{id}/actions/deactivate"))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let resp = app.delete(&format!("/v2/images/{id}")).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = app.get(&format!("/v2/images/{id}")).await;
    expect_error(resp, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn delete_protected_is_403() {
    let app = TestApp::spawn().await;
    let img = app
        .create_image(json!({"name": app.name("prot"), "protected": true}))
        .await;
    let id = id_of(&img);
    let resp = app.delete(&format!("/v2/images/{id}")).await;
    expect_error(resp, StatusCode::FORBIDDEN).await;
    assert_eq!(app.show(&id).await["status"], "queued");
    app.patch_ok(
        &id,
        &json!([{"op": "replace", "path": "/protected", "value": false}]),
    )
    .await;
    let resp = app.delete(&format!("/v2/images/{id}")).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
}

async fn create_as(app: &TestApp, who: &Persona, body: Value) -> Value {
    let resp = app
        .send(
            app.request(Method::POST, "/v2/images")
                .headers(who.headers())
                .json(&body),
        )
        .await;
    expect_json(resp, StatusCode::CREATED).await
}

async fn patch_as(app: &TestApp, who: &Persona, id: &str, body: Value) -> reqwest::Response {
    app.send(
        app.patch_request(id, PATCH_V21, &body)
            .headers(who.headers()),
    )
    .await
}

#[tokio::test]
async fn persona_authorization() {
    let app = TestApp::spawn().await;
    if app.is_external() {
        return;
    }
    let owner = Persona::member("proj-owner");
    let other = Persona::member("proj-other");
    let admin = Persona::admin("proj-admin");
    let rename = json!([{"op": "replace", "path": "/name", "value": "hijack"}]);

    // Owner is the caller's project; a non-admin may not create for another project.
    let private = create_as(
        &app,
        &owner,
        json!({"name": app.name("priv"), "visibility": "private"}),
    )
    .await;
    assert_eq!(private["owner"], "proj-owner");
    let resp = app
        .send(
            app.request(Method::POST, "/v2/images")
                .headers(owner.headers())
                .json(&json!({"name": app.name("x"), "owner": "proj-other"})),
        )
        .await;
    expect_error(resp, StatusCode::FORBIDDEN).await;
    // Non-admin publicize → 403 (create and patch); admin may.
    let resp = app
        .send(
            app.request(Method::POST, "/v2/images")
                .headers(owner.headers())
                .json(&json!({"name": app.name("pub"), "visibility": "public"})),
        )
        .await;
    expect_error(resp, StatusCode::FORBIDDEN).await;
    let pid = id_of(&private);
    let resp = patch_as(
        &app,
        &owner,
        &pid,
        json!([{"op": "replace", "path": "/visibility", "value": "public"}]),
    )
    .await;
    expect_error(resp, StatusCode::FORBIDDEN).await;
    let public = create_as(
        &app,
        &admin,
        json!({"name": app.name("pub"), "visibility": "public"}),
    )
    .await;
    assert_eq!(public["visibility"], "public");
    assert_eq!(public["owner"], "proj-admin");
    let resp = patch_as(
        &app,
        &admin,
        &pid,
        json!([{"op": "replace", "path": "/visibility", "value": "public"}]),
    )
    .await;
    assert_eq!(
        expect_json(resp, StatusCode::OK).await["visibility"],
        "public"
    );
    let resp = patch_as(
        &app,
        &admin,
        &pid,
        json!([{"op": "replace", "path": "/visibility", "value": "private"}]),
    )
    .await;
    assert_eq!(
        expect_json(resp, StatusCode::OK).await["visibility"],
        "private"
    );
    // Owner may go community; owner replace is admin-only.
    let community = create_as(
        &app,
        &owner,
        json!({"name": app.name("comm"), "visibility": "community"}),
    )
    .await;
    let resp = patch_as(
        &app,
        &owner,
        &pid,
        json!([{"op": "replace", "path": "/owner", "value": "proj-other"}]),
    )
    .await;
    expect_error(resp, StatusCode::FORBIDDEN).await;

    // Another project: private image invisible (404 everywhere).
    let get = |path: String, who: &Persona| app.request(Method::GET, &path).headers(who.headers());
    let resp = app.send(get(format!("/v2/images/{pid}"), &other)).await;
    expect_error(resp, StatusCode::NOT_FOUND).await;
    let resp = patch_as(&app, &other, &pid, rename.clone()).await;
    expect_error(resp, StatusCode::NOT_FOUND).await;
    let resp = app
        .send(
            app.request(Method::DELETE, &format!("/v2/images/{pid}"))
                .headers(other.headers()),
        )
        .await;
    expect_error(resp, StatusCode::NOT_FOUND).await;
    // Visible (public / community) but not theirs: 403 on modification.
    for img in [&public, &community] {
        let id = id_of(img);
        let resp = app.send(get(format!("/v2/images/{id}"), &other)).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let resp = patch_as(&app, &other, &id, rename.clone()).await;
        expect_error(resp, StatusCode::FORBIDDEN).await;
        let resp = app
            .send(
                app.request(Method::DELETE, &format!("/v2/images/{id}"))
                    .headers(other.headers()),
            )
            .await;
        expect_error(resp, StatusCode::FORBIDDEN).await;
        let resp = app
            .send(
                app.request(Method::PUT, &format!("/v2/images/{id}/tags/x"))
                    .headers(other.headers()),
            )
            .await;
        expect_error(resp, StatusCode::FORBIDDEN).await;
    }
    // The owner and an admin can modify.
    let resp = patch_as(
        &app,
        &owner,
        &pid,
        json!([{"op": "replace", "path": "/name", "value": "mine"}]),
    )
    .await;
    assert_eq!(expect_json(resp, StatusCode::OK).await["name"], "mine");
    let resp = patch_as(
        &app,
        &admin,
        &pid,
        json!([{"op": "replace", "path": "/owner", "value": "proj-other"}]),
    )
    .await;
    assert_eq!(
        expect_json(resp, StatusCode::OK).await["owner"],
        "proj-other"
    );
    // Now proj-other owns it and proj-owner no longer sees it.
    let resp = app.send(get(format!("/v2/images/{pid}"), &other)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = app.send(get(format!("/v2/images/{pid}"), &owner)).await;
    expect_error(resp, StatusCode::NOT_FOUND).await;
    // X-Tenant-Id is accepted as the project header.
    let resp = app
        .send(
            app.request(Method::GET, &format!("/v2/images/{pid}"))
                .header("x-roles", "member")
                .header("x-tenant-id", "proj-other"),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
}
