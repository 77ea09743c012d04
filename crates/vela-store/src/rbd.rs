//! The Ceph RBD store (cargo feature `rbd`): each image is an RBD image named by the image id
//! in one pool, with a protected snapshot `snap` taken once the data is written, as Glance's
//! rbd driver does (clones for Nova and Cinder are made from that snapshot). Locations are
//! `rbd://<fsid>/<pool>/<image>/snap`.
//!
//! librbd and librados (Ceph 16, Debian's `librbd1`/`librados2`; `librbd-dev`/`librados-dev`
//! to build) are called through the few C functions declared in [`ffi`]. Their calls block,
//! so each runs on tokio's blocking pool; data moves in chunks of the object size (8 MiB by
//! default), one at a time, so memory stays bounded.
//!
//! The only unsafe code of the project: FFI calls, each with its SAFETY note.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use crate::{ByteRange, ByteStream, Fetched, ListedObject, Store, StoreError, Stored};

/// The librbd/librados functions used, with their C signatures (librbd.h, librados.h).
#[allow(non_camel_case_types)]
mod ffi {
    use std::ffi::{c_char, c_int, c_void};

    pub type rados_t = *mut c_void;
    pub type rados_ioctx_t = *mut c_void;
    pub type rbd_image_t = *mut c_void;
    pub type rbd_image_options_t = *mut c_void;

    pub const RBD_IMAGE_OPTION_FORMAT: c_int = 0;
    pub const RBD_IMAGE_OPTION_ORDER: c_int = 2;

    #[link(name = "rados")]
    unsafe extern "C" {
        pub fn rados_create2(
            cluster: *mut rados_t,
            clustername: *const c_char,
            name: *const c_char,
            flags: u64,
        ) -> c_int;
        pub fn rados_conf_read_file(cluster: rados_t, path: *const c_char) -> c_int;
        pub fn rados_conf_set(
            cluster: rados_t,
            option: *const c_char,
            value: *const c_char,
        ) -> c_int;
        pub fn rados_connect(cluster: rados_t) -> c_int;
        pub fn rados_shutdown(cluster: rados_t);
        pub fn rados_cluster_fsid(cluster: rados_t, buf: *mut c_char, len: usize) -> c_int;
        pub fn rados_ioctx_create(
            cluster: rados_t,
            pool: *const c_char,
            ioctx: *mut rados_ioctx_t,
        ) -> c_int;
        pub fn rados_ioctx_destroy(io: rados_ioctx_t);
    }

    #[link(name = "rbd")]
    unsafe extern "C" {
        pub fn rbd_image_options_create(opts: *mut rbd_image_options_t);
        pub fn rbd_image_options_destroy(opts: rbd_image_options_t);
        pub fn rbd_image_options_set_uint64(
            opts: rbd_image_options_t,
            optname: c_int,
            optval: u64,
        ) -> c_int;
        pub fn rbd_create4(
            io: rados_ioctx_t,
            name: *const c_char,
            size: u64,
            opts: rbd_image_options_t,
        ) -> c_int;
        pub fn rbd_open(
            io: rados_ioctx_t,
            name: *const c_char,
            image: *mut rbd_image_t,
            snap_name: *const c_char,
        ) -> c_int;
        pub fn rbd_open_read_only(
            io: rados_ioctx_t,
            name: *const c_char,
            image: *mut rbd_image_t,
            snap_name: *const c_char,
        ) -> c_int;
        pub fn rbd_close(image: rbd_image_t) -> c_int;
        pub fn rbd_write(image: rbd_image_t, ofs: u64, len: usize, buf: *const c_char) -> isize;
        pub fn rbd_read(image: rbd_image_t, ofs: u64, len: usize, buf: *mut c_char) -> isize;
        pub fn rbd_resize(image: rbd_image_t, size: u64) -> c_int;
        pub fn rbd_get_size(image: rbd_image_t, size: *mut u64) -> c_int;
        pub fn rbd_flush(image: rbd_image_t) -> c_int;
        pub fn rbd_snap_create(image: rbd_image_t, name: *const c_char) -> c_int;
        pub fn rbd_snap_protect(image: rbd_image_t, name: *const c_char) -> c_int;
        pub fn rbd_snap_unprotect(image: rbd_image_t, name: *const c_char) -> c_int;
        pub fn rbd_snap_remove(image: rbd_image_t, name: *const c_char) -> c_int;
        pub fn rbd_remove(io: rados_ioctx_t, name: *const c_char) -> c_int;
        pub fn rbd_trash_move(io: rados_ioctx_t, name: *const c_char, delay: u64) -> c_int;
        pub fn rbd_list(io: rados_ioctx_t, names: *mut c_char, size: *mut usize) -> c_int;
        pub fn rbd_snap_exists(image: rbd_image_t, name: *const c_char, exists: *mut bool)
            -> c_int;
        pub fn rbd_get_create_timestamp(image: rbd_image_t, ts: *mut timespec) -> c_int;
    }

    /// `struct timespec` on 64-bit Linux.
    #[repr(C)]
    #[derive(Default)]
    pub struct timespec {
        pub tv_sec: i64,
        pub tv_nsec: i64,
    }
}

/// The snapshot every stored image carries (Glance's name).
const SNAP: &str = "snap";
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
/// Largest growth step of an image while data streams in (Glance's 8 GiB).
const MAX_GROWTH: u64 = 8 << 30;

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
}

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
struct Cluster {
    handle: ffi::rados_t,
    fsid: String,
}

// SAFETY: librados documents `rados_t` as safe to share between threads.
unsafe impl Send for Cluster {}
unsafe impl Sync for Cluster {}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SAFETY: the handle came from rados_create2 and is shut down once.
        unsafe { ffi::rados_shutdown(self.handle) }
    }
}

impl Cluster {
    fn connect(cfg: &RbdConfig) -> Result<Cluster, StoreError> {
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
        check("reading the ceph configuration", rc).map_err(|e| match e {
            StoreError::NotFound(m) => StoreError::Config(m),
            other => other,
        })?;
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

    fn ioctx(self: &Arc<Self>, pool: &str) -> Result<IoCtx, StoreError> {
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
struct IoCtx {
    io: ffi::rados_ioctx_t,
    cluster: Arc<Cluster>,
}

// SAFETY: used by one blocking task at a time.
unsafe impl Send for IoCtx {}

impl Drop for IoCtx {
    fn drop(&mut self) {
        // SAFETY: created by rados_ioctx_create, destroyed once.
        unsafe { ffi::rados_ioctx_destroy(self.io) }
    }
}

/// An open RBD image; keeps its pool context alive.
struct Image {
    handle: ffi::rbd_image_t,
    _io: IoCtx,
}

// SAFETY: an image handle is used by one blocking task at a time.
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
    fn open(
        io: IoCtx,
        name: &str,
        snap: Option<&str>,
        read_only: bool,
    ) -> Result<Image, StoreError> {
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
        Ok(Image { handle, _io: io })
    }

    fn size(&self) -> Result<u64, StoreError> {
        let mut size = 0u64;
        // SAFETY: open image, out-pointer to a local.
        check("rbd_get_size", unsafe {
            ffi::rbd_get_size(self.handle, &mut size)
        })?;
        Ok(size)
    }

    fn read_exact(&self, ofs: u64, len: usize) -> Result<Bytes, StoreError> {
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

    fn snap(&self, what: &str, f: SnapFn) -> Result<(), StoreError> {
        let snap = cstr(SNAP)?;
        // SAFETY: open image, valid string.
        check(what, unsafe { f(self.handle, snap.as_ptr()) })
    }
}

/// A librbd snapshot call (create, protect).
type SnapFn = unsafe extern "C" fn(ffi::rbd_image_t, *const std::ffi::c_char) -> std::ffi::c_int;

/// A parsed location: pool, image name and snapshot (legacy `rbd://<image>` has neither pool
/// nor snapshot).
#[derive(Debug, PartialEq, Eq)]
struct RbdLocation {
    fsid: Option<String>,
    pool: Option<String>,
    image: String,
    snap: Option<String>,
}

fn unquote(s: &str) -> String {
    form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn quote(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl RbdLocation {
    fn parse(location: &str) -> Option<RbdLocation> {
        let rest = location.strip_prefix("rbd://")?;
        let parts: Vec<&str> = rest.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return None;
        }
        match parts.as_slice() {
            [image] => Some(RbdLocation {
                fsid: None,
                pool: None,
                image: (*image).to_owned(),
                snap: None,
            }),
            [fsid, pool, image, snap] => Some(RbdLocation {
                fsid: Some(unquote(fsid)),
                pool: Some(unquote(pool)),
                image: unquote(image),
                snap: Some(unquote(snap)),
            }),
            _ => None,
        }
    }
}

/// A Ceph RBD store.
pub struct RbdStore {
    id: String,
    cfg: RbdConfig,
    cluster: Mutex<Option<Arc<Cluster>>>,
}

impl std::fmt::Debug for RbdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RbdStore")
            .field("id", &self.id)
            .field("pool", &self.cfg.pool)
            .finish()
    }
}

/// Runs a blocking librbd call on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))?
}

impl RbdStore {
    pub fn new(id: &str, cfg: RbdConfig) -> Result<Self, StoreError> {
        if !cfg.chunk_size.is_power_of_two() || cfg.chunk_size < 4096 {
            return Err(StoreError::Config(
                "the chunk size must be a power of two of at least 4 KiB".into(),
            ));
        }
        Ok(RbdStore {
            id: id.to_owned(),
            cfg,
            cluster: Mutex::new(None),
        })
    }

    /// The cluster connection, made on first use and kept.
    async fn cluster(&self) -> Result<Arc<Cluster>, StoreError> {
        if let Some(c) = self.cluster.lock().map_err(poisoned)?.as_ref() {
            return Ok(c.clone());
        }
        let cfg = self.cfg.clone();
        let c = Arc::new(blocking(move || Cluster::connect(&cfg)).await?);
        let mut slot = self.cluster.lock().map_err(poisoned)?;
        Ok(slot.get_or_insert(c).clone())
    }

    async fn ioctx(&self, pool: Option<&str>) -> Result<IoCtx, StoreError> {
        let cluster = self.cluster().await?;
        let pool = pool.unwrap_or(&self.cfg.pool).to_owned();
        blocking(move || cluster.ioctx(&pool)).await
    }

    fn location_of(&self, fsid: &str, image: &str) -> String {
        format!(
            "rbd://{}/{}/{}/{SNAP}",
            quote(fsid),
            quote(&self.cfg.pool),
            quote(image)
        )
    }

    fn parse(&self, location: &str) -> Result<RbdLocation, StoreError> {
        RbdLocation::parse(location)
            .filter(|l| l.pool.as_deref().is_none_or(|p| p == self.cfg.pool))
            .ok_or_else(|| StoreError::ForeignLocation(location.to_owned()))
    }

    /// Opens the data of a location read-only, at its snapshot.
    async fn open_location(&self, location: &str) -> Result<Image, StoreError> {
        let loc = self.parse(location)?;
        let io = self.ioctx(loc.pool.as_deref()).await?;
        blocking(move || Image::open(io, &loc.image, loc.snap.as_deref(), true)).await
    }

    /// Removes an image with its snapshot: unprotect, remove the snapshot, remove the image.
    /// Clones of the snapshot (Nova, Cinder) make it [`StoreError::InUse`]; snapshots made by
    /// others send the image to the trash, as Glance does.
    async fn remove(
        &self,
        pool: Option<String>,
        name: String,
        snap: Option<String>,
    ) -> Result<(), StoreError> {
        let io = self.ioctx(pool.as_deref()).await?;
        blocking(move || {
            let name_c = cstr(&name)?;
            if let Some(snap) = snap {
                match Image::open_raw(&io, &name) {
                    Ok(img) => {
                        let snap_c = cstr(&snap)?;
                        // SAFETY: open image, valid string. EINVAL (not protected) and ENOENT
                        // are fine: the snapshot is removed next, if there.
                        let rc = unsafe { ffi::rbd_snap_unprotect(img, snap_c.as_ptr()) };
                        if rc == -EBUSY {
                            // SAFETY: closing the handle opened above.
                            unsafe { ffi::rbd_close(img) };
                            return Err(StoreError::InUse(format!(
                                "snapshot {snap} of RBD image {name} has clones"
                            )));
                        }
                        // SAFETY: as above.
                        let rc2 = unsafe { ffi::rbd_snap_remove(img, snap_c.as_ptr()) };
                        // SAFETY: as above.
                        unsafe { ffi::rbd_close(img) };
                        if rc2 < 0 && rc2 != -ENOENT {
                            return Err(rbd_error("rbd_snap_remove", rc2.into()));
                        }
                    }
                    Err(StoreError::NotFound(_)) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
            // SAFETY: valid ioctx and string.
            let rc = unsafe { ffi::rbd_remove(io.io, name_c.as_ptr()) };
            match rc {
                0 => Ok(()),
                rc if rc == -ENOENT => Ok(()),
                rc if rc == -ENOTEMPTY => {
                    // SAFETY: valid ioctx and string.
                    let rc = unsafe { ffi::rbd_trash_move(io.io, name_c.as_ptr(), 0) };
                    check("rbd_trash_move", rc)
                }
                rc => Err(rbd_error("rbd_remove", rc.into())),
            }
        })
        .await
    }

    /// Streams `body` into the open image `handle` (owned by the caller, open throughout).
    async fn put_inner(&self, handle: SendPtr, mut body: ByteStream) -> Result<u64, StoreError> {
        let chunk = self.cfg.chunk_size as usize;
        let mut buf = BytesMut::with_capacity(chunk);
        let (mut written, mut capacity, mut step) = (0u64, 0u64, self.cfg.chunk_size);
        let mut ended = false;
        while !ended {
            while buf.len() < chunk {
                match body.next().await {
                    Some(Ok(b)) => buf.extend_from_slice(&b),
                    Some(Err(e)) => return Err(StoreError::Body(e)),
                    None => {
                        ended = true;
                        break;
                    }
                }
            }
            if buf.is_empty() {
                break;
            }
            let data = buf.split().freeze();
            let len = data.len() as u64;
            // Grow ahead of the data in doubling steps (at most 8 GiB), trimmed at the end.
            let grow_to = if written + len > capacity {
                step = (step * 2).min(MAX_GROWTH);
                capacity = (written + len).max(capacity + step);
                Some(capacity)
            } else {
                None
            };
            let ofs = written;
            blocking(move || {
                let h = handle;
                if let Some(size) = grow_to {
                    // SAFETY: the image stays open for the whole upload.
                    check("rbd_resize", unsafe { ffi::rbd_resize(h.0, size) })?;
                }
                write_at(h.0, ofs, &data)
            })
            .await?;
            written += len;
        }
        let h = handle;
        blocking(move || {
            let h = h;
            // SAFETY: the image is open; trim to the data, flush, then snapshot and protect.
            unsafe {
                check("rbd_resize", ffi::rbd_resize(h.0, written))?;
                check("rbd_flush", ffi::rbd_flush(h.0))?;
            }
            Ok(())
        })
        .await?;
        Ok(written)
    }
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Io(std::io::Error::other("RBD connection lock poisoned"))
}

/// An image handle moved into a blocking task while its [`Image`] owner waits.
#[derive(Clone, Copy)]
struct SendPtr(ffi::rbd_image_t);
// SAFETY: the owner awaits each task before using the handle again or closing it.
unsafe impl Send for SendPtr {}

fn write_at(h: ffi::rbd_image_t, mut ofs: u64, mut buf: &[u8]) -> Result<(), StoreError> {
    while !buf.is_empty() {
        // SAFETY: the buffer is readable for its length; the image is open.
        let n = unsafe { ffi::rbd_write(h, ofs, buf.len(), buf.as_ptr().cast()) };
        if n <= 0 {
            return Err(rbd_error("rbd_write", if n == 0 { -5 } else { n as i64 }));
        }
        let n = n as usize;
        buf = &buf[n.min(buf.len())..];
        ofs += n as u64;
    }
    Ok(())
}

impl Image {
    /// Opens read-write, returning the raw handle (closed by the caller).
    fn open_raw(io: &IoCtx, name: &str) -> Result<ffi::rbd_image_t, StoreError> {
        let name_c = cstr(name)?;
        let mut handle: ffi::rbd_image_t = std::ptr::null_mut();
        // SAFETY: valid ioctx, string and out-pointer; no snapshot.
        let rc = unsafe { ffi::rbd_open(io.io, name_c.as_ptr(), &mut handle, std::ptr::null()) };
        check(&format!("opening RBD image {name}"), rc)?;
        Ok(handle)
    }
}

#[async_trait]
impl Store for RbdStore {
    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "rbd"
    }

    fn owns(&self, location: &str) -> bool {
        self.parse(location).is_ok()
    }

    async fn put(&self, image_id: &str, body: ByteStream) -> Result<Stored, StoreError> {
        let io = self.ioctx(None).await?;
        let fsid = io.cluster.fsid.clone();
        let name = image_id.to_owned();
        let order = u64::from(self.cfg.chunk_size.trailing_zeros());
        let image = blocking(move || {
            let name_c = cstr(&name)?;
            let mut opts: ffi::rbd_image_options_t = std::ptr::null_mut();
            // SAFETY: options are created, set and destroyed here; features come from the
            // cluster's rbd_default_features, as in Glance.
            let rc = unsafe {
                ffi::rbd_image_options_create(&mut opts);
                ffi::rbd_image_options_set_uint64(opts, ffi::RBD_IMAGE_OPTION_FORMAT, 2);
                ffi::rbd_image_options_set_uint64(opts, ffi::RBD_IMAGE_OPTION_ORDER, order);
                let rc = ffi::rbd_create4(io.io, name_c.as_ptr(), 0, opts);
                ffi::rbd_image_options_destroy(opts);
                rc
            };
            if rc == -EEXIST {
                return Err(StoreError::Io(std::io::Error::other(format!(
                    "RBD image {name} already exists"
                ))));
            }
            check(&format!("creating RBD image {name}"), rc)?;
            Image::open(io, &name, None, false)
        })
        .await?;
        let result = match self.put_inner(SendPtr(image.handle), body).await {
            Ok(size) => {
                let snapped = blocking(move || {
                    image.snap("rbd_snap_create", ffi::rbd_snap_create)?;
                    image.snap("rbd_snap_protect", ffi::rbd_snap_protect)?;
                    Ok(())
                })
                .await;
                snapped.map(|()| size)
            }
            Err(e) => {
                drop(image);
                Err(e)
            }
        };
        match result {
            Ok(size) => Ok(Stored {
                location: self.location_of(&fsid, image_id),
                size,
            }),
            Err(e) => {
                if let Err(del) = self
                    .remove(None, image_id.to_owned(), Some(SNAP.to_owned()))
                    .await
                {
                    tracing::error!(image_id, error = %del, "could not remove a failed RBD upload");
                }
                Err(e)
            }
        }
    }

    async fn get(&self, location: &str, range: Option<ByteRange>) -> Result<Fetched, StoreError> {
        let image = self.open_location(location).await?;
        let image = Arc::new(Mutex::new(image));
        let img = image.clone();
        let total = blocking(move || img.lock().map_err(poisoned)?.size()).await?;
        let (start, end) = match range {
            Some(r) => (r.start, r.end + 1),
            None => (0, total),
        };
        let chunk = self.cfg.chunk_size;
        let body = futures::stream::unfold((image, start), move |(image, ofs)| async move {
            if ofs >= end {
                return None;
            }
            let len = (end - ofs).min(chunk) as usize;
            let img = image.clone();
            let read = blocking(move || img.lock().map_err(poisoned)?.read_exact(ofs, len)).await;
            match read {
                Ok(b) => Some((Ok(b), (image, ofs + len as u64))),
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), (image, end))),
            }
        })
        .boxed();
        Ok(Fetched {
            total_size: total,
            body,
        })
    }

    async fn size(&self, location: &str) -> Result<u64, StoreError> {
        let image = self.open_location(location).await?;
        blocking(move || image.size()).await
    }

    async fn delete(&self, location: &str) -> Result<(), StoreError> {
        let loc = self.parse(location)?;
        self.remove(loc.pool, loc.image, loc.snap).await
    }

    /// The upload wrote an image named by the image id (perhaps without its snapshot yet).
    async fn abort_partial(&self, image_id: &str) -> Result<(), StoreError> {
        self.remove(None, image_id.to_owned(), Some(SNAP.to_owned()))
            .await
    }

    /// The pool's images named by an image id (other services' images, such as Nova's
    /// `<id>_disk` or Cinder's `volume-<id>`, are never listed). An image without its
    /// snapshot is a partial upload.
    async fn list(&self) -> Result<Vec<ListedObject>, StoreError> {
        let io = self.ioctx(None).await?;
        let pool = self.cfg.pool.clone();
        let objects = blocking(move || {
            let mut out = Vec::new();
            for name in list_names(&io)? {
                if uuid::Uuid::parse_str(&name).is_err() {
                    continue;
                }
                let handle = match Image::open_raw(&io, &name) {
                    Ok(h) => h,
                    Err(StoreError::NotFound(_)) => continue,
                    Err(e) => return Err(e),
                };
                let snap_c = cstr(SNAP)?;
                let (mut exists, mut ts) = (false, ffi::timespec::default());
                // SAFETY: open image, out-pointers to locals; closed right after.
                let (rc1, rc2) = unsafe {
                    let rc1 = ffi::rbd_snap_exists(handle, snap_c.as_ptr(), &mut exists);
                    let rc2 = ffi::rbd_get_create_timestamp(handle, &mut ts);
                    ffi::rbd_close(handle);
                    (rc1, rc2)
                };
                check("rbd_snap_exists", rc1)?;
                check("rbd_get_create_timestamp", rc2)?;
                let modified = std::time::UNIX_EPOCH
                    + std::time::Duration::from_secs(u64::try_from(ts.tv_sec).unwrap_or(0));
                out.push(ListedObject {
                    location: format!(
                        "rbd://{}/{}/{name}/{SNAP}",
                        quote(&io.cluster.fsid),
                        quote(&pool)
                    ),
                    image_id: name,
                    modified,
                    partial: !exists,
                });
            }
            Ok(out)
        })
        .await?;
        Ok(objects)
    }

    async fn delete_listed(&self, obj: &ListedObject) -> Result<(), StoreError> {
        let snap = (!obj.partial).then(|| SNAP.to_owned());
        self.remove(None, obj.image_id.clone(), snap).await
    }
}

/// The names of the pool's images.
fn list_names(io: &IoCtx) -> Result<Vec<String>, StoreError> {
    let mut size = 4096usize;
    loop {
        let mut buf = vec![0u8; size];
        // SAFETY: the buffer is writable for `size` bytes; librbd sets the size it needs.
        let rc = unsafe { ffi::rbd_list(io.io, buf.as_mut_ptr().cast(), &mut size) };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_both_forms() {
        assert_eq!(
            RbdLocation::parse("rbd://f-s-i-d/images/abc/snap"),
            Some(RbdLocation {
                fsid: Some("f-s-i-d".into()),
                pool: Some("images".into()),
                image: "abc".into(),
                snap: Some("snap".into()),
            })
        );
        assert_eq!(RbdLocation::parse("rbd://abc").unwrap().image, "abc");
        assert!(RbdLocation::parse("rbd://a/b").is_none());
        assert!(RbdLocation::parse("rbd://a//c/d").is_none());
        assert!(RbdLocation::parse("file:///x").is_none());
        assert_eq!(quote("a b/c"), "a%20b%2Fc");
        assert_eq!(unquote("a%20b%2Fc"), "a b/c");
    }
}
