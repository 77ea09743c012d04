//! Disk-image content checks (format inspection) on every data write: upload (`PUT /file`),
//! glance-direct and web-download. The images are made by `qemu-img` (required: the tests fail
//! without it) in a temporary directory: unsafe ones (qcow2 with a backing or data file, VMDK
//! descriptors, QED), data that does not match the declared format, and safe ones whose
//! `virtual_size` Glance reads from the header. Checked against Glance 33 (`scripts/glance.sh`).

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{
    expect_error, pseudo_random, qemu_img, spawn_import_app, web_server, TestApp,
};

const MIB: u64 = 1 << 20;
const SAFETY: &str = "Image failed safety checks";
/// webob's explanation, which Glance's 415 puts before its own text.
const MEDIA_TYPE: &str =
    "The request media type application/octet-stream is not supported by this server.\n<br /><br />\n";
/// The message of an import task whose data was refused.
const TASK_FAILED: &str = "Task failed due to Internal Error";

/// The test images, by name.
struct Corpus {
    dir: tempfile::TempDir,
}

impl Corpus {
    fn build() -> Corpus {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        qemu_img(
            d,
            &[
                "create",
                "-f",
                "qcow2",
                "-b",
                "/etc/passwd",
                "-F",
                "raw",
                "backing.qcow2",
                "1M",
            ],
        );
        qemu_img(d, &["create", "-f", "raw", "datafile.raw", "1M"]);
        let data_file = format!("data_file={}", d.join("datafile.raw").display());
        qemu_img(
            d,
            &[
                "create",
                "-f",
                "qcow2",
                "-o",
                &data_file,
                "datafile.qcow2",
                "1M",
            ],
        );
        qemu_img(
            d,
            &[
                "create",
                "-f",
                "vmdk",
                "-o",
                "subformat=monolithicFlat",
                "flat.vmdk",
                "1M",
            ],
        );
        // Descriptors whose extent is a host file: one says monolithicFlat (a createType the
        // inspector refuses), one monolithicSparse (a descriptor cannot be a sparse image).
        for (name, create_type, kind) in [
            ("passwd.vmdk", "monolithicFlat", "FLAT"),
            ("passwd-sparse.vmdk", "monolithicSparse", "SPARSE"),
        ] {
            let offset = if kind == "FLAT" { " 0" } else { "" };
            std::fs::write(
                d.join(name),
                format!(
                    "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\n\
                     createType=\"{create_type}\"\n\n# Extent description\n\
                     RW 2048 {kind} \"/etc/passwd\"{offset}\n\n# The Disk Data Base\n#DDB\n\n\
                     ddb.virtualHWVersion = \"4\"\n"
                ),
            )
            .unwrap();
        }
        std::fs::write(d.join("random.bin"), pseudo_random(64 << 10, 0x5eed)).unwrap();
        qemu_img(d, &["create", "-f", "qed", "x.qed", "1M"]);
        qemu_img(
            d,
            &[
                "create",
                "-f",
                "qcow2",
                "-o",
                "compat=0.10",
                "compat010.qcow2",
                "1M",
            ],
        );
        qemu_img(
            d,
            &[
                "create",
                "-f",
                "qcow2",
                "-o",
                "compat=1.1",
                "compat11.qcow2",
                "1M",
            ],
        );
        qemu_img(
            d,
            &[
                "create",
                "-f",
                "vmdk",
                "-o",
                "subformat=streamOptimized",
                "stream.vmdk",
                "1M",
            ],
        );
        qemu_img(
            d,
            &[
                "create",
                "-f",
                "vmdk",
                "-o",
                "subformat=monolithicSparse",
                "sparse.vmdk",
                "1M",
            ],
        );
        qemu_img(d, &["create", "-f", "vpc", "x.vhd", "1M"]);
        qemu_img(d, &["create", "-f", "vhdx", "x.vhdx", "1M"]);
        qemu_img(d, &["create", "-f", "vdi", "x.vdi", "1M"]);
        qemu_img(d, &["create", "-f", "raw", "x.raw", "1M"]);
        Corpus { dir }
    }

    fn get(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// The files as (name, bytes), for a web server.
    fn files(&self) -> Vec<(String, Vec<u8>)> {
        std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let data = self.get(&name);
                (name, data)
            })
            .collect()
    }
}

/// Data refused by an upload: (file, declared disk_format, the 415's detail).
const REFUSED: &[(&str, &str, &str)] = &[
    ("backing.qcow2", "qcow2", SAFETY),
    ("datafile.qcow2", "qcow2", SAFETY),
    // A VMDK descriptor pointing at another file, and one pointing at a host path.
    ("flat.vmdk", "vmdk", SAFETY),
    ("passwd.vmdk", "vmdk", SAFETY),
    (
        "passwd-sparse.vmdk",
        "vmdk",
        "Image format inspection failed",
    ),
    (
        "random.bin",
        "qcow2",
        "Image disk_format qcow2 does not match stream data raw",
    ),
    (
        "random.bin",
        "vmdk",
        "Image disk_format vmdk does not match stream data raw",
    ),
    (
        "x.qed",
        "qcow2",
        "Image disk_format qcow2 does not match stream data qed",
    ),
    (
        "compat11.qcow2",
        "vmdk",
        "Image disk_format vmdk does not match stream data qcow2",
    ),
    // Declared raw, the detected format's safety checks still run; QED is always refused.
    ("backing.qcow2", "raw", SAFETY),
    ("flat.vmdk", "raw", SAFETY),
    ("x.qed", "raw", SAFETY),
];

/// Data accepted by an upload: (file, declared disk_format, virtual_size; None = the file's
/// size).
const ACCEPTED: &[(&str, &str, Option<u64>)] = &[
    ("compat010.qcow2", "qcow2", Some(MIB)),
    ("compat11.qcow2", "qcow2", Some(MIB)),
    ("stream.vmdk", "vmdk", Some(MIB)),
    ("sparse.vmdk", "vmdk", Some(MIB)),
    // qemu-img rounds a VHD's size up to whole cylinders; the footer says so.
    ("x.vhd", "vhd", Some(1_079_296)),
    ("x.vhdx", "vhdx", Some(MIB)),
    ("x.vdi", "vdi", Some(MIB)),
    ("x.raw", "raw", None),
    ("random.bin", "raw", None),
];

/// The imports' share of the corpus (each import costs Glance about half a second of CPU):
/// data refused on the way into the store, as (file, declared disk_format) ...
const IMPORT_REFUSED: &[(&str, &str)] = &[
    ("backing.qcow2", "qcow2"),
    ("datafile.qcow2", "qcow2"),
    ("passwd.vmdk", "vmdk"),
    ("random.bin", "qcow2"),
    ("x.qed", "qcow2"),
    ("flat.vmdk", "raw"),
];

/// ... and data accepted, as (file, declared disk_format, virtual_size; None = the file's size).
/// `compat11.qcow2` declared raw is in [`RAW_DECLARED`].
const IMPORT_ACCEPTED: &[(&str, &str, Option<u64>)] = &[
    ("compat11.qcow2", "qcow2", Some(MIB)),
    ("stream.vmdk", "vmdk", Some(MIB)),
    ("x.vhd", "vhd", Some(1_079_296)),
    ("x.vdi", "vdi", Some(MIB)),
    ("random.bin", "raw", None),
    ("compat11.qcow2", "raw", None),
];

/// Disk-format data (qcow2, VMDK, VHD, VDI) declared `raw`: Glance 33 accepts it
/// (virtual_size = the file's size); Vela deliberately refuses it (415 on upload, a failed
/// task on import): the data is not a raw disk.
const RAW_DECLARED: &[&str] = &[
    "compat11.qcow2",
    "sparse.vmdk",
    "stream.vmdk",
    "x.vhd",
    "x.vdi",
];

/// Glance's refusal text `want` (after webob's explanation); Vela's messages start the same
/// way and then say which checks failed.
fn assert_refusal(app: &TestApp, msg: &str, want: &str, what: &str) {
    if app.is_external() {
        assert_eq!(msg, format!("{MEDIA_TYPE}{want}"), "{what}");
        return;
    }
    let rest = msg
        .strip_prefix(MEDIA_TYPE)
        .unwrap_or_else(|| panic!("{what}: {msg:?}"));
    // Vela judges the same data but may name another reason first (e.g. QED is refused as
    // unsafe before the format mismatch is looked at).
    let ok = rest.starts_with(want)
        || [
            SAFETY,
            "Image format inspection failed",
            "Image disk_format",
        ]
        .iter()
        .any(|p| rest.starts_with(p));
    assert!(ok, "{what}: {msg:?}, want {want:?}");
}

/// A failed import's task message: Glance's is always the same; Vela's says why.
fn assert_task_failed(app: &TestApp, task: &Value, what: &str) {
    if app.is_external() {
        assert_eq!(task["message"], TASK_FAILED, "{what}: {task}");
    } else {
        let msg = task["message"].as_str().unwrap_or_default();
        assert!(!msg.is_empty() && msg != TASK_FAILED, "{what}: {task}");
    }
}

async fn image(app: &TestApp, name: &str, disk_format: &str) -> String {
    let img = app
        .create_image(json!({"name": app.name(name), "disk_format": disk_format,
                             "container_format": "bare"}))
        .await;
    img["id"].as_str().unwrap().to_owned()
}

fn assert_accepted(img: &Value, what: &str, size: usize, virtual_size: Option<u64>) {
    assert_eq!(img["status"], "active", "{what}: {img}");
    assert_eq!(img["size"], size as u64, "{what}: {img}");
    assert_eq!(
        img["virtual_size"],
        virtual_size.unwrap_or(size as u64),
        "{what}: {img}"
    );
}

/// Runs `f` over `cases`, four at a time.
async fn each<T, F, Fut>(cases: Vec<T>, f: F)
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    futures::stream::iter(cases.into_iter().map(f))
        .buffer_unordered(4)
        .collect::<Vec<()>>()
        .await;
}

#[tokio::test]
async fn upload_refuses_unsafe_or_mismatched_data() {
    let corpus = Corpus::build();
    let (app, _cheap) = spawn_import_app().await;
    each(REFUSED.to_vec(), |(file, format, detail)| {
        let (app, corpus) = (&app, &corpus);
        async move {
            let what = format!("{file} declared {format}");
            let id = image(app, file, format).await;
            let msg = expect_error(
                app.put_file(&id, corpus.get(file)).await,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            )
            .await;
            assert_refusal(app, &msg, detail, &what);
            let img = app.show(&id).await;
            assert_eq!(img["status"], "queued", "{what}: {img}");
            assert!(img["size"].is_null(), "{what}: {img}");
            assert!(img["virtual_size"].is_null(), "{what}: {img}");
            if !app.is_external() {
                // Glance 33 keeps the refused data's location, checksum and hash on the queued
                // image (and a later upload fails with 500); Vela drops them and accepts a
                // second, valid upload.
                assert!(img["checksum"].is_null(), "{what}: {img}");
                assert!(img.get("stores").is_none(), "{what}: {img}");
            }
        }
    })
    .await;

    if !app.is_external() {
        let id = image(&app, "retry", "qcow2").await;
        let resp = app.put_file(&id, corpus.get("backing.qcow2")).await;
        assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let good = corpus.get("compat11.qcow2");
        assert_eq!(
            app.put_file(&id, good.clone()).await.status(),
            StatusCode::NO_CONTENT
        );
        assert_accepted(&app.show(&id).await, "retry", good.len(), Some(MIB));
    }
}

#[tokio::test]
async fn upload_accepts_safe_data_and_reads_the_virtual_size() {
    let corpus = Corpus::build();
    let (app, _cheap) = spawn_import_app().await;
    each(ACCEPTED.to_vec(), |(file, format, vsize)| {
        let (app, corpus) = (&app, &corpus);
        async move {
            let what = format!("{file} declared {format}");
            let data = corpus.get(file);
            let id = image(app, file, format).await;
            let resp = app.put_file(&id, data.clone()).await;
            assert_eq!(resp.status(), StatusCode::NO_CONTENT, "{what}");
            assert_accepted(&app.show(&id).await, &what, data.len(), vsize);
        }
    })
    .await;

    // Formats Glance cannot inspect get no virtual_size.
    let data = corpus.get("x.raw");
    for format in ["ami", "ploop"] {
        let id = image(&app, format, format).await;
        assert_eq!(
            app.put_file(&id, data.clone()).await.status(),
            StatusCode::NO_CONTENT
        );
        let img = app.show(&id).await;
        assert_eq!(img["status"], "active", "{img}");
        assert!(img["virtual_size"].is_null(), "{format}: {img}");
    }
    // ... but data in an inspectable format must still match them.
    let id = image(&app, "ami-qcow2", "ami").await;
    let msg = expect_error(
        app.put_file(&id, corpus.get("compat11.qcow2")).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    )
    .await;
    assert_eq!(
        msg,
        format!("{MEDIA_TYPE}Image disk_format ami does not match stream data qcow2")
    );
}

#[tokio::test]
async fn upload_of_qcow2_or_vmdk_declared_raw() {
    let corpus = Corpus::build();
    let (app, _cheap) = spawn_import_app().await;
    for file in RAW_DECLARED {
        let data = corpus.get(file);
        let id = image(&app, file, "raw").await;
        let resp = app.put_file(&id, data.clone()).await;
        if app.is_external() {
            // Glance accepts it with a warning; the virtual size is the file's size.
            assert_eq!(resp.status(), StatusCode::NO_CONTENT, "{file}");
            assert_accepted(&app.show(&id).await, file, data.len(), None);
        } else {
            // Vela refuses it: a guest would boot the container format as a raw disk.
            assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{file}");
            assert_eq!(app.show(&id).await["status"], "queued");
        }
    }
}

/// How an import of refused data ends: the task failed, the store is marked failed, the lock
/// is gone and the image is not active.
fn assert_import_refused(app: &TestApp, img: &Value, task: &Value, what: &str) {
    assert_eq!(task["status"], "failure", "{what}: {task}");
    assert_task_failed(app, task, what);
    assert!(task["result"].is_null(), "{what}: {task}");
    assert_eq!(img["os_glance_failed_import"], "fast", "{what}: {img}");
    assert_eq!(img["os_glance_importing_to_stores"], "", "{what}: {img}");
    assert!(img.get("stores").is_none(), "{what}: {img}");
    assert!(img["virtual_size"].is_null(), "{what}: {img}");
}

#[tokio::test]
async fn glance_direct_inspects_the_staged_data() {
    let corpus = &Corpus::build();
    let (app, _cheap) = spawn_import_app().await;
    let app = &app;
    let import = |file: &'static str, format: &'static str| async move {
        let data = corpus.get(file);
        let id = image(app, file, format).await;
        assert_eq!(
            app.stage(&id, data.clone()).await.status(),
            StatusCode::NO_CONTENT
        );
        app.import_accepted(&id, &json!({"method": {"name": "glance-direct"}}))
            .await;
        let (img, task) = app.wait_for_import(&id).await;
        (data, img, task)
    };
    each(IMPORT_REFUSED.to_vec(), |(file, format)| async move {
        let what = format!("{file} declared {format}");
        let (data, img, task) = import(file, format).await;
        assert_import_refused(app, &img, &task, &what);
        // Glance 33 leaves a glance-direct image whose data was refused in `importing` (only
        // web-download's revert puts it back to queued); it is never active.
        assert!(
            ["importing", "queued", "uploading"].contains(&img["status"].as_str().unwrap_or("")),
            "{what}: {img}"
        );
        if app.is_external() {
            assert_eq!(img["status"], "importing", "{what}: {img}");
            assert_eq!(img["size"], data.len() as u64, "{what}: {img}");
        }
    })
    .await;
    each(
        IMPORT_ACCEPTED.to_vec(),
        |(file, format, vsize)| async move {
            let what = format!("{file} declared {format}");
            let (data, img, task) = import(file, format).await;
            if RAW_DECLARED.contains(&file) && format == "raw" && !app.is_external() {
                // Vela refuses qcow2/VMDK data declared raw (Glance accepts it).
                assert_eq!(task["status"], "failure", "{what}: {task}");
                assert_ne!(img["status"], "active", "{what}: {img}");
                return;
            }
            assert_eq!(task["status"], "success", "{what}: {task}");
            assert_accepted(&img, &what, data.len(), vsize);
            assert_eq!(img["stores"], "fast", "{what}: {img}");
        },
    )
    .await;
}

#[tokio::test]
async fn web_download_inspects_the_downloaded_data() {
    let corpus = Corpus::build();
    let files = corpus.files();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let (web, _dir) = web_server(&refs).await;
    let (app, _cheap) = spawn_import_app().await;
    let (app, corpus, web) = (&app, &corpus, &web);
    let import = |file: &'static str, format: &'static str| async move {
        let id = image(app, file, format).await;
        app.import_accepted(
            &id,
            &json!({"method": {"name": "web-download", "uri": format!("{web}/{file}")}}),
        )
        .await;
        let (img, task) = app.wait_for_import(&id).await;
        (corpus.get(file), img, task)
    };
    each(IMPORT_REFUSED.to_vec(), |(file, format)| async move {
        let what = format!("{file} declared {format}");
        let (_, img, task) = import(file, format).await;
        assert_import_refused(app, &img, &task, &what);
        assert_eq!(img["status"], "queued", "{what}: {img}");
        assert!(img["size"].is_null(), "{what}: {img}");
    })
    .await;
    each(
        IMPORT_ACCEPTED.to_vec(),
        |(file, format, vsize)| async move {
            let what = format!("{file} declared {format}");
            let (data, img, task) = import(file, format).await;
            if RAW_DECLARED.contains(&file) && format == "raw" && !app.is_external() {
                // Vela refuses qcow2/VMDK data declared raw (Glance accepts it).
                assert_eq!(task["status"], "failure", "{what}: {task}");
                assert_eq!(img["status"], "queued", "{what}: {img}");
                return;
            }
            assert_eq!(task["status"], "success", "{what}: {task}");
            assert_accepted(&img, &what, data.len(), vsize);
        },
    )
    .await;
}
