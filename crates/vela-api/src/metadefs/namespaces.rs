//! Namespaces: list, create (with everything inside), show, replace, delete.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use vela_db::metadefs::NsFilter;
use vela_domain::metadef::{prefix_object, ItemKind, NamespaceDoc, NamespaceFields, NsVisibility};
use vela_domain::policy::{Action, Target};

use super::items::{coerce_property, object_json, property_body};
use super::{
    association_json, check_unprotected, find, namespace_json, param, parse_page, query_pairs,
    viewer, with_links, Missing,
};
use crate::auth::Ctx;
use crate::wire::{base_url, json_body, json_response};
use crate::{ApiError, AppState};

/// `GET /v2/metadefs/namespaces`.
pub async fn list(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let target = Target::project(&ctx);
    state
        .policy
        .enforce(Action::GetMetadefNamespaces, &ctx, &target)?;
    state
        .policy
        .enforce(Action::ListMetadefResourceTypes, &ctx, &target)?;
    let params = query_pairs(query.as_deref());
    let paging = &state.cfg.paging;
    let page = parse_page(
        &params,
        usize::try_from(paging.default_limit).unwrap_or(25),
        usize::try_from(paging.max_limit).unwrap_or(1000),
        &["namespace"],
    )?;
    let visibility = match param(&params, "visibility") {
        None | Some("") => None,
        Some(v) => Some(
            NsVisibility::parse(v)
                .ok_or_else(|| ApiError::bad_request(format!("Invalid visibility value: {v}")))?,
        ),
    };
    let resource_types = param(&params, "resource_types")
        .filter(|v| !v.is_empty())
        .map(|v| v.split(',').map(str::to_owned).collect::<Vec<_>>());
    let filter = NsFilter {
        visibility,
        resource_types,
    };
    if let Some(m) = &page.marker {
        // A marker must be a namespace the caller may see (403 for another project's).
        match state.db.get_namespace(m).await {
            Ok(ns) if !super::visible(&ns, viewer(&state, &ctx)) => {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "Forbidding request, metadata definition namespace={m} is not visible."
                    ),
                ))
            }
            Ok(_) | Err(vela_db::DbError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let found = if page.limit == 0 {
        Vec::new()
    } else {
        state
            .db
            .list_namespaces(viewer(&state, &ctx), &filter, &page)
            .await
            .map_err(|e| match e {
                vela_db::DbError::NotFound => ApiError::not_found(format!(
                    "Metadata definition namespace={} was not found.",
                    page.marker.as_deref().unwrap_or("")
                )),
                other => other.into(),
            })?
    };
    let shown: Vec<_> = found
        .iter()
        .filter(|ns| {
            state
                .policy
                .allows(Action::GetMetadefNamespace, &ctx, &Target::namespace(ns))
        })
        .collect();
    let mut assoc = state.db.associations_of(&shown).await?;
    let items: Vec<Value> = shown
        .iter()
        .map(|ns| {
            let mut m = namespace_json(ns);
            if let Some(list) = assoc.remove(&ns.id) {
                let list: Vec<Value> = list.iter().map(association_json).collect();
                m.insert("resource_type_associations".into(), list.into());
            }
            with_links(m, ns)
        })
        .collect();
    let without_marker: Vec<(String, String)> =
        params.into_iter().filter(|(k, _)| k != "marker").collect();
    let link = |pairs: &[(String, String)]| {
        let q = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        if q.is_empty() {
            "/v2/metadefs/namespaces".to_owned()
        } else {
            format!("/v2/metadefs/namespaces?{q}")
        }
    };
    let mut body = json!({
        "namespaces": items,
        "first": link(&without_marker),
        "schema": "/v2/schemas/metadefs/namespaces",
    });
    if !found.is_empty() && found.len() == page.limit {
        if let Some(last) = found.last() {
            let mut next = without_marker.clone();
            next.push(("marker".into(), last.namespace.clone()));
            body["next"] = link(&next).into();
        }
    }
    Ok(json_response(StatusCode::OK, &body))
}

/// `POST /v2/metadefs/namespaces`: the namespace and whatever it holds, in one transaction.
pub async fn create(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let v = json_body(&body)?;
    let doc = NamespaceDoc::parse(&v)?;
    let target = Target::project(&ctx);
    state
        .policy
        .enforce(Action::AddMetadefNamespace, &ctx, &target)?;
    for (present, action) in [
        (
            !doc.associations.is_empty(),
            Action::AddMetadefResourceTypeAssociation,
        ),
        (!doc.objects.is_empty(), Action::AddMetadefObject),
        (!doc.properties.is_empty(), Action::AddMetadefProperty),
        (!doc.tags.is_empty(), Action::AddMetadefTag),
    ] {
        if present {
            state.policy.enforce(action, &ctx, &target)?;
        }
    }
    let owner = doc.fields.owner.clone().or_else(|| ctx.project_id.clone());
    let ns = state
        .db
        .create_namespace(&doc, owner, vela_domain::now_micros())
        .await?;
    // The response echoes the parts as they were sent.
    let mut m = namespace_json(&ns);
    if let Some(list) = v
        .get("resource_type_associations")
        .and_then(Value::as_array)
    {
        if !list.is_empty() {
            m.insert("resource_type_associations".into(), list.clone().into());
        }
    }
    if !doc.properties.is_empty() {
        let props: Map<String, Value> = doc
            .properties
            .iter()
            .map(|p| (p.name.clone(), Value::Object(coerce_property(&p.body))))
            .collect();
        m.insert("properties".into(), props.into());
    }
    if let Some(list) = v.get("objects").and_then(Value::as_array) {
        if !list.is_empty() {
            m.insert("objects".into(), list.clone().into());
        }
    }
    if !doc.tags.is_empty() {
        let tags: Vec<Value> = doc.tags.iter().map(|t| json!({"name": t.name})).collect();
        m.insert("tags".into(), tags.into());
    }
    let location = format!(
        "{}/v2/metadefs/namespaces/{}",
        base_url(&state, &headers),
        ns.namespace
    );
    let mut resp = json_response(StatusCode::CREATED, &with_links(m, &ns));
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// `GET /v2/metadefs/namespaces/{ns}`: with its associations, properties, objects and tags;
/// `?resource_type=` puts that association's prefix before property names.
pub async fn show(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let ns = find(&state, &ctx, &name, Missing::Show).await?;
    let p = &state.policy;
    p.enforce_on_namespace(Action::GetMetadefNamespace, &ctx, &ns)?;
    for action in [
        Action::ListMetadefResourceTypes,
        Action::GetMetadefObjects,
        Action::GetMetadefProperties,
        Action::GetMetadefTags,
    ] {
        p.enforce_on_namespace(action, &ctx, &ns)?;
    }
    let params = query_pairs(query.as_deref());
    let assoc = state.db.associations_of_one(&ns).await?;
    let prefix = param(&params, "resource_type")
        .filter(|rt| !rt.is_empty())
        .and_then(|rt| assoc.iter().find(|a| a.resource_type == rt))
        .and_then(|a| a.prefix.clone())
        .unwrap_or_default();
    let mut m = namespace_json(&ns);
    if !assoc.is_empty() {
        let list: Vec<Value> = assoc.iter().map(super::association_json).collect();
        m.insert("resource_type_associations".into(), list.into());
    }
    let properties = state.db.list_items(&ns, ItemKind::Property, None).await?;
    if !properties.is_empty() {
        let props: Map<String, Value> = properties
            .iter()
            .map(|p| (format!("{prefix}{}", p.name), property_body(p, false)))
            .collect();
        m.insert("properties".into(), props.into());
    }
    let objects = state.db.list_items(&ns, ItemKind::Object, None).await?;
    if !objects.is_empty() {
        let list: Vec<Value> = objects
            .iter()
            .map(|o| {
                let mut o = o.clone();
                if !prefix.is_empty() {
                    prefix_object(&mut o.body, &prefix);
                }
                object_json(&ns, &o, true)
            })
            .collect();
        m.insert("objects".into(), list.into());
    }
    let mut tags = state.db.list_items(&ns, ItemKind::Tag, None).await?;
    if !tags.is_empty() {
        tags.reverse();
        let list: Vec<Value> = tags.iter().map(|t| json!({"name": t.name})).collect();
        m.insert("tags".into(), list.into());
    }
    Ok(json_response(StatusCode::OK, &with_links(m, &ns)))
}

/// `PUT /v2/metadefs/namespaces/{ns}`: replaces the namespace's own fields (a rename
/// included); what it holds stays.
pub async fn update(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let v = json_body(&body)?;
    let fields = NamespaceFields::parse_update(&v)?;
    let mut ns = find(&state, &ctx, &name, Missing::Other).await?;
    state
        .policy
        .enforce_on_namespace(Action::ModifyMetadefNamespace, &ctx, &ns)?;
    ns.namespace = fields.namespace;
    ns.display_name = fields.display_name;
    ns.description = fields.description;
    ns.visibility = fields.visibility.unwrap_or(NsVisibility::Private);
    ns.protected = fields.protected.unwrap_or(false);
    ns.owner = fields.owner.or_else(|| ctx.project_id.clone());
    ns.updated_at = vela_domain::now_micros().max(ns.updated_at);
    state.db.update_namespace(&ns).await?;
    Ok(json_response(
        StatusCode::OK,
        &with_links(namespace_json(&ns), &ns),
    ))
}

/// `DELETE /v2/metadefs/namespaces/{ns}`: the namespace and everything in it.
pub async fn delete(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let ns = find(&state, &ctx, &name, Missing::Other).await?;
    state
        .policy
        .enforce_on_namespace(Action::DeleteMetadefNamespace, &ctx, &ns)?;
    check_unprotected(&ns)?;
    state.db.delete_namespace(&ns.id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
