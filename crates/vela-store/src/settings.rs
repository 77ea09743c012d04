//! [`StoreSettings`]: one `[stores.NAME]` section of the configuration, tagged by its `type`.
//! Each variant's settings type lives beside its store; this module only picks the store and
//! opens it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::cinder::CinderSettings;
use crate::fs::{FileSettings, FsStore};
use crate::http::{HttpSettings, HttpStore};
use crate::object::{ObjectBackend, S3Settings};
use crate::outbound::FilterOpts;
use crate::rbd::RbdSettings;
use crate::swift::{SwiftSettings, SwiftStore};
use crate::vmware::{VmwareSettings, VmwareStore};
use crate::{Store, StoreError};

/// The settings of one named store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum StoreSettings {
    File(FileSettings),
    S3(S3Settings),
    Swift(SwiftSettings),
    /// Read-only: serves locations that are http(s) URLs.
    Http(HttpSettings),
    /// Ceph RBD; opening one needs a build with the `rbd` feature.
    Rbd(RbdSettings),
    /// VMware vSphere datastores (vCenter or ESXi).
    Vmware(VmwareSettings),
    /// Cinder volumes; opening one needs a build with the `rbd` feature (data moves over
    /// RBD connections).
    Cinder(CinderSettings),
}

impl StoreSettings {
    /// The `type` name.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreSettings::File(_) => "file",
            StoreSettings::S3(_) => "s3",
            StoreSettings::Swift(_) => "swift",
            StoreSettings::Http(_) => "http",
            StoreSettings::Rbd(_) => "rbd",
            StoreSettings::Vmware(_) => "vmware",
            StoreSettings::Cinder(_) => "cinder",
        }
    }

    /// What is wrong with the settings, beyond what parsing checks.
    pub fn check(&self) -> Result<(), String> {
        match self {
            StoreSettings::S3(s) => s.check(),
            StoreSettings::Swift(s) => s.check(),
            StoreSettings::Rbd(s) => s.check(),
            StoreSettings::Vmware(s) => s.check(),
            StoreSettings::Cinder(s) => s.check(),
            StoreSettings::File(_) | StoreSettings::Http(_) => Ok(()),
        }
    }

    /// Opens the store `id` (an http store fetches what `filter` allows).
    pub fn open(&self, id: &str, filter: &FilterOpts) -> Result<Arc<dyn Store>, StoreError> {
        Ok(match self {
            StoreSettings::File(s) => Arc::new(FsStore::open(id, &s.path).map_err(|e| {
                StoreError::Config(format!(
                    "opening the image store at {}: {e}",
                    s.path.display()
                ))
            })?),
            StoreSettings::S3(s) => Arc::new(ObjectBackend::s3(id, &s.config())?),
            StoreSettings::Swift(s) => Arc::new(SwiftStore::new(id, s.config())?),
            StoreSettings::Http(s) => Arc::new(HttpStore::new(id, &s.config(filter))?),
            StoreSettings::Rbd(s) => open_rbd(id, s)?,
            StoreSettings::Cinder(s) => open_cinder(id, s)?,
            StoreSettings::Vmware(s) => Arc::new(VmwareStore::new(
                id,
                s.config().map_err(StoreError::Config)?,
            )?),
        })
    }
}

#[cfg(feature = "rbd")]
fn open_rbd(id: &str, s: &RbdSettings) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(crate::rbd::RbdStore::new(id, s.config())?))
}

#[cfg(not(feature = "rbd"))]
fn open_rbd(_id: &str, _s: &RbdSettings) -> Result<Arc<dyn Store>, StoreError> {
    Err(StoreError::Config(
        "type 'rbd' needs a build with the `rbd` feature (cargo build --release --features rbd; \
         Debian packages librbd-dev librados-dev)"
            .into(),
    ))
}

#[cfg(feature = "rbd")]
fn open_cinder(id: &str, s: &CinderSettings) -> Result<Arc<dyn Store>, StoreError> {
    s.check().map_err(StoreError::Config)?;
    Ok(Arc::new(crate::cinder::CinderStore::new(id, s.config())?))
}

#[cfg(not(feature = "rbd"))]
fn open_cinder(_id: &str, _s: &CinderSettings) -> Result<Arc<dyn Store>, StoreError> {
    Err(StoreError::Config(
        "type 'cinder' needs a build with the `rbd` feature (Vela reads Cinder volumes over \
         RBD connections; Debian packages librbd-dev librados-dev)"
            .into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_like: serde_json::Value) -> Result<StoreSettings, String> {
        serde_json::from_value(toml_like).map_err(|e| e.to_string())
    }

    #[test]
    fn the_type_picks_the_settings() {
        let s = parse(serde_json::json!({"type": "s3", "endpoint": "http://h", "bucket": "b"}))
            .unwrap();
        assert_eq!(s.kind(), "s3");
        assert!(s.check().is_ok());
        let s = parse(serde_json::json!({"type": "rbd", "chunk_size_mib": 3})).unwrap();
        assert!(s.check().unwrap_err().contains("power of two"));
        // A key of another store type, a missing required key, an unknown type: refused.
        let e = parse(serde_json::json!({"type": "file", "path": "/x", "bucket": "b"}));
        assert!(e.unwrap_err().contains("bucket"));
        let e = parse(serde_json::json!({"type": "s3", "endpoint": "http://h"}));
        assert!(e.unwrap_err().contains("bucket"));
        let e = parse(serde_json::json!({"type": "ftp"}));
        assert!(e.unwrap_err().contains("ftp"));
    }
}
