//! The one HTTP client through which Vela fetches URLs it was given by API users (locations
//! of the read-only HTTP store today; web-download and glance-download imports later).
//!
//! Every request is guarded twice:
//! - Glance's `[import_filtering_opts]` ([`FilterOpts`]): schemes, hosts and ports, allow-lists
//!   overriding deny-lists, checked on the URL and again on every redirect hop;
//! - Vela's address refusal: whatever a name resolves to, the client never connects to a
//!   loopback, link-local, private, unique-local, multicast or otherwise internal address
//!   (also in their IPv4-mapped, -compatible, NAT64, 6to4 and Teredo IPv6 forms) unless the
//!   operator lists its network in `allowed_networks`. Names are resolved by the client's own
//!   resolver, which drops refused addresses, so the address checked is the address connected
//!   to; IP-literal URLs (which never reach a resolver) are checked before each request and
//!   each redirect.
//!
//! Environment proxies are ignored, connects, idle reads and metadata requests are bounded in
//! time, bodies in size. Errors are typed ([`OutboundError`]) and never carry the `user:pass@`
//! part of a URL.
//!
//! [`OutboundClient::trusted`] builds the same client without filters or address refusal, for
//! endpoints the operator configured (another region's image service from the catalog).

use std::error::Error as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use reqwest::header::{HeaderMap, CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use reqwest::Url;

use crate::ByteRange;

/// Redirects followed per request (as Glance's http store).
pub const MAX_REDIRECTS: usize = 5;

/// A network in `allowed_networks` (`10.1.0.0/16`, `fd00::/8`; a bare address is one host).
pub type Cidr = ipnet::IpNet;

/// Parses a network for `allowed_networks`; a bare address means that address alone.
pub fn parse_cidr(s: &str) -> Result<Cidr, String> {
    let s = s.trim();
    if let Ok(net) = s.parse::<Cidr>() {
        return Ok(net.trunc());
    }
    s.parse::<IpAddr>()
        .map(Cidr::from)
        .map_err(|_| format!("'{s}' is not a network (a.b.c.d/n, x:y::/n or an address)"))
}

/// Glance's `[import_filtering_opts]`, plus Vela's `allowed_networks`.
///
/// As Glance's `validate_import_uri`: a non-empty allow-list makes the matching deny-list
/// ignored; a URL without a scheme or host is refused; the port is checked only when the URL
/// names one (`http://host/` passes whatever `allowed_ports` says; `http://host:80/` is
/// checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterOpts {
    pub allowed_schemes: Vec<String>,
    pub disallowed_schemes: Vec<String>,
    pub allowed_hosts: Vec<String>,
    pub disallowed_hosts: Vec<String>,
    pub allowed_ports: Vec<u16>,
    pub disallowed_ports: Vec<u16>,
    /// Networks exempt from the built-in address refusal (e.g. `10.20.0.0/16` for an internal
    /// mirror). Empty by default: no internal address is reachable.
    pub allowed_networks: Vec<Cidr>,
}

impl Default for FilterOpts {
    fn default() -> Self {
        FilterOpts {
            allowed_schemes: vec!["http".into(), "https".into()],
            disallowed_schemes: Vec::new(),
            allowed_hosts: Vec::new(),
            disallowed_hosts: Vec::new(),
            allowed_ports: vec![80, 443],
            disallowed_ports: Vec::new(),
            allowed_networks: Vec::new(),
        }
    }
}

impl FilterOpts {
    /// The scheme, host and port filters. `host` is the bare host (no brackets), `port` the
    /// port the URL names, if any.
    pub fn check(&self, scheme: &str, host: &str, port: Option<u16>) -> Result<(), OutboundError> {
        let listed = |list: &[String], v: &str| list.iter().any(|x| x.eq_ignore_ascii_case(v));
        let refused_scheme = if self.allowed_schemes.is_empty() {
            listed(&self.disallowed_schemes, scheme)
        } else {
            !listed(&self.allowed_schemes, scheme)
        };
        if scheme.is_empty() || refused_scheme {
            return Err(OutboundError::Refused(format!(
                "scheme '{scheme}' is not allowed"
            )));
        }
        let refused_host = if self.allowed_hosts.is_empty() {
            listed(&self.disallowed_hosts, host)
        } else {
            !listed(&self.allowed_hosts, host)
        };
        if host.is_empty() || refused_host {
            return Err(OutboundError::Refused(format!(
                "host '{host}' is not allowed"
            )));
        }
        // Glance: `if port and …`: no port (or 0) is not checked.
        if let Some(p) = port.filter(|p| *p != 0) {
            let refused_port = if self.allowed_ports.is_empty() {
                self.disallowed_ports.contains(&p)
            } else {
                !self.allowed_ports.contains(&p)
            };
            if refused_port {
                return Err(OutboundError::Refused(format!("port {p} is not allowed")));
            }
        }
        Ok(())
    }

    /// Whether `ip` (or the IPv4 address it embeds) is in `allowed_networks`.
    pub fn network_allows(&self, ip: IpAddr) -> bool {
        let embedded = match ip {
            IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        self.allowed_networks
            .iter()
            .any(|n| n.contains(&ip) || embedded.is_some_and(|e| n.contains(&e)))
    }
}

/// Why an address is refused by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    Unspecified,
    /// 0.0.0.0/8 ("this network"; Linux connects 0.x to the local host).
    ThisNetwork,
    Loopback,
    LinkLocal,
    /// 10/8, 172.16/12, 192.168/16.
    Private,
    /// 100.64/10 (carrier-grade NAT).
    SharedAddressSpace,
    /// fc00::/7.
    UniqueLocal,
    /// fec0::/10 (deprecated, still routed as local by some stacks).
    SiteLocal,
    Multicast,
    Broadcast,
    /// 240/4.
    Reserved,
    /// 64:ff9b:1::/48, the local-use NAT64 prefix.
    LocalNat64,
}

impl AddressClass {
    pub fn as_str(self) -> &'static str {
        match self {
            AddressClass::Unspecified => "unspecified",
            AddressClass::ThisNetwork => "in 0.0.0.0/8",
            AddressClass::Loopback => "loopback",
            AddressClass::LinkLocal => "link-local",
            AddressClass::Private => "private",
            AddressClass::SharedAddressSpace => "shared address space (100.64.0.0/10)",
            AddressClass::UniqueLocal => "unique-local",
            AddressClass::SiteLocal => "site-local",
            AddressClass::Multicast => "multicast",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Reserved => "reserved",
            AddressClass::LocalNat64 => "local-use NAT64",
        }
    }
}

impl std::fmt::Display for AddressClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The class that makes `ip` refused by default, or None for a public address.
pub fn refused_class(ip: IpAddr) -> Option<AddressClass> {
    match ip {
        IpAddr::V4(v4) => class_v4(v4),
        IpAddr::V6(v6) => class_v6(v6),
    }
}

fn class_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    let o = ip.octets();
    Some(if ip.is_unspecified() {
        AddressClass::Unspecified
    } else if o[0] == 0 {
        AddressClass::ThisNetwork
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if ip.is_link_local() {
        AddressClass::LinkLocal
    } else if ip.is_private() {
        AddressClass::Private
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        AddressClass::SharedAddressSpace
    } else if ip.is_broadcast() {
        AddressClass::Broadcast
    } else if ip.is_multicast() {
        AddressClass::Multicast
    } else if o[0] >= 240 {
        AddressClass::Reserved
    } else {
        return None;
    })
}

fn class_v6(ip: Ipv6Addr) -> Option<AddressClass> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some(AddressClass::Unspecified);
    }
    if ip.is_loopback() {
        return Some(AddressClass::Loopback);
    }
    if (s[0] & 0xffc0) == 0xfe80 {
        return Some(AddressClass::LinkLocal);
    }
    if (s[0] & 0xffc0) == 0xfec0 {
        return Some(AddressClass::SiteLocal);
    }
    if (s[0] & 0xfe00) == 0xfc00 {
        return Some(AddressClass::UniqueLocal);
    }
    if (s[0] & 0xff00) == 0xff00 {
        return Some(AddressClass::Multicast);
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        return Some(AddressClass::LocalNat64);
    }
    embedded_v4(ip).and_then(class_v4)
}

/// The IPv4 address an IPv6 address stands for or tunnels to: IPv4-mapped (`::ffff:a.b.c.d`),
/// IPv4-translated (`::ffff:0:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), NAT64
/// (`64:ff9b::a.b.c.d`), 6to4 (`2002:AABB:CCDD::`) and Teredo (the client address).
pub fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let v4 = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo]
        | [0, 0, 0, 0, 0xffff, 0, hi, lo]
        | [0, 0, 0, 0, 0, 0, hi, lo]
        | [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(v4(hi, lo)),
        [0x2002, hi, lo, ..] => Some(v4(hi, lo)),
        [0x2001, 0, _, _, _, _, hi, lo] => Some(v4(!hi, !lo)),
        _ => None,
    }
}

/// Outbound request failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    /// Refused by the filters or the address refusal (nothing was sent to that address).
    #[error("refused: {0}")]
    Refused(String),
    /// Not a usable URL.
    #[error("invalid URL: {0}")]
    BadUrl(String),
    /// No connection, no answer or no bytes in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The server could not be reached, the name not resolved, or the transfer broke.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The server answered with this non-success status.
    #[error("the server answered with status {0}")]
    Status(u16),
    /// The body is larger than the caller's cap (bytes).
    #[error("the response is larger than {0} bytes")]
    TooLarge(u64),
    /// More than [`MAX_REDIRECTS`] redirects.
    #[error("more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects,
    /// The client could not be built (TLS settings).
    #[error("configuration: {0}")]
    Config(String),
}

impl OutboundError {
    /// The `std::io::Error` a byte stream carries for this error.
    pub fn into_io(self) -> std::io::Error {
        let kind = match self {
            OutboundError::Timeout(_) => std::io::ErrorKind::TimedOut,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, self)
    }
}

/// `url` without its `user:password@` part, for messages and logs.
pub fn redact(url: &Url) -> String {
    if url.username().is_empty() && url.password().is_none() {
        return url.to_string();
    }
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// `raw` without its userinfo if it parses, else a placeholder (never the raw text, which
/// may hold credentials).
pub fn redact_str(raw: &str) -> String {
    Url::parse(raw).map_or_else(|_| "<invalid URL>".to_owned(), |u| redact(&u))
}

/// Whether the URL text names a port (`http://h:80/` does; `http://h/` does not), which the
/// parsed [`Url`] forgets when it is the scheme's default.
fn names_port(raw: &str) -> bool {
    let Some((_, rest)) = raw.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '\\', '?', '#']).next().unwrap_or("");
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let after_host = match hostport.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or("", |(_, after)| after),
        None => hostport,
    };
    after_host
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// What every request and redirect hop is checked against.
#[derive(Debug)]
struct Guard {
    /// None: a trusted client (no filters, no address refusal).
    filter: Option<FilterOpts>,
    /// Bounds name resolution.
    resolve_timeout: Duration,
}

impl Guard {
    fn check_ip(&self, ip: IpAddr) -> Result<(), OutboundError> {
        let Some(f) = &self.filter else {
            return Ok(());
        };
        match refused_class(ip) {
            Some(class) if !f.network_allows(ip) => {
                Err(OutboundError::Refused(format!("address {ip} is {class}")))
            }
            _ => Ok(()),
        }
    }

    /// Scheme, host and port filters and the literal-address check. `port`: the port the URL
    /// names (None: the scheme's default, unchecked).
    fn check(&self, url: &Url, port: Option<u16>) -> Result<(), OutboundError> {
        let scheme = url.scheme();
        if !matches!(scheme, "http" | "https") {
            return Err(OutboundError::Refused(format!(
                "scheme '{scheme}' is not supported"
            )));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| OutboundError::BadUrl("the URL has no host".into()))?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Some(f) = &self.filter {
            f.check(scheme, bare, port)?;
        }
        if let Ok(ip) = bare.parse::<IpAddr>() {
            self.check_ip(ip)?;
        } else if self.filter.is_some() && bare.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            // Glance refuses shorthand numeric hosts, which resolvers may read as addresses.
            return Err(OutboundError::Refused(format!(
                "host '{bare}' is a numeric shorthand"
            )));
        }
        Ok(())
    }

    /// Resolves `host` and keeps the addresses that may be connected to; fails when none do.
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, OutboundError> {
        let found =
            tokio::time::timeout(self.resolve_timeout, tokio::net::lookup_host((host, port)))
                .await
                .map_err(|_| OutboundError::Timeout(format!("resolving {host}")))?
                .map_err(|e| OutboundError::Unavailable(format!("cannot resolve {host}: {e}")))?;
        let mut kept = Vec::new();
        let mut refused = None;
        for addr in found {
            match self.check_ip(addr.ip()) {
                Ok(()) => kept.push(addr),
                Err(_) => {
                    refused = refused_class(addr.ip());
                    tracing::debug!(host, address = %addr.ip(), "refused address");
                }
            }
        }
        // The message names the class, not the address: it may reach the API user, who
        // should not learn internal addresses from it.
        match (kept.is_empty(), refused) {
            (false, _) => Ok(kept),
            (true, Some(class)) => Err(OutboundError::Refused(format!(
                "{host} resolves to a refused address ({class})"
            ))),
            (true, None) => Err(OutboundError::Unavailable(format!(
                "{host} resolves to no address"
            ))),
        }
    }
}

/// The resolver of guarded clients: tokio's, minus refused addresses.
struct GuardedResolver(Arc<Guard>);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = guard.resolve(&host, 0).await?;
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// Time limits and TLS settings of a client.
#[derive(Debug, Clone)]
pub struct ClientOpts {
    /// Resolving and connecting (10 s).
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes of a response (60 s).
    pub read_timeout: Duration,
    /// Whole HEAD and metadata requests (30 s).
    pub metadata_timeout: Duration,
    /// Accept any TLS certificate.
    pub insecure: bool,
    /// Extra PEM CA certificates to trust.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for ClientOpts {
    fn default() -> Self {
        ClientOpts {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            metadata_timeout: Duration::from_secs(30),
            insecure: false,
            ca_file: None,
        }
    }
}

/// The guarded HTTP client. Cheap to clone.
#[derive(Clone)]
pub struct OutboundClient {
    http: reqwest::Client,
    guard: Arc<Guard>,
    metadata_timeout: Duration,
}

impl std::fmt::Debug for OutboundClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundClient")
            .field("filter", &self.guard.filter)
            .finish_non_exhaustive()
    }
}

impl OutboundClient {
    /// A client for user-supplied URLs: `filter` and the address refusal apply.
    pub fn new(filter: FilterOpts, opts: &ClientOpts) -> Result<Self, OutboundError> {
        Self::build(Some(filter), opts)
    }

    /// A client for operator-configured endpoints: same limits, no filters, no address
    /// refusal.
    pub fn trusted(opts: &ClientOpts) -> Result<Self, OutboundError> {
        Self::build(None, opts)
    }

    fn build(filter: Option<FilterOpts>, opts: &ClientOpts) -> Result<Self, OutboundError> {
        let guard = Arc::new(Guard {
            filter,
            resolve_timeout: opts.connect_timeout,
        });
        let policy_guard = guard.clone();
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                return attempt.error(OutboundError::TooManyRedirects);
            }
            let url = attempt.url();
            match policy_guard.check(url, url.port()) {
                Ok(()) => attempt.follow(),
                Err(e) => attempt.error(e),
            }
        });
        let mut b = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(opts.connect_timeout)
            .read_timeout(opts.read_timeout)
            .redirect(policy)
            .dns_resolver(Arc::new(GuardedResolver(guard.clone())))
            .danger_accept_invalid_certs(opts.insecure);
        if let Some(path) = &opts.ca_file {
            let bad = |e: &dyn std::fmt::Display| {
                OutboundError::Config(format!("{}: {e}", path.display()))
            };
            let pem = std::fs::read(path).map_err(|e| bad(&e))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(&e))? {
                b = b.add_root_certificate(cert);
            }
        }
        let http = b
            .build()
            .map_err(|e| OutboundError::Config(e.to_string()))?;
        Ok(OutboundClient {
            http,
            guard,
            metadata_timeout: opts.metadata_timeout,
        })
    }

    /// The filters (None for a trusted client).
    pub fn filter(&self) -> Option<&FilterOpts> {
        self.guard.filter.as_ref()
    }

    /// Parses `url` and applies the scheme, host and port filters and, for an IP-literal
    /// host, the address refusal. No network access: usable at request time for a 400.
    pub fn check_url(&self, url: &str) -> Result<Url, OutboundError> {
        let parsed = Url::parse(url).map_err(|e| OutboundError::BadUrl(e.to_string()))?;
        let port = if names_port(url) {
            parsed.port_or_known_default()
        } else {
            None
        };
        self.guard.check(&parsed, port)?;
        Ok(parsed)
    }

    /// [`OutboundClient::check_url`], then resolves the host and refuses it when none of its
    /// addresses may be connected to (a name that does not resolve is `Unavailable`).
    pub async fn check_resolved(&self, url: &str) -> Result<Url, OutboundError> {
        let parsed = self.check_url(url)?;
        let host = parsed.host_str().unwrap_or("");
        let literal = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok();
        if !literal {
            let port = parsed.port_or_known_default().unwrap_or(0);
            self.guard.resolve(host, port).await?;
        }
        Ok(parsed)
    }

    /// `HEAD url`, within the metadata timeout.
    pub async fn head(&self, url: &str) -> Result<OutboundResponse, OutboundError> {
        self.send(
            reqwest::Method::HEAD,
            url,
            HeaderMap::new(),
            None,
            None,
            true,
        )
        .await
    }

    /// `GET url` (optionally a `Range`), its body streamed: no overall timeout, but each read
    /// must bring bytes within the read timeout, and a body beyond `max_size` is an error.
    pub async fn get(
        &self,
        url: &str,
        range: Option<ByteRange>,
        max_size: Option<u64>,
    ) -> Result<OutboundResponse, OutboundError> {
        self.send(
            reqwest::Method::GET,
            url,
            HeaderMap::new(),
            range,
            max_size,
            false,
        )
        .await
    }

    /// `GET url` with extra `headers` (a token), its body streamed as by [`Self::get`].
    pub async fn get_with(
        &self,
        url: &str,
        headers: HeaderMap,
        max_size: Option<u64>,
    ) -> Result<OutboundResponse, OutboundError> {
        self.send(reqwest::Method::GET, url, headers, None, max_size, false)
            .await
    }

    /// A small document (`GET` with `headers`, e.g. a token and `Accept`), read whole within
    /// the metadata timeout; more than `max_size` bytes is an error.
    pub async fn get_metadata(
        &self,
        url: &str,
        headers: HeaderMap,
        max_size: u64,
    ) -> Result<Bytes, OutboundError> {
        self.send(
            reqwest::Method::GET,
            url,
            headers,
            None,
            Some(max_size),
            true,
        )
        .await?
        .bytes()
        .await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        headers: HeaderMap,
        range: Option<ByteRange>,
        max_size: Option<u64>,
        bounded: bool,
    ) -> Result<OutboundResponse, OutboundError> {
        let mut url = self.check_url(url)?;
        let user = url.username().to_owned();
        let password = url.password().map(str::to_owned);
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let mut req = self.http.request(method, url.clone()).headers(headers);
        if !user.is_empty() || password.is_some() {
            req = req.basic_auth(user, password);
        }
        if let Some(r) = range {
            req = req.header(RANGE, format!("bytes={}-{}", r.start, r.end));
        }
        if bounded {
            req = req.timeout(self.metadata_timeout);
        }
        let resp = req.send().await.map_err(|e| from_reqwest(e, &url))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(OutboundError::Status(status.as_u16()));
        }
        let resp = OutboundResponse {
            resp,
            url,
            max_size,
        };
        if let (Some(max), Some(len)) = (max_size, resp.content_length()) {
            if len > max {
                return Err(OutboundError::TooLarge(max));
            }
        }
        Ok(resp)
    }
}

/// Our own error from the resolver or the redirect policy, else a classification.
fn from_reqwest(e: reqwest::Error, url: &Url) -> OutboundError {
    let mut src = e.source();
    while let Some(s) = src {
        if let Some(o) = s.downcast_ref::<OutboundError>() {
            return o.clone();
        }
        src = s.source();
    }
    let shown = redact(url);
    if e.is_timeout() {
        return OutboundError::Timeout(shown);
    }
    let detail = vela_domain::error::error_chain(&e.without_url());
    OutboundError::Unavailable(format!("{shown}: {detail}"))
}

/// A successful (2xx) answer.
#[derive(Debug)]
pub struct OutboundResponse {
    resp: reqwest::Response,
    /// The requested URL, without userinfo.
    url: Url,
    max_size: Option<u64>,
}

impl OutboundResponse {
    pub fn status(&self) -> u16 {
        self.resp.status().as_u16()
    }

    pub fn headers(&self) -> &HeaderMap {
        self.resp.headers()
    }

    /// The URL answered, after redirects (without userinfo).
    pub fn final_url(&self) -> String {
        redact(self.resp.url())
    }

    /// The `Content-Length` header.
    pub fn content_length(&self) -> Option<u64> {
        header_u64(self.headers(), CONTENT_LENGTH.as_str())
    }

    /// The whole object's size a 206 announces (`Content-Range: bytes a-b/total`).
    pub fn range_total(&self) -> Option<u64> {
        self.headers()
            .get(CONTENT_RANGE)?
            .to_str()
            .ok()?
            .rsplit_once('/')?
            .1
            .trim()
            .parse()
            .ok()
    }

    /// The body, chunk by chunk; fails once more than the cap has arrived.
    pub fn into_stream(self) -> BoxStream<'static, Result<Bytes, OutboundError>> {
        let (url, max) = (self.url, self.max_size);
        let mut seen = 0u64;
        let mut failed = false;
        self.resp
            .bytes_stream()
            .map(move |r| {
                let chunk = r.map_err(|e| from_reqwest(e, &url))?;
                seen = seen.saturating_add(chunk.len() as u64);
                match max {
                    Some(m) if seen > m => Err(OutboundError::TooLarge(m)),
                    _ => Ok(chunk),
                }
            })
            .take_while(move |r| {
                let go = !failed;
                failed |= r.is_err();
                futures::future::ready(go)
            })
            .boxed()
    }

    /// The whole body (within the cap).
    pub async fn bytes(self) -> Result<Bytes, OutboundError> {
        let mut stream = self.into_stream();
        let mut out = bytes::BytesMut::new();
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out.freeze())
    }
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn refused(r: Result<Url, OutboundError>) -> String {
        match r {
            Err(OutboundError::Refused(why)) => why,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn client(filter: FilterOpts) -> OutboundClient {
        OutboundClient::new(filter, &ClientOpts::default()).unwrap()
    }

    fn open(nets: &[&str]) -> FilterOpts {
        FilterOpts {
            allowed_ports: Vec::new(),
            allowed_networks: nets.iter().map(|n| parse_cidr(n).unwrap()).collect(),
            ..FilterOpts::default()
        }
    }

    #[test]
    fn glance_filters() {
        let c = client(FilterOpts::default());
        assert!(c.check_url("http://example.org/x").is_ok());
        assert!(c.check_url("https://example.org:443/x").is_ok());
        // No explicit port: not checked; an explicit one must be allowed (even the default).
        assert!(c.check_url("http://example.org:80/x").is_ok());
        assert!(refused(c.check_url("http://example.org:8080/x")).contains("port 8080"));
        assert!(refused(c.check_url("ftp://example.org/x")).contains("scheme"));
        assert!(matches!(
            c.check_url("not a url"),
            Err(OutboundError::BadUrl(_))
        ));

        // Allow-lists win over deny-lists.
        let f = FilterOpts {
            allowed_hosts: vec!["good.example".into()],
            disallowed_hosts: vec!["good.example".into()],
            allowed_ports: Vec::new(),
            disallowed_ports: vec![80, 8080],
            ..FilterOpts::default()
        };
        let c = client(f);
        assert!(c.check_url("http://GOOD.example/x").is_ok());
        assert!(refused(c.check_url("http://other.example/x")).contains("host"));
        assert!(refused(c.check_url("http://good.example:8080/x")).contains("port"));
        assert!(refused(c.check_url("http://good.example:80/x")).contains("port"));
        assert!(c.check_url("http://good.example/x").is_ok());
        assert!(c.check_url("http://good.example:8081/x").is_ok());

        let f = FilterOpts {
            allowed_schemes: Vec::new(),
            disallowed_schemes: vec!["http".into()],
            ..FilterOpts::default()
        };
        let c = client(f);
        assert!(refused(c.check_url("http://example.org/x")).contains("scheme"));
        assert!(c.check_url("https://example.org/x").is_ok());
        // A host deny-list compares the bare IPv6 address, as Glance's normalized host.
        let f = FilterOpts {
            disallowed_hosts: vec!["2001:db8::1".into()],
            ..FilterOpts::default()
        };
        assert!(refused(client(f).check_url("http://[2001:db8::1]/x")).contains("host"));
    }

    #[test]
    fn address_classes() {
        let class = |s: &str| refused_class(s.parse().unwrap());
        for (ip, want) in [
            ("127.0.0.1", Some(AddressClass::Loopback)),
            ("127.9.9.9", Some(AddressClass::Loopback)),
            ("0.0.0.0", Some(AddressClass::Unspecified)),
            ("0.1.2.3", Some(AddressClass::ThisNetwork)),
            ("169.254.169.254", Some(AddressClass::LinkLocal)),
            ("10.0.0.1", Some(AddressClass::Private)),
            ("172.16.5.4", Some(AddressClass::Private)),
            ("172.31.255.255", Some(AddressClass::Private)),
            ("192.168.1.1", Some(AddressClass::Private)),
            ("100.64.0.1", Some(AddressClass::SharedAddressSpace)),
            ("100.127.255.255", Some(AddressClass::SharedAddressSpace)),
            ("224.0.0.1", Some(AddressClass::Multicast)),
            ("255.255.255.255", Some(AddressClass::Broadcast)),
            ("240.0.0.1", Some(AddressClass::Reserved)),
            ("8.8.8.8", None),
            ("172.32.0.1", None),
            ("100.128.0.1", None),
            ("::1", Some(AddressClass::Loopback)),
            ("::", Some(AddressClass::Unspecified)),
            ("fe80::1", Some(AddressClass::LinkLocal)),
            ("febf::1", Some(AddressClass::LinkLocal)),
            ("fec0::1", Some(AddressClass::SiteLocal)),
            ("fd12:3456::1", Some(AddressClass::UniqueLocal)),
            ("fc00::1", Some(AddressClass::UniqueLocal)),
            ("ff02::1", Some(AddressClass::Multicast)),
            ("::ffff:127.0.0.1", Some(AddressClass::Loopback)),
            ("::ffff:169.254.169.254", Some(AddressClass::LinkLocal)),
            ("::ffff:0:10.0.0.1", Some(AddressClass::Private)),
            ("::127.0.0.1", Some(AddressClass::Loopback)),
            ("64:ff9b::a9fe:a9fe", Some(AddressClass::LinkLocal)),
            ("64:ff9b:1::1", Some(AddressClass::LocalNat64)),
            ("2002:7f00:1::", Some(AddressClass::Loopback)),
            ("2002:a00:1::1", Some(AddressClass::Private)),
            (
                "2001:0:4136:e378:8000:63bf:80ff:fffe",
                Some(AddressClass::Loopback),
            ),
            ("::ffff:8.8.8.8", None),
            ("2002:808:808::1", None),
            ("2001:4860:4860::8888", None),
        ] {
            assert_eq!(class(ip), want, "{ip}");
        }
    }

    #[test]
    fn literal_addresses_are_refused() {
        let c = client(open(&[]));
        for url in [
            "http://127.0.0.1:9292/v2/images",
            "http://[::1]/x",
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/x",
            "http://[::ffff:127.0.0.1]/x",
            "http://[::ffff:a9fe:a9fe]/x",
            "http://[fe80::1]/x",
            // WHATWG reads these as 127.0.0.1.
            "http://2130706433/x",
            "http://0x7f000001/x",
            "http://127.1/x",
            "http://0/x",
        ] {
            let why = refused(c.check_url(url));
            assert!(why.contains("address"), "{url}: {why}");
        }
        assert!(c.check_url("http://93.184.215.14/x").is_ok());
        // Allowed networks lift the refusal, mapped forms included.
        let c = client(open(&["127.0.0.0/8", "169.254.169.254"]));
        assert!(c.check_url("http://127.0.0.1:9292/x").is_ok());
        assert!(c.check_url("http://[::ffff:127.0.0.1]/x").is_ok());
        assert!(c.check_url("http://169.254.169.254/x").is_ok());
        assert!(refused(c.check_url("http://169.254.169.253/x")).contains("link-local"));
        assert!(refused(c.check_url("http://[::1]/x")).contains("loopback"));
        // A trusted client checks no address.
        let t = OutboundClient::trusted(&ClientOpts::default()).unwrap();
        assert!(t.check_url("http://127.0.0.1:5000/v3").is_ok());
        assert!(t.check_url("file:///etc/passwd").is_err());
    }

    #[test]
    fn ports_named_in_the_text() {
        assert!(names_port("http://h:80/"));
        assert!(names_port("http://u:p@h:80"));
        assert!(names_port("http://[::1]:80/x"));
        assert!(!names_port("http://[::1]/x"));
        assert!(!names_port("http://u:p@h/x"));
        assert!(!names_port("http://h/a:80"));
        assert!(!names_port("http://h:/x"));
    }

    #[test]
    fn credentials_never_show() {
        let u = Url::parse("http://alice:s3cret@example.org/x").unwrap();
        assert_eq!(redact(&u), "http://example.org/x");
        assert_eq!(
            redact_str("http://alice:s3cret@example.org/x"),
            "http://example.org/x"
        );
        assert!(!redact_str("http://alice:s3cret@exa mple").contains("s3cret"));
    }

    /// A server on `ip`:0 counting requests: `/data` answers "hello", `/to?u` redirects to
    /// `u`.
    async fn server(ip: &str) -> (SocketAddr, Arc<AtomicUsize>) {
        use axum::extract::RawQuery;
        use axum::response::{IntoResponse, Redirect};
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let app = axum::Router::new()
            .route("/data", axum::routing::get(|| async { "hello" }))
            .route(
                "/auth",
                axum::routing::get(|h: axum::http::HeaderMap| async move {
                    h.get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned()
                }),
            )
            .route(
                "/to",
                axum::routing::get(|RawQuery(q): RawQuery| async move {
                    Redirect::temporary(&q.unwrap_or_default()).into_response()
                }),
            )
            .layer(axum::middleware::from_fn(
                move |req: axum::extract::Request, next: axum::middleware::Next| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    next.run(req)
                },
            ));
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (addr, hits)
    }

    #[tokio::test]
    async fn names_resolving_to_refused_addresses_are_refused() {
        let (addr, hits) = server("127.0.0.1").await;
        let url = format!("http://localhost:{}/data", addr.port());
        let c = client(open(&[]));
        // The filters alone pass it; the resolution refuses it, at check time and at fetch.
        assert!(c.check_url(&url).is_ok());
        assert!(refused(c.check_resolved(&url).await).contains("localhost resolves"));
        let err = c.get(&url, None, None).await.unwrap_err();
        assert!(
            matches!(&err, OutboundError::Refused(w) if w.contains("loopback")),
            "{err:?}"
        );
        let err = c
            .head(&format!("http://127.0.0.1:{}/data", addr.port()))
            .await
            .unwrap_err();
        assert!(matches!(err, OutboundError::Refused(_)), "{err:?}");
        assert_eq!(hits.load(Ordering::SeqCst), 0);

        // Allowed when the operator lists loopback.
        let c = client(open(&["127.0.0.0/8", "::1/128"]));
        c.check_resolved(&url).await.unwrap();
        let body = c
            .get(&url, None, Some(5))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&body[..], b"hello");
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        // The size cap.
        let err = c.get(&url, None, Some(4)).await.unwrap_err();
        assert_eq!(err, OutboundError::TooLarge(4));
        // Statuses are typed.
        let err = c
            .get(
                &format!("http://localhost:{}/missing", addr.port()),
                None,
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(err, OutboundError::Status(404));
    }

    #[tokio::test]
    async fn redirects_are_checked_on_every_hop() {
        let (target, target_hits) = server("127.0.0.1").await;
        let (front, front_hits) = server("127.0.0.2").await;
        let to = |u: String| format!("http://{front}/to?{u}");
        // The front server is allowed; the redirect to loopback (literal or by name) is not.
        let c = client(open(&["127.0.0.2/32"]));
        for hop in [
            format!("http://{target}/data"),
            format!("http://localhost:{}/data", target.port()),
        ] {
            let err = c.get(&to(hop.clone()), None, None).await.unwrap_err();
            assert!(matches!(err, OutboundError::Refused(_)), "{hop}: {err:?}");
        }
        assert_eq!(front_hits.load(Ordering::SeqCst), 2);
        assert_eq!(target_hits.load(Ordering::SeqCst), 0);
        // Redirects obey the port filter too.
        let f = FilterOpts {
            allowed_ports: vec![front.port()],
            ..open(&["127.0.0.0/8"])
        };
        let err = client(f)
            .get(&to(format!("http://{target}/data")), None, None)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, OutboundError::Refused(w) if w.contains("port")),
            "{err:?}"
        );
        assert_eq!(target_hits.load(Ordering::SeqCst), 0);

        // Allowed when the target's network is.
        let c = client(open(&["127.0.0.0/8"]));
        let resp = c
            .get(&to(format!("http://{target}/data")), None, None)
            .await
            .unwrap();
        assert_eq!(resp.final_url(), format!("http://{target}/data"));
        assert_eq!(&resp.bytes().await.unwrap()[..], b"hello");
        assert_eq!(target_hits.load(Ordering::SeqCst), 1);

        // A redirect loop stops after five hops.
        let own = format!("http://{front}/to?http://{front}/to?http://{front}/to");
        let mut url = own;
        for _ in 0..4 {
            url = format!("http://{front}/to?{url}");
        }
        let err = c.get(&url, None, None).await.unwrap_err();
        assert_eq!(err, OutboundError::TooManyRedirects);
    }

    #[tokio::test]
    async fn credentials_go_as_basic_auth_and_stay_out_of_errors() {
        let (addr, _) = server("127.0.0.1").await;
        let c = client(open(&["127.0.0.1/32"]));
        let url = format!("http://alice:s3cret@{addr}/auth");
        let sent = c
            .get(&url, None, None)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        // base64("alice:s3cret")
        assert_eq!(&sent[..], b"Basic YWxpY2U6czNjcmV0");
        let c = client(open(&[]));
        let err = c
            .get("http://alice:s3cret@127.0.0.1/x", None, None)
            .await
            .unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
        let c = client(open(&["127.0.0.0/8"]));
        // Nothing listens on port 9.
        let err = c
            .get("http://alice:s3cret@127.0.0.1:9/x", None, None)
            .await
            .unwrap_err();
        assert!(matches!(err, OutboundError::Unavailable(_)), "{err:?}");
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }
}
