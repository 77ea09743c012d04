//! Safe wrappers over librados and librbd: a cluster connection, a pool context, an open RBD
//! image, and the pool-level calls the store makes (create, remove, list). Every call blocks,
//! so callers run them on tokio's blocking pool.
//!
//! The only unsafe code of the project is here and in [`super::ffi`]: FFI calls, each with its
//! SAFETY note. Handles are owned by values whose `Drop` releases them exactly once.

#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};

use super::ffi;
use super::RbdConfig;
use crate::StoreError;

const ENOENT: i32 = 2;
const EPERM: i32 = 1;
const EACCES: i32 = 13;
const EEXIST: i32 = 17;
const EBUSY: i32 = 16;
const EINVAL: i32 = 22;
const ENOSPC: i32 = 28;
const ENOTEMPTY: i32 = 39;
const ERANGE: i32 = 34;
const EDQUOT: i32 = 122;
const ETIMEDOUT: i32 = 110;
const ENOTCONN: i32 = 107;
const ESHUTDOWN: i32 = 108;

/// A failed librbd/librados call: the function and the (positive) errno.
fn rbd_error(what: &str, rc: i64) -> StoreError {
    let errno = i32::try_from(-rc).unwrap_or(EINVAL);
    let msg = format!("{what}: {}", std::io::Error::from_raw_os_error(errno));
    match errno {
        ENOENT => StoreError::NotFound(msg),
        ENOSPC | EDQUOT => StoreError::StorageFull(std::io::Error::from_raw_os_error(errno)),
        EPERM | EACCES => StoreError::Denied(msg),
        ETIMEDOUT | ENOTCONN | ESHUTDOWN => StoreError::Unavailable(msg),
        EBUSY => StoreError::InUse(msg),
        _ => StoreError::Io(std::io::Error::other(msg)),
    }
}

fn check(what: &str, rc: i32) -> Result<(), StoreError> {
    if rc < 0 {
        Err(rbd_error(what, rc.into()))
    } else {
        Ok(())
    }
}

fn cstr(s: &str) -> Result<CString, StoreError> {
    CString::new(s).map_err(|_| StoreError::Config(format!("NUL byte in '{s}'")))
}

/// A connected cluster handle (librados handles are thread-safe).
pub(crate) struct Cluster {
    handle: ffi::rados_t,
    pub fsid: String,
}

// SAFETY: librados documents `rados_t` as safe to share between threads.
unsafe impl Send for Cluster {}
// SAFETY: as above.
unsafe impl Sync for Cluster {}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SAFETY: created by rados_create2, shut down once.
        unsafe { ffi::rados_shutdown(self.handle) }
    }
}

impl Cluster {
    /// Connects as `client.<user>` with the configured ceph.conf and timeouts.
    pub fn connect(cfg: &RbdConfig) -> Result<Cluster, StoreError> {
        let mut handle: ffi::rados_t = std::ptr::null_mut();
        let name = cstr(&format!("client.{}", cfg.user))?;
        let cluster_name = cstr("ceph")?;
        // SAFETY: out-pointer to a local; the strings outlive the call.
        check("rados_create2", unsafe {
            ffi::rados_create2(&mut handle, cluster_name.as_ptr(), name.as_ptr(), 0)
        })?;
        // From here the handle is shut down on every path.
        let mut cluster = Cluster {
            handle,
            fsid: String::new(),
        };
        let conf = cfg
            .ceph_conf
            .as_ref()
            .map(|p| cstr(&p.to_string_lossy()))
            .transpose()?;
        // SAFETY: a NULL path means the default search.
        let rc = unsafe {
            ffi::rados_conf_read_file(
                handle,
                conf.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
            )
        };
        match check("reading the ceph configuration", rc) {
            Ok(()) => {}
            // No ceph.conf in the default places: fine when the options say where to go.
            Err(StoreError::NotFound(_)) if conf.is_none() && !cfg.options.is_empty() => {}
            Err(StoreError::NotFound(m)) => return Err(StoreError::Config(m)),
            Err(other) => return Err(other),
        }
        for (key, value) in &cfg.options {
            let (key_c, value_c) = (cstr(key)?, cstr(value)?);
            // SAFETY: valid handle and strings.
            check(&format!("setting the Ceph option {key}"), unsafe {
                ffi::rados_conf_set(handle, key_c.as_ptr(), value_c.as_ptr())
            })?;
        }
        let timeout = cstr(&cfg.connect_timeout_secs.to_string())?;
        for option in [
            "client_mount_timeout",
            "rados_mon_op_timeout",
            "rados_osd_op_timeout",
        ] {
            let option = cstr(option)?;
            // SAFETY: valid handle and strings.
            check("rados_conf_set", unsafe {
                ffi::rados_conf_set(handle, option.as_ptr(), timeout.as_ptr())
            })?;
        }
        // SAFETY: valid, configured handle.
        let rc = unsafe { ffi::rados_connect(handle) };
        if rc < 0 {
            return Err(
                match rbd_error("connecting to the Ceph cluster", rc.into()) {
                    StoreError::Io(e) => StoreError::Unavailable(e.to_string()),
                    StoreError::NotFound(m) => StoreError::Unavailable(m),
                    other => other,
                },
            );
        }
        let mut buf = [0u8; 64];
        // SAFETY: the buffer is writable for its length.
        check("rados_cluster_fsid", unsafe {
            ffi::rados_cluster_fsid(handle, buf.as_mut_ptr().cast(), buf.len())
        })?;
        cluster.fsid = CStr::from_bytes_until_nul(&buf)
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(cluster)
    }

    /// A context on `pool`.
    pub fn ioctx(self: &Arc<Self>, pool: &str) -> Result<IoCtx, StoreError> {
        let pool_c = cstr(pool)?;
        let mut io: ffi::rados_ioctx_t = std::ptr::null_mut();
        // SAFETY: connected handle, out-pointer to a local.
        check(&format!("opening pool {pool}"), unsafe {
            ffi::rados_ioctx_create(self.handle, pool_c.as_ptr(), &mut io)
        })?;
        Ok(IoCtx {
            io,
            cluster: self.clone(),
        })
    }
}

/// A pool context; keeps its cluster alive.
pub(crate) struct IoCtx {
    io: ffi::rados_ioctx_t,
    pub cluster: Arc<Cluster>,
}

// SAFETY: used by one blocking task at a time.
unsafe impl Send for IoCtx {}

impl Drop for IoCtx {
    fn drop(&mut self) {
        // SAFETY: created by rados_ioctx_create, destroyed once.
        unsafe { ffi::rados_ioctx_destroy(self.io) }
    }
}

/// What [`IoCtx::describe`] tells of an image.
pub(crate) struct ImageInfo {
    pub has_snap: bool,
    pub created: SystemTime,
}

impl IoCtx {
    /// Creates an empty format-2 image with objects of 2^`order` bytes; the features come
    /// from the cluster's `rbd_default_features`, as in Glance.
    pub fn create_image(&self, name: &str, order: u64) -> Result<(), StoreError> {
        let name_c = cstr(name)?;
        let mut opts: ffi::rbd_image_options_t = std::ptr::null_mut();
        // SAFETY: the options are created, set and destroyed here.
        let rc = unsafe {
            ffi::rbd_image_options_create(&mut opts);
            ffi::rbd_image_options_set_uint64(opts, ffi::RBD_IMAGE_OPTION_FORMAT, 2);
            ffi::rbd_image_options_set_uint64(opts, ffi::RBD_IMAGE_OPTION_ORDER, order);
            let rc = ffi::rbd_create4(self.io, name_c.as_ptr(), 0, opts);
            ffi::rbd_image_options_destroy(opts);
            rc
        };
        if rc == -EEXIST {
            return Err(StoreError::Io(std::io::Error::other(format!(
                "RBD image {name} already exists"
            ))));
        }
        check(&format!("creating RBD image {name}"), rc)
    }

    /// Removes an image with its snapshot `snap`: unprotect, remove the snapshot, remove the
    /// image. A missing image is fine. Clones of the snapshot (Nova, Cinder) make it
    /// [`StoreError::InUse`]; snapshots made by others send the image to the trash, as Glance
    /// does.
    pub fn remove_image(&self, name: &str, snap: Option<&str>) -> Result<(), StoreError> {
        let name_c = cstr(name)?;
        if let Some(snap) = snap {
            match Image::open_in(self, name) {
                Ok(img) => img.remove_snapshot(name, snap)?,
                Err(StoreError::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        // SAFETY: valid ioctx and string.
        let rc = unsafe { ffi::rbd_remove(self.io, name_c.as_ptr()) };
        match rc {
            0 => Ok(()),
            rc if rc == -ENOENT => Ok(()),
            rc if rc == -ENOTEMPTY => {
                // SAFETY: valid ioctx and string.
                let rc = unsafe { ffi::rbd_trash_move(self.io, name_c.as_ptr(), 0) };
                check("rbd_trash_move", rc)
            }
            rc => Err(rbd_error("rbd_remove", rc.into())),
        }
    }

    /// The names of the pool's images.
    pub fn list_names(&self) -> Result<Vec<String>, StoreError> {
        let mut size = 4096usize;
        loop {
            let mut buf = vec![0u8; size];
            // SAFETY: the buffer is writable for `size` bytes; librbd sets the size it needs.
            let rc = unsafe { ffi::rbd_list(self.io, buf.as_mut_ptr().cast(), &mut size) };
            if rc == -ERANGE {
                continue;
            }
            check("rbd_list", rc)?;
            buf.truncate(size.min(buf.len()));
            return Ok(buf
                .split(|b| *b == 0)
                .filter(|n| !n.is_empty())
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .collect());
        }
    }

    /// Whether image `name` has snapshot `snap`, and when it was made; `None` if it is gone.
    pub fn describe(&self, name: &str, snap: &str) -> Result<Option<ImageInfo>, StoreError> {
        let img = match Image::open_in(self, name) {
            Ok(img) => img,
            Err(StoreError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let snap_c = cstr(snap)?;
        let (mut has_snap, mut ts) = (false, ffi::timespec::default());
        // SAFETY: open image, out-pointers to locals.
        check("rbd_snap_exists", unsafe {
            ffi::rbd_snap_exists(img.handle, snap_c.as_ptr(), &mut has_snap)
        })?;
        // SAFETY: as above.
        check("rbd_get_create_timestamp", unsafe {
            ffi::rbd_get_create_timestamp(img.handle, &mut ts)
        })?;
        Ok(Some(ImageInfo {
            has_snap,
            created: UNIX_EPOCH + Duration::from_secs(u64::try_from(ts.tv_sec).unwrap_or(0)),
        }))
    }
}

/// An open RBD image, closed when dropped; keeps its pool context alive (`None` only inside
/// this module, where the image is dropped before the context it was opened in).
pub(crate) struct Image {
    handle: ffi::rbd_image_t,
    _io: Option<IoCtx>,
}

// SAFETY: an image handle is used by one blocking task at a time (the value moves between
// them; `&self` methods are not called from two threads at once: callers hold it in a Mutex
// or own it).
unsafe impl Send for Image {}

impl Drop for Image {
    fn drop(&mut self) {
        // SAFETY: opened by rbd_open*, closed once.
        unsafe {
            ffi::rbd_close(self.handle);
        }
    }
}

impl Image {
    /// Opens image `name` of the pool, at snapshot `snap` if given.
    pub fn open(
        io: IoCtx,
        name: &str,
        snap: Option<&str>,
        read_only: bool,
    ) -> Result<Image, StoreError> {
        let handle = Self::open_handle(&io, name, snap, read_only)?;
        Ok(Image {
            handle,
            _io: Some(io),
        })
    }

    /// Opens image `name` read-write, for use while `io` lives.
    fn open_in(io: &IoCtx, name: &str) -> Result<Image, StoreError> {
        let handle = Self::open_handle(io, name, None, false)?;
        Ok(Image { handle, _io: None })
    }

    fn open_handle(
        io: &IoCtx,
        name: &str,
        snap: Option<&str>,
        read_only: bool,
    ) -> Result<ffi::rbd_image_t, StoreError> {
        let name_c = cstr(name)?;
        let snap_c = snap.map(cstr).transpose()?;
        let snap_p = snap_c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
        let mut handle: ffi::rbd_image_t = std::ptr::null_mut();
        // SAFETY: valid ioctx, strings and out-pointer.
        let rc = unsafe {
            if read_only {
                ffi::rbd_open_read_only(io.io, name_c.as_ptr(), &mut handle, snap_p)
            } else {
                ffi::rbd_open(io.io, name_c.as_ptr(), &mut handle, snap_p)
            }
        };
        check(&format!("opening RBD image {name}"), rc)?;
        Ok(handle)
    }

    pub fn size(&self) -> Result<u64, StoreError> {
        let mut size = 0u64;
        // SAFETY: open image, out-pointer to a local.
        check("rbd_get_size", unsafe {
            ffi::rbd_get_size(self.handle, &mut size)
        })?;
        Ok(size)
    }

    /// Exactly `len` bytes from `ofs`.
    pub fn read_exact(&self, ofs: u64, len: usize) -> Result<Bytes, StoreError> {
        let mut buf = BytesMut::zeroed(len);
        let mut done = 0usize;
        while done < len {
            // SAFETY: the buffer is writable from `done` for `len - done` bytes.
            let n = unsafe {
                ffi::rbd_read(
                    self.handle,
                    ofs + done as u64,
                    len - done,
                    buf[done..].as_mut_ptr().cast(),
                )
            };
            if n <= 0 {
                return Err(rbd_error("rbd_read", if n == 0 { -5 } else { n as i64 }));
            }
            done += n as usize;
        }
        Ok(buf.freeze())
    }

    /// Writes all of `buf` at `ofs`.
    pub fn write_at(&self, mut ofs: u64, mut buf: &[u8]) -> Result<(), StoreError> {
        while !buf.is_empty() {
            // SAFETY: the buffer is readable for its length; the image is open.
            let n = unsafe { ffi::rbd_write(self.handle, ofs, buf.len(), buf.as_ptr().cast()) };
            if n <= 0 {
                return Err(rbd_error("rbd_write", if n == 0 { -5 } else { n as i64 }));
            }
            let n = n as usize;
            buf = &buf[n.min(buf.len())..];
            ofs += n as u64;
        }
        Ok(())
    }

    pub fn resize(&self, size: u64) -> Result<(), StoreError> {
        // SAFETY: open image.
        check("rbd_resize", unsafe { ffi::rbd_resize(self.handle, size) })
    }

    pub fn flush(&self) -> Result<(), StoreError> {
        // SAFETY: open image.
        check("rbd_flush", unsafe { ffi::rbd_flush(self.handle) })
    }

    /// Takes snapshot `snap` and protects it (so clones can be made from it).
    pub fn snapshot_protected(&self, snap: &str) -> Result<(), StoreError> {
        let snap_c = cstr(snap)?;
        // SAFETY: open image, valid string.
        check("rbd_snap_create", unsafe {
            ffi::rbd_snap_create(self.handle, snap_c.as_ptr())
        })?;
        // SAFETY: as above.
        check("rbd_snap_protect", unsafe {
            ffi::rbd_snap_protect(self.handle, snap_c.as_ptr())
        })
    }

    /// Unprotects and removes snapshot `snap` (of image `name`, for messages); a snapshot
    /// that is missing or not protected is fine, one with clones is [`StoreError::InUse`].
    fn remove_snapshot(self, name: &str, snap: &str) -> Result<(), StoreError> {
        let snap_c = cstr(snap)?;
        // SAFETY: open image, valid string. EINVAL (not protected) and ENOENT are fine: the
        // snapshot is removed next, if there.
        let rc = unsafe { ffi::rbd_snap_unprotect(self.handle, snap_c.as_ptr()) };
        if rc == -EBUSY {
            return Err(StoreError::InUse(format!(
                "snapshot {snap} of RBD image {name} has clones"
            )));
        }
        // SAFETY: as above.
        let rc = unsafe { ffi::rbd_snap_remove(self.handle, snap_c.as_ptr()) };
        if rc < 0 && rc != -ENOENT {
            return Err(rbd_error("rbd_snap_remove", rc.into()));
        }
        Ok(())
    }
}
