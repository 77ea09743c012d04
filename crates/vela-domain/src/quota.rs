//! Per-project quotas with Keystone's unified limits, counted as Glance counts them.
//!
//! Four resources: `image_size_total` and `image_stage_total` (MiB, rounded down),
//! `image_count_total` and `image_count_uploading` (images). A project's limit is its own
//! project limit, else the registered default, else 0 (oslo.limit's rule: a resource without
//! any limit allows nothing); a negative limit is unlimited. A request is refused when the
//! current usage plus the request's delta exceeds the limit.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use crate::import::IMPORTING_TO;
use crate::{DomainError, Image, ImageStatus};

const MIB: i64 = 1024 * 1024;

/// A resource Vela counts against unified limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    /// Bytes of the project's images in their stores (each location counts), MiB.
    ImageSizeTotal,
    /// Bytes of the project's staged data and of copies under way, MiB.
    ImageStageTotal,
    /// The project's images.
    ImageCountTotal,
    /// The project's images being uploaded, staged, imported or copied.
    ImageCountUploading,
}

impl Resource {
    /// Every resource, in name order (the order oslo.limit checks and reports them in).
    pub const ALL: [Resource; 4] = [
        Resource::ImageCountTotal,
        Resource::ImageCountUploading,
        Resource::ImageSizeTotal,
        Resource::ImageStageTotal,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Resource::ImageSizeTotal => "image_size_total",
            Resource::ImageStageTotal => "image_stage_total",
            Resource::ImageCountTotal => "image_count_total",
            Resource::ImageCountUploading => "image_count_uploading",
        }
    }

    pub fn parse(name: &str) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// The limits that apply to one project. A resource missing here allows nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits(pub BTreeMap<Resource, i64>);

impl Limits {
    /// The project's limit on `r` (0 when none is set anywhere).
    pub fn of(&self, r: Resource) -> i64 {
        self.0.get(&r).copied().unwrap_or(0)
    }

    /// Whether every resource of `rs` is unlimited (nothing to check).
    pub fn unlimited(&self, rs: &[Resource]) -> bool {
        rs.iter().all(|r| self.of(*r) < 0)
    }

    /// Resolves project limits over registered defaults, by resource name; names Vela does not
    /// count are ignored.
    pub fn resolve<'a>(
        defaults: impl IntoIterator<Item = (&'a str, i64)>,
        project: impl IntoIterator<Item = (&'a str, i64)>,
    ) -> Limits {
        let mut out = BTreeMap::new();
        for (name, limit) in defaults.into_iter().chain(project) {
            if let Some(r) = Resource::parse(name) {
                out.insert(r, limit);
            }
        }
        Limits(out)
    }
}

/// What a project uses: bytes for the two sizes, images for the two counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub size_bytes: i64,
    pub stage_bytes: i64,
    pub count: i64,
    pub uploading: i64,
}

impl Usage {
    /// What one image adds to its owner's usage.
    pub fn of(img: &Image) -> Usage {
        use ImageStatus::*;
        if img.deleted || matches!(img.status, Killed | Deleted | PendingDelete) {
            return Usage::default();
        }
        let size = img.size.filter(|s| *s > 0).unwrap_or(0);
        let receiving = matches!(img.status, Saving | Uploading | Importing);
        let copying = !receiving
            && img
                .properties
                .get(IMPORTING_TO)
                .is_some_and(|v| !v.is_empty());
        Usage {
            size_bytes: size.saturating_mul(img.locations.len() as i64),
            stage_bytes: if matches!(img.status, Uploading | Importing) || copying {
                size
            } else {
                0
            },
            count: 1,
            uploading: i64::from(receiving || copying),
        }
    }

    pub fn plus(self, o: Usage) -> Usage {
        Usage {
            size_bytes: self.size_bytes.saturating_add(o.size_bytes),
            stage_bytes: self.stage_bytes.saturating_add(o.stage_bytes),
            count: self.count.saturating_add(o.count),
            uploading: self.uploading.saturating_add(o.uploading),
        }
    }

    pub fn minus(self, o: Usage) -> Usage {
        Usage {
            size_bytes: self.size_bytes.saturating_sub(o.size_bytes).max(0),
            stage_bytes: self.stage_bytes.saturating_sub(o.stage_bytes).max(0),
            count: self.count.saturating_sub(o.count).max(0),
            uploading: self.uploading.saturating_sub(o.uploading).max(0),
        }
    }

    /// The usage of `r` in the unit limits are set in (MiB for sizes, rounded down).
    pub fn of_resource(&self, r: Resource) -> i64 {
        match r {
            Resource::ImageSizeTotal => self.size_bytes / MIB,
            Resource::ImageStageTotal => self.stage_bytes / MIB,
            Resource::ImageCountTotal => self.count,
            Resource::ImageCountUploading => self.uploading,
        }
    }
}

/// Bytes as a quota delta: whole MiB, rounded down, as Glance counts a declared size.
pub fn mib(bytes: u64) -> i64 {
    i64::try_from(bytes / MIB as u64).unwrap_or(i64::MAX)
}

/// Refuses (413) when `usage` plus a delta goes over the project's limit on any of `deltas`'
/// resources. The message is oslo.limit's, inside Glance's `LimitExceeded` text.
pub fn enforce(
    project: &str,
    limits: &Limits,
    usage: &Usage,
    deltas: &[(Resource, i64)],
) -> Result<(), DomainError> {
    let mut deltas = deltas.to_vec();
    deltas.sort();
    let over: Vec<String> = deltas
        .iter()
        .filter_map(|&(r, delta)| {
            let (limit, current) = (limits.of(r), usage.of_resource(r));
            (limit >= 0 && current.saturating_add(delta) > limit).then(|| {
                format!(
                    "Resource {} is over limit of {limit} due to current usage {current} and delta {delta}",
                    r.name()
                )
            })
        })
        .collect();
    if over.is_empty() {
        return Ok(());
    }
    Err(DomainError::TooLarge(format!(
        "The request returned a 413 Request Entity Too Large. This generally means that rate \
         limiting or a quota threshold was breached.\n\nThe response body:\nProject {project} is \
         over a limit for [{}]",
        over.join(", ")
    )))
}

/// A boxed future, so that sources of limits can be trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a project's limits come from: Keystone, or the embedded identity service.
pub trait LimitSource: Send + Sync {
    /// The project's limits. `fresh` skips any cache (used before a refusal).
    fn limits<'a>(&'a self, project: &'a str, fresh: bool)
        -> BoxFuture<'a, Result<Limits, String>>;

    /// Whether limits may come from a cache (and a refusal is worth a fresh look).
    fn caches(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ImageId;

    fn limits(pairs: &[(Resource, i64)]) -> Limits {
        Limits(pairs.iter().copied().collect())
    }

    #[test]
    fn usage_at_the_limit_with_no_delta_passes_and_over_it_fails() {
        let l = limits(&[(Resource::ImageSizeTotal, 1)]);
        let at = Usage {
            size_bytes: MIB,
            ..Usage::default()
        };
        assert!(enforce("p", &l, &at, &[(Resource::ImageSizeTotal, 0)]).is_ok());
        let err = enforce("p", &l, &at, &[(Resource::ImageSizeTotal, 1)]).unwrap_err();
        assert_eq!(
            err.to_string().lines().last(),
            Some("Project p is over a limit for [Resource image_size_total is over limit of 1 due to current usage 1 and delta 1]")
        );
    }

    #[test]
    fn a_missing_limit_allows_nothing_and_a_negative_one_everything() {
        let none = Limits::default();
        assert!(enforce(
            "p",
            &none,
            &Usage::default(),
            &[(Resource::ImageCountTotal, 1)]
        )
        .is_err());
        let unlimited = limits(&[(Resource::ImageCountTotal, -1)]);
        let many = Usage {
            count: 1 << 40,
            ..Usage::default()
        };
        assert!(enforce("p", &unlimited, &many, &[(Resource::ImageCountTotal, 1)]).is_ok());
    }

    #[test]
    fn project_limits_override_registered_defaults() {
        let l = Limits::resolve(
            [
                ("image_count_total", 5),
                ("image_size_total", 7),
                ("other", 1),
            ],
            [("image_count_total", 2)],
        );
        assert_eq!(l.of(Resource::ImageCountTotal), 2);
        assert_eq!(l.of(Resource::ImageSizeTotal), 7);
        assert_eq!(l.of(Resource::ImageStageTotal), 0);
    }

    #[test]
    fn an_image_counts_as_glance_counts_it() {
        let mut img = Image::new(ImageId::generate(), Some("p".into()), 0);
        assert_eq!(Usage::of(&img).count, 1);
        img.status = ImageStatus::Uploading;
        img.size = Some(3 * MIB);
        let u = Usage::of(&img);
        assert_eq!((u.stage_bytes, u.uploading, u.size_bytes), (3 * MIB, 1, 0));
        img.status = ImageStatus::Killed;
        assert_eq!(Usage::of(&img), Usage::default());
    }
}
