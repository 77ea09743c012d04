//! Cinder block storage as an image store, as Glance's cinder driver uses it: each image is a
//! volume `image-<image id>` of the store's project, created through Cinder's v3 API with a
//! Keystone token, and its bytes are written and read through an attachment of that volume
//! (Cinder's attachments API, microversion 3.54). Vela supports the `rbd` connection type: the
//! connection names a Ceph pool and RBD image, which librbd opens directly, with no kernel
//! attach (a build with the `rbd` feature). Other connection types (iSCSI, NFS, FC) are refused
//! with a typed error.
//!
//! A volume starts at 1 GiB and grows by 1 GiB (detach, `os-extend`, attach again) while the
//! upload outlasts it. It carries the metadata `glance_image_id`, `image_size` and
//! `vela_upload` (`partial` until every byte is written and flushed, then `complete`), so a
//! half-written volume is never read and garbage collection lists it as partial. Locations
//! are `cinder://<volume id>` (Glance's multi-store form `cinder://<store>/<volume id>` is read
//! too). Every wait for a volume state is bounded by `state_transition_timeout_secs`; a
//! volume that ends in `error` is a typed error.

#[cfg(feature = "rbd")]
mod api;
#[cfg(feature = "rbd")]
mod store;

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[cfg(feature = "rbd")]
pub use store::CinderStore;

use crate::remote::KeystoneAuth;

/// A Cinder store's settings.
#[derive(Debug, Clone)]
pub struct CinderConfig {
    pub auth: KeystoneAuth,
    /// Overrides the catalog's block-storage endpoint; `%(project_id)s` is replaced.
    pub endpoint: Option<String>,
    /// The volume type of new volumes (`None`: Cinder's default type).
    pub volume_type: Option<String>,
    /// Longest wait for a volume to reach a state (created, extended, detached, deleted).
    pub state_timeout: Duration,
    /// ceph.conf for RBD connections (keyrings and client options); the monitors come from
    /// the connection.
    pub ceph_conf: Option<std::path::PathBuf>,
    /// The host name Vela's attachments are made for.
    pub connector_host: String,
    pub insecure: bool,
    pub ca_file: Option<std::path::PathBuf>,
}

/// `[stores.NAME] type = "cinder"` (Glance's `cinder_*` options).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CinderSettings {
    /// Keystone v3 (`cinder_store_auth_address`).
    pub auth_url: String,
    /// The user, password and project whose volumes hold the images
    /// (`cinder_store_user_name`, `cinder_store_password`, `cinder_store_project_name`).
    pub username: String,
    #[serde(default)]
    pub password: vela_domain::Secret,
    pub project_name: String,
    #[serde(default)]
    pub user_domain_name: Option<String>,
    #[serde(default)]
    pub project_domain_name: Option<String>,
    /// Catalog interface of the block-storage endpoint (default `public`).
    #[serde(default)]
    pub interface: Option<String>,
    /// Catalog region (`cinder_os_region_name`; default: the first endpoint).
    #[serde(default)]
    pub region_name: Option<String>,
    /// The Cinder endpoint instead of the catalog's (`cinder_endpoint_template`), e.g.
    /// `http://cinder:8776/v3/%(project_id)s`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Volume type of new volumes (`cinder_volume_type`).
    #[serde(default)]
    pub volume_type: Option<String>,
    /// Seconds a volume may take to change state (`cinder_state_transition_timeout`; default
    /// 300).
    #[serde(default)]
    pub state_transition_timeout_secs: Option<u64>,
    /// ceph.conf for RBD connections (default: none; the monitors come from the connection).
    #[serde(default)]
    pub ceph_conf: Option<std::path::PathBuf>,
    /// Host name given to Cinder for Vela's attachments (default `vela`).
    #[serde(default)]
    pub connector_host: Option<String>,
    /// Do not check Cinder's TLS certificate (`cinder_api_insecure`).
    #[serde(default)]
    pub insecure: bool,
    /// CA bundle (PEM) for Cinder and Keystone (`cinder_ca_certificates_file`).
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
}

impl CinderSettings {
    pub fn check(&self) -> Result<(), String> {
        if self.auth_url.is_empty() || self.username.is_empty() || self.project_name.is_empty() {
            return Err("needs auth_url, username and project_name".into());
        }
        if let Some(e) = &self.endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err("endpoint must be an http(s) URL".into());
            }
        }
        if self.state_transition_timeout_secs == Some(0) {
            return Err("state_transition_timeout_secs must be at least 1".into());
        }
        Ok(())
    }

    pub fn config(&self) -> CinderConfig {
        let or_default = |v: &Option<String>| v.clone().unwrap_or_else(|| "Default".into());
        CinderConfig {
            auth: KeystoneAuth {
                auth_url: self.auth_url.clone(),
                username: self.username.clone(),
                password: self.password.clone(),
                project_name: self.project_name.clone(),
                user_domain_name: or_default(&self.user_domain_name),
                project_domain_name: or_default(&self.project_domain_name),
                interface: self.interface.clone().unwrap_or_else(|| "public".into()),
                region: self.region_name.clone(),
            },
            endpoint: self.endpoint.clone(),
            volume_type: self.volume_type.clone(),
            state_timeout: Duration::from_secs(self.state_transition_timeout_secs.unwrap_or(300)),
            ceph_conf: self.ceph_conf.clone(),
            connector_host: self.connector_host.clone().unwrap_or_else(|| "vela".into()),
            insecure: self.insecure,
            ca_file: self.ca_file.clone(),
        }
    }
}

/// The volume id of a `cinder://[<store>/]<volume id>` location, when `store_id` may read it.
pub fn volume_of(location: &str, store_id: &str) -> Option<String> {
    let rest = location.strip_prefix("cinder://")?;
    let id = match rest.split_once('/') {
        Some((store, id)) if store == store_id => id,
        Some(_) => return None,
        None => rest,
    };
    uuid::Uuid::parse_str(id).ok().map(|u| u.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_name_a_volume() {
        let v = "0b5ad5f5-4a5e-4d39-9c7e-6a3f0f1e2d3c";
        assert_eq!(volume_of(&format!("cinder://{v}"), "c").as_deref(), Some(v));
        assert_eq!(
            volume_of(&format!("cinder://c/{v}"), "c").as_deref(),
            Some(v)
        );
        assert_eq!(volume_of(&format!("cinder://other/{v}"), "c"), None);
        assert_eq!(volume_of("cinder://not-a-uuid", "c"), None);
        assert_eq!(volume_of(&format!("rbd://{v}"), "c"), None);
        assert_eq!(volume_of(&format!("cinder://{v}/../x"), "c"), None);
    }
}
