//! Unified limits read from Keystone (`/v3/registered_limits`, `/v3/limits`), as oslo.limit
//! reads them for Glance: those of the image service's endpoint (its service and region),
//! project limits over registered defaults. Read with the service user's system-scoped token;
//! cached per project for `cache_ttl`.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use serde_json::Value;
use tokio::sync::OnceCell;
use vela_domain::quota::{BoxFuture, LimitSource, Limits};

use crate::keystone::Keystone;

/// Which endpoint's limits apply (oslo.limit's `[oslo_limit]` options).
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// The image endpoint's id; when empty, the endpoint is looked up by the next options.
    pub endpoint_id: String,
    pub service_type: String,
    /// Also matched when not empty.
    pub service_name: String,
    /// Empty: the endpoint may be in any region (there must be one).
    pub region: String,
    pub interface: String,
    /// How long a project's limits are trusted without asking Keystone again.
    pub cache_ttl: Duration,
}

/// Unified limits from Keystone.
pub struct KeystoneLimits {
    ks: Arc<Keystone>,
    cfg: LimitsConfig,
    /// The endpoint's service id and region id, found once.
    endpoint: OnceCell<(String, Option<String>)>,
    cache: Cache<String, Limits>,
}

fn enc(v: &str) -> String {
    form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

fn field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

impl KeystoneLimits {
    pub fn new(ks: Arc<Keystone>, cfg: LimitsConfig) -> Self {
        KeystoneLimits {
            cache: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(cfg.cache_ttl.max(Duration::from_millis(1)))
                .build(),
            ks,
            cfg,
            endpoint: OnceCell::new(),
        }
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        self.ks.system_get(path).await.map_err(|e| e.to_string())
    }

    /// The service and region of the image endpoint, as oslo.limit finds them.
    async fn find_endpoint(&self) -> Result<(String, Option<String>), String> {
        let c = &self.cfg;
        let ep = if !c.endpoint_id.is_empty() {
            self.get(&format!("/endpoints/{}", enc(&c.endpoint_id)))
                .await?
                .get("endpoint")
                .cloned()
                .ok_or("no endpoint in Keystone's answer")?
        } else {
            let services = self
                .get(&format!("/services?type={}", enc(&c.service_type)))
                .await?;
            let matching: Vec<&Value> = services
                .get("services")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|s| c.service_name.is_empty() || field(s, "name") == Some(&c.service_name))
                .collect();
            let [service] = matching.as_slice() else {
                return Err(format!(
                    "{} services of type '{}' named '{}' found; expected one",
                    matching.len(),
                    c.service_type,
                    c.service_name
                ));
            };
            let sid = field(service, "id").ok_or("a service without an id")?;
            let mut q = format!(
                "/endpoints?service_id={}&interface={}",
                enc(sid),
                enc(&c.interface)
            );
            if !c.region.is_empty() {
                q.push_str(&format!("&region_id={}", enc(&c.region)));
            }
            let found = self.get(&q).await?;
            let eps = found
                .get("endpoints")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let [ep] = eps.as_slice() else {
                return Err(format!(
                    "{} {} endpoints of service '{sid}' found; expected one",
                    eps.len(),
                    c.interface
                ));
            };
            ep.clone()
        };
        let service = field(&ep, "service_id")
            .ok_or("an endpoint without a service_id")?
            .to_owned();
        Ok((service, field(&ep, "region_id").map(str::to_owned)))
    }

    /// `(resource_name, limit)` pairs of one kind of limit.
    async fn pairs(
        &self,
        path: &str,
        key: &str,
        value: &str,
    ) -> Result<Vec<(String, i64)>, String> {
        let body = self.get(path).await?;
        Ok(body
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|l| {
                Some((
                    field(l, "resource_name")?.to_owned(),
                    l.get(value)?.as_i64()?,
                ))
            })
            .collect())
    }

    async fn fetch(&self, project: &str) -> Result<Limits, String> {
        let (service, region) = self
            .endpoint
            .get_or_try_init(|| self.find_endpoint())
            .await?;
        let mut filter = format!("service_id={}", enc(service));
        if let Some(r) = region {
            filter.push_str(&format!("&region_id={}", enc(r)));
        }
        let defaults = self
            .pairs(
                &format!("/registered_limits?{filter}"),
                "registered_limits",
                "default_limit",
            )
            .await?;
        let own = self
            .pairs(
                &format!("/limits?{filter}&project_id={}", enc(project)),
                "limits",
                "resource_limit",
            )
            .await?;
        Ok(Limits::resolve(
            defaults.iter().map(|(n, l)| (n.as_str(), *l)),
            own.iter().map(|(n, l)| (n.as_str(), *l)),
        ))
    }
}

impl LimitSource for KeystoneLimits {
    fn caches(&self) -> bool {
        !self.cfg.cache_ttl.is_zero()
    }
    fn limits<'a>(
        &'a self,
        project: &'a str,
        fresh: bool,
    ) -> BoxFuture<'a, Result<Limits, String>> {
        Box::pin(async move {
            if !fresh && !self.cfg.cache_ttl.is_zero() {
                if let Some(l) = self.cache.get(project) {
                    return Ok(l);
                }
            }
            let l = self.fetch(project).await?;
            self.cache.insert(project.to_owned(), l.clone());
            Ok(l)
        })
    }
}
