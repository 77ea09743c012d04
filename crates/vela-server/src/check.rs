//! `vela db check`: the schema against this build, data in the stores that no image refers to,
//! and images whose data is missing from their store (or has another size). Reads only.

use std::time::Duration;

use futures::StreamExt;
use vela_db::Db;
use vela_store::{StoreError, Stores};

/// Locations read per page, and store lookups at once.
const PAGE: i64 = 1000;
const PARALLEL: usize = 8;
/// One store lookup may take this long.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(30);

/// What `check` found. `problems` is empty for a healthy deployment.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub schema_version: i64,
    pub locations_checked: u64,
    pub unreferenced_objects: usize,
    pub problems: Vec<String>,
}

/// Checks the schema, then (with `data`) every location of every image with data, and the
/// stores for data no image refers to (older than `grace`, as `vela store gc` would remove).
pub async fn check(
    db: &Db,
    stores: &Stores,
    data: bool,
    grace: Duration,
) -> anyhow::Result<CheckReport> {
    let mut report = CheckReport {
        schema_version: db.schema_version().await?,
        ..Default::default()
    };
    let known = vela_db::SCHEMA_VERSION;
    if report.schema_version < known {
        report.problems.push(format!(
            "schema at version {}, this build needs {known}: run `vela db migrate`",
            report.schema_version
        ));
        return Ok(report);
    }
    if report.schema_version > known {
        report.problems.push(format!(
            "schema at version {}, newer than this build ({known})",
            report.schema_version
        ));
        return Ok(report);
    }
    if !data {
        return Ok(report);
    }
    let mut after: Option<String> = None;
    loop {
        let mut page = db.data_locations_page(after.as_deref(), PAGE).await?;
        let full = page.len() as i64 == PAGE;
        // A page ends at an image boundary, so no image's locations are split (unless one
        // image fills the page).
        if full {
            let last = page.last().map(|(id, _, _)| id.clone());
            let kept = page
                .iter()
                .filter(|(id, _, _)| Some(id) != last.as_ref())
                .count();
            if kept > 0 {
                page.truncate(kept);
            }
        }
        let Some(last) = page.last().map(|(id, _, _)| id.clone()) else {
            break;
        };
        report.locations_checked += page.len() as u64;
        let found: Vec<Option<String>> = futures::stream::iter(page)
            .map(|(id, size, loc)| async move { look_up(stores, &id, size, &loc).await })
            .buffered(PARALLEL)
            .collect()
            .await;
        report.problems.extend(found.into_iter().flatten());
        if !full {
            break;
        }
        after = Some(last);
    }
    let unreferenced = crate::gc_stores_dry_run(db, stores, grace).await?;
    report.unreferenced_objects = unreferenced.removed;
    if unreferenced.removed > 0 {
        report.problems.push(format!(
            "{} store objects no image refers to (`vela store gc` removes them)",
            unreferenced.removed
        ));
    }
    Ok(report)
}

/// A problem with one location, if any.
async fn look_up(
    stores: &Stores,
    id: &str,
    size: Option<i64>,
    loc: &vela_domain::image::ImageLocation,
) -> Option<String> {
    let store = match stores.store_of(&loc.store) {
        Ok(s) => s,
        Err(_) => {
            return Some(format!(
                "image {id}: its location names store '{}', which is not configured",
                loc.store
            ))
        }
    };
    let got = tokio::time::timeout(LOOKUP_TIMEOUT, store.size(&loc.url)).await;
    match got {
        Err(_) => Some(format!(
            "image {id}: store '{}' did not answer in {LOOKUP_TIMEOUT:?}",
            loc.store
        )),
        Ok(Err(StoreError::NotFound(_))) => Some(format!(
            "image {id}: data missing from store '{}'",
            loc.store
        )),
        Ok(Err(e)) => Some(format!("image {id}: store '{}': {e}", loc.store)),
        Ok(Ok(n)) => match size.and_then(|s| u64::try_from(s).ok()) {
            Some(want) if want != n => Some(format!(
                "image {id}: store '{}' holds {n} bytes, the image has {want}",
                loc.store
            )),
            _ => None,
        },
    }
}
