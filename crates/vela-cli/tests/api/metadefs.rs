//! Metadata definitions (`/v2/metadefs/*`) and their schemas (`/v2/schemas/metadefs/*`):
//! namespaces (create/show/list/update/delete, embedded content, resource-type prefixes),
//! objects, properties, tags, resource types and their associations, and who may do what.
//!
//! Written against the real Glance 33 first (`scripts/glance.sh`), so they describe Glance's
//! behaviour, quirks included (see the comments marked "Glance:"). Every request is sent as an
//! explicit persona (`X-Identity-Status: Confirmed` makes the Glance test filter keep the
//! identity headers), so the tests run unchanged against Glance and Vela. Names are unique per
//! test (`app.name(..)`, resource types built from `app.prefix`) and every test deletes the
//! namespaces it made; resource types cannot be deleted through the API and stay behind.

use reqwest::header::{HeaderValue, LOCATION};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{expect_error, expect_json, is_timestamp, keys, Persona, TestApp};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// webob's rendering of an error explanation in a JSON error body.
fn webob(msg: &str) -> String {
    format!("{msg}<br /><br />\n\n\n")
}

/// How Glance's `first`/`next` links encode a resource type name (`::` → `%3A%3A`).
fn enc(s: &str) -> String {
    s.replace(':', "%3A").replace(',', "%2C")
}

fn sorted(list: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| (*s).to_owned()).collect();
    v.sort();
    v
}

/// The `name` of each element of a JSON array, in order.
fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The `namespace` of each element of a namespace list, in order.
fn ns_names(list: &Value) -> Vec<String> {
    list["namespaces"]
        .as_array()
        .unwrap_or_else(|| panic!("no namespaces array: {list}"))
        .iter()
        .map(|x| x["namespace"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Drops the (run-dependent) timestamps of an object after checking their format.
fn strip_times(v: &mut Value) {
    let obj = v.as_object_mut().unwrap_or_else(|| panic!("not an object"));
    for f in ["created_at", "updated_at"] {
        if let Some(t) = obj.remove(f) {
            let t = t.as_str().unwrap_or_default();
            assert!(is_timestamp(t), "{f} = {t}");
        }
    }
}

/// The start of Glance's message for a body that does not match the schema `schema`.
fn schema_error(schema: &str, detail: &str) -> String {
    format!("Provided object does not match schema '{schema}': {detail}")
}

/// Asserts `msg` reports the schema error `detail` (a whole line) against `schema`.
fn assert_schema_error(msg: &str, schema: &str, detail: &str) {
    let want = format!("{}\n", schema_error(schema, detail));
    assert!(msg.starts_with(&want), "want {want:?}, got {msg:?}");
}

fn ns_path(ns: &str) -> String {
    format!("/v2/metadefs/namespaces/{ns}")
}

/// A non-admin reader of a project.
fn reader(project: &str) -> Persona {
    Persona {
        project: project.to_owned(),
        roles: "reader".to_owned(),
        user: format!("reader-of-{project}"),
    }
}

/// One request: method, path and, for most POSTs and PUTs, a JSON body.
struct Req {
    method: Method,
    path: String,
    body: Option<Value>,
}

fn req(method: Method, path: &str, body: Option<Value>) -> Req {
    Req {
        method,
        path: path.to_owned(),
        body,
    }
}

fn get(path: &str) -> Req {
    req(Method::GET, path, None)
}

fn delete(path: &str) -> Req {
    req(Method::DELETE, path, None)
}

fn post(path: &str, body: Value) -> Req {
    req(Method::POST, path, Some(body))
}

fn post_empty(path: &str) -> Req {
    req(Method::POST, path, None)
}

fn put(path: &str, body: Value) -> Req {
    req(Method::PUT, path, Some(body))
}

/// Sends requests as one persona.
struct Client<'a> {
    app: &'a TestApp,
    who: Persona,
}

impl<'a> Client<'a> {
    fn new(app: &'a TestApp, who: Persona) -> Client<'a> {
        Client { app, who }
    }

    /// The project every namespace this (admin) client creates belongs to by default.
    fn project(&self) -> &str {
        &self.who.project
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.app
            .request(method, path)
            .headers(self.who.headers())
            // Glance's test filter (scripts/glance.sh) keeps identity headers only when the
            // request says it is authenticated, as keystonemiddleware would.
            .header("x-identity-status", HeaderValue::from_static("Confirmed"))
    }

    async fn get(&self, path: &str) -> Response {
        self.send(get(path)).await
    }

    async fn delete(&self, path: &str) -> Response {
        self.send(delete(path)).await
    }

    async fn post(&self, path: &str, body: &Value) -> Response {
        self.send(post(path, body.clone())).await
    }

    async fn post_empty(&self, path: &str) -> Response {
        self.send(post_empty(path)).await
    }

    async fn put(&self, path: &str, body: &Value) -> Response {
        self.send(put(path, body.clone())).await
    }

    /// Sends a request.
    async fn send(&self, req: Req) -> Response {
        let rb = self.request(req.method, &req.path);
        self.app
            .send(match &req.body {
                Some(body) => rb.json(body),
                None => rb,
            })
            .await
    }

    /// A request that must answer `status` with JSON; returns the body.
    async fn json(&self, req: Req, status: StatusCode) -> Value {
        expect_json(self.send(req).await, status).await
    }

    /// A request that must fail with `status`; returns the error message.
    async fn fails(&self, req: Req, status: StatusCode) -> String {
        expect_error(self.send(req).await, status).await
    }

    /// A request that must fail with `status` and webob's rendering of `explanation`.
    async fn fails_with(&self, req: Req, status: StatusCode, explanation: &str) {
        let what = format!("{} {}", req.method, req.path);
        let msg = self.fails(req, status).await;
        assert_eq!(msg, webob(explanation), "{what}");
    }

    /// A request that must fail with 400 because its body does not match `schema`.
    async fn schema_fails(&self, req: Req, schema: &str, detail: &str) {
        let msg = self.fails(req, StatusCode::BAD_REQUEST).await;
        assert_schema_error(&msg, schema, detail);
    }

    /// DELETE that must answer 204, and then 404 with webob's rendering of `gone`.
    async fn deletes_once(&self, path: &str, gone: &str) {
        assert_eq!(self.status_of(delete(path)).await, StatusCode::NO_CONTENT);
        self.fails_with(delete(path), StatusCode::NOT_FOUND, gone)
            .await;
    }

    /// The status a request answers with.
    async fn status_of(&self, req: Req) -> StatusCode {
        self.send(req).await.status()
    }

    /// GET that must answer 200 with JSON.
    async fn ok(&self, path: &str) -> Value {
        self.json(get(path), StatusCode::OK).await
    }

    /// POST /v2/metadefs/namespaces that must answer 201.
    async fn create_ns(&self, body: Value) -> Value {
        self.json(
            post("/v2/metadefs/namespaces", body.clone()),
            StatusCode::CREATED,
        )
        .await
    }

    /// Deletes a namespace (unprotecting it first when needed); must answer 204.
    async fn cleanup(&self, ns: &str) {
        let resp = self.delete(&ns_path(ns)).await;
        if resp.status() == StatusCode::FORBIDDEN {
            let resp = self
                .put(&ns_path(ns), &json!({"namespace": ns, "protected": false}))
                .await;
            assert_eq!(resp.status(), StatusCode::OK, "unprotecting {ns}");
            let resp = self.delete(&ns_path(ns)).await;
            assert_eq!(resp.status(), StatusCode::NO_CONTENT, "deleting {ns}");
        } else {
            assert_eq!(resp.status(), StatusCode::NO_CONTENT, "deleting {ns}");
        }
    }
}

async fn setup() -> TestApp {
    TestApp::spawn().await
}

/// An admin of a project unique to the test.
fn admin(app: &TestApp) -> Persona {
    Persona::admin(&app.name("admin"))
}

// ---------------------------------------------------------------------------------------------
// Namespaces
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn create_namespace_minimal_has_defaults_and_location() {
    let app = setup().await;
    let c = Client::new(&app, admin(&app));
    let ns = app.name("min");
    let resp = c
        .post("/v2/metadefs/namespaces", &json!({"namespace": ns}))
        .await;
    let location = resp
        .headers()
        .get(LOCATION)
        .map(|v| v.to_str().unwrap().to_owned());
    let mut created = expect_json(resp, StatusCode::CREATED).await;
    assert_eq!(location.as_deref(), Some(app.url(&ns_path(&ns)).as_str()));
    assert_eq!(
        keys(&created),
        sorted(&[
            "created_at",
            "namespace",
            "owner",
            "protected",
            "schema",
            "self",
            "updated_at",
            "visibility",
        ])
    );
    assert_eq!(created["created_at"], created["updated_at"]);
    strip_times(&mut created);
    assert_eq!(
        created,
        json!({
            "namespace": ns,
            "visibility": "private",
            "protected": false,
            "owner": c.project(),
            "self": ns_path(&ns),
            "schema": "/v2/schemas/metadefs/namespace",
        })
    );

    // Show gives the same representation (no empty collections).
    let mut shown = c.ok(&ns_path(&ns)).await;
    strip_times(&mut shown);
    assert_eq!(shown, created);

    c.cleanup(&ns).await;
}

#[tokio::test]
async fn create_namespace_with_every_field_and_protection() {
    let app = setup().await;
    let c = Client::new(&app, admin(&app));
    let ns = app.name("full");
    let mut created = c
        .create_ns(json!({
            "namespace": ns,
            "display_name": "Full Namespace",
            "description": "Every field set",
            "visibility": "public",
            "protected": true,
            "owner": "someone-else",
        }))
        .await;
    strip_times(&mut created);
    assert_eq!(
        created,
        json!({
            "namespace": ns,
            "display_name": "Full Namespace",
            "description": "Every field set",
            "visibility": "public",
            "protected": true,
            "owner": "someone-else",
            "self": ns_path(&ns),
            "schema": "/v2/schemas/metadefs/namespace",
        })
    );

    // A protected namespace cannot be deleted ...
    c.fails_with(
        delete(&ns_path(&ns)),
        StatusCode::FORBIDDEN,
        &format!("Metadata definition namespace {ns} is protected and cannot be deleted."),
    )
    .await;
    assert_eq!(c.get(&ns_path(&ns)).await.status(), StatusCode::OK);
    // ... but it can be updated (Glance: protection only guards deletion).
    let updated = c
        .json(
            put(
                &ns_path(&ns),
                json!({"namespace": ns, "protected": false, "visibility": "public"}),
            ),
            StatusCode::OK,
        )
        .await;
    assert_eq!(updated["protected"], false);
    let resp = c.delete(&ns_path(&ns)).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(resp.text().await.unwrap().is_empty());
    c.fails_with(
        get(&ns_path(&ns)),
        StatusCode::NOT_FOUND,
        &format!("Metadata definition namespace={ns} was not found."),
    )
    .await;
}

#[tokio::test]
async fn missing_namespace_is_404_with_glance_messages() {
    let app = setup().await;
    let c = Client::new(&app, admin(&app));
    let ns = app.name("missing");
    let p = ns_path(&ns);
    // Show says it one way, update and delete another.
    c.fails_with(
        get(&p),
        StatusCode::NOT_FOUND,
        &format!("Metadata definition namespace={ns} was not found."),
    )
    .await;
    let not_found = webob(&format!("Namespace {ns} not found"));
    let msg = c
        .fails(put(&p, json!({"namespace": ns})), StatusCode::NOT_FOUND)
        .await;
    assert_eq!(msg, not_found);
    let msg = c.fails(delete(&p), StatusCode::NOT_FOUND).await;
    assert_eq!(msg, not_found);
    // Sub-resources of a missing namespace (objects say it like show does).
    for path in [
        format!("{p}/tags"),
        format!("{p}/tags/t"),
        format!("{p}/properties"),
        format!("{p}/properties/x"),
        format!("{p}/resource_types"),
    ] {
        let msg = c.fails(get(&path), StatusCode::NOT_FOUND).await;
        assert_eq!(msg, not_found, "{path}");
    }
    for path in [format!("{p}/objects"), format!("{p}/objects/o")] {
        let msg = c.fails(get(&path), StatusCode::NOT_FOUND).await;
        assert_eq!(
            msg,
            webob(&format!(
                "Metadata definition namespace={ns} was not found."
            )),
            "{path}"
        );
    }
    c.fails_with(
        post(&format!("{p}/objects"), json!({"name": "o"})),
        StatusCode::NOT_FOUND,
        &format!("Metadata definition namespace={ns} was not found."),
    )
    .await;
    let msg = c
        .fails(
            post(
                &format!("{p}/resource_types"),
                json!({"name": "OS::Glance::Image"}),
            ),
            StatusCode::NOT_FOUND,
        )
        .await;
    assert_eq!(msg, not_found);
}

#[tokio::test]
async fn duplicate_namespace_is_409() {
    let app = setup().await;
    let c = Client::new(&app, admin(&app));
    let ns = app.name("dup");
    c.create_ns(json!({"namespace": ns})).await;
    c.fails_with(
        post(
            "/v2/metadefs/namespaces",
            json!({"namespace": ns, "visibility": "public"}),
        ),
        StatusCode::CONFLICT,
        &format!("The metadata definition namespace={ns} already exists."),
    )
    .await;
    c.cleanup(&ns).await;
}

#[tokio::test]
async fn invalid_namespace_bodies() {
    let app = setup().await;
    let c = Client::new(&app, admin(&app));
    let ns = app.name("bad");
    let cases = [
        (json!({}), "'namespace' is a required property".to_owned()),
        (
            json!({"namespace": ns, "visibility": "shared"}),
            "'shared' is not one of ['public', 'private']".to_owned(),
        ),
        (
            json!({"namespace": ns, "protected": "yes"}),
            "'yes' is not of type 'boolean'".to_owned(),
        ),
        (
            json!({"namespace": ns, "bogus": 1}),
            "Additional properties are not allowed ('bogus' was unexpected)".to_owned(),
        ),
        (
            json!({"namespace": "n".repeat(81)}),
            format!("'{}' is too long", "n".repeat(81)),
        ),
        (
            json!({"namespace": ns, "description": "d".repeat(501)}),
            format!("'{}' is too long", "d".repeat(501)),
        ),
    ];
    for (body, detail) in cases {
        c.schema_fails(post("/v2/metadefs/namespaces", body), "namespace", &detail)
            .await;
    }
    // Not JSON at all.
    let resp = app
        .send(
            c.request(Method::POST, "/v2/metadefs/namespaces")
                .header("content-type", "application/json")
                .body("{not json"),
        )
        .await;
    let msg = expect_error(resp, StatusCode::BAD_REQUEST).await;
    assert_eq!(msg, webob("Malformed JSON in request body."));
    // Read-only attributes are refused with 403, before the schema check.
    for attr in ["created_at", "updated_at", "self", "schema"] {
        c.fails_with(
            post(
                "/v2/metadefs/namespaces",
                json!({"namespace": ns, attr: "x"}),
            ),
            StatusCode::FORBIDDEN,
            &format!("Attribute '{attr}' is read-only."),
        )
        .await;
    }
    // Nothing was created.
    assert_eq!(c.get(&ns_path(&ns)).await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn update_namespace_renames_and_resets_omitted_fields() {
    let app = setup().await;
    let c = Client::new(&app, admin(&app));
    let ns = app.name("upd");
    let other = app.name("upd-other");
    let renamed = app.name("upd-renamed");
    c.create_ns(json!({
        "namespace": ns,
        "display_name": "Before",
        "description": "old",
        "visibility": "public",
        "protected": true,
        "owner": "someone-else",
    }))
    .await;
    c.create_ns(json!({"namespace": other})).await;
    c.json(
        post_empty(&format!("{}/tags/kept", ns_path(&ns))),
        StatusCode::CREATED,
    )
    .await;

    // PUT replaces the namespace: omitted fields go back to their create defaults
    // (Glance: visibility private, protected false, owner the caller's project, no display_name).
    let resp = c
        .put(
            &ns_path(&ns),
            &json!({"namespace": renamed, "description": "new"}),
        )
        .await;
    let mut updated = expect_json(resp, StatusCode::OK).await;
    strip_times(&mut updated);
    assert_eq!(
        updated,
        json!({
            "namespace": renamed,
            "description": "new",
            "visibility": "private",
            "protected": false,
            "owner": c.project(),
            "self": ns_path(&renamed),
            "schema": "/v2/schemas/metadefs/namespace",
        })
    );
    c.fails_with(
        get(&ns_path(&ns)),
        StatusCode::NOT_FOUND,
        &format!("Metadata definition namespace={ns} was not found."),
    )
    .await;
    let mut shown = c.ok(&ns_path(&renamed)).await;
    // The content moves with the namespace.
    assert_eq!(shown["tags"], json!([{"name": "kept"}]));
    shown.as_object_mut().unwrap().remove("tags");
    strip_times(&mut shown);
    assert_eq!(shown, updated);

    // Renaming onto another namespace.
    c.fails_with(
        put(&ns_path(&renamed), json!({"namespace": other})),
        StatusCode::CONFLICT,
        &format!(
            "Invalid update. It would result in a duplicate metadata definition namespace \
             with the same name of {other}"
        ),
    )
    .await;
    // The body must still be a whole namespace.
    c.schema_fails(
        put(&ns_path(&renamed), json!({"description": "x"})),
        "namespace",
        "'namespace' is a required property",
    )
    .await;
    c.fails_with(
        put(
            &ns_path(&renamed),
            json!({"namespace": renamed, "updated_at": "2020-01-01T00:00:00Z"}),
        ),
        StatusCode::FORBIDDEN,
        "Attribute 'updated_at' is read-only.",
    )
    .await;

    c.cleanup(&renamed).await;
    c.cleanup(&other).await;
}

#[tokio::test]
async fn delete_namespace_deletes_its_content() {
    let app = setup().await;
    let c = Client::new(&app, admin(&app));
    let ns = app.name("cascade");
    let rt = format!("Vela::Cascade::{}", app.prefix);
    c.create_ns(json!({
        "namespace": ns,
        "resource_type_associations": [{"name": rt}],
        "properties": {"p": {"title": "P", "type": "string"}},
        "objects": [{"name": "o"}],
        "tags": [{"name": "t"}],
    }))
    .await;
    let resp = c.delete(&ns_path(&ns)).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    // A new namespace of the same name starts empty.
    let mut again = c.create_ns(json!({"namespace": ns})).await;
    strip_times(&mut again);
    let mut shown = c.ok(&ns_path(&ns)).await;
    strip_times(&mut shown);
    assert_eq!(shown, again);
    assert_eq!(
        c.ok(&format!("{}/tags", ns_path(&ns))).await,
        json!({"tags": []})
    );
    assert_eq!(
        c.ok(&format!("{}/resource_types", ns_path(&ns))).await,
        json!({"resource_type_associations": []})
    );
    // No namespace carries the resource type any more.
    let list = c
        .ok(&format!("/v2/metadefs/namespaces?resource_types={rt}"))
        .await;
    assert_eq!(ns_names(&list), Vec::<String>::new());
    c.cleanup(&ns).await;
}

// ---------------------------------------------------------------------------------------------
// Namespace lists
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn list_namespaces_shape_and_paging() {
    let app = setup().await;
    let c = Client::new(&app, admin(&app));
    let rt = format!("Vela::Page::{}", app.prefix);
    let all: Vec<String> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|s| app.name(&format!("page-{s}")))
        .collect();
    for ns in &all {
        c.create_ns(json!({"namespace": ns, "resource_type_associations": [{"name": rt}]}))
            .await;
    }

    // Unpaged: no `next`; `first` repeats the query (URL-encoded).
    let list = c
        .ok(&format!("/v2/metadefs/namespaces?resource_types={rt}"))
        .await;
    assert_eq!(keys(&list), sorted(&["first", "namespaces", "schema"]));
    assert_eq!(list["schema"], "/v2/schemas/metadefs/namespaces");
    assert_eq!(
        list["first"],
        format!("/v2/metadefs/namespaces?resource_types={}", enc(&rt))
    );
    // Default order: newest first (created_at desc, ties in creation order reversed).
    let mut newest_first = all.clone();
    newest_first.reverse();
    assert_eq!(ns_names(&list), newest_first);
    // Each entry is a namespace with its resource type associations (no prefix or
    // properties_target when unset), without objects, properties or tags.
    let mut entry = list["namespaces"][0].clone();
    strip_times(&mut entry);
    let mut assoc = entry["resource_type_associations"][0].clone();
    strip_times(&mut assoc);
    assert_eq!(assoc, json!({"name": rt}));
    entry
        .as_object_mut()
        .unwrap()
        .remove("resource_type_associations");
    assert_eq!(
        entry,
        json!({
            "namespace": all[4],
            "visibility": "private",
            "protected": false,
            "owner": c.project(),
            "self": ns_path(&all[4]),
            "schema": "/v2/schemas/metadefs/namespace",
        })
    );

    // Pages of two by name; `next` is `first` plus the marker; `first` drops the marker.
    let query = format!("resource_types={rt}&limit=2&sort_key=namespace&sort_dir=asc");
    let first = format!(
        "/v2/metadefs/namespaces?resource_types={}&limit=2&sort_key=namespace&sort_dir=asc",
        enc(&rt)
    );
    let page1 = c.ok(&format!("/v2/metadefs/namespaces?{query}")).await;
    assert_eq!(ns_names(&page1), all[0..2].to_vec());
    assert_eq!(page1["first"], first);
    assert_eq!(page1["next"], format!("{first}&marker={}", all[1]));
    let page2 = c
        .ok(&format!(
            "/v2/metadefs/namespaces?{query}&marker={}",
            all[1]
        ))
        .await;
    assert_eq!(ns_names(&page2), all[2..4].to_vec());
    assert_eq!(page2["first"], first);
    assert_eq!(page2["next"], format!("{first}&marker={}", all[3]));
    let page3 = c
        .ok(&format!(
            "/v2/metadefs/namespaces?{query}&marker={}",
            all[3]
        ))
        .await;
    assert_eq!(ns_names(&page3), all[4..5].to_vec());
    assert_eq!(page3["first"], first);
    assert!(page3.get("next").is_none(), "{page3}");
    // A full last page still links to a (then empty) next page.
    let exact = c
        .ok(&format!(
            "/v2/metadefs/namespaces?resource_types={rt}&limit=5&sort_key=namespace&sort_dir=asc"
        ))
        .await;
    assert_eq!(ns_names(&exact), all);
    assert_eq!(
        exact["next"],
        format!(
            "/v2/metadefs/namespaces?resource_types={}&limit=5&sort_key=namespace&sort_dir=asc&marker={}",
            enc(&rt),
            all[4]
        )
    );
    let after = c
        .ok(&format!(
            "/v2/metadefs/namespaces?resource_types={rt}&limit=5&sort_key=namespace&sort_dir=asc&marker={}",
            all[4]
        ))
        .await;
    assert_eq!(ns_names(&after), Vec::<String>::new());
    assert!(after.get("next").is_none(), "{after}");

    for ns in &all {
        c.cleanup(ns).await;
    }
}

#[tokio::test]
async fn list_namespaces_sort_filters_and_bad_parameters() {
    let app = setup().await;
    let c = Client::new(&app, admin(&app));
    let rt_a = format!("Vela::SortA::{}", app.prefix);
    let rt_b = format!("Vela::SortB::{}", app.prefix);
    let n1 = app.name("s1");
    let n2 = app.name("s2");
    let n3 = app.name("s3");
    c.create_ns(json!({"namespace": n2, "visibility": "public",
                       "resource_type_associations": [{"name": rt_a}]}))
        .await;
    c.create_ns(json!({"namespace": n3,
                       "resource_type_associations": [{"name": rt_a}, {"name": rt_b}]}))
        .await;
    c.create_ns(json!({"namespace": n1, "visibility": "public",
                       "resource_type_associations": [{"name": rt_b}]}))
        .await;
    let list = |q: String| {
        let c = &c;
        async move { ns_names(&c.ok(&format!("/v2/metadefs/namespaces?{q}")).await) }
    };

    assert_eq!(
        list(format!(
            "resource_types={rt_a}&sort_key=namespace&sort_dir=asc"
        ))
        .await,
        vec![n2.clone(), n3.clone()]
    );
    assert_eq!(
        list(format!(
            "resource_types={rt_a}&sort_key=namespace&sort_dir=desc"
        ))
        .await,
        vec![n3.clone(), n2.clone()]
    );
    // Default order: created_at desc.
    assert_eq!(
        list(format!("resource_types={rt_a}")).await,
        vec![n3.clone(), n2.clone()]
    );
    // A comma-separated list matches any of the resource types.
    assert_eq!(
        list(format!(
            "resource_types={rt_a},{rt_b}&sort_key=namespace&sort_dir=asc"
        ))
        .await,
        vec![n1.clone(), n2.clone(), n3.clone()]
    );
    // Visibility filter.
    assert_eq!(
        list(format!(
            "resource_types={rt_a},{rt_b}&visibility=public&sort_key=namespace&sort_dir=asc"
        ))
        .await,
        vec![n1.clone(), n2.clone()]
    );
    assert_eq!(
        list(format!("resource_types={rt_a},{rt_b}&visibility=private")).await,
        vec![n3.clone()]
    );
    // A resource type nobody uses matches nothing.
    let none = c
        .ok(&format!(
            "/v2/metadefs/namespaces?resource_types=Vela::None::{}",
            app.prefix
        ))
        .await;
    assert_eq!(none["namespaces"], json!([]));
    // limit=0 is allowed and lists nothing.
    let zero = c
        .ok(&format!(
            "/v2/metadefs/namespaces?resource_types={rt_a}&limit=0"
        ))
        .await;
    assert_eq!(zero["namespaces"], json!([]));
    assert!(zero.get("next").is_none(), "{zero}");

    // Bad parameters.
    let bad = |q: &'static str| {
        let c = &c;
        async move {
            c.fails(
                get(&format!("/v2/metadefs/namespaces?{q}")),
                StatusCode::BAD_REQUEST,
            )
            .await
        }
    };
    assert_eq!(
        bad("sort_dir=up").await,
        webob("Invalid sort direction: up")
    );
    assert_eq!(bad("limit=-1").await, webob("limit param must be positive"));
    assert_eq!(
        bad("visibility=shared").await,
        webob("Invalid visibility value: shared")
    );
    let missing = app.name("no-such-marker");
    c.fails_with(
        get(&format!("/v2/metadefs/namespaces?marker={missing}")),
        StatusCode::NOT_FOUND,
        &format!("Metadata definition namespace={missing} was not found."),
    )
    .await;

    for ns in [&n1, &n2, &n3] {
        c.cleanup(ns).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Embedded content and resource-type prefixes
// ---------------------------------------------------------------------------------------------

/// A namespace body with every kind of content; `rt` gets prefix `emb_`, `rt2` none.
fn rich_namespace(ns: &str, rt: &str, rt2: &str) -> Value {
    json!({
        "namespace": ns,
        "display_name": "Rich",
        "description": "with content",
        "visibility": "public",
        "resource_type_associations": [
            {"name": rt, "prefix": "emb_", "properties_target": "image"},
            {"name": rt2},
        ],
        "properties": {
            "speed": {"title": "Speed", "type": "integer", "minimum": 1, "maximum": 10,
                      "default": 5},
        },
        "objects": [{
            "name": "Obj1",
            "description": "an object",
            "required": ["p1"],
            "properties": {"p1": {"title": "P1", "type": "string", "enum": ["a", "b"]}},
        }],
        "tags": [{"name": "t1"}, {"name": "t2"}],
    })
}

#[tokio::test]
async fn create_with_embedded_content_then_show() {
    let app = setup().await;
    let c = Client::new(&app, admin(&app));
    let ns = app.name("rich");
    let rt = format!("Vela::Rich::{}", app.prefix);
    let rt2 = format!("Vela::Rich2::{}", app.prefix);
    let mut created = c.create_ns(rich_namespace(&ns, &rt, &rt2)).await;
    strip_times(&mut created);
    // The create response echoes the content as sent (no timestamps inside), except that a
    // property default comes back as a string (Glance: `default` is a string in its model).
    let speed = json!({"type": "integer", "title": "Speed", "default": "5", "minimum": 1,
                       "maximum": 10});
    let p1 = json!({"type": "string", "title": "P1", "enum": ["a", "b"]});
    assert_eq!(
        created,
        json!({
            "namespace": ns,
            "display_name": "Rich",
            "description": "with content",
            "visibility": "public",
            "protected": false,
            "owner": c.project(),
            "resource_type_associations": [
                {"name": rt, "prefix": "emb_", "properties_target": "image"},
                {"name": rt2},
            ],
            "properties": {"speed": speed},
            "objects": [{"name": "Obj1", "required": ["p1"], "description": "an object",
                         "properties": {"p1": p1}}],
            "tags": [{"name": "t1"}, {"name": "t2"}],
            "self": ns_path(&ns),
            "schema": "/v2/schemas/metadefs/namespace",
        })
    );

    // Show: associations and objects carry timestamps, objects their self/schema links;
    // tags are newest first.
    let mut shown = c.ok(&ns_path(&ns)).await;
    strip_times(&mut shown);
    let obj = shown.as_object_mut().unwrap();
    let mut assocs = obj.remove("resource_type_associations").unwrap();
    for a in assocs.as_array_mut().unwrap() {
        assert!(a["created_at"].is_string(), "{a}");
        strip_times(a);
    }
    let mut assocs = assocs.as_array().unwrap().clone();
    assocs.sort_by_key(|a| a["name"].as_str().unwrap().to_owned());
    let mut want = vec![
        json!({"name": rt, "prefix": "emb_", "properties_target": "image"}),
        json!({"name": rt2}),
    ];
    want.sort_by_key(|a| a["name"].as_str().unwrap().to_owned());
    assert_eq!(assocs, want);
    let mut objects = obj.remove("objects").unwrap();
    assert_eq!(objects.as_array().unwrap().len(), 1);
    assert!(objects[0]["created_at"].is_string(), "{objects}");
    strip_times(&mut objects[0]);
    assert_eq!(
        objects[0],
        json!({"name": "Obj1", "required": ["p1"], "description": "an object",
               "properties": {"p1": p1},
               "self": format!("{}/objects/Obj1", ns_path(&ns)),
               "schema": "/v2/schemas/metadefs/object"})
    );
    assert_eq!(
        obj.remove("tags").unwrap(),
        json!([{"name": "t2"}, {"name": "t1"}])
    );
    assert_eq!(
        shown,
        json!({
            "namespace": ns,
            "display_name": "Rich",
            "description": "with content",
            "visibility": "public",
            "protected": false,
            "owner": c.project(),
            "properties": {"speed": speed},
            "self": ns_path(&ns),
            "schema": "/v2/schemas/metadefs/namespace",
        })
    );

    // Each part is also reachable on its own.
    assert_eq!(
        names(&c.ok(&format!("{}/objects", ns_path(&ns))).await["objects"]),
        vec!["Obj1"]
    );
    assert_eq!(
        c.ok(&format!("{}/properties", ns_path(&ns))).await,
        json!({"properties": {"speed": speed}})
    );
    assert_eq!(
        c.ok(&format!("{}/tags", ns_path(&ns))).await,
        json!({"tags": [{"name": "t2"}, {"name": "t1"}]})
    );
    c.cleanup(&ns).await;
}

#[tokio::test]
async fn show_with_resource_type_prefixes_property_names() {
    let app = setup().await;
    let c = Client::new(&app, admin(&app));
    let ns = app.name("prefix");
    let rt = format!("Vela::Prefix::{}", app.prefix);
    let rt2 = format!("Vela::NoPrefix::{}", app.prefix);
    c.create_ns(rich_namespace(&ns, &rt, &rt2)).await;

    let shown = c.ok(&format!("{}?resource_type={rt}", ns_path(&ns))).await;
    assert_eq!(keys(&shown["properties"]), vec!["emb_speed"]);
    assert_eq!(shown["properties"]["emb_speed"]["title"], "Speed");
    // Object properties and their `required` list get the prefix too.
    assert_eq!(keys(&shown["objects"][0]["properties"]), vec!["emb_p1"]);
    assert_eq!(shown["objects"][0]["required"], json!(["emb_p1"]));
    assert_eq!(shown["namespace"], ns.as_str());

    // An association without a prefix, or a resource type the namespace does not have (even
    // an unknown one), changes nothing.
    let plain = c.ok(&ns_path(&ns)).await;
    for rtype in [rt2.clone(), format!("Vela::Unknown::{}", app.prefix)] {
        let v = c
            .ok(&format!("{}?resource_type={rtype}", ns_path(&ns)))
            .await;
        assert_eq!(v["properties"], plain["properties"], "{rtype}");
        assert_eq!(
            v["objects"][0]["properties"],
            plain["objects"][0]["properties"]
        );
        assert_eq!(v["objects"][0]["required"], json!(["p1"]));
    }
    // Object show and list are not prefixed.
    let o = c
        .ok(&format!("{}/objects/Obj1?resource_type={rt}", ns_path(&ns)))
        .await;
    assert_eq!(keys(&o["properties"]), vec!["p1"]);
    c.cleanup(&ns).await;
}

// ---------------------------------------------------------------------------------------------
// Objects
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn objects_create_list_show_update_delete() {
    let app = setup().await;
    let c = Client::new(&app, admin(&app));
    let ns = app.name("objs");
    c.create_ns(json!({"namespace": ns})).await;
    let base = format!("{}/objects", ns_path(&ns));

    let body = json!({
        "name": "Disk",
        "description": "a disk",
        "required": ["size"],
        "properties": {
            "size": {"title": "Size", "type": "integer", "minimum": 1},
            "kind": {"title": "Kind", "type": "string", "enum": ["ssd", "hdd"]},
        },
    });
    let resp = c.post(&base, &body).await;
    assert!(resp.headers().get(LOCATION).is_none());
    let mut created = expect_json(resp, StatusCode::CREATED).await;
    assert_eq!(
        keys(&created),
        sorted(&[
            "created_at",
            "description",
            "name",
            "properties",
            "required",
            "schema",
            "self",
            "updated_at",
        ])
    );
    strip_times(&mut created);
    let expected = json!({
        "name": "Disk",
        "description": "a disk",
        "required": ["size"],
        "properties": {
            "size": {"type": "integer", "title": "Size", "minimum": 1},
            "kind": {"type": "string", "title": "Kind", "enum": ["ssd", "hdd"]},
        },
        "self": format!("{base}/Disk"),
        "schema": "/v2/schemas/metadefs/object",
    });
    assert_eq!(created, expected);
    let mut shown = c.ok(&format!("{base}/Disk")).await;
    strip_times(&mut shown);
    assert_eq!(shown, expected);

    // A bare object: the create answer has no `required` or `properties`, but once stored it
    // shows them empty.
    let mut bare = c
        .json(post(&base, json!({"name": "Bare"})), StatusCode::CREATED)
        .await;
    strip_times(&mut bare);
    assert_eq!(
        bare,
        json!({"name": "Bare",
               "self": format!("{base}/Bare"), "schema": "/v2/schemas/metadefs/object"})
    );
    let mut bare = c.ok(&format!("{base}/Bare")).await;
    strip_times(&mut bare);
    assert_eq!(
        bare,
        json!({"name": "Bare", "required": [], "properties": {},
               "self": format!("{base}/Bare"), "schema": "/v2/schemas/metadefs/object"})
    );

    // Duplicate name.
    c.fails_with(
        post(&base, json!({"name": "Disk"})),
        StatusCode::CONFLICT,
        &format!("A metadata definition object with name=Disk already exists in namespace={ns}."),
    )
    .await;

    // List: `objects` plus a schema link that (Glance quirk) has no leading slash.
    let list = c.ok(&base).await;
    assert_eq!(keys(&list), sorted(&["objects", "schema"]));
    assert_eq!(list["schema"], "v2/schemas/metadefs/objects");
    let mut listed = names(&list["objects"]);
    listed.sort();
    assert_eq!(listed, vec!["Bare", "Disk"]);

    // PUT replaces the object (omitted fields are dropped) and may rename it.
    let mut updated = c
        .json(
            put(
                &format!("{base}/Disk"),
                json!({"name": "Volume", "description": "renamed"}),
            ),
            StatusCode::OK,
        )
        .await;
    strip_times(&mut updated);
    assert_eq!(
        updated,
        json!({"name": "Volume", "description": "renamed",
               "self": format!("{base}/Volume"), "schema": "/v2/schemas/metadefs/object"})
    );
    c.fails_with(
        get(&format!("{base}/Disk")),
        StatusCode::NOT_FOUND,
        "Could not find metadata object Disk",
    )
    .await;
    let v = c.ok(&format!("{base}/Volume")).await;
    assert_eq!(v["description"], "renamed");
    c.fails_with(
        put(&format!("{base}/Nope"), json!({"name": "Nope"})),
        StatusCode::NOT_FOUND,
        "Could not find metadata object Nope",
    )
    .await;

    // Delete one.
    c.deletes_once(
        &format!("{base}/Volume"),
        "Could not find metadata object Volume",
    )
    .await;
    assert_eq!(names(&c.ok(&base).await["objects"]), vec!["Bare"]);
    c.cleanup(&ns).await;
}

#[tokio::test]
async fn invalid_object_bodies() {
    let app = setup().await;
    let c = Client::new(&app, admin(&app));
    let ns = app.name("objbad");
    c.create_ns(json!({"namespace": ns})).await;
    let base = format!("{}/objects", ns_path(&ns));
    let cases = [
        (json!({"description": "x"}), "'name' is a required property"),
        (
            json!({"name": "o", "properties": {"a": {"title": "A", "type": "bogus"}}}),
            "'bogus' is not one of ['array', 'boolean', 'integer', 'number', 'object', 'string', None]",
        ),
        (
            json!({"name": "o", "properties": {"a": {"type": "string"}}}),
            "'title' is a required property",
        ),
    ];
    for (body, detail) in cases {
        c.schema_fails(post(&base, body), "object", detail).await;
    }
    c.fails_with(
        post(
            &base,
            json!({"name": "o", "created_at": "2020-01-01T00:00:00Z"}),
        ),
        StatusCode::FORBIDDEN,
        "Attribute 'created_at' is read-only.",
    )
    .await;
    assert_eq!(c.ok(&base).await["objects"], json!([]));
    c.cleanup(&ns).await;
}

#[tokio::test]
async fn delete_all_objects_of_a_namespace() {
    let app = setup().await;
    let c = Client::new(&app, admin(&app));
    let ns = app.name("objall");
    c.create_ns(
        json!({"namespace": ns, "objects": [{"name": "a"}, {"name": "b"}],
                       "tags": [{"name": "stays"}]}),
    )
    .await;
    let base = format!("{}/objects", ns_path(&ns));
    assert_eq!(c.ok(&base).await["objects"].as_array().unwrap().len(), 2);
    let resp = c.delete(&base).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        c.ok(&base).await,
        json!({"objects": [], "schema": "v2/schemas/metadefs/objects"})
    );
    // Only the objects went; and deleting none is fine too.
    assert_eq!(
        c.ok(&format!("{}/tags", ns_path(&ns))).await,
        json!({"tags": [{"name": "stays"}]})
    );
    assert_eq!(c.delete(&base).await.status(), StatusCode::NO_CONTENT);
    c.cleanup(&ns).await;
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn properties_create_list_show_update_delete() {
    let app = setup().await;
    let c = Client::new(&app, admin(&app));
    let ns = app.name("props");
    c.create_ns(json!({"namespace": ns})).await;
    let base = format!("{}/properties", ns_path(&ns));

    // The representation is the property itself, including its name, without timestamps or
    // links.
    let cpu = json!({"name": "cpu", "type": "integer", "title": "CPU", "description": "cores",
                     "minimum": 1});
    let resp = c
        .post(
            &base,
            &json!({"name": "cpu", "title": "CPU", "type": "integer", "minimum": 1,
                    "description": "cores"}),
        )
        .await;
    assert!(resp.headers().get(LOCATION).is_none());
    assert_eq!(expect_json(resp, StatusCode::CREATED).await, cpu);
    let arr = json!({"name": "arr", "type": "array", "title": "Arr", "operators": ["<or>"],
                     "readonly": false, "items": {"type": "string", "enum": ["x", "y"]},
                     "uniqueItems": true});
    assert_eq!(
        c.json(post(&base, arr.clone()), StatusCode::CREATED).await,
        arr
    );

    // Duplicate.
    c.fails_with(
        post(
            &base,
            json!({"name": "cpu", "title": "CPU", "type": "integer"}),
        ),
        StatusCode::CONFLICT,
        &format!("A metadata definition property with name=cpu already exists in namespace={ns}."),
    )
    .await;

    // List: an object keyed by property name, nothing else.
    assert_eq!(
        c.ok(&base).await,
        json!({"properties": {"cpu": cpu, "arr": arr}})
    );
    assert_eq!(c.ok(&format!("{base}/cpu")).await, cpu);
    c.fails_with(
        get(&format!("{base}/nope")),
        StatusCode::NOT_FOUND,
        "Could not find property nope",
    )
    .await;

    // PUT replaces (and may rename).
    let vcpu = json!({"name": "vcpu", "type": "integer", "title": "VCPU", "maximum": 64});
    assert_eq!(
        c.json(
            put(
                &format!("{base}/cpu"),
                json!({"name": "vcpu", "title": "VCPU", "type": "integer", "maximum": 64})
            ),
            StatusCode::OK
        )
        .await,
        vcpu
    );
    assert_eq!(
        c.get(&format!("{base}/cpu")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(c.ok(&format!("{base}/vcpu")).await, vcpu);
    c.fails_with(
        put(
            &format!("{base}/nope"),
            json!({"name": "nope", "title": "n", "type": "integer"}),
        ),
        StatusCode::NOT_FOUND,
        "Could not find property nope",
    )
    .await;
    c.schema_fails(
        put(
            &format!("{base}/vcpu"),
            json!({"name": "vcpu", "type": "integer"}),
        ),
        "property",
        "'title' is a required property",
    )
    .await;

    // Delete one.
    c.deletes_once(&format!("{base}/vcpu"), "Could not find property vcpu")
        .await;
    assert_eq!(c.ok(&base).await, json!({"properties": {"arr": arr}}));
    c.cleanup(&ns).await;
}

#[tokio::test]
async fn invalid_property_bodies() {
    let app = setup().await;
    let c = Client::new(&app, admin(&app));
    let ns = app.name("propbad");
    c.create_ns(json!({"namespace": ns})).await;
    let base = format!("{}/properties", ns_path(&ns));
    let cases = [
        (
            json!({"name": "p", "title": "P", "type": "bogus"}),
            "'bogus' is not one of ['array', 'boolean', 'integer', 'number', 'object', 'string', None]",
        ),
        (json!({"name": "p", "type": "string"}), "'title' is a required property"),
        (json!({"title": "P", "type": "string"}), "'name' is a required property"),
        (
            json!({"name": "p", "title": "P", "type": "string", "minLength": -1}),
            "-1 is less than the minimum of 0",
        ),
    ];
    for (body, detail) in cases {
        c.schema_fails(post(&base, body), "property", detail).await;
    }
    // In a namespace body too.
    let msg = c
        .fails(
            post(
                "/v2/metadefs/namespaces",
                json!({"namespace": app.name("propbad2"),
                    "properties": {"p": {"title": "P", "type": "bogus"}}}),
            ),
            StatusCode::BAD_REQUEST,
        )
        .await;
    let want = schema_error("namespace", "'bogus' is not one of");
    assert!(msg.starts_with(&want), "{msg}");
    c.fails_with(
        post(
            &base,
            json!({"name": "p", "title": "P", "type": "string", "created_at": "x"}),
        ),
        StatusCode::FORBIDDEN,
        "Attribute 'created_at' is read-only.",
    )
    .await;
    assert_eq!(c.ok(&base).await, json!({"properties": {}}));
    c.cleanup(&ns).await;
}

#[tokio::test]
async fn property_show_with_resource_type_strips_the_prefix() {
    let app = setup().await;
    let c = Client::new(&app, admin(&app));
    let ns = app.name("propprefix");
    let rt = format!("Vela::PropPrefix::{}", app.prefix);
    let rt2 = format!("Vela::PropPlain::{}", app.prefix);
    c.create_ns(json!({
        "namespace": ns,
        "resource_type_associations": [{"name": rt, "prefix": "hw_"}, {"name": rt2}],
    }))
    .await;
    let base = format!("{}/properties", ns_path(&ns));
    let cpu = json!({"name": "cpu", "type": "integer", "title": "CPU"});
    c.json(post(&base, cpu.clone()), StatusCode::CREATED).await;

    // The prefixed name finds the property; the answer uses the stored name.
    assert_eq!(
        c.ok(&format!("{base}/hw_cpu?resource_type={rt}")).await,
        cpu
    );
    // The unprefixed name with that resource type does not.
    c.fails_with(
        get(&format!("{base}/cpu?resource_type={rt}")),
        StatusCode::NOT_FOUND,
        "Property cpu does not start with the expected resource type association prefix \
             of 'hw_'.",
    )
    .await;
    // An association without a prefix: nothing can match (Glance prints the prefix as 'None').
    for name in ["cpu", "hw_cpu"] {
        c.fails_with(
            get(&format!("{base}/{name}?resource_type={rt2}")),
            StatusCode::NOT_FOUND,
            &format!(
                "Property {name} does not start with the expected resource type association \
                 prefix of 'None'."
            ),
        )
        .await;
    }
    // A resource type that does not exist at all.
    let unknown = format!("Vela::NoSuchType::{}", app.prefix);
    c.fails_with(
        get(&format!("{base}/hw_cpu?resource_type={unknown}")),
        StatusCode::NOT_FOUND,
        &format!("The metadata definition resource-type with name={unknown}, was not found."),
    )
    .await;
    c.cleanup(&ns).await;
}

#[tokio::test]
async fn delete_all_properties_of_a_namespace() {
    let app = setup().await;
    let c = Client::new(&app, admin(&app));
    let ns = app.name("propall");
    c.create_ns(json!({
        "namespace": ns,
        "properties": {"a": {"title": "A", "type": "string"},
                       "b": {"title": "B", "type": "boolean"}},
        "objects": [{"name": "stays"}],
    }))
    .await;
    let base = format!("{}/properties", ns_path(&ns));
    assert_eq!(keys(&c.ok(&base).await["properties"]), vec!["a", "b"]);
    assert_eq!(c.delete(&base).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(c.ok(&base).await, json!({"properties": {}}));
    assert_eq!(
        names(&c.ok(&format!("{}/objects", ns_path(&ns))).await["objects"]),
        vec!["stays"]
    );
    assert_eq!(c.delete(&base).await.status(), StatusCode::NO_CONTENT);
    c.cleanup(&ns).await;
}

// ---------------------------------------------------------------------------------------------
// Tags
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn tag_create_show_rename_delete() {
    let app = setup().await;
    let c = Client::new(&app, admin(&app));
    let ns = app.name("tags");
    c.create_ns(json!({"namespace": ns})).await;
    let base = format!("{}/tags", ns_path(&ns));

    // POST /tags/{name} without a body.
    let resp = c.post_empty(&format!("{base}/alpha")).await;
    assert!(resp.headers().get(LOCATION).is_none());
    let mut created = expect_json(resp, StatusCode::CREATED).await;
    assert_eq!(
        keys(&created),
        sorted(&["created_at", "name", "updated_at"])
    );
    strip_times(&mut created);
    assert_eq!(created, json!({"name": "alpha"}));
    let mut shown = c.ok(&format!("{base}/alpha")).await;
    assert_eq!(keys(&shown), sorted(&["created_at", "name", "updated_at"]));
    strip_times(&mut shown);
    assert_eq!(shown, json!({"name": "alpha"}));

    let msg = c
        .fails(post_empty(&format!("{base}/alpha")), StatusCode::CONFLICT)
        .await;
    let dup = |name: &str| {
        webob(&format!(
            "A metadata tag with name={name} already exists in namespace={ns}. \
             (Please note that metadata tag names are case insensitive)."
        ))
    };
    assert_eq!(msg, dup("alpha"));
    // A body is refused.
    c.fails_with(
        post(&format!("{base}/beta"), json!({"name": "beta"})),
        StatusCode::BAD_REQUEST,
        "A body is not expected with this request.",
    )
    .await;
    assert_eq!(
        c.get(&format!("{base}/beta")).await.status(),
        StatusCode::NOT_FOUND
    );

    // Rename by PUT.
    c.json(post_empty(&format!("{base}/gamma")), StatusCode::CREATED)
        .await;
    let mut renamed = c
        .json(
            put(&format!("{base}/alpha"), json!({"name": "omega"})),
            StatusCode::OK,
        )
        .await;
    assert_eq!(
        keys(&renamed),
        sorted(&["created_at", "name", "updated_at"])
    );
    strip_times(&mut renamed);
    assert_eq!(renamed, json!({"name": "omega"}));
    c.fails_with(
        get(&format!("{base}/alpha")),
        StatusCode::NOT_FOUND,
        "Could not find metadata tag alpha",
    )
    .await;
    let msg = c
        .fails(
            put(&format!("{base}/omega"), json!({"name": "gamma"})),
            StatusCode::CONFLICT,
        )
        .await;
    assert_eq!(msg, dup("gamma"));
    c.fails_with(
        put(&format!("{base}/nope"), json!({"name": "zz"})),
        StatusCode::NOT_FOUND,
        "Could not find metadata tag nope",
    )
    .await;
    c.schema_fails(
        put(&format!("{base}/omega"), json!({})),
        "tag",
        "'name' is a required property",
    )
    .await;

    // Delete.
    c.deletes_once(
        &format!("{base}/omega"),
        "Could not find metadata tag omega",
    )
    .await;
    assert_eq!(c.ok(&base).await, json!({"tags": [{"name": "gamma"}]}));
    c.cleanup(&ns).await;
}

#[tokio::test]
async fn tags_bulk_create_replaces_or_appends() {
    let app = setup().await;
    let c = Client::new(&app, admin(&app));
    let ns = app.name("bulk");
    c.create_ns(json!({"namespace": ns, "tags": [{"name": "old"}]}))
        .await;
    let base = format!("{}/tags", ns_path(&ns));
    let dup = |name: &str| {
        webob(&format!(
            "A metadata tag with name={name} already exists in namespace={ns}. \
             (Please note that metadata tag names are case insensitive)."
        ))
    };
    let append = |body: Value| {
        let c = &c;
        let base = &base;
        async move {
            c.app
                .send(
                    c.request(Method::POST, base)
                        .header("X-Openstack-Append", "True")
                        .json(&body),
                )
                .await
        }
    };

    // Without the header the given tags replace all existing ones; the answer lists the
    // tags sent (no timestamps).
    let resp = c
        .post(&base, &json!({"tags": [{"name": "b1"}, {"name": "b2"}]}))
        .await;
    assert!(resp.headers().get(LOCATION).is_none());
    assert_eq!(
        expect_json(resp, StatusCode::CREATED).await,
        json!({"tags": [{"name": "b1"}, {"name": "b2"}]})
    );
    assert_eq!(
        c.ok(&base).await,
        json!({"tags": [{"name": "b2"}, {"name": "b1"}]})
    );

    // X-Openstack-Append: True adds to them.
    assert_eq!(
        expect_json(
            append(json!({"tags": [{"name": "b3"}]})).await,
            StatusCode::CREATED
        )
        .await,
        json!({"tags": [{"name": "b3"}]})
    );
    assert_eq!(
        c.ok(&base).await,
        json!({"tags": [{"name": "b3"}, {"name": "b2"}, {"name": "b1"}]})
    );
    // Appending an existing tag fails as a whole.
    let msg = expect_error(
        append(json!({"tags": [{"name": "b4"}, {"name": "b2"}]})).await,
        StatusCode::CONFLICT,
    )
    .await;
    assert_eq!(msg, dup("b2"));
    // The same name twice in one request fails as a whole, and the old tags stay.
    let msg = c
        .fails(
            post(&base, json!({"tags": [{"name": "d1"}, {"name": "d1"}]})),
            StatusCode::CONFLICT,
        )
        .await;
    assert_eq!(msg, dup("d1"));
    assert_eq!(
        c.ok(&base).await,
        json!({"tags": [{"name": "b3"}, {"name": "b2"}, {"name": "b1"}]})
    );
    // Glance: an empty list replaces nothing (the existing tags stay).
    assert_eq!(
        c.json(post(&base, json!({"tags": []})), StatusCode::CREATED)
            .await,
        json!({"tags": []})
    );
    assert_eq!(c.ok(&base).await["tags"].as_array().unwrap().len(), 3);
    // A header value other than a true one replaces.
    let resp = app
        .send(
            c.request(Method::POST, &base)
                .header("X-Openstack-Append", "False")
                .json(&json!({"tags": [{"name": "only"}]})),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(c.ok(&base).await, json!({"tags": [{"name": "only"}]}));
    // Invalid bodies.
    let msg = c
        .fails(
            post(&base, json!({"tags": [{"name": "x", "bogus": 1}]})),
            StatusCode::BAD_REQUEST,
        )
        .await;
    assert!(msg.starts_with(&schema_error("tags", "")), "{msg}");

    // Delete all tags.
    assert_eq!(c.delete(&base).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(c.ok(&base).await, json!({"tags": []}));
    assert_eq!(c.delete(&base).await.status(), StatusCode::NO_CONTENT);
    c.cleanup(&ns).await;
}

#[tokio::test]
async fn tags_list_limit_marker_and_sort() {
    let app = setup().await;
    let c = Client::new(&app, admin(&app));
    let ns = app.name("tagpage");
    c.create_ns(json!({"namespace": ns})).await;
    let base = format!("{}/tags", ns_path(&ns));
    // Created in this order, one request each.
    for t in ["m", "z", "a", "q"] {
        c.json(post_empty(&format!("{base}/{t}")), StatusCode::CREATED)
            .await;
    }
    let list = |q: &str| {
        let c = &c;
        let path = format!("{base}?{q}");
        async move {
            let v = c.ok(&path).await;
            assert_eq!(keys(&v), vec!["tags"], "{v}");
            names(&v["tags"])
        }
    };
    // Default: newest first.
    assert_eq!(list("").await, vec!["q", "a", "z", "m"]);
    assert_eq!(
        list("sort_key=name&sort_dir=asc").await,
        vec!["a", "m", "q", "z"]
    );
    assert_eq!(
        list("sort_key=name&sort_dir=desc").await,
        vec!["z", "q", "m", "a"]
    );
    assert_eq!(
        list("sort_key=name&sort_dir=asc&limit=2").await,
        vec!["a", "m"]
    );
    assert_eq!(
        list("sort_key=name&sort_dir=asc&limit=2&marker=m").await,
        vec!["q", "z"]
    );
    assert_eq!(
        list("sort_key=name&sort_dir=asc&limit=2&marker=z").await,
        Vec::<String>::new()
    );
    // The marker works in the default order too.
    assert_eq!(list("limit=1&marker=z").await, vec!["m"]);
    assert_eq!(list("marker=a").await, vec!["z", "m"]);
    // Errors.
    c.fails_with(
        get(&format!("{base}?marker=nope")),
        StatusCode::NOT_FOUND,
        "Could not find metadata tag nope",
    )
    .await;
    c.fails_with(
        get(&format!("{base}?sort_dir=sideways")),
        StatusCode::BAD_REQUEST,
        "Invalid sort direction: sideways",
    )
    .await;
    c.fails_with(
        get(&format!("{base}?limit=-2")),
        StatusCode::BAD_REQUEST,
        "limit param must be positive",
    )
    .await;
    c.cleanup(&ns).await;
}

// ---------------------------------------------------------------------------------------------
// Resource types
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn resource_types_and_associations() {
    let app = setup().await;
    let c = Client::new(&app, admin(&app));
    let ns = app.name("rtassoc");
    c.create_ns(json!({"namespace": ns})).await;
    let base = format!("{}/resource_types", ns_path(&ns));
    let rt = format!("Vela::Assoc::{}", app.prefix);

    assert_eq!(c.ok(&base).await, json!({"resource_type_associations": []}));
    // Associate standard resource types and a new one (created on first use).
    for std_rt in ["OS::Glance::Image", "OS::Nova::Flavor"] {
        let resp = c
            .post(&base, &json!({"name": std_rt, "prefix": "x_"}))
            .await;
        expect_json(resp, StatusCode::CREATED).await;
    }
    let resp = c
        .post(
            &base,
            &json!({"name": rt, "prefix": "hw_", "properties_target": "image"}),
        )
        .await;
    assert!(resp.headers().get(LOCATION).is_none());
    let mut assoc = expect_json(resp, StatusCode::CREATED).await;
    assert_eq!(
        keys(&assoc),
        sorted(&[
            "created_at",
            "name",
            "prefix",
            "properties_target",
            "updated_at"
        ])
    );
    strip_times(&mut assoc);
    assert_eq!(
        assoc,
        json!({"name": rt, "prefix": "hw_", "properties_target": "image"})
    );

    // The global list: {name, created_at, updated_at} per resource type.
    let all = c.ok("/v2/metadefs/resource_types").await;
    assert_eq!(keys(&all), vec!["resource_types"]);
    let all = all["resource_types"].as_array().unwrap();
    for want in ["OS::Glance::Image", "OS::Nova::Flavor", rt.as_str()] {
        let found = all
            .iter()
            .find(|r| r["name"] == want)
            .unwrap_or_else(|| panic!("{want} not listed: {all:?}"));
        assert_eq!(keys(found), sorted(&["created_at", "name", "updated_at"]));
        assert!(is_timestamp(found["created_at"].as_str().unwrap()));
    }

    // The namespace's associations.
    let list = c.ok(&base).await;
    assert_eq!(keys(&list), vec!["resource_type_associations"]);
    let mut got = list["resource_type_associations"]
        .as_array()
        .unwrap()
        .clone();
    for a in &mut got {
        strip_times(a);
    }
    got.sort_by_key(|a| a["name"].as_str().unwrap().to_owned());
    assert_eq!(
        got,
        vec![
            json!({"name": "OS::Glance::Image", "prefix": "x_"}),
            json!({"name": "OS::Nova::Flavor", "prefix": "x_"}),
            json!({"name": rt, "prefix": "hw_", "properties_target": "image"}),
        ]
    );

    // Twice is a conflict.
    c.fails_with(
        post(&base, json!({"name": rt})),
        StatusCode::CONFLICT,
        &format!(
            "The metadata definition resource-type association of resource-type={rt} to \
             namespace={ns} already exists."
        ),
    )
    .await;
    // Invalid bodies.
    for (body, detail) in [
        (json!({"prefix": "a_"}), "'name' is a required property"),
        (
            json!({"name": rt, "bogus": 1}),
            "Additional properties are not allowed ('bogus' was unexpected)",
        ),
    ] {
        c.schema_fails(post(&base, body), "resource_type_association", detail)
            .await;
    }

    // Dissociate.
    c.deletes_once(
        &format!("{base}/{rt}"),
        &format!("Failed to find resource type {rt} to delete"),
    )
    .await;
    let left: Vec<String> = names(&c.ok(&base).await["resource_type_associations"]);
    assert_eq!(
        sorted(&left.iter().map(String::as_str).collect::<Vec<_>>()),
        vec!["OS::Glance::Image", "OS::Nova::Flavor"]
    );
    // The resource type itself stays listed.
    let all = c.ok("/v2/metadefs/resource_types").await;
    assert!(
        names(&all["resource_types"]).contains(&rt),
        "{rt} gone from {all}"
    );
    c.cleanup(&ns).await;
}

// ---------------------------------------------------------------------------------------------
// Schemas
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn metadef_schemas_match_glance() {
    let app = setup().await;
    let fixtures: [(&str, &str); 10] = [
        (
            "namespace",
            include_str!("fixtures/schema-metadefs-namespace.json"),
        ),
        (
            "namespaces",
            include_str!("fixtures/schema-metadefs-namespaces.json"),
        ),
        (
            "resource_type",
            include_str!("fixtures/schema-metadefs-resource_type.json"),
        ),
        (
            "resource_types",
            include_str!("fixtures/schema-metadefs-resource_types.json"),
        ),
        (
            "property",
            include_str!("fixtures/schema-metadefs-property.json"),
        ),
        (
            "properties",
            include_str!("fixtures/schema-metadefs-properties.json"),
        ),
        (
            "object",
            include_str!("fixtures/schema-metadefs-object.json"),
        ),
        (
            "objects",
            include_str!("fixtures/schema-metadefs-objects.json"),
        ),
        ("tag", include_str!("fixtures/schema-metadefs-tag.json")),
        ("tags", include_str!("fixtures/schema-metadefs-tags.json")),
    ];
    for (name, fixture) in fixtures {
        let got = expect_json(
            app.get(&format!("/v2/schemas/metadefs/{name}")).await,
            StatusCode::OK,
        )
        .await;
        let want: Value = serde_json::from_str(fixture).unwrap();
        assert_eq!(got, want, "schema metadefs/{name} differs from Glance's");
    }
}

// ---------------------------------------------------------------------------------------------
// Who may do what (secure defaults: metadef writes are admin-only)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn non_admins_read_public_and_own_namespaces_only() {
    let app = setup().await;
    let adm = Client::new(&app, admin(&app));
    let project = app.name("proj");
    let member = Client::new(&app, Persona::member(&project));
    let rdr = Client::new(&app, reader(&project));
    let rt = format!("Vela::Rbac::{}", app.prefix);
    let public = app.name("rbac-public");
    let own = app.name("rbac-own");
    let foreign = app.name("rbac-foreign");
    adm.create_ns(json!({
        "namespace": public, "visibility": "public",
        "resource_type_associations": [{"name": rt}],
        "properties": {"p": {"title": "P", "type": "string"}},
        "objects": [{"name": "o"}],
        "tags": [{"name": "t"}],
    }))
    .await;
    // Private, but owned by the member's project.
    adm.create_ns(json!({"namespace": own, "owner": project,
                         "resource_type_associations": [{"name": rt}]}))
        .await;
    // Private to the admin's project.
    adm.create_ns(json!({"namespace": foreign, "tags": [{"name": "secret"}],
                         "resource_type_associations": [{"name": rt}]}))
        .await;

    for c in [&member, &rdr] {
        let who = &c.who.roles;
        // A public namespace and everything in it.
        let v = c.ok(&ns_path(&public)).await;
        assert_eq!(v["namespace"], public.as_str(), "{who}");
        assert_eq!(v["tags"], json!([{"name": "t"}]), "{who}");
        c.ok(&format!("{}/objects/o", ns_path(&public))).await;
        c.ok(&format!("{}/properties/p", ns_path(&public))).await;
        c.ok(&format!("{}/tags/t", ns_path(&public))).await;
        c.ok(&format!("{}/resource_types", ns_path(&public))).await;
        // Its own project's private namespace.
        let v = c.ok(&ns_path(&own)).await;
        assert_eq!(v["owner"], project.as_str(), "{who}");
        // The list shows both, not the other project's private one.
        let list = c
            .ok(&format!(
                "/v2/metadefs/namespaces?resource_types={rt}&sort_key=namespace&sort_dir=asc"
            ))
            .await;
        assert_eq!(ns_names(&list), vec![own.clone(), public.clone()], "{who}");
        // Resource types are listed for anyone.
        c.ok("/v2/metadefs/resource_types").await;

        // Another project's private namespace does not exist for them.
        let msg = c
            .fails(get(&ns_path(&foreign)), StatusCode::NOT_FOUND)
            .await;
        assert_eq!(msg, webob("The resource could not be found."), "{who}");
        let gone = webob(&format!("Namespace {foreign} not found"));
        for sub in [
            "tags",
            "tags/secret",
            "objects",
            "properties",
            "resource_types",
        ] {
            let msg = c
                .fails(
                    get(&format!("{}/{sub}", ns_path(&foreign))),
                    StatusCode::NOT_FOUND,
                )
                .await;
            assert_eq!(msg, gone, "{who} {sub}");
        }
        let msg = c
            .fails(
                put(&ns_path(&foreign), json!({"namespace": foreign})),
                StatusCode::NOT_FOUND,
            )
            .await;
        assert_eq!(msg, gone, "{who}");
        let msg = c
            .fails(delete(&ns_path(&foreign)), StatusCode::NOT_FOUND)
            .await;
        assert_eq!(msg, gone, "{who}");
        // As a marker it is refused outright.
        let msg = c
            .fails(
                get(&format!("/v2/metadefs/namespaces?marker={foreign}")),
                StatusCode::FORBIDDEN,
            )
            .await;
        assert_eq!(
            msg,
            webob(&format!(
                "Forbidding request, metadata definition namespace={foreign} is not visible."
            )),
            "{who}"
        );
    }

    for ns in [&public, &own, &foreign] {
        adm.cleanup(ns).await;
    }
}

#[tokio::test]
async fn non_admins_cannot_write_metadefs() {
    let app = setup().await;
    let adm = Client::new(&app, admin(&app));
    let project = app.name("proj");
    let ns = app.name("rbac-w");
    adm.create_ns(json!({
        "namespace": ns, "visibility": "public", "owner": project,
        "resource_type_associations": [{"name": "OS::Glance::Image"}],
        "properties": {"p": {"title": "P", "type": "string"}},
        "objects": [{"name": "o"}],
        "tags": [{"name": "t"}],
    }))
    .await;
    let p = ns_path(&ns);
    let denied = |action: &str| {
        webob(&format!(
            "You are not authorized to complete {action} action."
        ))
    };

    // Even the namespace's own project (member or reader) may not change anything.
    for c in [
        Client::new(&app, Persona::member(&project)),
        Client::new(&app, reader(&project)),
        Client::new(&app, Persona::member(&app.name("other"))),
    ] {
        let who = format!("{} of {}", c.who.roles, c.who.project);
        let prop = json!({"name": "q", "title": "Q", "type": "string"});
        let cases: Vec<(Req, &str)> = vec![
            (
                post(
                    "/v2/metadefs/namespaces",
                    json!({"namespace": app.name("nope")}),
                ),
                "add_metadef_namespace",
            ),
            (
                put(&p, json!({"namespace": ns})),
                "modify_metadef_namespace",
            ),
            (delete(&p), "delete_metadef_namespace"),
            (
                post(&format!("{p}/objects"), json!({"name": "o2"})),
                "add_metadef_object",
            ),
            (
                put(&format!("{p}/objects/o"), json!({"name": "o"})),
                "modify_metadef_object",
            ),
            (delete(&format!("{p}/objects/o")), "delete_metadef_object"),
            (
                post(&format!("{p}/properties"), prop.clone()),
                "add_metadef_property",
            ),
            (
                put(
                    &format!("{p}/properties/p"),
                    json!({"name": "p", "title": "P", "type": "string"}),
                ),
                "modify_metadef_property",
            ),
            (
                delete(&format!("{p}/properties/p")),
                "remove_metadef_property",
            ),
            (post_empty(&format!("{p}/tags/t2")), "add_metadef_tag"),
            (
                post(&format!("{p}/tags"), json!({"tags": [{"name": "t3"}]})),
                "add_metadef_tags",
            ),
            (
                put(&format!("{p}/tags/t"), json!({"name": "t4"})),
                "modify_metadef_tag",
            ),
            (delete(&format!("{p}/tags/t")), "delete_metadef_tag"),
            (
                post(
                    &format!("{p}/resource_types"),
                    json!({"name": "OS::Nova::Flavor"}),
                ),
                "add_metadef_resource_type_association",
            ),
            (
                delete(&format!("{p}/resource_types/OS::Glance::Image")),
                "remove_metadef_resource_type_association",
            ),
            // Glance checks deleting all objects/properties/tags as deleting the namespace.
            (delete(&format!("{p}/objects")), "delete_metadef_namespace"),
            (
                delete(&format!("{p}/properties")),
                "delete_metadef_namespace",
            ),
            (delete(&format!("{p}/tags")), "delete_metadef_namespace"),
        ];
        for (req, action) in cases {
            let msg = c.fails(req, StatusCode::FORBIDDEN).await;
            assert_eq!(msg, denied(action), "{who}");
        }
    }

    // Nothing changed.
    let v = adm.ok(&p).await;
    assert_eq!(v["tags"], json!([{"name": "t"}]));
    assert_eq!(names(&v["objects"]), vec!["o"]);
    assert_eq!(keys(&v["properties"]), vec!["p"]);
    assert_eq!(
        names(&v["resource_type_associations"]),
        vec!["OS::Glance::Image"]
    );
    adm.cleanup(&ns).await;
}

// ---------------------------------------------------------------------------------------------
// Vela only: the first catalog, `vela metadefs load|export`, and limits where Glance has none
// ---------------------------------------------------------------------------------------------

/// Writes definition files (name → document) into a new directory below `root`.
fn definition_dir(root: &std::path::Path, files: &[(&str, Value)]) -> std::path::PathBuf {
    let dir = root.join(format!("defs-{}", &crate::helpers::new_uuid()[..8]));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, doc) in files {
        std::fs::write(dir.join(name), serde_json::to_vec_pretty(doc).unwrap()).unwrap();
    }
    dir
}

#[tokio::test]
async fn a_fresh_deployment_has_a_catalog_loaded_once() {
    let Some(nodes) = TestApp::spawn_cluster(1).await else {
        return; // VELA_TEST_URL: not Vela's first start.
    };
    let app = &nodes[0];
    let c = Client::new(app, admin(app));
    // Horizon's query: at least one namespace for images (and Horizon breaks on none).
    let for_images = c
        .ok("/v2/metadefs/namespaces?resource_types=OS::Glance::Image")
        .await;
    assert!(ns_names(&for_images).len() >= 5, "{for_images}");
    let all = ns_names(&c.ok("/v2/metadefs/namespaces?limit=1000").await);
    assert!(all.contains(&"OS::Compute::Libvirt".to_owned()), "{all:?}");
    let libvirt = c.ok(&ns_path("OS::Compute::Libvirt")).await;
    assert_eq!(libvirt["protected"], true);
    assert!(libvirt["properties"]
        .as_object()
        .is_some_and(|p| p.len() > 3));
    // A reader of any project sees the public catalog.
    let r = Client::new(app, reader(&app.name("proj")));
    assert_eq!(
        ns_names(&r.ok("/v2/metadefs/namespaces?limit=1000").await),
        all
    );
    // The standard resource types exist.
    let types = names(&c.ok("/v2/metadefs/resource_types").await["resource_types"]);
    for t in [
        "OS::Glance::Image",
        "OS::Cinder::Volume",
        "OS::Nova::Flavor",
    ] {
        assert!(types.contains(&t.to_owned()), "{types:?}");
    }
    // Loaded on the first start only: a namespace the operator deleted stays deleted when
    // another node starts.
    assert_eq!(
        c.delete(&ns_path("OS::Glance::Signatures")).await.status(),
        StatusCode::NO_CONTENT
    );
    let sibling = app.spawn_sibling().await;
    let s = Client::new(&sibling, admin(&sibling));
    let after = ns_names(&s.ok("/v2/metadefs/namespaces?limit=1000").await);
    assert_eq!(after.len(), all.len() - 1, "{after:?}");
    assert!(!after.contains(&"OS::Glance::Signatures".to_owned()));
}

#[tokio::test]
async fn first_load_can_be_switched_off_or_pointed_at_files() {
    let Some(nodes) =
        TestApp::spawn_cluster_with(1, "[metadefs]\nload_on_first_start = false\n").await
    else {
        return;
    };
    let c = Client::new(&nodes[0], admin(&nodes[0]));
    let list = c.ok("/v2/metadefs/namespaces").await;
    assert_eq!(ns_names(&list), Vec::<String>::new());
    // The resource types are there all the same.
    let types = names(&c.ok("/v2/metadefs/resource_types").await["resource_types"]);
    assert!(types.contains(&"OS::Glance::Image".to_owned()));

    let root = tempfile::tempdir().unwrap();
    let dir = definition_dir(
        root.path(),
        &[(
            "mine.json",
            json!({"namespace": "Site::Mine", "visibility": "public",
                   "resource_type_associations": [{"name": "OS::Glance::Image"}],
                   "properties": {"site_rack": {"title": "Rack", "type": "string"}}}),
        )],
    );
    let cfg = format!(
        "[metadefs]\nfirst_load_dir = \"{}\"\n",
        dir.display().to_string().replace('\\', "\\\\")
    );
    let Some(nodes) = TestApp::spawn_cluster_with(1, &cfg).await else {
        return;
    };
    let c = Client::new(&nodes[0], admin(&nodes[0]));
    let list = c.ok("/v2/metadefs/namespaces").await;
    assert_eq!(ns_names(&list), vec!["Site::Mine"]);
    // Files without an owner belong to `admin`, as with Glance's loader.
    assert_eq!(list["namespaces"][0]["owner"], "admin");
}

#[tokio::test]
async fn vela_metadefs_load_and_export() {
    let Some(nodes) = TestApp::spawn_cluster(1).await else {
        return;
    };
    let app = &nodes[0];
    let c = Client::new(app, admin(app));
    let root = tempfile::tempdir().unwrap();
    let hypervisor = json!({
        "namespace": "OS::Compute::Hypervisor",
        "display_name": "Hypervisor Selection",
        "description": "Replaced by the operator.",
        "visibility": "public",
        "protected": true,
        "resource_type_associations": [{"name": "OS::Glance::Image"}],
        "properties": {"hypervisor_type": {"title": "Hypervisor Type", "type": "string",
                       "enum": ["kvm", "qemu"]}},
        "objects": [{"name": "Pair", "required": ["a"],
                     "properties": {"a": {"title": "A", "type": "integer", "minimum": 0}}}],
        "tags": [{"name": "x1"}, {"name": "x2"}],
    });
    let site = json!({"namespace": "Site::Extra", "visibility": "private", "owner": "ops",
                      "resource_type_associations": [{"name": "Site::Thing", "prefix": "st_"}]});
    let dir = definition_dir(
        root.path(),
        &[
            ("compute-hypervisor.json", hypervisor.clone()),
            ("site.json", site),
            ("README.txt", json!("not a definition")),
        ],
    );
    let out = app.run_vela(&["metadefs", "load", dir.to_str().unwrap()]);
    assert!(out.contains("1 created, 0 replaced, 1 skipped"), "{out}");
    let shown = c.ok(&ns_path("OS::Compute::Hypervisor")).await;
    assert_ne!(shown["description"], "Replaced by the operator.");
    assert_eq!(c.ok(&ns_path("Site::Extra")).await["owner"], "ops");
    // A resource type first named by a file is created (and protected, as Glance's loader does).
    let types = names(&c.ok("/v2/metadefs/resource_types").await["resource_types"]);
    assert!(types.contains(&"Site::Thing".to_owned()));

    let out = app.run_vela(&["metadefs", "load", "--overwrite", dir.to_str().unwrap()]);
    assert!(out.contains("0 created, 2 replaced, 0 skipped"), "{out}");
    let shown = c.ok(&ns_path("OS::Compute::Hypervisor")).await;
    assert_eq!(shown["description"], "Replaced by the operator.");
    assert_eq!(names(&shown["objects"]), vec!["Pair"]);
    assert_eq!(
        keys(&shown["properties"]),
        vec!["hypervisor_type".to_owned()]
    );

    // Export writes one file per namespace, in the format load reads.
    let export = root.path().join("export");
    let out = app.run_vela(&["metadefs", "export", export.to_str().unwrap()]);
    assert!(out.starts_with("wrote "), "{out}");
    let text = std::fs::read_to_string(export.join("OS::Compute::Hypervisor.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    for key in [
        "namespace",
        "description",
        "properties",
        "resource_type_associations",
    ] {
        assert_eq!(doc[key], hypervisor[key], "{key}");
    }
    assert_eq!(
        doc["objects"][0]["properties"],
        hypervisor["objects"][0]["properties"]
    );
    let mut tags = names(&doc["tags"]);
    tags.sort();
    assert_eq!(tags, vec!["x1", "x2"]);

    // A file that is not a definition stops the load before anything is written.
    let bad = definition_dir(
        root.path(),
        &[
            ("a.json", json!({"namespace": "Site::Never"})),
            (
                "b.json",
                json!({"namespace": "Site::Bad", "visibility": "everyone"}),
            ),
        ],
    );
    let out = app.run_vela_output(&["metadefs", "load", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("b.json") && err.contains("is not one of"),
        "{err}"
    );
    assert_eq!(
        c.get(&ns_path("Site::Never")).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn hostile_metadef_input_gets_a_clear_4xx() {
    let app = setup().await;
    if app.is_external() {
        return; // Glance answers several of these with 500.
    }
    let c = Client::new(&app, admin(&app));
    let ns = app.name("hostile");
    // Glance answers these 500; Vela 400.
    for (body, want) in [
        (json!([{"namespace": ns}]), "is not of type 'object'"),
        (
            json!({"namespace": ns, "objects": [{"description": "no name"}]}),
            "name",
        ),
        (
            json!({"namespace": format!("{ns}/x")}),
            "may not contain '/'",
        ),
        (json!({"namespace": ""}), "may not be empty"),
    ] {
        let msg = c
            .fails(
                post("/v2/metadefs/namespaces", body.clone()),
                StatusCode::BAD_REQUEST,
            )
            .await;
        assert!(msg.contains(want), "{body}: {msg}");
    }
    let msg = c
        .fails(
            get("/v2/metadefs/namespaces?sort_key=bogus"),
            StatusCode::BAD_REQUEST,
        )
        .await;
    assert!(msg.contains("Invalid sort key: bogus"), "{msg}");
    let msg = c
        .fails(
            get("/v2/metadefs/namespaces?limit=abc"),
            StatusCode::BAD_REQUEST,
        )
        .await;
    assert!(msg.contains("limit param must be an integer"), "{msg}");
    c.create_ns(json!({"namespace": ns})).await;
    let msg = c
        .fails(
            post(&format!("{}/tags", ns_path(&ns)), json!({})),
            StatusCode::BAD_REQUEST,
        )
        .await;
    assert!(msg.contains("'tags' is a required property"), "{msg}");
    // Bounded: at most 2000 tags (and objects, properties) in a namespace.
    let many: Vec<Value> = (0..2001)
        .map(|i| json!({"name": format!("t{i}")}))
        .collect();
    let msg = c
        .fails(
            post(&format!("{}/tags", ns_path(&ns)), json!({ "tags": many })),
            StatusCode::BAD_REQUEST,
        )
        .await;
    assert!(msg.contains("at most 2000"), "{msg}");
    // Renaming onto a taken name is a conflict (Glance: 500).
    for name in ["p1", "p2"] {
        let body = json!({"name": name, "title": name, "type": "string"});
        c.json(
            post(&format!("{}/properties", ns_path(&ns)), body.clone()),
            StatusCode::CREATED,
        )
        .await;
    }
    let resp = c
        .put(
            &format!("{}/properties/p1", ns_path(&ns)),
            &json!({"name": "p2", "title": "t", "type": "string"}),
        )
        .await;
    expect_error(resp, StatusCode::CONFLICT).await;
    // A deeply nested default is stored and shown, not a crash.
    let mut deep = json!("x");
    for _ in 0..64 {
        deep = json!([deep]);
    }
    let body = json!({"name": "deep", "title": "d", "type": "array", "default": deep});
    c.json(
        post(&format!("{}/properties", ns_path(&ns)), body.clone()),
        StatusCode::CREATED,
    )
    .await;
    c.cleanup(&ns).await;
}
