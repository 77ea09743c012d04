//! An image is read in several queries (its row, then properties, locations and tags). A read
//! racing a write must see the image wholly before or wholly after it, on every dialect: a
//! writer keeps changing the name and a property together while readers check they agree.
//! SQLite always; PostgreSQL and MariaDB when reachable (required with
//! `VELA_REQUIRE_ALL_DBS=1`, as in CI).

#![allow(clippy::unwrap_used)]

mod common;

use common::{connect, fresh};
use vela_db::Dialect;
use vela_domain::{Image, ImageId};

async fn reads_see_one_version(dialect: Dialect) {
    let Some(fresh) = fresh(dialect).await else {
        return;
    };
    let db = connect(&fresh.url).await;
    db.migrate().await.unwrap();
    let id = ImageId::parse("7a4c1b52-0c4f-4d8e-9a57-3c1f7c0f2d11").unwrap();
    let mut img = Image::new(id.clone(), Some("p1".into()), 1_700_000_000_000_000);
    img.name = Some("0".into());
    img.properties.insert("n".into(), "0".into());
    db.create_image(&img).await.unwrap();

    let writer = {
        let db = db.clone();
        let id = id.clone();
        tokio::spawn(async move {
            for i in 1..=300 {
                db.update_image(&id, false, |img| {
                    img.name = Some(i.to_string());
                    img.properties.insert("n".into(), i.to_string());
                    Ok(())
                })
                .await
                .unwrap();
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() {
        let img = db.get_image(&id, false).await.unwrap();
        assert_eq!(
            img.name.as_deref(),
            img.properties.get("n").map(String::as_str),
            "a read saw the row of one write and the properties of another"
        );
        reads += 1;
    }
    writer.await.unwrap();
    assert!(reads > 10, "only {reads} reads raced the writes");
    db.close().await;
    fresh.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_see_one_version_on_sqlite() {
    reads_see_one_version(Dialect::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_see_one_version_on_postgres() {
    reads_see_one_version(Dialect::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_see_one_version_on_mariadb() {
    reads_see_one_version(Dialect::Mysql).await;
}
