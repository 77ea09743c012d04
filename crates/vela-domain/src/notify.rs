//! Notifications: which events a change produces, and their payloads, as Glance's notifier
//! sends them (`image.*`, `image.member.*`, `task.*`).
//!
//! Events are derived from a record before and after a change, so every path that writes an
//! image (the API, imports, the sweeps that end crashed uploads) produces the same events, and
//! the repository can store them in the transaction of the change (the outbox).

use serde_json::{json, Map, Value};

use crate::import::HIDDEN_PROPERTIES;
use crate::member::Member;
use crate::task::{Task, TaskStatus};
use crate::{format_timestamp, Image, ImageStatus, Micros};

/// The properties an import keeps its progress in; `image.prepare` and `image.upload` carry
/// them as lists.
const IMPORTING: &str = "os_glance_importing_to_stores";
const FAILED: &str = "os_glance_failed_import";

/// oslo.messaging's notification priorities that Vela uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Info,
    Error,
}

impl Priority {
    /// The envelope's `priority` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Info => "INFO",
            Priority::Error => "ERROR",
        }
    }

    /// The routing key's suffix (`notifications.info`).
    pub fn topic_suffix(self) -> &'static str {
        match self {
            Priority::Info => "info",
            Priority::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "INFO" => Some(Priority::Info),
            "ERROR" => Some(Priority::Error),
            _ => None,
        }
    }
}

/// One event, before it is given an id, a publisher and a time.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub event_type: &'static str,
    pub priority: Priority,
    pub payload: Value,
}

impl Notice {
    fn info(event_type: &'static str, payload: Value) -> Self {
        Notice {
            event_type,
            priority: Priority::Info,
            payload,
        }
    }
}

/// Which notifications are not sent: `disabled_notifications` holds event types
/// (`image.update`) or groups (`image`, `image.member`, `task`). Glance documents
/// `image.member` as a group but only compares the part before the first dot; here every
/// group it lists works.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    disabled: Vec<String>,
}

impl Filter {
    pub fn new(disabled: Vec<String>) -> Self {
        Filter { disabled }
    }

    /// An entry disables the event it names and every event under it: `image` disables
    /// `image.*` (`image.member.*` included), `image.member` disables `image.member.*`.
    pub fn enabled(&self, event_type: &str) -> bool {
        !self.disabled.iter().any(|d| {
            event_type
                .strip_prefix(d.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        })
    }
}

fn iso(t: Micros) -> Value {
    Value::String(format_timestamp(t))
}

fn list_property(img: &Image, name: &str) -> Value {
    let items: Vec<&str> = img
        .properties
        .get(name)
        .map(|v| v.split(',').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    json!(items)
}

/// Glance's image payload. Locations are left out: they may hold credentials.
pub fn image_payload(img: &Image) -> Value {
    let properties: Map<String, Value> = img
        .properties
        .iter()
        .filter(|(k, _)| !HIDDEN_PROPERTIES.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let tags: Vec<&String> = img.tags.iter().collect();
    json!({
        "id": img.id.as_str(),
        "name": img.name,
        "status": img.status.as_str(),
        "created_at": iso(img.created_at),
        "updated_at": iso(img.updated_at),
        "min_disk": img.min_disk,
        "min_ram": img.min_ram,
        "protected": img.protected,
        "checksum": img.checksum,
        "owner": img.owner,
        "disk_format": img.disk_format,
        "container_format": img.container_format,
        "size": img.size,
        "virtual_size": img.virtual_size,
        "is_public": img.visibility == crate::Visibility::Public,
        "visibility": img.visibility.as_str(),
        "properties": properties,
        "tags": tags,
        "deleted": false,
        "deleted_at": null,
    })
}

fn with_import_lists(img: &Image, mut payload: Value) -> Value {
    if let Value::Object(m) = &mut payload {
        m.insert(IMPORTING.into(), list_property(img, IMPORTING));
        m.insert(FAILED.into(), list_property(img, FAILED));
    }
    payload
}

fn mark_deleted(mut payload: Value, at: Micros) -> Value {
    if let Value::Object(m) = &mut payload {
        m.insert("deleted".into(), Value::Bool(true));
        m.insert("deleted_at".into(), iso(at));
    }
    payload
}

/// The fields of an image a user changes (`image.update`): not the status, the upload
/// bookkeeping or the time of the change.
fn user_fields_differ(a: &Image, b: &Image) -> bool {
    a.name != b.name
        || a.visibility != b.visibility
        || a.protected != b.protected
        || a.os_hidden != b.os_hidden
        || a.owner != b.owner
        || a.container_format != b.container_format
        || a.disk_format != b.disk_format
        || a.min_disk != b.min_disk
        || a.min_ram != b.min_ram
        || a.tags != b.tags
        || a.locations != b.locations
        || visible_properties(a).ne(visible_properties(b))
}

fn visible_properties(img: &Image) -> impl Iterator<Item = (&String, &String)> {
    img.properties
        .iter()
        .filter(|(k, _)| !HIDDEN_PROPERTIES.contains(&k.as_str()))
}

/// The events of a new image.
pub fn image_created(img: &Image) -> Vec<Notice> {
    vec![Notice::info("image.create", image_payload(img))]
}

/// The events of a change from `before` to `after`, in the order Glance sends them.
///
/// - data starts to arrive (`saving`, `importing`): `image.prepare`;
/// - data has arrived: `image.upload`, then `image.activate` when the image became active;
/// - an upload ended without data (back to `queued`): `image.upload` at ERROR priority;
/// - the image was deleted: `image.delete`;
/// - anything a user can change, and deactivation: `image.update`.
///
/// Lease renewals and other bookkeeping produce nothing.
pub fn image_changed(before: &Image, after: &Image) -> Vec<Notice> {
    use ImageStatus::*;
    let mut out = Vec::new();
    let deleted = after.deleted && !before.deleted;
    if deleted || after.status == PendingDelete && before.status != PendingDelete {
        let at = after.deleted_at.unwrap_or(after.updated_at);
        out.push(Notice::info(
            "image.delete",
            mark_deleted(image_payload(after), at),
        ));
        return out;
    }
    let payload = image_payload(after);
    let transition = match (before.status, after.status) {
        (b, Saving | Importing) if b != after.status => {
            out.push(Notice::info(
                "image.prepare",
                with_import_lists(after, payload.clone()),
            ));
            true
        }
        (Saving | Importing, Active) => {
            out.push(Notice::info(
                "image.upload",
                with_import_lists(after, payload.clone()),
            ));
            out.push(Notice::info("image.activate", payload.clone()));
            true
        }
        (Saving | Importing, Queued) => {
            out.push(Notice {
                event_type: "image.upload",
                priority: Priority::Error,
                payload: Value::String(format!(
                    "Failed to upload image data for image {}",
                    after.id
                )),
            });
            true
        }
        (Active, Active)
            if after.locations.len() > before.locations.len()
                && before.properties.get(IMPORTING) != after.properties.get(IMPORTING) =>
        {
            // A copy into one more store (copy-image).
            out.push(Notice::info(
                "image.upload",
                with_import_lists(after, payload.clone()),
            ));
            true
        }
        // Data staged for an import, deactivation and reactivation: saved as updates.
        (b, a)
            if b != a
                && (a == Deactivated || b == Deactivated || (b, a) == (Queued, Uploading)) =>
        {
            out.push(Notice::info("image.update", payload.clone()));
            true
        }
        _ => false,
    };
    if !transition && user_fields_differ(before, after) {
        out.push(Notice::info("image.update", payload));
    }
    out
}

/// `image.send`: a download ended (ERROR priority when fewer bytes went than the image has).
pub fn image_sent(
    img: &Image,
    bytes_sent: u64,
    expected: u64,
    receiver_project: Option<&str>,
    receiver_user: Option<&str>,
) -> Notice {
    Notice {
        event_type: "image.send",
        priority: if bytes_sent == expected {
            Priority::Info
        } else {
            Priority::Error
        },
        payload: json!({
            "bytes_sent": bytes_sent,
            "image_id": img.id.as_str(),
            "owner_id": img.owner,
            "receiver_tenant_id": receiver_project,
            "receiver_user_id": receiver_user,
        }),
    }
}

fn member_payload(m: &Member) -> Value {
    json!({
        "image_id": m.image_id.as_str(),
        "member_id": m.member_id,
        "status": m.status.as_str(),
        "created_at": iso(m.created_at),
        "updated_at": iso(m.updated_at),
        "deleted": false,
        "deleted_at": null,
    })
}

/// `image.member.create`, `image.member.update` or `image.member.delete`.
pub fn member_event(event_type: &'static str, m: &Member, deleted_at: Option<Micros>) -> Notice {
    let payload = member_payload(m);
    Notice::info(
        event_type,
        match deleted_at {
            Some(at) => mark_deleted(payload, at),
            None => payload,
        },
    )
}

/// Glance's task payload: never the input (it may hold credentials), nor the result.
fn task_payload(t: &Task) -> Value {
    json!({
        "id": t.id,
        "type": t.kind.as_str(),
        "status": t.status.as_str(),
        "result": null,
        "owner": t.owner,
        "message": null,
        "expires_at": t.expires_at.map(iso),
        "created_at": iso(t.created_at),
        "updated_at": iso(t.updated_at),
        "deleted": false,
        "deleted_at": null,
    })
}

/// The events of a new task.
pub fn task_created(t: &Task) -> Vec<Notice> {
    vec![Notice::info("task.create", task_payload(t))]
}

/// The events of a task's status change: `task.run` and `task.processing` when it starts,
/// `task.success` or `task.failure` when it ends.
pub fn task_changed(before: &Task, after: &Task) -> Vec<Notice> {
    if before.status == after.status {
        return Vec::new();
    }
    let payload = task_payload(after);
    match after.status {
        TaskStatus::Processing => vec![
            Notice::info("task.run", payload.clone()),
            Notice::info("task.processing", payload),
        ],
        TaskStatus::Success => vec![Notice::info("task.success", payload)],
        TaskStatus::Failure => vec![Notice::info("task.failure", payload)],
        TaskStatus::Pending => Vec::new(),
    }
}

/// An envelope's inner message as oslo.messaging's `messagingv2` driver writes it: the
/// consumer's `metadata` (`message_id`, `timestamp`) and the event, as JSON text. The
/// notifier's context is empty, as Glance's is, so no `_context_*` keys.
pub fn message(notice: &Notice, publisher_id: &str, message_id: &str, at: Micros) -> String {
    #[derive(serde::Serialize)]
    struct Message<'a> {
        message_id: &'a str,
        publisher_id: &'a str,
        event_type: &'a str,
        priority: &'a str,
        payload: &'a Value,
        timestamp: String,
    }
    let timestamp = chrono::DateTime::from_timestamp_micros(at)
        .unwrap_or_default()
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string();
    let m = Message {
        message_id,
        publisher_id,
        event_type: notice.event_type,
        priority: notice.priority.as_str(),
        payload: &notice.payload,
        timestamp,
    };
    // Serializing a Value and strings cannot fail.
    serde_json::to_string(&m).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ImageId;

    fn image() -> Image {
        let mut img = Image::new(
            ImageId::generate(),
            Some("p1".into()),
            1_700_000_000_000_000,
        );
        img.name = Some("cirros".into());
        img
    }

    fn types(n: &[Notice]) -> Vec<&str> {
        n.iter().map(|n| n.event_type).collect()
    }

    #[test]
    fn upload_cycle() {
        let queued = image();
        let mut saving = queued.clone();
        saving.status = ImageStatus::Saving;
        saving.upload_lease_until = Some(5);
        assert_eq!(types(&image_changed(&queued, &saving)), ["image.prepare"]);
        let mut renewed = saving.clone();
        renewed.upload_lease_until = Some(9);
        assert!(image_changed(&saving, &renewed).is_empty());
        let mut active = saving.clone();
        active.status = ImageStatus::Active;
        active.size = Some(3);
        assert_eq!(
            types(&image_changed(&saving, &active)),
            ["image.upload", "image.activate"]
        );
        let failed = image_changed(&saving, &queued);
        assert_eq!(failed[0].priority, Priority::Error);
        let mut deleted = active.clone();
        deleted.deleted = true;
        deleted.deleted_at = Some(1_700_000_100_000_000);
        let d = image_changed(&active, &deleted);
        assert_eq!(types(&d), ["image.delete"]);
        assert_eq!(d[0].payload["deleted"], true);
        assert_eq!(d[0].payload["deleted_at"], "2023-11-14T22:15:00Z");
    }

    #[test]
    fn updates_and_payload() {
        let a = image();
        let mut b = a.clone();
        b.tags.insert("t".into());
        b.properties
            .insert(crate::import::STAGED_DATA.into(), "file:///x".into());
        let n = image_changed(&a, &b);
        assert_eq!(types(&n), ["image.update"]);
        let p = &n[0].payload;
        assert_eq!(p["tags"], json!(["t"]));
        assert_eq!(p["properties"], json!({}));
        assert_eq!(p["is_public"], false);
        assert_eq!(p["created_at"], "2023-11-14T22:13:20Z");
        assert!(p.get("locations").is_none());
    }

    #[test]
    fn filter() {
        let f = Filter::new(vec!["image.update".into(), "task".into()]);
        assert!(!f.enabled("image.update"));
        assert!(f.enabled("image.upload"));
        assert!(!f.enabled("task.success"));
        assert!(f.enabled("image.member.create"));
        let g = Filter::new(vec!["image".into()]);
        assert!(!g.enabled("image.member.create"));
        let m = Filter::new(vec!["image.member".into(), "image.up".into()]);
        assert!(!m.enabled("image.member.delete"));
        assert!(m.enabled("image.update"));
        assert!(m.enabled("image.upload"));
    }
}
