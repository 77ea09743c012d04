//! Property protections and operator policy files, including files that must stop startup.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{expect_error, expect_json, Persona, TestApp, PATCH_V21};

const PROTECTIONS: &str = "\
# admins only
[^x_admin_.*]
create = admin
read = admin
update = admin
delete = admin

# members may set it once, everyone reads it, nobody changes it, admins remove it
[^x_ro_.*]
create = admin,member
read = @
update = !
delete = admin

[.*]
create = @
read = @
update = @
delete = @
";

async fn protected_app(extra: &str) -> Option<(TestApp, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("property-protections.conf");
    std::fs::write(&file, PROTECTIONS).unwrap();
    let app = TestApp::spawn_with_config(&format!(
        "[auth]\nproperty_protection_file = \"{}\"\n{extra}",
        file.display()
    ))
    .await;
    (!app.is_external()).then_some((app, dir))
}

async fn create_as(app: &TestApp, who: &Persona, body: Value) -> reqwest::Response {
    app.send(
        app.request(Method::POST, "/v2/images")
            .headers(who.headers())
            .json(&body),
    )
    .await
}

async fn patch_as(app: &TestApp, who: &Persona, id: &str, body: Value) -> reqwest::Response {
    app.send(
        app.patch_request(id, PATCH_V21, &body)
            .headers(who.headers()),
    )
    .await
}

async fn show_as(app: &TestApp, who: &Persona, id: &str) -> Value {
    let resp = app
        .send(
            app.request(Method::GET, &format!("/v2/images/{id}"))
                .headers(who.headers()),
        )
        .await;
    expect_json(resp, StatusCode::OK).await
}

#[tokio::test]
async fn property_protections_by_role() {
    let Some((app, _dir)) = protected_app("").await else {
        return;
    };
    let project = app.name("proj");
    let admin = Persona::admin(&project);
    let member = Persona::member(&project);

    // Creating a protected property needs its create permission.
    let resp = create_as(&app, &member, json!({"name": "m", "x_admin_a": "1"})).await;
    let msg = expect_error(resp, StatusCode::FORBIDDEN).await;
    assert!(
        msg.starts_with("Attribute 'x_admin_a' is reserved."),
        "{msg}"
    );

    let resp = create_as(
        &app,
        &admin,
        json!({"name": "a", "x_admin_a": "1", "x_ro_b": "2", "plain": "3"}),
    )
    .await;
    let img = expect_json(resp, StatusCode::CREATED).await;
    let id = img["id"].as_str().unwrap();
    assert_eq!(img["x_admin_a"], "1");

    // A member of the owning project does not see what it may not read.
    let seen = show_as(&app, &member, id).await;
    assert!(seen.get("x_admin_a").is_none(), "{seen}");
    assert_eq!(
        (seen["x_ro_b"].as_str(), seen["plain"].as_str()),
        (Some("2"), Some("3"))
    );
    let list: Value = app
        .send(
            app.request(Method::GET, "/v2/images")
                .headers(member.headers()),
        )
        .await
        .json()
        .await
        .unwrap();
    let listed = list["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id)
        .unwrap();
    assert!(listed.get("x_admin_a").is_none());
    // Filtering on it tells nothing either: no image matches, whatever the value; admins
    // still filter on it.
    for (who, value, expected) in [
        (&member, "1", 0),
        (&member, "2", 0),
        (&admin, "1", 1),
        (&admin, "2", 0),
    ] {
        let resp = app
            .send(
                app.request(Method::GET, &format!("/v2/images?x_admin_a={value}"))
                    .headers(who.headers()),
            )
            .await;
        let found = expect_json(resp, StatusCode::OK).await;
        let ids: Vec<&Value> = found["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| &i["id"])
            .filter(|i| *i == id)
            .collect();
        assert_eq!(ids.len(), expected, "{value}: {found}");
    }
    // A name that merely contains os_glance is not the service's: the built-in rule is
    // anchored, so `^x_admin_` governs this one.
    let resp = create_as(
        &app,
        &member,
        json!({"name": "m", "x_admin_os_glance": "1"}),
    )
    .await;
    expect_error(resp, StatusCode::FORBIDDEN).await;

    // Update and delete need their own permissions; an unreadable property does not exist
    // for the caller.
    for (ops, status) in [
        (
            json!([{"op": "replace", "path": "/x_ro_b", "value": "9"}]),
            StatusCode::FORBIDDEN,
        ),
        (
            json!([{"op": "remove", "path": "/x_ro_b"}]),
            StatusCode::FORBIDDEN,
        ),
        (
            json!([{"op": "add", "path": "/x_admin_a", "value": "9"}]),
            StatusCode::FORBIDDEN,
        ),
        (
            json!([{"op": "remove", "path": "/x_admin_a"}]),
            StatusCode::CONFLICT,
        ),
    ] {
        let resp = patch_as(&app, &member, id, ops.clone()).await;
        assert_eq!(
            resp.status(),
            status,
            "{ops}: {}",
            resp.text().await.unwrap()
        );
    }

    // Changing other properties keeps the hidden ones.
    let resp = patch_as(
        &app,
        &member,
        id,
        json!([{"op": "replace", "path": "/plain", "value": "4"},
               {"op": "add", "path": "/x_ro_new", "value": "5"}]),
    )
    .await;
    let patched = expect_json(resp, StatusCode::OK).await;
    assert!(patched.get("x_admin_a").is_none());
    let full = show_as(&app, &admin, id).await;
    assert_eq!(full["x_admin_a"], "1");
    assert_eq!(full["plain"], "4");
    assert_eq!(full["x_ro_new"], "5");

    // Admins hold every permission but `!`.
    let resp = patch_as(
        &app,
        &admin,
        id,
        json!([{"op": "remove", "path": "/x_ro_b"}, {"op": "remove", "path": "/x_admin_a"}]),
    )
    .await;
    let v = expect_json(resp, StatusCode::OK).await;
    assert!(v.get("x_ro_b").is_none() && v.get("x_admin_a").is_none());
    let resp = patch_as(
        &app,
        &admin,
        id,
        json!([{"op": "replace", "path": "/x_ro_new", "value": "6"}]),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn property_protections_by_policy() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "\"may_tag_os\": \"role:admin or role:os_curator\"\n",
    )
    .unwrap();
    let protections = dir.path().join("protections.conf");
    std::fs::write(
        &protections,
        "[^os_.*]\ncreate = may_tag_os\nread = @\nupdate = may_tag_os\ndelete = !\n\n\
         [.*]\ncreate = @\nread = @\nupdate = @\ndelete = @\n",
    )
    .unwrap();
    let app = TestApp::spawn_with_config(&format!(
        "[auth]\npolicy_file = \"{}\"\nproperty_protection_file = \"{}\"\n\
         property_protection_rule_format = \"policies\"\n",
        policy.display(),
        protections.display()
    ))
    .await;
    if app.is_external() {
        return;
    }
    let project = app.name("proj");
    let member = Persona::member(&project);
    let curator = Persona {
        roles: "member,reader,os_curator".into(),
        ..Persona::member(&project)
    };
    let resp = create_as(&app, &member, json!({"os_distro": "x"})).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = create_as(&app, &curator, json!({"os_distro": "x", "other": "y"})).await;
    let img = expect_json(resp, StatusCode::CREATED).await;
    let id = img["id"].as_str().unwrap();
    let resp = patch_as(
        &app,
        &curator,
        id,
        json!([{"op": "remove", "path": "/os_distro"}]),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = patch_as(
        &app,
        &curator,
        id,
        json!([{"op": "replace", "path": "/os_distro", "value": "z"}]),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
}

/// Starts `vela serve` with `config` and expects it to refuse, printing `needle`.
fn assert_refuses_to_start(config: &str, needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(&cfg, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vela"))
        .arg("--config")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("vela started despite {config}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(err.contains(needle), "expected '{needle}' in: {err}");
}

#[test]
fn bad_policy_and_protection_files_stop_startup() {
    if std::env::var("VELA_TEST_URL").is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let bad_rule = file("bad-rule.yaml", "get_image: \"role:admin or\"\n");
    assert_refuses_to_start(
        &format!("[auth]\nmode = \"noauth\"\npolicy_file = \"{bad_rule}\"\n"),
        "policy rule 'get_image' is invalid",
    );
    let not_map = file("not-map.yaml", "- just\n- a list\n");
    assert_refuses_to_start(
        &format!("[auth]\nmode = \"noauth\"\npolicy_file = \"{not_map}\"\n"),
        "is not a mapping of rule names to rule strings",
    );
    assert_refuses_to_start(
        "[auth]\nmode = \"noauth\"\npolicy_file = \"/nonexistent/policy.yaml\"\n",
        "cannot read policy file /nonexistent/policy.yaml",
    );
    let bad_re = file(
        "bad-re.conf",
        "[(]\ncreate = @\nread = @\nupdate = @\ndelete = @\n",
    );
    assert_refuses_to_start(
        &format!("[auth]\nmode = \"noauth\"\nproperty_protection_file = \"{bad_re}\"\n"),
        "is not a valid regular expression",
    );
    let missing = file("missing.conf", "[.*]\ncreate = @\nread = @\nupdate = @\n");
    assert_refuses_to_start(
        &format!("[auth]\nmode = \"noauth\"\nproperty_protection_file = \"{missing}\"\n"),
        "[.*] has no 'delete' permission",
    );
    let both = file(
        "both.conf",
        "[.*]\ncreate = @,!\nread = @\nupdate = @\ndelete = @\n",
    );
    assert_refuses_to_start(
        &format!("[auth]\nmode = \"noauth\"\nproperty_protection_file = \"{both}\"\n"),
        "mutually exclusive",
    );
}
