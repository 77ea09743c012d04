//! Several `vela serve` processes on one database and one image directory: every node sees
//! the same truth, and concurrent writers through different nodes never lose an update.

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{md5_hex, TestApp};

#[tokio::test]
async fn nodes_share_one_truth() {
    let Some(nodes) = TestApp::spawn_cluster(3).await else {
        return;
    };
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let name = a.name("fleet");
    let img = a
        .create_image(json!({"name": name, "disk_format": "raw", "container_format": "bare"}))
        .await;
    let id = img["id"].as_str().unwrap();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(
        b.put_file(id, data.clone()).await.status(),
        StatusCode::NO_CONTENT
    );

    let listed = c.list(&format!("name={name}")).await;
    assert_eq!(listed["images"].as_array().unwrap().len(), 1);
    assert_eq!(listed["images"][0]["status"], "active");
    assert_eq!(listed["images"][0]["checksum"], md5_hex(&data));
    let resp = c.download(id).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), &data[..]);

    assert_eq!(
        a.delete(&format!("/v2/images/{id}")).await.status(),
        StatusCode::NO_CONTENT
    );
    for node in [b, c] {
        assert_eq!(
            node.status_of(&format!("/v2/images/{id}")).await,
            StatusCode::NOT_FOUND
        );
    }
}

#[tokio::test]
async fn concurrent_uploads_through_two_nodes_give_one_204_and_one_409() {
    let Some(nodes) = TestApp::spawn_cluster(2).await else {
        return;
    };
    for round in 0..5 {
        let img = nodes[0]
            .create_image(json!({"name": nodes[0].name(&format!("race{round}")),
                                 "disk_format": "raw", "container_format": "bare"}))
            .await;
        let id = img["id"].as_str().unwrap().to_owned();
        let bodies: Vec<Vec<u8>> = vec![vec![1u8; 2_000_000], vec![2u8; 2_000_000]];
        let uploads = nodes.iter().zip(bodies.iter()).map(|(node, body)| {
            let id = id.clone();
            async move { node.put_file(&id, body.clone()).await.status() }
        });
        let mut statuses: Vec<u16> = join_all(uploads).await.iter().map(|s| s.as_u16()).collect();
        statuses.sort();
        assert_eq!(statuses, vec![204, 409], "round {round}");
        let shown = nodes[1].show(&id).await;
        assert_eq!(shown["status"], "active");
        let winner = if shown["checksum"] == md5_hex(&bodies[0]) {
            &bodies[0]
        } else {
            &bodies[1]
        };
        assert_eq!(shown["checksum"], md5_hex(winner));
        let got = nodes[0].download(&id).await.bytes().await.unwrap();
        assert_eq!(got.as_ref(), &winner[..]);
    }
}

#[tokio::test]
async fn concurrent_tag_and_property_updates_lose_nothing() {
    let Some(nodes) = TestApp::spawn_cluster(2).await else {
        return;
    };
    let img = nodes[0]
        .create_image(json!({"name": nodes[0].name("many")}))
        .await;
    let id = img["id"].as_str().unwrap().to_owned();
    let requests = (0..24).map(|i| {
        let node = &nodes[i % 2];
        let id = id.clone();
        async move {
            if i % 3 == 0 {
                node.send(node.request(reqwest::Method::PUT, &format!("/v2/images/{id}/tags/t{i}")))
                    .await
                    .status()
            } else {
                node.patch(
                    &id,
                    crate::helpers::PATCH_V21,
                    &json!([{"op": "add", "path": format!("/p{i}"), "value": "v"}]),
                )
                .await
                .status()
            }
        }
    });
    for status in join_all(requests).await {
        assert!(status.is_success(), "{status}");
    }
    let shown = nodes[1].show(&id).await;
    for i in 0..24 {
        if i % 3 == 0 {
            assert!(
                shown["tags"]
                    .as_array()
                    .unwrap()
                    .contains(&json!(format!("t{i}"))),
                "tag t{i}"
            );
        } else {
            assert_eq!(shown[format!("p{i}")], "v", "property p{i}");
        }
    }
}

/// A small deterministic pseudo-random sequence (xorshift), seeded from the clock.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(7);
        eprintln!("kill test seed: {seed}");
        Rng(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Uploads through nodes that are killed with SIGKILL at random points (20 times). A surviving
/// node reclaims the abandoned uploads once their leases expire: afterwards no image is left in
/// `saving`, every active image's bytes match its checksum, and no file is left without an
/// image.
#[tokio::test]
async fn killed_nodes_leave_no_saving_images_and_no_orphans() {
    use tokio::io::AsyncWriteExt;

    let Some(nodes) = TestApp::spawn_cluster_with(1, "[images]\nupload_lease_secs = 1\n").await
    else {
        return;
    };
    let survivor = &nodes[0];
    let mut rng = Rng::new();
    let size: usize = 3_000_000;
    let data: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
    let mut ids = Vec::new();
    for round in 0..20 {
        let mut victim = survivor.spawn_sibling().await;
        let img = survivor
            .create_image(json!({"name": survivor.name(&format!("kill{round}")),
                                 "disk_format": "raw", "container_format": "bare"}))
            .await;
        let id = img["id"].as_str().unwrap().to_owned();
        ids.push(id.clone());
        let mut sock = tokio::net::TcpStream::connect(victim.host_port())
            .await
            .unwrap();
        let head = format!(
            "PUT /v2/images/{id}/file HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n"
        );
        sock.write_all(head.as_bytes()).await.unwrap();
        // Anywhere from nothing to the whole body, then a random pause, then the crash.
        let sent = rng.below(size as u64 + 1) as usize;
        let _ = sock.write_all(&data[..sent]).await;
        tokio::time::sleep(std::time::Duration::from_millis(rng.below(60))).await;
        victim.kill();
    }

    // Leases are 1 s and the survivor sweeps every 0.5 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let mut saving = 0;
        for id in &ids {
            if survivor.show(id).await["status"] == "saving" {
                saving += 1;
            }
        }
        if saving == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{saving} images still saving"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    let mut active = std::collections::HashSet::new();
    for id in &ids {
        let img = survivor.show(id).await;
        match img["status"].as_str().unwrap() {
            "queued" => assert!(img["size"].is_null() && img["checksum"].is_null(), "{img}"),
            "active" => {
                let got = survivor.download(id).await.bytes().await.unwrap();
                assert_eq!(md5_hex(&got), img["checksum"], "{id}");
                assert_eq!(got.as_ref(), &data[..], "{id}");
                active.insert(id.clone());
            }
            other => panic!("image {id} is {other}"),
        }
    }

    let images_dir = survivor.cluster().unwrap().root.join("images");
    for entry in std::fs::read_dir(&images_dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name == ".partial" {
            continue;
        }
        if ids.contains(&name) {
            assert!(
                active.contains(&name),
                "file {name} belongs to an image that is not active"
            );
        }
    }
    for entry in std::fs::read_dir(images_dir.join(".partial")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !ids.iter().any(|id| name.starts_with(id.as_str())),
            "partial file {name} left behind"
        );
    }
}

/// `vela store gc` removes data no image references (and partial files of uploads that are
/// not running), keeps referenced and recent data.
#[tokio::test]
async fn store_gc_removes_only_unreferenced_data() {
    let Some(nodes) = TestApp::spawn_cluster(1).await else {
        return;
    };
    let node = &nodes[0];
    let data = vec![9u8; 100_000];
    let kept = node
        .create_active_image(json!({"name": node.name("kept")}), &data)
        .await;
    let kept_id = kept["id"].as_str().unwrap();
    let images = node.cluster().unwrap().root.join("images");
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let make = |path: std::path::PathBuf, modified: Option<std::time::SystemTime>| {
        std::fs::write(&path, b"orphan").unwrap();
        if let Some(t) = modified {
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        path
    };
    let orphan = make(images.join(crate::helpers::new_uuid()), Some(old));
    let partial = make(
        images
            .join(".partial")
            .join(format!("{}.x1", crate::helpers::new_uuid())),
        Some(old),
    );
    let young = make(images.join(crate::helpers::new_uuid()), None);
    // The kept image's file is old too: only the reference keeps it.
    std::fs::File::options()
        .write(true)
        .open(images.join(kept_id))
        .unwrap()
        .set_modified(old)
        .unwrap();

    let out = node.run_vela(&["store", "gc", "--grace-secs", "600"]);
    assert!(out.contains("removed 2 objects"), "{out}");
    assert!(!orphan.exists() && !partial.exists());
    assert!(young.exists());
    let got = node.download(kept_id).await.bytes().await.unwrap();
    assert_eq!(got.as_ref(), &data[..]);
}

/// With `delayed_delete`, a deleted image is gone for the API at once, its data stays (also
/// through a store gc) until `scrub_time_secs` passed, and then the scrubber removes it.
#[tokio::test]
async fn delayed_delete_keeps_data_until_scrubbed() {
    let Some(nodes) = TestApp::spawn_cluster_with(
        1,
        "[images]\ndelayed_delete = true\nscrub_time_secs = 2\nscrub_interval_secs = 3600\n",
    )
    .await
    else {
        return;
    };
    let node = &nodes[0];
    let img = node
        .create_active_image(json!({"name": node.name("scrub")}), &[5u8; 10_000])
        .await;
    let id = img["id"].as_str().unwrap();
    let file = node.cluster().unwrap().root.join("images").join(id);
    assert!(file.exists());

    let path = format!("/v2/images/{id}");
    assert_eq!(node.delete(&path).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(node.status_of(&path).await, StatusCode::NOT_FOUND);
    assert!(
        file.exists(),
        "data must survive until the scrub delay passed"
    );

    assert!(node.run_vela(&["scrub"]).contains("scrubbed 0 images"));
    node.run_vela(&["store", "gc", "--grace-secs", "0"]);
    assert!(file.exists(), "pending_delete data is still referenced");

    tokio::time::sleep(std::time::Duration::from_millis(2300)).await;
    let out = node.run_vela(&["scrub"]);
    assert!(out.contains("scrubbed 1 images"), "{out}");
    assert!(!file.exists());
    assert_eq!(node.status_of(&path).await, StatusCode::NOT_FOUND);
}

/// `vela db purge`: without `--images` a deleted image's id stays taken (409 on a create with
/// it); with `--images --age-in-days 0` its row is purged and the id can be used again.
#[tokio::test]
async fn db_purge_removes_deleted_rows() {
    let Some(nodes) = TestApp::spawn_cluster(1).await else {
        return;
    };
    let node = &nodes[0];
    let img = node
        .create_image(json!({"name": node.name("purged")}))
        .await;
    let id = img["id"].as_str().unwrap().to_owned();
    assert_eq!(
        node.delete(&format!("/v2/images/{id}")).await.status(),
        StatusCode::NO_CONTENT
    );
    let again = || async {
        node.send(
            node.request(reqwest::Method::POST, "/v2/images")
                .json(&json!({"id": id, "name": node.name("again")})),
        )
        .await
        .status()
    };
    let out = node.run_vela(&["db", "purge", "--age-in-days", "0"]);
    assert!(out.contains(", 0 images"), "{out}");
    assert_eq!(again().await, StatusCode::CONFLICT);
    let out = node.run_vela(&["db", "purge", "--age-in-days", "0", "--images"]);
    assert!(out.contains(", 1 images"), "{out}");
    assert_eq!(again().await, StatusCode::CREATED);
}

/// `vela db check` reads without changing: a clean deployment has no problems (exit 0); a
/// missing file, a file of another size and an old unreferenced file are each reported
/// (exit 1), and nothing is removed.
#[tokio::test]
async fn db_check_finds_missing_data_and_unreferenced_objects() {
    let Some(nodes) = TestApp::spawn_cluster(1).await else {
        return;
    };
    let node = &nodes[0];
    let data = vec![7u8; 50_000];
    let mut ids = Vec::new();
    for n in 0..3 {
        let img = node
            .create_active_image(json!({"name": node.name(&format!("c{n}"))}), &data)
            .await;
        ids.push(img["id"].as_str().unwrap().to_owned());
    }
    let check = || {
        let out = node.run_vela_output(&["db", "check"]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = check();
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("3 locations checked") && out.contains("\n0 problems"),
        "{out}"
    );

    let images = node.cluster().unwrap().root.join("images");
    std::fs::remove_file(images.join(&ids[0])).unwrap();
    std::fs::write(images.join(&ids[1]), b"short").unwrap();
    let orphan = images.join(crate::helpers::new_uuid());
    std::fs::write(&orphan, b"orphan").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&orphan)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(7 * 86_400))
        .unwrap();
    let (code, out) = check();
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!("image {}: data missing from store", ids[0])),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "image {}: store 'file' holds 5 bytes, the image has 50000",
            ids[1]
        )),
        "{out}"
    );
    assert!(out.contains("1 store objects no image refers to"), "{out}");
    assert!(out.contains("\n3 problems"), "{out}");
    assert!(orphan.exists(), "check removed data");
    let (code, out) = {
        let o = node.run_vela_output(&["db", "check", "--schema-only"]);
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    assert_eq!(code, Some(0), "{out}");
    // "schema version N (this build: N); …": migrated at start, so the same number twice.
    let first = out.lines().next().unwrap();
    let (have, rest) = first
        .strip_prefix("schema version ")
        .unwrap()
        .split_once(" (this build: ")
        .unwrap();
    assert_eq!(rest.split(')').next().unwrap(), have, "{out}");
}
