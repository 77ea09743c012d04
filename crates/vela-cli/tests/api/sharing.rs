//! Image sharing: the members API (`/v2/images/{id}/members…`), member status in image
//! lists, member access to shared images, and the member quota. Expectations follow
//! Glance's `glance/api/v2/image_members.py`, `glance/db/utils.py` (`is_image_visible`),
//! `glance/db/sqlalchemy/api.py` (`_select_images_query`, `_image_member_find`) and the
//! secure-RBAC defaults in `glance/policies/image.py`.

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{
    expect_error, expect_json, ids_of, is_timestamp, keys, test_data, Persona, TestApp, OCTET,
    PATCH_V21,
};

const MEMBER_KEYS: &[&str] = &[
    "created_at",
    "image_id",
    "member_id",
    "schema",
    "status",
    "updated_at",
];

fn reader(project: &str) -> Persona {
    Persona {
        project: project.to_owned(),
        roles: "reader".to_owned(),
        user: format!("reader-of-{project}"),
    }
}

fn req(app: &TestApp, who: &Persona, method: Method, path: &str) -> RequestBuilder {
    app.request(method, path).headers(who.headers())
}

async fn call(
    app: &TestApp,
    who: &Persona,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Response {
    let mut rb = req(app, who, method, path);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    app.send(rb).await
}

async fn get(app: &TestApp, who: &Persona, path: &str) -> Response {
    call(app, who, Method::GET, path, None).await
}

async fn delete(app: &TestApp, who: &Persona, path: &str) -> Response {
    call(app, who, Method::DELETE, path, None).await
}

/// `POST /v2/images/{id}/members` with `body`.
async fn post_members(app: &TestApp, who: &Persona, id: &str, body: Value) -> Response {
    call(app, who, Method::POST, &members_path(id), Some(body)).await
}

/// A fresh image owned by `owner`'s project; `active` uploads a few bytes.
async fn image_of(app: &TestApp, owner: &Persona, visibility: &str, active: bool) -> String {
    let body = json!({"name": app.name(visibility), "visibility": visibility,
                      "disk_format": "raw", "container_format": "bare"});
    let resp = call(app, owner, Method::POST, "/v2/images", Some(body)).await;
    let img = expect_json(resp, StatusCode::CREATED).await;
    let id = img["id"].as_str().unwrap().to_owned();
    if active {
        let resp = app
            .send(
                req(app, owner, Method::PUT, &format!("/v2/images/{id}/file"))
                    .header("content-type", OCTET)
                    .body(test_data(32)),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::NO_CONTENT, "upload of {id}");
    }
    id
}

fn members_path(id: &str) -> String {
    format!("/v2/images/{id}/members")
}

fn member_path(id: &str, member: &str) -> String {
    format!("/v2/images/{id}/members/{member}")
}

async fn add_member(app: &TestApp, owner: &Persona, id: &str, member: &str) -> Value {
    let resp = post_members(app, owner, id, json!({ "member": member })).await;
    expect_json(resp, StatusCode::OK).await
}

async fn set_status(
    app: &TestApp,
    who: &Persona,
    id: &str,
    member: &str,
    status: &str,
) -> Response {
    call(
        app,
        who,
        Method::PUT,
        &member_path(id, member),
        Some(json!({ "status": status })),
    )
    .await
}

fn assert_member(m: &Value, image: &str, member: &str, status: &str) {
    assert_eq!(keys(m), MEMBER_KEYS, "member shape: {m}");
    assert_eq!(m["image_id"], image, "{m}");
    assert_eq!(m["member_id"], member, "{m}");
    assert_eq!(m["status"], status, "{m}");
    assert_eq!(m["schema"], "/v2/schemas/member", "{m}");
    for f in ["created_at", "updated_at"] {
        assert!(is_timestamp(m[f].as_str().unwrap_or_default()), "{f}: {m}");
    }
}

/// A 200 member representation with these values.
async fn expect_member(resp: Response, image: &str, member: &str, status: &str) {
    assert_member(
        &expect_json(resp, StatusCode::OK).await,
        image,
        member,
        status,
    );
}

/// The member `who` answers with `status` (must succeed).
async fn answer(app: &TestApp, who: &Persona, id: &str, status: &str) {
    let resp = set_status(app, who, id, &who.project, status).await;
    expect_member(resp, id, &who.project, status).await;
}

/// The `member_id`s of a member list, sorted.
fn member_ids(list: &Value) -> Vec<String> {
    let mut ids: Vec<String> = list["members"]
        .as_array()
        .unwrap_or_else(|| panic!("no members array: {list}"))
        .iter()
        .map(|m| m["member_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    ids
}

async fn list_members(app: &TestApp, who: &Persona, id: &str) -> Value {
    let resp = get(app, who, &members_path(id)).await;
    expect_json(resp, StatusCode::OK).await
}

/// Ids of the images `who` gets for `GET /v2/images?name=…&{query}`.
async fn listed(app: &TestApp, who: &Persona, name: &str, query: &str) -> Vec<String> {
    let path = format!("/v2/images?name={name}&{query}");
    let resp = get(app, who, &path).await;
    ids_of(&expect_json(resp, StatusCode::OK).await)
}

#[tokio::test]
async fn add_member_shape_duplicate_and_who_sees_which_rows() {
    let app = TestApp::spawn().await;
    if app.is_external() {
        return;
    }
    let owner = Persona::member("sh-owner");
    let (a, b) = (Persona::member("sh-a"), Persona::member("sh-b"));
    let id = image_of(&app, &owner, "shared", false).await;

    let m = add_member(&app, &owner, &id, "sh-a").await;
    assert_member(&m, &id, "sh-a", "pending");
    // Duplicate → 409 (ImageMemberRepo.add raises Duplicate).
    let resp = post_members(&app, &owner, &id, json!({"member": "sh-a"})).await;
    expect_error(resp, StatusCode::CONFLICT).await;
    add_member(&app, &owner, &id, "sh-b").await;

    // Owner, the owner project's reader and an admin see every row.
    for who in [&owner, &reader("sh-owner"), &Persona::admin("sh-admin")] {
        let l = list_members(&app, who, &id).await;
        assert_eq!(keys(&l), ["members", "schema"], "{l}");
        assert_eq!(l["schema"], "/v2/schemas/members");
        assert_eq!(member_ids(&l), ["sh-a", "sh-b"], "as {}", who.project);
        for m in l["members"].as_array().unwrap() {
            assert_member(m, &id, m["member_id"].as_str().unwrap(), "pending");
        }
        let resp = get(&app, who, &member_path(&id, "sh-b")).await;
        expect_member(resp, &id, "sh-b", "pending").await;
    }
    // A member sees only its own row, and the other member's row is a 404.
    let l = list_members(&app, &a, &id).await;
    assert_eq!(member_ids(&l), ["sh-a"]);
    let resp = get(&app, &a, &member_path(&id, "sh-a")).await;
    expect_member(resp, &id, "sh-a", "pending").await;
    let resp = get(&app, &a, &member_path(&id, "sh-b")).await;
    expect_error(resp, StatusCode::NOT_FOUND).await;
    let resp = get(&app, &b, &member_path(&id, "sh-a")).await;
    expect_error(resp, StatusCode::NOT_FOUND).await;
    // Unknown member → 404; a member may not add members (add_member: owner member) → 403.
    let resp = get(&app, &owner, &member_path(&id, "nobody")).await;
    expect_error(resp, StatusCode::NOT_FOUND).await;
    let resp = post_members(&app, &a, &id, json!({"member": "sh-c"})).await;
    expect_error(resp, StatusCode::FORBIDDEN).await;
    // The owner project's reader may not add either (add_member needs role member).
    let resp = post_members(&app, &reader("sh-owner"), &id, json!({"member": "sh-c"})).await;
    expect_error(resp, StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn member_answers_for_itself_only() {
    let app = TestApp::spawn().await;
    if app.is_external() {
        return;
    }
    let owner = Persona::member("st-owner");
    let (a, b) = (Persona::member("st-a"), Persona::member("st-b"));
    let id = image_of(&app, &owner, "shared", false).await;
    add_member(&app, &owner, &id, "st-a").await;
    add_member(&app, &owner, &id, "st-b").await;
    for status in ["accepted", "rejected", "pending", "accepted"] {
        let resp = set_status(&app, &a, &id, "st-a", status).await;
        expect_member(resp, &id, "st-a", status).await;
        let resp = get(&app, &owner, &member_path(&id, "st-a")).await;
        assert_eq!(expect_json(resp, StatusCode::OK).await["status"], status);
    }
    // modify_member is "admin or (member and project_id:%(member_id)s)": the owner → 403.
    let resp = set_status(&app, &owner, &id, "st-a", "rejected").await;
    expect_error(resp, StatusCode::FORBIDDEN).await;
    let resp = set_status(&app, &reader("st-owner"), &id, "st-a", "rejected").await;
    expect_error(resp, StatusCode::FORBIDDEN).await;
    // Another member cannot even see st-a's row → 404.
    let resp = set_status(&app, &b, &id, "st-a", "rejected").await;
    expect_error(resp, StatusCode::NOT_FOUND).await;
    let resp = get(&app, &a, &member_path(&id, "st-a")).await;
    assert_eq!(
        expect_json(resp, StatusCode::OK).await["status"],
        "accepted"
    );
    // An admin may.
    let resp = set_status(&app, &Persona::admin("st-admin"), &id, "st-a", "rejected").await;
    expect_member(resp, &id, "st-a", "rejected").await;
}

#[tokio::test]
async fn member_delete_and_readd() {
    let app = TestApp::spawn().await;
    if app.is_external() {
        return;
    }
    let owner = Persona::member("dl-owner");
    let a = Persona::member("dl-a");
    let id = image_of(&app, &owner, "shared", false).await;
    add_member(&app, &owner, &id, "dl-a").await;
    answer(&app, &a, &id, "accepted").await;
    // delete_member is "admin or owner member": the member cannot remove itself.
    let resp = delete(&app, &a, &member_path(&id, "dl-a")).await;
    expect_error(resp, StatusCode::FORBIDDEN).await;
    let resp = delete(&app, &reader("dl-owner"), &member_path(&id, "dl-a")).await;
    expect_error(resp, StatusCode::FORBIDDEN).await;
    let resp = delete(&app, &owner, &member_path(&id, "dl-a")).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(resp.bytes().await.unwrap().is_empty());
    let resp = get(&app, &owner, &member_path(&id, "dl-a")).await;
    expect_error(resp, StatusCode::NOT_FOUND).await;
    let resp = delete(&app, &owner, &member_path(&id, "dl-a")).await;
    expect_error(resp, StatusCode::NOT_FOUND).await;
    assert_eq!(
        member_ids(&list_members(&app, &owner, &id).await),
        Vec::<String>::new()
    );
    // The former member lost access to the shared image.
    let resp = get(&app, &a, &format!("/v2/images/{id}")).await;
    expect_error(resp, StatusCode::NOT_FOUND).await;
    // Re-added: starts over as pending.
    let m = add_member(&app, &owner, &id, "dl-a").await;
    assert_member(&m, &id, "dl-a", "pending");
    let resp = get(&app, &a, &member_path(&id, "dl-a")).await;
    assert_eq!(expect_json(resp, StatusCode::OK).await["status"], "pending");
}

#[tokio::test]
async fn non_shared_images_have_no_members() {
    let app = TestApp::spawn().await;
    if app.is_external() {
        return;
    }
    let owner = Persona::member("ns-owner");
    for vis in ["private", "community"] {
        let id = image_of(&app, &owner, vis, false).await;
        // _check_visibility_and_ownership: "Only shared images have members." → 403 …
        let resp = post_members(&app, &owner, &id, json!({"member": "ns-a"})).await;
        expect_error(resp, StatusCode::FORBIDDEN).await;
        let resp = get(&app, &owner, &members_path(&id)).await;
        expect_error(resp, StatusCode::FORBIDDEN).await;
        let resp = set_status(&app, &owner, &id, "ns-a", "accepted").await;
        expect_error(resp, StatusCode::FORBIDDEN).await;
        let resp = delete(&app, &owner, &member_path(&id, "ns-a")).await;
        expect_error(resp, StatusCode::FORBIDDEN).await;
        // … except show, which turns every refusal into a 404.
        let resp = get(&app, &owner, &member_path(&id, "ns-a")).await;
        expect_error(resp, StatusCode::NOT_FOUND).await;
    }
}

#[tokio::test]
async fn bad_member_bodies_are_400() {
    let app = TestApp::spawn().await;
    if app.is_external() {
        return;
    }
    let owner = Persona::member("bb-owner");
    let a = Persona::member("bb-a");
    let id = image_of(&app, &owner, "shared", false).await;
    add_member(&app, &owner, &id, "bb-a").await;
    // RequestDeserializer.create: KeyError / falsy member / TypeError → 400.
    for body in [
        json!({}),
        json!({"member": ""}),
        json!({"member": null}),
        json!({"members": "bb-x"}),
        json!([]),
    ] {
        let resp = post_members(&app, &owner, &id, body.clone()).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "create with {body}");
        expect_error(resp, StatusCode::BAD_REQUEST).await;
    }
    // RequestDeserializer.update: missing status → 400; the domain setter refuses anything
    // but pending/accepted/rejected (ValueError → 400).
    for body in [
        json!({}),
        json!({"status": "bogus"}),
        json!({"status": "Accepted"}),
        json!({"status": null}),
        json!([]),
    ] {
        let resp = call(
            &app,
            &a,
            Method::PUT,
            &member_path(&id, "bb-a"),
            Some(body.clone()),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "update with {body}");
        expect_error(resp, StatusCode::BAD_REQUEST).await;
    }
    let l = list_members(&app, &owner, &id).await;
    assert_eq!(member_ids(&l), ["bb-a"]);
    assert_eq!(l["members"][0]["status"], "pending");
}

#[tokio::test]
async fn unrelated_project_gets_404_everywhere() {
    let app = TestApp::spawn().await;
    if app.is_external() {
        return;
    }
    let owner = Persona::member("ur-owner");
    let other = Persona::member("ur-other");
    let id = image_of(&app, &owner, "shared", true).await;
    add_member(&app, &owner, &id, "ur-a").await;
    let image = format!("/v2/images/{id}");
    let cases: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, image.clone(), None),
        (Method::GET, format!("{image}/file"), None),
        (Method::GET, members_path(&id), None),
        (Method::GET, member_path(&id, "ur-a"), None),
        (Method::GET, member_path(&id, "ur-other"), None),
        (
            Method::POST,
            members_path(&id),
            Some(json!({"member": "ur-other"})),
        ),
        (
            Method::PUT,
            member_path(&id, "ur-a"),
            Some(json!({"status": "accepted"})),
        ),
        (
            Method::PUT,
            member_path(&id, "ur-other"),
            Some(json!({"status": "accepted"})),
        ),
        (Method::DELETE, member_path(&id, "ur-a"), None),
        (Method::DELETE, image.clone(), None),
    ];
    for (method, path, body) in cases {
        let resp = call(&app, &other, method.clone(), &path, body).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{method} {path}");
        expect_error(resp, StatusCode::NOT_FOUND).await;
    }
    let name = app.name("shared");
    for q in [
        "",
        "visibility=shared",
        "member_status=all",
        "visibility=all",
    ] {
        assert!(listed(&app, &other, &name, q).await.is_empty(), "list {q}");
    }
}

#[tokio::test]
async fn list_follows_member_status() {
    let app = TestApp::spawn().await;
    if app.is_external() {
        return;
    }
    let owner = Persona::member("ls-owner");
    let a = Persona::member("ls-a");
    let id = image_of(&app, &owner, "shared", false).await;
    let name = app.name("shared");
    add_member(&app, &owner, &id, "ls-a").await;
    let me = vec![id.clone()];
    let none: Vec<String> = Vec::new();
    // (member status, query, listed for the member?)
    let table: &[(&str, &[(&str, bool)])] = &[
        (
            "pending",
            &[
                ("", false),
                ("visibility=shared", false),
                ("member_status=pending", true),
                ("member_status=accepted", false),
                ("member_status=rejected", false),
                ("member_status=all", true),
                ("visibility=shared&member_status=pending", true),
                ("visibility=shared&member_status=all", true),
                ("visibility=private&member_status=all", false),
            ],
        ),
        (
            "accepted",
            &[
                ("", true),
                ("visibility=shared", true),
                ("member_status=accepted", true),
                ("member_status=pending", false),
                ("member_status=all", true),
                ("visibility=all", true),
            ],
        ),
        (
            "rejected",
            &[
                ("", false),
                ("visibility=shared", false),
                ("member_status=rejected", true),
                ("member_status=all", true),
                ("visibility=shared&member_status=rejected", true),
            ],
        ),
    ];
    for (status, queries) in table {
        if *status != "pending" {
            answer(&app, &a, &id, status).await;
        }
        for (q, shown) in *queries {
            let got = listed(&app, &a, &name, q).await;
            let want = if *shown { &me } else { &none };
            assert_eq!(&got, want, "member {status}, list ?{q}");
        }
        // The owner's own images are listed whatever member_status says.
        for q in [
            "",
            "visibility=shared",
            "member_status=rejected",
            "member_status=pending",
        ] {
            assert_eq!(listed(&app, &owner, &name, q).await, me, "owner ?{q}");
        }
    }
    let resp = get(&app, &a, "/v2/images?member_status=bogus").await;
    expect_error(resp, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn pending_and_rejected_members_read_by_id() {
    let app = TestApp::spawn().await;
    if app.is_external() {
        return;
    }
    let owner = Persona::member("rd-owner");
    let a = Persona::member("rd-a");
    let id = image_of(&app, &owner, "shared", true).await;
    add_member(&app, &owner, &id, "rd-a").await;
    for status in ["pending", "rejected", "accepted"] {
        if status != "pending" {
            answer(&app, &a, &id, status).await;
        }
        let resp = get(&app, &a, &format!("/v2/images/{id}")).await;
        assert_eq!(expect_json(resp, StatusCode::OK).await["id"], id.as_str());
        let resp = get(&app, &a, &format!("/v2/images/{id}/file")).await;
        assert_eq!(resp.status(), StatusCode::OK, "download as {status} member");
        assert_eq!(resp.bytes().await.unwrap().to_vec(), test_data(32));
        // Visible, but not theirs: a refused modification is a 403.
        let resp = app
            .send(
                app.patch_request(
                    &id,
                    PATCH_V21,
                    &json!([{"op": "add", "path": "/k", "value": "v"}]),
                )
                .headers(a.headers()),
            )
            .await;
        expect_error(resp, StatusCode::FORBIDDEN).await;
    }
}

#[tokio::test]
async fn leaving_shared_visibility_revokes_member_access() {
    let app = TestApp::spawn().await;
    if app.is_external() {
        return;
    }
    let owner = Persona::member("rv-owner");
    let a = Persona::member("rv-a");
    let id = image_of(&app, &owner, "shared", true).await;
    let name = app.name("shared");
    add_member(&app, &owner, &id, "rv-a").await;
    answer(&app, &a, &id, "accepted").await;
    assert_eq!(listed(&app, &a, &name, "").await, [id.as_str()]);
    let to = |vis: &str| json!([{"op": "replace", "path": "/visibility", "value": vis}]);
    let patch = |vis: &str| {
        app.send(
            app.patch_request(&id, PATCH_V21, &to(vis))
                .headers(owner.headers()),
        )
    };
    expect_json(patch("private").await, StatusCode::OK).await;
    let image = format!("/v2/images/{id}");
    for (method, path, body) in [
        (Method::GET, image.clone(), None),
        (Method::GET, format!("{image}/file"), None),
        (Method::GET, members_path(&id), None),
        (Method::GET, member_path(&id, "rv-a"), None),
        (
            Method::PUT,
            member_path(&id, "rv-a"),
            Some(json!({"status": "rejected"})),
        ),
    ] {
        let resp = call(&app, &a, method.clone(), &path, body).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{method} {path}");
    }
    assert!(listed(&app, &a, &name, "member_status=all")
        .await
        .is_empty());
    // The owner: no members on a private image (403), show → 404.
    let resp = get(&app, &owner, &members_path(&id)).await;
    expect_error(resp, StatusCode::FORBIDDEN).await;
    let resp = get(&app, &owner, &member_path(&id, "rv-a")).await;
    expect_error(resp, StatusCode::NOT_FOUND).await;
    // Back to shared: the membership rows were kept.
    expect_json(patch("shared").await, StatusCode::OK).await;
    let resp = get(&app, &a, &image).await;
    expect_json(resp, StatusCode::OK).await;
    let l = list_members(&app, &a, &id).await;
    assert_eq!(member_ids(&l), ["rv-a"]);
    assert_eq!(l["members"][0]["status"], "accepted");
    assert_eq!(listed(&app, &a, &name, "").await, [id.as_str()]);
}

#[tokio::test]
async fn member_quota_is_413() {
    let app = TestApp::spawn_with_config("[images]\nimage_member_quota = 2\n").await;
    if app.is_external() {
        return;
    }
    let owner = Persona::member("q-owner");
    let id = image_of(&app, &owner, "shared", false).await;
    add_member(&app, &owner, &id, "q-1").await;
    add_member(&app, &owner, &id, "q-2").await;
    let third = || post_members(&app, &owner, &id, json!({"member": "q-3"}));
    expect_error(third().await, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(
        member_ids(&list_members(&app, &owner, &id).await),
        ["q-1", "q-2"]
    );
    // Deleted rows do not count.
    let resp = delete(&app, &owner, &member_path(&id, "q-1")).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    expect_json(third().await, StatusCode::OK).await;
    // Another image has its own allowance.
    let other = image_of(&app, &owner, "shared", false).await;
    add_member(&app, &owner, &other, "q-1").await;
}

#[tokio::test]
async fn member_schemas() {
    let app = TestApp::spawn().await;
    let member = expect_json(app.get("/v2/schemas/member").await, StatusCode::OK).await;
    assert_eq!(member["name"], "member");
    assert_eq!(keys(&member["properties"]), MEMBER_KEYS);
    assert_eq!(
        member["properties"]["status"]["enum"],
        json!(["pending", "accepted", "rejected"])
    );
    let members = expect_json(app.get("/v2/schemas/members").await, StatusCode::OK).await;
    assert_eq!(members["name"], "members");
    assert_eq!(keys(&members["properties"]), ["members", "schema"]);
    assert_eq!(members["properties"]["members"]["type"], "array");
    assert_eq!(
        keys(&members["properties"]["members"]["items"]["properties"]),
        MEMBER_KEYS
    );
}
