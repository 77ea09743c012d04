//! `GET /v2/images` query language: paging, sorting and filters, parsed into a [`ListQuery`]
//! that the repository turns into one indexed query (the SQL names are the repository's).

use crate::{DomainError, ImageId, Micros};

/// Sortable (and comparable) image columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Id,
    Name,
    Status,
    ContainerFormat,
    DiskFormat,
    Owner,
    Checksum,
    OsHashValue,
    Size,
    VirtualSize,
    MinDisk,
    MinRam,
    CreatedAt,
    UpdatedAt,
    Protected,
}

/// Kind of value a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Text,
    Int,
    Time,
    Bool,
}

impl Column {
    /// The value type of the column.
    pub fn kind(self) -> ColumnType {
        match self {
            Column::Size | Column::VirtualSize | Column::MinDisk | Column::MinRam => {
                ColumnType::Int
            }
            Column::CreatedAt | Column::UpdatedAt => ColumnType::Time,
            Column::Protected => ColumnType::Bool,
            _ => ColumnType::Text,
        }
    }

    /// Whether the column may be NULL.
    pub fn nullable(self) -> bool {
        matches!(
            self,
            Column::Name
                | Column::ContainerFormat
                | Column::DiskFormat
                | Column::Owner
                | Column::Checksum
                | Column::OsHashValue
                | Column::Size
                | Column::VirtualSize
        )
    }

    fn from_sort_key(k: &str) -> Option<Self> {
        Some(match k {
            "name" => Column::Name,
            "status" => Column::Status,
            "container_format" => Column::ContainerFormat,
            "disk_format" => Column::DiskFormat,
            "size" => Column::Size,
            "id" => Column::Id,
            "created_at" => Column::CreatedAt,
            "updated_at" => Column::UpdatedAt,
            _ => return None,
        })
    }

    fn from_filter_key(k: &str) -> Option<Self> {
        Some(match k {
            "owner" => Column::Owner,
            "checksum" => Column::Checksum,
            "os_hash_value" => Column::OsHashValue,
            "size" => Column::Size,
            "virtual_size" => Column::VirtualSize,
            "min_disk" => Column::MinDisk,
            "min_ram" => Column::MinRam,
            other => return Self::from_sort_key(other),
        })
    }
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortDir {
    Asc,
    Desc,
}

impl SortDir {
    fn parse(s: &str) -> Result<Self, DomainError> {
        match s {
            "asc" => Ok(SortDir::Asc),
            "desc" => Ok(SortDir::Desc),
            other => Err(DomainError::BadRequest(format!(
                "Invalid sort direction: {other}"
            ))),
        }
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
}

impl CmpOp {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "eq" => CmpOp::Eq,
            "neq" => CmpOp::Neq,
            "gt" => CmpOp::Gt,
            "gte" => CmpOp::Gte,
            "lt" => CmpOp::Lt,
            "lte" => CmpOp::Lte,
            _ => return None,
        })
    }
}

/// A filter value.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterValue {
    Text(String),
    Int(i64),
    Bool(bool),
}

/// One filter condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `column op value`.
    Cmp(Column, CmpOp, FilterValue),
    /// `column IN (values)`.
    In(Column, Vec<String>),
    /// Custom property `name = value`.
    Property(String, String),
    /// Image carries this tag.
    Tag(String),
}

/// The `visibility` list parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisibilityFilter {
    Public,
    Private,
    Shared,
    Community,
    All,
    /// Matches no image.
    Nothing,
}

/// The `member_status` list parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberStatusFilter {
    Accepted,
    Pending,
    Rejected,
    All,
}

impl MemberStatusFilter {
    /// The stored status name, or None for all.
    pub fn as_status(self) -> Option<&'static str> {
        match self {
            MemberStatusFilter::Accepted => Some("accepted"),
            MemberStatusFilter::Pending => Some("pending"),
            MemberStatusFilter::Rejected => Some("rejected"),
            MemberStatusFilter::All => None,
        }
    }
}

/// Page-size settings.
#[derive(Debug, Clone, Copy)]
pub struct Paging {
    pub default_limit: i64,
    pub max_limit: i64,
}

/// A parsed image list request.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    pub limit: i64,
    pub marker: Option<ImageId>,
    /// Sort keys with directions, tie-breakers (`created_at`, `id`) included.
    pub sort: Vec<(Column, SortDir)>,
    pub filters: Vec<Filter>,
    pub visibility: Option<VisibilityFilter>,
    pub member_status: MemberStatusFilter,
    pub os_hidden: bool,
}

fn bad(msg: impl Into<String>) -> DomainError {
    DomainError::BadRequest(msg.into())
}

/// Splits `op:value`; a value that is itself a timestamp (contains `:`) counts as `eq`.
fn split_op(expr: &str) -> (&str, &str) {
    match expr.split_once(':') {
        Some(_) if parse_time(expr).is_some() => ("eq", expr),
        Some((op, rest)) => (op, rest),
        None => ("eq", expr),
    }
}

/// Splits an `in:` list on commas; double-quoted items may contain commas.
pub fn split_list(value: &str) -> Result<Vec<String>, DomainError> {
    if value.chars().filter(|c| *c == '"').count() % 2 != 0 {
        return Err(bad(format!(
            "Invalid filter value {value}. The quote is not closed."
        )));
    }
    let mut out = Vec::new();
    let mut rest = value;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('"') {
            let end = after
                .find('"')
                .ok_or_else(|| bad("The quote is not closed."))?;
            out.push(after[..end].to_owned());
            rest = &after[end + 1..];
            match rest.strip_prefix(',') {
                Some(r) => rest = r,
                None if rest.is_empty() => {}
                None => {
                    return Err(bad(format!(
                    "Invalid filter value {value}. There is no comma after closing quotation mark."
                )))
                }
            }
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            let item = &rest[..end];
            if item.contains('"') {
                return Err(bad(format!(
                    "Invalid filter value {value}. There is no comma before opening quotation mark."
                )));
            }
            out.push(item.to_owned());
            rest = rest.get(end + 1..).unwrap_or("");
        }
    }
    Ok(out)
}

/// Parses an ISO 8601 timestamp (missing zone = UTC) into microseconds.
pub fn parse_time(s: &str) -> Option<Micros> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_micros());
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S%.f",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_micros());
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M%z",
        "%Y-%m-%dT%H:%M:%S%#z",
    ] {
        if let Ok(t) = chrono::DateTime::parse_from_str(s, fmt) {
            return Some(t.timestamp_micros());
        }
    }
    None
}

fn parse_int(key: &str, v: &str) -> Result<i64, DomainError> {
    v.trim()
        .parse::<i64>()
        .map_err(|_| bad(format!("Invalid value for {key}: {v} is not an integer")))
}

impl ListQuery {
    /// Parses the decoded query pairs of a list request.
    pub fn parse(pairs: &[(String, String)], paging: Paging) -> Result<Self, DomainError> {
        let mut q = ListQuery {
            limit: paging.default_limit,
            marker: None,
            sort: Vec::new(),
            filters: Vec::new(),
            visibility: None,
            member_status: MemberStatusFilter::Accepted,
            os_hidden: false,
        };
        let mut sort_keys: Vec<&str> = Vec::new();
        let mut sort_dirs: Vec<&str> = Vec::new();
        let mut sort_new: Option<&str> = None;

        for (key, value) in pairs {
            let value = value.as_str();
            match key.as_str() {
                "limit" => {
                    let n = value
                        .parse::<i64>()
                        .map_err(|_| bad("limit param must be an integer"))?;
                    if n < 0 {
                        return Err(bad("limit param must be positive"));
                    }
                    q.limit = n.min(paging.max_limit);
                }
                "marker" => {
                    q.marker = Some(ImageId::parse(value).ok_or_else(|| {
                        bad(format!("Invalid marker. Image {value} could not be found."))
                    })?)
                }
                "sort_key" => sort_keys.push(value),
                "sort_dir" => sort_dirs.push(value),
                "sort" => sort_new = Some(value),
                "changes-since" => {
                    return Err(bad(
                        "The 'changes-since' filter is no longer available on v2.",
                    ))
                }
                "visibility" => {
                    q.visibility = Some(match value {
                        "public" => VisibilityFilter::Public,
                        "private" => VisibilityFilter::Private,
                        "shared" => VisibilityFilter::Shared,
                        "community" => VisibilityFilter::Community,
                        "all" => VisibilityFilter::All,
                        // Glance answers an empty value with an empty list.
                        "" => VisibilityFilter::Nothing,
                        other => return Err(bad(format!("Invalid visibility value: {other}"))),
                    })
                }
                "member_status" => {
                    q.member_status = match value {
                        "accepted" => MemberStatusFilter::Accepted,
                        "pending" => MemberStatusFilter::Pending,
                        "rejected" => MemberStatusFilter::Rejected,
                        "all" => MemberStatusFilter::All,
                        other => return Err(bad(format!("Invalid status value: {other}"))),
                    }
                }
                "os_hidden" => {
                    q.os_hidden = match value.to_ascii_lowercase().as_str() {
                        "true" => true,
                        "false" => false,
                        _ => return Err(bad(format!("Invalid value for os_hidden: {value}"))),
                    }
                }
                "protected" => {
                    let b = match value {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(bad(format!(
                                "Invalid value '{value}' for 'protected' filter. Valid values are 'true' or 'false'."
                            )))
                        }
                    };
                    q.filters.push(Filter::Cmp(
                        Column::Protected,
                        CmpOp::Eq,
                        FilterValue::Bool(b),
                    ));
                }
                "tag" => q.filters.push(Filter::Tag(value.to_owned())),
                "name" | "id" | "status" | "container_format" | "disk_format" => {
                    let col = Column::from_filter_key(key).ok_or_else(|| bad("bad filter"))?;
                    match value.split_once(':') {
                        Some(("in", list)) => q.filters.push(Filter::In(col, split_list(list)?)),
                        Some(("eq", v)) => q.filters.push(Filter::Cmp(
                            col,
                            CmpOp::Eq,
                            FilterValue::Text(v.to_owned()),
                        )),
                        Some((op, _)) => {
                            return Err(bad(format!(
                                "Unable to filter on a unknown operator '{op}'."
                            )))
                        }
                        None => q.filters.push(Filter::Cmp(
                            col,
                            CmpOp::Eq,
                            FilterValue::Text(value.to_owned()),
                        )),
                    }
                }
                "created_at" | "updated_at" => {
                    let col = Column::from_filter_key(key).ok_or_else(|| bad("bad filter"))?;
                    let (op, when) = split_op(value);
                    let op = CmpOp::parse(op).ok_or_else(|| {
                        bad(format!("Unable to filter on a unknown operator '{op}'."))
                    })?;
                    let t = parse_time(when)
                        .ok_or_else(|| bad(format!("Unable to parse datetime '{when}'.")))?;
                    q.filters.push(Filter::Cmp(col, op, FilterValue::Int(t)));
                }
                k => {
                    let range = k
                        .strip_suffix("_min")
                        .map(|c| (c, CmpOp::Gte))
                        .or_else(|| k.strip_suffix("_max").map(|c| (c, CmpOp::Lte)));
                    if let Some((col, op)) = range
                        .and_then(|(c, op)| Column::from_filter_key(c).map(|c| (c, op)))
                        .filter(|(c, _)| c.kind() == ColumnType::Int)
                    {
                        q.filters.push(Filter::Cmp(
                            col,
                            op,
                            FilterValue::Int(parse_int(k, value)?),
                        ));
                    } else if let Some(col) = Column::from_filter_key(k) {
                        let v = match col.kind() {
                            ColumnType::Int => FilterValue::Int(parse_int(k, value)?),
                            _ => FilterValue::Text(value.to_owned()),
                        };
                        q.filters.push(Filter::Cmp(col, CmpOp::Eq, v));
                    } else {
                        q.filters
                            .push(Filter::Property(k.to_owned(), value.to_owned()));
                    }
                }
            }
        }

        q.sort = parse_sort(sort_new, &sort_keys, &sort_dirs)?;
        Ok(q)
    }
}

fn sort_key(k: &str) -> Result<Column, DomainError> {
    Column::from_sort_key(k).ok_or_else(|| bad(format!("Invalid sort key: {k}. It must be one of the following: name, status, container_format, disk_format, size, id, created_at, updated_at.")))
}

fn parse_sort(
    new: Option<&str>,
    keys: &[&str],
    dirs: &[&str],
) -> Result<Vec<(Column, SortDir)>, DomainError> {
    let mut sort: Vec<(Column, SortDir)> = Vec::new();
    if let Some(spec) = new {
        if !keys.is_empty() || !dirs.is_empty() {
            return Err(bad(
                "The sort param cannot be used with the sort_key or sort_dir params.",
            ));
        }
        for part in spec.split(',') {
            let (k, d) = match part.split_once(':') {
                Some((k, d)) => (k.trim(), SortDir::parse(d.trim())?),
                None => (part.trim(), SortDir::Desc),
            };
            sort.push((sort_key(k)?, d));
        }
    } else {
        if dirs.len() > 1 && dirs.len() != keys.len() {
            return Err(bad(
                "Number of sort dirs does not match the number of sort keys",
            ));
        }
        let dirs: Vec<SortDir> = dirs
            .iter()
            .map(|d| SortDir::parse(d))
            .collect::<Result<_, _>>()?;
        for (i, k) in keys.iter().enumerate() {
            let d = dirs
                .get(i)
                .or(dirs.first())
                .copied()
                .unwrap_or(SortDir::Desc);
            sort.push((sort_key(k)?, d));
        }
        if keys.is_empty() {
            if let Some(d) = dirs.first() {
                sort.push((Column::CreatedAt, *d));
            }
        }
    }
    let first_dir = sort.first().map(|(_, d)| *d).unwrap_or(SortDir::Desc);
    for tie in [Column::CreatedAt, Column::Id] {
        if !sort.iter().any(|(c, _)| *c == tie) {
            sort.push((tie, first_dir));
        }
    }
    Ok(sort)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGING: Paging = Paging {
        default_limit: 25,
        max_limit: 1000,
    };

    fn q(s: &str) -> Result<ListQuery, DomainError> {
        let pairs: Vec<(String, String)> = s
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect();
        ListQuery::parse(&pairs, PAGING)
    }

    #[test]
    fn defaults() {
        let l = q("").unwrap();
        assert_eq!(l.limit, 25);
        assert_eq!(
            l.sort,
            vec![
                (Column::CreatedAt, SortDir::Desc),
                (Column::Id, SortDir::Desc)
            ]
        );
        assert!(!l.os_hidden);
        assert_eq!(q("limit=5000").unwrap().limit, 1000);
        assert!(q("limit=-1").is_err());
        assert!(q("limit=x").is_err());
        assert!(q("marker=zzz").is_err());
    }

    #[test]
    fn sorting() {
        let l = q("sort=name:asc,size").unwrap();
        assert_eq!(
            l.sort,
            vec![
                (Column::Name, SortDir::Asc),
                (Column::Size, SortDir::Desc),
                (Column::CreatedAt, SortDir::Asc),
                (Column::Id, SortDir::Asc)
            ]
        );
        let l = q("sort_key=name&sort_key=size&sort_dir=asc").unwrap();
        assert_eq!(l.sort[1], (Column::Size, SortDir::Asc));
        assert!(q("sort_key=name&sort_key=size&sort_dir=asc&sort_dir=desc&sort_dir=asc").is_err());
        assert!(q("sort=name&sort_key=size").is_err());
        assert!(q("sort_key=foo").is_err());
        assert!(q("sort_dir=up").is_err());
    }

    #[test]
    fn filters() {
        let l = q("name=in:a,\"b,c\"&tag=x&tag=y&size_min=3&os_distro=ubuntu").unwrap();
        assert_eq!(
            l.filters[0],
            Filter::In(Column::Name, vec!["a".into(), "b,c".into()])
        );
        assert_eq!(l.filters[1], Filter::Tag("x".into()));
        assert_eq!(
            l.filters[3],
            Filter::Cmp(Column::Size, CmpOp::Gte, FilterValue::Int(3))
        );
        assert_eq!(
            l.filters[4],
            Filter::Property("os_distro".into(), "ubuntu".into())
        );
        assert!(q("name=foo:bar").is_err());
        assert!(q("name=in:\"a").is_err());
        assert!(q("changes-since=x").is_err());
        assert!(q("protected=True").is_err());
        assert!(q("os_hidden=TRUE").unwrap().os_hidden);
        assert!(q("size_min=x").is_err());
        assert!(q("visibility=bogus").is_err());
        let l = q("created_at=gte:2026-01-01T00:00:00Z").unwrap();
        assert!(matches!(
            l.filters[0],
            Filter::Cmp(Column::CreatedAt, CmpOp::Gte, _)
        ));
        let l = q("created_at=2026-01-01T00:00:00Z").unwrap();
        assert!(matches!(
            l.filters[0],
            Filter::Cmp(Column::CreatedAt, CmpOp::Eq, _)
        ));
        assert!(q("created_at=foo:2026-01-01T00:00:00Z").is_err());
        assert!(q("created_at=gt:yesterday").is_err());
    }
}
