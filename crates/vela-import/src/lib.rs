//! Interoperable image import: runs the tasks `POST /v2/images/{id}/import` creates.
//!
//! The API layer validates a request, takes the image's import lock and records a `pending`
//! task in one transaction, then hands the task to [`Importer::start`]. The node that claims
//! the task (a compare-and-set on its status) holds a lease in the database and renews it while
//! it works; if the node stops, any node's [`Importer::recover`] finds the expired lease, fails
//! the task and puts the image back where the user can retry. Exactly one node ever runs a
//! task, and a node that lost its lease stops writing.
//!
//! A run: obtain the data (the staging area for `glance-direct`; a URL fetched through the
//! guarded outbound client for `web-download`; another region's image service for
//! `glance-download`; another store for `copy-image`), pass it through the configured plugins
//! (decompression, conversion with `qemu-img`, injected properties), then write it to each
//! target store through the one ingest path (size cap, hashing, format inspection).

mod flow;
mod location;
pub mod plugins;
mod remote;
mod source;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vela_db::{Db, DbError};
use vela_domain::import::{FAILED_IMPORT, IMPORTING_TO, IMPORT_LOCK, STAGED_DATA};
use vela_domain::task::{Task, TaskStatus};
use vela_domain::{DomainError, Image, ImageId, ImageStatus, LocationUrl, Micros};
use vela_store::digest::HashAlgo;
use vela_store::outbound::OutboundClient;
use vela_store::{Store, Stores};

pub use location::LocationJob;
pub use plugins::{Conversion, Inject, Plugin};

/// What a task does when it runs.
#[derive(Debug, Clone)]
pub(crate) enum Job {
    /// An `api_image_import` (or legacy `import`) task: its input says everything.
    Import,
    /// A `location_import` task.
    Location(LocationJob),
}

/// How imports run.
#[derive(Debug, Clone)]
pub struct ImportConfig {
    /// Enabled import methods (`enabled_import_methods`).
    pub methods: Vec<String>,
    /// How long a task's lease lasts without renewal (renewed every third of it).
    pub lease: Duration,
    /// How long finished tasks are kept (`task_time_to_live`).
    pub task_ttl: Duration,
    /// Largest image, in bytes.
    pub image_size_cap: u64,
    /// `os_hash_algo` for imported data.
    pub hash_algo: HashAlgo,
    /// The format inspector's rules.
    pub inspection: Arc<vela_inspect::Rules>,
    /// Plugins run on imported data (not for copy-image), in order.
    pub plugins: Vec<Plugin>,
    pub conversion: Conversion,
    pub inject: Inject,
    /// glance-download: properties of the remote image copied to the new one (names or
    /// name prefixes).
    pub remote_properties: Vec<String>,
    /// Local scratch space for plugins (emptied at start).
    pub work_dir: PathBuf,
    /// This node's name, recorded on the tasks it runs.
    pub node: String,
    /// Tasks this node runs at once; more wait (claimed, their lease renewed) for a turn.
    pub max_running: usize,
    /// The identity service (Keystone v3 URL) whose catalog `glance-download` looks up.
    pub identity_url: Option<String>,
    /// Per-project quotas (unified limits), when enforced.
    pub quotas: Option<vela_db::quota::Quotas>,
}

/// Who asked for an import, as far as the run needs it (kept in memory only: a run that
/// stops is failed, never resumed, so no credential is ever stored).
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The caller's token, for `glance-download`.
    pub token: Option<String>,
    /// The caller's roles (the metadata-injection plugin ignores some roles).
    pub roles: Vec<String>,
}

/// Why a run failed; the message becomes the task's.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Db(#[from] DbError),
    /// The lease was lost (another node failed the task, or the image went away).
    #[error("the import was cancelled: {0}")]
    Cancelled(String),
}

impl ImportError {
    pub(crate) fn failed(m: impl Into<String>) -> Self {
        ImportError::Failed(m.into())
    }
}

/// Starts, runs and recovers imports. Cheap to clone.
#[derive(Clone)]
pub struct Importer {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    stores: Stores,
    staging: Arc<dyn Store>,
    cfg: ImportConfig,
    /// For URLs users give (web-download): filtered and address-guarded.
    web: OutboundClient,
    /// For endpoints the operator configured (the identity catalog).
    trusted: OutboundClient,
    /// Runs on this node, to cancel them when the node shuts down.
    running: Mutex<HashMap<String, CancellationToken>>,
    /// Turns to run (`max_running`).
    turns: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Importer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Importer")
            .field("node", &self.inner.cfg.node)
            .field("methods", &self.inner.cfg.methods)
            .finish_non_exhaustive()
    }
}

fn micros(d: Duration) -> Micros {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX / 4)
}

impl Importer {
    pub fn new(
        db: Db,
        stores: Stores,
        staging: Arc<dyn Store>,
        cfg: ImportConfig,
        web: OutboundClient,
        trusted: OutboundClient,
    ) -> Self {
        let cfg_turns = cfg.max_running.max(1);
        Importer {
            inner: Arc::new(Inner {
                db,
                stores,
                staging,
                cfg,
                web,
                trusted,
                running: Mutex::new(HashMap::new()),
                turns: Arc::new(tokio::sync::Semaphore::new(cfg_turns)),
            }),
        }
    }

    /// The staging area (`PUT /stage` writes here).
    pub fn staging(&self) -> &Arc<dyn Store> {
        &self.inner.staging
    }

    /// The configuration.
    pub fn config(&self) -> &ImportConfig {
        &self.inner.cfg
    }

    /// The client for user-given URLs (also used to check them at request time).
    pub fn web_client(&self) -> &OutboundClient {
        &self.inner.web
    }

    pub(crate) fn lease(&self) -> Micros {
        micros(self.inner.cfg.lease)
    }

    pub(crate) fn ttl(&self) -> Micros {
        micros(self.inner.cfg.task_ttl)
    }

    /// Runs a `pending` import task in the background on this node (if no other node
    /// claimed it).
    pub fn start(&self, task_id: String, caller: Caller) {
        let me = self.clone();
        tokio::spawn(async move { flow::run(me, task_id, caller, Job::Import).await });
    }

    /// Runs a `pending` location import task in the background on this node.
    pub fn start_location(&self, task_id: String, job: LocationJob) {
        let me = self.clone();
        tokio::spawn(
            async move { flow::run(me, task_id, Caller::default(), Job::Location(job)).await },
        );
    }

    /// Cancels every run of this node (at shutdown). Their tasks fail and their images are
    /// put back before the runs end.
    pub fn cancel_all(&self) {
        if let Ok(running) = self.inner.running.lock() {
            for token in running.values() {
                token.cancel();
            }
        }
    }

    /// How many imports run on this node.
    pub fn running(&self) -> usize {
        self.inner.running.lock().map(|r| r.len()).unwrap_or(0)
    }

    /// Waits until this node runs no import, at most `limit`.
    pub async fn wait_idle(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let idle = self
                .inner
                .running
                .lock()
                .map(|r| r.is_empty())
                .unwrap_or(true);
            if idle || tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Removes this node's scratch space (runs from before a restart are dead).
    pub async fn clean_work_dir(&self) -> std::io::Result<()> {
        let dir = &self.inner.cfg.work_dir;
        match tokio::fs::remove_dir_all(dir).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        vela_store::fs::create_private_dir(dir)
    }

    /// Fails the tasks whose node stopped renewing their lease, and puts their images back.
    /// Safe on every node at once: each task is taken over under its row lock.
    pub async fn recover(&self) -> Result<usize, ImportError> {
        let now = vela_domain::now_micros();
        let grace = self.lease().saturating_mul(2);
        let mut recovered = 0;
        for id in self.inner.db.unfinished_tasks().await? {
            let task = match self.inner.db.get_task(&id).await {
                Ok(t) => t,
                Err(DbError::NotFound) => continue,
                Err(e) => return Err(e.into()),
            };
            if !task.abandoned(now, grace) {
                continue;
            }
            let reason = format!(
                "The import did not finish: the node running it ({}) stopped.",
                task.runner.as_deref().unwrap_or("unknown")
            );
            if self.fail_abandoned(&task, &reason, now, grace).await? {
                tracing::warn!(task_id = %task.id, image_id = ?task.image_id, "abandoned task failed; image put back");
                recovered += 1;
            }
        }
        let purged = self.inner.db.purge_expired_tasks(now).await?;
        if purged > 0 {
            tracing::info!(purged, "expired tasks removed");
        }
        Ok(recovered)
    }

    async fn fail_abandoned(
        &self,
        task: &Task,
        reason: &str,
        now: Micros,
        grace: Micros,
    ) -> Result<bool, ImportError> {
        let ttl = self.ttl();
        let fail = |t: &mut Task| -> Result<bool, DomainError> {
            if !t.abandoned(now, grace) {
                return Ok(false);
            }
            t.set_status(TaskStatus::Failure, now, ttl)?;
            t.message = reason.to_owned();
            Ok(true)
        };
        let image = task.image_id.as_deref().and_then(ImageId::parse);
        let Some(image) = image else {
            let (_, done) = self.inner.db.update_task(&task.id, fail).await?;
            return Ok(done);
        };
        let copy = flow::is_copy(task);
        // The data goes first, while the image is still locked (and `importing`), so that
        // nothing a user starts once the image is released can be mistaken for it.
        match self.inner.db.get_image(&image, true).await {
            Ok(img) if img.properties.get(IMPORT_LOCK) == Some(&task.id) => {
                let staged = img.properties.get(STAGED_DATA).map(|l| l.as_str().into());
                self.remove_staged(&image, staged.as_ref()).await;
                for store in vela_domain::import::store_list(&img, IMPORTING_TO) {
                    if let Some(s) = self.inner.stores.get(&store) {
                        if let Err(e) = s.abort_partial(&image).await {
                            tracing::warn!(image_id = %image, store, error = %e, "could not remove partial data");
                        }
                    }
                }
            }
            Ok(_) | Err(DbError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        let res = self
            .inner
            .db
            .update_image_and_task(&image, &task.id, None, |img, t| {
                if !fail(t)? {
                    return Ok(false);
                }
                put_back(img, &t.id, copy)?;
                Ok(true)
            })
            .await;
        match res {
            Ok((_, _, done)) => Ok(done),
            Err(DbError::NotFound) => {
                // The image record is gone: fail the task alone.
                let (_, done) = self.inner.db.update_task(&task.id, fail).await?;
                Ok(done)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Removes staged data (missing is fine).
    pub async fn remove_staged(&self, image: &ImageId, location: Option<&LocationUrl>) {
        let staging = &self.inner.staging;
        if let Some(loc) = location {
            if let Err(e) = staging.delete(loc).await {
                tracing::warn!(image_id = %image, error = %e, "could not remove staged data");
            }
        }
        if let Err(e) = staging.abort_partial(image).await {
            tracing::warn!(image_id = %image, error = %e, "could not remove partial staged data");
        }
    }
}

/// Puts an image back after its import task (`task`) failed: the lock is released, stores
/// still pending are recorded as failed, and an image that did not get any data returns to
/// `queued` (a copy keeps its status: it stays active on its old stores).
pub(crate) fn put_back(img: &mut Image, task: &str, copy: bool) -> Result<(), DomainError> {
    if img.properties.get(IMPORT_LOCK).map(String::as_str) == Some(task) {
        img.properties.remove(IMPORT_LOCK);
    }
    if img.properties.contains_key(IMPORTING_TO) {
        let pending = vela_domain::import::store_list(img, IMPORTING_TO);
        let mut failed = vela_domain::import::store_list(img, FAILED_IMPORT);
        for s in pending {
            if !failed.contains(&s) {
                failed.push(s);
            }
        }
        vela_domain::import::set_store_list(img, IMPORTING_TO, &[]);
        vela_domain::import::set_store_list(img, FAILED_IMPORT, &failed);
    }
    if img.deleted || copy {
        return Ok(());
    }
    match img.status {
        ImageStatus::Importing | ImageStatus::Uploading if img.locations.is_empty() => {
            img.set_status(ImageStatus::Queued)
        }
        ImageStatus::Importing => img.set_status(ImageStatus::Active),
        _ => Ok(()),
    }
}
