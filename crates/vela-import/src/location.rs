//! A `location_import` task: gives a `queued` image the data at a location
//! (`POST /v2/images/{id}/locations`). With validation data the image is `importing` while the
//! data is read once, hashed, compared and inspected against the declared formats, then
//! `active`; without, the image is `active` at once and its checksums follow.

use std::sync::Arc;

use futures::StreamExt;
use vela_domain::image::ImageLocation;
use vela_domain::location::{
    LocationChange, LocationValue, Position, ResolvedLocation, ValidationData,
};
use vela_domain::{DomainError, ImageId, ImageStatus, LocationUrl};
use vela_store::digest::{digesting_with, FormatCheck, HashAlgo, Limits, Options};
use vela_store::Store;

use crate::flow::Run;
use crate::source::cancellable;
use crate::ImportError;

/// What a location import works on (kept in memory: the URL may carry credentials, the task
/// records it without them).
#[derive(Debug, Clone)]
pub struct LocationJob {
    /// The store serving the URL (the HTTP store).
    pub store: Arc<dyn Store>,
    /// The location as the client gave it.
    pub value: LocationValue,
}

impl Run {
    pub(crate) async fn execute_location(
        &mut self,
        image: &ImageId,
        job: &LocationJob,
    ) -> Result<(), ImportError> {
        let cfg = &self.imp.inner.cfg;
        let (algo, cap) = (cfg.hash_algo, cfg.image_size_cap);
        let url = LocationUrl::from(job.value.url.clone());
        let shown = url.to_string();
        let size = match job.store.size(&url).await {
            Ok(n) if n > 0 => n,
            Ok(_) => return Err(ImportError::failed(format!("{shown} holds no data"))),
            Err(e) => {
                return Err(ImportError::failed(format!(
                    "The location {shown} cannot be read: {e}"
                )))
            }
        };
        let location = ImageLocation {
            store: job.store.id().to_owned(),
            url: url.clone(),
            metadata: job.value.metadata.clone(),
        };
        let requested = job.value.validation.os_hash_algo.clone();
        let verify = requested.is_some();
        let value = job.value.clone();
        let resolved = ResolvedLocation {
            location: location.clone(),
            size,
            validation: ValidationData::default(),
        };
        let (img, ()) = self
            .update(image, move |img, _| {
                if img.status != ImageStatus::Queued {
                    return Err(DomainError::Conflict(format!(
                        "It's not allowed to add locations if image status is {}.",
                        img.status.as_str()
                    )));
                }
                if verify {
                    img.check_can_receive_data()?;
                    return img.set_status(ImageStatus::Importing);
                }
                let change = LocationChange::Add(Position::End, value);
                img.change_locations(&change, &[resolved], algo.name(), algo.digest_len())?;
                Ok(())
            })
            .await?;
        // The data is read once: md5 and the configured algorithm, the client's algorithm
        // when it differs, and (with validation data) the format inspector.
        let fetched = job
            .store
            .get(&url, None)
            .await
            .map_err(|e| ImportError::failed(format!("Reading {shown}: {e}")))?;
        let body = cancellable(fetched.body, self.cancel.clone(), self.progress.clone());
        let check = verify.then(|| FormatCheck {
            disk_format: img.disk_format.clone(),
            container_format: img.container_format.clone(),
            rules: cfg.inspection.clone(),
        });
        let (stream, digest) = digesting_with(
            body,
            Options {
                algo: Some(algo),
                limits: Limits {
                    max_size: Some(cap),
                    expected_size: Some(size),
                },
                check,
            },
        );
        let client_algo = requested
            .as_deref()
            .and_then(HashAlgo::parse)
            .unwrap_or(algo);
        let (mut stream, second) = if client_algo != algo {
            let (s, d) = digesting_with(
                stream,
                Options {
                    algo: Some(client_algo),
                    ..Options::default()
                },
            );
            (s, Some(d))
        } else {
            (stream, None)
        };
        while let Some(chunk) = stream.next().await {
            if let Err(e) = chunk {
                let why = digest
                    .failure()
                    .map_or_else(|| e.to_string(), |f| f.to_string());
                return Err(ImportError::failed(format!("Reading {shown}: {why}")));
            }
        }
        let mut d = digest
            .finish()
            .await
            .map_err(|e| ImportError::failed(e.to_string()))?;
        // As Glance, the image records the client's algorithm and value when it gave one
        // (tempest checks `os_hash_algo` is then e.g. sha256).
        if let Some(s) = second {
            let s = s
                .finish()
                .await
                .map_err(|e| ImportError::failed(e.to_string()))?;
            d.algo = s.algo;
            d.hash = s.hash;
        }
        let checked = &d.hash;
        if let Some(want) = &job.value.validation.os_hash_value {
            if !want.eq_ignore_ascii_case(checked) {
                return Err(ImportError::failed(format!(
                    "os_hash_value: ({want}) not matched with actual os_hash_value: ({checked})"
                )));
            }
        }
        self.update(image, move |img, _| {
            if img.status == ImageStatus::Importing {
                img.locations = vec![location];
                d.record(img);
                img.set_status(ImageStatus::Active)?;
            } else {
                d.record_checksums(img);
            }
            Ok(())
        })
        .await?;
        tracing::info!(image_id = %image, url = %shown, "location added");
        Ok(())
    }
}
