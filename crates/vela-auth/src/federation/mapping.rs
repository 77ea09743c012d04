//! Keystone's federation mapping rules: which local user, projects and roles a set of remote
//! attributes (an identity provider's claims) maps to.
//!
//! A mapping is `{"rules": [{"remote": [...], "local": [...]}]}`. A rule applies when every
//! `remote` requirement holds for the assertion: the attribute (`type`) is present and, with
//! `any_one_of` / `not_any_of`, one of its values is (is not) in the list (`regex`: the list
//! holds regular expressions searched in each value). A requirement with no condition, or with
//! `whitelist` / `blacklist` (which filter the values), adds the attribute's values to the
//! rule's direct maps, which `{0}`, `{1}`… in the `local` part stand for. The user comes from
//! the first rule that names one, the projects from the last rule that lists them. Assertion
//! values are split on `;`, as Keystone does; a direct map with several values reads as a list.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Most rules a mapping may hold, and most requirements or local entries a rule may hold.
pub const MAX_RULES: usize = 256;
pub const MAX_PARTS: usize = 64;

/// A mapping as stored and as `vela identity mapping` takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub local: Vec<Value>,
    pub remote: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any_one_of: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_any_of: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whitelist: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blacklist: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub regex: bool,
}

/// Whether a mapped user exists only for its token (`ephemeral`, Keystone's default) or is a
/// local user that must exist already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserType {
    Ephemeral,
    Local,
}

/// What an assertion maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    /// The user's name (or, when only an id is mapped, its id).
    pub user_name: String,
    pub user_id: Option<String>,
    pub user_type: UserType,
    /// Projects (by name) and the roles given there.
    pub projects: Vec<(String, Vec<String>)>,
}

/// Why a mapping does not yield an identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("invalid mapping: {0}")]
    Invalid(String),
    #[error("no mapping rule applies to these attributes")]
    NoMatch,
}

impl Mapping {
    /// Parses and checks a mapping (sizes, regular expressions, local entries).
    pub fn parse(text: &str) -> Result<Mapping, MappingError> {
        let m: Mapping =
            serde_json::from_str(text).map_err(|e| MappingError::Invalid(e.to_string()))?;
        m.check()?;
        Ok(m)
    }

    fn check(&self) -> Result<(), MappingError> {
        let invalid = |m: &str| Err(MappingError::Invalid(m.to_owned()));
        if self.rules.is_empty() || self.rules.len() > MAX_RULES {
            return invalid("a mapping needs 1 to 256 rules");
        }
        for r in &self.rules {
            if r.remote.is_empty() || r.remote.len() > MAX_PARTS || r.local.len() > MAX_PARTS {
                return invalid(
                    "a rule needs 1 to 64 remote requirements and at most 64 local entries",
                );
            }
            for q in &r.remote {
                let conditions = [&q.any_one_of, &q.not_any_of, &q.whitelist, &q.blacklist]
                    .iter()
                    .filter(|c| c.is_some())
                    .count();
                if conditions > 1 {
                    return invalid(
                        "a requirement takes one of any_one_of, not_any_of, whitelist, blacklist",
                    );
                }
                if q.regex {
                    for p in q.any_one_of.iter().chain(&q.not_any_of).flatten() {
                        regex::Regex::new(p)
                            .map_err(|e| MappingError::Invalid(format!("regex {p}: {e}")))?;
                    }
                }
            }
            for l in &r.local {
                let Some(obj) = l.as_object() else {
                    return invalid("a local entry is an object");
                };
                if let Some(t) = obj.get("user").and_then(|u| u.get("type")) {
                    if t != "ephemeral" && t != "local" {
                        return invalid("user type must be ephemeral or local");
                    }
                }
            }
        }
        Ok(())
    }

    /// The identity `assertion` (attribute name → value, multiple values joined by `;`)
    /// maps to.
    pub fn apply(&self, assertion: &BTreeMap<String, String>) -> Result<Mapped, MappingError> {
        let values: BTreeMap<&str, Vec<&str>> = assertion
            .iter()
            .map(|(k, v)| (k.as_str(), v.split(';').collect()))
            .collect();
        let mut locals = Vec::new();
        for rule in &self.rules {
            let Some(maps) = requirements_hold(&rule.remote, &values) else {
                continue;
            };
            for l in &rule.local {
                locals.push(substitute(l, &maps)?);
            }
        }
        if locals.is_empty() {
            return Err(MappingError::NoMatch);
        }
        let mut user: Option<&serde_json::Map<String, Value>> = None;
        let mut projects = None;
        for l in &locals {
            if user.is_none() {
                user = l.get("user").and_then(Value::as_object);
            }
            if let Some(p) = l.get("projects").and_then(Value::as_array) {
                projects = Some(p);
            }
        }
        let user = user.ok_or(MappingError::NoMatch)?;
        let text = |k: &str| user.get(k).and_then(Value::as_str).map(str::to_owned);
        let user_id = text("id");
        let user_name = text("name")
            .or_else(|| user_id.clone())
            .filter(|n| !n.is_empty())
            .ok_or_else(|| MappingError::Invalid("the mapped user has no name or id".into()))?;
        let user_type = match user.get("type").and_then(Value::as_str) {
            Some("local") => UserType::Local,
            _ => UserType::Ephemeral,
        };
        let mut out = Vec::new();
        for p in projects.into_iter().flatten() {
            let name = p
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| MappingError::Invalid("a mapped project has no name".into()))?;
            let roles = p
                .get("roles")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|r| r.get("name").and_then(Value::as_str))
                .map(str::to_owned)
                .collect();
            out.push((name.to_owned(), roles));
        }
        Ok(Mapped {
            user_name,
            user_id,
            user_type,
            projects: out,
        })
    }
}

/// The rule's direct maps when every requirement holds.
fn requirements_hold(
    reqs: &[Requirement],
    values: &BTreeMap<&str, Vec<&str>>,
) -> Option<Vec<Vec<String>>> {
    let mut maps = Vec::new();
    for q in reqs {
        let have = values.get(q.kind.as_str()).filter(|v| !v.is_empty())?;
        let matches = |list: &[String]| {
            if q.regex {
                list.iter().any(|p| {
                    regex::Regex::new(p).is_ok_and(|re| have.iter().any(|v| re.is_match(v)))
                })
            } else {
                list.iter().any(|p| have.contains(&p.as_str()))
            }
        };
        if let Some(l) = &q.any_one_of {
            if !matches(l) {
                return None;
            }
            continue;
        }
        if let Some(l) = &q.not_any_of {
            if matches(l) {
                return None;
            }
            continue;
        }
        let kept: Vec<String> = have
            .iter()
            .filter(|v| {
                q.blacklist
                    .as_ref()
                    .is_none_or(|b| !b.iter().any(|x| x == *v))
            })
            .filter(|v| {
                q.whitelist
                    .as_ref()
                    .is_none_or(|w| w.iter().any(|x| x == *v))
            })
            .map(|v| (*v).to_owned())
            .collect();
        maps.push(kept);
    }
    Some(maps)
}

/// `local` with `{N}` replaced by direct map N (one value as itself, several as a JSON list).
fn substitute(local: &Value, maps: &[Vec<String>]) -> Result<Value, MappingError> {
    Ok(match local {
        Value::String(s) => Value::String(format_maps(s, maps)?),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|v| substitute(v, maps))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| Ok((k.clone(), substitute(v, maps)?)))
                .collect::<Result<_, MappingError>>()?,
        ),
        other => other.clone(),
    })
}

fn format_maps(s: &str, maps: &[Vec<String>]) -> Result<String, MappingError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) if after[..close].chars().all(|c| c.is_ascii_digit()) && close > 0 => {
                let n: usize = after[..close]
                    .parse()
                    .map_err(|_| MappingError::Invalid(format!("bad reference in '{s}'")))?;
                let v = maps.get(n).ok_or_else(|| {
                    MappingError::Invalid(format!(
                        "'{s}' refers to remote match {n}, which does not exist"
                    ))
                })?;
                match v.as_slice() {
                    [one] => out.push_str(one),
                    many => out.push_str(&serde_json::to_string(many).unwrap_or_default()),
                }
                rest = &after[close + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assertion(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const TWO_GROUPS: &str = r#"{"rules": [
        {"remote": [{"type": "OIDC-preferred_username"}, {"type": "OIDC-email"}],
         "local": [{"user": {"name": "{0}", "email": "{1}"}}]},
        {"remote": [{"type": "OIDC-groups", "any_one_of": ["engineers"]}],
         "local": [{"projects": [{"name": "eng", "roles": [{"name": "member"}]}]}]},
        {"remote": [{"type": "OIDC-groups", "any_one_of": ["^aud.*$"], "regex": true},
                    {"type": "OIDC-groups", "not_any_of": ["engineers"]}],
         "local": [{"projects": [{"name": "audit", "roles": [{"name": "reader"}]}]}]}
    ]}"#;

    #[test]
    fn groups_map_to_projects_and_roles() {
        let m = Mapping::parse(TWO_GROUPS).unwrap();
        let alice = m
            .apply(&assertion(&[
                ("OIDC-preferred_username", "alice"),
                ("OIDC-email", "a@example.com"),
                ("OIDC-groups", "engineers;staff"),
            ]))
            .unwrap();
        assert_eq!(alice.user_name, "alice");
        assert_eq!(alice.user_type, UserType::Ephemeral);
        assert_eq!(
            alice.projects,
            [("eng".to_owned(), vec!["member".to_owned()])]
        );
        let bob = m
            .apply(&assertion(&[
                ("OIDC-preferred_username", "bob"),
                ("OIDC-email", "b@example.com"),
                ("OIDC-groups", "auditors"),
            ]))
            .unwrap();
        assert_eq!(
            bob.projects,
            [("audit".to_owned(), vec!["reader".to_owned()])]
        );
        // No user attribute: no identity.
        assert_eq!(
            m.apply(&assertion(&[("OIDC-groups", "engineers")])),
            Err(MappingError::NoMatch)
        );
        // A user in no mapped group gets a user and no projects.
        let carol = m
            .apply(&assertion(&[
                ("OIDC-preferred_username", "carol"),
                ("OIDC-email", "c@example.com"),
                ("OIDC-groups", "visitors"),
            ]))
            .unwrap();
        assert!(carol.projects.is_empty());
    }

    #[test]
    fn lists_filter_and_direct_maps_substitute() {
        let m = Mapping::parse(
            r#"{"rules": [{"remote": [{"type": "sub"},
                                      {"type": "groups", "whitelist": ["a", "b"]},
                                      {"type": "groups", "blacklist": ["a"]}],
                          "local": [{"user": {"id": "{0}", "type": "local"}},
                                    {"projects": [{"name": "p-{2}", "roles": [{"name": "member"}]}]}]}]}"#,
        )
        .unwrap();
        let got = m
            .apply(&assertion(&[("sub", "u-1"), ("groups", "a;b;c")]))
            .unwrap();
        assert_eq!(got.user_id.as_deref(), Some("u-1"));
        assert_eq!(got.user_name, "u-1");
        assert_eq!(got.user_type, UserType::Local);
        // The blacklist left "b" and "c": a list.
        assert_eq!(got.projects[0].0, r#"p-["b","c"]"#);
    }

    #[test]
    fn bad_mappings_are_refused() {
        for bad in [
            r#"{"rules": []}"#,
            r#"{"rules": [{"remote": [], "local": []}]}"#,
            r#"{"rules": [{"remote": [{"type": "x", "any_one_of": ["("], "regex": true}], "local": []}]}"#,
            r#"{"rules": [{"remote": [{"type": "x", "any_one_of": ["a"], "whitelist": ["b"]}], "local": []}]}"#,
            r#"{"rules": [{"remote": [{"type": "x"}], "local": [{"user": {"name": "{0}", "type": "admin"}}]}]}"#,
            r#"{"rules": [{"remote": [{"type": "x"}], "local": ["user"]}]}"#,
            r#"{"rules": [{"remote": [{"type": "x", "bogus": 1}], "local": []}]}"#,
        ] {
            assert!(Mapping::parse(bad).is_err(), "{bad}");
        }
        // A reference past the remote matches.
        let m = Mapping::parse(
            r#"{"rules": [{"remote": [{"type": "x"}], "local": [{"user": {"name": "{1}"}}]}]}"#,
        )
        .unwrap();
        assert!(matches!(
            m.apply(&assertion(&[("x", "v")])),
            Err(MappingError::Invalid(_))
        ));
    }
}
