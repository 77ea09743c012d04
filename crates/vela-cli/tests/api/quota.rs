//! Per-project quotas with unified limits (`[quota] enabled`): Glance's checks and 413s on
//! create, upload, stage and import, `/v2/info/usage`, limits set with `vela identity limit`
//! (noauth) and through `/v3/limits` (embedded identity), and concurrent uploads on two nodes
//! that together never pass a project's `image_size_total`.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;
use crate::identity::{populate, token_for, with_token};

const MIB: usize = 1024 * 1024;

const QUOTA: &str = "[quota]\nenabled = true\n\
                     [images]\nenabled_import_methods = [\"glance-direct\", \"copy-image\"]\n";

/// Requests of `project` (a member) on `app`.
struct Caller<'a> {
    app: &'a TestApp,
    who: Persona,
}

impl<'a> Caller<'a> {
    fn new(app: &'a TestApp, project: &str) -> Self {
        Caller {
            app,
            who: Persona::member(project),
        }
    }

    fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.app.request(method, path).headers(self.who.headers())
    }

    async fn create(&self) -> reqwest::Response {
        let body = json!({"name": "q", "disk_format": "raw", "container_format": "bare"});
        self.app
            .send(self.req(Method::POST, "/v2/images").json(&body))
            .await
    }

    async fn create_ok(&self) -> String {
        let img = expect_json(self.create().await, StatusCode::CREATED).await;
        img["id"].as_str().unwrap().to_owned()
    }

    /// Uploads (or stages) `len` bytes: chunked (no declared size) or with Content-Length.
    async fn send_data(
        &self,
        id: &str,
        what: &str,
        len: usize,
        chunked: bool,
    ) -> reqwest::Response {
        let data = test_data(len);
        let rb = self
            .req(Method::PUT, &format!("/v2/images/{id}/{what}"))
            .header("content-type", "application/octet-stream");
        let rb = if chunked {
            let chunks = data
                .chunks(64 * 1024)
                .map(|c| Ok::<_, std::io::Error>(c.to_vec()));
            rb.body(reqwest::Body::wrap_stream(futures::stream::iter(
                chunks.collect::<Vec<_>>(),
            )))
        } else {
            rb.body(data)
        };
        self.app.send(rb).await
    }

    async fn usage(&self) -> Value {
        let resp = self.app.send(self.req(Method::GET, "/v2/info/usage")).await;
        expect_json(resp, StatusCode::OK).await["usage"].clone()
    }

    async fn status(&self, id: &str) -> String {
        let resp = self
            .app
            .send(self.req(Method::GET, &format!("/v2/images/{id}")))
            .await;
        expect_json(resp, StatusCode::OK).await["status"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

fn limit(app: &TestApp, args: &[&str]) {
    let mut all = vec!["identity", "limit"];
    all.extend_from_slice(args);
    app.run_vela(&all);
}

async fn refused(resp: reqwest::Response, resource: &str) -> String {
    let msg = expect_error(resp, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert!(
        msg.starts_with("The request returned a 413 Request Entity Too Large.")
            && msg.contains(&format!("Resource {resource} is over limit of ")),
        "{msg}"
    );
    msg
}

#[tokio::test]
async fn quotas_count_creates_uploads_and_stages_as_glance_does() {
    let Some(mut nodes) = TestApp::spawn_cluster_with(1, QUOTA).await else {
        return;
    };
    let app = nodes.pop().unwrap();
    let p = Caller::new(&app, &format!("{}-p", app.prefix));

    // No limit at all allows nothing (oslo.limit's rule), and says so in Glance's words.
    let u = p.usage().await;
    assert_eq!(
        u["image_count_total"],
        json!({"usage": 0, "limit": 0}),
        "{u}"
    );
    let msg = refused(p.create().await, "image_count_total").await;
    assert!(
        msg.contains(&format!(
            "\n\nThe response body:\nProject {} is over a limit for [Resource image_count_total is over limit of 0 due to current usage 0 and delta 1]",
            p.who.project
        )),
        "{msg}"
    );

    limit(&app, &["default", "image_count_total", "3"]);
    limit(&app, &["default", "image_size_total", "1"]);
    limit(&app, &["default", "image_stage_total", "1"]);
    limit(&app, &["default", "image_count_uploading", "-1"]);
    let ids = [
        p.create_ok().await,
        p.create_ok().await,
        p.create_ok().await,
    ];
    refused(p.create().await, "image_count_total").await;
    limit(&app, &["set", &p.who.project, "image_count_total", "10"]);

    // image_size_total, as tempest's test_image_size_quota: usage at the limit still lets an
    // upload of unknown size through; over it, nothing goes. A declared size counts at once.
    assert_eq!(p.send_data(&ids[0], "file", MIB, true).await.status(), 204);
    assert_eq!(p.send_data(&ids[1], "file", MIB, true).await.status(), 204);
    refused(
        p.send_data(&ids[2], "file", MIB, true).await,
        "image_size_total",
    )
    .await;
    assert_eq!(p.status(&ids[2]).await, "queued");
    limit(&app, &["set", &p.who.project, "image_size_total", "2"]);
    let msg = refused(
        p.send_data(&ids[2], "file", MIB, false).await,
        "image_size_total",
    )
    .await;
    assert!(msg.contains("current usage 2 and delta 1"), "{msg}");
    limit(&app, &["set", &p.who.project, "image_size_total", "3"]);
    assert_eq!(p.send_data(&ids[2], "file", MIB, false).await.status(), 204);

    // Staging counts against image_stage_total, and uploads in flight against
    // image_count_uploading (the image itself included).
    let staged = [
        p.create_ok().await,
        p.create_ok().await,
        p.create_ok().await,
    ];
    assert_eq!(
        p.send_data(&staged[0], "stage", MIB, true).await.status(),
        204
    );
    assert_eq!(
        p.send_data(&staged[1], "stage", MIB, true).await.status(),
        204
    );
    refused(
        p.send_data(&staged[2], "stage", MIB, true).await,
        "image_stage_total",
    )
    .await;
    limit(&app, &["set", &p.who.project, "image_stage_total", "-1"]);
    limit(&app, &["set", &p.who.project, "image_count_uploading", "2"]);
    let msg = refused(
        p.send_data(&staged[2], "stage", 10, false).await,
        "image_count_uploading",
    )
    .await;
    assert!(msg.contains("current usage 3 and delta 0"), "{msg}");
    assert_eq!(p.status(&staged[2]).await, "queued");

    let u = p.usage().await;
    assert_eq!(
        u["image_size_total"],
        json!({"usage": 3, "limit": 3}),
        "{u}"
    );
    assert_eq!(
        u["image_stage_total"],
        json!({"usage": 2, "limit": -1}),
        "{u}"
    );
    assert_eq!(
        u["image_count_total"],
        json!({"usage": 6, "limit": 10}),
        "{u}"
    );
    assert_eq!(
        u["image_count_uploading"],
        json!({"usage": 2, "limit": 2}),
        "{u}"
    );

    // Importing checks image_size_total first (the project is at its limit of 3 MiB with
    // no delta, so the request is accepted), then the staged size when the import starts.
    let resp = app
        .send(
            p.req(Method::POST, &format!("/v2/images/{}/import", staged[0]))
                .json(&json!({"method": {"name": "glance-direct"}})),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let task = wait_for_task_end(&p, &staged[0]).await;
    assert_eq!(task["status"], "failure", "{task}");
    let m = task["message"].as_str().unwrap();
    assert!(
        m.contains(
            "Resource image_size_total is over limit of 3 due to current usage 3 and delta 1"
        ),
        "{m}"
    );
    // As Glance after a quota failure of an import: the image goes back to `queued`.
    assert_eq!(p.status(&staged[0]).await, "queued");
    limit(&app, &["set", &p.who.project, "image_size_total", "2"]);
    let resp = app
        .send(
            p.req(Method::POST, &format!("/v2/images/{}/import", staged[0]))
                .json(&json!({"method": {"name": "glance-direct"}})),
        )
        .await;
    refused(resp, "image_size_total").await;

    // Another project has its own usage under the same defaults; deleting frees quota.
    let other = Caller::new(&app, &format!("{}-other", app.prefix));
    let u = other.usage().await;
    assert_eq!(
        u["image_count_total"],
        json!({"usage": 0, "limit": 3}),
        "{u}"
    );
    for id in &ids {
        let resp = app
            .send(p.req(Method::DELETE, &format!("/v2/images/{id}")))
            .await;
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    }
    assert_eq!(p.usage().await["image_size_total"]["usage"], 0);
}

async fn wait_for_task_end(p: &Caller<'_>, id: &str) -> Value {
    let deadline = std::time::Instant::now() + IMPORT_DEADLINE;
    loop {
        let resp = p
            .app
            .send(p.req(Method::GET, &format!("/v2/images/{id}/tasks")))
            .await;
        let tasks = expect_json(resp, StatusCode::OK).await;
        if let Some(t) = tasks["tasks"].as_array().and_then(|a| {
            a.iter()
                .find(|t| t["status"] == "failure" || t["status"] == "success")
        }) {
            return t.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "task of {id}: {tasks}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Uploads to `ids` at once, alternating between two nodes; returns how many succeeded, after
/// checking that every other one got the quota's 413 and went back to `queued`.
async fn upload_all(nodes: &[TestApp], project: &str, ids: &[String], chunked: bool) -> usize {
    let uploads = ids.iter().enumerate().map(|(i, id)| {
        let c = Caller::new(&nodes[i % nodes.len()], project);
        async move {
            let resp = c.send_data(id, "file", MIB, chunked).await;
            let status = resp.status();
            if status != StatusCode::NO_CONTENT {
                refused(resp, "image_size_total").await;
                assert_eq!(c.status(id).await, "queued");
            }
            status == StatusCode::NO_CONTENT
        }
    });
    futures::future::join_all(uploads)
        .await
        .into_iter()
        .filter(|ok| *ok)
        .count()
}

#[tokio::test]
async fn twenty_parallel_uploads_on_two_nodes_stay_within_image_size_total() {
    let Some(nodes) = TestApp::spawn_cluster_with(2, QUOTA).await else {
        return;
    };
    let project = format!("{}-par", nodes[0].prefix);
    limit(&nodes[0], &["default", "image_count_total", "-1"]);
    limit(&nodes[0], &["default", "image_stage_total", "-1"]);
    limit(&nodes[0], &["default", "image_count_uploading", "-1"]);
    limit(&nodes[0], &["set", &project, "image_size_total", "10"]);
    let p = Caller::new(&nodes[0], &project);
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(p.create_ok().await);
    }

    // Declared sizes: every upload passes the early check on an empty project, and the
    // checks at commit, one after the other, let exactly ten in.
    assert_eq!(upload_all(&nodes, &project, &ids, false).await, 10);
    assert_eq!(
        p.usage().await["image_size_total"],
        json!({"usage": 10, "limit": 10})
    );

    // Unknown sizes (chunked): Glance's rule lets the upload that finds the project exactly
    // at its limit through, and no other.
    limit(&nodes[0], &["set", &project, "image_size_total", "15"]);
    let queued: Vec<String> = {
        let mut q = Vec::new();
        for id in &ids {
            if p.status(id).await == "queued" {
                q.push(id.clone());
            }
        }
        q
    };
    assert_eq!(queued.len(), 10);
    assert_eq!(upload_all(&nodes, &project, &queued, true).await, 6);
    assert_eq!(
        p.usage().await["image_size_total"],
        json!({"usage": 16, "limit": 15})
    );
}

#[tokio::test]
async fn embedded_identity_serves_unified_limits_like_keystone() {
    let Some(app) = crate::identity::embedded(QUOTA).await else {
        return;
    };
    populate(&app);
    let admin = token_for(&app, "admin", "admin-pw", "admin").await;
    let alice = token_for(&app, "alice", "alice-pw", "alpha").await;
    let call = |token: &str, method: Method, path: &str, body: Option<Value>| {
        let mut rb = app.request(method, path).header("x-auth-token", token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        app.send(rb)
    };

    // The clients find the image service and the region by name.
    let resp = with_token(&app, Method::GET, "/v3/services?name=glance", &admin).await;
    let services = expect_json(resp, StatusCode::OK).await;
    let service = services["services"][0]["id"].as_str().unwrap().to_owned();
    let resp = with_token(&app, Method::GET, "/v3/regions/RegionOne", &admin).await;
    expect_json(resp, StatusCode::OK).await;

    // Registered limits: admins write them, anyone with a token reads them.
    let body = json!({"registered_limits": [
        {"service_id": service, "region_id": "RegionOne", "resource_name": "image_count_total", "default_limit": 1},
        {"service_id": service, "resource_name": "image_size_total", "default_limit": 100},
        {"service_id": service, "resource_name": "image_stage_total", "default_limit": 100},
        {"service_id": service, "resource_name": "image_count_uploading", "default_limit": 100},
    ]});
    let resp = call(
        &alice,
        Method::POST,
        "/v3/registered_limits",
        Some(body.clone()),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = call(
        &admin,
        Method::POST,
        "/v3/registered_limits",
        Some(body.clone()),
    )
    .await;
    let made = expect_json(resp, StatusCode::CREATED).await;
    assert_eq!(made["registered_limits"].as_array().unwrap().len(), 4);
    let resp = call(&admin, Method::POST, "/v3/registered_limits", Some(body)).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    // Bad values are 400s: a limit below -1, an unknown service or region, an overlong name,
    // an empty or oversized list, a body that is not JSON.
    let long = "x".repeat(256);
    for bad in [
        json!({"registered_limits": [{"service_id": service, "resource_name": "r1", "default_limit": -2}]}),
        json!({"registered_limits": [{"service_id": "nope", "resource_name": "r2", "default_limit": 1}]}),
        json!({"registered_limits": [{"service_id": service, "region_id": "Elsewhere", "resource_name": "r3", "default_limit": 1}]}),
        json!({"registered_limits": [{"service_id": service, "resource_name": long, "default_limit": 1}]}),
        json!({"registered_limits": [{"service_id": service, "resource_name": "r4", "default_limit": "1"}]}),
        json!({"registered_limits": []}),
        json!({"registered_limits": vec![json!({}); 101]}),
        json!("not an object"),
    ] {
        let resp = call(
            &admin,
            Method::POST,
            "/v3/registered_limits",
            Some(bad.clone()),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let resp = with_token(
        &app,
        Method::GET,
        "/v3/registered_limits?resource_name=image_count_total",
        &alice,
    )
    .await;
    let listed = expect_json(resp, StatusCode::OK).await;
    assert_eq!(
        listed["registered_limits"][0]["default_limit"], 1,
        "{listed}"
    );
    assert_eq!(
        listed["registered_limits"][0]["region_id"], "RegionOne",
        "{listed}"
    );

    // Alice's project gets one image under the default.
    let create = |token: String| {
        let app = &app;
        async move {
            let body = json!({"name": "e", "disk_format": "raw", "container_format": "bare"});
            app.send(
                app.request(Method::POST, "/v2/images")
                    .header("x-auth-token", token)
                    .json(&body),
            )
            .await
        }
    };
    expect_json(create(alice.clone()).await, StatusCode::CREATED).await;
    refused(create(alice.clone()).await, "image_count_total").await;

    // A project limit raises it; only admins set it, and alice sees only her project's.
    let resp = with_token(&app, Method::GET, "/v3/projects?name=alpha", &admin).await;
    let alpha = expect_json(resp, StatusCode::OK).await["projects"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = json!({"limits": [{"service_id": service, "region_id": "RegionOne", "project_id": alpha,
                                   "resource_name": "image_count_total", "resource_limit": 3}]});
    let resp = call(&alice, Method::POST, "/v3/limits", Some(body.clone())).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = call(&admin, Method::POST, "/v3/limits", Some(body)).await;
    let made = expect_json(resp, StatusCode::CREATED).await;
    let limit_id = made["limits"][0]["id"].as_str().unwrap().to_owned();
    let resp = with_token(&app, Method::GET, "/v3/limits", &alice).await;
    let listed = expect_json(resp, StatusCode::OK).await;
    assert_eq!(listed["limits"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["limits"][0]["resource_limit"], 3);
    expect_json(create(alice.clone()).await, StatusCode::CREATED).await;

    let resp = call(
        &admin,
        Method::PATCH,
        &format!("/v3/limits/{limit_id}"),
        Some(json!({"limit": {"resource_limit": 2}})),
    )
    .await;
    assert_eq!(
        expect_json(resp, StatusCode::OK).await["limit"]["resource_limit"],
        2
    );
    refused(create(alice.clone()).await, "image_count_total").await;

    let resp = with_token(&app, Method::GET, "/v2/info/usage", &alice).await;
    let usage = expect_json(resp, StatusCode::OK).await;
    assert_eq!(
        usage["usage"]["image_count_total"],
        json!({"usage": 2, "limit": 2}),
        "{usage}"
    );
    assert_eq!(
        usage["usage"]["image_size_total"],
        json!({"usage": 0, "limit": 100}),
        "{usage}"
    );

    let resp = call(
        &admin,
        Method::DELETE,
        &format!("/v3/limits/{limit_id}"),
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = with_token(&app, Method::GET, &format!("/v3/limits/{limit_id}"), &admin).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    refused(create(alice).await, "image_count_total").await;
}

#[tokio::test]
async fn without_quotas_usage_is_empty() {
    let app = TestApp::spawn().await;
    let resp = app.get("/v2/info/usage").await;
    assert_eq!(
        expect_json(resp, StatusCode::OK).await,
        json!({"usage": {}})
    );
}
