//! Notifications: which events a change produces, and their payloads, as Glance's notifier
//! sends them (`image.*`, `image.member.*`, `task.*`).
//!
//! Events are derived from a record before and after a change, so every path that writes an
//! image (the API, imports, the sweeps that end crashed uploads) produces the same events, and
//! the repository can store them in the transaction of the change (the outbox).

use serde::Serialize;
use serde_json::json;

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
    /// The payload, JSON text: serialized once, straight from the record, since a write
    /// stores it in its transaction.
    pub payload: String,
}

impl Notice {
    fn new(event_type: &'static str, priority: Priority, payload: &impl Serialize) -> Self {
        Notice {
            event_type,
            priority,
            payload: to_json(payload),
        }
    }

    fn info(event_type: &'static str, payload: &impl Serialize) -> Self {
        Notice::new(event_type, Priority::Info, payload)
    }
}

/// JSON text of a payload (records and strings serialize without fail).
fn to_json(v: &impl Serialize) -> String {
    let mut out = Vec::with_capacity(1024);
    match serde_json::to_writer(&mut out, v) {
        Ok(()) => String::from_utf8(out).unwrap_or_default(),
        Err(_) => "null".to_owned(),
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

/// A property that holds a comma-separated list, as a list.
fn list_property<'a>(img: &'a Image, name: &str) -> Vec<&'a str> {
    img.properties
        .get(name)
        .map(|v| v.split(',').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default()
}

/// The properties a payload shows (not the ones Vela keeps for itself).
struct VisibleProperties<'a>(&'a Image);

impl Serialize for VisibleProperties<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(visible_properties(self.0))
    }
}

/// Glance's image payload. Locations are left out: they may hold credentials.
#[derive(Serialize)]
struct ImagePayload<'a> {
    id: &'a str,
    name: &'a Option<String>,
    status: &'a str,
    created_at: String,
    updated_at: String,
    min_disk: i64,
    min_ram: i64,
    protected: bool,
    checksum: &'a Option<String>,
    owner: &'a Option<String>,
    disk_format: &'a Option<String>,
    container_format: &'a Option<String>,
    size: Option<i64>,
    virtual_size: Option<i64>,
    is_public: bool,
    visibility: &'a str,
    properties: VisibleProperties<'a>,
    tags: &'a std::collections::BTreeSet<String>,
    deleted: bool,
    deleted_at: Option<String>,
    /// The import's progress lists, in `image.prepare` and `image.upload`.
    #[serde(skip_serializing_if = "Option::is_none")]
    os_glance_importing_to_stores: Option<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    os_glance_failed_import: Option<Vec<&'a str>>,
}

impl<'a> ImagePayload<'a> {
    fn of(img: &'a Image) -> Self {
        ImagePayload {
            id: img.id.as_str(),
            name: &img.name,
            status: img.status.as_str(),
            created_at: format_timestamp(img.created_at),
            updated_at: format_timestamp(img.updated_at),
            min_disk: img.min_disk,
            min_ram: img.min_ram,
            protected: img.protected,
            checksum: &img.checksum,
            owner: &img.owner,
            disk_format: &img.disk_format,
            container_format: &img.container_format,
            size: img.size,
            virtual_size: img.virtual_size,
            is_public: img.visibility == crate::Visibility::Public,
            visibility: img.visibility.as_str(),
            properties: VisibleProperties(img),
            tags: &img.tags,
            deleted: false,
            deleted_at: None,
            os_glance_importing_to_stores: None,
            os_glance_failed_import: None,
        }
    }

    fn with_import_lists(img: &'a Image) -> Self {
        ImagePayload {
            os_glance_importing_to_stores: Some(list_property(img, IMPORTING)),
            os_glance_failed_import: Some(list_property(img, FAILED)),
            ..ImagePayload::of(img)
        }
    }
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
    vec![Notice::info("image.create", &ImagePayload::of(img))]
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
        let payload = ImagePayload {
            deleted: true,
            deleted_at: Some(format_timestamp(at)),
            ..ImagePayload::of(after)
        };
        out.push(Notice::info("image.delete", &payload));
        return out;
    }
    // Serialized only for the events the change produces.
    let payload = || ImagePayload::of(after);
    let with_lists = || ImagePayload::with_import_lists(after);
    let transition = match (before.status, after.status) {
        (b, Saving | Importing) if b != after.status => {
            out.push(Notice::info("image.prepare", &with_lists()));
            true
        }
        (Saving | Importing, Active) => {
            out.push(Notice::info("image.upload", &with_lists()));
            out.push(Notice::info("image.activate", &payload()));
            true
        }
        (Saving | Importing, Queued) => {
            out.push(Notice::new(
                "image.upload",
                Priority::Error,
                &format!("Failed to upload image data for image {}", after.id),
            ));
            true
        }
        (Active, Active)
            if after.locations.len() > before.locations.len()
                && before.properties.get(IMPORTING) != after.properties.get(IMPORTING) =>
        {
            // A copy into one more store (copy-image).
            out.push(Notice::info("image.upload", &with_lists()));
            true
        }
        // Data staged for an import, deactivation and reactivation: saved as updates.
        (b, a)
            if b != a
                && (a == Deactivated || b == Deactivated || (b, a) == (Queued, Uploading)) =>
        {
            out.push(Notice::info("image.update", &payload()));
            true
        }
        _ => false,
    };
    if !transition && user_fields_differ(before, after) {
        out.push(Notice::info("image.update", &payload()));
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
    let priority = if bytes_sent == expected {
        Priority::Info
    } else {
        Priority::Error
    };
    let payload = json!({
        "bytes_sent": bytes_sent,
        "image_id": img.id.as_str(),
        "owner_id": img.owner,
        "receiver_tenant_id": receiver_project,
        "receiver_user_id": receiver_user,
    });
    Notice::new("image.send", priority, &payload)
}

/// `image.member.create`, `image.member.update` or `image.member.delete`.
pub fn member_event(event_type: &'static str, m: &Member, deleted_at: Option<Micros>) -> Notice {
    let payload = json!({
        "image_id": m.image_id.as_str(),
        "member_id": m.member_id,
        "status": m.status.as_str(),
        "created_at": format_timestamp(m.created_at),
        "updated_at": format_timestamp(m.updated_at),
        "deleted": deleted_at.is_some(),
        "deleted_at": deleted_at.map(format_timestamp),
    });
    Notice::info(event_type, &payload)
}

/// Glance's task payload: never the input (it may hold credentials), nor the result.
fn task_payload(t: &Task) -> serde_json::Value {
    json!({
        "id": t.id,
        "type": t.kind.as_str(),
        "status": t.status.as_str(),
        "result": null,
        "owner": t.owner,
        "message": null,
        "expires_at": t.expires_at.map(format_timestamp),
        "created_at": format_timestamp(t.created_at),
        "updated_at": format_timestamp(t.updated_at),
        "deleted": false,
        "deleted_at": null,
    })
}

/// The events of a new task.
pub fn task_created(t: &Task) -> Vec<Notice> {
    vec![Notice::info("task.create", &task_payload(t))]
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
            Notice::info("task.run", &payload),
            Notice::info("task.processing", &payload),
        ],
        TaskStatus::Success => vec![Notice::info("task.success", &payload)],
        TaskStatus::Failure => vec![Notice::info("task.failure", &payload)],
        TaskStatus::Pending => Vec::new(),
    }
}

/// An envelope's inner message as oslo.messaging's `messagingv2` driver writes it: the
/// consumer's `metadata` (`message_id`, `timestamp`) and the event, as JSON text. The
/// notifier's context is empty, as Glance's is, so no `_context_*` keys.
pub fn message(notice: &Notice, publisher_id: &str, message_id: &str, at: Micros) -> String {
    #[derive(Serialize)]
    struct Head<'a> {
        message_id: &'a str,
        publisher_id: &'a str,
        event_type: &'a str,
        priority: &'a str,
        timestamp: String,
    }
    let head = Head {
        message_id,
        publisher_id,
        event_type: notice.event_type,
        priority: notice.priority.as_str(),
        timestamp: crate::format_utc(at, ' ', true),
    };
    // The head's object, then the payload (already JSON) as its last member.
    let mut out = Vec::with_capacity(notice.payload.len() + 256);
    if serde_json::to_writer(&mut out, &head).is_err() || out.pop() != Some(b'}') {
        return String::new();
    }
    out.extend_from_slice(b",\"payload\":");
    out.extend_from_slice(notice.payload.as_bytes());
    out.push(b'}');
    String::from_utf8(out).unwrap_or_default()
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

    fn payload(n: &Notice) -> serde_json::Value {
        serde_json::from_str(&n.payload).unwrap()
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
        assert_eq!(payload(&d[0])["deleted"], true);
        assert_eq!(payload(&d[0])["deleted_at"], "2023-11-14T22:15:00Z");
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
        let p = &payload(&n[0]);
        assert_eq!(p["tags"], json!(["t"]));
        assert_eq!(p["properties"], json!({}));
        assert_eq!(p["is_public"], false);
        assert_eq!(p["created_at"], "2023-11-14T22:13:20Z");
        assert!(p.get("locations").is_none());
    }

    #[test]
    fn messages_and_payloads_are_json() {
        let mut queued = image();
        queued
            .properties
            .insert("os_distro".into(), "cirros".into());
        queued
            .properties
            .insert(crate::import::STAGED_DATA.into(), "file:///x".into());
        let mut importing = queued.clone();
        importing.status = ImageStatus::Importing;
        importing.properties.insert(IMPORTING.into(), "a,b".into());
        let n = image_changed(&queued, &importing);
        assert_eq!(types(&n), ["image.prepare"]);
        let m: serde_json::Value =
            serde_json::from_str(&message(&n[0], "image.node", "m-1", 1_700_000_123_456_789))
                .unwrap();
        assert_eq!(m["message_id"], "m-1");
        assert_eq!(m["publisher_id"], "image.node");
        assert_eq!(m["event_type"], "image.prepare");
        assert_eq!(m["priority"], "INFO");
        assert_eq!(m["timestamp"], "2023-11-14 22:15:23.456789");
        let p = &m["payload"];
        assert_eq!(p["status"], "importing");
        assert_eq!(p["name"], "cirros");
        assert_eq!(p["size"], json!(null));
        assert_eq!(p[IMPORTING], json!(["a", "b"]));
        assert_eq!(p[FAILED], json!([]));
        assert_eq!(
            p["properties"],
            json!({"os_distro": "cirros", IMPORTING: "a,b"})
        );
        assert_eq!(p["deleted_at"], json!(null));
        // Only prepare and upload carry the lists.
        assert!(payload(&image_created(&queued)[0]).get(IMPORTING).is_none());
        // A failed upload's payload is a sentence.
        let mut saving = queued.clone();
        saving.status = ImageStatus::Saving;
        let failed = &image_changed(&saving, &queued)[0];
        assert_eq!(
            payload(failed),
            json!(format!(
                "Failed to upload image data for image {}",
                queued.id
            ))
        );
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
