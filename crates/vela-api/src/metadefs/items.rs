//! The objects, properties and tags of a namespace. The three share their handlers; a
//! [`Spec`] says what differs (policy names, messages, shapes).

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use serde_json::{json, Map, Value};
use vela_domain::metadef::{parse_tags, validate, Item, ItemInput, ItemKind, Namespace, ITEMS_MAX};
use vela_domain::policy::Action;
use vela_domain::{format_timestamp, RequestContext};

use super::{
    check_unprotected, check_visibility_param, find, param, parse_limit, parse_page,
    parse_sort_dir, protected_error, query_pairs, Missing,
};
use crate::auth::Ctx;
use crate::wire::{json_body, json_response};
use crate::{ApiError, AppState};

/// What differs between objects, properties and tags.
struct Spec {
    kind: ItemKind,
    /// How a missing namespace is reported on these routes.
    missing: Missing,
    get: Action,
    list: Action,
    add: Action,
    modify: Action,
    delete: Action,
}

const OBJECTS: Spec = Spec {
    kind: ItemKind::Object,
    missing: Missing::Objects,
    get: Action::GetMetadefObject,
    list: Action::GetMetadefObjects,
    add: Action::AddMetadefObject,
    modify: Action::ModifyMetadefObject,
    delete: Action::DeleteMetadefObject,
};

const PROPERTIES: Spec = Spec {
    kind: ItemKind::Property,
    missing: Missing::Other,
    get: Action::GetMetadefProperty,
    list: Action::GetMetadefProperties,
    add: Action::AddMetadefProperty,
    modify: Action::ModifyMetadefProperty,
    delete: Action::RemoveMetadefProperty,
};

const TAGS: Spec = Spec {
    kind: ItemKind::Tag,
    missing: Missing::Other,
    get: Action::GetMetadefTag,
    list: Action::GetMetadefTags,
    add: Action::AddMetadefTag,
    modify: Action::ModifyMetadefTag,
    delete: Action::DeleteMetadefTag,
};

impl Spec {
    fn not_found(&self, name: &str) -> ApiError {
        ApiError::not_found(match self.kind {
            ItemKind::Object => format!("Could not find metadata object {name}"),
            ItemKind::Property => format!("Could not find property {name}"),
            ItemKind::Tag => format!("Could not find metadata tag {name}"),
        })
    }

    /// The namespace, visible and with `action` allowed on it.
    async fn namespace(
        &self,
        state: &AppState,
        ctx: &RequestContext,
        name: &str,
        action: Action,
    ) -> Result<Namespace, ApiError> {
        let ns = find(state, ctx, name, self.missing).await?;
        state.policy.enforce_on_namespace(action, ctx, &ns)?;
        Ok(ns)
    }

    /// The item `name`, or this kind's 404.
    async fn item(&self, state: &AppState, ns: &Namespace, name: &str) -> Result<Item, ApiError> {
        match state.db.get_item(ns, self.kind, name).await {
            Err(vela_db::DbError::NotFound) => Err(self.not_found(name)),
            other => Ok(other?),
        }
    }

    /// The item as a single GET, POST or PUT shows it.
    fn render(&self, ns: &Namespace, item: &Item, stored: bool) -> Value {
        match self.kind {
            ItemKind::Object => object_json(ns, item, stored),
            ItemKind::Property => property_body(item, true),
            ItemKind::Tag => tag_json(item),
        }
    }
}

/// An object: `stored` fills in `required` and `properties` when absent (as reads do; a create
/// or update echoes what was sent).
pub(super) fn object_json(ns: &Namespace, o: &Item, stored: bool) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), o.name.clone().into());
    for key in ["required", "description", "properties"] {
        if let Some(v) = o.body.get(key) {
            m.insert(key.into(), v.clone());
        }
    }
    if stored {
        m.entry("required").or_insert_with(|| json!([]));
        m.entry("properties").or_insert_with(|| json!({}));
    }
    m.insert("created_at".into(), format_timestamp(o.created_at).into());
    m.insert("updated_at".into(), format_timestamp(o.updated_at).into());
    m.insert(
        "self".into(),
        format!(
            "/v2/metadefs/namespaces/{}/objects/{}",
            ns.namespace, o.name
        )
        .into(),
    );
    m.insert("schema".into(), "/v2/schemas/metadefs/object".into());
    Value::Object(m)
}

/// A property's definition, with its name first when `named`.
pub(super) fn property_body(p: &Item, named: bool) -> Value {
    let mut m = Map::new();
    if named {
        m.insert("name".into(), p.name.clone().into());
    }
    let mut body = coerce_property(&p.body);
    body.remove("name");
    m.extend(body);
    Value::Object(m)
}

/// A property definition with the value types Glance's model gives them on the way out:
/// `default` as text (Python's `str`), the numeric limits as integers, `enum` and
/// `operators` as lists of text. Clients written against Glance expect these types.
pub(super) fn coerce_property(body: &Map<String, Value>) -> Map<String, Value> {
    let text = |v: &Value| match v {
        Value::String(s) => Value::String(s.clone()),
        other => Value::String(vela_domain::metadef::schema::py_repr(other)),
    };
    body.iter()
        .map(|(k, v)| {
            let v = match (k.as_str(), v) {
                ("default", v) if !v.is_null() => text(v),
                (
                    "minimum" | "maximum" | "minLength" | "maxLength" | "minItems" | "maxItems",
                    Value::Number(n),
                ) => match n.as_i64() {
                    Some(i) => Value::from(i),
                    None => Value::from(n.as_f64().unwrap_or_default().trunc() as i64),
                },
                ("enum" | "operators", Value::Array(items)) => {
                    Value::Array(items.iter().map(text).collect())
                }
                (_, v) => v.clone(),
            };
            (k.clone(), v)
        })
        .collect()
}

fn tag_json(t: &Item) -> Value {
    json!({
        "name": t.name,
        "created_at": format_timestamp(t.created_at),
        "updated_at": format_timestamp(t.updated_at),
    })
}

fn map_item_error(spec: &Spec, name: &str, e: vela_db::DbError) -> ApiError {
    match e {
        vela_db::DbError::NotFound => spec.not_found(name),
        other => other.into(),
    }
}

async fn get_one(
    spec: &Spec,
    state: &AppState,
    ctx: &RequestContext,
    ns: &str,
    name: &str,
) -> Result<Response, ApiError> {
    let ns = spec.namespace(state, ctx, ns, spec.get).await?;
    let item = spec.item(state, &ns, name).await?;
    Ok(json_response(
        StatusCode::OK,
        &spec.render(&ns, &item, true),
    ))
}

async fn create(
    spec: &Spec,
    state: &AppState,
    ctx: &RequestContext,
    ns: &str,
    body: &Value,
) -> Result<Response, ApiError> {
    let input = ItemInput::parse(spec.kind, body)?;
    let ns = spec.namespace(state, ctx, ns, spec.add).await?;
    let now = vela_domain::now_micros();
    let item = state
        .db
        .create_item(&ns, spec.kind, &input, ITEMS_MAX, now)
        .await?;
    Ok(json_response(
        StatusCode::CREATED,
        &spec.render(&ns, &item, false),
    ))
}

async fn update(
    spec: &Spec,
    state: &AppState,
    ctx: &RequestContext,
    (ns, name): (&str, &str),
    body: &Value,
) -> Result<Response, ApiError> {
    let input = ItemInput::parse(spec.kind, body)?;
    let ns = spec.namespace(state, ctx, ns, spec.modify).await?;
    let now = vela_domain::now_micros();
    let item = state
        .db
        .update_item(&ns, spec.kind, name, &input, now)
        .await
        .map_err(|e| map_item_error(spec, name, e))?;
    Ok(json_response(
        StatusCode::OK,
        &spec.render(&ns, &item, false),
    ))
}

async fn delete_one(
    spec: &Spec,
    state: &AppState,
    ctx: &RequestContext,
    ns: &str,
    name: &str,
) -> Result<Response, ApiError> {
    let ns = spec.namespace(state, ctx, ns, spec.delete).await?;
    spec.item(state, &ns, name).await?;
    if ns.protected {
        return Err(protected_error(spec.kind.as_str(), name));
    }
    state
        .db
        .delete_item(&ns, spec.kind, name)
        .await
        .map_err(|e| map_item_error(spec, name, e))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_all(
    spec: &Spec,
    state: &AppState,
    ctx: &RequestContext,
    ns: &str,
) -> Result<Response, ApiError> {
    let ns = find(state, ctx, ns, Missing::Other).await?;
    state
        .policy
        .enforce_on_namespace(Action::DeleteMetadefNamespace, ctx, &ns)?;
    if spec.kind == ItemKind::Tag {
        state
            .policy
            .enforce_on_namespace(Action::DeleteMetadefTags, ctx, &ns)?;
    }
    check_unprotected(&ns)?;
    state.db.delete_items(&ns, spec.kind).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Handlers for one kind, as closures over its [`Spec`].
macro_rules! item_routes {
    ($spec:expr, $collection:literal, $one:literal, $list:expr, $post:expr, $show:expr) => {{
        let one: MethodRouter<AppState> =
            get($show)
                .put(
                    |State(s): State<AppState>,
                     Ctx(c): Ctx,
                     Path((ns, n)): Path<(String, String)>,
                     body: Bytes| async move {
                        update(&$spec, &s, &c, (&ns, &n), &json_body(&body)?).await
                    },
                )
                .delete(
                    |State(s): State<AppState>,
                     Ctx(c): Ctx,
                     Path((ns, n)): Path<(String, String)>| async move {
                        delete_one(&$spec, &s, &c, &ns, &n).await
                    },
                );
        let all: MethodRouter<AppState> = get($list).post($post).delete(
            |State(s): State<AppState>, Ctx(c): Ctx, Path(ns): Path<String>| async move {
                delete_all(&$spec, &s, &c, &ns).await
            },
        );
        vec![($collection, all), ($one, one)]
    }};
}

/// `…/objects` and `…/objects/{name}`.
pub fn objects_routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    item_routes!(
        OBJECTS,
        "/metadefs/namespaces/{ns}/objects",
        "/metadefs/namespaces/{ns}/objects/{name}",
        list_objects,
        |State(s): State<AppState>, Ctx(c): Ctx, Path(ns): Path<String>, body: Bytes| async move {
            create(&OBJECTS, &s, &c, &ns, &json_body(&body)?).await
        },
        |State(s): State<AppState>, Ctx(c): Ctx, Path((ns, n)): Path<(String, String)>| async move {
            get_one(&OBJECTS, &s, &c, &ns, &n).await
        }
    )
}

/// `…/properties` and `…/properties/{name}`.
pub fn properties_routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    // A property is read with `?resource_type=`, which the shared GET does not know.
    item_routes!(
        PROPERTIES,
        "/metadefs/namespaces/{ns}/properties",
        "/metadefs/namespaces/{ns}/properties/{name}",
        list_properties,
        |State(s): State<AppState>, Ctx(c): Ctx, Path(ns): Path<String>, body: Bytes| async move {
            create(&PROPERTIES, &s, &c, &ns, &json_body(&body)?).await
        },
        show_property
    )
}

/// `…/tags` and `…/tags/{name}` (a tag is also created by POST on its own path).
pub fn tags_routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    let mut routes = item_routes!(
        TAGS,
        "/metadefs/namespaces/{ns}/tags",
        "/metadefs/namespaces/{ns}/tags/{name}",
        list_tags,
        create_tags,
        |State(s): State<AppState>, Ctx(c): Ctx, Path((ns, n)): Path<(String, String)>| async move {
            get_one(&TAGS, &s, &c, &ns, &n).await
        }
    );
    routes[1].1 = std::mem::take(&mut routes[1].1).post(create_tag);
    routes
}

/// `GET …/objects`: every object (Glance validates the paging parameters but does not page).
async fn list_objects(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(ns): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let params = query_pairs(query.as_deref());
    if let Some(raw) = param(&params, "limit") {
        parse_limit(raw, false)?;
    }
    parse_sort_dir(&params)?;
    check_visibility_param(&params)?;
    let ns = OBJECTS.namespace(&state, &ctx, &ns, OBJECTS.list).await?;
    let objects = state.db.list_items(&ns, ItemKind::Object, None).await?;
    let list: Vec<Value> = objects.iter().map(|o| object_json(&ns, o, true)).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"objects": list, "schema": "v2/schemas/metadefs/objects"}),
    ))
}

/// `GET …/properties`: a map by name.
async fn list_properties(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(ns): Path<String>,
) -> Result<Response, ApiError> {
    let ns = PROPERTIES
        .namespace(&state, &ctx, &ns, PROPERTIES.list)
        .await?;
    let props = state.db.list_items(&ns, ItemKind::Property, None).await?;
    let map: Map<String, Value> = props
        .iter()
        .map(|p| (p.name.clone(), Value::Object(coerce_property(&p.body))))
        .collect();
    Ok(json_response(StatusCode::OK, &json!({"properties": map})))
}

/// `GET …/properties/{name}`; with `?resource_type=` the name carries that association's
/// prefix, which is taken off before the lookup.
async fn show_property(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path((ns, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let params = query_pairs(query.as_deref());
    let ns = PROPERTIES
        .namespace(&state, &ctx, &ns, PROPERTIES.get)
        .await?;
    let mut lookup = name.clone();
    if let Some(rt) = param(&params, "resource_type").filter(|rt| !rt.is_empty()) {
        let known = state
            .db
            .list_resource_types()
            .await?
            .iter()
            .any(|t| t.name == rt);
        if !known {
            return Err(ApiError::not_found(format!(
                "The metadata definition resource-type with name={rt}, was not found."
            )));
        }
        let assoc = state.db.associations_of_one(&ns).await?;
        let Some(a) = assoc.iter().find(|a| a.resource_type == rt) else {
            return Err(ApiError::not_found(format!(
                "The metadata definition resource-type association of resource-type={rt} to \
                 namespace={}, was not found.",
                ns.namespace
            )));
        };
        match a.prefix.as_deref().and_then(|p| name.strip_prefix(p)) {
            Some(rest) => lookup = rest.to_owned(),
            None => {
                return Err(ApiError::not_found(format!(
                    "Property {name} does not start with the expected resource type \
                     association prefix of '{}'.",
                    a.prefix.as_deref().unwrap_or("None")
                )))
            }
        }
    }
    let item = PROPERTIES.item(&state, &ns, &lookup).await?;
    Ok(json_response(StatusCode::OK, &property_body(&item, true)))
}

/// oslo's truthy strings, for `X-Openstack-Append`.
fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "1" | "t" | "true" | "on" | "y" | "yes"
    )
}

/// `POST …/tags`: replaces the tags, or adds to them with `X-Openstack-Append: True`.
async fn create_tags(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(ns): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let tags = parse_tags(&json_body(&body)?)?;
    let ns = TAGS
        .namespace(&state, &ctx, &ns, Action::AddMetadefTags)
        .await?;
    let append = headers
        .get("x-openstack-append")
        .and_then(|v| v.to_str().ok())
        .is_some_and(truthy);
    // An empty list changes nothing (Glance keeps the tags then, even without append).
    if !tags.is_empty() {
        let now = vela_domain::now_micros();
        state
            .db
            .put_tags(&ns, &tags, append, ITEMS_MAX, now)
            .await?;
    }
    let list: Vec<Value> = tags.iter().map(|t| json!({"name": t.name})).collect();
    Ok(json_response(StatusCode::CREATED, &json!({"tags": list})))
}

/// `POST …/tags/{name}`.
async fn create_tag(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path((ns, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    validate("tag", &json!({ "name": name }))?;
    create(&TAGS, &state, &ctx, &ns, &json!({ "name": name })).await
}

/// `GET …/tags`: by creation, newest first, unless sorted otherwise; `limit` and `marker` (a
/// tag name) page it.
async fn list_tags(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(ns): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let params = query_pairs(query.as_deref());
    let page = parse_page(&params, ITEMS_MAX, ITEMS_MAX, &["name"])?;
    check_visibility_param(&params)?;
    let ns = TAGS.namespace(&state, &ctx, &ns, TAGS.list).await?;
    let tags = if page.limit == 0 {
        Vec::new()
    } else {
        let marker = page.marker.clone().unwrap_or_default();
        state
            .db
            .list_items(&ns, ItemKind::Tag, Some(&page))
            .await
            .map_err(|e| map_item_error(&TAGS, &marker, e))?
    };
    let list: Vec<Value> = tags.iter().map(|t| json!({"name": t.name})).collect();
    Ok(json_response(StatusCode::OK, &json!({"tags": list})))
}
