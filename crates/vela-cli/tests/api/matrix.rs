//! The persona × action × visibility authorization matrix, as Glance answers it with its
//! secure-RBAC defaults (`glance/policies/base.py`, `glance/policies/image.py`), the
//! Forbidden → NotFound translation of `glance/api/v2/policy.py` (`ImageAPIPolicy._enforce`),
//! DB visibility (`glance/db/utils.py::is_image_visible`), list queries
//! (`glance/db/sqlalchemy/api.py::_select_images_query`, `_image_get_all`), the members
//! controller (`glance/api/v2/image_members.py`) and `@utils.mutating`, which refuses every
//! write of the read-only anonymous context (`glance/api/middleware/context.py`) with 403.
//!
//! Every cell runs on a fresh image (created by the owner project's member; public ones are
//! publicized by an admin; shared ones have one `pending` and one `accepted` member), so cells
//! never interfere. All mismatches are collected and reported together.

use std::fmt::Write as _;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{
    expect_json, ids_of, new_uuid, test_data, Persona, TestApp, OCTET, PATCH_V21,
};

/// For `List`: answered 200, but the image is not in the list.
const ABSENT: u16 = 0;

const OWNER: &str = "mx-owner";
const PENDING: &str = "mx-pending";
const ACCEPTED: &str = "mx-accepted";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Who {
    /// `admin` role in an unrelated project.
    Admin,
    /// `member` of the owning project.
    Owner,
    /// Only `reader` in the owning project.
    Reader,
    /// `member` of a project the image is not shared with.
    Other,
    /// `member` of a project the (shared) image is shared with, status `pending`.
    Pending,
    /// Same, status `accepted`.
    Accepted,
    /// No identity at all (server with `default_roles = []`, no headers).
    Anon,
}

const WHO: [Who; 7] = [
    Who::Admin,
    Who::Owner,
    Who::Reader,
    Who::Other,
    Who::Pending,
    Who::Accepted,
    Who::Anon,
];

impl Who {
    fn label(self) -> &'static str {
        match self {
            Who::Admin => "admin",
            Who::Owner => "owner",
            Who::Reader => "reader",
            Who::Other => "other",
            Who::Pending => "pending",
            Who::Accepted => "accepted",
            Who::Anon => "anon",
        }
    }

    fn persona(self) -> Option<Persona> {
        match self {
            Who::Admin => Some(Persona::admin("mx-admin")),
            Who::Owner => Some(Persona::member(OWNER)),
            Who::Reader => Some(Persona {
                project: OWNER.to_owned(),
                roles: "reader".to_owned(),
                user: "reader-of-mx-owner".to_owned(),
            }),
            Who::Other => Some(Persona::member("mx-other")),
            Who::Pending => Some(Persona::member(PENDING)),
            Who::Accepted => Some(Persona::member(ACCEPTED)),
            Who::Anon => None,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Act {
    Show,
    /// Appears in `GET /v2/images` (no visibility / member_status given).
    List,
    Download,
    Upload,
    /// PATCH adding a custom property (`modify_image`).
    Modify,
    /// PATCH visibility → public (`publicize_image`).
    Publicize,
    /// PATCH visibility → community (`communitize_image`).
    Communitize,
    Delete,
    Deactivate,
    Reactivate,
    AddTag,
    RemoveTag,
    ListMembers,
    /// POST a new member (`mx-new`).
    AddMember,
    /// GET the accepted member's row.
    ShowMember,
    /// PUT the pending member's status (its own for `Pending`).
    UpdatePending,
    /// PUT the accepted member's status (its own for `Accepted`).
    UpdateAccepted,
    /// DELETE the pending member.
    DeleteMember,
    /// POST /v2/images.
    Create,
    /// POST /v2/images with `owner` = another project.
    CreateForOther,
}

use Act::*;

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    None,
    Queued,
    Active,
    Deactivated,
}

impl Act {
    fn label(self) -> &'static str {
        match self {
            Show => "show",
            List => "in-default-list",
            Download => "download",
            Upload => "upload",
            Modify => "modify",
            Publicize => "publicize",
            Communitize => "communitize",
            Delete => "delete",
            Deactivate => "deactivate",
            Reactivate => "reactivate",
            AddTag => "add-tag",
            RemoveTag => "remove-tag",
            ListMembers => "list-members",
            AddMember => "add-member",
            ShowMember => "show-member",
            UpdatePending => "update-pending-member",
            UpdateAccepted => "update-accepted-member",
            DeleteMember => "delete-member",
            Create => "create",
            CreateForOther => "create-for-other",
        }
    }

    /// The image state where only the policy decides.
    fn state(self) -> State {
        match self {
            Create | CreateForOther => State::None,
            Download | Deactivate => State::Active,
            Reactivate => State::Deactivated,
            _ => State::Queued,
        }
    }
}

/// Expected statuses; columns: admin owner reader other pending accepted anon.
#[rustfmt::skip]
const TABLE: &[(Act, &str, [u16; 7])] = &[
    // get_image: admin or reader and (owner, member, public, community, shared); the DB
    // hides private images and shared ones without a membership row (any status).
    (Show, "private",   [200, 200, 200, 404, 404, 404, 404]),
    (Show, "shared",    [200, 200, 200, 404, 200, 200, 404]),
    (Show, "public",    [200, 200, 200, 200, 200, 200, 404]),
    (Show, "community", [200, 200, 200, 200, 200, 200, 404]),
    // get_images needs reader (403 for anon); admins don't list others' community images
    // by default; members only with status accepted.
    (List, "private",   [200, 200, 200, ABSENT, ABSENT, ABSENT, 403]),
    (List, "shared",    [200, 200, 200, ABSENT, ABSENT, 200, 403]),
    (List, "public",    [200, 200, 200, 200, 200, 200, 403]),
    (List, "community", [ABSENT, 200, 200, ABSENT, ABSENT, ABSENT, 403]),
    // download_image: as get_image but with role member: readers 403.
    (Download, "private",   [200, 200, 403, 404, 404, 404, 404]),
    (Download, "shared",    [200, 200, 403, 404, 200, 200, 404]),
    (Download, "public",    [200, 200, 403, 200, 200, 200, 404]),
    (Download, "community", [200, 200, 403, 200, 200, 200, 404]),
    // upload_image / modify_image / delete_image / deactivate / reactivate: admin or owner
    // member; 404 when the caller cannot see the image, else 403; anon: read-only → 403.
    (Upload, "private",   [204, 204, 403, 404, 404, 404, 403]),
    (Upload, "shared",    [204, 204, 403, 404, 403, 403, 403]),
    (Upload, "public",    [204, 204, 403, 403, 403, 403, 403]),
    (Upload, "community", [204, 204, 403, 403, 403, 403, 403]),
    (Modify, "private",   [200, 200, 403, 404, 404, 404, 403]),
    (Modify, "shared",    [200, 200, 403, 404, 403, 403, 403]),
    (Modify, "public",    [200, 200, 403, 403, 403, 403, 403]),
    (Modify, "community", [200, 200, 403, 403, 403, 403, 403]),
    // publicize_image: admin only (a plain Forbidden, no 404 translation, but the image
    // lookup itself 404s for who cannot see it).
    (Publicize, "private",   [200, 403, 403, 404, 404, 404, 403]),
    (Publicize, "shared",    [200, 403, 403, 404, 403, 403, 403]),
    (Publicize, "public",    [200, 403, 403, 403, 403, 403, 403]),
    (Publicize, "community", [200, 403, 403, 403, 403, 403, 403]),
    // communitize_image: admin or owner member.
    (Communitize, "private",   [200, 200, 403, 404, 404, 404, 403]),
    (Communitize, "shared",    [200, 200, 403, 404, 403, 403, 403]),
    (Communitize, "public",    [200, 200, 403, 403, 403, 403, 403]),
    (Communitize, "community", [200, 200, 403, 403, 403, 403, 403]),
    (Delete, "private",   [204, 204, 403, 404, 404, 404, 403]),
    (Delete, "shared",    [204, 204, 403, 404, 403, 403, 403]),
    (Delete, "public",    [204, 204, 403, 403, 403, 403, 403]),
    (Delete, "community", [204, 204, 403, 403, 403, 403, 403]),
    (Deactivate, "private",   [204, 204, 403, 404, 404, 404, 403]),
    (Deactivate, "shared",    [204, 204, 403, 404, 403, 403, 403]),
    (Deactivate, "public",    [204, 204, 403, 403, 403, 403, 403]),
    (Deactivate, "community", [204, 204, 403, 403, 403, 403, 403]),
    (Reactivate, "private",   [204, 204, 403, 404, 404, 404, 403]),
    (Reactivate, "shared",    [204, 204, 403, 404, 403, 403, 403]),
    (Reactivate, "public",    [204, 204, 403, 403, 403, 403, 403]),
    (Reactivate, "community", [204, 204, 403, 403, 403, 403, 403]),
    // Tags need modify_image.
    (AddTag, "private",   [204, 204, 403, 404, 404, 404, 403]),
    (AddTag, "shared",    [204, 204, 403, 404, 403, 403, 403]),
    (AddTag, "public",    [204, 204, 403, 403, 403, 403, 403]),
    (AddTag, "community", [204, 204, 403, 403, 403, 403, 403]),
    (RemoveTag, "private",   [204, 204, 403, 404, 404, 404, 403]),
    (RemoveTag, "shared",    [204, 204, 403, 404, 403, 403, 403]),
    (RemoveTag, "public",    [204, 204, 403, 403, 403, 403, 403]),
    (RemoveTag, "community", [204, 204, 403, 403, 403, 403, 403]),
    // Members: the image lookup (404 if invisible) comes first, then "Only shared images
    // have members" (403), then the member policies.
    (ListMembers, "private",   [403, 403, 403, 404, 404, 404, 404]),
    (ListMembers, "shared",    [200, 200, 200, 404, 200, 200, 404]),
    (ListMembers, "public",    [403, 403, 403, 403, 403, 403, 403]),
    (ListMembers, "community", [403, 403, 403, 403, 403, 403, 403]),
    (AddMember, "private",   [403, 403, 403, 404, 404, 404, 403]),
    (AddMember, "shared",    [200, 200, 403, 404, 403, 403, 403]),
    (AddMember, "public",    [403, 403, 403, 403, 403, 403, 403]),
    (AddMember, "community", [403, 403, 403, 403, 403, 403, 403]),
    // A member only finds its own row (_image_member_find), so other rows are 404.
    (ShowMember, "shared",     [200, 200, 200, 404, 404, 200, 404]),
    // modify_member: admin or (member and project_id:%(member_id)s); member_id is the
    // caller's project for non-owners of shared images, None for the owner project.
    (UpdatePending, "shared",  [200, 403, 403, 404, 200, 404, 403]),
    (UpdateAccepted, "shared", [200, 403, 403, 404, 404, 200, 403]),
    // delete_member: admin or owner member; the member itself → 403.
    (DeleteMember, "shared",   [204, 204, 403, 404, 403, 404, 403]),
    // add_image: admin or (member and project_id:%(owner)s).
    (Create, "-",         [201, 201, 403, 201, 201, 201, 403]),
    (CreateForOther, "-", [201, 403, 403, 403, 403, 403, 403]),
];

fn with(rb: RequestBuilder, who: Option<&Persona>) -> RequestBuilder {
    match who {
        Some(p) => rb.headers(p.headers()),
        None => rb,
    }
}

/// Sends as `who` and asserts success (fixture building).
async fn must(app: &TestApp, who: &Persona, rb: RequestBuilder, want: StatusCode) -> Value {
    let resp = app.send(rb.headers(who.headers())).await;
    let got = resp.status();
    let url = resp.url().clone();
    let text = resp.text().await.unwrap();
    assert_eq!(got, want, "fixture {url}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// A fresh image of the owner project with tag `t0`, in `state` and `visibility`.
async fn fixture(app: &TestApp, state: State, visibility: &str, name: &str) -> String {
    let owner = Who::Owner.persona().unwrap();
    let admin = Who::Admin.persona().unwrap();
    let initial = if visibility == "public" {
        "private"
    } else {
        visibility
    };
    let body = json!({"name": name, "visibility": initial, "tags": ["t0"],
                      "disk_format": "raw", "container_format": "bare"});
    let rb = app.request(Method::POST, "/v2/images").json(&body);
    let img = must(app, &owner, rb, StatusCode::CREATED).await;
    let id = img["id"].as_str().unwrap().to_owned();
    let image = format!("/v2/images/{id}");
    if state == State::Active || state == State::Deactivated {
        let rb = app
            .request(Method::PUT, &format!("{image}/file"))
            .header("content-type", OCTET)
            .body(test_data(16));
        must(app, &owner, rb, StatusCode::NO_CONTENT).await;
    }
    if state == State::Deactivated {
        let rb = app.request(Method::POST, &format!("{image}/actions/deactivate"));
        must(app, &owner, rb, StatusCode::NO_CONTENT).await;
    }
    if visibility == "shared" {
        for m in [PENDING, ACCEPTED] {
            let rb = app
                .request(Method::POST, &format!("{image}/members"))
                .json(&json!({ "member": m }));
            must(app, &owner, rb, StatusCode::OK).await;
        }
        let rb = app
            .request(Method::PUT, &format!("{image}/members/{ACCEPTED}"))
            .json(&json!({"status": "accepted"}));
        must(app, &Persona::member(ACCEPTED), rb, StatusCode::OK).await;
    }
    if visibility == "public" {
        let patch = json!([{"op": "replace", "path": "/visibility", "value": "public"}]);
        must(
            app,
            &admin,
            app.patch_request(&id, PATCH_V21, &patch),
            StatusCode::OK,
        )
        .await;
    }
    id
}

/// Performs `act` as `who` on a fresh image of `visibility`; returns the status
/// (`ABSENT` for a 200 list without the image).
async fn perform(app: &TestApp, who: Who, act: Act, visibility: &str) -> u16 {
    let name = format!("{}-{}", app.prefix, &new_uuid()[..8]);
    let id = match act.state() {
        State::None => String::new(),
        state => fixture(app, state, visibility, &name).await,
    };
    let image = format!("/v2/images/{id}");
    let members = format!("{image}/members");
    let vis_patch = |v: &str| json!([{"op": "replace", "path": "/visibility", "value": v}]);
    let rb = match act {
        Show => app.request(Method::GET, &image),
        List => app.request(Method::GET, &format!("/v2/images?name={name}")),
        Download => app.request(Method::GET, &format!("{image}/file")),
        Upload => app
            .request(Method::PUT, &format!("{image}/file"))
            .header("content-type", OCTET)
            .body(test_data(16)),
        Modify => app.patch_request(
            &id,
            PATCH_V21,
            &json!([{"op": "add", "path": "/mx_prop", "value": "x"}]),
        ),
        Publicize => app.patch_request(&id, PATCH_V21, &vis_patch("public")),
        Communitize => app.patch_request(&id, PATCH_V21, &vis_patch("community")),
        Delete => app.request(Method::DELETE, &image),
        Deactivate => app.request(Method::POST, &format!("{image}/actions/deactivate")),
        Reactivate => app.request(Method::POST, &format!("{image}/actions/reactivate")),
        AddTag => app.request(Method::PUT, &format!("{image}/tags/t1")),
        RemoveTag => app.request(Method::DELETE, &format!("{image}/tags/t0")),
        ListMembers => app.request(Method::GET, &members),
        AddMember => app
            .request(Method::POST, &members)
            .json(&json!({"member": "mx-new"})),
        ShowMember => app.request(Method::GET, &format!("{members}/{ACCEPTED}")),
        UpdatePending => app
            .request(Method::PUT, &format!("{members}/{PENDING}"))
            .json(&json!({"status": "accepted"})),
        UpdateAccepted => app
            .request(Method::PUT, &format!("{members}/{ACCEPTED}"))
            .json(&json!({"status": "rejected"})),
        DeleteMember => app.request(Method::DELETE, &format!("{members}/{PENDING}")),
        Create => app
            .request(Method::POST, "/v2/images")
            .json(&json!({ "name": name })),
        CreateForOther => app
            .request(Method::POST, "/v2/images")
            .json(&json!({"name": name, "owner": "mx-someone"})),
    };
    let resp = app.send(with(rb, who.persona().as_ref())).await;
    let status = resp.status().as_u16();
    if act == List && status == 200 {
        let list = expect_json(resp, StatusCode::OK).await;
        if !ids_of(&list).contains(&id) {
            return ABSENT;
        }
    }
    status
}

fn show(status: u16) -> String {
    if status == ABSENT {
        "absent".to_owned()
    } else {
        status.to_string()
    }
}

/// Runs the rows of `acts`; panics with every mismatch and the whole grid.
async fn run(acts: &[Act]) {
    let app = TestApp::spawn_with_config("[auth]\ndefault_roles = []\n").await;
    if app.is_external() {
        return;
    }
    let mut mismatches = Vec::new();
    let mut grid = format!("{:<24}{:<11}|", "action", "visibility");
    for who in WHO {
        let _ = write!(grid, " {:<14}", who.label());
    }
    grid.push('\n');
    let mut cases = 0;
    for (act, vis, want) in TABLE.iter().filter(|(a, _, _)| acts.contains(a)) {
        let _ = write!(grid, "{:<24}{:<11}|", act.label(), vis);
        for (who, want) in WHO.iter().zip(want) {
            let got = perform(&app, *who, *act, vis).await;
            cases += 1;
            let cell = if got == *want {
                show(got)
            } else {
                mismatches.push(format!(
                    "{} {} {}: expected {} got {}",
                    who.label(),
                    act.label(),
                    vis,
                    show(*want),
                    show(got)
                ));
                format!("{}≠{}", show(got), show(*want))
            };
            let _ = write!(grid, " {cell:<14}");
        }
        grid.push('\n');
    }
    assert!(cases > 0, "no rows for these actions");
    assert!(
        mismatches.is_empty(),
        "{} of {cases} cases differ from Glance:\n  {}\n\ngot≠expected:\n{grid}",
        mismatches.len(),
        mismatches.join("\n  ")
    );
}

#[tokio::test]
async fn matrix_reads() {
    run(&[Show, List, Download]).await;
}

#[tokio::test]
async fn matrix_image_writes() {
    run(&[
        Upload,
        Modify,
        Publicize,
        Communitize,
        Delete,
        Deactivate,
        Reactivate,
        AddTag,
        RemoveTag,
    ])
    .await;
}

#[tokio::test]
async fn matrix_members() {
    run(&[
        ListMembers,
        AddMember,
        ShowMember,
        UpdatePending,
        UpdateAccepted,
        DeleteMember,
    ])
    .await;
}

#[tokio::test]
async fn matrix_create() {
    run(&[Create, CreateForOther]).await;
}
