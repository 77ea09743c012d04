//! `/v2/schemas/*`: the JSON Schema documents clients download and validate against.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};
use vela_domain::ImageRules;

use crate::wire::json_response;
use crate::{ApiError, AppState};

/// Pre-built schema documents.
pub struct Schemas {
    image: Value,
    images: Value,
    member: Value,
    members: Value,
    task: Value,
    tasks: Value,
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

fn with_null(list: &[String]) -> Value {
    let mut v = vec![Value::Null];
    v.extend(list.iter().cloned().map(Value::String));
    Value::Array(v)
}

impl Schemas {
    /// Builds the documents; format enums come from the configured lists.
    pub fn new(rules: &ImageRules) -> Self {
        let mut image = parse(include_str!("../schemas/image.json"));
        image["properties"]["disk_format"]["enum"] = with_null(&rules.disk_formats);
        image["properties"]["container_format"]["enum"] = with_null(&rules.container_formats);
        let images = json!({
            "name": "images",
            "properties": {
                "images": {"items": image.clone(), "type": "array"},
                "first": {"type": "string"},
                "next": {"type": "string"},
                "schema": {"type": "string"},
            },
            "links": [
                {"rel": "first", "href": "{first}"},
                {"rel": "next", "href": "{next}"},
                {"rel": "describedby", "href": "{schema}"},
            ],
        });
        Schemas {
            image,
            images,
            member: parse(include_str!("../schemas/member.json")),
            members: parse(include_str!("../schemas/members.json")),
            task: parse(include_str!("../schemas/task.json")),
            tasks: parse(include_str!("../schemas/tasks.json")),
        }
    }
}

/// `GET /v2/schemas/{name}`.
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let s = &state.schemas;
    let doc = match name.as_str() {
        "image" => &s.image,
        "images" => &s.images,
        "member" => &s.member,
        "members" => &s.members,
        "task" => &s.task,
        "tasks" => &s.tasks,
        _ => return Err(ApiError::not_found("The resource could not be found.")),
    };
    Ok(json_response(StatusCode::OK, doc))
}

/// `GET /v2/schemas/metadefs/{name}`.
pub async fn get_metadef(Path(name): Path<String>) -> Result<Response, ApiError> {
    let doc = vela_domain::metadef::schema::document(&name)
        .ok_or_else(|| ApiError::not_found("The resource could not be found."))?;
    Ok(json_response(StatusCode::OK, doc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_documents_parse() {
        let s = Schemas::new(&ImageRules::default());
        for doc in [&s.image, &s.member, &s.members, &s.task, &s.tasks] {
            assert!(doc.is_object());
        }
        assert_eq!(s.image["properties"]["disk_format"]["enum"][0], Value::Null);
        assert_eq!(s.image["properties"]["disk_format"]["enum"][7], "raw");
    }
}
