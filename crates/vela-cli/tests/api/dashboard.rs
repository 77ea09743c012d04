//! What a dashboard needs of the embedded identity service and of the image API: Keystone v3's
//! read calls (Horizon's login asks `/v3/auth/projects`, `/auth/domains`, `/auth/system`),
//! keystoneauth's `"scope": "unscoped"`, CORS for uploads from the browser, and the first
//! start that creates the admin and writes an openrc file.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::TestApp;
use crate::identity::{embedded, issue, password_auth, populate, token_for, with_token};

async fn get_json(app: &TestApp, path: &str, token: &str) -> (StatusCode, Value) {
    let resp = with_token(app, Method::GET, path, token).await;
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn names(list: &Value) -> Vec<String> {
    let mut n: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    n.sort();
    n
}

#[tokio::test]
async fn horizon_login_calls_answer_as_keystone() {
    let Some(app) = embedded("").await else {
        return;
    };
    populate(&app);
    // Horizon's first step: an unscoped token, even for a user with a default project.
    let mut body = password_auth("alice", "alice-pw", None);
    body["auth"]["scope"] = json!("unscoped");
    let (status, unscoped, token) = issue(&app, &body).await;
    assert_eq!(status, StatusCode::CREATED, "{token}");
    assert!(token["token"].get("project").is_none(), "{token}");
    assert!(token["token"].get("catalog").is_none(), "{token}");
    let unscoped = unscoped.unwrap();

    let (status, body) = get_json(&app, "/v3/auth/projects", &unscoped).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(names(&body["projects"]), ["alpha"]);
    let alpha = &body["projects"][0];
    assert_eq!(alpha["domain_id"], "default");
    assert_eq!(alpha["enabled"], true);
    assert!(alpha["links"]["self"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/v3/projects/{}", alpha["id"].as_str().unwrap())));
    assert_eq!(body["links"]["next"], Value::Null);
    let alpha_id = alpha["id"].as_str().unwrap().to_owned();

    let (status, body) = get_json(&app, "/v3/auth/domains", &unscoped).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["domains"], json!([]));
    let (status, body) = get_json(&app, "/v3/auth/system", &unscoped).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["system"], json!([]));

    // The user's own projects; not another user's.
    let alice_id = token["token"]["user"]["id"].as_str().unwrap().to_owned();
    let (status, body) = get_json(&app, &format!("/v3/users/{alice_id}/projects"), &unscoped).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(names(&body["projects"]), ["alpha"]);
    let admin = token_for(&app, "admin", "admin-pw", "admin").await;
    let (_, me) = get_json(&app, "/v3/auth/system", &admin).await;
    assert_eq!(me["system"], json!([{"all": true}]));
    let (status, users) = get_json(&app, "/v3/users?name=bob", &admin).await;
    assert_eq!(status, StatusCode::OK, "{users}");
    let bob_id = users["users"][0]["id"].as_str().unwrap().to_owned();
    let (status, _) = get_json(&app, &format!("/v3/users/{bob_id}/projects"), &unscoped).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = get_json(&app, &format!("/v3/users/{bob_id}/projects"), &admin).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["projects"], json!([]));

    // Rescoped to alpha: the project itself and the domain, but not the others.
    let scoped = token_for(&app, "alice", "alice-pw", "alpha").await;
    let (status, body) = get_json(&app, &format!("/v3/projects/{alpha_id}"), &scoped).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["project"]["name"], "alpha");
    let (status, body) = get_json(&app, "/v3/projects", &scoped).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body["error"]["message"],
        "You are not authorized to perform the requested action: identity:list_projects."
    );
    let (status, body) = get_json(&app, "/v3/domains/default", &scoped).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["domain"]["name"], "Default");
    let (status, _) = get_json(&app, "/v3/auth/catalog", &scoped).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = get_json(&app, "/v3/auth/catalog", &unscoped).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = get_json(&app, "/v3/role_assignments", &scoped).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = get_json(&app, "/v3/auth/projects", "not-a-token").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The admin reads everything.
    let (_, body) = get_json(&app, "/v3/projects", &admin).await;
    assert_eq!(names(&body["projects"]), ["admin", "alpha", "beta"]);
    let (_, body) = get_json(&app, "/v3/projects?name=beta", &admin).await;
    assert_eq!(names(&body["projects"]), ["beta"]);
    let (status, body) = get_json(&app, "/v3/projects/nope", &admin).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["message"], "Could not find project: nope.");
    let (_, body) = get_json(&app, "/v3/domains", &admin).await;
    assert_eq!(body["domains"][0]["id"], "default");
    let (_, body) = get_json(&app, "/v3/roles?name=member", &admin).await;
    assert_eq!(names(&body["roles"]), ["member"]);
    let (status, body) = get_json(
        &app,
        &format!("/v3/role_assignments?user.id={alice_id}&scope.project.id={alpha_id}&effective&include_names"),
        &admin,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let list = body["role_assignments"].as_array().unwrap();
    let roles: Vec<&str> = list
        .iter()
        .map(|a| a["role"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["member", "reader"], "{body}");
    assert_eq!(list[0]["user"]["name"], "alice");
    assert_eq!(list[0]["scope"]["project"]["name"], "alpha");
    // Without `effective`, only what was granted.
    let (_, body) = get_json(
        &app,
        &format!("/v3/role_assignments?user.id={alice_id}"),
        &admin,
    )
    .await;
    assert_eq!(body["role_assignments"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn cors_preflight_and_answers() {
    let Some(app) =
        embedded("[cors]\nallowed_origin = [\"http://dash.example:8000\"]\nmax_age = 600\n").await
    else {
        return;
    };
    let preflight = |origin: &str| {
        app.request(
            Method::OPTIONS,
            "/v2/images/0a5e4e33-1a4b-4e46-9b85-2b7f9d5a3c11/file",
        )
        .header("origin", origin)
        .header("access-control-request-method", "PUT")
        .header(
            "access-control-request-headers",
            "x-auth-token, content-type",
        )
    };
    // A preflight needs no token. As in Glance, the CORS layer answers it before the
    // request-id middleware, so it carries no request id.
    let resp = preflight("http://dash.example:8000").send().await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], "http://dash.example:8000");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-max-age"], "600");
    let methods = h["access-control-allow-methods"].to_str().unwrap();
    assert!(methods.contains("PUT"), "{methods}");
    let allowed = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("x-auth-token"), "{allowed}");
    // Another origin gets no grant.
    let resp = preflight("http://evil.example").send().await.unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    // A real answer (here a 401) carries the grant and the exposed headers.
    let resp = app
        .send(
            app.request(Method::GET, "/v2/images")
                .header("origin", "http://dash.example:8000"),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "http://dash.example:8000"
    );
    let exposed = resp.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(exposed.contains("x-openstack-request-id"), "{exposed}");
}

#[tokio::test]
async fn cors_is_off_by_default() {
    let Some(app) = embedded("").await else {
        return;
    };
    let resp = app
        .send(
            app.request(Method::GET, "/v2/images")
                .header("origin", "http://dash.example:8000"),
        )
        .await;
    assert!(resp.headers().get("access-control-allow-origin").is_none());
}

/// The path of the openrc file a first start logged.
fn logged_openrc(app: &TestApp) -> Option<std::path::PathBuf> {
    let log = app.server_log();
    let at = log.find("openrc=")?;
    let rest = &log[at + "openrc=".len()..];
    let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
    Some(rest[..end].trim_matches('"').into())
}

#[tokio::test]
async fn first_start_creates_the_admin_and_an_openrc() {
    use std::os::unix::fs::PermissionsExt;
    let Some(app) = embedded("").await else {
        return;
    };
    let path = logged_openrc(&app).unwrap_or_else(|| panic!("{}", app.server_log()));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{path:?}");
    let text = std::fs::read_to_string(&path).unwrap();
    let var = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("export {name}=")))
            .unwrap_or_else(|| panic!("{name} missing: {text}"))
            .to_owned()
    };
    let password = var("OS_PASSWORD");
    assert!(password.len() >= 32, "a short password");
    assert!(
        !app.server_log().contains(&password),
        "the password reached the log"
    );
    assert_eq!(var("OS_AUTH_URL"), format!("{}/v3", app.url));
    assert_eq!(var("OS_USERNAME"), "admin");
    // The openrc works: the admin of the system and of project admin.
    let token = token_for(&app, "admin", &password, &var("OS_PROJECT_NAME")).await;
    let (status, _) = get_json(&app, "/v2/images", &token).await;
    assert_eq!(status, StatusCode::OK);
    let mut body = password_auth("admin", &password, None);
    body["auth"]["scope"] = json!({"system": {"all": true}});
    assert_eq!(issue(&app, &body).await.0, StatusCode::CREATED);

    // A restart creates nothing more and does not touch the file.
    let again = app.spawn_sibling().await;
    assert!(logged_openrc(&again).is_none(), "{}", again.server_log());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    // Explicit bootstrap still resets the password.
    app.run_vela(&["identity", "bootstrap", "--password", "chosen-pw"]);
    token_for(&app, "admin", "chosen-pw", "admin").await;
}

#[tokio::test]
async fn first_run_admin_can_be_turned_off() {
    let Some(app) = embedded("first_run_admin = false\n").await else {
        return;
    };
    assert!(logged_openrc(&app).is_none());
    assert!(app.server_log().contains("vela identity bootstrap"));
    assert_eq!(app.run_vela(&["identity", "user", "list"]).trim(), "");
}

#[tokio::test]
async fn dashboard_side_calls_answer_as_keystone() {
    let Some(app) = embedded("").await else {
        return;
    };
    populate(&app);
    let alice = token_for(&app, "alice", "alice-pw", "alpha").await;
    let admin = token_for(&app, "admin", "admin-pw", "admin").await;
    // A domain scope: no roles on domains here, so 401 as Keystone answers such a user.
    let mut body = password_auth("alice", "alice-pw", None);
    body["auth"]["scope"] = json!({"domain": {"name": "Default"}});
    assert_eq!(issue(&app, &body).await.0, StatusCode::UNAUTHORIZED);
    // No groups, credentials or application credentials: empty lists, under the same rules.
    let (status, body) = get_json(&app, "/v3/groups", &admin).await;
    assert_eq!((status, &body["groups"]), (StatusCode::OK, &json!([])));
    assert_eq!(
        get_json(&app, "/v3/groups", &alice).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, body) = get_json(&app, "/v3/credentials", &alice).await;
    assert_eq!((status, &body["credentials"]), (StatusCode::OK, &json!([])));
    // Writes are not served: Keystone's error shape, so keystoneclient shows the message.
    let resp = app
        .send(
            app.request(Method::POST, "/v3/projects")
                .header("x-auth-token", &admin)
                .json(&json!({"project": {"name": "gamma"}})),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], 405, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("vela identity"));
}

#[tokio::test]
async fn users_change_their_own_password() {
    let Some(app) = embedded("").await else {
        return;
    };
    populate(&app);
    let before = token_for(&app, "alice", "alice-pw", "alpha").await;
    let (_, body) = get_json(
        &app,
        "/v3/users?name=alice",
        &token_for(&app, "admin", "admin-pw", "admin").await,
    )
    .await;
    let alice_id = body["users"][0]["id"].as_str().unwrap().to_owned();
    let change = |old: &str, new: &str| {
        app.request(Method::POST, &format!("/v3/users/{alice_id}/password"))
            .json(&json!({"user": {"original_password": old, "password": new}}))
    };
    // The wrong old password: 401 (and it counts as a failed login).
    let resp = app.send(change("wrong", "new-pw")).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = app.send(change("alice-pw", "")).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = app.send(change("alice-pw", "new-pw")).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    // The new password works, the old one and the earlier tokens do not.
    token_for(&app, "alice", "new-pw", "alpha").await;
    let (status, _, _) = issue(&app, &password_auth("alice", "alice-pw", None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        get_json(&app, "/v2/images", &before).await.0,
        StatusCode::UNAUTHORIZED
    );
}
