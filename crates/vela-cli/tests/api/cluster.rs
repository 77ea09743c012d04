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
