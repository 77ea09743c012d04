//! Secrets never reach `vela config` output or the log; what Vela keeps on disk is private.

use std::process::Command;

use serde_json::json;

use crate::helpers::TestApp;

const SECRETS: &[&str] = &[
    "db-secret-1",
    "ks-secret-2",
    "s3-secret-3",
    "sw-secret-4",
    "sw-key-5",
    "amqp-secret-6",
];

fn config_with_secrets(dir: &std::path::Path) -> std::path::PathBuf {
    let toml = r#"
[database]
url = "postgres://vela:db-secret-1@127.0.0.1:1/vela"
acquire_timeout_secs = 2

[auth]
mode = "keystone"

[auth.keystone]
auth_url = "http://127.0.0.1:1/v3"
password = "ks-secret-2"

[stores.s3a]
type = "s3"
endpoint = "http://127.0.0.1:1"
bucket = "b"
access_key = "ak"
secret_key = "s3-secret-3"

[stores.sw]
type = "swift"
auth_url = "http://127.0.0.1:1/v3"
container = "c"
username = "u"
password = "sw-secret-4"
user = "a:u"
key = "sw-key-5"

[notifications]
driver = "messagingv2"
transport_url = "rabbit://vela:amqp-secret-6@127.0.0.1:1/"
"#;
    let path = dir.join("vela.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

#[tokio::test]
async fn config_and_logs_show_no_secrets() {
    let app = TestApp::spawn().await;
    if app.is_external() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_with_secrets(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_vela"))
        .arg("--config")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path())
        .arg("config")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    for s in SECRETS {
        assert!(!shown.contains(s), "{s} in:\n{shown}");
    }
    assert!(shown.contains("postgres://127.0.0.1:1/vela"), "{shown}");
    assert!(shown.contains("\"***\""), "{shown}");
    // A start that fails on the database names it without its password.
    let out = Command::new(env!("CARGO_BIN_EXE_vela"))
        .arg("--config")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["serve", "--bind", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("postgres://127.0.0.1:1/vela"), "{log}");
    for s in SECRETS {
        assert!(!log.contains(s), "{s} in:\n{log}");
    }
}

#[cfg(unix)]
#[tokio::test]
async fn files_on_disk_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let app = TestApp::spawn().await;
    if app.is_external() {
        return;
    }
    let img = app
        .create_active_image(json!({"name": app.name("private")}), b"some bytes")
        .await;
    let data = app.data_dir().unwrap().join("data");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let db = data.join("vela.sqlite");
    let images = data.join("images");
    let file = images.join(img["id"].as_str().unwrap());
    assert_eq!(mode(&images), 0o700, "{}", images.display());
    // (On PostgreSQL or MariaDB there is no database file.)
    if std::env::var("VELA_TEST_DB").is_err() {
        assert_eq!(mode(&db), 0o600, "{}", db.display());
    }
    assert_eq!(mode(&file), 0o600, "{}", file.display());
    // The test harness made the data directory itself with the usual 0755: Vela warns.
    assert_eq!(mode(&data), 0o755);
    let log = app.server_log();
    assert!(
        log.lines()
            .any(|l| l.contains("other local users may read this")
                && l.contains(data.to_str().unwrap())),
        "{log}"
    );
}
