//! The image status machine. Every status change in Vela goes through [`ImageStatus::transition`].

use crate::DomainError;

/// Status of an image, as listed in the image schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageStatus {
    Queued,
    Saving,
    Active,
    Killed,
    Deleted,
    Uploading,
    Importing,
    PendingDelete,
    Deactivated,
}

impl ImageStatus {
    /// Every status, in the order of the image schema's enum.
    pub const ALL: [ImageStatus; 9] = [
        ImageStatus::Queued,
        ImageStatus::Saving,
        ImageStatus::Active,
        ImageStatus::Killed,
        ImageStatus::Deleted,
        ImageStatus::Uploading,
        ImageStatus::Importing,
        ImageStatus::PendingDelete,
        ImageStatus::Deactivated,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageStatus::Queued => "queued",
            ImageStatus::Saving => "saving",
            ImageStatus::Active => "active",
            ImageStatus::Killed => "killed",
            ImageStatus::Deleted => "deleted",
            ImageStatus::Uploading => "uploading",
            ImageStatus::Importing => "importing",
            ImageStatus::PendingDelete => "pending_delete",
            ImageStatus::Deactivated => "deactivated",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The statuses this one may move to (Glance's domain state machine).
    pub fn targets(self) -> &'static [ImageStatus] {
        use ImageStatus::*;
        match self {
            Queued => &[Saving, Uploading, Importing, Active, Deleted],
            Saving => &[Active, Killed, Deleted, Queued],
            Uploading => &[Importing, Queued, Deleted],
            Importing => &[Active, Deleted, Queued],
            Active => &[PendingDelete, Deleted, Deactivated],
            Killed => &[Deleted],
            PendingDelete => &[Deleted, Active],
            Deactivated => &[Active, Deleted],
            Deleted => &[],
        }
    }

    /// Whether `self → to` is allowed.
    pub fn can_become(self, to: ImageStatus) -> bool {
        self.targets().contains(&to)
    }

    /// Checks `self → to`; an illegal move is a 409 worded as Glance words it.
    pub fn transition(self, to: ImageStatus) -> Result<ImageStatus, DomainError> {
        if self.can_become(to) {
            Ok(to)
        } else {
            Err(DomainError::Conflict(format!(
                "Image status transition from {} to {} is not allowed",
                self.as_str(),
                to.as_str()
            )))
        }
    }
}

impl std::fmt::Display for ImageStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::ImageStatus::*;
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in ImageStatus::ALL {
            assert_eq!(ImageStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(ImageStatus::parse("bogus"), None);
    }

    #[test]
    fn upload_path_is_allowed() {
        assert!(Queued.can_become(Saving));
        assert!(Saving.can_become(Active));
        assert!(Saving.can_become(Queued));
    }

    #[test]
    fn illegal_moves_are_conflicts() {
        let err = Active.transition(Saving).unwrap_err();
        assert_eq!(
            err,
            DomainError::Conflict(
                "Image status transition from active to saving is not allowed".into()
            )
        );
        assert!(Deleted.targets().is_empty());
        assert!(!Killed.can_become(Active));
        assert!(!Deactivated.can_become(Saving));
    }
}
