//! Configuration: built-in defaults, then a TOML file (`--config`), then `VELA_*` environment
//! variables (`VELA_SECTION__KEY`, e.g. `VELA_IMAGES__IMAGE_SIZE_CAP`), then command-line flags.
//! `vela.example.toml` at the repository root documents every key.

use std::path::{Path, PathBuf};

use anyhow::Context;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// Top-level sections, also the only `VELA_*` variables read.
const SECTIONS: &[&str] = &[
    "data_dir", "server", "database", "store", "stores", "images", "auth",
];

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the SQLite database and the image files live unless configured elsewhere.
    pub data_dir: PathBuf,
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub store: StoreConfig,
    /// More stores by name (Glance's multi-store): `[stores.NAME] type = "s3" | "file"`.
    pub stores: std::collections::BTreeMap<String, NamedStore>,
    pub images: ImagesConfig,
    pub auth: AuthConfig,
}

/// `[stores.NAME]`: one more image store.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct NamedStore {
    /// `file` (a directory), `s3` (AWS or any S3-compatible service), `swift`, `http`
    /// (read-only: serves locations that are http(s) URLs) or `rbd` (Ceph RBD; needs a build
    /// with the `rbd` feature).
    #[serde(rename = "type")]
    pub kind: String,
    /// `file`: the directory.
    pub path: Option<PathBuf>,
    /// `s3`: endpoint URL (e.g. `https://s3.amazonaws.com`, `http://127.0.0.1:7480`).
    pub endpoint: String,
    /// `s3`: signing region (`us-east-1` when empty).
    pub region: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    /// `s3`: object name prefix, e.g. `images/`.
    pub prefix: String,
    /// `s3`: `bucket.host` addressing instead of path style.
    pub virtual_hosted_style: bool,
    /// `s3`: multipart part size in MiB (5 or more; default 5).
    pub part_size_mib: Option<u64>,
    /// `s3`: parts uploaded at once (default 1). Each costs a few part sizes of memory; more
    /// helps on links with high latency.
    pub parts_in_flight: Option<usize>,
    /// `swift`: auth endpoint: v1 (`…/auth/1.0`) or Keystone v3 (`…/v3`).
    pub auth_url: String,
    /// `swift`: `1` (X-Auth-User/X-Auth-Key) or `3` (Keystone password; default).
    pub auth_version: Option<u8>,
    /// `swift` v1: user (`account:user`) and key.
    pub user: String,
    pub key: String,
    /// `swift` v3: Keystone user, password, project and domains (`Default`), and the catalog
    /// interface of the object-store endpoint (`public`).
    pub username: String,
    pub password: String,
    pub project_name: String,
    pub user_domain_name: Option<String>,
    pub project_domain_name: Option<String>,
    pub interface: Option<String>,
    /// `swift`: container (created if missing).
    pub container: String,
    /// `swift`: largest segment of an image in MiB (default 200).
    pub segment_size_mib: Option<u64>,
    /// `http`: accept any TLS certificate (default false: certificates are verified).
    pub insecure: bool,
    /// `http`: a PEM file of extra CA certificates to trust.
    pub ca_file: Option<PathBuf>,
    /// `rbd`: the pool (default `images`).
    pub pool: Option<String>,
    /// `rbd`: the ceph.conf to read (default: librados' search path).
    pub ceph_conf: Option<PathBuf>,
    /// `rbd`: the RADOS user (`client.<rados_user>`; default `admin`).
    pub rados_user: Option<String>,
    /// `rbd`: object size and write chunk, MiB, a power of two (default 8).
    pub chunk_size_mib: Option<u64>,
    /// `rbd`: seconds to wait for the cluster (connect, monitor and OSD operations; default 30).
    pub connect_timeout_secs: Option<u64>,
}

/// `[server]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Listen address.
    pub bind: String,
    /// Base URL clients should use in links (`Location`, version documents).
    pub public_endpoint: Option<String>,
}

/// `[database]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Database URL; default `sqlite://<data_dir>/vela.sqlite`.
    pub url: Option<String>,
    /// Read connections in the pool.
    pub max_connections: u32,
    /// Seconds a request waits for a connection before 503.
    pub acquire_timeout_secs: u64,
}

/// `[store]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Store id shown in `/v2/info/stores`.
    pub id: String,
    /// The store new image data goes to unless a request names one (`X-Image-Meta-Store`);
    /// default: this file store.
    pub default: Option<String>,
    /// Directory of image files; default `<data_dir>/images`.
    pub path: Option<PathBuf>,
    /// Seconds between sweeps removing data no image references (0: never; `vela store gc`
    /// runs one by hand).
    pub gc_interval_secs: u64,
    /// Unreferenced data younger than this many seconds is kept.
    pub gc_grace_secs: u64,
}

/// `[images]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImagesConfig {
    /// Largest image accepted, bytes.
    pub image_size_cap: u64,
    /// `os_hash_algo` for new data: md5, sha1, sha224, sha256, sha384, sha512.
    pub hashing_algorithm: String,
    /// Page size when `limit` is not given.
    pub limit_param_default: i64,
    /// Largest page size.
    pub api_limit_max: i64,
    pub disk_formats: Vec<String>,
    pub container_formats: Vec<String>,
    /// Custom properties per image (negative: unlimited).
    pub image_property_quota: i64,
    /// Tags per image (negative: unlimited).
    pub image_tag_quota: i64,
    /// Members per shared image (negative: unlimited).
    pub image_member_quota: i64,
    /// Import methods advertised to clients.
    pub enabled_import_methods: Vec<String>,
    /// Show each image's first data location as `direct_url` (Glance's option of the same
    /// name; off by default, as location URLs reveal the back-end layout).
    pub show_image_direct_url: bool,
    /// Show the `locations` list (Glance's `show_multiple_locations`).
    pub show_multiple_locations: bool,
    /// Seconds an upload stays `saving` without its node renewing the lease; after that any
    /// node returns the image to `queued` and removes the partial data.
    pub upload_lease_secs: u64,
    /// Deleting an image with data makes it `pending_delete`; the scrubber removes the data
    /// `scrub_time_secs` later.
    pub delayed_delete: bool,
    /// Seconds between a delayed delete and the removal of the data.
    pub scrub_time_secs: u64,
    /// Seconds between scrubber passes in the server (with `delayed_delete`).
    pub scrub_interval_secs: u64,
}

/// `[auth]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `embedded`: Vela serves Keystone's token API at `/v3` itself, with users, projects and
    /// roles in its database (`vela identity …`);
    /// `keystone`: validate tokens with a Keystone service (`[auth.keystone]`);
    /// `noauth`: trust identity headers (X-Roles, X-Project-Id, X-User-Id) set by a front end.
    pub mode: String,
    /// `embedded`: seconds a token lives.
    pub token_ttl_secs: u64,
    /// `embedded`: seconds a validated token is trusted by a node before the database is asked
    /// again (a revocation reaches other nodes within this time).
    pub token_cache_secs: u64,
    /// `embedded`: the region named in the service catalog.
    pub region: String,
    /// Let requests without a token through with no project and no roles (Glance's
    /// `allow_anonymous_access`). Glance's default rules grant such callers nothing; open
    /// public images to them with policy overrides (README, "Policy").
    pub allow_anonymous_access: bool,
    /// YAML (or JSON) file of oslo.policy rules overriding Glance's defaults by name.
    pub policy_file: Option<PathBuf>,
    /// INI file of property protections (Glance's format: one `[regex]` section per property
    /// pattern with `create`, `read`, `update`, `delete` permissions).
    pub property_protection_file: Option<PathBuf>,
    /// `roles` (permissions are role lists) or `policies` (a policy rule name each).
    pub property_protection_rule_format: String,
    /// `noauth`: roles of requests without identity headers.
    pub default_roles: Vec<String>,
    /// `noauth`: project of requests without identity headers.
    pub default_project: Option<String>,
    /// `noauth`: user of requests without identity headers.
    pub default_user: Option<String>,
    pub keystone: KeystoneSection,
}

/// `[auth.keystone]`: the Keystone service tokens are validated with, and Vela's service user.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeystoneSection {
    /// Keystone's v3 URL, e.g. `http://keystone:5000/v3`.
    pub auth_url: String,
    /// Sent to clients in `WWW-Authenticate` on 401; default `auth_url`.
    pub www_authenticate_uri: Option<String>,
    pub username: String,
    pub password: String,
    pub project_name: String,
    pub user_domain_name: String,
    pub project_domain_name: String,
    /// Seconds allowed for each request to Keystone (then 503).
    pub timeout_secs: u64,
    /// Seconds a validated token is trusted before Keystone is asked again.
    pub cache_ttl_secs: u64,
    /// Most validated tokens kept.
    pub cache_size: usize,
}

impl Default for KeystoneSection {
    fn default() -> Self {
        KeystoneSection {
            auth_url: String::new(),
            www_authenticate_uri: None,
            username: "vela".into(),
            password: String::new(),
            project_name: "service".into(),
            user_domain_name: "Default".into(),
            project_domain_name: "Default".into(),
            timeout_secs: 5,
            cache_ttl_secs: 300,
            cache_size: 10_000,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("vela-data"),
            server: ServerConfig::default(),
            database: DatabaseConfig::default(),
            store: StoreConfig::default(),
            stores: Default::default(),
            images: ImagesConfig::default(),
            auth: AuthConfig::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: "127.0.0.1:9292".into(),
            public_endpoint: None,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: None,
            max_connections: 8,
            acquire_timeout_secs: 10,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            id: "file".into(),
            default: None,
            path: None,
            gc_interval_secs: 3600,
            gc_grace_secs: 900,
        }
    }
}

impl Default for ImagesConfig {
    fn default() -> Self {
        let rules = vela_domain::ImageRules::default();
        ImagesConfig {
            image_size_cap: 1 << 40,
            hashing_algorithm: "sha512".into(),
            limit_param_default: 25,
            api_limit_max: 1000,
            disk_formats: rules.disk_formats,
            container_formats: rules.container_formats,
            image_property_quota: rules.image_property_quota,
            image_tag_quota: rules.image_tag_quota,
            image_member_quota: rules.image_member_quota,
            enabled_import_methods: Vec::new(),
            show_image_direct_url: false,
            show_multiple_locations: false,
            upload_lease_secs: 60,
            delayed_delete: false,
            scrub_time_secs: 43200,
            scrub_interval_secs: 300,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: "embedded".into(),
            token_ttl_secs: 3600,
            token_cache_secs: 5,
            region: "RegionOne".into(),
            allow_anonymous_access: false,
            policy_file: None,
            property_protection_file: None,
            property_protection_rule_format: "roles".into(),
            default_roles: vec!["admin".into()],
            default_project: None,
            default_user: None,
            keystone: KeystoneSection::default(),
        }
    }
}

/// Values given on the command line (they win over everything else).
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<String>,
}

impl Config {
    /// Loads defaults ← file ← environment ← flags.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> anyhow::Result<Self> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            anyhow::ensure!(
                path.exists(),
                "config file {} does not exist",
                path.display()
            );
            fig = fig.merge(Toml::file(path));
        }
        fig = fig.merge(Env::prefixed("VELA_").split("__").filter(|k| {
            let first = k.as_str().split('.').next().unwrap_or("");
            SECTIONS.iter().any(|s| first.eq_ignore_ascii_case(s))
        }));
        if let Some(d) = overrides.data_dir {
            fig = fig.merge(Serialized::default("data_dir", d));
        }
        if let Some(b) = overrides.bind {
            fig = fig.merge(Serialized::default("server.bind", b));
        }
        let cfg: Config = fig.extract().context("invalid configuration")?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            matches!(
                self.auth.property_protection_rule_format.as_str(),
                "roles" | "policies"
            ),
            "auth.property_protection_rule_format must be 'roles' or 'policies'"
        );
        for (name, s) in &self.stores {
            anyhow::ensure!(
                name != &self.store.id,
                "[stores.{name}] has the id of the built-in file store ([store] id)"
            );
            match s.kind.as_str() {
                "file" => anyhow::ensure!(s.path.is_some(), "[stores.{name}] needs a path"),
                "s3" => anyhow::ensure!(
                    !s.endpoint.is_empty() && !s.bucket.is_empty(),
                    "[stores.{name}] needs an endpoint and a bucket"
                ),
                "swift" => anyhow::ensure!(
                    !s.auth_url.is_empty() && !s.container.is_empty(),
                    "[stores.{name}] needs an auth_url and a container"
                ),
                "http" => {}
                "rbd" => anyhow::ensure!(
                    s.chunk_size_mib
                        .is_none_or(|c| c.is_power_of_two() && c <= 32),
                    "[stores.{name}] chunk_size_mib must be a power of two, at most 32"
                ),
                other => anyhow::bail!(
                    "[stores.{name}] type '{other}' is not one of: file, s3, swift, http, rbd"
                ),
            }
        }
        if let Some(d) = &self.store.default {
            anyhow::ensure!(
                d == &self.store.id || self.stores.contains_key(d),
                "store.default '{d}' is not a configured store"
            );
        }
        match self.auth.mode.as_str() {
            "noauth" | "embedded" => {}
            "keystone" => {
                let k = &self.auth.keystone;
                anyhow::ensure!(
                    k.auth_url.starts_with("http://") || k.auth_url.starts_with("https://"),
                    "auth.keystone.auth_url must be an http(s) URL when auth.mode = 'keystone'"
                );
                anyhow::ensure!(
                    !k.password.is_empty(),
                    "auth.keystone.password must be set when auth.mode = 'keystone'"
                );
            }
            other => anyhow::bail!("auth.mode '{other}' is not one of: embedded, keystone, noauth"),
        }
        anyhow::ensure!(
            self.images.limit_param_default >= 1,
            "images.limit_param_default must be at least 1"
        );
        anyhow::ensure!(
            self.images.api_limit_max >= 1,
            "images.api_limit_max must be at least 1"
        );
        anyhow::ensure!(
            vela_store::digest::HashAlgo::parse(&self.images.hashing_algorithm).is_some(),
            "images.hashing_algorithm '{}' is not supported",
            self.images.hashing_algorithm
        );
        Ok(())
    }

    /// The database URL (explicit, or SQLite in the data dir).
    pub fn database_url(&self) -> String {
        self.database
            .url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("vela.sqlite").display()))
    }

    /// The image directory (explicit, or `<data_dir>/images`).
    pub fn store_dir(&self) -> PathBuf {
        self.store
            .path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("images"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layering() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vela.toml");
        std::fs::write(
            &file,
            "[server]\nbind = \"0.0.0.0:1\"\n[images]\nimage_size_cap = 10\n",
        )
        .unwrap();
        let cfg = Config::load(Some(&file), Overrides::default()).unwrap();
        assert_eq!(cfg.server.bind, "0.0.0.0:1");
        assert_eq!(cfg.images.image_size_cap, 10);
        let cfg = Config::load(
            Some(&file),
            Overrides {
                bind: Some("127.0.0.1:0".into()),
                data_dir: Some("/tmp/x".into()),
            },
        )
        .unwrap();
        assert_eq!(cfg.server.bind, "127.0.0.1:0");
        assert_eq!(cfg.database_url(), "sqlite:///tmp/x/vela.sqlite");
        assert_eq!(cfg.store_dir(), PathBuf::from("/tmp/x/images"));

        // Environment beats the file; unrelated VELA_* variables are ignored.
        std::env::set_var("VELA_DATABASE__URL", "postgres://db/vela");
        std::env::set_var("VELA_IMAGES__IMAGE_SIZE_CAP", "42");
        std::env::set_var("VELA_TEST_SOMETHING_ELSE", "1");
        let cfg = Config::load(Some(&file), Overrides::default());
        std::env::remove_var("VELA_DATABASE__URL");
        std::env::remove_var("VELA_IMAGES__IMAGE_SIZE_CAP");
        std::env::remove_var("VELA_TEST_SOMETHING_ELSE");
        let cfg = cfg.unwrap();
        assert_eq!(cfg.database_url(), "postgres://db/vela");
        assert_eq!(cfg.images.image_size_cap, 42);
    }

    #[test]
    fn unknown_keys_and_bad_values_fail() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vela.toml");
        std::fs::write(&file, "[server]\nbnd = \"x\"\n").unwrap();
        assert!(Config::load(Some(&file), Overrides::default()).is_err());
        std::fs::write(&file, "[images]\nhashing_algorithm = \"crc\"\n").unwrap();
        assert!(Config::load(Some(&file), Overrides::default()).is_err());
        assert!(
            Config::load(Some(&dir.path().join("missing.toml")), Overrides::default()).is_err()
        );
    }

    #[test]
    fn example_config_is_valid() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../vela.example.toml");
        Config::load(Some(&example), Overrides::default()).unwrap();
    }
}
