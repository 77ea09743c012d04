//! One run of an `api_image_import` task, from claiming it to releasing the image.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use vela_domain::image::ImageLocation;
use vela_domain::import::{
    set_store_list, store_list, ImportMethod, ImportRequest, FAILED_IMPORT, IMPORTING_TO,
    IMPORT_LOCK, STAGED_DATA,
};
use vela_domain::quota::{self, Resource, Usage};
use vela_domain::task::{Task, TaskStatus, TaskType};
use vela_domain::{DomainError, Image, ImageId, ImageStatus, LocationUrl};
use vela_store::digest::{FormatCheck, Limits, Options};
use vela_store::ingest::{ingest, IngestError, Ingested};

use crate::source::{cancellable, Source};
use crate::{put_back, Caller, ImportError, Importer, Job};

/// Whether a task copies an active image (which keeps its status whatever happens).
pub(crate) fn is_copy(task: &Task) -> bool {
    task.input
        .as_ref()
        .and_then(|i| i["import_req"]["method"]["name"].as_str())
        == Some("copy-image")
}

/// What a run works on, read from the task's input.
struct Plan {
    image: ImageId,
    req: ImportRequest,
    stores: Vec<String>,
}

fn plan(imp: &Importer, task: &Task) -> Result<Plan, ImportError> {
    let input = task
        .input
        .as_ref()
        .ok_or_else(|| ImportError::failed("The task has no input."))?;
    if task.kind == TaskType::Import {
        // The legacy task: a web-download into the image made for it, to the default store.
        let image = task
            .image_id
            .as_deref()
            .and_then(ImageId::parse)
            .ok_or_else(|| ImportError::failed("The task names no image."))?;
        let uri = input["import_from"].as_str().unwrap_or_default().to_owned();
        return Ok(Plan {
            image,
            req: ImportRequest {
                method: ImportMethod::WebDownload { uri },
                stores: None,
                all_stores: false,
                all_stores_must_succeed: true,
                body: json!({}),
            },
            stores: vec![imp.inner.stores.default_store().id().to_owned()],
        });
    }
    let image = input["image_id"]
        .as_str()
        .and_then(ImageId::parse)
        .ok_or_else(|| ImportError::failed("The task names no image."))?;
    let req = ImportRequest::parse(&input["import_req"], &imp.inner.cfg.methods)
        .map_err(|e| ImportError::failed(e.to_string()))?;
    let stores = input["backend"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(Plan { image, req, stores })
}

/// Claims the task (pending → processing) for this node; false if another node has it.
async fn claim(imp: &Importer, task_id: &str) -> Result<Option<Task>, ImportError> {
    let now = vela_domain::now_micros();
    let (lease, ttl, node) = (imp.lease(), imp.ttl(), imp.inner.cfg.node.clone());
    let (task, claimed) = imp
        .inner
        .db
        .update_task(task_id, |t| {
            if t.status != TaskStatus::Pending {
                return Ok(false);
            }
            t.set_status(TaskStatus::Processing, now, ttl)?;
            t.lease_until = Some(now + lease);
            t.runner = Some(node);
            Ok(true)
        })
        .await?;
    Ok(claimed.then_some(task))
}

/// Renews the lease while the run works, and shows its progress; cancels the run if the
/// task is no longer this node's.
fn keep_lease(
    imp: &Importer,
    task_id: &str,
    cancel: CancellationToken,
    progress: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    let (imp, task_id) = (imp.clone(), task_id.to_owned());
    let period = (imp.inner.cfg.lease / 3).max(std::time::Duration::from_millis(100));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.tick().await;
        loop {
            tick.tick().await;
            let (lease, node) = (imp.lease(), imp.inner.cfg.node.clone());
            let copied = progress.load(Ordering::Relaxed) >> 20;
            let renewed = imp
                .inner
                .db
                .update_task(&task_id, |t| {
                    if t.status != TaskStatus::Processing || t.runner.as_deref() != Some(&node) {
                        return Ok(false);
                    }
                    t.lease_until = Some(vela_domain::now_micros() + lease);
                    if copied > 0 {
                        t.message = format!("Copied {copied} MiB");
                    }
                    Ok(true)
                })
                .await;
            match renewed {
                Ok((_, true)) => {}
                Ok((_, false)) | Err(vela_db::DbError::NotFound) => {
                    tracing::warn!(task_id, "lost the task's lease; stopping the import");
                    cancel.cancel();
                    return;
                }
                Err(e) => tracing::warn!(task_id, error = %e, "could not renew the task's lease"),
            }
        }
    })
}

/// Runs a task to its end on this node.
pub(crate) async fn run(imp: Importer, task_id: String, caller: Caller, job: Job) {
    let task = match claim(&imp, &task_id).await {
        Ok(Some(t)) => t,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(task_id, error = %e, "could not claim the task");
            return;
        }
    };
    let cancel = CancellationToken::new();
    if let Ok(mut running) = imp.inner.running.lock() {
        running.insert(task_id.clone(), cancel.clone());
    }
    let progress = Arc::new(AtomicU64::new(0));
    let heartbeat = keep_lease(&imp, &task_id, cancel.clone(), progress.clone());
    let mut run = Run {
        imp: imp.clone(),
        task: task.clone(),
        caller,
        cancel: cancel.clone(),
        progress,
        written: Vec::new(),
        staged: None,
        work: None,
        copy: is_copy(&task),
        first_digest: None,
        restore: None,
    };
    // Wait for a turn (the lease is renewed meanwhile); a cancelled wait fails the task.
    let turn = tokio::select! {
        t = imp.inner.turns.clone().acquire_owned() => t.ok(),
        _ = cancel.cancelled() => None,
    };
    let outcome = match (&job, turn.is_some()) {
        (_, false) => Err(ImportError::Cancelled("the node stopped".into())),
        (job, true) => run_job(&mut run, &imp, &task, job).await,
    };
    drop(turn);
    heartbeat.abort();
    run.finish(outcome).await;
    if let Ok(mut running) = imp.inner.running.lock() {
        running.remove(&task_id);
    }
}

async fn run_job(
    run: &mut Run,
    imp: &Importer,
    task: &Task,
    job: &Job,
) -> Result<ImageId, ImportError> {
    match job {
        Job::Import => match plan(imp, task) {
            Ok(p) => run.execute(&p).await.map(|_| p.image),
            Err(e) => Err(e),
        },
        Job::Location(l) => match task.image_id.as_deref().and_then(ImageId::parse) {
            Some(id) => run.execute_location(&id, l).await.map(|_| id),
            None => Err(ImportError::failed("The task names no image.")),
        },
    }
}

/// The state of a run.
pub(crate) struct Run {
    pub(crate) imp: Importer,
    task: Task,
    caller: Caller,
    pub(crate) cancel: CancellationToken,
    /// Bytes moved so far (shown as progress).
    pub(crate) progress: Arc<AtomicU64>,
    /// Data this run wrote to stores and did not record in the image yet.
    written: Vec<ImageLocation>,
    /// Staged data of this image (removed at the end).
    staged: Option<LocationUrl>,
    /// This run's scratch directory.
    work: Option<std::path::PathBuf>,
    copy: bool,
    /// The digest of the first data written (recorded at the end when every store must
    /// succeed).
    first_digest: Option<vela_store::digest::Digest>,
    /// What glance-download changed on the image, undone if the run fails.
    restore: Option<Restore>,
}

/// The image's own formats and properties that glance-download replaced with the remote
/// image's, put back if the import fails (as Glance reverts its metadata step).
#[derive(Debug, Clone, Default)]
struct Restore {
    disk_format: Option<String>,
    container_format: Option<String>,
    /// Each copied property and its former value (None: it was not set).
    properties: Vec<(String, Option<String>)>,
}

impl Restore {
    /// Copies the remote image's formats and properties onto `img`; returns how to undo it.
    fn copy_onto(img: &mut Image, copied: Vec<(String, String)>) -> Restore {
        let mut undo = Restore {
            disk_format: img.disk_format.clone(),
            container_format: img.container_format.clone(),
            properties: Vec::new(),
        };
        for (k, v) in copied {
            match k.as_str() {
                "disk_format" => img.disk_format = Some(v),
                "container_format" => img.container_format = Some(v),
                _ => {
                    let old = img.properties.insert(k.clone(), v);
                    undo.properties.push((k, old));
                }
            }
        }
        undo
    }

    fn apply(self, img: &mut Image) {
        img.disk_format = self.disk_format;
        img.container_format = self.container_format;
        // In reverse, so a name copied twice ends with its first former value.
        for (k, old) in self.properties.into_iter().rev() {
            match old {
                Some(v) => img.properties.insert(k, v),
                None => img.properties.remove(&k),
            };
        }
    }
}

impl Run {
    fn node(&self) -> &str {
        &self.imp.inner.cfg.node
    }

    /// Changes the image and the task together, provided the task is still this node's
    /// and holds the image's lock.
    pub(crate) async fn update<T, F>(
        &self,
        image: &ImageId,
        f: F,
    ) -> Result<(Image, T), ImportError>
    where
        F: FnOnce(&mut Image, &mut Task) -> Result<T, DomainError>,
    {
        self.update_guarded(image, None, f).await
    }

    /// [`Run::update`] under a quota guard.
    pub(crate) async fn update_guarded<T, F>(
        &self,
        image: &ImageId,
        guard: Option<vela_db::quota::Guard<'_>>,
        f: F,
    ) -> Result<(Image, T), ImportError>
    where
        F: FnOnce(&mut Image, &mut Task) -> Result<T, DomainError>,
    {
        let node = self.node().to_owned();
        let task_id = self.task.id.clone();
        let res = self
            .imp
            .inner
            .db
            .update_image_and_task(image, &task_id, guard, |img, t| {
                if t.status != TaskStatus::Processing || t.runner.as_deref() != Some(&node) {
                    return Err(DomainError::Conflict("the task is no longer ours".into()));
                }
                if img.properties.get(IMPORT_LOCK) != Some(&task_id) {
                    return Err(DomainError::Conflict(
                        "the image lock is no longer ours".into(),
                    ));
                }
                if img.deleted {
                    return Err(DomainError::Gone(
                        "The image was deleted during the import.".into(),
                    ));
                }
                f(img, t)
            })
            .await;
        match res {
            Ok((img, _, out)) => Ok((img, out)),
            Err(vela_db::DbError::Domain(DomainError::Conflict(m))) => {
                Err(ImportError::Cancelled(m))
            }
            Err(vela_db::DbError::Domain(e)) => Err(ImportError::failed(e.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    /// The quota check of entering the import, as Glance makes it: the staged size against
    /// `image_size_total` for glance-direct; for the methods that stage data, the image's
    /// size against `image_stage_total` and the image itself against `image_count_uploading`.
    async fn quota_guard(
        &self,
        method: &ImportMethod,
    ) -> Result<Option<vela_db::quota::Guard<'static>>, ImportError> {
        let (Some(quotas), Some(project)) = (&self.imp.inner.cfg.quotas, &self.task.owner) else {
            return Ok(None);
        };
        let limits = quotas.limits(project, false).await?;
        let direct = matches!(method, ImportMethod::GlanceDirect);
        let owner = project.clone();
        let need = if direct {
            vec![Resource::ImageSizeTotal]
        } else {
            vec![Resource::ImageStageTotal, Resource::ImageCountUploading]
        };
        Ok(quotas.guard(
            project.clone(),
            limits,
            need,
            move |limits, others, before, after| {
                let size = quota::mib(before.size.unwrap_or(0).max(0) as u64);
                let was = others.plus(Usage::of(before));
                if direct {
                    return quota::enforce(
                        &owner,
                        limits,
                        &was,
                        &[(Resource::ImageSizeTotal, size)],
                    );
                }
                quota::enforce(&owner, limits, &was, &[(Resource::ImageStageTotal, size)])?;
                let now = others.plus(Usage::of(after));
                quota::enforce(&owner, limits, &now, &[(Resource::ImageCountUploading, 0)])
            },
        ))
    }

    fn check_cancelled(&self) -> Result<(), ImportError> {
        if self.cancel.is_cancelled() {
            return Err(ImportError::Cancelled(
                "the node stopped or lost the lease".into(),
            ));
        }
        Ok(())
    }

    async fn execute(&mut self, p: &Plan) -> Result<(), ImportError> {
        let copy = self.copy;
        let targets = p.stores.clone();
        // The image enters `importing` (a copy stays active) and shows where it goes, if the
        // project's quotas allow it.
        let guard = self.quota_guard(&p.req.method).await?;
        let (img, ()) = self
            .update_guarded(&p.image, guard, |img, _| {
                let mut failed = store_list(img, FAILED_IMPORT);
                failed.retain(|s| !targets.contains(s));
                set_store_list(img, FAILED_IMPORT, &failed);
                set_store_list(img, IMPORTING_TO, &targets);
                if !copy {
                    img.set_status(ImageStatus::Importing)?;
                }
                Ok(())
            })
            .await?;
        self.staged = img.properties.get(STAGED_DATA).map(|l| l.as_str().into());
        let mut img = img;

        let mut source = match &p.req.method {
            ImportMethod::GlanceDirect => {
                let loc = self.staged.clone().ok_or_else(|| {
                    ImportError::failed("No staged data was found for the image.")
                })?;
                Source::Stored {
                    store: self.imp.inner.staging.clone(),
                    location: loc,
                }
            }
            ImportMethod::WebDownload { uri } => {
                let (body, size) = crate::remote::web(&self.imp, uri).await?;
                self.stage(&p.image, body, size).await?
            }
            ImportMethod::GlanceDownload {
                region,
                image_id,
                interface,
            } => {
                let remote =
                    crate::remote::GlanceRemote::find(&self.imp, &self.caller, region, interface)
                        .await?;
                let meta = remote.image(image_id).await?;
                let expected = crate::remote::expected_data(&meta, image_id)?;
                let props =
                    crate::remote::copied_properties(&meta, &self.imp.inner.cfg.remote_properties);
                let (i, restore) = self
                    .update(&p.image, |img, _| Ok(Restore::copy_onto(img, props)))
                    .await?;
                img = i;
                // From here a failure puts the image's own formats and properties back.
                self.restore = Some(restore);
                let cap = self.imp.inner.cfg.image_size_cap;
                if expected.size > cap {
                    return Err(ImportError::failed(format!(
                        "The remote image is larger than the largest image allowed ({cap} bytes)."
                    )));
                }
                let (body, _) = remote.data(image_id).await?;
                self.stage_checked(&p.image, body, Some(expected.size), Some(&expected))
                    .await?
            }
            ImportMethod::CopyImage => {
                let default = self.imp.inner.stores.default_store().id().to_owned();
                let loc = img
                    .locations
                    .iter()
                    .find(|l| l.store == default)
                    .or_else(|| img.locations.first())
                    .cloned()
                    .ok_or_else(|| ImportError::failed("The image has no data to copy."))?;
                let store = self
                    .imp
                    .inner
                    .stores
                    .store_of(&loc.store)
                    .map_err(|e| ImportError::failed(e.to_string()))?
                    .clone();
                Source::Stored {
                    store,
                    location: loc.url,
                }
            }
        };
        self.check_cancelled()?;

        if !copy && !self.imp.inner.cfg.plugins.is_empty() {
            let work = self.imp.inner.cfg.work_dir.join(&self.task.id);
            vela_store::fs::create_private_dir(&work)
                .map_err(|e| ImportError::failed(format!("scratch space: {e}")))?;
            self.work = Some(work.clone());
            let outcome = crate::plugins::run(
                &self.imp.inner.cfg,
                &img,
                &self.caller,
                source,
                &work,
                &self.cancel,
            )
            .await?;
            source = outcome.source;
            let changes = outcome.changes;
            let (i, ()) = self
                .update(&p.image, move |img, _| {
                    changes.apply(img);
                    Ok(())
                })
                .await?;
            img = i;
        }
        self.check_cancelled()?;
        self.write_all(p, &img, &source).await
    }

    /// Streams `body` into the staging area and records it on the image.
    async fn stage(
        &mut self,
        image: &ImageId,
        body: vela_store::ByteStream,
        size: Option<u64>,
    ) -> Result<Source, ImportError> {
        self.stage_checked(image, body, size, None).await
    }

    /// [`Run::stage`], refusing data whose checksums are not the `expected` ones.
    async fn stage_checked(
        &mut self,
        image: &ImageId,
        body: vela_store::ByteStream,
        size: Option<u64>,
        expected: Option<&crate::remote::Expected>,
    ) -> Result<Source, ImportError> {
        let staging = self.imp.inner.staging.clone();
        let body = cancellable(body, self.cancel.clone(), self.progress.clone());
        let opts = Options {
            // Hashing is only needed to compare with what the source announced.
            algo: expected.map(|e| e.algo.unwrap_or(self.imp.inner.cfg.hash_algo)),
            limits: Limits {
                max_size: Some(self.imp.inner.cfg.image_size_cap),
                expected_size: size,
            },
            check: None,
        };
        let got = ingest(staging.as_ref(), image, body, opts)
            .await
            .map_err(|e| ImportError::failed(describe(&e)))?;
        if let Some(e) = expected {
            if let Err(m) = e.verify(&got.digest) {
                let _ = staging.delete(&got.stored.location).await;
                return Err(ImportError::failed(m));
            }
        }
        self.staged = Some(got.stored.location.clone());
        let loc = got.stored.location.clone();
        let size = got.digest.size;
        self.update(image, move |img, _| {
            img.properties
                .insert(STAGED_DATA.to_owned(), loc.as_str().to_owned());
            img.size = i64::try_from(size).ok();
            Ok(())
        })
        .await?;
        Ok(Source::Stored {
            store: staging,
            location: got.stored.location,
        })
    }

    /// Writes the data to each target store. With `all_stores_must_succeed` (the default)
    /// the new locations are recorded together at the end, so a failure or a crash leaves
    /// the image as it was; otherwise each store's location is recorded as soon as it is
    /// written, and a failing store is only noted in `os_glance_failed_import`.
    async fn write_all(
        &mut self,
        p: &Plan,
        img: &Image,
        source: &Source,
    ) -> Result<(), ImportError> {
        let must = p.req.all_stores_must_succeed;
        let mut first: Option<Ingested> = None;
        let mut any = false;
        for store_id in &p.stores {
            self.check_cancelled()?;
            let result = self.write_one(p, img, source, store_id, &first).await;
            match result {
                Ok(got) => {
                    let loc = ImageLocation {
                        store: store_id.clone(),
                        url: got.stored.location.clone(),
                        metadata: Default::default(),
                    };
                    any = true;
                    if must {
                        self.written.push(loc);
                        if self.first_digest.is_none() {
                            self.first_digest = Some(got.digest.clone());
                        }
                    } else {
                        let d = got.digest.clone();
                        let copy = self.copy;
                        let sid = store_id.clone();
                        let loc2 = loc.clone();
                        self.written.push(loc);
                        self.update(&p.image, move |img, _| {
                            record_data(img, &d, copy)?;
                            img.locations.push(loc2);
                            let mut pending = store_list(img, IMPORTING_TO);
                            pending.retain(|s| *s != sid);
                            set_store_list(img, IMPORTING_TO, &pending);
                            if img.status == ImageStatus::Importing {
                                img.set_status(ImageStatus::Active)?;
                            }
                            Ok(())
                        })
                        .await?;
                        self.written.clear();
                    }
                    if first.is_none() {
                        first = Some(got);
                    }
                }
                Err(e) if !must && !matches!(e, ImportError::Cancelled(_)) => {
                    tracing::warn!(task_id = %self.task.id, store = %store_id, error = %e, "import to a store failed");
                    let sid = store_id.clone();
                    self.update(&p.image, move |img, _| {
                        let mut pending = store_list(img, IMPORTING_TO);
                        pending.retain(|s| *s != sid);
                        set_store_list(img, IMPORTING_TO, &pending);
                        let mut failed = store_list(img, FAILED_IMPORT);
                        if !failed.contains(&sid) {
                            failed.push(sid);
                        }
                        set_store_list(img, FAILED_IMPORT, &failed);
                        Ok(())
                    })
                    .await?;
                }
                Err(e) => return Err(e),
            }
        }
        if !any && !p.stores.is_empty() {
            return Err(ImportError::failed(
                "The image could not be imported to any store.",
            ));
        }
        Ok(())
    }

    async fn write_one(
        &self,
        p: &Plan,
        img: &Image,
        source: &Source,
        store_id: &str,
        first: &Option<Ingested>,
    ) -> Result<Ingested, ImportError> {
        let store = self
            .imp
            .inner
            .stores
            .get(store_id)
            .ok_or_else(|| ImportError::failed(format!("Store {store_id} is not configured.")))?
            .clone();
        let (body, size) = source
            .open()
            .await
            .map_err(|e| ImportError::failed(format!("Reading the data to import: {e}")))?;
        let body = cancellable(body, self.cancel.clone(), self.progress.clone());
        let opts = Options {
            algo: Some(self.imp.inner.cfg.hash_algo),
            limits: Limits {
                max_size: Some(self.imp.inner.cfg.image_size_cap),
                expected_size: Some(size),
            },
            check: Some(FormatCheck {
                disk_format: img.disk_format.clone(),
                container_format: img.container_format.clone(),
                rules: self.imp.inner.cfg.inspection.clone(),
            }),
        };
        let got = ingest(store.as_ref(), &p.image, body, opts)
            .await
            .map_err(|e| ImportError::failed(describe(&e)))?;
        // Every copy must be the same data: the first store's (or, for a copy, the image's).
        let want = match first {
            Some(f) => Some((f.digest.md5.clone(), f.digest.hash.clone())),
            None if self.copy => img
                .checksum
                .clone()
                .map(|c| (c, img.os_hash_value.clone().unwrap_or_default())),
            None => None,
        };
        if let Some((md5, hash)) = want {
            let same_hash = hash.is_empty()
                || img.os_hash_algo.as_deref() != Some(got.digest.algo.name())
                || got.digest.hash == hash;
            if got.digest.md5 != md5 || !same_hash {
                let _ = store.delete(&got.stored.location).await;
                return Err(ImportError::failed(format!(
                    "The data written to store {store_id} does not match the image's checksum."
                )));
            }
        }
        Ok(got)
    }

    /// Ends the run: success records the data and activates the image; failure undoes what
    /// the run did. The lock is released and the task finished in the same transaction.
    async fn finish(&mut self, outcome: Result<ImageId, ImportError>) {
        if let Some(w) = self.work.take() {
            if let Err(e) = tokio::fs::remove_dir_all(&w).await {
                tracing::warn!(dir = %w.display(), error = %e, "could not remove scratch space");
            }
        }
        let ttl = self.imp.ttl();
        let image = self.task.image_id.as_deref().and_then(ImageId::parse);
        let result = match &outcome {
            Ok(id) => self.succeed(id, ttl).await,
            Err(e) => Err(ImportError::failed(e.to_string())),
        };
        let failure = result.err();
        if failure.is_some() && !self.still_ours().await {
            // Another node failed the task (this node's lease ran out) and cleans up.
            tracing::warn!(task_id = %self.task.id, "the task was taken over; leaving it");
            return;
        }
        // Staged data goes before the image is released (a failed image returns to `queued`,
        // and a new stage must not meet this run's clean-up).
        if let Some(img) = &image {
            self.imp.remove_staged(img, self.staged.as_ref()).await;
        }
        if let Some(e) = &failure {
            tracing::warn!(task_id = %self.task.id, error = %e, "import failed");
            self.fail(image.as_ref(), &e.to_string(), ttl).await;
        } else {
            tracing::info!(task_id = %self.task.id, image_id = ?image, "import done");
        }
    }

    /// Whether this node still runs the task.
    async fn still_ours(&self) -> bool {
        match self.imp.inner.db.get_task(&self.task.id).await {
            Ok(t) => t.status == TaskStatus::Processing && t.runner.as_deref() == Some(self.node()),
            Err(_) => false,
        }
    }

    async fn succeed(&mut self, id: &ImageId, ttl: i64) -> Result<(), ImportError> {
        let written = self.written.clone();
        let copy = self.copy;
        let firsts = self.first_digest.clone();
        let copied = format!("Copied {} MiB", self.progress.load(Ordering::Relaxed) >> 20);
        let (_, ()) = self
            .update(id, move |img, t| {
                if let Some(d) = &firsts {
                    record_data(img, d, copy)?;
                }
                let done: Vec<String> = written.iter().map(|l| l.store.clone()).collect();
                img.locations.extend(written);
                if img.properties.contains_key(IMPORTING_TO) {
                    let mut pending = store_list(img, IMPORTING_TO);
                    pending.retain(|s| !done.contains(s));
                    set_store_list(img, IMPORTING_TO, &pending);
                }
                img.properties.remove(STAGED_DATA);
                img.properties.remove(IMPORT_LOCK);
                if img.status == ImageStatus::Importing {
                    img.set_status(ImageStatus::Active)?;
                }
                if img.status != ImageStatus::Active {
                    return Err(DomainError::Conflict(format!(
                        "The image is {} after the import.",
                        img.status
                    )));
                }
                let now = vela_domain::now_micros();
                t.set_status(TaskStatus::Success, now, ttl)?;
                t.result = Some(json!({"image_id": img.id.as_str()}));
                t.message = copied;
                Ok(())
            })
            .await?;
        self.written.clear();
        Ok(())
    }

    /// Fails the task and puts the image back; removes data this run wrote but did not
    /// record.
    async fn fail(&mut self, image: Option<&ImageId>, reason: &str, ttl: i64) {
        let now = vela_domain::now_micros();
        let node = self.node().to_owned();
        let copy = self.copy;
        let task_id = self.task.id.clone();
        let reason = reason.to_owned();
        let restore = self.restore.take();
        let done = match image {
            Some(id) => self
                .imp
                .inner
                .db
                .update_image_and_task(id, &task_id, None, |img, t| {
                    if t.status != TaskStatus::Processing || t.runner.as_deref() != Some(&node) {
                        return Ok(false);
                    }
                    t.set_status(TaskStatus::Failure, now, ttl)?;
                    t.message = reason.clone();
                    if let (false, Some(r)) = (img.deleted, restore) {
                        r.apply(img);
                    }
                    put_back(img, &t.id, copy)?;
                    Ok(true)
                })
                .await
                .map(|(_, _, done)| done),
            None => self
                .imp
                .inner
                .db
                .update_task(&task_id, |t| {
                    if t.status != TaskStatus::Processing || t.runner.as_deref() != Some(&node) {
                        return Ok(false);
                    }
                    t.set_status(TaskStatus::Failure, now, ttl)?;
                    t.message = reason.clone();
                    Ok(true)
                })
                .await
                .map(|(_, done)| done),
        };
        if let Err(e) = done {
            tracing::error!(task_id, error = %e, "could not record the task's failure");
        }
        for loc in std::mem::take(&mut self.written) {
            if let Ok(store) = self.imp.inner.stores.store_of(&loc.store) {
                if let Err(e) = store.delete(&loc.url).await {
                    tracing::warn!(task_id, location = %loc.url, error = %e, "could not remove data of a failed import");
                }
            }
        }
    }
}

/// Records the checksums and sizes of newly written data on the image (a copy's image has
/// them already).
fn record_data(
    img: &mut Image,
    d: &vela_store::digest::Digest,
    copy: bool,
) -> Result<(), DomainError> {
    if !copy {
        d.record(img);
    }
    Ok(())
}

/// A message for a failed write.
pub(crate) fn describe(e: &IngestError) -> String {
    match e {
        IngestError::Body(b) => b.to_string(),
        IngestError::Store(s) => format!("Store error: {s}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copied_metadata_is_put_back() {
        let mut img = Image::new(
            ImageId::parse("6f1c8f3e-4d1e-4b8a-9c53-2f0c1a9e7b10").unwrap(),
            None,
            0,
        );
        img.disk_format = Some("qcow2".into());
        img.container_format = Some("ovf".into());
        img.properties.insert("os_distro".into(), "old".into());
        img.properties.insert("mine".into(), "kept".into());
        let before = img.clone();
        let copied = vec![
            ("disk_format".to_owned(), "raw".to_owned()),
            ("container_format".to_owned(), "bare".to_owned()),
            ("os_distro".to_owned(), "debian".to_owned()),
            ("hw_disk_bus".to_owned(), "scsi".to_owned()),
        ];
        let undo = Restore::copy_onto(&mut img, copied);
        assert_eq!(img.disk_format.as_deref(), Some("raw"));
        assert_eq!(img.container_format.as_deref(), Some("bare"));
        assert_eq!(img.properties["os_distro"], "debian");
        assert_eq!(img.properties["hw_disk_bus"], "scsi");
        undo.apply(&mut img);
        assert_eq!(img, before);
    }
}
