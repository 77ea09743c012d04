//! GET /v2/images: paging, sorting and filters (sample 13). Every test tags
//! its images with the test's unique prefix and filters on that tag, so the
//! suite also runs against a shared server.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    assert_image_shape, expect_error, ids_of, new_uuid, test_data, Persona, TestApp,
};

/// Ids that sort in creation order (so `created_at desc, id desc` equals
/// reverse creation order whether or not timestamps tie).
fn ordered_id(i: usize) -> String {
    format!("{:08x}{}", i, &new_uuid()[8..])
}

/// Creates `n` queued images tagged with the prefix; returns them in creation order.
async fn create_tagged(app: &TestApp, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    for i in 0..n {
        let img = app
            .create_image(
                json!({"id": ordered_id(i), "name": app.name(&format!("img{i}")),
                                 "tags": [app.prefix]}),
            )
            .await;
        out.push(img);
    }
    out
}

fn id(img: &Value) -> String {
    img["id"].as_str().unwrap().to_owned()
}

fn reversed_ids(imgs: &[Value]) -> Vec<String> {
    imgs.iter().rev().map(id).collect()
}

async fn list_status(app: &TestApp, query: &str) -> StatusCode {
    app.get(&format!("/v2/images?{query}")).await.status()
}

#[tokio::test]
async fn list_shape_and_default_order() {
    let app = TestApp::spawn().await;
    let imgs = create_tagged(&app, 3).await;
    let tag = &app.prefix;
    let list = app.list(&format!("tag={tag}")).await;
    let mut k = crate::helpers::keys(&list);
    k.sort();
    assert_eq!(k, ["first", "images", "schema"]);
    assert_eq!(list["schema"], "/v2/schemas/images");
    assert_eq!(list["first"], format!("/v2/images?tag={tag}"));
    assert_eq!(ids_of(&list), reversed_ids(&imgs));
    for (got, want) in list["images"]
        .as_array()
        .unwrap()
        .iter()
        .zip(imgs.iter().rev())
    {
        assert_image_shape(got);
        assert_eq!(got, want);
    }
    // No query at all.
    let all = app.list("").await;
    assert_eq!(all["first"], "/v2/images");
    assert_eq!(all["schema"], "/v2/schemas/images");
    let all_ids = ids_of(&all);
    if !app.is_external() {
        assert_eq!(all_ids, reversed_ids(&imgs));
    }
}

#[tokio::test]
async fn list_paging_follows_next_links() {
    let app = TestApp::spawn().await;
    let imgs = create_tagged(&app, 5).await;
    let tag = app.prefix.clone();
    let want = reversed_ids(&imgs);
    let mut got = Vec::new();
    let mut path = format!("/v2/images?limit=2&tag={tag}");
    let mut pages = 0;
    loop {
        let resp = app.get(&path).await;
        let page = crate::helpers::expect_json(resp, StatusCode::OK).await;
        pages += 1;
        assert_eq!(page["first"], format!("/v2/images?limit=2&tag={tag}"));
        let ids = ids_of(&page);
        got.extend(ids.clone());
        match page.get("next") {
            Some(next) => {
                assert_eq!(ids.len(), 2);
                let last = ids.last().unwrap();
                assert_eq!(*next, format!("/v2/images?limit=2&tag={tag}&marker={last}"));
                path = next.as_str().unwrap().to_owned();
            }
            None => {
                assert_eq!(ids.len(), 1, "final page");
                break;
            }
        }
        assert!(pages < 10);
    }
    assert_eq!(pages, 3);
    assert_eq!(got, want);
}

#[tokio::test]
async fn list_final_page_may_be_empty() {
    let app = TestApp::spawn().await;
    let imgs = create_tagged(&app, 4).await;
    let tag = app.prefix.clone();
    let p1 = app.list(&format!("tag={tag}&limit=2")).await;
    let next = p1["next"].as_str().unwrap().to_owned();
    assert_eq!(
        next,
        format!("/v2/images?tag={tag}&limit=2&marker={}", id(&imgs[2]))
    );
    let p2 = crate::helpers::expect_json(app.get(&next).await, StatusCode::OK).await;
    assert_eq!(ids_of(&p2), [id(&imgs[1]), id(&imgs[0])]);
    assert_eq!(p2["first"], format!("/v2/images?tag={tag}&limit=2"));
    let next = p2["next"].as_str().unwrap().to_owned();
    let p3 = crate::helpers::expect_json(app.get(&next).await, StatusCode::OK).await;
    assert_eq!(p3["images"], json!([]));
    assert!(p3.get("next").is_none(), "{p3}");
    // limit larger than the result set: no next.
    let all = app.list(&format!("tag={tag}&limit=10")).await;
    assert_eq!(ids_of(&all), reversed_ids(&imgs));
    assert!(all.get("next").is_none());
    // limit=0: nothing, no next.
    let none = app.list(&format!("tag={tag}&limit=0")).await;
    assert_eq!(none["images"], json!([]));
    assert!(none.get("next").is_none());
    // Marker alone (no limit) continues after the marker.
    let rest = app
        .list(&format!("tag={tag}&marker={}", id(&imgs[2])))
        .await;
    assert_eq!(ids_of(&rest), [id(&imgs[1]), id(&imgs[0])]);
    assert_eq!(rest["first"], format!("/v2/images?tag={tag}"));
}

#[tokio::test]
async fn list_bad_limit_and_marker_are_400() {
    let app = TestApp::spawn().await;
    create_tagged(&app, 1).await;
    let tag = &app.prefix;
    for q in [
        format!("tag={tag}&marker={}", new_uuid()),
        format!("tag={tag}&marker=not-a-uuid"),
        format!("tag={tag}&limit=abc"),
        format!("tag={tag}&limit=-1"),
        format!("tag={tag}&limit=1.5"),
    ] {
        let resp = app.get(&format!("/v2/images?{q}")).await;
        expect_error(resp, StatusCode::BAD_REQUEST).await;
    }
}

#[tokio::test]
async fn list_limit_config_default_and_max() {
    let app =
        TestApp::spawn_with_config("[images]\nlimit_param_default = 2\napi_limit_max = 3\n").await;
    if app.is_external() {
        return;
    }
    let imgs = create_tagged(&app, 5).await;
    let page = app.list("").await;
    assert_eq!(ids_of(&page), reversed_ids(&imgs)[..2]);
    assert_eq!(page["next"], format!("/v2/images?marker={}", id(&imgs[3])));
    let page = app.list("limit=100").await;
    assert_eq!(ids_of(&page), reversed_ids(&imgs)[..3]);
    assert!(page.get("next").is_some(), "capped page is full: {page}");
}

/// Three images named b, c, a (created in that order) with distinct disk
/// formats; only `b` (raw) gets 30 bytes of data and becomes active.
async fn sortable(app: &TestApp) -> Vec<Value> {
    let mut out = Vec::new();
    for (i, (n, df)) in [("b", "raw"), ("c", "iso"), ("a", "qcow2")]
        .iter()
        .enumerate()
    {
        let img = app
            .create_image(
                json!({"id": ordered_id(i), "name": app.name(n), "disk_format": df,
                                 "container_format": "bare", "tags": [app.prefix]}),
            )
            .await;
        out.push(img);
    }
    let id0 = id(&out[0]);
    let resp = app.put_file(&id0, test_data(30)).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    out[0] = app.show(&id0).await;
    out
}

#[tokio::test]
async fn list_sorting() {
    let app = TestApp::spawn().await;
    let imgs = sortable(&app).await; // names b, c, a
    let tag = &app.prefix;
    let (b, c, a) = (id(&imgs[0]), id(&imgs[1]), id(&imgs[2]));
    let cases: Vec<(String, Vec<&String>)> = vec![
        ("sort_key=name&sort_dir=asc".to_owned(), vec![&a, &b, &c]),
        ("sort_key=name&sort_dir=desc".to_owned(), vec![&c, &b, &a]),
        ("sort_key=name".to_owned(), vec![&c, &b, &a]),
        ("sort=name:asc".to_owned(), vec![&a, &b, &c]),
        ("sort=name".to_owned(), vec![&c, &b, &a]),
        ("sort=name:desc".to_owned(), vec![&c, &b, &a]),
        (
            "sort_key=created_at&sort_dir=asc".to_owned(),
            vec![&b, &c, &a],
        ),
        ("sort_dir=asc".to_owned(), vec![&b, &c, &a]),
        ("sort=status:asc,name:asc".to_owned(), vec![&b, &a, &c]),
        (
            "sort_key=status&sort_key=name&sort_dir=asc&sort_dir=desc".to_owned(),
            vec![&b, &c, &a],
        ),
        ("sort=disk_format:asc".to_owned(), vec![&c, &a, &b]),
        ("sort=id:asc".to_owned(), vec![&b, &c, &a]),
        ("sort_key=id&sort_dir=desc".to_owned(), vec![&a, &c, &b]),
    ];
    for (q, want) in cases {
        let list = app.list(&format!("tag={tag}&{q}")).await;
        let want: Vec<String> = want.into_iter().cloned().collect();
        assert_eq!(ids_of(&list), want, "{q}");
    }
    // Paging with a custom sort uses the sort keys for the marker.
    let p1 = app.list(&format!("tag={tag}&sort=name:asc&limit=1")).await;
    assert_eq!(ids_of(&p1), [a.as_str()]);
    let next = p1["next"].as_str().unwrap().to_owned();
    assert_eq!(
        next,
        format!("/v2/images?tag={tag}&sort=name%3Aasc&limit=1&marker={a}")
    );
    let p2 = crate::helpers::expect_json(app.get(&next).await, StatusCode::OK).await;
    assert_eq!(ids_of(&p2), [b.as_str()]);
}

#[tokio::test]
async fn list_bad_sorting_is_400() {
    let app = TestApp::spawn().await;
    let tag = &app.prefix;
    for q in [
        "sort_key=foo",
        "sort_key=owner",
        "sort_key=name&sort_dir=up",
        "sort=name:up",
        "sort=foo:asc",
        "sort=name:asc&sort_key=name",
        "sort=name&sort_dir=asc",
        "sort_key=name&sort_dir=asc&sort_dir=desc",
    ] {
        let resp = app.get(&format!("/v2/images?tag={tag}&{q}")).await;
        expect_error(resp, StatusCode::BAD_REQUEST).await;
    }
    let resp = app.get("/v2/images?sort_key=foo").await;
    let msg = expect_error(resp, StatusCode::BAD_REQUEST).await;
    assert_eq!(
        msg,
        "Invalid sort key: foo. It must be one of the following: name, status, \
         container_format, disk_format, size, id, created_at, updated_at.<br /><br />\n\n\n"
    );
}

#[tokio::test]
async fn list_filter_name_status_formats_size() {
    let app = TestApp::spawn().await;
    let imgs = sortable(&app).await; // b: raw active 30 bytes; c: iso queued; a: qcow2 queued
    let tag = &app.prefix;
    let (b, c, a) = (id(&imgs[0]), id(&imgs[1]), id(&imgs[2]));
    let name_a = app.name("a");
    let name_b = app.name("b");
    let name_c = app.name("c");
    let cases: Vec<(String, Vec<&String>)> = vec![
        (format!("name={name_a}"), vec![&a]),
        (format!("name=eq:{name_a}"), vec![&a]),
        ("name=nosuch".to_owned(), vec![]),
        ("status=active".to_owned(), vec![&b]),
        ("status=queued".to_owned(), vec![&a, &c]),
        ("status=in:queued,active".to_owned(), vec![&a, &c, &b]),
        ("disk_format=iso".to_owned(), vec![&c]),
        ("disk_format=in:raw,qcow2".to_owned(), vec![&a, &b]),
        ("container_format=bare".to_owned(), vec![&a, &c, &b]),
        ("container_format=ovf".to_owned(), vec![]),
        ("size_min=30".to_owned(), vec![&b]),
        ("size_min=31".to_owned(), vec![]),
        ("size_max=30".to_owned(), vec![&b]),
        ("size_max=29".to_owned(), vec![]),
        ("size_min=1&size_max=100".to_owned(), vec![&b]),
        (format!("id={c}"), vec![&c]),
        (format!("id=in:{a},{c}"), vec![&a, &c]),
        (format!("name=in:{name_a},{name_c}"), vec![&a, &c]),
        (format!("name=in:{name_b}"), vec![&b]),
        (
            format!("checksum={}", imgs[0]["checksum"].as_str().unwrap()),
            vec![&b],
        ),
        (
            format!(
                "os_hash_value={}",
                imgs[0]["os_hash_value"].as_str().unwrap()
            ),
            vec![&b],
        ),
        ("min_ram=0".to_owned(), vec![&a, &c, &b]),
        ("min_ram=1".to_owned(), vec![]),
    ];
    for (q, want) in cases {
        let list = app.list(&format!("tag={tag}&{q}")).await;
        let want: Vec<String> = want.into_iter().cloned().collect();
        assert_eq!(ids_of(&list), want, "{q}");
    }
    for q in [
        "size_min=abc",
        "size_max=1.5",
        "name=foo:bar",
        "status=gt:active",
    ] {
        assert_eq!(
            list_status(&app, &format!("tag={tag}&{q}")).await,
            StatusCode::BAD_REQUEST,
            "{q}"
        );
    }
}

#[tokio::test]
async fn list_filter_in_with_quoted_values() {
    let app = TestApp::spawn().await;
    let tag = &app.prefix;
    let n1 = app.name("glass, darkly");
    let n2 = app.name("share me");
    let n3 = app.name("other");
    let mut ids = Vec::new();
    for (i, n) in [&n1, &n2, &n3].iter().enumerate() {
        let img = app
            .create_image(json!({"id": ordered_id(i), "name": n, "tags": [tag]}))
            .await;
        ids.push(id(&img));
    }
    let enc = |s: &str| {
        s.replace(' ', "%20")
            .replace(',', "%2C")
            .replace('"', "%22")
    };
    let q = format!("tag={tag}&name=in:{}", enc(&format!("\"{n1}\",{n2}")));
    let list = app.list(&q).await;
    assert_eq!(ids_of(&list), [ids[1].clone(), ids[0].clone()]);
    // Unquoted, the comma splits the name and nothing matches the pieces.
    let q = format!("tag={tag}&name=in:{}", enc(&n1));
    assert_eq!(app.list(&q).await["images"], json!([]));
    // A literal value with a comma needs no quoting for plain equality.
    let q = format!("tag={tag}&name={}", enc(&n1));
    assert_eq!(ids_of(&app.list(&q).await), [ids[0].clone()]);
    // Unbalanced quotes.
    let q = format!("tag={tag}&name=in:{}", enc(&format!("\"{n1},{n2}")));
    assert_eq!(list_status(&app, &q).await, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn list_filter_tags_are_anded() {
    let app = TestApp::spawn().await;
    let tag = app.prefix.clone();
    let t2 = format!("{tag}-x");
    let t3 = format!("{tag}-y");
    let i1 = app
        .create_image(json!({"id": ordered_id(0), "name": app.name("1"), "tags": [tag, t2]}))
        .await;
    let i2 = app
        .create_image(json!({"id": ordered_id(1), "name": app.name("2"), "tags": [tag, t2, t3]}))
        .await;
    let i3 = app
        .create_image(json!({"id": ordered_id(2), "name": app.name("3"), "tags": [tag, t3]}))
        .await;
    let l = app.list(&format!("tag={tag}")).await;
    assert_eq!(ids_of(&l), [id(&i3), id(&i2), id(&i1)]);
    let l = app.list(&format!("tag={tag}&tag={t2}")).await;
    assert_eq!(ids_of(&l), [id(&i2), id(&i1)]);
    let l = app.list(&format!("tag={t2}&tag={t3}")).await;
    assert_eq!(ids_of(&l), [id(&i2)]);
    let l = app.list(&format!("tag={t3}&tag={t2}&tag={tag}")).await;
    assert_eq!(ids_of(&l), [id(&i2)]);
    let l = app.list(&format!("tag={tag}&tag={tag}-nosuch")).await;
    assert_eq!(l["images"], json!([]));
}

#[tokio::test]
async fn list_filter_visibility() {
    let app = TestApp::spawn().await;
    let tag = app.prefix.clone();
    let mut by_vis = std::collections::BTreeMap::new();
    for (i, v) in ["private", "shared", "community"].iter().enumerate() {
        let img = app
            .create_image(
                json!({"id": ordered_id(i), "name": app.name(v), "visibility": v,
                                 "tags": [tag]}),
            )
            .await;
        by_vis.insert(*v, id(&img));
    }
    if !app.is_external() {
        // Glance's header-less noauth context lacks the admin *role*, so it
        // cannot publicize; create the public image as an explicit admin.
        let resp = app
            .send(
                app.request(reqwest::Method::POST, "/v2/images")
                    .headers(Persona::admin("adminproj").headers())
                    .json(&json!({"id": ordered_id(3), "name": app.name("public"),
                                  "visibility": "public", "tags": [tag]})),
            )
            .await;
        let img = crate::helpers::expect_json(resp, StatusCode::CREATED).await;
        by_vis.insert("public", id(&img));
    }
    let public: Vec<String> = by_vis.get("public").cloned().into_iter().collect();
    // Default list (admin): everything except community images.
    let l = app.list(&format!("tag={tag}")).await;
    let mut want = public.clone();
    want.extend([by_vis["shared"].clone(), by_vis["private"].clone()]);
    assert_eq!(ids_of(&l), want);
    for v in ["private", "shared", "community"] {
        let l = app.list(&format!("tag={tag}&visibility={v}")).await;
        assert_eq!(ids_of(&l), [by_vis[v].clone()], "{v}");
    }
    let l = app.list(&format!("tag={tag}&visibility=public")).await;
    assert_eq!(ids_of(&l), public);
    let l = app.list(&format!("tag={tag}&visibility=all")).await;
    let mut want = public.clone();
    want.extend([
        by_vis["community"].clone(),
        by_vis["shared"].clone(),
        by_vis["private"].clone(),
    ]);
    assert_eq!(ids_of(&l), want);
    // Quirk: an empty value is not rejected; it matches nothing.
    let l = app.list(&format!("tag={tag}&visibility=")).await;
    assert_eq!(l["images"], json!([]));
    for bad in ["everyone", "PUBLIC", "al"] {
        assert_eq!(
            list_status(&app, &format!("tag={tag}&visibility={bad}")).await,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn list_filter_protected_and_hidden() {
    let app = TestApp::spawn().await;
    let tag = app.prefix.clone();
    let plain = app
        .create_image(json!({"id": ordered_id(0), "name": app.name("plain"), "tags": [tag]}))
        .await;
    let prot = app
        .create_image(
            json!({"id": ordered_id(1), "name": app.name("prot"), "tags": [tag],
                             "protected": true}),
        )
        .await;
    let hidden = app
        .create_image(
            json!({"id": ordered_id(2), "name": app.name("hidden"), "tags": [tag],
                             "os_hidden": true}),
        )
        .await;
    let l = app.list(&format!("tag={tag}")).await;
    assert_eq!(
        ids_of(&l),
        [id(&prot), id(&plain)],
        "hidden excluded by default"
    );
    let l = app.list(&format!("tag={tag}&os_hidden=true")).await;
    assert_eq!(ids_of(&l), [id(&hidden)]);
    let l = app.list(&format!("tag={tag}&os_hidden=TRUE")).await;
    assert_eq!(ids_of(&l), [id(&hidden)]);
    let l = app.list(&format!("tag={tag}&os_hidden=false")).await;
    assert_eq!(ids_of(&l), [id(&prot), id(&plain)]);
    let l = app.list(&format!("tag={tag}&protected=true")).await;
    assert_eq!(ids_of(&l), [id(&prot)]);
    let l = app.list(&format!("tag={tag}&protected=false")).await;
    assert_eq!(ids_of(&l), [id(&plain)]);
    let l = app
        .list(&format!("tag={tag}&protected=false&os_hidden=true"))
        .await;
    assert_eq!(ids_of(&l), [id(&hidden)]);
    for q in [
        "protected=True",
        "protected=1",
        "protected=yes",
        "os_hidden=yes",
        "os_hidden=1",
    ] {
        assert_eq!(
            list_status(&app, &format!("tag={tag}&{q}")).await,
            StatusCode::BAD_REQUEST,
            "{q}"
        );
    }
    // Hidden images are still shown by id.
    assert_eq!(app.show(&id(&hidden)).await["os_hidden"], true);
    // Let the protected image be deleted later.
    app.patch_ok(
        &id(&prot),
        &json!([{"op": "replace", "path": "/protected", "value": false}]),
    )
    .await;
}

#[tokio::test]
async fn list_filter_custom_property() {
    let app = TestApp::spawn().await;
    let tag = app.prefix.clone();
    let u = app
        .create_image(
            json!({"id": ordered_id(0), "name": app.name("u"), "tags": [tag],
                             "os_distro": "ubuntu", "hw_video": "vga"}),
        )
        .await;
    let f = app
        .create_image(
            json!({"id": ordered_id(1), "name": app.name("f"), "tags": [tag],
                             "os_distro": "fedora"}),
        )
        .await;
    let l = app.list(&format!("tag={tag}&os_distro=ubuntu")).await;
    assert_eq!(ids_of(&l), [id(&u)]);
    let l = app.list(&format!("tag={tag}&os_distro=fedora")).await;
    assert_eq!(ids_of(&l), [id(&f)]);
    let l = app.list(&format!("tag={tag}&os_distro=debian")).await;
    assert_eq!(l["images"], json!([]));
    let l = app
        .list(&format!("tag={tag}&hw_video=vga&os_distro=ubuntu"))
        .await;
    assert_eq!(ids_of(&l), [id(&u)]);
    let l = app
        .list(&format!("tag={tag}&hw_video=vga&os_distro=fedora"))
        .await;
    assert_eq!(l["images"], json!([]));
}

#[tokio::test]
async fn list_filter_timestamps() {
    let app = TestApp::spawn().await;
    let tag = app.prefix.clone();
    let a = app
        .create_image(json!({"id": ordered_id(0), "name": app.name("a"), "tags": [tag]}))
        .await;
    // Make sure the second image lands in a later second.
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let b = app
        .create_image(json!({"id": ordered_id(1), "name": app.name("b"), "tags": [tag]}))
        .await;
    let (ia, ib) = (id(&a), id(&b));
    let tb = b["created_at"].as_str().unwrap().to_owned();
    assert_ne!(a["created_at"], b["created_at"]);
    let past = "2000-01-01T00:00:00Z";
    let future = "2100-01-01T00:00:00Z";
    let both = vec![ib.clone(), ia.clone()];
    let none: Vec<String> = vec![];
    for col in ["created_at", "updated_at"] {
        let cases: Vec<(String, &Vec<String>)> = vec![
            (format!("{col}=gt:{past}"), &both),
            (format!("{col}=gte:{past}"), &both),
            (format!("{col}=lt:{past}"), &none),
            (format!("{col}=lte:{past}"), &none),
            (format!("{col}=lt:{future}"), &both),
            (format!("{col}=lte:{future}"), &both),
            (format!("{col}=gt:{future}"), &none),
            (format!("{col}=eq:{past}"), &none),
            (format!("{col}={past}"), &none),
            (format!("{col}=neq:{past}"), &both),
            (format!("{col}=gt:{past}&{col}=lt:{future}"), &both),
        ];
        for (q, want) in cases {
            let l = app.list(&format!("tag={tag}&{q}")).await;
            assert_eq!(&ids_of(&l), want, "{q}");
        }
        for bad in [
            format!("{col}=foo:{past}"),
            format!("{col}=gt:notatime"),
            format!("{col}=gt:"),
            format!("{col}=in:{past}"),
        ] {
            assert_eq!(
                list_status(&app, &format!("tag={tag}&{bad}")).await,
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
    }
    let enc = |s: &str| s.replace(':', "%3A");
    let l = app
        .list(&format!("tag={tag}&created_at=gte:{}", enc(&tb)))
        .await;
    assert_eq!(ids_of(&l), [ib.as_str()]);
    let l = app
        .list(&format!("tag={tag}&created_at=lt:{}", enc(&tb)))
        .await;
    assert_eq!(ids_of(&l), [ia.as_str()]);
    // Timestamps without a zone are UTC.
    let l = app
        .list(&format!(
            "tag={tag}&created_at=lt:{}",
            enc(tb.trim_end_matches('Z'))
        ))
        .await;
    assert_eq!(ids_of(&l), [ia.as_str()]);
}

#[tokio::test]
async fn list_changes_since_is_400() {
    let app = TestApp::spawn().await;
    for q in ["changes-since=2020-01-01T00:00:00Z", "changes-since=x"] {
        let resp = app.get(&format!("/v2/images?{q}")).await;
        expect_error(resp, StatusCode::BAD_REQUEST).await;
    }
}

#[tokio::test]
async fn list_filter_owner_and_persona_visibility() {
    let app = TestApp::spawn().await;
    if app.is_external() {
        return;
    }
    let tag = app.prefix.clone();
    let p1 = Persona::member("proj-one");
    let p2 = Persona::member("proj-two");
    let mut ids = Vec::new();
    for (i, (who, vis)) in [
        (&p1, "private"),
        (&p1, "shared"),
        (&p1, "community"),
        (&p2, "private"),
        (&p2, "community"),
    ]
    .iter()
    .enumerate()
    {
        let resp = app
            .send(
                app.request(reqwest::Method::POST, "/v2/images")
                    .headers(who.headers())
                    .json(
                        &json!({"id": ordered_id(i), "name": app.name(vis), "visibility": vis,
                                  "tags": [tag]}),
                    ),
            )
            .await;
        let img = crate::helpers::expect_json(resp, StatusCode::CREATED).await;
        assert_eq!(img["owner"], who.project.as_str());
        ids.push(id(&img));
    }
    // Admin (no headers) filters by owner.
    let l = app.list(&format!("tag={tag}&owner=proj-one")).await;
    assert_eq!(ids_of(&l), [ids[1].clone(), ids[0].clone()]);
    let l = app
        .list(&format!("tag={tag}&owner=proj-one&visibility=all"))
        .await;
    assert_eq!(ids_of(&l), [ids[2].clone(), ids[1].clone(), ids[0].clone()]);
    let l = app.list(&format!("tag={tag}&owner=nobody")).await;
    assert_eq!(l["images"], json!([]));
    // proj-two sees its own images (incl. its community one) but not proj-one's
    // private/shared ones nor, by default, proj-one's community image.
    let resp = app
        .send(
            app.request(reqwest::Method::GET, &format!("/v2/images?tag={tag}"))
                .headers(p2.headers()),
        )
        .await;
    let l = crate::helpers::expect_json(resp, StatusCode::OK).await;
    assert_eq!(ids_of(&l), [ids[4].clone(), ids[3].clone()]);
    let resp = app
        .send(
            app.request(
                reqwest::Method::GET,
                &format!("/v2/images?tag={tag}&visibility=community"),
            )
            .headers(p2.headers()),
        )
        .await;
    let l = crate::helpers::expect_json(resp, StatusCode::OK).await;
    assert_eq!(ids_of(&l), [ids[4].clone(), ids[2].clone()]);
}

/// Another project's private image is no marker: the answer is the same as for an image that
/// does not exist, so neither its existence nor its place in any sort order leaks.
#[tokio::test]
async fn marker_of_an_invisible_image_is_400() {
    let app = TestApp::spawn().await;
    if app.is_external() {
        return; // needs two projects
    }
    let owner = Persona::member(&app.name("owner"));
    let other = Persona::member(&app.name("other"));
    let as_who = |who: &Persona, path: String| {
        app.request(reqwest::Method::GET, &path)
            .headers(who.headers())
    };
    let resp = app
        .send(
            app.request(reqwest::Method::POST, "/v2/images")
                .headers(owner.headers())
                .json(&json!({"name": "secret", "visibility": "private"})),
        )
        .await;
    let img: Value = resp.json().await.unwrap();
    let id = img["id"].as_str().unwrap();
    let resp = app
        .send(as_who(
            &other,
            format!("/v2/images?marker={id}&sort=name:asc"),
        ))
        .await;
    let msg = expect_error(resp, StatusCode::BAD_REQUEST).await;
    assert!(msg.contains("Invalid marker"), "{msg}");
    let resp = app
        .send(as_who(&other, format!("/v2/images?marker={}", new_uuid())))
        .await;
    let missing = expect_error(resp, StatusCode::BAD_REQUEST).await;
    let missing_id = missing.split_whitespace().nth(3).unwrap().to_owned();
    assert_eq!(msg.replace(id, "ID"), missing.replace(&missing_id, "ID"));
    // Its owner pages past it as before.
    let resp = app
        .send(as_who(&owner, format!("/v2/images?marker={id}")))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
}
