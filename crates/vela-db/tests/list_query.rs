//! `Db::list_images` on each dialect against a reference written in Rust: the same seeded
//! images (NULLs, ties, every visibility, members in each status, tags, properties, hidden,
//! killed and deleted images) are listed under several scopes, filters and sorts, a page at a
//! time through markers, and the pages put together must be exactly the reference answer.
//! This checks the SQL itself: NULL ordering (PostgreSQL sorts NULL last by default), the
//! marker condition, the scope rules and the filters. SQLite always; PostgreSQL and MariaDB
//! when reachable (required with `VELA_REQUIRE_ALL_DBS=1`, as in CI).

#![allow(clippy::unwrap_used)]

mod common;

use std::cmp::Ordering;

use common::{connect, fresh};
use vela_db::{Db, Dialect, Scope};
use vela_domain::list::{Column, ListQuery, Paging, SortDir};
use vela_domain::member::MemberStatus;
use vela_domain::{Image, ImageId, ImageStatus, Visibility};

const OWNERS: [&str; 3] = ["p1", "p2", "p3"];
/// The project the shared images are shared with.
const MEMBER: &str = "p9";

/// The seeded images. Names and formats are lowercase ASCII letters and digits, so that every
/// dialect's default collation orders them as bytes do.
fn seed_images() -> Vec<Image> {
    let base = 1_700_000_000_000_000;
    let mut out = Vec::new();
    for i in 0..36_i64 {
        let mut img = Image::new(
            ImageId::generate(),
            Some(OWNERS[(i % 3) as usize].into()),
            base + (i % 8) * 1_000,
        );
        img.name = (i % 7 != 0).then(|| format!("img{}", (i * 7) % 10));
        img.size = (i % 5 != 0).then_some(((i * 13) % 6) * 100);
        img.disk_format = (i % 4 != 0).then(|| ["raw", "qcow2", "vmdk"][(i % 3) as usize].into());
        img.container_format = Some("bare".into());
        img.status = match i % 6 {
            5 => ImageStatus::Queued,
            _ => ImageStatus::Active,
        };
        img.visibility = [
            Visibility::Public,
            Visibility::Private,
            Visibility::Shared,
            Visibility::Community,
        ][(i % 4) as usize];
        img.os_hidden = i == 33;
        if i % 2 == 0 {
            img.tags.insert("even".into());
        }
        if i % 3 == 0 {
            img.tags.insert("three".into());
        }
        img.properties.insert(
            "os_distro".into(),
            ["ubuntu", "debian"][(i % 2) as usize].into(),
        );
        if i == 34 {
            img.status = ImageStatus::Killed;
        }
        if i == 35 {
            img.deleted = true;
            img.deleted_at = Some(base);
            img.status = ImageStatus::Deleted;
        }
        out.push(img);
    }
    out
}

/// The member status `MEMBER` has on shared image number `i` (none on some).
fn membership(i: usize) -> Option<MemberStatus> {
    match i % 12 {
        2 => Some(MemberStatus::Accepted),
        6 => Some(MemberStatus::Pending),
        10 => Some(MemberStatus::Rejected),
        _ => None,
    }
}

async fn seed(db: &Db) -> Vec<(Image, Option<MemberStatus>)> {
    let mut out = Vec::new();
    for (i, img) in seed_images().into_iter().enumerate() {
        db.create_image(&img).await.unwrap();
        let member = (img.visibility == Visibility::Shared)
            .then(|| membership(i))
            .flatten();
        if let Some(status) = member {
            db.add_member(&img.id, MEMBER, 100, img.created_at, |_| Ok(()))
                .await
                .unwrap();
            db.set_member_status(&img.id, MEMBER, status, img.created_at, |_, _| Ok(()))
                .await
                .unwrap();
        }
        out.push((img, member));
    }
    out
}

fn query(s: &str) -> ListQuery {
    let pairs: Vec<(String, String)> = s
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    ListQuery::parse(
        &pairs,
        Paging {
            default_limit: 4,
            max_limit: 1000,
        },
    )
    .unwrap()
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Text(String),
    Int(i64),
}

fn key(img: &Image, col: Column) -> Option<Key> {
    let text = |v: Option<&str>| v.map(|s| Key::Text(s.to_owned()));
    match col {
        Column::Id => text(Some(img.id.as_str())),
        Column::Name => text(img.name.as_deref()),
        Column::Status => text(Some(img.status.as_str())),
        Column::ContainerFormat => text(img.container_format.as_deref()),
        Column::DiskFormat => text(img.disk_format.as_deref()),
        Column::Size => img.size.map(Key::Int),
        Column::CreatedAt => Some(Key::Int(img.created_at)),
        Column::UpdatedAt => Some(Key::Int(img.updated_at)),
        other => panic!("no reference key for {other:?}"),
    }
}

/// The reference order: each key in its direction, NULL the smallest value.
fn compare(a: &Image, b: &Image, sort: &[(Column, SortDir)]) -> Ordering {
    for (col, dir) in sort {
        // `Option`'s order puts None first: NULL as the smallest value.
        let o = key(a, *col).cmp(&key(b, *col));
        let o = if *dir == SortDir::Desc {
            o.reverse()
        } else {
            o
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// What Glance shows `scope` for `visibility` (None: the default list) and `member_status`
/// (None: accepted).
fn visible(
    img: &Image,
    member: Option<MemberStatus>,
    scope: &Scope,
    visibility: Option<&str>,
    any_member_status: bool,
) -> bool {
    let own = img.owner.as_deref() == scope.project.as_deref();
    let member = member.filter(|_| scope.project.as_deref() == Some(MEMBER));
    let member_ok = match member {
        Some(MemberStatus::Accepted) => true,
        Some(_) => any_member_status,
        None => false,
    };
    let shared_to_me = img.visibility == Visibility::Shared && member_ok;
    let v = img.visibility;
    if scope.is_admin {
        return match visibility {
            None => v != Visibility::Community || own,
            Some("all") => true,
            Some(name) => v.as_str() == name,
        };
    }
    match visibility {
        None => own || v == Visibility::Public || shared_to_me,
        Some("all") => {
            own || matches!(v, Visibility::Public | Visibility::Community) || shared_to_me
        }
        Some("private") => v == Visibility::Private && own,
        Some("shared") => v == Visibility::Shared && (own || shared_to_me),
        Some(name) => v.as_str() == name,
    }
}

/// Every page of `q` through markers, put together.
async fn all_pages(db: &Db, q: &str, scope: &Scope) -> Vec<String> {
    let mut q = query(q);
    let mut out: Vec<String> = Vec::new();
    loop {
        let page = db.list_images(&q, scope).await.unwrap();
        out.extend(page.iter().map(|i| i.id.as_str().to_owned()));
        match page.last() {
            Some(last) if page.len() as i64 == q.limit => q.marker = Some(last.id.clone()),
            _ => return out,
        }
        assert!(out.len() <= 100, "paging does not end");
    }
}

/// A list case: the query's filters and scope parameters, and the reference predicate for
/// its filters.
struct Case {
    params: &'static str,
    visibility: Option<&'static str>,
    any_member_status: bool,
    filter: fn(&Image) -> bool,
}

const CASES: &[Case] = &[
    Case {
        params: "",
        visibility: None,
        any_member_status: false,
        filter: |_| true,
    },
    Case {
        params: "visibility=all&member_status=all",
        visibility: Some("all"),
        any_member_status: true,
        filter: |_| true,
    },
    Case {
        params: "visibility=shared&member_status=all",
        visibility: Some("shared"),
        any_member_status: true,
        filter: |_| true,
    },
    Case {
        params: "visibility=community",
        visibility: Some("community"),
        any_member_status: false,
        filter: |_| true,
    },
    Case {
        params: "visibility=private",
        visibility: Some("private"),
        any_member_status: false,
        filter: |_| true,
    },
    Case {
        params: "visibility=all&size_min=200&size_max=400",
        visibility: Some("all"),
        any_member_status: false,
        filter: |i| i.size.is_some_and(|s| (200..=400).contains(&s)),
    },
    Case {
        params: "visibility=all&name=img3",
        visibility: Some("all"),
        any_member_status: false,
        filter: |i| i.name.as_deref() == Some("img3"),
    },
    Case {
        params: "visibility=all&disk_format=in:raw,vmdk&status=active",
        visibility: Some("all"),
        any_member_status: false,
        filter: |i| {
            matches!(i.disk_format.as_deref(), Some("raw" | "vmdk"))
                && i.status == ImageStatus::Active
        },
    },
    Case {
        params: "visibility=all&tag=even&tag=three&os_distro=ubuntu",
        visibility: Some("all"),
        any_member_status: false,
        filter: |i| {
            i.tags.contains("even")
                && i.tags.contains("three")
                && i.properties.get("os_distro").map(String::as_str) == Some("ubuntu")
        },
    },
];

const SORTS: &[&str] = &[
    "",
    "sort=name:asc,size:desc",
    "sort_key=size&sort_dir=asc",
    "sort=disk_format:desc,name:asc",
    "sort=status:asc,name:desc",
    "sort_key=name&sort_key=created_at&sort_dir=desc&sort_dir=asc",
];

async fn list_queries(dialect: Dialect) {
    let Some(fresh) = fresh(dialect).await else {
        return;
    };
    let db = connect(&fresh.url).await;
    db.migrate().await.unwrap();
    let seeded = seed(&db).await;
    let scopes = [
        Scope {
            project: Some("padmin".into()),
            is_admin: true,
        },
        Scope {
            project: Some("p1".into()),
            is_admin: false,
        },
        Scope {
            project: Some(MEMBER.into()),
            is_admin: false,
        },
        Scope {
            project: None,
            is_admin: false,
        },
    ];
    let mut checked = 0;
    for scope in &scopes {
        for case in CASES {
            for sort in SORTS {
                let params = format!("{}&{sort}", case.params);
                let sort_keys = query(&params).sort;
                let mut want: Vec<&Image> = seeded
                    .iter()
                    .filter(|(img, member)| {
                        !img.deleted
                            && !img.os_hidden
                            && img.status != ImageStatus::Killed
                            && visible(img, *member, scope, case.visibility, case.any_member_status)
                            && (case.filter)(img)
                    })
                    .map(|(img, _)| img)
                    .collect();
                want.sort_by(|a, b| compare(a, b, &sort_keys));
                let want: Vec<&str> = want.iter().map(|i| i.id.as_str()).collect();
                let got = all_pages(&db, &params, scope).await;
                if got != want {
                    for (img, m) in &seeded {
                        let (g, w) = (
                            got.contains(&img.id.as_str().to_owned()),
                            want.contains(&img.id.as_str()),
                        );
                        if g != w {
                            eprintln!(
                                "got {g} want {w}: {:?} {:?} owner {:?} status {:?} member {m:?}",
                                img.name, img.visibility, img.owner, img.status
                            );
                        }
                    }
                }
                assert_eq!(got, want, "{dialect:?} {scope:?} ?{params}");
                checked += 1;
            }
        }
    }
    assert_eq!(checked, scopes.len() * CASES.len() * SORTS.len());

    // Hidden images only with `os_hidden=true`.
    let admin = &scopes[0];
    let hidden = all_pages(&db, "visibility=all&os_hidden=true", admin).await;
    let want: Vec<&str> = seeded
        .iter()
        .filter(|(i, _)| i.os_hidden)
        .map(|(i, _)| i.id.as_str())
        .collect();
    assert_eq!(hidden, want, "{dialect:?}");
    db.close().await;
    fresh.drop_database().await;
}

#[tokio::test]
async fn list_queries_on_sqlite() {
    list_queries(Dialect::Sqlite).await;
}

#[tokio::test]
async fn list_queries_on_postgres() {
    list_queries(Dialect::Postgres).await;
}

#[tokio::test]
async fn list_queries_on_mariadb() {
    list_queries(Dialect::Mysql).await;
}
