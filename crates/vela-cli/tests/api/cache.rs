//! The image cache: `/v2/cache`, downloads served from and copied into a node's cache, the
//! prefetcher, eviction and pruning.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

const CACHE: &str = "[cache]\nenabled = true\nprefetch_interval_secs = 3600\n";

fn cache_dir(app: &TestApp) -> PathBuf {
    app.data_dir().unwrap().join("data").join("image-cache")
}

fn store_file(app: &TestApp, id: &str) -> PathBuf {
    app.data_dir().unwrap().join("data").join("images").join(id)
}

async fn state(app: &TestApp) -> Value {
    expect_json(app.get("/v2/cache").await, StatusCode::OK).await
}

fn cached_ids(state: &Value) -> Vec<String> {
    let mut ids: Vec<String> = state["cached_images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["image_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// Polls `/v2/cache` until `pred` holds (panics after 15 s).
async fn wait_for(app: &TestApp, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = state(app).await;
        if pred(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "cache never {what}: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_cached(app: &TestApp, id: &str) -> Value {
    let s = wait_for(app, "held the image", |s| {
        cached_ids(s).contains(&id.to_owned())
    })
    .await;
    s["cached_images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["image_id"] == id)
        .unwrap()
        .clone()
}

async fn active(app: &TestApp, data: &[u8]) -> String {
    let img = app
        .create_active_image(json!({"name": app.name("cached")}), data)
        .await;
    img["id"].as_str().unwrap().to_owned()
}

async fn body_of(resp: reqwest::Response, status: StatusCode) -> Vec<u8> {
    assert_eq!(resp.status(), status);
    resp.bytes().await.unwrap().to_vec()
}

async fn send_as(app: &TestApp, who: &Persona, method: Method, path: &str) -> reqwest::Response {
    app.send(app.request(method, path).headers(who.headers()))
        .await
}

#[tokio::test]
async fn cache_api_without_a_cache_is_not_found_after_policy() {
    let app = TestApp::spawn().await;
    let resp = app.get("/v2/cache").await;
    let err = expect_error(resp, StatusCode::NOT_FOUND).await;
    assert!(err.contains("not supported at this site"), "{err}");
    if app.is_external() {
        return;
    }
    let member = Persona::member("nc-member");
    for (method, path) in [
        (Method::GET, "/v2/cache".to_owned()),
        (Method::DELETE, "/v2/cache".to_owned()),
        (Method::POST, "/v2/cache/prune".to_owned()),
        (Method::PUT, format!("/v2/cache/{}", new_uuid())),
    ] {
        let resp = send_as(&app, &member, method.clone(), &path).await;
        let status = resp.status();
        assert!(
            status == StatusCode::FORBIDDEN
                || (method == Method::PUT && status == StatusCode::NOT_FOUND),
            "{method} {path}: {status}"
        );
    }
}

#[tokio::test]
async fn downloads_fill_the_cache_which_serves_whole_and_ranged_reads() {
    let app = TestApp::spawn_with_config(CACHE).await;
    if app.is_external() {
        return;
    }
    let versions = expect_json(app.get("/versions").await, StatusCode::OK).await;
    let current: Vec<_> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["status"] == "CURRENT")
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(current, ["v2.18"]);
    assert_eq!(app.status_of("/v2.14/cache").await, StatusCode::OK);

    let data = test_data(3 * 1024 * 1024 + 17);
    let id = active(&app, &data).await;
    assert_eq!(
        state(&app).await,
        json!({"cached_images": [], "queued_images": []})
    );
    // A ranged read does not fill the cache; the first whole download does.
    let part = body_of(
        app.download_range(&id, "bytes=10-19").await,
        StatusCode::PARTIAL_CONTENT,
    )
    .await;
    assert_eq!(part, data[10..20]);
    assert_eq!(body_of(app.download(&id).await, StatusCode::OK).await, data);
    let entry = wait_cached(&app, &id).await;
    assert_eq!(entry["size"], data.len() as u64);
    assert_eq!(entry["hits"], 0);
    assert!(entry["last_accessed"].as_f64().unwrap() > 1.7e9, "{entry}");
    assert!(entry["last_modified"].as_f64().unwrap() > 1.7e9, "{entry}");

    // The store loses the data: the node serves its verified copy, whole and ranged.
    std::fs::remove_file(store_file(&app, &id)).unwrap();
    let resp = app.download(&id).await;
    assert_eq!(resp.headers()["content-md5"], md5_hex(&data));
    assert_eq!(body_of(resp, StatusCode::OK).await, data);
    let resp = app.download_range(&id, "bytes=-5").await;
    assert_eq!(
        resp.headers()["content-range"],
        format!("bytes {}-{}/{}", data.len() - 5, data.len() - 1, data.len())
    );
    assert_eq!(
        body_of(resp, StatusCode::PARTIAL_CONTENT).await,
        data[data.len() - 5..]
    );
    let resp = app
        .download_range(&id, &format!("bytes={}-", data.len()))
        .await;
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(wait_cached(&app, &id).await["hits"], 2);

    // Evicted, the data is gone for good; evicting again is fine while the image exists.
    assert_eq!(
        app.delete(&format!("/v2/cache/{id}")).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(app.download(&id).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.delete(&format!("/v2/cache/{id}")).await.status(),
        StatusCode::NO_CONTENT
    );
    let resp = app.delete(&format!("/v2/cache/{}", new_uuid())).await;
    expect_error(resp, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn data_that_does_not_match_the_image_is_never_cached() {
    let app = TestApp::spawn_with_config(CACHE).await;
    if app.is_external() {
        return;
    }
    let data = test_data(64 * 1024);
    let id = active(&app, &data).await;
    // Same size, other bytes: served as the store has them, but not kept.
    let mut other = data.clone();
    other[1000] ^= 0xff;
    std::fs::write(store_file(&app, &id), &other).unwrap();
    assert_eq!(
        body_of(app.download(&id).await, StatusCode::OK).await,
        other
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !app.server_log().contains("image not cached") {
        assert!(Instant::now() < deadline, "{}", app.server_log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(cached_ids(&state(&app).await), Vec::<String>::new());
    let leftovers = std::fs::read_dir(cache_dir(&app).join("incomplete"))
        .unwrap()
        .count();
    assert_eq!(leftovers, 0);

    // A cached copy that was tampered with afterwards is not served either, and goes.
    std::fs::write(store_file(&app, &id), &data).unwrap();
    app.download(&id).await.bytes().await.unwrap();
    wait_cached(&app, &id).await;
    std::fs::write(cache_dir(&app).join(&id), &other[..100]).unwrap();
    assert_eq!(body_of(app.download(&id).await, StatusCode::OK).await, data);
}

#[tokio::test]
async fn queueing_prefetches_and_the_cache_api_follows_glance() {
    let app = TestApp::spawn_with_config(CACHE).await;
    if app.is_external() {
        return;
    }
    let data = test_data(200_000);
    let id = active(&app, &data).await;
    let resp = app.put_empty(&format!("/v2/cache/{id}")).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert!(resp.bytes().await.unwrap().is_empty());
    let s = wait_for(&app, "prefetched", |s| {
        cached_ids(s) == [id.clone()] && s["queued_images"] == json!([])
    })
    .await;
    assert_eq!(s["cached_images"][0]["size"], 200_000);

    // Only active images are queued; unknown ones are 404, as are ids that are not uuids.
    let queued = app.create_image(json!({"name": app.name("q")})).await;
    let resp = app
        .put_empty(&format!("/v2/cache/{}", queued["id"].as_str().unwrap()))
        .await;
    let err = expect_error(resp, StatusCode::BAD_REQUEST).await;
    assert!(err.contains("Only images with status active"), "{err}");
    let resp = app.put_empty(&format!("/v2/cache/{}", new_uuid())).await;
    expect_error(resp, StatusCode::NOT_FOUND).await;
    let resp = app.put_empty("/v2/cache/not-a-uuid").await;
    expect_error(resp, StatusCode::NOT_FOUND).await;

    // Admin only by default.
    let member = Persona::member("cache-member");
    for (method, path) in [
        (Method::GET, "/v2/cache".to_owned()),
        (Method::DELETE, "/v2/cache".to_owned()),
        (Method::POST, "/v2/cache/clean".to_owned()),
        (Method::POST, "/v2/cache/prune".to_owned()),
        (Method::DELETE, format!("/v2/cache/{id}")),
    ] {
        let resp = send_as(&app, &member, method.clone(), &path).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{method} {path}");
    }

    // The clear target chooses the cache, the queue or both. An entry put in the queue
    // directly stays there: the prefetcher only runs when woken (or hourly here).
    let stray = new_uuid();
    std::fs::write(cache_dir(&app).join("queue").join(&stray), b"").unwrap();
    assert_eq!(state(&app).await["queued_images"], json!([stray]));
    let clear = |target: &'static str| {
        app.send(
            app.request(Method::DELETE, "/v2/cache")
                .header("x-image-cache-clear-target", target),
        )
    };
    let err = expect_error(clear("everything").await, StatusCode::BAD_REQUEST).await;
    assert!(err.contains("x-image-cache-clear-target"), "{err}");
    assert_eq!(clear("cache").await.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        state(&app).await,
        json!({"cached_images": [], "queued_images": [stray]})
    );
    assert_eq!(clear("queue").await.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        state(&app).await,
        json!({"cached_images": [], "queued_images": []})
    );
    // A queued id whose image does not exist can still be removed.
    std::fs::write(cache_dir(&app).join("queue").join(&stray), b"").unwrap();
    assert_eq!(
        app.delete(&format!("/v2/cache/{stray}")).await.status(),
        StatusCode::NO_CONTENT
    );

    let resp = app.post_empty("/v2/cache/prune").await;
    let pruned = expect_json(resp, StatusCode::OK).await;
    assert_eq!(
        pruned,
        json!({"total_files_pruned": 0, "total_bytes_pruned": 0})
    );
    assert_eq!(
        app.post_empty("/v2/cache/clean").await.status(),
        StatusCode::OK
    );
    let resp = app.get(&format!("/v2/cache/nodes/{id}")).await;
    expect_error(resp, StatusCode::CONFLICT).await;
    let resp = app
        .send(app.request(Method::GET, "/v2/cache").body("x"))
        .await;
    expect_error(resp, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn deactivated_and_deleted_images_leave_the_cache() {
    let app = TestApp::spawn_with_config(CACHE).await;
    if app.is_external() {
        return;
    }
    let data = test_data(10_000);
    let id = active(&app, &data).await;
    app.download(&id).await.bytes().await.unwrap();
    wait_cached(&app, &id).await;
    let resp = app
        .post_empty(&format!("/v2/images/{id}/actions/deactivate"))
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(cached_ids(&state(&app).await), Vec::<String>::new());
    // An admin still downloads a deactivated image, from the store, and it is not cached.
    assert_eq!(body_of(app.download(&id).await, StatusCode::OK).await, data);
    assert_eq!(cached_ids(&state(&app).await), Vec::<String>::new());
    let resp = app
        .post_empty(&format!("/v2/images/{id}/actions/reactivate"))
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    app.download(&id).await.bytes().await.unwrap();
    wait_cached(&app, &id).await;
    assert_eq!(
        app.delete(&format!("/v2/images/{id}")).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(cached_ids(&state(&app).await), Vec::<String>::new());
    assert!(!cache_dir(&app).join(&id).exists());
}

#[tokio::test]
async fn the_cache_keeps_to_its_size_with_least_recently_used_out_first() {
    let app = TestApp::spawn_with_config(
        "[cache]\nenabled = true\nmax_size = 5000\nprefetch_interval_secs = 3600\n",
    )
    .await;
    if app.is_external() {
        return;
    }
    let (a, b) = (
        active(&app, &test_data(3000)).await,
        active(&app, &test_data(2999)).await,
    );
    let big = active(&app, &test_data(5001)).await;
    app.download(&a).await.bytes().await.unwrap();
    wait_cached(&app, &a).await;
    app.download(&b).await.bytes().await.unwrap();
    wait_for(&app, "pruned a", |s| cached_ids(s) == [b.clone()]).await;
    // Larger than the whole cache: never copied.
    assert_eq!(app.download(&big).await.bytes().await.unwrap().len(), 5001);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(cached_ids(&state(&app).await), vec![b.clone()]);

    let out = app.run_vela(&["cache", "prune"]);
    assert!(out.contains("pruned 0 images"), "{out}");
    let listed: Value = serde_json::from_str(&app.run_vela(&["cache", "list"])).unwrap();
    assert_eq!(cached_ids(&listed), vec![b.clone()]);
}

#[tokio::test]
async fn nodes_never_serve_copies_of_images_deleted_through_another_node() {
    let Some(nodes) = TestApp::spawn_cluster_with(
        2,
        "[cache]\nenabled = true\nprune_interval_secs = 1\nprefetch_interval_secs = 3600\n",
    )
    .await
    else {
        return;
    };
    let (one, two) = (&nodes[0], &nodes[1]);
    let data = test_data(50_000);
    let id = active(one, &data).await;
    one.download(&id).await.bytes().await.unwrap();
    wait_cached(one, &id).await;
    assert_eq!(cached_ids(&state(two).await), Vec::<String>::new());
    assert_eq!(
        two.delete(&format!("/v2/images/{id}")).await.status(),
        StatusCode::NO_CONTENT
    );
    expect_error(one.download(&id).await, StatusCode::NOT_FOUND).await;
    // The first node's maintenance drops the copy.
    wait_for(one, "dropped the deleted image", |s| {
        cached_ids(s).is_empty()
    })
    .await;
}

#[tokio::test]
async fn remote_stores_are_served_from_the_cache() {
    use crate::stores::{keystone_swift_section, s3_section, swift_section};
    let prefix = format!("cache-{}", &new_uuid()[..8]);
    let remotes: Vec<(&str, String)> = [
        ("s3", s3_section(&prefix)),
        ("swift", swift_section(&prefix)),
        ("osswift", keystone_swift_section(&prefix)),
    ]
    .into_iter()
    .filter_map(|(name, section)| Some((name, section?)))
    .collect();
    if remotes.is_empty() {
        return;
    }
    let sections: Vec<&str> = remotes.iter().map(|(_, s)| s.as_str()).collect();
    let app = TestApp::spawn_with_config(&format!(
        "[store]\ndefault = \"local\"\nid = \"local\"\n\n{CACHE}\n{}",
        sections.join("\n")
    ))
    .await;
    if app.is_external() {
        return;
    }
    let data = test_data(6 * 1024 * 1024 + 3);
    for (store, _) in &remotes {
        let img = app
            .create_image(
                json!({"name": app.name(store), "disk_format": "raw", "container_format": "bare"}),
            )
            .await;
        let id = img["id"].as_str().unwrap().to_owned();
        let resp = app
            .send(
                app.request(Method::PUT, &format!("/v2/images/{id}/file"))
                    .header("content-type", OCTET)
                    .header("x-image-meta-store", *store)
                    .body(data.clone()),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::NO_CONTENT, "{store}");
        assert_eq!(app.show(&id).await["stores"], *store);
        assert_eq!(
            body_of(app.download(&id).await, StatusCode::OK).await,
            data,
            "{store}"
        );
        assert_eq!(wait_cached(&app, &id).await["hits"], 0, "{store}");
        // Served by the node now: every read counts a hit.
        assert_eq!(
            body_of(app.download(&id).await, StatusCode::OK).await,
            data,
            "{store}"
        );
        let resp = app.download_range(&id, "bytes=5000000-5000009").await;
        let part = body_of(resp, StatusCode::PARTIAL_CONTENT).await;
        assert_eq!(part, data[5_000_000..5_000_010], "{store}");
        assert_eq!(wait_cached(&app, &id).await["hits"], 2, "{store}");
        assert_eq!(
            app.delete(&format!("/v2/images/{id}")).await.status(),
            StatusCode::NO_CONTENT
        );
    }
}
