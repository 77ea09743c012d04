//! The notification outbox: changes store their notifications in their own transaction (and
//! a refused change stores none), in order; the sender lease is held by one node at a time;
//! a full outbox drops new notifications instead of failing changes. SQLite always;
//! PostgreSQL and MariaDB when reachable (required with `VELA_REQUIRE_ALL_DBS=1`).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{connect, fresh};
use serde_json::Value;
use vela_db::{Dialect, Notifications};
use vela_domain::notify::{Filter, Priority};
use vela_domain::{now_micros, DomainError, Image, ImageId, ImageStatus};

fn events(batch: &[vela_db::OutboxMessage]) -> Vec<(String, String)> {
    batch
        .iter()
        .map(|m| {
            let v: Value = serde_json::from_str(&m.message).unwrap();
            let p = &v["payload"];
            let id = p["id"].as_str().or(p["image_id"].as_str()).unwrap_or("");
            (v["event_type"].as_str().unwrap().to_owned(), id.to_owned())
        })
        .collect()
}

async fn outbox_keeps_changes_and_order(dialect: Dialect) {
    let Some(fresh) = fresh(dialect).await else {
        return;
    };
    let plain = connect(&fresh.url).await;
    plain.migrate().await.unwrap();
    let n = Notifications::new("image.test".into(), Filter::new(vec!["task".into()]), 5);
    let db = plain.clone().with_notifications(n.clone());

    // Without notifications nothing is stored.
    let quiet = ImageId::generate();
    plain
        .create_image(&Image::new(quiet.clone(), Some("p1".into()), now_micros()))
        .await
        .unwrap();
    assert_eq!(db.outbox_depth().await.unwrap(), 0);

    let id = ImageId::generate();
    db.create_image(&Image::new(id.clone(), Some("p1".into()), now_micros()))
        .await
        .unwrap();
    db.update_image(&id, false, |img| {
        img.name = Some("renamed".into());
        Ok(())
    })
    .await
    .unwrap();
    // A refused change stores nothing; a change of bookkeeping only stores nothing.
    let refused = db
        .update_image(&id, false, |img| -> Result<(), DomainError> {
            img.name = Some("never".into());
            Err(DomainError::Forbidden("no".into()))
        })
        .await;
    assert!(refused.is_err());
    db.update_image(&id, false, |img| {
        img.upload_lease_until = Some(now_micros());
        Ok(())
    })
    .await
    .unwrap();
    db.update_image(&id, false, |img| img.set_status(ImageStatus::Saving))
        .await
        .unwrap();
    db.add_member(&id, "p2", 10, now_micros(), |_| Ok(()))
        .await
        .unwrap();
    db.update_image(&id, false, |img| img.mark_deleted(now_micros(), false))
        .await
        .unwrap();

    let batch = db.outbox_batch(100).await.unwrap();
    let got = events(&batch);
    let want = [
        "image.create",
        "image.update",
        "image.prepare",
        "image.member.create",
        "image.delete",
    ];
    assert_eq!(
        got.iter().map(|(e, _)| e.as_str()).collect::<Vec<_>>(),
        want,
        "{dialect:?}"
    );
    assert!(got.iter().all(|(_, i)| i == id.as_str()));
    assert!(batch.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(batch.iter().all(|m| m.priority == Priority::Info));
    let first: Value = serde_json::from_str(&batch[0].message).unwrap();
    assert_eq!(first["publisher_id"], "image.test");
    assert_eq!(first["priority"], "INFO");
    assert_eq!(first["message_id"].as_str().unwrap().len(), 36);

    // One sender at a time; a released or expired lease passes on.
    assert!(db
        .outbox_lease("node-a", Duration::from_secs(30))
        .await
        .unwrap());
    assert!(db
        .outbox_lease("node-a", Duration::from_secs(30))
        .await
        .unwrap());
    assert!(!db
        .outbox_lease("node-b", Duration::from_secs(30))
        .await
        .unwrap());
    db.outbox_release("node-a").await.unwrap();
    assert!(db
        .outbox_lease("node-b", Duration::from_millis(1))
        .await
        .unwrap());
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(db
        .outbox_lease("node-a", Duration::from_secs(30))
        .await
        .unwrap());

    // Sent ones go; the rest stay in order.
    let seqs: Vec<i64> = batch[..2].iter().map(|m| m.seq).collect();
    db.outbox_remove(&seqs).await.unwrap();
    assert_eq!(db.outbox_depth().await.unwrap(), 3);
    assert_eq!(db.outbox_batch(1).await.unwrap()[0].seq, batch[2].seq);

    // A full outbox drops new notifications and the change still happens.
    n.set_depth(5);
    let other = ImageId::generate();
    db.create_image(&Image::new(other.clone(), Some("p1".into()), now_micros()))
        .await
        .unwrap();
    assert_eq!(db.outbox_depth().await.unwrap(), 3);
    assert_eq!(n.dropped(), 1);
    n.set_depth(0);
    db.update_image(&other, false, |img| {
        img.min_ram = 5;
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(db.outbox_depth().await.unwrap(), 4);

    // Sent seqs with a gap leave the one in between (the range delete is only for runs).
    let rest = db.outbox_batch(10).await.unwrap();
    let gapped = [rest[0].seq, rest[2].seq];
    db.outbox_remove(&gapped).await.unwrap();
    let left: Vec<i64> = db
        .outbox_batch(10)
        .await
        .unwrap()
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(left, [rest[1].seq, rest[3].seq], "{dialect:?}");

    // An image with as much metadata as the API allows gets its whole payload stored.
    let big = ImageId::generate();
    let mut img = Image::new(big.clone(), Some("p1".into()), now_micros());
    for k in ["a", "b", "c"] {
        img.properties.insert(k.into(), "x".repeat(60_000));
    }
    db.create_image(&img).await.unwrap();
    let last = db.outbox_batch(10).await.unwrap().pop().unwrap();
    assert!(last.message.len() > 180_000, "{dialect:?}");
    let v: Value = serde_json::from_str(&last.message).unwrap();
    assert_eq!(
        v["payload"]["properties"]["c"].as_str().unwrap().len(),
        60_000
    );
    db.close().await;
}

#[tokio::test]
async fn sqlite() {
    outbox_keeps_changes_and_order(Dialect::Sqlite).await;
}

#[tokio::test]
async fn postgres() {
    outbox_keeps_changes_and_order(Dialect::Postgres).await;
}

#[tokio::test]
async fn mysql() {
    outbox_keeps_changes_and_order(Dialect::Mysql).await;
}
