//! The embedded identity service (`[auth] mode = "embedded"`): Keystone v3 password tokens,
//! their use on the image API, and every way a token stops working.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::TestApp;

/// One node in embedded mode (a one-node cluster, so `vela identity …` can run beside it).
pub(crate) async fn embedded(extra: &str) -> Option<TestApp> {
    let cfg = format!("[auth]\nmode = \"embedded\"\ntoken_cache_secs = 0\n{extra}");
    let mut nodes = TestApp::spawn_cluster_with(1, &cfg).await?;
    nodes.pop()
}

/// Bootstraps the admin and creates project `alpha` with user `alice` (member) and user
/// `bob` (no project).
pub(crate) fn populate(app: &TestApp) {
    app.run_vela(&["identity", "bootstrap", "--password", "admin-pw"]);
    app.run_vela(&["identity", "project", "create", "alpha"]);
    app.run_vela(&["identity", "project", "create", "beta"]);
    app.run_vela(&[
        "identity",
        "user",
        "create",
        "alice",
        "--password",
        "alice-pw",
        "--project",
        "alpha",
    ]);
    app.run_vela(&["identity", "user", "create", "bob", "--password", "bob-pw"]);
}

pub(crate) fn password_auth(user: &str, password: &str, scope: Option<Value>) -> Value {
    let mut auth = json!({"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"name": "Default"}, "password": password}}}});
    if let Some(s) = scope {
        auth["scope"] = s;
    }
    json!({ "auth": auth })
}

pub(crate) fn project_scope(name: &str) -> Option<Value> {
    Some(json!({"project": {"name": name, "domain": {"id": "default"}}}))
}

/// POST /v3/auth/tokens; returns (status, token, body).
pub(crate) async fn issue(app: &TestApp, body: &Value) -> (StatusCode, Option<String>, Value) {
    let resp = app.post_json("/v3/auth/tokens", body).await;
    let status = resp.status();
    let token = resp
        .headers()
        .get("x-subject-token")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, token, body)
}

pub(crate) async fn token_for(app: &TestApp, user: &str, password: &str, project: &str) -> String {
    let (status, token, body) =
        issue(app, &password_auth(user, password, project_scope(project))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    token.unwrap()
}

pub(crate) async fn with_token(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
) -> reqwest::Response {
    app.send(app.request(method, path).header("x-auth-token", token))
        .await
}

async fn status_with(app: &TestApp, path: &str, token: &str) -> StatusCode {
    with_token(app, Method::GET, path, token).await.status()
}

#[tokio::test]
async fn password_tokens_work_like_keystone_tokens() {
    let Some(app) = embedded("").await else {
        return;
    };
    populate(&app);

    // Keystone's version document, with and without the slash.
    for path in ["/v3", "/v3/"] {
        let v: Value = app.get(path).await.json().await.unwrap();
        assert_eq!(v["version"]["id"], "v3.14", "{v}");
    }

    // A project-scoped password token: roles with the implied ones, and a catalog that
    // points at this node.
    let (status, token, body) = issue(
        &app,
        &password_auth("alice", "alice-pw", project_scope("alpha")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = token.unwrap();
    let t = &body["token"];
    assert_eq!(t["project"]["name"], "alpha");
    assert_eq!(t["user"]["name"], "alice");
    assert_eq!(t["methods"], json!(["password"]));
    let mut roles: Vec<&str> = t["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    roles.sort();
    assert_eq!(roles, ["member", "reader"]);
    let image = t["catalog"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["type"] == "image")
        .expect("image service in the catalog");
    assert!(image["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["interface"] == "public" && e["url"] == app.url.as_str()));
    assert!(t["expires_at"].as_str().unwrap().ends_with('Z'));

    // The token works on the image API, as a member of alpha.
    let resp = app
        .send(
            app.request(Method::POST, "/v2/images")
                .header("x-auth-token", &token)
                .json(&json!({"name": "alice-img"})),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let img: Value = resp.json().await.unwrap();
    assert_eq!(img["owner"], t["project"]["id"]);
    assert_eq!(
        status_with(&app, "/v2/images", &token).await,
        StatusCode::OK
    );

    // ?nocatalog leaves the catalog out.
    let resp = app
        .send(
            app.request(Method::POST, "/v3/auth/tokens?nocatalog")
                .json(&password_auth("alice", "alice-pw", project_scope("alpha"))),
        )
        .await;
    let v: Value = resp.json().await.unwrap();
    assert!(v["token"].get("catalog").is_none(), "{v}");

    // Rescoping with the token method keeps the user and adds the method.
    let (status, _, body) = issue(
        &app,
        &json!({"auth": {"identity": {"methods": ["token"], "token": {"id": token}},
                 "scope": {"project": {"name": "alpha", "domain": {"name": "Default"}}}}}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["token"]["methods"], json!(["password", "token"]));

    // Validation by an admin; HEAD; an unknown subject is a 404.
    let admin = token_for(&app, "admin", "admin-pw", "admin").await;
    let check = |subject: &str, method: Method| {
        app.request(method, "/v3/auth/tokens")
            .header("x-auth-token", &admin)
            .header("x-subject-token", subject.to_owned())
    };
    let resp = app.send(check(&token, Method::GET)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["token"]["user"]["name"], "alice");
    assert_eq!(
        app.send(check(&token, Method::HEAD)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.send(check("vela1.e30.AAAA", Method::GET))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    // alice may not inspect the admin's token.
    let resp = app
        .send(
            app.request(Method::GET, "/v3/auth/tokens")
                .header("x-auth-token", &token)
                .header("x-subject-token", &admin),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn bad_credentials_and_scopes_are_refused() {
    let Some(app) = embedded("").await else {
        return;
    };
    populate(&app);
    for (body, why) in [
        (
            password_auth("alice", "wrong", project_scope("alpha")),
            "wrong password",
        ),
        (
            password_auth("nobody", "x", project_scope("alpha")),
            "unknown user",
        ),
        (
            password_auth("alice", "alice-pw", project_scope("beta")),
            "no role on beta",
        ),
        (
            password_auth("alice", "alice-pw", project_scope("nope")),
            "unknown project",
        ),
        (
            password_auth("alice", "alice-pw", Some(json!({"system": {"all": true}}))),
            "no system role",
        ),
        (
            password_auth(
                "alice",
                "alice-pw",
                Some(json!({"project": {"name": "alpha", "domain": {"name": "Other"}}})),
            ),
            "other domain",
        ),
    ] {
        let (status, token, body) = issue(&app, &body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{why}: {body}");
        assert!(token.is_none(), "{why}");
        assert_eq!(body["error"]["code"], 401, "{why}: {body}");
    }
    let (status, _, _) = issue(&app, &json!({"nothing": 1})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // bob has no project: his token is unscoped, with no roles, and the image API refuses it.
    let (status, token, body) = issue(&app, &password_auth("bob", "bob-pw", None)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body["token"].get("project").is_none() && body["token"].get("catalog").is_none());
    assert_eq!(
        status_with(&app, "/v2/images", &token.unwrap()).await,
        StatusCode::FORBIDDEN
    );

    // A system-scoped admin token passes no (project-scoped) image rule.
    let (status, token, body) = issue(
        &app,
        &password_auth("admin", "admin-pw", Some(json!({"system": {"all": true}}))),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["token"]["system"], json!({"all": true}));
    assert_eq!(
        status_with(&app, "/v2/images", &token.unwrap()).await,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn missing_forged_and_tampered_tokens_get_401_with_the_identity_uri() {
    let Some(app) = embedded("").await else {
        return;
    };
    populate(&app);
    let good = token_for(&app, "alice", "alice-pw", "alpha").await;

    let resp = app.get("/v2/images").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.headers()["www-authenticate"],
        format!("Keystone uri=\"{}/v3\"", app.url).as_str()
    );
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], 401);

    // Every /v2 path needs a token, even unknown ones; version discovery does not.
    assert_eq!(
        app.get("/v2/schemas/image").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/v2/nowhere").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.get("/versions").await.status(), StatusCode::OK);

    let (head, sig) = good.rsplit_once('.').unwrap();
    let mut flipped = sig.as_bytes().to_vec();
    flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
    let payload = head.split('.').nth(1).unwrap();
    let mut claims: Value = serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap();
    claims["project"] = json!("someone-elses-project");
    let forged_payload = B64.encode(serde_json::to_vec(&claims).unwrap());
    for bad in [
        "garbage".to_owned(),
        format!("{head}.{}", String::from_utf8(flipped).unwrap()),
        format!("vela1.{forged_payload}.{sig}"),
        good[..good.len() - 1].to_owned(),
    ] {
        assert_eq!(
            status_with(&app, "/v2/images", &bad).await,
            StatusCode::UNAUTHORIZED,
            "{bad}"
        );
    }
    assert_eq!(status_with(&app, "/v2/images", &good).await, StatusCode::OK);

    // No token ever reaches the logs.
    let logs = server_logs(&app);
    assert!(!logs.is_empty());
    assert!(!logs.contains(&good), "a token was logged");
    assert!(!logs.contains("alice-pw"), "a password was logged");
}

#[tokio::test]
async fn revocation_password_change_role_removal_and_deletion_end_tokens() {
    let Some(app) = embedded("").await else {
        return;
    };
    populate(&app);
    let admin = token_for(&app, "admin", "admin-pw", "admin").await;

    // Revoked by DELETE /v3/auth/tokens.
    let t = token_for(&app, "alice", "alice-pw", "alpha").await;
    revoke_token(&app, &admin, &t).await;
    assert_eq!(
        status_with(&app, "/v2/images", &t).await,
        StatusCode::UNAUTHORIZED
    );

    // A password change ends earlier tokens; the new password works.
    let t = token_for(&app, "alice", "alice-pw", "alpha").await;
    app.run_vela(&[
        "identity",
        "user",
        "set-password",
        "alice",
        "--password",
        "new-pw",
    ]);
    assert_eq!(
        status_with(&app, "/v2/images", &t).await,
        StatusCode::UNAUTHORIZED
    );
    let t = token_for(&app, "alice", "new-pw", "alpha").await;
    assert_eq!(status_with(&app, "/v2/images", &t).await, StatusCode::OK);

    // Losing the role on the token's project ends the token.
    app.run_vela(&[
        "identity",
        "role",
        "revoke",
        "member",
        "--user",
        "alice",
        "--project",
        "alpha",
    ]);
    assert_eq!(
        status_with(&app, "/v2/images", &t).await,
        StatusCode::UNAUTHORIZED
    );
    app.run_vela(&[
        "identity",
        "role",
        "grant",
        "reader",
        "--user",
        "alice",
        "--project",
        "alpha",
    ]);
    let t = token_for(&app, "alice", "new-pw", "alpha").await;
    assert_eq!(status_with(&app, "/v2/images", &t).await, StatusCode::OK);
    // A reader may look but not create.
    let resp = app
        .send(
            app.request(Method::POST, "/v2/images")
                .header("x-auth-token", &t)
                .json(&json!({"name": "x"})),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    // Deleting the user ends its tokens.
    app.run_vela(&["identity", "user", "delete", "alice"]);
    assert_eq!(
        status_with(&app, "/v2/images", &t).await,
        StatusCode::UNAUTHORIZED
    );
}

/// `vela identity rotate-key`: every node signs with the new key at once, and a node that has
/// the old keys cached learns the new one from the first token it cannot check. Tokens of the
/// old key stay good for the overlap, then are refused everywhere.
#[tokio::test]
async fn signing_keys_rotate_with_an_overlap() {
    // A long validation cache: the nodes must not depend on reading the keys often.
    let cfg = "[auth]\nmode = \"embedded\"\ntoken_cache_secs = 300\n";
    let Some(nodes) = TestApp::spawn_cluster_with(2, cfg).await else {
        return;
    };
    let (a, b) = (&nodes[0], &nodes[1]);
    populate(a);
    let old = token_for(a, "alice", "alice-pw", "alpha").await;
    assert_eq!(status_with(b, "/v2/images", &old).await, StatusCode::OK);

    let out = a.run_vela(&["identity", "rotate-key", "--overlap-secs", "4"]);
    assert!(out.contains("is now in use"), "{out}");
    let rotated = std::time::Instant::now();
    let new = token_for(a, "alice", "alice-pw", "alpha").await;
    for node in [a, b] {
        assert_eq!(status_with(node, "/v2/images", &new).await, StatusCode::OK);
        assert_eq!(status_with(node, "/v2/images", &old).await, StatusCode::OK);
    }
    let from_b = token_for(b, "alice", "alice-pw", "alpha").await;
    assert_eq!(status_with(a, "/v2/images", &from_b).await, StatusCode::OK);

    tokio::time::sleep(std::time::Duration::from_millis(4300).saturating_sub(rotated.elapsed()))
        .await;
    for node in [a, b] {
        assert_eq!(
            status_with(node, "/v2/images", &old).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(status_with(node, "/v2/images", &new).await, StatusCode::OK);
        assert_eq!(
            status_with(node, "/v2/images", &from_b).await,
            StatusCode::OK
        );
    }

    // No overlap (a leaked key): the tokens signed until now end on every node within the
    // nodes' key refresh time (5 s), whatever the validation cache time.
    a.run_vela(&["identity", "rotate-key", "--overlap-secs", "0"]);
    let retired = std::time::Instant::now();
    for node in [a, b] {
        while status_with(node, "/v2/images", &new).await == StatusCode::OK {
            assert!(retired.elapsed() < std::time::Duration::from_secs(7));
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    let newest = token_for(b, "alice", "alice-pw", "alpha").await;
    assert_eq!(status_with(a, "/v2/images", &newest).await, StatusCode::OK);
}

fn rescope(token: &str) -> Value {
    json!({"auth": {"identity": {"methods": ["token"], "token": {"id": token}},
                    "scope": {"project": {"name": "alpha", "domain": {"id": "default"}}}}})
}

async fn rescoped(app: &TestApp, token: &str) -> (String, Value) {
    let (status, child, body) = issue(app, &rescope(token)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (child.unwrap(), body)
}

async fn revoke_token(app: &TestApp, caller: &str, subject: &str) {
    let resp = app
        .send(
            app.request(Method::DELETE, "/v3/auth/tokens")
                .header("x-auth-token", caller)
                .header("x-subject-token", subject),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
}

/// A token rescoped from another (Horizon's unscoped-then-project login) ends with it.
#[tokio::test]
async fn revoking_a_token_revokes_the_tokens_rescoped_from_it() {
    let Some(app) = embedded("").await else {
        return;
    };
    populate(&app);
    let admin = token_for(&app, "admin", "admin-pw", "admin").await;
    let (status, unscoped, body) = issue(&app, &password_auth("alice", "alice-pw", None)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let unscoped = unscoped.unwrap();
    let root_audit = body["token"]["audit_ids"][0].clone();

    let (child, body) = rescoped(&app, &unscoped).await;
    // Keystone's audit ids: the token's own, then its chain's first.
    let audit = &body["token"]["audit_ids"];
    assert_eq!(audit.as_array().map(Vec::len), Some(2), "{body}");
    assert_eq!(audit[1], root_audit);
    let (grandchild, body) = rescoped(&app, &child).await;
    assert_eq!(body["token"]["audit_ids"][1], root_audit);
    let (sibling, _) = rescoped(&app, &unscoped).await;
    for t in [&child, &grandchild, &sibling] {
        assert_eq!(status_with(&app, "/v2/images", t).await, StatusCode::OK);
    }

    // Revoking the child ends the grandchild, not the parent or the sibling.
    revoke_token(&app, &admin, &child).await;
    for t in [&child, &grandchild] {
        assert_eq!(
            status_with(&app, "/v2/images", t).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        status_with(&app, "/v2/images", &sibling).await,
        StatusCode::OK
    );
    let (status, _, _) = issue(&app, &rescope(&grandchild)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The user revokes her own unscoped token: everything rescoped from it ends.
    revoke_token(&app, &sibling, &unscoped).await;
    assert_eq!(
        status_with(&app, "/v2/images", &sibling).await,
        StatusCode::UNAUTHORIZED
    );
    let (status, _, _) = issue(&app, &rescope(&unscoped)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Chains are bounded: a token rescoped 16 times in a row cannot be rescoped again.
    let mut t = token_for(&app, "alice", "alice-pw", "alpha").await;
    for _ in 0..16 {
        t = rescoped(&app, &t).await.0;
    }
    let (status, _, body) = issue(&app, &rescope(&t)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(status_with(&app, "/v2/images", &t).await, StatusCode::OK);
}

#[tokio::test]
async fn tokens_expire() {
    let Some(app) = embedded("token_ttl_secs = 1\n").await else {
        return;
    };
    populate(&app);
    let t = token_for(&app, "alice", "alice-pw", "alpha").await;
    assert_eq!(status_with(&app, "/v2/images", &t).await, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
    assert_eq!(
        status_with(&app, "/v2/images", &t).await,
        StatusCode::UNAUTHORIZED
    );
}

/// Anonymous callers have no roles, so Glance's default rules refuse them everything; an
/// operator opens public images to them through the policy file.
#[tokio::test]
async fn anonymous_access_follows_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "# anonymous reads of public images\n\
         \"get_images\": \"\"\n\
         get_image: \"rule:context_is_admin or 'public':%(visibility)s or (role:reader and project_id:%(project_id)s)\"\n",
    )
    .unwrap();
    let Some(open) = embedded(&format!(
        "allow_anonymous_access = true\npolicy_file = \"{}\"\n",
        policy.display()
    ))
    .await
    else {
        return;
    };
    populate(&open);
    let admin = token_for(&open, "admin", "admin-pw", "admin").await;
    let mut ids = Vec::new();
    for vis in ["public", "private"] {
        let resp = open
            .send(
                open.request(Method::POST, "/v2/images")
                    .header("x-auth-token", &admin)
                    .json(&json!({"name": vis, "visibility": vis})),
            )
            .await;
        let v: Value = resp.json().await.unwrap();
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    let list: Value = open.get("/v2/images").await.json().await.unwrap();
    let listed: Vec<&str> = list["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ids[0].as_str()]);
    assert_eq!(
        open.status_of(&format!("/v2/images/{}", ids[0])).await,
        StatusCode::OK
    );
    assert_eq!(
        open.status_of(&format!("/v2/images/{}", ids[1])).await,
        StatusCode::NOT_FOUND
    );
    let resp = open.post_json("/v2/images", &json!({"name": "anon"})).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn anonymous_access_under_the_default_policy_reads_nothing() {
    let Some(app) = embedded("allow_anonymous_access = true\n").await else {
        return;
    };
    populate(&app);
    let admin = token_for(&app, "admin", "admin-pw", "admin").await;
    let create = |name: &str, vis: &str| {
        app.request(Method::POST, "/v2/images")
            .header("x-auth-token", &admin)
            .json(&json!({"name": name, "visibility": vis}))
    };
    let public: Value = app
        .send(create("pub", "public"))
        .await
        .json()
        .await
        .unwrap();
    let private: Value = app
        .send(create("priv", "private"))
        .await
        .json()
        .await
        .unwrap();

    // No token: anonymous, no roles. Glance's defaults need `reader` for lists and reads.
    assert_eq!(app.get("/v2/images").await.status(), StatusCode::FORBIDDEN);
    let show = |id: &Value| format!("/v2/images/{}", id.as_str().unwrap());
    assert_eq!(
        app.get(&show(&public["id"])).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&show(&private["id"])).await.status(),
        StatusCode::NOT_FOUND
    );
    let resp = app.post_json("/v2/images", &json!({"name": "anon"})).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // A bad token is still refused.
    assert_eq!(
        status_with(&app, "/v2/images", "garbage").await,
        StatusCode::UNAUTHORIZED
    );
}

fn server_logs(app: &TestApp) -> String {
    let root = &app.cluster().unwrap().root;
    let mut all = String::new();
    for entry in std::fs::read_dir(root).unwrap().flatten() {
        let log = entry.path().join("stderr.log");
        if let Ok(s) = std::fs::read_to_string(log) {
            all.push_str(&s);
        }
    }
    all
}

/// Log lines carry the request id the client saw (and the route and status), so a refused
/// token or a 500 can be matched to a client's report.
#[tokio::test]
async fn logs_carry_the_request_id() {
    let Some(app) = embedded("").await else {
        return;
    };
    let rid = format!("req-{}", crate::helpers::new_uuid());
    let resp = app
        .send(
            app.request(
                Method::GET,
                "/v2/images/ffffffff-ffff-ffff-ffff-ffffffffffff",
            )
            .header("x-auth-token", "not-a-token")
            .header("x-openstack-request-id", &rid),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["x-openstack-request-id"], rid.as_str());
    let log = app.server_log();
    let line = log
        .lines()
        .find(|l| l.contains("token refused"))
        .unwrap_or_else(|| panic!("no refusal logged:\n{log}"));
    assert!(line.contains(&rid), "{line}");
    assert!(line.contains("method=GET"), "{line}");
    // The token is never logged.
    assert!(!log.contains("not-a-token"), "{log}");
}

/// Passwords can stay off the command line: from a file, or from standard input.
#[tokio::test]
async fn passwords_from_a_file_or_stdin() {
    let Some(app) = embedded("").await else {
        return;
    };
    populate(&app);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "carol-pw\n").unwrap();
    let path = file.to_str().unwrap();
    app.run_vela(&[
        "identity",
        "user",
        "create",
        "carol",
        "--password-file",
        path,
        "--project",
        "alpha",
    ]);
    token_for(&app, "carol", "carol-pw", "alpha").await;
    // `-` reads standard input; run_vela gives none, so the command must refuse an empty one.
    let scratch = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vela"))
        .arg("--data-dir")
        .arg(scratch.path())
        .args([
            "identity",
            "user",
            "set-password",
            "carol",
            "--password-file",
            "-",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the password is empty"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Failed logins are counted per user (and per address): past the limit the user gets 429
/// with Retry-After before any password is checked; other users are not affected. Failures
/// are logged with the user name and client address, never the password.
#[tokio::test]
async fn failed_logins_are_throttled_and_logged() {
    let Some(app) = embedded("login_failures_per_user = 3\n").await else {
        return;
    };
    populate(&app);
    let scope = project_scope("alpha");
    for _ in 0..3 {
        let (status, _, _) =
            issue(&app, &password_auth("alice", "wrong-pw-xyz", scope.clone())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let resp = app
        .post_json(
            "/v3/auth/tokens",
            &password_auth("alice", "alice-pw", scope.clone()),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    token_for(&app, "admin", "admin-pw", "admin").await;
    let log = app.server_log();
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("password authentication failed"))
        .collect();
    assert_eq!(failed.len(), 3, "{log}");
    assert!(
        failed[0].contains("user=alice") && failed[0].contains("client=127.0.0.1"),
        "{}",
        failed[0]
    );
    assert!(!log.contains("wrong-pw-xyz"), "{log}");
}

/// Keystone's lockout: failures in a row lock the user for a while, right password or not.
#[tokio::test]
async fn lockout_after_failures_in_a_row() {
    let Some(app) = embedded(
        "login_failures_per_user = 0\nlockout_failure_attempts = 2\nlockout_duration_secs = 2\n",
    )
    .await
    else {
        return;
    };
    populate(&app);
    let scope = project_scope("alpha");
    for _ in 0..2 {
        let (status, _, _) = issue(&app, &password_auth("alice", "nope", scope.clone())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _, _) = issue(&app, &password_auth("alice", "alice-pw", scope.clone())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    token_for(&app, "alice", "alice-pw", "alpha").await;
}

/// 200 wrong-password logins at once (no throttling, so each is hashed): memory stays
/// bounded (argon2 runs a few at a time) and other requests are still answered.
#[tokio::test]
async fn login_flood_keeps_memory_bounded() {
    let Some(app) = embedded("login_failures_per_user = 0\nlogin_failures_per_address = 0\n").await
    else {
        return;
    };
    populate(&app);
    let token = token_for(&app, "alice", "alice-pw", "alpha").await;
    let flood: Vec<_> = (0..200)
        .map(|i| {
            let client = app.client.clone();
            let url = app.url("/v3/auth/tokens");
            let body = password_auth(&format!("user{i}"), "wrong", None);
            tokio::spawn(async move {
                client
                    .post(url)
                    .json(&body)
                    .send()
                    .await
                    .map(|r| r.status())
            })
        })
        .collect();
    // While they run, the API answers.
    let started = std::time::Instant::now();
    assert_eq!(
        status_with(&app, "/v2/images", &token).await,
        StatusCode::OK
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    for f in flood {
        assert_eq!(f.await.unwrap().unwrap(), StatusCode::UNAUTHORIZED);
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", app.pid().unwrap())).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    eprintln!("login flood: peak RSS {peak_kib} KiB");
    assert!(peak_kib < 192 * 1024, "peak RSS {peak_kib} KiB");
}
