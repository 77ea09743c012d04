//! Several stores at once (Glance's multi-store): uploads to a named store, the `stores`
//! field, discovery, downloads and deletes from the right store. The second store is a
//! directory; with `VELA_S3_ENDPOINT` set (`scripts/ceph.sh start`) a real S3 store joins,
//! and must when `VELA_REQUIRE_S3=1`; with `VCSIM_HOST` (`scripts/vcsim.sh start`) a vSphere
//! datastore of VMware's simulator joins, and must when `VELA_REQUIRE_VCSIM=1`.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{expect_error, expect_json, md5_hex, test_data, TestApp, OCTET};

/// `[stores.s3]` for the S3 server of the environment, if any.
pub(crate) fn s3_section(prefix: &str) -> Option<String> {
    let Ok(endpoint) = std::env::var("VELA_S3_ENDPOINT") else {
        assert!(
            std::env::var("VELA_REQUIRE_S3").as_deref() != Ok("1"),
            "VELA_REQUIRE_S3=1 but VELA_S3_ENDPOINT is not set (scripts/ceph.sh start)"
        );
        return None;
    };
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    Some(format!(
        "[stores.s3]\ntype = \"s3\"\nendpoint = \"{endpoint}\"\nregion = \"{}\"\n\
         bucket = \"{}\"\naccess_key = \"{}\"\nsecret_key = \"{}\"\nprefix = \"{prefix}/\"\n\
         part_size_mib = 5\n",
        var("VELA_S3_REGION"),
        var("VELA_S3_BUCKET"),
        var("VELA_S3_ACCESS_KEY"),
        var("VELA_S3_SECRET_KEY"),
    ))
}

/// `[stores.swift]` for the Swift API of the environment (radosgw's, v1 auth), if any.
pub(crate) fn swift_section(prefix: &str) -> Option<String> {
    let auth_url = std::env::var("VELA_SWIFT_AUTH_URL").ok()?;
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    Some(format!(
        "[stores.swift]\ntype = \"swift\"\nauth_version = 1\nauth_url = \"{auth_url}\"\n\
         user = \"{}\"\nkey = \"{}\"\ncontainer = \"vela-api\"\nprefix = \"{prefix}/\"\n\
         segment_size_mib = 4\n",
        var("VELA_SWIFT_USER"),
        var("VELA_SWIFT_KEY"),
    ))
}

/// `[stores.osswift]`: OpenStack Swift through Keystone (Vela's service user, storage URL
/// from the catalog), when `scripts/swift.sh` runs beside `scripts/keystone.sh`.
pub(crate) fn keystone_swift_section(prefix: &str) -> Option<String> {
    if std::env::var("VELA_OS_SWIFT_KEYSTONE").as_deref() != Ok("1") {
        return None;
    }
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    Some(format!(
        "[stores.osswift]\ntype = \"swift\"\nauth_url = \"{}\"\nusername = \"{}\"\n\
         password = \"{}\"\nproject_name = \"service\"\ncontainer = \"vela-api\"\n\
         prefix = \"{prefix}/\"\nsegment_size_mib = 4\n",
        var("KEYSTONE_URL"),
        var("KEYSTONE_SERVICE_USER"),
        var("KEYSTONE_SERVICE_PASSWORD"),
    ))
}

/// `[stores.ceph]`: the RBD pool of `scripts/ceph.sh`, in builds with the `rbd` feature.
pub(crate) fn rbd_section() -> Option<String> {
    if !cfg!(feature = "rbd") {
        return None;
    }
    let conf = std::env::var("CEPH_CONF").ok()?;
    let pool = std::env::var("CEPH_RBD_POOL").unwrap_or_else(|_| "rbd".into());
    Some(format!(
        "[stores.ceph]\ntype = \"rbd\"\nceph_conf = \"{conf}\"\npool = \"{pool}\"\n\
         chunk_size_mib = 4\nconnect_timeout_secs = 10\n"
    ))
}

/// `[stores.vsphere]`: a datastore of VMware's vCenter simulator (`scripts/vcsim.sh start`).
pub(crate) fn vmware_section(prefix: &str) -> Option<String> {
    let Ok(host) = std::env::var("VCSIM_HOST") else {
        assert!(
            std::env::var("VELA_REQUIRE_VCSIM").as_deref() != Ok("1"),
            "VELA_REQUIRE_VCSIM=1 but VCSIM_HOST is not set (scripts/vcsim.sh start)"
        );
        return None;
    };
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    Some(format!(
        "[stores.vsphere]\ntype = \"vmware\"\nserver_host = \"{host}\"\nserver_username = \"{}\"\n\
         server_password = \"{}\"\ndatastores = [\"{}:{}:10\"]\nstore_image_dir = \"/{prefix}\"\n\
         insecure = true\ntask_poll_interval_ms = 50\n",
        var("VCSIM_USER"),
        var("VCSIM_PASSWORD"),
        var("VCSIM_DATACENTER"),
        var("VCSIM_DATASTORE"),
    ))
}

/// `[stores.volumes]`: volumes of the real Cinder of `scripts/cinder.sh` (RBD connections, so
/// only in builds with the `rbd` feature).
pub(crate) fn cinder_section() -> Option<String> {
    if !cfg!(feature = "rbd") {
        return None;
    }
    let Ok(auth_url) = std::env::var("CINDER_AUTH_URL") else {
        assert!(
            std::env::var("VELA_REQUIRE_CINDER").as_deref() != Ok("1"),
            "VELA_REQUIRE_CINDER=1 but CINDER_AUTH_URL is not set (scripts/cinder.sh start)"
        );
        return None;
    };
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    Some(format!(
        "[stores.volumes]\ntype = \"cinder\"\nauth_url = \"{auth_url}\"\nusername = \"{}\"\n\
         password = \"{}\"\nproject_name = \"{}\"\nvolume_type = \"{}\"\n\
         state_transition_timeout_secs = 120\n",
        var("CINDER_USER"),
        var("CINDER_PASSWORD"),
        var("CINDER_PROJECT"),
        var("CINDER_VOLUME_TYPE"),
    ))
}

/// Which of the real-server stores joined.
struct Remote {
    s3: bool,
    swift: bool,
    osswift: bool,
    rbd: bool,
    vmware: bool,
    cinder: bool,
}

async fn multi_store_app() -> Option<(TestApp, tempfile::TempDir, Remote)> {
    let second = tempfile::tempdir().unwrap();
    let prefix = format!("api-{}", &crate::helpers::new_uuid()[..8]);
    let (s3, swift) = (s3_section(&prefix), swift_section(&prefix));
    let (osswift, rbd) = (keystone_swift_section(&prefix), rbd_section());
    let (vmware, cinder) = (vmware_section(&prefix), cinder_section());
    let app = TestApp::spawn_with_config(&format!(
        "[store]\ndefault = \"local\"\nid = \"local\"\n\n[stores.archive]\ntype = \"file\"\npath = \"{}\"\n\n{}\n{}\n{}\n{}\n{}\n{}",
        second.path().display(),
        s3.clone().unwrap_or_default(),
        swift.clone().unwrap_or_default(),
        osswift.clone().unwrap_or_default(),
        rbd.clone().unwrap_or_default(),
        vmware.clone().unwrap_or_default(),
        cinder.clone().unwrap_or_default(),
    ))
    .await;
    let remote = Remote {
        s3: s3.is_some(),
        swift: swift.is_some(),
        osswift: osswift.is_some(),
        rbd: rbd.is_some(),
        vmware: vmware.is_some(),
        cinder: cinder.is_some(),
    };
    (!app.is_external()).then_some((app, second, remote))
}

async fn upload_to(
    app: &TestApp,
    id: &str,
    store: Option<&str>,
    data: Vec<u8>,
) -> reqwest::Response {
    let mut rb = app
        .request(Method::PUT, &format!("/v2/images/{id}/file"))
        .header("content-type", OCTET)
        .body(data);
    if let Some(s) = store {
        rb = rb.header("x-image-meta-store", s);
    }
    app.send(rb).await
}

#[tokio::test]
async fn stores_are_listed_with_the_default() {
    let Some((app, _dir, remote)) = multi_store_app().await else {
        return;
    };
    let v = expect_json(app.get("/v2/info/stores").await, StatusCode::OK).await;
    let mut want = vec![
        json!({"id": "local", "default": "true"}),
        json!({"id": "archive"}),
    ];
    if remote.s3 {
        want.push(json!({"id": "s3"}));
    }
    if remote.swift {
        want.push(json!({"id": "swift"}));
    }
    if remote.osswift {
        want.push(json!({"id": "osswift"}));
    }
    if remote.rbd {
        want.push(json!({"id": "ceph"}));
    }
    if remote.vmware {
        want.push(json!({"id": "vsphere"}));
    }
    if remote.cinder {
        want.push(json!({"id": "volumes"}));
    }
    // The default first, then the named stores by name.
    want[1..].sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    assert_eq!(v["stores"], json!(want));
    let v = expect_json(app.get("/v2/info/stores/detail").await, StatusCode::OK).await;
    let types: Vec<&str> = v["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["type"].as_str().unwrap())
        .collect();
    assert_eq!(types[..2], ["file", "file"]);
    assert_eq!(types.contains(&"s3"), remote.s3);
    assert_eq!(types.contains(&"swift"), remote.swift || remote.osswift);
    assert_eq!(types.contains(&"rbd"), remote.rbd);
    assert_eq!(types.contains(&"vmware"), remote.vmware);
    assert_eq!(types.contains(&"cinder"), remote.cinder);
}

#[tokio::test]
async fn uploads_go_to_the_named_store() {
    let Some((app, archive_dir, remote)) = multi_store_app().await else {
        return;
    };
    let mut stores = vec![(None, "local"), (Some("archive"), "archive")];
    if remote.s3 {
        stores.push((Some("s3"), "s3"));
    }
    if remote.swift {
        stores.push((Some("swift"), "swift"));
    }
    if remote.osswift {
        stores.push((Some("osswift"), "osswift"));
    }
    if remote.rbd {
        stores.push((Some("ceph"), "ceph"));
    }
    if remote.vmware {
        stores.push((Some("vsphere"), "vsphere"));
    }
    if remote.cinder {
        stores.push((Some("volumes"), "volumes"));
    }
    for (asked, expected) in stores {
        // Large enough for a multipart upload to S3 (5 MiB parts) and several Swift segments.
        let data = test_data(11 * 1024 * 1024 + 17);
        let img = app
            .create_image(json!({"name": app.name(expected), "disk_format": "raw", "container_format": "bare"}))
            .await;
        let id = img["id"].as_str().unwrap();
        let resp = upload_to(&app, id, asked, data.clone()).await;
        assert_eq!(resp.status(), StatusCode::NO_CONTENT, "{expected}");
        let shown = app.show(id).await;
        assert_eq!(shown["stores"], expected, "{shown}");
        assert_eq!(shown["checksum"], md5_hex(&data).as_str());
        let resp = app.download(id).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.bytes().await.unwrap();
        assert!(body == data, "{expected}: downloaded bytes differ");
        let resp = app.download_range(id, "bytes=5-9").await;
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(resp.bytes().await.unwrap(), data[5..10]);

        if expected == "archive" {
            assert!(archive_dir.path().join(id).exists());
        }
        assert_eq!(
            app.delete(&format!("/v2/images/{id}")).await.status(),
            StatusCode::NO_CONTENT
        );
        if expected == "archive" {
            assert!(
                !archive_dir.path().join(id).exists(),
                "data left in the archive store"
            );
        }
    }
}

#[tokio::test]
async fn an_unknown_store_is_refused() {
    let Some((app, _dir, _)) = multi_store_app().await else {
        return;
    };
    let img = app
        .create_image(
            json!({"name": app.name("x"), "disk_format": "raw", "container_format": "bare"}),
        )
        .await;
    let id = img["id"].as_str().unwrap();
    let msg = expect_error(
        upload_to(&app, id, Some("nowhere"), vec![1, 2, 3]).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(
        msg.contains("Store for identifier nowhere not found"),
        "{msg}"
    );
    // Nothing changed: the image is still queued and takes an upload to a real store.
    assert_eq!(app.show(id).await["status"], "queued");
    let resp = upload_to(&app, id, Some("archive"), vec![1, 2, 3]).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_single_store_shows_no_stores_field() {
    let app = TestApp::spawn().await;
    if app.is_external() {
        return;
    }
    let img: Value = app
        .create_active_image(json!({"name": app.name("one")}), b"abc")
        .await;
    assert!(img.get("stores").is_none(), "{img}");
}

#[tokio::test]
async fn deleting_from_a_store_follows_glance() {
    let single = TestApp::spawn().await;
    if single.is_external() {
        return;
    }
    let img = single
        .create_active_image(json!({"name": single.name("one")}), b"abc")
        .await;
    let path = format!("/v2/stores/file/{}", img["id"].as_str().unwrap());
    assert_eq!(single.delete(&path).await.status(), StatusCode::NOT_FOUND);

    let Some((app, _dir, _)) = multi_store_app().await else {
        return;
    };
    let img = app
        .create_active_image(json!({"name": app.name("only")}), b"abc")
        .await;
    let id = img["id"].as_str().unwrap();
    let msg = expect_error(
        app.delete(&format!("/v2/stores/nowhere/{id}")).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert!(msg.contains("The selected store nowhere is not available on this node."));
    let missing = crate::helpers::new_uuid();
    let msg = expect_error(
        app.delete(&format!("/v2/stores/archive/{missing}")).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert!(
        msg.contains(&format!("Failed to find image {missing}")),
        "{msg}"
    );
    // The only copy of the data may not be removed (the image should be deleted instead).
    let msg = expect_error(
        app.delete(&format!("/v2/stores/local/{id}")).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(
        msg.contains("Cannot delete image data from the only store"),
        "{msg}"
    );
    // Only admins remove locations; an image without data is not active.
    let owner = crate::helpers::Persona::member(&app.name("proj"));
    let resp = app
        .send(
            app.request(Method::POST, "/v2/images")
                .headers(owner.headers())
                .json(&json!({"name": "mine"})),
        )
        .await;
    let mine = expect_json(resp, StatusCode::CREATED).await;
    let mine_path = format!("/v2/stores/local/{}", mine["id"].as_str().unwrap());
    let resp = app
        .send(
            app.request(Method::DELETE, &mine_path)
                .headers(owner.headers()),
        )
        .await;
    let msg = expect_error(resp, StatusCode::FORBIDDEN).await;
    assert!(msg.contains("delete_image_location"), "{msg}");
    let msg = expect_error(app.delete(&mine_path).await, StatusCode::CONFLICT).await;
    assert!(msg.contains("status is not 'active'"), "{msg}");
}

#[tokio::test]
async fn locations_and_direct_url_only_when_configured() {
    let app = TestApp::spawn_with_config(
        "[images]\nshow_image_direct_url = true\nshow_multiple_locations = true\n",
    )
    .await;
    if app.is_external() {
        return;
    }
    let owner = crate::helpers::Persona::member(&app.name("proj"));
    let resp = app
        .send(
            app.request(Method::POST, "/v2/images")
                .headers(owner.headers())
                .json(&json!({"name": "loc", "disk_format": "raw", "container_format": "bare"})),
        )
        .await;
    let img = expect_json(resp, StatusCode::CREATED).await;
    assert_eq!(img["locations"], json!([]));
    assert!(img.get("direct_url").is_none());
    let id = img["id"].as_str().unwrap();
    assert_eq!(
        app.put_file(id, b"abc".to_vec()).await.status(),
        StatusCode::NO_CONTENT
    );
    let shown = app.show(id).await;
    let url = shown["direct_url"].as_str().unwrap();
    assert!(url.starts_with("file://") && url.ends_with(id), "{url}");
    assert_eq!(shown["locations"], json!([{"url": url, "metadata": {}}]));
    // A deactivated image's locations are hidden from non-admins.
    assert_eq!(
        app.post_empty(&format!("/v2/images/{id}/actions/deactivate"))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let resp = app
        .send(
            app.request(Method::GET, &format!("/v2/images/{id}"))
                .headers(owner.headers()),
        )
        .await;
    let v = expect_json(resp, StatusCode::OK).await;
    assert_eq!(v["locations"], json!([]));
    assert_eq!(app.show(id).await["locations"][0]["url"], url);

    // Off by default.
    let plain = TestApp::spawn().await;
    let img = plain
        .create_active_image(json!({"name": plain.name("p")}), b"abc")
        .await;
    assert!(img.get("locations").is_none() && img.get("direct_url").is_none());
}

/// copy-image between the file store and the vSphere store, both ways: each copy serves the
/// image alone once the other store's data is removed.
#[tokio::test]
async fn images_are_copied_between_the_file_store_and_vsphere() {
    let Some((app, _dir, remote)) = multi_store_app().await else {
        return;
    };
    if remote.vmware {
        copy_both_ways(&app, "vsphere").await;
    }
}

/// As above, with Cinder volumes.
#[tokio::test]
async fn images_are_copied_between_the_file_store_and_cinder() {
    let Some((app, _dir, remote)) = multi_store_app().await else {
        return;
    };
    if remote.cinder {
        copy_both_ways(&app, "volumes").await;
    }
}

async fn copy_both_ways(app: &TestApp, other: &str) {
    let data = test_data(5 * 1024 * 1024 + 3);
    let img = app
        .create_image(
            json!({"name": app.name("copy"), "disk_format": "raw", "container_format": "bare"}),
        )
        .await;
    let id = img["id"].as_str().unwrap().to_owned();
    let resp = upload_to(app, &id, None, data.clone()).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    for (from, to) in [("local", other), (other, "local")] {
        let body = json!({"method": {"name": "copy-image"}, "stores": [to]});
        app.import_accepted(&id, &body).await;
        let deadline = std::time::Instant::now() + crate::helpers::IMPORT_DEADLINE;
        loop {
            let img = app.show(&id).await;
            if img["stores"] == format!("{from},{to}") && img.get("os_glance_import_task").is_none()
            {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "copy to {to} stuck: {img}"
            );
            tokio::time::sleep(crate::helpers::POLL_INTERVAL).await;
        }
        let (_, task) = app.wait_for_import(&id).await;
        assert_eq!(task["status"], "success", "{task}");
        let path = format!("/v2/stores/{from}/{id}");
        assert_eq!(app.delete(&path).await.status(), StatusCode::NO_CONTENT);
        let shown = app.show(&id).await;
        assert_eq!(shown["stores"], to, "{shown}");
        assert_eq!(shown["checksum"], md5_hex(&data).as_str());
        let resp = app.download(&id).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(
            resp.bytes().await.unwrap() == data,
            "served from {to}: bytes differ"
        );
    }
    assert_eq!(
        app.delete(&format!("/v2/images/{id}")).await.status(),
        StatusCode::NO_CONTENT
    );
}

/// The volumes named `name` in the Cinder store's project, asked of Cinder itself.
async fn cinder_volumes_named(name: &str) -> Vec<Value> {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let client = reqwest::Client::new();
    let user = json!({"name": var("CINDER_USER"), "password": var("CINDER_PASSWORD"),
                      "domain": {"name": "Default"}});
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": user}},
        "scope": {"project": {"name": var("CINDER_PROJECT"), "domain": {"name": "Default"}}}}});
    let resp = client
        .post(format!("{}/auth/tokens", var("CINDER_AUTH_URL")))
        .json(&body)
        .send()
        .await
        .unwrap();
    let token = resp.headers()["x-subject-token"]
        .to_str()
        .unwrap()
        .to_owned();
    let v: Value = resp.json().await.unwrap();
    let url = v["token"]["catalog"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["type"] == "volumev3")
        .flat_map(|s| s["endpoints"].as_array().unwrap())
        .find(|e| e["interface"] == "public")
        .and_then(|e| e["url"].as_str())
        .unwrap()
        .to_owned();
    let v: Value = client
        .get(format!("{url}/volumes/detail?name={name}"))
        .header("x-auth-token", token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["volumes"].as_array().unwrap().clone()
}

/// `kill -9` of a node while it writes an upload into a Cinder volume: once the upload's
/// lease has expired, the surviving node returns the image to `queued` and removes the volume,
/// with the attachment the dead node left on it.
#[tokio::test]
async fn a_node_killed_during_a_cinder_upload_leaves_no_volume() {
    let Some(section) = cinder_section() else {
        return;
    };
    let config = format!(
        "[images]\nupload_lease_secs = 1\n\n[store]\ndefault = \"volumes\"\nid = \"local\"\n\n{section}"
    );
    let Some(nodes) = TestApp::spawn_cluster_with(1, &config).await else {
        return;
    };
    let survivor = &nodes[0];
    let mut victim = survivor.spawn_sibling().await;
    let img = survivor
        .create_image(json!({"name": survivor.name("cinder-kill"),
                             "disk_format": "raw", "container_format": "bare"}))
        .await;
    let id = img["id"].as_str().unwrap().to_owned();
    let volume_name = format!("image-{id}");
    let size: usize = 256 << 20;
    let mut sock = tokio::net::TcpStream::connect(victim.host_port())
        .await
        .unwrap();
    let head = format!(
        "PUT /v2/images/{id}/file HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n"
    );
    send_or_show_answer(&mut sock, head.as_bytes()).await;
    // Send data until the volume is attached and being written, then a little more.
    let chunk = vec![7u8; 1 << 20];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut sent = 0;
    loop {
        send_or_show_answer(&mut sock, &chunk).await;
        sent += chunk.len();
        let vols = cinder_volumes_named(&volume_name).await;
        if vols.iter().any(|v| v["status"] == "in-use") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline && sent < size / 2,
            "the upload never attached its volume: {vols:?}"
        );
    }
    for _ in 0..16 {
        send_or_show_answer(&mut sock, &chunk).await;
    }
    victim.kill();
    assert_eq!(cinder_volumes_named(&volume_name).await.len(), 1);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let status = survivor.show(&id).await["status"].clone();
        let left = cinder_volumes_named(&volume_name).await;
        if status == "queued" && left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "image {status}, volumes left: {left:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let img = survivor.show(&id).await;
    assert!(img["size"].is_null() && img["checksum"].is_null(), "{img}");
    // The image takes a new upload, which lands in a new volume.
    let data = test_data(3 << 20);
    assert_eq!(
        survivor.put_file(&id, data.clone()).await.status(),
        StatusCode::NO_CONTENT
    );
    let got = survivor.download(&id).await.bytes().await.unwrap();
    assert!(got == data, "bytes differ after the re-upload");
    assert_eq!(
        survivor.delete(&format!("/v2/images/{id}")).await.status(),
        StatusCode::NO_CONTENT
    );
    assert!(cinder_volumes_named(&volume_name).await.is_empty());
}

/// Writes `data` to an upload in progress; when the server has stopped reading, fails with what
/// it answered.
async fn send_or_show_answer(sock: &mut tokio::net::TcpStream, data: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if let Err(e) = sock.write_all(data).await {
        let mut answer = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            sock.read_to_end(&mut answer),
        )
        .await;
        panic!(
            "the server stopped reading the upload ({e}); it answered: {} ({read:?})",
            String::from_utf8_lossy(&answer)
        );
    }
}
