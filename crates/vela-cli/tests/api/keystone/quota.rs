//! Quotas in Keystone mode: unified limits set through Keystone's API (registered and
//! project limits of an image endpoint made for this test), read by Vela with its service
//! user's system-scoped token, enforced on create and upload, also under twenty uploads at
//! once, and reported at `/v2/info/usage`.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::{call, config, keystone, token, Keystone};
use crate::helpers::*;

/// An admin session on Keystone with a system-scoped token (limits are a system admin's).
struct Admin {
    url: String,
    token: String,
    http: reqwest::Client,
}

impl Admin {
    async fn login(ks: &Keystone) -> Admin {
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "password": ks.admin_password, "domain": {"id": "default"}}}},
            "scope": {"system": {"all": true}}}});
        let http = reqwest::Client::new();
        let resp = http
            .post(format!("{}/auth/tokens?nocatalog", ks.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED, "system token for admin");
        let token = resp.headers()["x-subject-token"]
            .to_str()
            .unwrap()
            .to_owned();
        Admin {
            url: ks.url.clone(),
            token,
            http,
        }
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let mut rb = self
            .http
            .request(method.clone(), format!("{}{path}", self.url))
            .header("x-auth-token", &self.token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }
}

#[tokio::test]
async fn keystone_limits_are_enforced_and_reported() {
    let Some(ks) = keystone() else { return };
    let admin = Admin::login(&ks).await;
    // A service and endpoint of this test's own, so its registered limits touch nobody else.
    let tag = &new_uuid()[..8];
    let service = admin
        .send(
            Method::POST,
            "/services",
            Some(json!({"service": {"name": format!("glance-{tag}"), "type": format!("image-{tag}")}})),
        )
        .await["service"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let endpoint = admin
        .send(
            Method::POST,
            "/endpoints",
            Some(
                json!({"endpoint": {"service_id": service, "interface": "public",
                                     "url": "http://127.0.0.1:9292", "region_id": "RegionOne"}}),
            ),
        )
        .await["endpoint"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let registered = |name: &str, limit: i64| {
        json!({"service_id": service, "region_id": "RegionOne", "resource_name": name,
               "default_limit": limit})
    };
    admin
        .send(
            Method::POST,
            "/registered_limits",
            Some(json!({"registered_limits": [
                registered("image_count_total", 1),
                registered("image_size_total", 1),
                registered("image_stage_total", 10),
                registered("image_count_uploading", 100),
            ]})),
        )
        .await;

    // Limits are cached for a minute; a refusal is confirmed with fresh ones.
    let extra =
        format!("\n[quota]\nenabled = true\nendpoint_id = \"{endpoint}\"\ncache_secs = 60\n");
    let app = TestApp::spawn_with_config(&config(&ks, &ks.url, &extra)).await;
    if app.is_external() {
        return;
    }
    let (member, body) = token(&ks, "alpha-member", "secret", "alpha").await;
    let alpha = body["token"]["project"]["id"].as_str().unwrap().to_owned();
    let create = || {
        call(
            &app,
            Method::POST,
            "/v2/images",
            &member,
            Some(json!({"name": "q", "disk_format": "raw", "container_format": "bare"})),
        )
    };
    let first = expect_json(create().await, StatusCode::CREATED).await;
    let msg = expect_error(create().await, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert!(
        msg.contains(&format!("Project {alpha} is over a limit for [Resource image_count_total is over limit of 1 due to current usage 1 and delta 1]")),
        "{msg}"
    );

    // A project limit raises it at once, cache or not.
    let limit_id = admin
        .send(
            Method::POST,
            "/limits",
            Some(
                json!({"limits": [{"service_id": service, "region_id": "RegionOne",
                "project_id": alpha, "resource_name": "image_count_total", "resource_limit": 30}]}),
            ),
        )
        .await["limits"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut ids = vec![first["id"].as_str().unwrap().to_owned()];
    for _ in 0..19 {
        let img = expect_json(create().await, StatusCode::CREATED).await;
        ids.push(img["id"].as_str().unwrap().to_owned());
    }

    // Twenty uploads of 1 MiB at once, sizes declared, under image_size_total = 5: five land.
    admin
        .send(
            Method::POST,
            "/limits",
            Some(
                json!({"limits": [{"service_id": service, "region_id": "RegionOne",
                "project_id": alpha, "resource_name": "image_size_total", "resource_limit": 5}]}),
            ),
        )
        .await;
    let uploads = ids.iter().map(|id| {
        let app = &app;
        let member = &member;
        async move {
            let resp = app
                .send(
                    app.request(Method::PUT, &format!("/v2/images/{id}/file"))
                        .header("x-auth-token", member.as_str())
                        .header("content-type", "application/octet-stream")
                        .body(test_data(1024 * 1024)),
                )
                .await;
            let status = resp.status();
            if status != StatusCode::NO_CONTENT {
                let msg = expect_error(resp, StatusCode::PAYLOAD_TOO_LARGE).await;
                assert!(
                    msg.contains("Resource image_size_total is over limit of 5"),
                    "{msg}"
                );
            }
            status == StatusCode::NO_CONTENT
        }
    });
    let landed = futures::future::join_all(uploads)
        .await
        .into_iter()
        .filter(|ok| *ok)
        .count();
    assert_eq!(landed, 5);

    let resp = call(&app, Method::GET, "/v2/info/usage", &member, None).await;
    let usage = expect_json(resp, StatusCode::OK).await["usage"].clone();
    assert_eq!(
        usage["image_size_total"],
        json!({"usage": 5, "limit": 5}),
        "{usage}"
    );
    assert_eq!(
        usage["image_count_total"],
        json!({"usage": 20, "limit": 30}),
        "{usage}"
    );
    assert_eq!(
        usage["image_stage_total"],
        json!({"usage": 0, "limit": 10}),
        "{usage}"
    );
    assert_eq!(
        usage["image_count_uploading"],
        json!({"usage": 0, "limit": 100}),
        "{usage}"
    );

    // Another project gets the registered defaults.
    let (beta, _) = token(&ks, "beta-member", "secret", "beta").await;
    let resp = call(&app, Method::GET, "/v2/info/usage", &beta, None).await;
    let usage = expect_json(resp, StatusCode::OK).await["usage"].clone();
    assert_eq!(
        usage["image_count_total"],
        json!({"usage": 0, "limit": 1}),
        "{usage}"
    );

    admin
        .send(Method::DELETE, &format!("/limits/{limit_id}"), None)
        .await;
    admin
        .send(Method::DELETE, &format!("/endpoints/{endpoint}"), None)
        .await;
}
