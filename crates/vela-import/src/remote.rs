//! Data from elsewhere: a URL (`web-download`) and another region's image service
//! (`glance-download`). Every request goes through the guarded outbound client.

use futures::TryStreamExt;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::Value;
use vela_store::digest::{Digest, HashAlgo};
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

/// The image endpoint for `region` (compared without case, as Glance does) and `interface`
/// in a Keystone v3 catalog.
pub(crate) fn image_endpoint(catalog: &Value, region: &str, interface: &str) -> Option<String> {
    let same_region = |v: &Value| v.as_str().is_some_and(|r| r.eq_ignore_ascii_case(region));
    catalog["catalog"]
        .as_array()?
        .iter()
        .filter(|s| s["type"] == "image")
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .find(|e| {
            (same_region(&e["region_id"]) || same_region(&e["region"]))
                && e["interface"] == interface
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

/// What the data of a remote image must be: its size and, when the remote image shows them,
/// its checksums.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Expected {
    pub size: u64,
    /// `checksum` (MD5).
    pub md5: Option<String>,
    /// `os_hash_algo`, when Vela knows it and the image has an `os_hash_value`.
    pub algo: Option<HashAlgo>,
    pub hash: Option<String>,
}

impl Expected {
    /// Whether downloaded data (hashed with [`Expected::algo`]) is the remote image's.
    pub(crate) fn verify(&self, got: &Digest) -> Result<(), String> {
        let md5_ok = self
            .md5
            .as_ref()
            .is_none_or(|m| m.eq_ignore_ascii_case(&got.md5));
        let hash_ok = match (&self.algo, &self.hash) {
            (Some(a), Some(h)) if *a == got.algo => h.eq_ignore_ascii_case(&got.hash),
            _ => true,
        };
        if md5_ok && hash_ok {
            Ok(())
        } else {
            Err("The data downloaded from the remote image does not match its checksum.".into())
        }
    }
}

/// The size and checksums the remote image announces. Like Glance, an image without a size
/// is refused.
pub(crate) fn expected_data(remote: &Value, id: &str) -> Result<Expected, ImportError> {
    let size = remote["size"].as_u64().ok_or_else(|| {
        ImportError::failed(format!(
            "The size of the remote image {id} could not be determined."
        ))
    })?;
    let text = |k: &str| {
        remote[k]
            .as_str()
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let hash = text("os_hash_value");
    let algo = hash
        .as_ref()
        .and_then(|_| text("os_hash_algo"))
        .and_then(|a| HashAlgo::parse(&a));
    Ok(Expected {
        size,
        md5: text("checksum"),
        algo,
        hash: algo.and(hash),
    })
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
        // Regions compare without case, as in Glance.
        assert_eq!(
            image_endpoint(&catalog, "r2", "internal").as_deref(),
            Some("http://b-int:9292")
        );
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

    #[test]
    fn expected_data_of_a_remote_image() {
        assert!(expected_data(&json!({"status": "active"}), "x").is_err());
        let remote = json!({"size": 3, "checksum": "900150983cd24fb0d6963f7d28e17f72",
            "os_hash_algo": "sha256",
            "os_hash_value": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"});
        let e = expected_data(&remote, "x").unwrap();
        assert_eq!((e.size, e.algo), (3, Some(HashAlgo::Sha256)));
        let digest = |md5: &str, hash: &str| Digest {
            size: 3,
            md5: md5.into(),
            algo: HashAlgo::Sha256,
            hash: hash.into(),
            head: Vec::new(),
            inspection: None,
        };
        let (md5, hash) = (e.md5.clone().unwrap(), e.hash.clone().unwrap());
        assert!(e.verify(&digest(&md5, &hash)).is_ok());
        assert!(e.verify(&digest("00", &hash)).is_err());
        assert!(e.verify(&digest(&md5, "00")).is_err());
        // An algorithm Vela does not know, or no checksums at all: only the size counts.
        let e = expected_data(
            &json!({"size": 3, "os_hash_algo": "blake9",
            "os_hash_value": "ff"}),
            "x",
        )
        .unwrap();
        assert_eq!((e.md5, e.algo, e.hash), (None, None, None));
    }
}
