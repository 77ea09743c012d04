//! The operators' listener (`[metrics] bind`): Prometheus metrics after a scripted run, parsed
//! as the text exposition format, and the detailed health check. Embedded identity with the
//! token cache on, so the cache's hits and misses show.

use std::collections::HashMap;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;
use crate::identity::{populate, token_for, with_token};

/// A scrape: series (name and labels as written) to value. Checks the format as it goes:
/// every sample belongs to a family announced by `# TYPE`, and the text ends with `# EOF`.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = HashMap::new();
    let mut lines = text.lines().peekable();
    let mut eof = false;
    while let Some(line) = lines.next() {
        if line == "# EOF" {
            eof = true;
            assert!(lines.peek().is_none(), "text after # EOF");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let name = series.split('{').next().unwrap();
        let family = ["_total", "_bucket", "_count", "_sum", "_info"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| types.contains_key(*f)))
            .unwrap_or(name);
        assert!(types.contains_key(family), "sample {series} has no # TYPE");
        samples.insert(series.to_owned(), value.parse::<f64>().unwrap());
    }
    assert!(eof, "no # EOF");
    samples
}

fn value(m: &HashMap<String, f64>, series: &str) -> f64 {
    *m.get(series)
        .unwrap_or_else(|| panic!("no {series} in {:?}", m.keys().collect::<Vec<_>>()))
}

#[tokio::test]
async fn metrics_and_detailed_health_after_a_scripted_run() {
    let cfg = "[auth]\nmode = \"embedded\"\ntoken_cache_secs = 300\n\
               [metrics]\nbind = \"127.0.0.1:0\"\n";
    let Some(mut nodes) = TestApp::spawn_cluster_with(1, cfg).await else {
        return;
    };
    let app = nodes.pop().unwrap();
    let metrics = app
        .metrics_url()
        .expect("the server printed no metrics address");
    populate(&app);
    let token = token_for(&app, "alice", "alice-pw", "alpha").await;
    let resp = app
        .send(
            app.request(Method::POST, "/v2/images")
                .header("x-auth-token", &token)
                .json(&json!({"name": app.name("m"), "disk_format": "raw",
                              "container_format": "bare"})),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let id = resp.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let data = test_data(300_000);
    let resp = app
        .send(
            app.request(Method::PUT, &format!("/v2/images/{id}/file"))
                .header("x-auth-token", &token)
                .header("content-type", "application/octet-stream")
                .body(data.clone()),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    for _ in 0..2 {
        let resp = with_token(&app, Method::GET, &format!("/v2/images/{id}/file"), &token).await;
        assert_eq!(resp.bytes().await.unwrap().len(), data.len());
    }
    let missing = format!("/v2/images/{}", new_uuid());
    assert_eq!(
        with_token(&app, Method::GET, &missing, &token)
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    // The API port does not serve metrics (an unknown path gets the versions list).
    let on_api = app.get("/metrics").await;
    assert_eq!(on_api.status(), StatusCode::MULTIPLE_CHOICES);
    assert!(!on_api.text().await.unwrap().contains("vela_"));

    let scrape = reqwest::get(format!("{metrics}/metrics")).await.unwrap();
    assert_eq!(scrape.status(), StatusCode::OK);
    assert!(scrape.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let m = parse(&scrape.text().await.unwrap());
    assert_eq!(
        value(
            &m,
            r#"vela_http_requests_total{route="/v2/images/{id}/file",method="GET",status="200"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            &m,
            r#"vela_http_requests_total{route="/v2/images/{id}",method="GET",status="404"}"#
        ),
        1.0
    );
    assert!(
        value(
            &m,
            r#"vela_http_requests_total{route="/v3/auth/tokens",method="POST",status="201"}"#
        ) >= 1.0
    );
    assert_eq!(
        value(
            &m,
            r#"vela_http_request_duration_seconds_count{route="/v2/images/{id}/file",method="PUT"}"#
        ),
        1.0
    );
    // No image id ever becomes a label value.
    assert!(m.keys().all(|k| !k.contains(&id)));
    assert_eq!(
        value(&m, r#"vela_store_bytes_uploaded_total{store="file"}"#),
        data.len() as f64
    );
    assert_eq!(
        value(&m, r#"vela_store_bytes_downloaded_total{store="file"}"#),
        2.0 * data.len() as f64
    );
    assert_eq!(value(&m, "vela_uploads_in_flight"), 0.0);
    assert_eq!(value(&m, "vela_imports_in_flight"), 0.0);
    // Five calls with one token: the first validates it, the others hit the cache.
    assert!(value(&m, r#"vela_token_cache_requests_total{result="hit"}"#) >= 4.0);
    assert!(value(&m, r#"vela_token_cache_requests_total{result="miss"}"#) >= 1.0);
    assert!(value(&m, r#"vela_db_connections{pool="read",state="idle"}"#) >= 1.0);
    assert!(m.contains_key(r#"vela_db_connections{pool="write",state="in_use"}"#));
    assert_eq!(
        value(
            &m,
            &format!(
                r#"vela_build_info{{version="{}"}}"#,
                env!("CARGO_PKG_VERSION")
            )
        ),
        1.0
    );

    let health = reqwest::get(format!("{metrics}/healthcheck"))
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let h: Value = health.json().await.unwrap();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["database"]["status"], "ok");
    assert_eq!(h["stores"]["file"]["type"], "file");
    assert_eq!(h["notifications"]["enabled"], false);
    // The public health check stays the plain one.
    assert_eq!(app.get("/healthcheck").await.text().await.unwrap(), "OK");
}

/// `driver = "log"`: notifications go through the outbox to the server's log, in
/// oslo.messaging's message shape, and leave the outbox.
#[tokio::test]
async fn the_log_driver_writes_notifications_to_the_log() {
    let app = TestApp::spawn_with_config(
        "[notifications]\ndriver = \"log\"\npublisher_id = \"image.logtest\"\n\
         [metrics]\nbind = \"127.0.0.1:0\"\n",
    )
    .await;
    if app.is_external() {
        return;
    }
    let img = app.create_image(json!({"name": app.name("logged")})).await;
    let id = img["id"].as_str().unwrap().to_owned();
    let metrics = app.metrics_url().unwrap();
    let (mut logged, mut drained) = (false, false);
    for _ in 0..50 {
        let log = app.server_log();
        logged = log.lines().any(|l| {
            l.contains("vela::notification")
                && l.contains("image.create")
                && l.contains(&id)
                && l.contains("image.logtest")
        });
        drained = reqwest::get(format!("{metrics}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .lines()
            .any(|l| l == "vela_notification_outbox_depth 0");
        if logged && drained {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(logged && drained, "{}", app.server_log());
}

/// With the broker unreachable the sender still checks the outbox's depth at every retry:
/// once the outbox holds `outbox_max` notifications new ones are dropped (and counted), and
/// the changes themselves succeed.
#[tokio::test]
async fn a_full_outbox_drops_new_notifications_while_the_broker_is_away() {
    let app = TestApp::spawn_with_config(
        "[notifications]\ndriver = \"messagingv2\"\n\
         transport_url = \"rabbit://guest:guest@127.0.0.1:9/\"\noutbox_max = 3\n\
         [metrics]\nbind = \"127.0.0.1:0\"\n",
    )
    .await;
    if app.is_external() {
        return;
    }
    let metrics = app.metrics_url().unwrap();
    let scrape = || async {
        parse(
            &reqwest::get(format!("{metrics}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        )
    };
    for i in 0..3 {
        app.create_image(json!({"name": app.name(&format!("kept-{i}"))}))
            .await;
    }
    // The sender's first retries come within a few seconds (its backoff starts at 250 ms).
    let mut dropped = 0.0;
    for i in 0..60 {
        app.create_image(json!({"name": app.name(&format!("late-{i}"))}))
            .await;
        dropped = value(&scrape().await, "vela_notifications_dropped_total");
        if dropped > 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(dropped > 0.0, "{}", app.server_log());
    let m = scrape().await;
    let depth = value(&m, "vela_notification_outbox_depth");
    // At most one round's worth of writes gets in between two depth checks.
    assert!((3.0..10.0).contains(&depth), "depth {depth}");
    assert!(app.server_log().contains("notification outbox is full"));
}
