//! Image members: the projects a `shared` image is shared with.

use crate::{DomainError, ImageId, Micros};

/// A member's answer to the share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberStatus {
    Pending,
    Accepted,
    Rejected,
}

impl MemberStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Pending => "pending",
            MemberStatus::Accepted => "accepted",
            MemberStatus::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(MemberStatus::Pending),
            "accepted" => Some(MemberStatus::Accepted),
            "rejected" => Some(MemberStatus::Rejected),
            _ => None,
        }
    }

    /// A status from a request body, refused as Glance refuses it.
    pub fn from_request(s: &str) -> Result<Self, DomainError> {
        Self::parse(s).ok_or_else(|| {
            DomainError::BadRequest(format!(
                "Incorrect request: Status must be one of: pending, accepted, rejected; got {s}"
            ))
        })
    }
}

/// One membership of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub image_id: ImageId,
    /// The project the image is shared with (any non-empty string, as in Glance).
    pub member_id: String,
    pub status: MemberStatus,
    pub created_at: Micros,
    pub updated_at: Micros,
}

/// Longest member id accepted (the column's width).
pub const MAX_MEMBER_ID: usize = 255;

/// Glance's answer for a member the caller cannot see or that does not exist.
pub fn member_not_found(member: &str, image: &ImageId) -> DomainError {
    DomainError::NotFound(format!(
        "{member} not found in the member list of the image {image}."
    ))
}
