//! The few calls of Cinder's v3 API the store makes, with a Keystone token renewed before it
//! expires and once more when Cinder refuses it.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::CinderConfig;
use crate::remote::{check_status, keystone_login, read_bounded, unavailable as unavailable_in};
use crate::StoreError;

/// Microversion of every call: the attachments API with an attach mode.
const MICROVERSION: &str = "volume 3.54";
/// Largest Cinder answer read.
const MAX_ANSWER: usize = 4 << 20;
/// Longest single request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Most volumes one listing reads (garbage collection), in pages of `PAGE`.
const MAX_LISTED: usize = 100_000;
const PAGE: usize = 500;
/// An attachment `reserved` this long is an attach that failed half way (Cinder reserved the
/// volume, then could not connect it): it holds a volume that is not multi-attach, so it goes.
const STALE_RESERVATION: Duration = Duration::from_secs(10);
/// A token is renewed this long before Keystone says it expires.
const TOKEN_MARGIN: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

pub(super) fn unavailable(e: impl std::fmt::Display) -> StoreError {
    unavailable_in("Cinder", e)
}

/// A volume as Cinder describes it.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Volume {
    pub id: String,
    pub status: String,
    /// GiB.
    pub size: u64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub metadata: HashMap<String, String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
}

impl Volume {
    /// Last change (Cinder's naive UTC timestamps).
    pub fn modified(&self) -> SystemTime {
        self.updated_at
            .as_deref()
            .or(self.created_at.as_deref())
            .and_then(|t| chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f").ok())
            .map_or(SystemTime::UNIX_EPOCH, |t| t.and_utc().into())
    }
}

/// How to reach an attached volume's data.
#[derive(Debug, Clone)]
pub(super) enum Connection {
    /// `driver_volume_type: rbd`: pool and image, monitors, RADOS user.
    Rbd {
        pool: String,
        image: String,
        /// `host:port,…` for librados' `mon_host`.
        monitors: String,
        user: String,
        auth_enabled: bool,
    },
}

impl Connection {
    fn parse(info: &Value) -> Result<Connection, StoreError> {
        let kind = info["driver_volume_type"].as_str().unwrap_or_default();
        if kind != "rbd" {
            return Err(StoreError::Config(format!(
                "Cinder attaches this volume with the '{kind}' connection type; Vela reads \
                 only 'rbd' connections"
            )));
        }
        // The attachments API flattens the connection (`data`'s keys beside
        // `driver_volume_type`); `os-initialize_connection` nests them under `data`.
        let data = if info["data"].is_object() {
            &info["data"]
        } else {
            info
        };
        let (pool, image) = data["name"]
            .as_str()
            .and_then(|n| n.split_once('/'))
            .filter(|(p, i)| !p.is_empty() && !i.is_empty())
            .ok_or_else(|| unavailable("an rbd connection without a pool/image name"))?;
        let strings = |k: &str| -> Vec<String> {
            data[k]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        };
        let monitors = strings("hosts")
            .iter()
            .zip(strings("ports"))
            .map(|(h, p)| {
                if h.contains(':') {
                    format!("[{h}]:{p}")
                } else {
                    format!("{h}:{p}")
                }
            })
            .collect::<Vec<_>>()
            .join(",");
        if monitors.is_empty() {
            return Err(unavailable("an rbd connection without monitors"));
        }
        Ok(Connection::Rbd {
            pool: pool.to_owned(),
            image: image.to_owned(),
            monitors,
            user: data["auth_username"]
                .as_str()
                .filter(|u| !u.is_empty())
                .unwrap_or("admin")
                .to_owned(),
            auth_enabled: data["auth_enabled"].as_bool().unwrap_or(true),
        })
    }
}

/// An attachment Vela made, with its connection.
#[derive(Debug, Clone)]
pub(super) struct Attachment {
    pub id: String,
    pub connection: Connection,
}

#[derive(Clone)]
struct Session {
    token: String,
    /// The project's endpoint, without a trailing slash.
    base: String,
    renew_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A Cinder client for one project.
pub(super) struct CinderApi {
    cfg: CinderConfig,
    http: reqwest::Client,
    session: Mutex<Option<Session>>,
}

impl CinderApi {
    pub fn new(cfg: CinderConfig) -> Result<Self, StoreError> {
        let http = crate::remote::client(cfg.insecure, cfg.ca_file.as_deref())?;
        Ok(CinderApi {
            cfg,
            http,
            session: Mutex::new(None),
        })
    }

    pub fn config(&self) -> &CinderConfig {
        &self.cfg
    }

    async fn session(&self, renew: bool) -> Result<Session, StoreError> {
        let mut slot = self.session.lock().await;
        let stale = |s: &Session| s.renew_at.is_some_and(|t| chrono::Utc::now() >= t);
        if let Some(s) = slot.as_ref().filter(|s| !renew && !stale(s)) {
            return Ok(s.clone());
        }
        let t = keystone_login(&self.http, &self.cfg.auth, &["volumev3", "block-storage"]).await?;
        let base = match &self.cfg.endpoint {
            Some(template) => template.replace("%(project_id)s", &t.project_id),
            None => t
                .endpoint
                .ok_or_else(|| unavailable("no volumev3 endpoint in the Keystone catalog"))?,
        };
        let s = Session {
            token: t.token,
            base: base.trim_end_matches('/').to_owned(),
            renew_at: t.expires_at.map(|e| e - TOKEN_MARGIN),
        };
        *slot = Some(s.clone());
        Ok(s)
    }

    /// One call to `path` (below the project's endpoint); the status and the JSON answer
    /// (`Null` when empty). A refused token is renewed once.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), StoreError> {
        let mut renew = false;
        loop {
            let s = self.session(renew).await?;
            let mut rb = self
                .http
                .request(method.clone(), format!("{}{path}", s.base))
                .header("x-auth-token", &s.token)
                .header("openstack-api-version", MICROVERSION)
                .header("accept", "application/json")
                .timeout(REQUEST_TIMEOUT);
            if let Some(b) = body {
                rb = rb.json(b);
            }
            let resp = rb.send().await.map_err(unavailable)?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && !renew {
                renew = true;
                continue;
            }
            let bytes = read_bounded(resp, MAX_ANSWER, "Cinder").await?;
            let v = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap_or(Value::Null)
            };
            return Ok((status, v));
        }
    }

    /// As [`CinderApi::call`], with any failure as an error (Cinder's message included).
    async fn call_ok(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Value, StoreError> {
        let (status, v) = self.call(method, path, body).await?;
        if status.is_success() {
            return Ok(v);
        }
        let what = match fault_message(&v) {
            Some(m) => format!("{what} ({m})"),
            None => what.to_owned(),
        };
        check_status("Cinder", status, &what).map(|()| v)
    }

    /// Creates a volume of `size_gib` with `metadata`; its id.
    pub async fn create_volume(
        &self,
        name: &str,
        size_gib: u64,
        metadata: &Value,
    ) -> Result<String, StoreError> {
        let mut volume = json!({"name": name, "size": size_gib, "metadata": metadata});
        if let Some(t) = &self.cfg.volume_type {
            volume["volume_type"] = json!(t);
        }
        let (status, v) = self
            .call(Method::POST, "/volumes", Some(&json!({ "volume": volume })))
            .await?;
        match status {
            s if s.is_success() => v["volume"]["id"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| unavailable("a created volume without an id")),
            // An unknown volume type (404) or another refused request: the settings.
            StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST => Err(StoreError::Config(format!(
                "Cinder refused to create a volume: {}",
                fault_message(&v).unwrap_or_default()
            ))),
            s => check_status(
                "Cinder",
                s,
                &format!(
                    "creating a volume ({})",
                    fault_message(&v).unwrap_or_default()
                ),
            )
            .map(|()| String::new()),
        }
    }

    /// The volume, or `None` when Cinder has none of that id.
    pub async fn volume(&self, id: &str) -> Result<Option<Volume>, StoreError> {
        let (status, v) = self
            .call(Method::GET, &format!("/volumes/{id}"), None)
            .await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        check_status("Cinder", status, &format!("volume {id}"))?;
        serde_json::from_value(v["volume"].clone())
            .map(Some)
            .map_err(unavailable)
    }

    /// Waits until the volume is in one of `want`; `error*` states and the timeout are errors.
    pub async fn wait_status(&self, id: &str, want: &[&str]) -> Result<Volume, StoreError> {
        let deadline = Instant::now() + self.cfg.state_timeout;
        let mut pause = Duration::from_millis(50);
        loop {
            let vol = self
                .volume(id)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("Cinder volume {id}")))?;
            if want.contains(&vol.status.as_str()) {
                return Ok(vol);
            }
            if vol.status.starts_with("error") {
                return Err(unavailable(format!(
                    "volume {id} is in status '{}'",
                    vol.status
                )));
            }
            if Instant::now() >= deadline {
                return Err(unavailable(format!(
                    "volume {id} is still '{}' after {} s",
                    vol.status,
                    self.cfg.state_timeout.as_secs()
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// Waits until the volume is gone.
    pub async fn wait_gone(&self, id: &str) -> Result<(), StoreError> {
        let deadline = Instant::now() + self.cfg.state_timeout;
        let mut pause = Duration::from_millis(50);
        loop {
            let Some(vol) = self.volume(id).await? else {
                return Ok(());
            };
            if vol.status == "error_deleting" || Instant::now() >= deadline {
                return Err(unavailable(format!(
                    "volume {id} is still there ('{}') after its delete",
                    vol.status
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// Attaches the volume to Vela's host in `mode` (`rw`, `ro`) and completes the attachment.
    pub async fn attach(&self, id: &str, mode: &str) -> Result<Attachment, StoreError> {
        let connector = json!({
            "platform": "x86_64", "os_type": "linux", "host": self.cfg.connector_host,
            "ip": "127.0.0.1", "initiator": "", "multipath": false, "do_local_attach": false,
        });
        let body = json!({"attachment": {
            "volume_uuid": id, "connector": connector, "mode": mode}});
        let v = self
            .call_ok(
                Method::POST,
                "/attachments",
                Some(&body),
                &format!("attaching volume {id}"),
            )
            .await?;
        let att_id = v["attachment"]["id"]
            .as_str()
            .ok_or_else(|| unavailable("an attachment without an id"))?
            .to_owned();
        let connection = Connection::parse(&v["attachment"]["connection_info"]);
        let completed = match &connection {
            Ok(_) => {
                self.call_ok(
                    Method::POST,
                    &format!("/attachments/{att_id}/action"),
                    Some(&json!({"os-complete": null})),
                    "completing an attachment",
                )
                .await
            }
            Err(_) => Ok(Value::Null),
        };
        match connection.and_then(|c| completed.map(|_| c)) {
            Ok(connection) => Ok(Attachment {
                id: att_id,
                connection,
            }),
            Err(e) => {
                if let Err(d) = self.detach(&att_id).await {
                    tracing::warn!(volume = id, error = %d, "could not remove an attachment");
                }
                Err(e)
            }
        }
    }

    /// Attaches like [`CinderApi::attach`], trying again for up to `patience` while the volume is
    /// busy: another attachment holds it (it is not multi-attach), or one is still going away.
    /// An attachment left `reserved` for [`STALE_RESERVATION`] is removed on the way.
    pub async fn attach_when_free(
        &self,
        id: &str,
        mode: &str,
        patience: Duration,
    ) -> Result<Attachment, StoreError> {
        let deadline = Instant::now() + patience;
        let mut reserved_since: HashMap<String, Instant> = HashMap::new();
        loop {
            match self.attach(id, mode).await {
                Ok(a) => return Ok(a),
                Err(StoreError::Unavailable(m)) if Instant::now() < deadline => {
                    tracing::debug!(volume = id, error = %m, "volume busy, attaching again");
                    if let Err(e) = self
                        .remove_stale_reservations(id, &mut reserved_since)
                        .await
                    {
                        tracing::debug!(volume = id, error = %e, "could not look for stale attachments");
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Removes the volume's attachments that `reserved_since` has seen `reserved` for longer
    /// than [`STALE_RESERVATION`]; records the ones newly seen.
    async fn remove_stale_reservations(
        &self,
        id: &str,
        reserved_since: &mut HashMap<String, Instant>,
    ) -> Result<(), StoreError> {
        let now = Instant::now();
        let reserved: Vec<String> = self
            .list_attachments(id)
            .await?
            .into_iter()
            .filter(|a| a["status"] == "reserved")
            .filter_map(|a| a["id"].as_str().map(str::to_owned))
            .collect();
        reserved_since.retain(|att, _| reserved.contains(att));
        for att in reserved {
            let since = *reserved_since.entry(att.clone()).or_insert(now);
            if now.duration_since(since) >= STALE_RESERVATION {
                tracing::warn!(
                    volume = id,
                    attachment = att,
                    "removing an attachment left reserved"
                );
                self.detach(&att).await?;
                reserved_since.remove(&att);
            }
        }
        Ok(())
    }

    /// Removes an attachment (a missing one is fine).
    pub async fn detach(&self, attachment_id: &str) -> Result<(), StoreError> {
        let (status, v) = self
            .call(
                Method::DELETE,
                &format!("/attachments/{attachment_id}"),
                None,
            )
            .await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(());
        }
        check_status(
            "Cinder",
            status,
            &format!(
                "removing attachment {attachment_id} ({})",
                fault_message(&v).unwrap_or_default()
            ),
        )
    }

    /// The ids of the volume's attachments (any state, reserved ones included).
    pub async fn attachments_of(&self, id: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .list_attachments(id)
            .await?
            .into_iter()
            .filter_map(|a| a["id"].as_str().map(str::to_owned))
            .collect())
    }

    /// The volume's attachments as Cinder summarises them (`id`, `status`, ...).
    async fn list_attachments(&self, id: &str) -> Result<Vec<Value>, StoreError> {
        let mut v = self
            .call_ok(
                Method::GET,
                &format!("/attachments?volume_id={id}"),
                None,
                "listing attachments",
            )
            .await?;
        Ok(match v["attachments"].take() {
            Value::Array(all) => all,
            _ => Vec::new(),
        })
    }

    /// Grows a detached volume to `size_gib` and waits until it is available again.
    pub async fn extend(&self, id: &str, size_gib: u64) -> Result<(), StoreError> {
        self.call_ok(
            Method::POST,
            &format!("/volumes/{id}/action"),
            Some(&json!({"os-extend": {"new_size": size_gib}})),
            &format!("extending volume {id}"),
        )
        .await?;
        let vol = self.wait_status(id, &["available"]).await?;
        if vol.size < size_gib {
            return Err(unavailable(format!(
                "volume {id} is {} GiB after extending it to {size_gib} GiB",
                vol.size
            )));
        }
        Ok(())
    }

    /// Sets (merges) metadata items.
    pub async fn set_metadata(&self, id: &str, metadata: &Value) -> Result<(), StoreError> {
        self.call_ok(
            Method::POST,
            &format!("/volumes/{id}/metadata"),
            Some(&json!({ "metadata": metadata })),
            &format!("setting the metadata of volume {id}"),
        )
        .await
        .map(drop)
    }

    /// Asks Cinder to delete the volume; false when it has no such volume.
    pub async fn delete_volume(&self, id: &str) -> Result<bool, StoreError> {
        let (status, v) = self
            .call(Method::DELETE, &format!("/volumes/{id}"), None)
            .await?;
        match status {
            StatusCode::NOT_FOUND => Ok(false),
            StatusCode::BAD_REQUEST => Err(StoreError::InUse(format!(
                "Cinder will not delete volume {id}: {}",
                fault_message(&v).unwrap_or_default()
            ))),
            s => check_status("Cinder", s, &format!("deleting volume {id}")).map(|()| true),
        }
    }

    /// The project's volumes named `name`, or all of them (paged; at most `MAX_LISTED`).
    pub async fn volumes(&self, name: Option<&str>) -> Result<Vec<Volume>, StoreError> {
        let mut out: Vec<Volume> = Vec::new();
        loop {
            let query = {
                let mut q = form_urlencoded::Serializer::new(String::new());
                q.append_pair("limit", &PAGE.to_string());
                if let Some(n) = name {
                    q.append_pair("name", n);
                }
                if let Some(last) = out.last() {
                    q.append_pair("marker", &last.id);
                }
                q.finish()
            };
            let v = self
                .call_ok(
                    Method::GET,
                    &format!("/volumes/detail?{query}"),
                    None,
                    "listing volumes",
                )
                .await?;
            let page: Vec<Volume> =
                serde_json::from_value(v["volumes"].clone()).map_err(unavailable)?;
            let n = page.len();
            out.extend(page);
            if n < PAGE || out.len() >= MAX_LISTED {
                return Ok(out);
            }
        }
    }
}

/// The message of a Cinder fault body (`{"badRequest": {"message": …}}`).
fn fault_message(v: &Value) -> Option<String> {
    v.as_object()?
        .values()
        .find_map(|f| f["message"].as_str())
        .map(|m| m.chars().take(300).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rbd_connections_are_read_and_others_refused() {
        let info = json!({"driver_volume_type": "rbd", "data": {
            "name": "volumes/volume-1", "hosts": ["127.0.0.1", "::1"], "ports": ["6789", 3300],
            "auth_enabled": false, "auth_username": null}});
        let Connection::Rbd {
            pool,
            image,
            monitors,
            user,
            auth_enabled,
        } = Connection::parse(&info).unwrap();
        assert_eq!((pool.as_str(), image.as_str()), ("volumes", "volume-1"));
        assert_eq!(monitors, "127.0.0.1:6789,[::1]:3300");
        assert_eq!(user, "admin");
        assert!(!auth_enabled);
        let iscsi = json!({"driver_volume_type": "iscsi", "data": {}});
        assert!(matches!(
            Connection::parse(&iscsi),
            Err(StoreError::Config(_))
        ));
        let flat = json!({"driver_volume_type": "rbd", "name": "p/i", "hosts": ["h"],
            "ports": ["1"], "auth_enabled": true, "auth_username": "glance"});
        let Connection::Rbd { pool, user, .. } = Connection::parse(&flat).unwrap();
        assert_eq!((pool.as_str(), user.as_str()), ("p", "glance"));
        let bad = json!({"driver_volume_type": "rbd", "data": {"name": "noslash"}});
        assert!(Connection::parse(&bad).is_err());
    }

    #[test]
    fn faults_and_timestamps_are_read() {
        let v = json!({"badRequest": {"message": "Invalid volume", "code": 400}});
        assert_eq!(fault_message(&v).as_deref(), Some("Invalid volume"));
        assert_eq!(fault_message(&Value::Null), None);
        let vol: Volume = serde_json::from_value(json!({"id": "x", "status": "available",
            "size": 1, "updated_at": "2026-12-03T20:40:00.000000"}))
        .unwrap();
        assert!(vol.modified() > SystemTime::UNIX_EPOCH);
    }
}
