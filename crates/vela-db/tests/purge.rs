//! `Db::purge` (`vela db purge`): rows deleted before the cutoff go, newer ones and live
//! records stay; image rows only when asked, never those awaiting the scrubber. SQLite
//! always; PostgreSQL and MariaDB when reachable (required with `VELA_REQUIRE_ALL_DBS=1`).

#![allow(clippy::unwrap_used)]

mod common;

use common::{connect, fresh};
use vela_db::{DbError, Dialect, PurgeReport};
use vela_domain::image::ImageLocation;
use vela_domain::{now_micros, Image, ImageId, ImageStatus};

fn id(n: u32) -> ImageId {
    ImageId::parse(&format!("5d0c6a5e-8f3b-4a51-9d2e-1c7b3e9a{n:04}")).unwrap()
}

async fn purge_removes_only_old_deleted_rows(dialect: Dialect) {
    let Some(fresh) = fresh(dialect).await else {
        return;
    };
    let db = connect(&fresh.url).await;
    db.migrate().await.unwrap();
    let (kept, old, pending, recent) = (id(1), id(2), id(3), id(4));
    for i in [&kept, &old, &pending] {
        let mut img = Image::new(i.clone(), Some("p1".into()), now_micros());
        img.properties.insert("k".into(), "v".into());
        img.tags.insert("t".into());
        if i == &pending {
            img.status = ImageStatus::Active;
            img.locations.push(ImageLocation {
                store: "local".into(),
                url: "file:///x".into(),
                metadata: Default::default(),
            });
        }
        db.create_image(&img).await.unwrap();
        db.add_member(i, "p2", 100, now_micros(), |_| Ok(()))
            .await
            .unwrap();
    }
    db.remove_member(&kept, "p2", |_, _| Ok(())).await.unwrap();
    for (i, delayed) in [(&old, false), (&pending, true)] {
        db.update_image(i, false, |img| img.mark_deleted(now_micros(), delayed))
            .await
            .unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let cutoff = now_micros();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    db.create_image(&Image::new(recent.clone(), Some("p1".into()), now_micros()))
        .await
        .unwrap();
    db.update_image(&recent, false, |img| img.mark_deleted(now_micros(), false))
        .await
        .unwrap();

    // Without `images`: the removed membership goes, every image row stays.
    let r = db.purge(cutoff, false).await.unwrap();
    assert_eq!(
        r,
        PurgeReport {
            members: 1,
            tasks: 0,
            images: 0
        },
        "{dialect:?}"
    );
    for i in [&kept, &old, &pending, &recent] {
        db.get_image(i, true).await.unwrap();
    }

    // With `images`: the old deleted image and its rows go; the newer one, the one awaiting
    // the scrubber and the live one stay, whole.
    let r = db.purge(cutoff, true).await.unwrap();
    assert_eq!(r.images, 1, "{dialect:?}");
    assert!(matches!(
        db.get_image(&old, true).await,
        Err(DbError::NotFound)
    ));
    for i in [&pending, &recent] {
        db.get_image(i, true).await.unwrap();
    }
    let live = db.get_image(&kept, false).await.unwrap();
    assert_eq!(live.properties.get("k").map(String::as_str), Some("v"));
    assert!(live.tags.contains("t"));
    // A second run finds nothing; the purged id may be used again.
    assert_eq!(
        db.purge(cutoff, true).await.unwrap(),
        PurgeReport::default()
    );
    db.create_image(&Image::new(old.clone(), Some("p1".into()), now_micros()))
        .await
        .unwrap();
    db.close().await;
    fresh.drop_database().await;
}

#[tokio::test]
async fn sqlite() {
    purge_removes_only_old_deleted_rows(Dialect::Sqlite).await;
}

#[tokio::test]
async fn postgres() {
    purge_removes_only_old_deleted_rows(Dialect::Postgres).await;
}

#[tokio::test]
async fn mysql() {
    purge_removes_only_old_deleted_rows(Dialect::Mysql).await;
}
