//! Property protections: who may create, read, update and delete which custom properties.
//!
//! Rules are (regex, permissions per operation), tried in order; the first regex found in the
//! property name decides. A property no rule matches is refused. Permissions are either role
//! lists (`@` anyone, `!` no one, else any listed role) or, in the `policies` format, the name
//! of one policy rule. As in Glance, `os_glance…` properties are open to all (their use is
//! governed elsewhere), ahead of the operator's rules.

use regex::Regex;

use super::{Policy, Target};
use crate::RequestContext;

/// A property operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropOp {
    Create,
    Read,
    Update,
    Delete,
}

impl PropOp {
    pub const ALL: [PropOp; 4] = [PropOp::Create, PropOp::Read, PropOp::Update, PropOp::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            PropOp::Create => "create",
            PropOp::Read => "read",
            PropOp::Update => "update",
            PropOp::Delete => "delete",
        }
    }
}

/// How permissions are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleFormat {
    Roles,
    Policies,
}

#[derive(Debug, Clone)]
enum Perm {
    Anyone,
    NoOne,
    Roles(Vec<String>),
    Policy(String),
}

/// The parsed rules.
#[derive(Debug, Clone)]
pub struct PropertyProtections {
    rules: Vec<(Regex, [Perm; 4])>,
}

impl PropertyProtections {
    /// Builds the rules from `(pattern, [create, read, update, delete])` in file order. A bad
    /// regex or a permission mixing `@` and `!` (or naming several policies) is an error.
    pub fn new(sections: Vec<(String, [String; 4])>, format: RuleFormat) -> Result<Self, String> {
        let mut rules = vec![(
            // Anchored: only names that start with it are the service's.
            Regex::new("^os_glance").map_err(|e| e.to_string())?,
            [Perm::Anyone, Perm::Anyone, Perm::Anyone, Perm::Anyone],
        )];
        for (pattern, perms) in sections {
            if pattern.starts_with("os_glance") {
                continue;
            }
            let re = Regex::new(&pattern)
                .map_err(|e| format!("[{pattern}] is not a valid regular expression: {e}"))?;
            let mut parsed = Vec::with_capacity(4);
            for (op, raw) in PropOp::ALL.iter().zip(perms.iter()) {
                parsed.push(
                    parse_perm(raw, format)
                        .map_err(|e| format!("[{pattern}] {}={raw}: {e}", op.as_str()))?,
                );
            }
            let [c, r, u, d]: [Perm; 4] = parsed
                .try_into()
                .map_err(|_| format!("[{pattern}] needs create, read, update and delete"))?;
            rules.push((re, [c, r, u, d]));
        }
        Ok(PropertyProtections { rules })
    }

    /// Whether `ctx` may apply `op` to the property `name`.
    pub fn allows(&self, name: &str, op: PropOp, ctx: &RequestContext, policy: &Policy) -> bool {
        let Some((_, perms)) = self.rules.iter().find(|(re, _)| re.is_match(name)) else {
            return false;
        };
        match &perms[op as usize] {
            Perm::Anyone => true,
            Perm::NoOne => false,
            Perm::Roles(roles) => roles.iter().any(|r| ctx.has_role(r)),
            Perm::Policy(rule) => policy.check_defined(rule, ctx, &Target::default()),
        }
    }
}

fn parse_perm(raw: &str, format: RuleFormat) -> Result<Perm, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(Perm::NoOne);
    }
    let items: Vec<String> = raw
        .split(',')
        .map(|r| r.trim().to_lowercase())
        .filter(|r| !r.is_empty())
        .collect();
    let any = items.iter().any(|r| r == "@");
    let none = items.iter().any(|r| r == "!");
    if any && none {
        return Err("'@' and '!' are mutually exclusive".into());
    }
    if none {
        return Ok(Perm::NoOne);
    }
    if any {
        return Ok(Perm::Anyone);
    }
    match format {
        RuleFormat::Roles => Ok(Perm::Roles(items)),
        RuleFormat::Policies if items.len() == 1 => Ok(Perm::Policy(raw.to_owned())),
        RuleFormat::Policies => {
            Err("one policy per operation (combine them in the policy file)".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(roles: &[&str]) -> RequestContext {
        RequestContext::new(
            None,
            Some("p".into()),
            roles.iter().map(|r| r.to_string()),
            String::new(),
        )
    }

    fn perms(c: &str, r: &str, u: &str, d: &str) -> [String; 4] {
        [c.into(), r.into(), u.into(), d.into()]
    }

    #[test]
    fn first_matching_rule_decides_and_unmatched_is_refused() {
        let p = PropertyProtections::new(
            vec![
                (
                    "^x_owner_.*".into(),
                    perms("admin,member", "@", "admin", "!"),
                ),
                ("^x_.*".into(), perms("admin", "admin", "admin", "admin")),
            ],
            RuleFormat::Roles,
        )
        .unwrap();
        let policy = Policy::default();
        let member = ctx(&["member"]);
        assert!(p.allows("x_owner_a", PropOp::Create, &member, &policy));
        assert!(p.allows("x_owner_a", PropOp::Read, &ctx(&[]), &policy));
        assert!(!p.allows("x_owner_a", PropOp::Update, &member, &policy));
        assert!(!p.allows("x_owner_a", PropOp::Delete, &ctx(&["admin"]), &policy));
        assert!(!p.allows("x_other", PropOp::Read, &member, &policy));
        assert!(p.allows("x_other", PropOp::Read, &ctx(&["ADMIN"]), &policy));
        assert!(!p.allows("os_distro", PropOp::Read, &ctx(&["admin"]), &policy));
        assert!(p.allows("os_glance_x", PropOp::Update, &member, &policy));
        // Only names starting with os_glance are the service's.
        assert!(!p.allows("x_os_glance_y", PropOp::Read, &member, &policy));
    }

    #[test]
    fn policies_format_and_bad_files() {
        let policy = Policy::with_overrides([(
            "glance_creator".to_string(),
            "role:admin or role:creator".to_string(),
        )])
        .unwrap();
        let p = PropertyProtections::new(
            vec![(".*".into(), perms("glance_creator", "@", "!", ""))],
            RuleFormat::Policies,
        )
        .unwrap();
        assert!(p.allows("a", PropOp::Create, &ctx(&["creator"]), &policy));
        assert!(!p.allows("a", PropOp::Create, &ctx(&["member"]), &policy));
        assert!(!p.allows("a", PropOp::Delete, &ctx(&["admin"]), &policy));
        // A policy the policy file does not define refuses (it does not fall back to default).
        let p = PropertyProtections::new(
            vec![(".*".into(), perms("undefined_rule", "@", "@", "@"))],
            RuleFormat::Policies,
        )
        .unwrap();
        assert!(!p.allows("a", PropOp::Create, &ctx(&["admin"]), &policy));
        assert!(PropertyProtections::new(
            vec![(".*".into(), perms("a,b", "@", "@", "@"))],
            RuleFormat::Policies
        )
        .is_err());
        assert!(PropertyProtections::new(
            vec![(".*".into(), perms("@,!", "@", "@", "@"))],
            RuleFormat::Roles
        )
        .is_err());
        assert!(PropertyProtections::new(
            vec![("(".into(), perms("@", "@", "@", "@"))],
            RuleFormat::Roles
        )
        .is_err());
    }
}
