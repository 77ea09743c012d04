//! Configuration: built-in defaults, then a TOML file (`--config`), then `VELA_*` environment
//! variables (`VELA_SECTION__KEY`, e.g. `VELA_IMAGES__IMAGE_SIZE_CAP`), then command-line flags.
//! `vela.example.toml` at the repository root documents every key.

use std::path::{Path, PathBuf};

use anyhow::Context;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use vela_domain::Secret;

/// The reserved store name of a shared staging area (as Glance's).
pub const STAGING_STORE: &str = "os_glance_staging_store";

/// Top-level sections, also the only `VELA_*` variables read.
const SECTIONS: &[&str] = &[
    "data_dir",
    "server",
    "database",
    "store",
    "stores",
    "images",
    "auth",
    "import_filtering_opts",
    "import",
    "image_format",
    "metadefs",
    "cache",
    "cors",
    "notifications",
    "metrics",
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
    pub stores: std::collections::BTreeMap<String, vela_store::StoreSettings>,
    pub images: ImagesConfig,
    pub auth: AuthConfig,
    /// What URLs Vela fetches for API users (http store locations; later web-download).
    pub import_filtering_opts: ImportFilteringOpts,
    pub import: ImportSection,
    pub image_format: ImageFormatSection,
    pub metadefs: MetadefsSection,
    pub cache: CacheSection,
    pub cors: CorsSection,
    pub notifications: crate::notifier::NotificationsSection,
    pub metrics: MetricsSection,
    pub quota: QuotaSection,
}

/// `[quota]`: per-project quotas with unified limits (Glance's `use_keystone_limits` and
/// oslo.limit's `[oslo_limit]` options). The limits come from Keystone (`mode = "keystone"`,
/// read with the service user's system-scoped token: give it the reader role on the system)
/// or from the embedded identity service's database (`vela identity limit …`, `/v3/limits`).
/// As with oslo.limit, a resource with no limit at all allows nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaSection {
    /// Enforce `image_size_total`, `image_stage_total`, `image_count_total` and
    /// `image_count_uploading`, and report them at `/v2/info/usage`.
    pub enabled: bool,
    /// Keystone: the image endpoint whose service and region the limits belong to.
    pub endpoint_id: String,
    /// Keystone, without `endpoint_id`: the image service's type, name, region and interface.
    pub endpoint_service_type: String,
    pub endpoint_service_name: String,
    pub endpoint_region_name: String,
    pub endpoint_interface: String,
    /// Keystone: seconds a project's limits are used without asking again (0: every time).
    /// A refusal is always confirmed with fresh limits, so raising a limit takes effect at
    /// once and lowering one within this time.
    pub cache_secs: u64,
}

impl Default for QuotaSection {
    fn default() -> Self {
        QuotaSection {
            enabled: false,
            endpoint_id: String::new(),
            endpoint_service_type: "image".into(),
            endpoint_service_name: String::new(),
            endpoint_region_name: String::new(),
            endpoint_interface: "public".into(),
            cache_secs: 10,
        }
    }
}

/// `[metrics]`: the operators' listener with Prometheus metrics (`/metrics`) and the detailed
/// health check (`/healthcheck`). Off while `bind` is empty. It has no authentication: bind it
/// to an address only monitoring can reach.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// `host:port`, e.g. `127.0.0.1:9393`.
    pub bind: String,
}

/// `[cors]`: cross-origin requests from browsers (oslo.middleware's CORS options, as Glance
/// has them), e.g. Horizon's direct upload from the browser to the image API. Off while
/// `allowed_origin` is empty.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsSection {
    /// Origins allowed (`https://dashboard.example.com`); `*` allows any, answered with the
    /// request's own origin.
    pub allowed_origin: Vec<String>,
    /// Whether the browser may send credentials (cookies, HTTP authentication).
    pub allow_credentials: bool,
    /// Response headers the page may read.
    pub expose_headers: Vec<String>,
    /// Seconds a browser may cache a preflight answer.
    pub max_age: u64,
    /// Methods allowed.
    pub allow_methods: Vec<String>,
    /// Request headers allowed.
    pub allow_headers: Vec<String>,
}

impl Default for CorsSection {
    fn default() -> Self {
        let list = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        CorsSection {
            allowed_origin: Vec::new(),
            allow_credentials: true,
            expose_headers: list(&[
                "Content-MD5",
                "X-Image-Meta-Checksum",
                "X-Auth-Token",
                "X-Subject-Token",
                "X-Service-Token",
                "X-OpenStack-Request-ID",
                "OpenStack-Image-Import-Methods",
                "OpenStack-Image-Store-Ids",
            ]),
            max_age: 3600,
            allow_methods: list(&["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD"]),
            allow_headers: list(&[
                "Content-MD5",
                "Content-Type",
                "X-Image-Meta-Checksum",
                "X-Storage-Token",
                "Accept-Encoding",
                "X-Auth-Token",
                "X-Identity-Status",
                "X-Roles",
                "X-Service-Catalog",
                "X-User-Id",
                "X-Tenant-Id",
                "X-OpenStack-Request-ID",
                "X-Image-Meta-Store",
                "X-Openstack-Stores",
                "X-Openstack-Append",
                "X-Openstack-All-Stores-Must-Succeed",
            ]),
        }
    }
}

/// `[cache]`: the image cache, a verified copy of image data on this node's disk (Glance's
/// `image_cache_dir` and its companions).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSection {
    /// Serve downloads through the cache, and offer the `/v2/cache` API (API v2.14–v2.18).
    pub enabled: bool,
    /// Where cached data lives (default `<data_dir>/image-cache`); local to the node.
    pub dir: Option<PathBuf>,
    /// Bytes kept after pruning; larger images are not cached (`image_cache_max_size`).
    pub max_size: u64,
    /// Partial files older than this are removed (`image_cache_stall_time`).
    pub stall_time_secs: u64,
    /// How often the server evicts copies of images no longer active, cleans and prunes.
    pub prune_interval_secs: u64,
    /// How often the prefetcher looks at the queue when no queueing woke it.
    pub prefetch_interval_secs: u64,
}

impl Default for CacheSection {
    fn default() -> Self {
        CacheSection {
            enabled: false,
            dir: None,
            max_size: 10 << 30,
            stall_time_secs: 86_400,
            prune_interval_secs: 300,
            prefetch_interval_secs: 30,
        }
    }
}

/// `[metadefs]`: the metadata definitions catalog.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetadefsSection {
    /// Load a catalog on the deployment's first start (once, whichever node starts first), so
    /// that clients such as Horizon never find it empty.
    pub load_on_first_start: bool,
    /// Definition files (Glance's format, e.g. Glance's `etc/metadefs`) to load on first start
    /// instead of Vela's own defaults.
    pub first_load_dir: Option<PathBuf>,
}

impl Default for MetadefsSection {
    fn default() -> Self {
        MetadefsSection {
            load_on_first_start: true,
            first_load_dir: None,
        }
    }
}

/// `[import]`: interoperable image import (methods are `images.enabled_import_methods`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImportSection {
    /// Directory of staged data (`PUT /stage`, web-download, glance-download); default
    /// `<data_dir>/staging`. Several nodes must share it (or configure a shared store as
    /// `[stores.os_glance_staging_store]`, which then takes its place).
    pub staging_path: Option<PathBuf>,
    /// Local scratch space of the plugins; default `<data_dir>/import-work`.
    pub work_dir: Option<PathBuf>,
    /// Plugins run on imported data, in order: `image_decompression`, `image_conversion`,
    /// `inject_image_metadata`, `no_op` (Glance's `image_import_plugins`).
    pub plugins: Vec<String>,
    /// Hours a finished task is kept (Glance's `task_time_to_live`).
    pub task_time_to_live_hours: u64,
    /// Imports one node runs at once; more wait their turn.
    pub max_running: usize,
    /// glance-download: properties (names or name prefixes) copied from the remote image.
    pub glance_download_properties: Vec<String>,
    pub conversion: ConversionSection,
    pub inject_metadata: InjectSection,
}

/// `[import.conversion]`: the `image_conversion` plugin.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConversionSection {
    /// `raw`, `qcow2` or `vmdk`.
    pub output_format: String,
    /// The `qemu-img` program.
    pub qemu_img: PathBuf,
    /// CPU seconds one `qemu-img` run may use.
    pub cpu_time_secs: u64,
    /// Address space of `qemu-img`, MiB.
    pub memory_mib: u64,
    /// Wall-clock seconds one `qemu-img` run may take.
    pub timeout_secs: u64,
}

/// `[import.inject_metadata]`: the `inject_image_metadata` plugin.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InjectSection {
    /// Properties added to imported images.
    pub properties: std::collections::BTreeMap<String, String>,
    /// Callers with one of these roles get nothing injected.
    pub ignore_user_roles: Vec<String>,
}

/// `[image_format]`: what the format inspector accepts (Glance's section of that name).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageFormatSection {
    /// Refuse data that is not the declared `disk_format` (bare containers).
    pub require_image_format_match: bool,
    /// VMDK subformats accepted.
    pub vmdk_allowed_types: Vec<String>,
    /// MBR/GPT checks whose failure is only logged.
    pub gpt_safety_checks_nonfatal: Vec<String>,
    /// Accept encrypted qcow2 images.
    pub allow_qcow2_encryption: bool,
}

impl Default for ImportSection {
    fn default() -> Self {
        ImportSection {
            staging_path: None,
            work_dir: None,
            plugins: Vec::new(),
            task_time_to_live_hours: 48,
            max_running: 4,
            glance_download_properties: ["hw_", "trait:", "os_distro", "os_secure_boot", "os_type"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            conversion: ConversionSection::default(),
            inject_metadata: InjectSection::default(),
        }
    }
}

impl Default for ConversionSection {
    fn default() -> Self {
        ConversionSection {
            output_format: "raw".into(),
            qemu_img: "qemu-img".into(),
            cpu_time_secs: 3600,
            memory_mib: 2048,
            timeout_secs: 6 * 3600,
        }
    }
}

impl Default for InjectSection {
    fn default() -> Self {
        InjectSection {
            properties: Default::default(),
            ignore_user_roles: vec!["admin".into()],
        }
    }
}

impl Default for ImageFormatSection {
    fn default() -> Self {
        let rules = vela_inspect::Rules::default();
        ImageFormatSection {
            require_image_format_match: rules.require_format_match,
            vmdk_allowed_types: rules.vmdk_allowed_types,
            gpt_safety_checks_nonfatal: rules.nonfatal_checks,
            allow_qcow2_encryption: rules.allow_qcow2_encryption,
        }
    }
}

impl ImageFormatSection {
    /// The inspector's rules.
    pub fn rules(&self) -> vela_inspect::Rules {
        vela_inspect::Rules {
            allow_qcow2_encryption: self.allow_qcow2_encryption,
            vmdk_allowed_types: self.vmdk_allowed_types.clone(),
            nonfatal_checks: self.gpt_safety_checks_nonfatal.clone(),
            require_format_match: self.require_image_format_match,
        }
    }
}

/// `[import_filtering_opts]`: Glance's URL filters for outbound fetches, plus
/// `allowed_networks`, the internal networks exempt from Vela's built-in refusal of loopback,
/// link-local, private and other internal addresses (docs/outbound.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImportFilteringOpts {
    /// Schemes allowed (a non-empty list makes `disallowed_schemes` ignored).
    pub allowed_schemes: Vec<String>,
    pub disallowed_schemes: Vec<String>,
    /// Hosts allowed (a non-empty list makes `disallowed_hosts` ignored).
    pub allowed_hosts: Vec<String>,
    pub disallowed_hosts: Vec<String>,
    /// Ports allowed when a URL names one (a non-empty list makes `disallowed_ports`
    /// ignored); a URL without a port is not checked.
    pub allowed_ports: Vec<u16>,
    pub disallowed_ports: Vec<u16>,
    /// Networks (`10.0.0.0/8`, `fd00::/8`, an address) Vela may connect to although they are
    /// internal.
    pub allowed_networks: Vec<String>,
}

impl Default for ImportFilteringOpts {
    fn default() -> Self {
        let d = vela_store::outbound::FilterOpts::default();
        ImportFilteringOpts {
            allowed_schemes: d.allowed_schemes,
            disallowed_schemes: d.disallowed_schemes,
            allowed_hosts: d.allowed_hosts,
            disallowed_hosts: d.disallowed_hosts,
            allowed_ports: d.allowed_ports,
            disallowed_ports: d.disallowed_ports,
            allowed_networks: Vec::new(),
        }
    }
}

impl ImportFilteringOpts {
    /// The filter of the outbound client.
    pub fn filter(&self) -> anyhow::Result<vela_store::outbound::FilterOpts> {
        let allowed_networks = self
            .allowed_networks
            .iter()
            .map(|n| vela_store::outbound::parse_cidr(n))
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("import_filtering_opts.allowed_networks: {e}"))?;
        Ok(vela_store::outbound::FilterOpts {
            allowed_schemes: self.allowed_schemes.clone(),
            disallowed_schemes: self.disallowed_schemes.clone(),
            allowed_hosts: self.allowed_hosts.clone(),
            disallowed_hosts: self.disallowed_hosts.clone(),
            allowed_ports: self.allowed_ports.clone(),
            disallowed_ports: self.disallowed_ports.clone(),
            allowed_networks,
        })
    }
}

/// `[server]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Listen address.
    pub bind: String,
    /// Base URL clients should use in links (`Location`, version documents).
    pub public_endpoint: Option<String>,
    /// Seconds a client has to send a request's headers; an idle keep-alive connection is
    /// closed after the same time.
    pub header_read_timeout_secs: u64,
    /// Largest request head (request line and headers), bytes; larger ones get 431.
    pub max_header_bytes: usize,
    /// Open client connections; beyond it new ones get 503 and are closed.
    pub max_connections: usize,
    /// Requests handled at once; beyond it requests get 503.
    pub max_concurrent_requests: usize,
    /// Seconds a request body may stall between two reads before the request fails.
    pub body_idle_timeout_secs: u64,
    /// Largest JSON request body, bytes (413 beyond; image data is bounded by
    /// `images.image_size_cap` instead).
    pub max_request_body_bytes: usize,
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
    /// Bytes of one custom property value (400 beyond).
    pub max_property_value_bytes: usize,
    /// Bytes of an image's name, tags and custom properties together (413 beyond).
    pub max_image_metadata_bytes: usize,
    /// Operations in one PATCH request (413 beyond).
    pub max_patch_operations: usize,
    /// Import methods offered: `glance-direct`, `web-download`, `copy-image`,
    /// `glance-download` (Glance's default is the first three).
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
    /// `embedded`: on a start with no users, create the admin (user and project `admin`,
    /// admin of the system too) with a generated password, and write `<data_dir>/openrc`
    /// (mode 0600) for clients. `vela identity bootstrap` works either way.
    pub first_run_admin: bool,
    /// `embedded`: seconds a token lives.
    pub token_ttl_secs: u64,
    /// `embedded`: seconds a validated token is trusted by a node before the database is asked
    /// again (a revocation reaches other nodes within this time).
    pub token_cache_secs: u64,
    /// `embedded`: the region named in the service catalog.
    pub region: String,
    /// `embedded`: seconds over which failed password logins are counted.
    pub login_failure_window_secs: u64,
    /// `embedded`: failed logins per user name in that window before further attempts get
    /// 429 (0: no limit).
    pub login_failures_per_user: u32,
    /// `embedded`: failed logins per client address in that window before further attempts
    /// get 429 (0: no limit).
    pub login_failures_per_address: u32,
    /// `embedded`: failed logins in a row that lock a user (Keystone's option of the same
    /// name; 0: never).
    pub lockout_failure_attempts: u32,
    /// `embedded`: seconds a lock lasts.
    pub lockout_duration_secs: u64,
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
    pub federation: FederationSection,
}

/// `[auth.federation]`: browser sign-on (WebSSO) of the embedded identity service through an
/// OpenID Connect provider (`vela identity idp create … --client-id … --client-secret …`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FederationSection {
    /// Dashboards a browser sign-on may hand its token to (Keystone's `trusted_dashboard`):
    /// the whole URL they pass as `origin`, e.g. Horizon's
    /// `https://dashboard.example.com/auth/websso/`.
    pub trusted_dashboard: Vec<String>,
    /// Vela's redirect URI as registered at the providers (default: the public endpoint, or
    /// the request's host, with `/v3/auth/OS-FEDERATION/websso/openid/redirect`).
    pub websso_redirect_uri: Option<String>,
    /// The scopes a browser sign-on asks the provider for: `openid` and whatever supplies the
    /// claims the mappings use (e.g. `groups`).
    pub websso_scope: String,
}

impl Default for FederationSection {
    fn default() -> Self {
        FederationSection {
            trusted_dashboard: Vec::new(),
            websso_redirect_uri: None,
            websso_scope: "openid profile email".into(),
        }
    }
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
    pub password: Secret,
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
            password: Secret::default(),
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
            import_filtering_opts: ImportFilteringOpts::default(),
            import: ImportSection::default(),
            image_format: ImageFormatSection::default(),
            metadefs: MetadefsSection::default(),
            cache: CacheSection::default(),
            cors: CorsSection::default(),
            quota: QuotaSection::default(),
            notifications: Default::default(),
            metrics: Default::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: "127.0.0.1:9292".into(),
            public_endpoint: None,
            header_read_timeout_secs: 30,
            max_header_bytes: 64 * 1024,
            max_connections: 2048,
            max_concurrent_requests: 512,
            body_idle_timeout_secs: 60,
            max_request_body_bytes: 2 * 1024 * 1024,
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
            max_property_value_bytes: rules.max_property_value_bytes,
            max_image_metadata_bytes: rules.max_image_metadata_bytes,
            max_patch_operations: rules.max_patch_operations,
            enabled_import_methods: ["glance-direct", "web-download", "copy-image"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
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
            first_run_admin: true,
            token_ttl_secs: 3600,
            token_cache_secs: 5,
            login_failure_window_secs: 60,
            login_failures_per_user: 10,
            login_failures_per_address: 30,
            lockout_failure_attempts: 0,
            lockout_duration_secs: 1800,
            region: "RegionOne".into(),
            allow_anonymous_access: false,
            policy_file: None,
            property_protection_file: None,
            property_protection_rule_format: "roles".into(),
            default_roles: vec!["admin".into()],
            default_project: None,
            default_user: None,
            keystone: KeystoneSection::default(),
            federation: FederationSection::default(),
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
        let srv = &self.server;
        anyhow::ensure!(
            srv.header_read_timeout_secs > 0 && srv.body_idle_timeout_secs > 0,
            "server.header_read_timeout_secs and server.body_idle_timeout_secs must be positive"
        );
        anyhow::ensure!(
            srv.max_connections > 0 && srv.max_concurrent_requests > 0,
            "server.max_connections and server.max_concurrent_requests must be positive"
        );
        anyhow::ensure!(
            srv.max_header_bytes >= 8192,
            "server.max_header_bytes must be at least 8192"
        );
        anyhow::ensure!(
            srv.max_request_body_bytes >= 64 * 1024,
            "server.max_request_body_bytes must be at least 65536"
        );
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
            s.check()
                .map_err(|e| anyhow::anyhow!("[stores.{name}] ({}): {e}", s.kind()))?;
        }
        if let Some(d) = &self.store.default {
            anyhow::ensure!(
                d == &self.store.id || self.stores.contains_key(d),
                "store.default '{d}' is not a configured store"
            );
        }
        let fed = &self.auth.federation;
        let http_url = |u: &str| u.starts_with("http://") || u.starts_with("https://");
        for d in &fed.trusted_dashboard {
            anyhow::ensure!(
                http_url(d) && d.len() <= 2048,
                "auth.federation.trusted_dashboard: '{d}' is not an http(s) URL"
            );
        }
        if let Some(u) = &fed.websso_redirect_uri {
            anyhow::ensure!(
                http_url(u),
                "auth.federation.websso_redirect_uri must be an http(s) URL"
            );
        }
        anyhow::ensure!(
            fed.websso_scope.split(' ').any(|s| s == "openid"),
            "auth.federation.websso_scope must include openid"
        );
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
        for m in &self.images.enabled_import_methods {
            anyhow::ensure!(
                vela_domain::import::METHODS.contains(&m.as_str()),
                "images.enabled_import_methods: '{m}' is not one of: {}",
                vela_domain::import::METHODS.join(", ")
            );
        }
        for p in &self.import.plugins {
            anyhow::ensure!(
                vela_import::Plugin::parse(p).is_some(),
                "import.plugins: '{p}' is not one of: image_decompression, image_conversion, inject_image_metadata, no_op"
            );
        }
        anyhow::ensure!(
            matches!(
                self.import.conversion.output_format.as_str(),
                "raw" | "qcow2" | "vmdk"
            ),
            "import.conversion.output_format must be raw, qcow2 or vmdk"
        );
        if let Some(s) = self.stores.get(STAGING_STORE) {
            anyhow::ensure!(
                matches!(s.kind(), "file" | "s3" | "swift"),
                "[stores.{STAGING_STORE}] must be a file, s3 or swift store"
            );
        }
        anyhow::ensure!(
            vela_store::digest::HashAlgo::parse(&self.images.hashing_algorithm).is_some(),
            "images.hashing_algorithm '{}' is not supported",
            self.images.hashing_algorithm
        );
        self.import_filtering_opts.filter()?;
        Ok(())
    }

    /// The database URL (explicit, or SQLite in the data dir).
    pub fn database_url(&self) -> String {
        self.database
            .url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("vela.sqlite").display()))
    }

    /// The database file when the database is SQLite (`sqlite://PATH[?options]`).
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        let url = self.database_url();
        let rest = url.strip_prefix("sqlite://")?;
        let path = rest.split('?').next().unwrap_or(rest);
        (!path.is_empty() && !path.starts_with(':')).then(|| PathBuf::from(path))
    }

    /// The staging directory (explicit, or `<data_dir>/staging`).
    pub fn staging_dir(&self) -> PathBuf {
        self.import
            .staging_path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("staging"))
    }

    /// The image cache directory (explicit, or `<data_dir>/image-cache`).
    pub fn cache_dir(&self) -> PathBuf {
        self.cache
            .dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("image-cache"))
    }

    /// The plugins' scratch directory (explicit, or `<data_dir>/import-work`).
    pub fn work_dir(&self) -> PathBuf {
        self.import
            .work_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("import-work"))
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
        assert_eq!(cfg.sqlite_path(), Some(PathBuf::from("/tmp/x/vela.sqlite")));

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
    fn import_filtering_opts() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vela.toml");
        let cfg = Config::load(None, Overrides::default()).unwrap();
        assert_eq!(
            cfg.import_filtering_opts.filter().unwrap(),
            vela_store::outbound::FilterOpts::default()
        );
        std::fs::write(
            &file,
            "[import_filtering_opts]\nallowed_ports = []\ndisallowed_hosts = [\"a.example\"]\n\
             allowed_networks = [\"127.0.0.0/8\", \"::1\", \"10.1.2.3/16\"]\n",
        )
        .unwrap();
        let f = Config::load(Some(&file), Overrides::default())
            .unwrap()
            .import_filtering_opts
            .filter()
            .unwrap();
        assert!(f.allowed_ports.is_empty());
        assert_eq!(f.disallowed_hosts, ["a.example"]);
        let nets: Vec<String> = f.allowed_networks.iter().map(|n| n.to_string()).collect();
        assert_eq!(nets, ["127.0.0.0/8", "::1/128", "10.1.0.0/16"]);
        // From the environment too.
        std::env::set_var("VELA_IMPORT_FILTERING_OPTS__ALLOWED_PORTS", "[80, 8080]");
        let cfg = Config::load(Some(&file), Overrides::default());
        std::env::remove_var("VELA_IMPORT_FILTERING_OPTS__ALLOWED_PORTS");
        assert_eq!(cfg.unwrap().import_filtering_opts.allowed_ports, [80, 8080]);
        std::fs::write(
            &file,
            "[import_filtering_opts]\nallowed_networks = [\"lan\"]\n",
        )
        .unwrap();
        assert!(Config::load(Some(&file), Overrides::default()).is_err());
        std::fs::write(&file, "[import_filtering_opts]\nallowed_port = [80]\n").unwrap();
        assert!(Config::load(Some(&file), Overrides::default()).is_err());
    }

    #[test]
    fn example_config_is_valid() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../vela.example.toml");
        Config::load(Some(&example), Overrides::default()).unwrap();
    }
}
