//! The store contract: the same tests for every store. The filesystem store always runs; the
//! S3 store runs against the real S3 server named by `VELA_S3_ENDPOINT` (`scripts/ceph.sh
//! start` exports it with the bucket and keys), the Swift store against radosgw's Swift API
//! (`VELA_SWIFT_*`, same script) and against OpenStack Swift (`VELA_OS_SWIFT_*`,
//! `scripts/swift.sh start`), with tempauth and, when Swift was started beside a Keystone,
//! through Keystone. They must run when `VELA_REQUIRE_S3=1` (CI).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use md5::{Digest, Md5};
use vela_store::fs::FsStore;
use vela_store::object::{ObjectBackend, S3Config};
use vela_store::remote::KeystoneAuth;
use vela_store::swift::{SwiftAuth, SwiftConfig, SwiftStore};
use vela_store::{ByteRange, ByteStream, ImageId, LocationUrl, Store, StoreError};

const MIB: u64 = 1 << 20;

/// Deterministic test data: `len` bytes, streamed in 1 MiB chunks.
fn data(seed: u8, len: u64) -> ByteStream {
    let chunks = len.div_ceil(MIB);
    futures::stream::iter((0..chunks).map(move |i| {
        let n = (len - i * MIB).min(MIB) as usize;
        let v: Vec<u8> = (0..n)
            .map(|j| ((i as usize * 31 + j * 7) as u8) ^ seed)
            .collect();
        Ok(Bytes::from(v))
    }))
    .boxed()
}

async fn md5_of(mut s: ByteStream) -> (String, u64) {
    let mut h = Md5::new();
    let mut n = 0;
    while let Some(c) = s.next().await {
        let c = c.unwrap();
        n += c.len() as u64;
        h.update(&c);
    }
    (hex::encode(h.finalize()), n)
}

async fn collect(s: ByteStream) -> Vec<u8> {
    s.map(|c| c.unwrap().to_vec()).concat().await
}

fn image_id() -> ImageId {
    ImageId::generate()
}

/// Every contract check against one store.
async fn contract(store: Arc<dyn Store>) {
    // Round trips with checksums, including empty and multi-part sizes.
    for (seed, len) in [(1u8, 0u64), (2, 1), (3, 5 * MIB + 1), (4, 1024 * MIB)] {
        let id = image_id();
        let stored = store.put(&id, data(seed, len)).await.unwrap();
        assert_eq!(stored.size, len, "{} size of {len}", store.id());
        assert_eq!(store.size(&stored.location).await.unwrap(), len);
        let fetched = store.get(&stored.location, None).await.unwrap();
        assert_eq!(fetched.total_size, len);
        let want = md5_of(data(seed, len)).await;
        assert_eq!(
            md5_of(fetched.body).await,
            want,
            "{} data of {len}",
            store.id()
        );

        if len > 1 {
            // Ranged reads: first byte, a middle stretch, the last byte.
            let all_head = collect(data(seed, len.min(MIB))).await;
            for (start, end) in [(0, 0), (1, len.min(MIB) - 1), (len - 1, len - 1)] {
                let got = store
                    .get(&stored.location, Some(ByteRange { start, end }))
                    .await
                    .unwrap();
                assert_eq!(got.total_size, len);
                let bytes = collect(got.body).await;
                assert_eq!(bytes.len() as u64, end - start + 1);
                if end < MIB {
                    assert_eq!(bytes, all_head[start as usize..=end as usize]);
                }
            }
        }
        let listed = store.list().await.unwrap();
        assert!(listed
            .iter()
            .any(|o| o.image_id == id.as_str() && !o.partial));

        // Delete is idempotent; the data is gone.
        store.delete(&stored.location).await.unwrap();
        store.delete(&stored.location).await.unwrap();
        assert!(matches!(
            store.get(&stored.location, None).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            store.size(&stored.location).await,
            Err(StoreError::NotFound(_))
        ));
        // Nothing of it is left, not even parts or segments.
        let listed = store.list().await.unwrap();
        assert!(
            !listed.iter().any(|o| o.image_id == id.as_str()),
            "{}: data of a deleted {len}-byte object left: {listed:?}",
            store.id()
        );
    }

    // A failing upload leaves nothing readable behind, small or multipart.
    for len in [10u64, 12 * MIB] {
        let id = image_id();
        let failing = data(9, len)
            .chain(futures::stream::iter([Err(std::io::Error::other(
                "client went away",
            ))]))
            .boxed();
        assert!(matches!(
            store.put(&id, failing).await,
            Err(StoreError::Body(_))
        ));
        let listed = store.list().await.unwrap();
        assert!(
            !listed.iter().any(|o| o.image_id == id.as_str()),
            "{}: a failed upload of {len} left data: {listed:?}",
            store.id()
        );
    }

    // Locations of other stores are refused.
    assert!(matches!(
        store.get(&"nowhere://x/y".into(), None).await,
        Err(StoreError::ForeignLocation(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open("file", dir.path()).unwrap();
    contract(Arc::new(store)).await;
}

fn s3_config() -> Option<S3Config> {
    let Ok(endpoint) = std::env::var("VELA_S3_ENDPOINT") else {
        assert!(
            std::env::var("VELA_REQUIRE_S3").as_deref() != Ok("1"),
            "VELA_REQUIRE_S3=1 but VELA_S3_ENDPOINT is not set (scripts/ceph.sh start)"
        );
        eprintln!("VELA_S3_ENDPOINT not set: S3 contract test skipped");
        return None;
    };
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    Some(S3Config {
        endpoint,
        region: var("VELA_S3_REGION"),
        bucket: var("VELA_S3_BUCKET"),
        access_key: var("VELA_S3_ACCESS_KEY"),
        secret_key: var("VELA_S3_SECRET_KEY").into(),
        prefix: format!("contract-{}/", &image_id().as_str()[..8]),
        virtual_hosted_style: false,
        part_size: 5 << 20,
        parts_in_flight: 2,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_store_keeps_the_contract() {
    let Some(cfg) = s3_config() else { return };
    contract(Arc::new(ObjectBackend::s3("s3", &cfg).unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_s3_is_a_typed_error() {
    let Some(mut cfg) = s3_config() else { return };
    cfg.endpoint = "http://127.0.0.1:9".into();
    let store = ObjectBackend::s3("s3", &cfg).unwrap();
    let loc = LocationUrl::from(format!("s3://{}/{}x", cfg.bucket, cfg.prefix));
    let t0 = std::time::Instant::now();
    assert!(matches!(
        store.get(&loc, None).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        store.put(&image_id(), data(1, 10)).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(t0.elapsed() < std::time::Duration::from_secs(60));
    // Wrong keys: refused, typed.
    let Some(mut cfg) = s3_config() else { return };
    cfg.secret_key = "wrong".into();
    let store = ObjectBackend::s3("s3", &cfg).unwrap();
    assert!(matches!(
        store.put(&image_id(), data(1, 10)).await,
        Err(StoreError::Denied(_))
    ));
}

/// A Swift store's settings from `{prefix}_AUTH_URL`, `_USER`, `_KEY` (v1 auth): radosgw's
/// Swift API (`VELA_SWIFT`, from `scripts/ceph.sh start`) or OpenStack Swift with tempauth
/// (`VELA_OS_SWIFT`, from `scripts/swift.sh start`).
fn swift_config(prefix: &str) -> Option<SwiftConfig> {
    let Ok(auth_url) = std::env::var(format!("{prefix}_AUTH_URL")) else {
        assert!(
            std::env::var("VELA_REQUIRE_S3").as_deref() != Ok("1"),
            "VELA_REQUIRE_S3=1 but {prefix}_AUTH_URL is not set (scripts/ceph.sh or swift.sh start)"
        );
        eprintln!("{prefix}_AUTH_URL not set: this Swift contract test is skipped");
        return None;
    };
    let var = |k: &str| std::env::var(format!("{prefix}_{k}")).unwrap_or_default();
    Some(swift_settings(SwiftAuth::V1 {
        auth_url,
        user: var("USER"),
        key: var("KEY").into(),
    }))
}

fn swift_settings(auth: SwiftAuth) -> SwiftConfig {
    SwiftConfig {
        auth,
        container: "vela-contract".into(),
        prefix: format!("contract-{}/", &image_id().as_str()[..8]),
        // Small segments, so that 5 MiB + 1 and 1 GiB are multi-segment objects.
        segment_size: 4 * MIB,
    }
}

/// OpenStack Swift behind Keystone (`scripts/swift.sh start` with a Keystone from
/// `scripts/keystone.sh start`): v3 password auth as Vela's service user, storage URL from the
/// catalog.
fn keystone_swift_config() -> Option<SwiftConfig> {
    if std::env::var("VELA_OS_SWIFT_KEYSTONE").as_deref() != Ok("1") {
        assert!(
            std::env::var("VELA_REQUIRE_KEYSTONE").as_deref() != Ok("1")
                || std::env::var("VELA_REQUIRE_S3").as_deref() != Ok("1"),
            "a Keystone and Swift are required but Swift runs without Keystone"
        );
        eprintln!("VELA_OS_SWIFT_KEYSTONE is not 1: Swift-with-Keystone contract test skipped");
        return None;
    }
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    Some(swift_settings(SwiftAuth::Keystone(KeystoneAuth {
        auth_url: var("KEYSTONE_URL"),
        username: var("KEYSTONE_SERVICE_USER"),
        password: var("KEYSTONE_SERVICE_PASSWORD").into(),
        project_name: "service".into(),
        user_domain_name: "Default".into(),
        project_domain_name: "Default".into(),
        interface: "public".into(),
        region: None,
    })))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radosgw_swift_store_keeps_the_contract() {
    let Some(cfg) = swift_config("VELA_SWIFT") else {
        return;
    };
    contract(Arc::new(SwiftStore::new("swift", cfg).unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openstack_swift_store_keeps_the_contract() {
    let Some(cfg) = swift_config("VELA_OS_SWIFT") else {
        return;
    };
    contract(Arc::new(SwiftStore::new("swift", cfg).unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keystone_swift_store_keeps_the_contract() {
    let Some(cfg) = keystone_swift_config() else {
        return;
    };
    contract(Arc::new(SwiftStore::new("swift", cfg).unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_or_refused_swift_is_a_typed_error() {
    for prefix in ["VELA_SWIFT", "VELA_OS_SWIFT"] {
        let Some(mut cfg) = swift_config(prefix) else {
            continue;
        };
        let good = cfg.clone();
        cfg.auth = SwiftAuth::V1 {
            auth_url: "http://127.0.0.1:9/auth/1.0".into(),
            user: "u".into(),
            key: "k".into(),
        };
        let store = SwiftStore::new("swift", cfg).unwrap();
        assert!(matches!(
            store.put(&image_id(), data(1, 10)).await,
            Err(StoreError::Unavailable(_))
        ));
        let mut cfg = good;
        if let SwiftAuth::V1 { key, .. } = &mut cfg.auth {
            *key = "wrong".into();
        }
        let store = SwiftStore::new("swift", cfg).unwrap();
        assert!(
            matches!(
                store.put(&image_id(), data(1, 10)).await,
                Err(StoreError::Denied(_))
            ),
            "{prefix}: wrong key"
        );
    }
    // Keystone: a wrong password is refused by Keystone itself.
    if let Some(mut cfg) = keystone_swift_config() {
        if let SwiftAuth::Keystone(auth) = &mut cfg.auth {
            auth.password = "wrong".into();
        }
        let store = SwiftStore::new("swift", cfg).unwrap();
        assert!(matches!(
            store.put(&image_id(), data(1, 10)).await,
            Err(StoreError::Denied(_))
        ));
    }
}

/// The RBD store against the cluster of `CEPH_CONF` (`scripts/ceph.sh start`), pool
/// `CEPH_RBD_POOL`; required when `VELA_REQUIRE_S3=1` (CI).
#[cfg(feature = "rbd")]
fn rbd_config() -> Option<vela_store::rbd::RbdConfig> {
    let Ok(conf) = std::env::var("CEPH_CONF") else {
        assert!(
            std::env::var("VELA_REQUIRE_S3").as_deref() != Ok("1"),
            "VELA_REQUIRE_S3=1 but CEPH_CONF is not set (scripts/ceph.sh start)"
        );
        eprintln!("CEPH_CONF not set: RBD contract test skipped");
        return None;
    };
    Some(vela_store::rbd::RbdConfig {
        pool: std::env::var("CEPH_RBD_POOL").unwrap_or_else(|_| "rbd".into()),
        ceph_conf: Some(conf.into()),
        user: "admin".into(),
        // Small objects, so that 5 MiB + 1 spans several and the image grows while written.
        chunk_size: MIB,
        connect_timeout_secs: 10,
        options: Vec::new(),
    })
}

#[cfg(feature = "rbd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbd_store_keeps_the_contract() {
    let Some(cfg) = rbd_config() else { return };
    let store = Arc::new(vela_store::rbd::RbdStore::new("rbd", cfg).unwrap());
    contract(store.clone()).await;
    // Locations name the cluster, the pool, the image and its snapshot.
    let id = image_id();
    let stored = store.put(&id, data(5, 10)).await.unwrap();
    let parts: Vec<&str> = stored
        .location
        .as_str()
        .trim_start_matches("rbd://")
        .split('/')
        .collect();
    assert_eq!(parts.len(), 4, "{}", stored.location);
    assert_eq!(parts[2], id.as_str());
    assert_eq!(parts[3], "snap");
    // A clone of the snapshot (what Nova and Cinder make, here with Ceph's own `rbd` tool)
    // keeps the data in use: deleting it is refused, typed, and works once the clone is gone.
    let pool = std::env::var("CEPH_RBD_POOL").unwrap_or_else(|_| "rbd".into());
    let rbd = |args: &[&str]| {
        let out = std::process::Command::new("rbd")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "rbd {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let child = format!("{pool}/clone-{id}");
    rbd(&["clone", &format!("{pool}/{id}@snap"), &child]);
    assert!(matches!(
        store.delete(&stored.location).await,
        Err(StoreError::InUse(_))
    ));
    assert_eq!(store.size(&stored.location).await.unwrap(), 10);
    rbd(&["rm", "--no-progress", &child]);
    store.delete(&stored.location).await.unwrap();
    // An interrupted upload's image (no snapshot yet) is removed by abort_partial.
    let stored = store.put(&id, data(5, 10)).await.unwrap();
    store.abort_partial(&id).await.unwrap();
    assert!(matches!(
        store.size(&stored.location).await,
        Err(StoreError::NotFound(_))
    ));
}

#[cfg(feature = "rbd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_ceph_is_a_typed_error() {
    let Some(mut cfg) = rbd_config() else { return };
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("ceph.conf");
    std::fs::write(
        &conf,
        "[global]\nmon_host = v1:127.0.0.1:9\nauth_cluster_required = none\n\
         auth_service_required = none\nauth_client_required = none\n",
    )
    .unwrap();
    cfg.ceph_conf = Some(conf);
    cfg.connect_timeout_secs = 2;
    let store = vela_store::rbd::RbdStore::new("rbd", cfg).unwrap();
    let t0 = std::time::Instant::now();
    assert!(matches!(
        store.put(&image_id(), data(1, 10)).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(t0.elapsed() < std::time::Duration::from_secs(30));
}

/// The vSphere store against VMware's vCenter simulator (`scripts/vcsim.sh start` exports
/// `VCSIM_*`); required when `VELA_REQUIRE_VCSIM=1` (CI).
fn vmware_config(password: Option<&str>) -> Option<vela_store::vmware::VmwareConfig> {
    let Ok(host) = std::env::var("VCSIM_HOST") else {
        assert!(
            std::env::var("VELA_REQUIRE_VCSIM").as_deref() != Ok("1"),
            "VCSIM_HOST is not set (scripts/vcsim.sh start) and VELA_REQUIRE_VCSIM=1"
        );
        eprintln!("WARNING: VCSIM_HOST not set: vmware store tests skipped");
        return None;
    };
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let settings = vela_store::vmware::VmwareSettings {
        server_host: host,
        server_username: var("VCSIM_USER"),
        server_password: vela_domain::Secret::new(
            password.map_or_else(|| var("VCSIM_PASSWORD"), str::to_owned),
        ),
        datastores: vec![format!(
            "{}:{}",
            var("VCSIM_DATACENTER"),
            var("VCSIM_DATASTORE")
        )],
        store_image_dir: Some(format!("/vela-contract-{}", &image_id().as_str()[..8])),
        insecure: true,
        ca_file: None,
        task_poll_interval_ms: Some(50),
    };
    Some(settings.config().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vmware_store_keeps_the_contract() {
    let Some(cfg) = vmware_config(None) else {
        return;
    };
    let store = vela_store::vmware::VmwareStore::new("vmware", cfg).unwrap();
    contract(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vmware_refusals_are_typed() {
    let Some(cfg) = vmware_config(Some("wrong-password")) else {
        return;
    };
    // A refused login, an unreachable server, a certificate not trusted.
    let refused = vela_store::vmware::VmwareStore::new("vmware", cfg.clone()).unwrap();
    assert!(matches!(
        refused.put(&image_id(), data(1, 10)).await,
        Err(StoreError::Denied(_))
    ));
    let mut gone = cfg.clone();
    gone.host = "127.0.0.1:9".into();
    let gone = vela_store::vmware::VmwareStore::new("vmware", gone).unwrap();
    assert!(matches!(
        gone.put(&image_id(), data(1, 10)).await,
        Err(StoreError::Unavailable(_))
    ));
    let mut strict = vmware_config(None).unwrap();
    strict.insecure = false;
    let strict = vela_store::vmware::VmwareStore::new("vmware", strict).unwrap();
    assert!(matches!(
        strict.put(&image_id(), data(1, 10)).await,
        Err(StoreError::Unavailable(_))
    ));
}

/// The Cinder store against a real Cinder on the Ceph cluster (`scripts/cinder.sh start`
/// exports `CINDER_*`), volume type `volume_type`; required when `VELA_REQUIRE_CINDER=1` (CI).
/// The monitors come from Cinder's connection info (no ceph.conf is given).
#[cfg(feature = "rbd")]
fn cinder_config(volume_type: Option<&str>) -> Option<vela_store::cinder::CinderConfig> {
    let Ok(auth_url) = std::env::var("CINDER_AUTH_URL") else {
        assert!(
            std::env::var("VELA_REQUIRE_CINDER").as_deref() != Ok("1"),
            "CINDER_AUTH_URL is not set (scripts/cinder.sh start) and VELA_REQUIRE_CINDER=1"
        );
        eprintln!("WARNING: CINDER_AUTH_URL not set: cinder store tests skipped");
        return None;
    };
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let settings = vela_store::cinder::CinderSettings {
        auth_url,
        username: var("CINDER_USER"),
        password: var("CINDER_PASSWORD").into(),
        project_name: var("CINDER_PROJECT"),
        user_domain_name: None,
        project_domain_name: None,
        interface: None,
        region_name: None,
        endpoint: None,
        volume_type: Some(volume_type.map_or_else(|| var("CINDER_VOLUME_TYPE"), str::to_owned)),
        state_transition_timeout_secs: Some(120),
        ceph_conf: None,
        connector_host: Some("vela-contract".into()),
        insecure: false,
        ca_file: None,
    };
    settings.check().unwrap();
    Some(settings.config())
}

#[cfg(feature = "rbd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cinder_store_keeps_the_contract() {
    let Some(cfg) = cinder_config(None) else {
        return;
    };
    let store = vela_store::cinder::CinderStore::new("cinder", cfg).unwrap();
    contract(Arc::new(store)).await;
}

#[cfg(feature = "rbd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cinder_failures_are_typed() {
    use vela_store::cinder::CinderStore;
    let Some(cfg) = cinder_config(None) else {
        return;
    };
    // A refused password; an unreachable Keystone.
    let mut refused = cfg.clone();
    refused.auth.password = "wrong".into();
    let refused = CinderStore::new("cinder", refused).unwrap();
    assert!(matches!(
        refused.put(&image_id(), data(1, 10)).await,
        Err(StoreError::Denied(_))
    ));
    let mut gone = cfg.clone();
    gone.auth.auth_url = "http://127.0.0.1:9/v3".into();
    let gone = CinderStore::new("cinder", gone).unwrap();
    assert!(matches!(
        gone.put(&image_id(), data(1, 10)).await,
        Err(StoreError::Unavailable(_))
    ));
    // A volume type Cinder does not know: the settings are wrong.
    let unknown = CinderStore::new("cinder", cinder_config(Some("no-such-type")).unwrap());
    assert!(matches!(
        unknown.unwrap().put(&image_id(), data(1, 10)).await,
        Err(StoreError::Config(_))
    ));
    // A type no back-end serves: the volume ends in `error`, which is reported, and the
    // volume is removed.
    let store = CinderStore::new("cinder", cinder_config(Some("vela-nowhere")).unwrap()).unwrap();
    let id = image_id();
    let err = store.put(&id, data(1, 10)).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Unavailable(m) if m.contains("error")),
        "{err:?}"
    );
    let listed = store.list().await.unwrap();
    assert!(
        !listed.iter().any(|o| o.image_id == id.as_str()),
        "{listed:?}"
    );
    // A volume that is not there.
    let missing = "cinder://5f0e9a43-5ee8-4c59-a1a7-1b1a4c0f0a11".into();
    assert!(matches!(
        store.get(&missing, None).await,
        Err(StoreError::NotFound(_))
    ));
    store.delete(&missing).await.unwrap();
}

/// Readers of one volume share one attachment; a download that starts while another runs
/// gets the same bytes, and the attachment goes when both end.
#[cfg(feature = "rbd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cinder_concurrent_reads_share_an_attachment() {
    let Some(cfg) = cinder_config(None) else {
        return;
    };
    let store = Arc::new(vela_store::cinder::CinderStore::new("cinder", cfg).unwrap());
    let id = image_id();
    let stored = store.put(&id, data(5, 3 * MIB)).await.unwrap();
    let want = md5_of(data(5, 3 * MIB)).await;
    let (a, b) = tokio::join!(
        store.get(&stored.location, None),
        store.get(&stored.location, None)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(md5_of(a.body).await, want);
    assert_eq!(md5_of(b.body).await, want);
    // Once both are done the volume can be deleted (its attachment is removed first).
    delete_once_read(&store, &stored.location).await;
}

/// A token of the store's Cinder user and the project's Cinder endpoint (`CINDER_URL` with
/// the project id), for calls the store does not make.
#[cfg(feature = "rbd")]
async fn cinder_session(http: &reqwest::Client) -> (String, String) {
    let var = |k: &str| std::env::var(k).unwrap();
    let scope = |name: String| serde_json::json!({"name": name, "domain": {"id": "default"}});
    let body = serde_json::json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": var("CINDER_USER"), "domain": {"id": "default"},
            "password": var("CINDER_PASSWORD")}}},
        "scope": {"project": scope(var("CINDER_PROJECT"))}}});
    let r = http
        .post(format!("{}/auth/tokens", var("CINDER_AUTH_URL")))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let token = r.headers()["x-subject-token"].to_str().unwrap().to_owned();
    let v: serde_json::Value = r.json().await.unwrap();
    let project = v["token"]["project"]["id"].as_str().unwrap();
    (format!("{}/{project}", var("CINDER_URL")), token)
}

/// An attach that failed half way leaves its attachment `reserved`, which holds the volume (it
/// is not multi-attach). A download removes it once it has stayed reserved a while, and reads.
#[cfg(feature = "rbd")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cinder_read_removes_an_attachment_left_reserved() {
    let Some(cfg) = cinder_config(None) else {
        return;
    };
    let store = vela_store::cinder::CinderStore::new("cinder", cfg).unwrap();
    let stored = store.put(&image_id(), data(6, MIB)).await.unwrap();
    let volume = vela_store::cinder::volume_of(stored.location.as_str(), "cinder").unwrap();
    let http = reqwest::Client::new();
    let (cinder, token) = cinder_session(&http).await;
    let call = |method: reqwest::Method, path: String| {
        http.request(method, format!("{cinder}{path}"))
            .header("x-auth-token", &token)
            .header("openstack-api-version", "volume 3.54")
    };
    // An attachment without a connector is only a reservation.
    let r = call(reqwest::Method::POST, "/attachments".into())
        .json(&serde_json::json!({"attachment": {"volume_uuid": volume}}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let v: serde_json::Value = r.json().await.unwrap();
    let reserved = v["attachment"]["id"].as_str().unwrap().to_owned();

    let t0 = std::time::Instant::now();
    let got = store.get(&stored.location, None).await.unwrap();
    assert_eq!(md5_of(got.body).await, md5_of(data(6, MIB)).await);
    assert!(
        t0.elapsed().as_secs() >= 10,
        "read before the reservation went stale"
    );
    let r = call(reqwest::Method::GET, format!("/attachments/{reserved}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::NOT_FOUND);
    delete_once_read(&store, &stored.location).await;
}

/// Deletes a Cinder image once the downloads that ended have let its attachment go.
#[cfg(feature = "rbd")]
async fn delete_once_read(store: &vela_store::cinder::CinderStore, location: &LocationUrl) {
    let t0 = std::time::Instant::now();
    loop {
        match store.delete(location).await {
            Ok(()) => break,
            Err(StoreError::InUse(_)) if t0.elapsed().as_secs() < 30 => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await
            }
            Err(e) => panic!("{e:?}"),
        }
    }
}
