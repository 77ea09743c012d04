//! Data from elsewhere: a URL (`web-download`) and another region's image service
//! (`glance-download`). Every request goes through the guarded outbound client.

use futures::TryStreamExt;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::Value;
use vela_store::outbound::OutboundError;
use vela_store::ByteStream;

use crate::{Caller, ImportError, Importer};

/// Largest JSON document read from a remote service.
const METADATA_CAP: u64 = 4 << 20;

fn fetch_error(what: &str, e: OutboundError) -> ImportError {
    ImportError::failed(format!("{what}: {e}"))
}

/// Opens a web-download URL: the body and its announced size.
pub(crate) async fn web(
    imp: &Importer,
    uri: &str,
) -> Result<(ByteStream, Option<u64>), ImportError> {
    let cap = imp.inner.cfg.image_size_cap;
    let resp = imp
        .inner
        .web
        .get(uri, None, Some(cap))
        .await
        .map_err(|e| fetch_error("Downloading the image failed", e))?;
    let size = resp.content_length();
    if size.is_some_and(|s| s > cap) {
        return Err(ImportError::failed(format!(
            "The image at the URL is larger than the largest image allowed ({cap} bytes)"
        )));
    }
    let body = resp.into_stream().map_err(OutboundError::into_io);
    Ok((Box::pin(body), size))
}

/// Another region's image service, found in the identity catalog with the caller's token.
pub(crate) struct GlanceRemote<'a> {
    imp: &'a Importer,
    endpoint: String,
    token: String,
}

fn token_headers(token: &str) -> Result<HeaderMap, ImportError> {
    let mut h = HeaderMap::new();
    let v = HeaderValue::from_str(token)
        .map_err(|_| ImportError::failed("The caller's token cannot be forwarded."))?;
    h.insert("x-auth-token", v);
    h.insert("accept", HeaderValue::from_static("application/json"));
    Ok(h)
}

/// The image endpoint for `region` and `interface` in a Keystone v3 catalog.
pub(crate) fn image_endpoint(catalog: &Value, region: &str, interface: &str) -> Option<String> {
    catalog["catalog"]
        .as_array()?
        .iter()
        .filter(|s| s["type"] == "image")
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .find(|e| {
            (e["region_id"] == region || e["region"] == region) && e["interface"] == interface
        })
        .and_then(|e| {
            e["url"]
                .as_str()
                .map(|u| u.trim_end_matches('/').to_owned())
        })
}

/// The remote image's attributes copied to the new image: its formats and the properties
/// whose names start with one of `prefixes`.
pub(crate) fn copied_properties(remote: &Value, prefixes: &[String]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(obj) = remote.as_object() else {
        return out;
    };
    for key in ["disk_format", "container_format"] {
        if let Some(v) = obj.get(key).and_then(Value::as_str) {
            out.push((key.to_owned(), v.to_owned()));
        }
    }
    for (k, v) in obj {
        if k.starts_with("os_glance") {
            continue;
        }
        if let Some(v) = v.as_str() {
            if prefixes.iter().any(|p| k.starts_with(p.as_str())) {
                out.push((k.clone(), v.to_owned()));
            }
        }
    }
    out
}

impl<'a> GlanceRemote<'a> {
    /// Looks the region's image endpoint up in the catalog of the caller's token.
    pub(crate) async fn find(
        imp: &'a Importer,
        caller: &Caller,
        region: &str,
        interface: &str,
    ) -> Result<GlanceRemote<'a>, ImportError> {
        let token = caller
            .token
            .clone()
            .ok_or_else(|| ImportError::failed("glance-download needs the caller's token."))?;
        let identity = imp.inner.cfg.identity_url.as_deref().ok_or_else(|| {
            ImportError::failed("glance-download needs an identity service with a catalog.")
        })?;
        let url = format!("{}/auth/catalog", identity.trim_end_matches('/'));
        let body = imp
            .inner
            .trusted
            .get_metadata(&url, token_headers(&token)?, METADATA_CAP)
            .await
            .map_err(|e| fetch_error("Reading the service catalog failed", e))?;
        let catalog: Value = serde_json::from_slice(&body)
            .map_err(|_| ImportError::failed("The service catalog is not JSON."))?;
        let endpoint = image_endpoint(&catalog, region, interface).ok_or_else(|| {
            ImportError::failed(format!(
                "No image service endpoint for region {region} ({interface}) in the catalog."
            ))
        })?;
        Ok(GlanceRemote {
            imp,
            endpoint,
            token,
        })
    }

    fn url(&self, path: &str) -> String {
        let base = self.endpoint.trim_end_matches('/');
        let base = base.strip_suffix("/v2").unwrap_or(base);
        format!("{base}/v2{path}")
    }

    /// The remote image, which must be active.
    pub(crate) async fn image(&self, id: &str) -> Result<Value, ImportError> {
        let body = self
            .imp
            .inner
            .trusted
            .get_metadata(
                &self.url(&format!("/images/{id}")),
                token_headers(&self.token)?,
                METADATA_CAP,
            )
            .await
            .map_err(|e| fetch_error("Reading the remote image failed", e))?;
        let img: Value = serde_json::from_slice(&body)
            .map_err(|_| ImportError::failed("The remote image service did not answer JSON."))?;
        if img["status"] != "active" {
            return Err(ImportError::failed(format!(
                "The remote image {id} is not active ({}).",
                img["status"].as_str().unwrap_or("unknown")
            )));
        }
        Ok(img)
    }

    /// The remote image's data.
    pub(crate) async fn data(&self, id: &str) -> Result<(ByteStream, Option<u64>), ImportError> {
        let cap = self.imp.inner.cfg.image_size_cap;
        let resp = self
            .imp
            .inner
            .trusted
            .get_with(
                &self.url(&format!("/images/{id}/file")),
                token_headers(&self.token)?,
                Some(cap),
            )
            .await
            .map_err(|e| fetch_error("Downloading the remote image failed", e))?;
        let size = resp.content_length();
        let body = resp.into_stream().map_err(OutboundError::into_io);
        Ok((Box::pin(body), size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_endpoints_and_properties() {
        let catalog = json!({"catalog": [
            {"type": "identity", "endpoints": [{"region_id": "R2", "interface": "public", "url": "http://k"}]},
            {"type": "image", "endpoints": [
                {"region_id": "R1", "interface": "public", "url": "http://a:9292/"},
                {"region_id": "R2", "interface": "internal", "url": "http://b-int:9292"},
                {"region_id": "R2", "interface": "public", "url": "http://b:9292"}]}]});
        assert_eq!(
            image_endpoint(&catalog, "R2", "public").as_deref(),
            Some("http://b:9292")
        );
        assert_eq!(
            image_endpoint(&catalog, "R1", "public").as_deref(),
            Some("http://a:9292")
        );
        assert_eq!(image_endpoint(&catalog, "R3", "public"), None);
        let remote = json!({"disk_format": "qcow2", "container_format": "bare", "hw_disk_bus": "scsi",
            "os_distro": "debian", "secret": "x", "os_glance_import_task": "t", "size": 5});
        let mut got = copied_properties(&remote, &["hw_".into(), "os_distro".into()]);
        got.sort();
        assert_eq!(
            got,
            vec![
                ("container_format".to_owned(), "bare".to_owned()),
                ("disk_format".to_owned(), "qcow2".to_owned()),
                ("hw_disk_bus".to_owned(), "scsi".to_owned()),
                ("os_distro".to_owned(), "debian".to_owned()),
            ]
        );
    }
}
