//! The Ceph RBD store (cargo feature `rbd`): each image is an RBD image named by the image id
//! in one pool, with a protected snapshot `snap` taken once the data is written, as Glance's
//! rbd driver does (clones for Nova and Cinder are made from that snapshot). Locations are
//! `rbd://<fsid>/<pool>/<image>/snap`.
//!
//! librbd and librados (Ceph 16, Debian's `librbd1`/`librados2`; `librbd-dev`/`librados-dev`
//! to build) are called through the few C functions declared in [`ffi`], wrapped safely in
//! [`librbd`] (the project's only unsafe code); location URLs are in [`location`]. The calls
//! block, so each runs on tokio's blocking pool; data moves in chunks of the object size
//! (8 MiB by default), one at a time, so memory stays bounded.
//!
//! [`RbdSettings`] (the `[stores.NAME] type = "rbd"` section) is always built, so a
//! configuration naming an RBD store reads the same with or without the feature.

#[cfg(feature = "rbd")]
mod ffi;
#[cfg(feature = "rbd")]
pub(crate) mod librbd;
#[cfg(feature = "rbd")]
mod location;
#[cfg(feature = "rbd")]
pub(crate) mod store;

use serde::{Deserialize, Serialize};

#[cfg(feature = "rbd")]
pub use store::RbdStore;

/// The RBD store's settings.
#[derive(Debug, Clone)]
pub struct RbdConfig {
    pub pool: String,
    /// ceph.conf; `None` is librados' search (`$CEPH_CONF`, /etc/ceph/ceph.conf…).
    pub ceph_conf: Option<std::path::PathBuf>,
    /// RADOS user without `client.` (e.g. `admin`, `glance`).
    pub user: String,
    /// Object size and write chunk, bytes (a power of two).
    pub chunk_size: u64,
    /// Seconds to wait for the cluster.
    pub connect_timeout_secs: u64,
    /// librados options set after the ceph.conf is read (e.g. `mon_host` from a Cinder
    /// connection). With some, a missing default ceph.conf is not an error.
    pub options: Vec<(String, String)>,
}

/// `[stores.NAME] type = "rbd"`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RbdSettings {
    /// The pool (default `images`).
    pub pool: Option<String>,
    /// The ceph.conf to read (default: librados' search path).
    pub ceph_conf: Option<std::path::PathBuf>,
    /// The RADOS user (`client.<rados_user>`; default `admin`).
    pub rados_user: Option<String>,
    /// Object size and write chunk, MiB, a power of two (default 8).
    pub chunk_size_mib: Option<u64>,
    /// Seconds to wait for the cluster (connect, monitor and OSD operations; default 30).
    pub connect_timeout_secs: Option<u64>,
}

impl RbdSettings {
    pub fn check(&self) -> Result<(), String> {
        if self
            .chunk_size_mib
            .is_some_and(|c| !c.is_power_of_two() || c > 32)
        {
            return Err("chunk_size_mib must be a power of two, at most 32".into());
        }
        Ok(())
    }

    pub fn config(&self) -> RbdConfig {
        RbdConfig {
            pool: self.pool.clone().unwrap_or_else(|| "images".into()),
            ceph_conf: self.ceph_conf.clone(),
            user: self.rados_user.clone().unwrap_or_else(|| "admin".into()),
            chunk_size: self.chunk_size_mib.unwrap_or(8) << 20,
            connect_timeout_secs: self.connect_timeout_secs.unwrap_or(30),
            options: Vec::new(),
        }
    }
}
