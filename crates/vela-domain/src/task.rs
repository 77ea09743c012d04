//! Tasks: the records of asynchronous work (image imports, location imports), their status
//! machine, and the query language of `GET /v2/tasks`.
//!
//! A task is `pending` when created, `processing` once a node has claimed it (holding a lease
//! that it renews while it works), and ends `success` or `failure`. A finished task expires
//! `task_time_to_live` later and is then no longer shown.

use serde_json::Value;

use crate::{DomainError, Micros};

/// What a task does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskType {
    /// The legacy `POST /v2/tasks` import.
    Import,
    /// `POST /v2/images/{id}/import`.
    ApiImageImport,
    /// `POST /v2/images/{id}/locations`.
    LocationImport,
}

impl TaskType {
    /// In the order of the task schema's enum.
    pub const ALL: [TaskType; 3] = [
        TaskType::Import,
        TaskType::ApiImageImport,
        TaskType::LocationImport,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::Import => "import",
            TaskType::ApiImageImport => "api_image_import",
            TaskType::LocationImport => "location_import",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    Pending,
    Processing,
    Success,
    Failure,
}

impl TaskStatus {
    /// In the order of the task schema's enum.
    pub const ALL: [TaskStatus; 4] = [
        TaskStatus::Pending,
        TaskStatus::Processing,
        TaskStatus::Success,
        TaskStatus::Failure,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Processing => "processing",
            TaskStatus::Success => "success",
            TaskStatus::Failure => "failure",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// A task that will not change any more.
    pub fn is_final(self) -> bool {
        matches!(self, TaskStatus::Success | TaskStatus::Failure)
    }

    /// Whether `self → to` is allowed (Glance's task state machine).
    pub fn can_become(self, to: TaskStatus) -> bool {
        use TaskStatus::*;
        matches!(
            (self, to),
            (Pending, Processing) | (Pending, Failure) | (Processing, Success | Failure)
        )
    }
}

/// A task record.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// A UUID.
    pub id: String,
    pub kind: TaskType,
    pub status: TaskStatus,
    /// The project that asked for it.
    pub owner: Option<String>,
    pub user_id: Option<String>,
    pub request_id: Option<String>,
    /// The image it works on.
    pub image_id: Option<String>,
    pub input: Option<Value>,
    pub result: Option<Value>,
    /// Progress or the reason of a failure; empty otherwise.
    pub message: String,
    pub expires_at: Option<Micros>,
    pub created_at: Micros,
    pub updated_at: Micros,
    pub deleted: bool,
    pub deleted_at: Option<Micros>,
    /// While a node runs the task: until when it vouches for it. Once expired, any node may
    /// fail the task and undo what it started.
    pub lease_until: Option<Micros>,
    /// The node running the task (for logs).
    pub runner: Option<String>,
}

impl Task {
    /// A new `pending` task.
    pub fn new(kind: TaskType, now: Micros) -> Self {
        Task {
            id: uuid::Uuid::new_v4().to_string(),
            kind,
            status: TaskStatus::Pending,
            owner: None,
            user_id: None,
            request_id: None,
            image_id: None,
            input: None,
            result: None,
            message: String::new(),
            expires_at: None,
            created_at: now,
            updated_at: now,
            deleted: false,
            deleted_at: None,
            lease_until: None,
            runner: None,
        }
    }

    /// Moves the task to `to`; a finished task gets its expiry `ttl` microseconds from now.
    pub fn set_status(
        &mut self,
        to: TaskStatus,
        now: Micros,
        ttl: Micros,
    ) -> Result<(), DomainError> {
        if !self.status.can_become(to) {
            return Err(DomainError::Conflict(format!(
                "Task status transition from {} to {} is not allowed",
                self.status.as_str(),
                to.as_str()
            )));
        }
        self.status = to;
        if to.is_final() {
            self.expires_at = Some(now.saturating_add(ttl));
            self.lease_until = None;
        }
        Ok(())
    }

    /// The lease has run out (or a pending task was never claimed within `grace`): the node
    /// that should be running it has stopped.
    pub fn abandoned(&self, now: Micros, grace: Micros) -> bool {
        match self.status {
            TaskStatus::Processing => self.lease_until.is_none_or(|t| t < now),
            TaskStatus::Pending => match self.lease_until {
                Some(t) => t < now,
                None => self.created_at.saturating_add(grace) < now,
            },
            _ => false,
        }
    }

    /// Expired tasks are no longer shown.
    pub fn expired(&self, now: Micros) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

/// Sort keys `GET /v2/tasks` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskSortKey {
    CreatedAt,
    UpdatedAt,
    Id,
    Status,
    Type,
    ExpiresAt,
    Owner,
}

impl TaskSortKey {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "created_at" => TaskSortKey::CreatedAt,
            "updated_at" => TaskSortKey::UpdatedAt,
            "id" => TaskSortKey::Id,
            "status" => TaskSortKey::Status,
            "type" => TaskSortKey::Type,
            "expires_at" => TaskSortKey::ExpiresAt,
            "owner" => TaskSortKey::Owner,
            _ => return None,
        })
    }

    /// The column.
    pub fn column(self) -> &'static str {
        match self {
            TaskSortKey::CreatedAt => "created_at",
            TaskSortKey::UpdatedAt => "updated_at",
            TaskSortKey::Id => "id",
            TaskSortKey::Status => "status",
            TaskSortKey::Type => "type",
            TaskSortKey::ExpiresAt => "expires_at",
            TaskSortKey::Owner => "owner",
        }
    }
}

/// A parsed `GET /v2/tasks` query.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskQuery {
    pub limit: i64,
    pub marker: Option<String>,
    pub sort_key: TaskSortKey,
    /// Ascending?
    pub ascending: bool,
    pub status: Option<TaskStatus>,
    pub kind: Option<TaskType>,
}

fn looks_like_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}

impl TaskQuery {
    /// Parses the query parameters (Glance's rules: `limit`, `marker`, `sort_key`,
    /// `sort_dir`, and the `status` and `type` filters).
    pub fn parse(
        params: &[(String, String)],
        default_limit: i64,
        max_limit: i64,
    ) -> Result<Self, DomainError> {
        let mut q = TaskQuery {
            limit: default_limit,
            marker: None,
            sort_key: TaskSortKey::CreatedAt,
            ascending: false,
            status: None,
            kind: None,
        };
        for (k, v) in params {
            match k.as_str() {
                "limit" => {
                    let n: i64 = v.parse().map_err(|_| {
                        DomainError::BadRequest("limit param must be an integer".into())
                    })?;
                    if n < 0 {
                        return Err(DomainError::BadRequest(
                            "limit param must be positive".into(),
                        ));
                    }
                    q.limit = n.min(max_limit);
                }
                "marker" => {
                    if !looks_like_uuid(v) {
                        return Err(DomainError::BadRequest("Invalid marker format".into()));
                    }
                    q.marker = Some(v.clone());
                }
                "sort_key" => {
                    q.sort_key = TaskSortKey::parse(v).ok_or_else(|| {
                        DomainError::BadRequest("Sort key supplied was not valid.".into())
                    })?;
                }
                "sort_dir" => {
                    q.ascending = match v.as_str() {
                        "asc" => true,
                        "desc" => false,
                        _ => {
                            return Err(DomainError::BadRequest(format!(
                                "Invalid sort direction: {v}"
                            )))
                        }
                    }
                }
                "status" => {
                    q.status = Some(TaskStatus::parse(&v.to_lowercase()).ok_or_else(|| {
                        DomainError::BadRequest(format!("Invalid status value: {v}"))
                    })?);
                }
                "type" => {
                    let t = TaskType::parse(&v.to_lowercase())
                        .filter(|t| *t == TaskType::Import)
                        .ok_or_else(|| {
                            DomainError::BadRequest(format!("Invalid type value: {v}"))
                        })?;
                    q.kind = Some(t);
                }
                _ => {}
            }
        }
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(s: &[(&str, &str)]) -> Vec<(String, String)> {
        s.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn status_machine() {
        let mut t = Task::new(TaskType::ApiImageImport, 10);
        assert!(t.set_status(TaskStatus::Success, 20, 5).is_err());
        t.set_status(TaskStatus::Processing, 20, 5).unwrap();
        assert_eq!(t.expires_at, None);
        t.set_status(TaskStatus::Failure, 30, 5).unwrap();
        assert_eq!(t.expires_at, Some(35));
        assert!(t.expired(35));
        assert!(t.set_status(TaskStatus::Processing, 40, 5).is_err());
    }

    #[test]
    fn abandonment() {
        let mut t = Task::new(TaskType::ApiImageImport, 100);
        assert!(!t.abandoned(150, 100));
        assert!(t.abandoned(201, 100));
        t.status = TaskStatus::Processing;
        t.lease_until = Some(300);
        assert!(!t.abandoned(250, 100));
        assert!(t.abandoned(301, 100));
        t.status = TaskStatus::Success;
        assert!(!t.abandoned(1000, 100));
    }

    #[test]
    fn queries() {
        let q = TaskQuery::parse(&params(&[]), 25, 1000).unwrap();
        assert_eq!(q.limit, 25);
        assert_eq!(q.sort_key, TaskSortKey::CreatedAt);
        assert!(!q.ascending);
        let q = TaskQuery::parse(
            &params(&[
                ("limit", "5000"),
                ("sort_dir", "asc"),
                ("status", "PENDING"),
            ]),
            25,
            1000,
        )
        .unwrap();
        assert_eq!((q.limit, q.ascending), (1000, true));
        assert_eq!(q.status, Some(TaskStatus::Pending));
        for bad in [
            ("status", "bogus"),
            ("type", "bogus"),
            ("type", "api_image_import"),
            ("sort_dir", "x"),
            ("marker", "nope"),
            ("limit", "-1"),
            ("limit", "x"),
            ("sort_key", "name"),
        ] {
            assert!(
                TaskQuery::parse(&params(&[bad]), 25, 1000).is_err(),
                "{bad:?}"
            );
        }
    }
}
