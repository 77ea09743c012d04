//! The domain layer's one error type. Variants name the outcome a caller can act on; the HTTP
//! layer maps each to exactly one status code.

/// A refusal by the image rules. The message is shown to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// Malformed or invalid input (400).
    #[error("{0}")]
    BadRequest(String),
    /// Not allowed by policy or by a read-only/reserved rule (403).
    #[error("{0}")]
    Forbidden(String),
    /// No such image, or not visible to the caller (404).
    #[error("{0}")]
    NotFound(String),
    /// Conflicts with the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// A quota or size limit was exceeded (413).
    #[error("{0}")]
    TooLarge(String),
    /// The image went away while the request was being served (410).
    #[error("{0}")]
    Gone(String),
}

impl DomainError {
    /// 404 for an image id, worded as Glance words it.
    pub fn image_not_found(id: &str) -> Self {
        DomainError::NotFound(format!("No image found with ID {id}"))
    }

    /// 400 for a value that does not match the image schema.
    pub fn schema(reason: impl std::fmt::Display) -> Self {
        DomainError::BadRequest(format!(
            "Provided object does not match schema 'image': {reason}"
        ))
    }
}

/// An error and its sources, outermost first: `a: b: c`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        // Wrappers often repeat their source's text; say it once.
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
