//! The tasks API (`/v2/tasks`, deprecated but still served to admins) and the tasks of one image
//! (`GET /v2/images/{id}/tasks`): task representations, listing, filters and their errors, the
//! legacy `import` task, and the refusal to delete. Checked against Glance 33
//! (`scripts/glance.sh`).

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{
    expect_error, expect_json, is_naive_micro_timestamp, is_request_id, is_timestamp, is_uuid,
    keys, new_uuid, spawn_import_app, test_data, web_server, TestApp, IMPORT_DEADLINE,
};

/// Imports `data` into a new raw image by web-download from `uri`; returns the image id.
async fn web_import(app: &TestApp, uri: &str) -> String {
    let img = app
        .create_image(json!({"name": app.name("t"), "disk_format": "raw",
                             "container_format": "bare"}))
        .await;
    let id = img["id"].as_str().unwrap().to_owned();
    app.import_accepted(
        &id,
        &json!({"method": {"name": "web-download", "uri": uri}}),
    )
    .await;
    id
}

fn sorted(list: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

/// `GET /v2/tasks?{query}` that must answer 200.
async fn list(app: &TestApp, query: &str) -> Value {
    expect_json(app.get(&format!("/v2/tasks?{query}")).await, StatusCode::OK).await
}

#[tokio::test]
async fn task_of_an_import() {
    let data = test_data(2000);
    let (web, _dir) = web_server(&[("x.raw", &data)]).await;
    let (app, _cheap) = spawn_import_app().await;
    let uri = format!("{web}/x.raw");
    let id = web_import(&app, &uri).await;
    let (_, row) = app.wait_for_import(&id).await;
    let tid = row["id"].as_str().unwrap().to_owned();

    let task = expect_json(app.get(&format!("/v2/tasks/{tid}")).await, StatusCode::OK).await;
    assert_eq!(
        keys(&task),
        sorted(&[
            "created_at",
            "expires_at",
            "id",
            "image_id",
            "input",
            "message",
            "owner",
            "request_id",
            "result",
            "schema",
            "self",
            "status",
            "type",
            "updated_at",
            "user_id",
        ])
    );
    assert!(is_uuid(&tid));
    assert_eq!(task["self"], format!("/v2/tasks/{tid}"));
    assert_eq!(task["schema"], "/v2/schemas/task");
    assert_eq!(task["type"], "api_image_import");
    assert_eq!(task["status"], "success");
    assert_eq!(task["image_id"], id.as_str());
    assert_eq!(task["result"], json!({"image_id": id}));
    assert_eq!(
        task["input"],
        json!({"image_id": id, "backend": ["fast"],
               "import_req": {"method": {"name": "web-download", "uri": uri}}})
    );
    assert_eq!(task["message"], "Copied 0 MiB");
    assert!(
        is_request_id(task["request_id"].as_str().unwrap()),
        "{task}"
    );
    for f in ["created_at", "updated_at", "expires_at"] {
        assert!(
            is_timestamp(task[f].as_str().unwrap_or_default()),
            "{f}: {task}"
        );
    }
    // Finished tasks expire 48 hours after their last update.
    assert!(
        task["expires_at"].as_str() > task["updated_at"].as_str(),
        "{task}"
    );
    assert!(
        task["owner"].is_string() || task["owner"].is_null(),
        "{task}"
    );
    assert!(
        task["user_id"].is_string() || task["user_id"].is_null(),
        "{task}"
    );

    let unknown = new_uuid();
    for bad in [unknown.as_str(), "abc"] {
        let msg = expect_error(
            app.get(&format!("/v2/tasks/{bad}")).await,
            StatusCode::NOT_FOUND,
        )
        .await;
        assert!(
            msg.starts_with(&format!("Could not find task {bad}")),
            "{msg}"
        );
    }
}

#[tokio::test]
async fn image_tasks_are_raw_task_rows() {
    let data = test_data(2000);
    let (web, _dir) = web_server(&[("x.raw", &data)]).await;
    let (app, _cheap) = spawn_import_app().await;
    let fresh = app
        .create_image(json!({"name": app.name("fresh"), "disk_format": "raw",
                             "container_format": "bare"}))
        .await;
    let fresh = fresh["id"].as_str().unwrap();
    assert_eq!(
        expect_json(
            app.get(&format!("/v2/images/{fresh}/tasks")).await,
            StatusCode::OK
        )
        .await,
        json!({"tasks": []})
    );

    let id = web_import(&app, &format!("{web}/missing.raw")).await;
    app.wait_for_import(&id).await;
    let tasks = app.image_tasks(&id).await;
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    let t = &tasks[0];
    assert_eq!(
        keys(t),
        sorted(&[
            "created_at",
            "deleted",
            "deleted_at",
            "expires_at",
            "id",
            "image_id",
            "input",
            "message",
            "owner",
            "request_id",
            "result",
            "status",
            "type",
            "updated_at",
            "user_id",
        ])
    );
    assert_eq!(t["type"], "api_image_import");
    assert_eq!(t["status"], "failure");
    if app.is_external() {
        assert_eq!(t["message"], "Task failed due to Internal Error");
    } else {
        // Vela says why the import failed (Glance's message is always the same).
        assert!(
            t["message"].as_str().unwrap_or_default().contains("404"),
            "{t}"
        );
    }
    assert!(t["result"].is_null(), "{t}");
    assert_eq!(t["image_id"], id.as_str());
    assert_eq!(t["deleted"], false);
    assert!(t["deleted_at"].is_null(), "{t}");
    // Unlike every other timestamp of the API: naive, with microseconds.
    for f in ["created_at", "updated_at", "expires_at"] {
        assert!(
            is_naive_micro_timestamp(t[f].as_str().unwrap_or_default()),
            "{f}: {t}"
        );
    }
    // The same task through the tasks API.
    let tid = t["id"].as_str().unwrap();
    let task = expect_json(app.get(&format!("/v2/tasks/{tid}")).await, StatusCode::OK).await;
    assert_eq!(task["status"], "failure");
    assert_eq!(task["input"], t["input"]);
    assert_eq!(task["request_id"], t["request_id"]);

    for gone in [new_uuid(), fresh.to_owned()] {
        if gone == fresh {
            assert_eq!(
                app.delete(&format!("/v2/images/{fresh}")).await.status(),
                StatusCode::NO_CONTENT
            );
        }
        let msg = expect_error(
            app.get(&format!("/v2/images/{gone}/tasks")).await,
            StatusCode::NOT_FOUND,
        )
        .await;
        assert!(msg.starts_with("The resource could not be found."), "{msg}");
    }
}

#[tokio::test]
async fn task_list_shape_and_paging() {
    let data = test_data(1000);
    let (web, _dir) = web_server(&[("x.raw", &data)]).await;
    let (app, _cheap) = spawn_import_app().await;
    let uri = format!("{web}/x.raw");
    let first = web_import(&app, &uri).await;
    let (_, t1) = app.wait_for_import(&first).await;
    let second = web_import(&app, &uri).await;
    let (_, t2) = app.wait_for_import(&second).await;
    let (t1, t2) = (t1["id"].as_str().unwrap(), t2["id"].as_str().unwrap());

    let v = list(&app, "limit=1000").await;
    assert_eq!(keys(&v), sorted(&["first", "schema", "tasks"]), "{v}");
    assert_eq!(v["first"], "/v2/tasks?limit=1000");
    assert_eq!(v["schema"], "/v2/schemas/tasks");
    let ids: Vec<&str> = v["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    // Newest first.
    let (p1, p2) = (
        ids.iter()
            .position(|i| *i == t1)
            .expect("first task listed"),
        ids.iter()
            .position(|i| *i == t2)
            .expect("second task listed"),
    );
    assert!(p2 < p1, "{ids:?}");
    let stub = &v["tasks"][p2];
    assert_eq!(
        keys(stub),
        sorted(&[
            "created_at",
            "expires_at",
            "id",
            "owner",
            "schema",
            "self",
            "status",
            "type",
            "updated_at",
        ]),
        "{stub}"
    );
    assert_eq!(stub["self"], format!("/v2/tasks/{t2}"));
    assert_eq!(stub["schema"], "/v2/schemas/task");
    assert_eq!(stub["type"], "api_image_import");
    assert_eq!(stub["status"], "success");
    assert!(is_timestamp(stub["created_at"].as_str().unwrap()), "{stub}");

    // A full page links to the next one.
    let v = list(&app, "limit=1").await;
    assert_eq!(v["first"], "/v2/tasks?limit=1");
    let last = v["tasks"][0]["id"].as_str().unwrap();
    assert_eq!(v["next"], format!("/v2/tasks?limit=1&marker={last}"));
    let next = expect_json(app.get(v["next"].as_str().unwrap()).await, StatusCode::OK).await;
    assert_eq!(next["tasks"].as_array().unwrap().len(), 1);
    assert_ne!(next["tasks"][0]["id"], v["tasks"][0]["id"]);
    // No query: `first` is the bare path.
    assert_eq!(list(&app, "").await["first"], "/v2/tasks");

    // Filters.
    for t in list(&app, "status=success&limit=1000").await["tasks"]
        .as_array()
        .unwrap()
    {
        assert_eq!(t["status"], "success", "{t}");
    }
    assert!(list(&app, "type=import").await["tasks"].is_array());
}

#[tokio::test]
async fn task_list_errors() {
    let (app, _cheap) = spawn_import_app().await;
    let unknown = new_uuid();
    let marker_query = format!("marker={unknown}");
    let marker_msg = format!("Task with the given id {unknown} was not found");
    for (query, msg) in [
        ("status=bogus", "Invalid status value: bogus"),
        ("type=bogus", "Invalid type value: bogus"),
        // Only the legacy type can be filtered on.
        (
            "type=api_image_import",
            "Invalid type value: api_image_import",
        ),
        ("sort_dir=x", "Invalid sort direction: x"),
        ("sort_key=bogus", "Sort key supplied was not valid."),
        ("marker=not-a-uuid", "Invalid marker format"),
        (marker_query.as_str(), marker_msg.as_str()),
        ("limit=-1", "limit param must be positive"),
        ("limit=abc", "limit param must be an integer"),
    ] {
        let got = expect_error(
            app.get(&format!("/v2/tasks?{query}")).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert!(got.starts_with(msg), "{query}: {got:?}");
    }
    assert_eq!(app.get("/v2/tasks?limit=0").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn tasks_cannot_be_deleted_or_replaced() {
    let (app, _cheap) = spawn_import_app().await;
    let msg = "This operation is currently not permitted on Glance Tasks. They are auto deleted \
               after reaching the time based on their expires_at property.";
    // Any id, known or not.
    let id = new_uuid();
    let resp = app.delete(&format!("/v2/tasks/{id}")).await;
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.headers()["allow"], "GET");
    let v: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(
        v,
        json!({"message": msg, "code": "405 Method Not Allowed", "title": "Method Not Allowed"})
    );
    let raw = app
        .raw_request(&format!("DELETE /v2/tasks/{id} HTTP/1.1"), b"")
        .await;
    assert_eq!(raw.status, 405);
    assert_eq!(raw.header("allow"), Some("GET"));
    assert_eq!(
        raw.header("content-type"),
        Some("text/plain; charset=UTF-8")
    );
    assert_eq!(raw.text(), format!("405 Method Not Allowed\n\n{msg}"));

    let resp = app
        .send(
            app.request(Method::PUT, &format!("/v2/tasks/{id}"))
                .json(&json!({})),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.headers()["allow"], "GET, DELETE");
    let resp = app
        .send(app.request(Method::PATCH, "/v2/tasks").json(&json!({})))
        .await;
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.headers()["allow"], "GET, POST");
}

#[tokio::test]
async fn legacy_import_task_creates_an_image() {
    let data = test_data(3000);
    let (web, _dir) = web_server(&[("x.raw", &data)]).await;
    let (app, _cheap) = spawn_import_app().await;
    let name = app.name("legacy");
    let input = json!({"import_from": format!("{web}/x.raw"), "import_from_format": "raw",
                       "image_properties": {"name": name, "disk_format": "raw",
                                            "container_format": "bare"}});
    let resp = app
        .post_json("/v2/tasks", &json!({"type": "import", "input": input}))
        .await;
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let task = expect_json(resp, StatusCode::CREATED).await;
    let tid = task["id"].as_str().unwrap();
    assert!(
        location.ends_with(&format!("/v2/tasks/{tid}")),
        "{location}"
    );
    assert_eq!(
        keys(&task),
        sorted(&[
            "created_at",
            "id",
            "input",
            "message",
            "owner",
            "request_id",
            "result",
            "schema",
            "self",
            "status",
            "type",
            "updated_at",
            "user_id",
        ])
    );
    assert_eq!(task["type"], "import");
    assert_eq!(task["status"], "pending");
    assert_eq!(task["message"], "");
    assert!(task["result"].is_null());
    assert_eq!(task["input"], input);

    let deadline = std::time::Instant::now() + IMPORT_DEADLINE;
    let task = loop {
        let t = expect_json(app.get(&format!("/v2/tasks/{tid}")).await, StatusCode::OK).await;
        if t["status"] == "success" || t["status"] == "failure" {
            break t;
        }
        assert!(std::time::Instant::now() < deadline, "task stuck: {t}");
        tokio::time::sleep(crate::helpers::POLL_INTERVAL).await;
    };
    assert_eq!(task["status"], "success", "{task}");
    let image_id = task["result"]["image_id"].as_str().unwrap();
    let img = app.wait_for_status(image_id, "active").await;
    assert_eq!(img["name"], name.as_str());
    assert_eq!(img["size"], data.len() as u64);
    assert_eq!(img["checksum"], crate::helpers::md5_hex(&data));
}

#[tokio::test]
async fn legacy_task_refusals() {
    let (app, _cheap) = spawn_import_app().await;
    let props = json!({"name": "x", "disk_format": "raw", "container_format": "bare"});
    for (body, msg) in [
        (json!({}), "Task 'type' is required"),
        (json!({"input": {}}), "Task 'type' is required"),
        (json!({"type": "import"}), "Task 'input' is required"),
        (
            json!({"type": "bogus", "input": {}}),
            "Provided object does not match schema 'task': 'bogus' is not one of \
             ['import', 'api_image_import', 'location_import']",
        ),
        (
            json!({"type": "import", "input": "x"}),
            "Provided object does not match schema 'task': 'x' is not of type 'null', 'object'",
        ),
        (
            json!({"type": "import", "input": {"import_from_format": "raw"}}),
            "Invalid location: None",
        ),
        (
            json!({"type": "import", "input": {"import_from": "file:///etc/passwd",
                   "import_from_format": "raw", "image_properties": props}}),
            "File based imports are not allowed. Please use a non-local source of image data.",
        ),
    ] {
        let got = expect_error(
            app.post_json("/v2/tasks", &body).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert!(got.starts_with(msg), "{body}: {got:?}");
    }
    let resp = app
        .send(
            app.request(Method::POST, "/v2/tasks")
                .header("content-type", "application/json")
                .body("{"),
        )
        .await;
    let got = expect_error(resp, StatusCode::BAD_REQUEST).await;
    assert!(got.starts_with("Malformed JSON in request body."), "{got}");
}
