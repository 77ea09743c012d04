//! The oslo.policy rule language: parsing and evaluation.
//!
//! A rule is a boolean expression over checks, with `and`, `or`, `not` and parentheses (`not`
//! binds tightest, then `and`, then `or`). The checks are:
//! - `@` (always) and `!` (never); an empty rule is `@`;
//! - `role:NAME`: the caller holds the role (case-insensitive);
//! - `rule:NAME`: another named rule (a missing one is false);
//! - `KEY:VALUE`: a credential of the caller (`project_id`, `user_id`, `roles`, `is_admin`, …;
//!   dotted keys walk into nested values) equals VALUE, where VALUE may take target attributes
//!   as `%(attr)s`; with a quoted literal KEY (`'public':%(visibility)s`) the literal is
//!   compared with VALUE instead.
//!
//! As in oslo.policy, a `%(attr)s` the target lacks makes the check false. Unlike oslo.policy,
//! an absent credential never matches (oslo compares the string `None`, so a caller without a
//! project would match an image without owner).

use std::fmt;

/// A parsed rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    True,
    False,
    Not(Box<Check>),
    And(Vec<Check>),
    Or(Vec<Check>),
    Rule(String),
    Role(String),
    /// `kind:match`; `kind` is a credential path or a quoted literal.
    Generic {
        kind: String,
        matcher: String,
    },
}

/// A rule that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// A credential value of the caller.
pub enum Cred<'a> {
    Str(&'a str),
    List(&'a [String]),
    Bool(bool),
}

/// What a rule is evaluated against.
pub trait Env {
    /// The caller's credential `key` (`None` when the caller has none).
    fn cred(&self, key: &str) -> Option<Cred<'_>>;
    /// The target attribute `key`, as text (`None` when the target has no such attribute).
    fn target(&self, key: &str) -> Option<String>;
    /// The named rule `name`, if defined.
    fn rule(&self, name: &str) -> Option<&Check>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Open,
    Close,
    And,
    Or,
    Not,
    Check(String),
}

fn tokenize(s: &str) -> Vec<Token> {
    let mut out = Vec::new();
    for word in s.split_whitespace() {
        let mut w = word;
        while let Some(rest) = w.strip_prefix('(') {
            out.push(Token::Open);
            w = rest;
        }
        let mut closes = 0;
        while let Some(rest) = w.strip_suffix(')') {
            closes += 1;
            w = rest;
        }
        if !w.is_empty() {
            out.push(match w.to_ascii_lowercase().as_str() {
                "and" => Token::And,
                "or" => Token::Or,
                "not" => Token::Not,
                _ => Token::Check(w.to_owned()),
            });
        }
        out.extend(std::iter::repeat_n(Token::Close, closes));
    }
    out
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn or_expr(&mut self) -> Result<Check, ParseError> {
        let mut terms = vec![self.and_expr()?];
        while self.peek() == Some(&Token::Or) {
            self.pos += 1;
            terms.push(self.and_expr()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Check::Or(terms)
        })
    }

    fn and_expr(&mut self) -> Result<Check, ParseError> {
        let mut terms = vec![self.not_expr()?];
        while self.peek() == Some(&Token::And) {
            self.pos += 1;
            terms.push(self.not_expr()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            Check::And(terms)
        })
    }

    fn not_expr(&mut self) -> Result<Check, ParseError> {
        match self.next() {
            Some(Token::Not) => Ok(Check::Not(Box::new(self.not_expr()?))),
            Some(Token::Open) => {
                let inner = self.or_expr()?;
                match self.next() {
                    Some(Token::Close) => Ok(inner),
                    _ => Err(ParseError("unbalanced '('".into())),
                }
            }
            Some(Token::Check(c)) => parse_check(&c),
            Some(Token::Close) => Err(ParseError("unexpected ')'".into())),
            Some(Token::And | Token::Or) => Err(ParseError("operator without operand".into())),
            None => Err(ParseError("unexpected end of rule".into())),
        }
    }
}

fn parse_check(c: &str) -> Result<Check, ParseError> {
    match c {
        "@" => return Ok(Check::True),
        "!" => return Ok(Check::False),
        _ => {}
    }
    let (kind, matcher) = c
        .split_once(':')
        .ok_or_else(|| ParseError(format!("'{c}' is not a check (expected KIND:MATCH)")))?;
    if kind.is_empty() {
        return Err(ParseError(format!("'{c}' has an empty check kind")));
    }
    Ok(match kind {
        "rule" => Check::Rule(matcher.to_owned()),
        "role" => Check::Role(matcher.to_owned()),
        "http" | "https" => {
            return Err(ParseError(format!(
                "'{c}': remote http checks are not supported"
            )))
        }
        _ => Check::Generic {
            kind: kind.to_owned(),
            matcher: matcher.to_owned(),
        },
    })
}

/// Parses an oslo.policy rule.
pub fn parse(rule: &str) -> Result<Check, ParseError> {
    let tokens = tokenize(rule);
    if tokens.is_empty() {
        return Ok(Check::True);
    }
    let mut p = Parser { tokens, pos: 0 };
    let check = p.or_expr()?;
    if p.pos != p.tokens.len() {
        return Err(ParseError(format!(
            "unexpected text after position {} of '{rule}'",
            p.pos
        )));
    }
    Ok(check)
}

/// Substitutes `%(attr)s` from the target; `None` when an attribute is missing.
fn interpolate(matcher: &str, env: &dyn Env) -> Option<String> {
    let mut out = String::with_capacity(matcher.len());
    let mut rest = matcher;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('%') {
            out.push('%');
            rest = r;
        } else if let Some(r) = after.strip_prefix('(') {
            let end = r.find(")s")?;
            out.push_str(&env.target(&r[..end])?);
            rest = &r[end + 2..];
        } else {
            out.push('%');
            rest = after;
        }
    }
    out.push_str(rest);
    Some(out)
}

fn literal(kind: &str) -> Option<&str> {
    let quoted = |q: char| kind.strip_prefix(q).and_then(|k| k.strip_suffix(q));
    quoted('\'').or_else(|| quoted('"'))
}

impl Check {
    /// Evaluates the rule; `depth` guards against rules that refer to themselves.
    pub fn eval(&self, env: &dyn Env) -> bool {
        self.eval_at(env, 0)
    }

    fn eval_at(&self, env: &dyn Env, depth: u32) -> bool {
        match self {
            Check::True => true,
            Check::False => false,
            Check::Not(c) => !c.eval_at(env, depth),
            Check::And(cs) => cs.iter().all(|c| c.eval_at(env, depth)),
            Check::Or(cs) => cs.iter().any(|c| c.eval_at(env, depth)),
            Check::Rule(name) => {
                depth < 32 && env.rule(name).is_some_and(|r| r.eval_at(env, depth + 1))
            }
            Check::Role(role) => {
                let Some(role) = interpolate(role, env) else {
                    return false;
                };
                match env.cred("roles") {
                    Some(Cred::List(roles)) => roles.iter().any(|r| r.eq_ignore_ascii_case(&role)),
                    _ => false,
                }
            }
            Check::Generic { kind, matcher } => {
                let Some(want) = interpolate(matcher, env) else {
                    return false;
                };
                if let Some(lit) = literal(kind) {
                    return lit == want;
                }
                match kind.as_str() {
                    "True" => return want == "True",
                    "False" => return want == "False",
                    _ => {}
                }
                match env.cred(kind) {
                    Some(Cred::Str(s)) => s == want,
                    Some(Cred::List(l)) => l.contains(&want),
                    Some(Cred::Bool(b)) => want == if b { "True" } else { "False" },
                    None => false,
                }
            }
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |f: &mut fmt::Formatter<'_>, cs: &[Check], op: &str| {
            write!(f, "(")?;
            for (i, c) in cs.iter().enumerate() {
                if i > 0 {
                    write!(f, " {op} ")?;
                }
                write!(f, "{c}")?;
            }
            write!(f, ")")
        };
        match self {
            Check::True => write!(f, "@"),
            Check::False => write!(f, "!"),
            Check::Not(c) => write!(f, "not {c}"),
            Check::And(cs) => join(f, cs, "and"),
            Check::Or(cs) => join(f, cs, "or"),
            Check::Rule(r) => write!(f, "rule:{r}"),
            Check::Role(r) => write!(f, "role:{r}"),
            Check::Generic { kind, matcher } => write!(f, "{kind}:{matcher}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct E {
        roles: Vec<String>,
        project: Option<String>,
        target: HashMap<&'static str, &'static str>,
        rules: HashMap<String, Check>,
    }

    impl Env for E {
        fn cred(&self, key: &str) -> Option<Cred<'_>> {
            match key {
                "roles" => Some(Cred::List(&self.roles)),
                "project_id" => self.project.as_deref().map(Cred::Str),
                "is_admin" => Some(Cred::Bool(self.roles.iter().any(|r| r == "admin"))),
                _ => None,
            }
        }
        fn target(&self, key: &str) -> Option<String> {
            self.target.get(key).map(|v| v.to_string())
        }
        fn rule(&self, name: &str) -> Option<&Check> {
            self.rules.get(name)
        }
    }

    fn env(roles: &[&str], project: Option<&str>) -> E {
        E {
            roles: roles.iter().map(|r| r.to_string()).collect(),
            project: project.map(str::to_owned),
            target: [
                ("project_id", "p1"),
                ("visibility", "public"),
                ("member_id", "None"),
            ]
            .into_iter()
            .collect(),
            rules: [("context_is_admin".to_string(), parse("role:admin").unwrap())]
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn precedence_and_parens() {
        assert_eq!(
            parse("a:1 or b:2 and not c:3").unwrap().to_string(),
            "(a:1 or (b:2 and not c:3))"
        );
        assert_eq!(
            parse("(a:1 or b:2) and c:3").unwrap().to_string(),
            "((a:1 or b:2) and c:3)"
        );
        assert_eq!(parse("").unwrap(), Check::True);
        assert_eq!(parse("  ").unwrap(), Check::True);
        assert_eq!(parse("((@))").unwrap(), Check::True);
        assert_eq!(parse("NOT !").unwrap().to_string(), "not !");
    }

    #[test]
    fn bad_rules_are_refused() {
        for bad in [
            "(role:a",
            "role:a)",
            "role:a and",
            "or role:a",
            "role:a role:b",
            "admin",
            ":x",
            "http://example.com/check",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn checks_evaluate_like_oslo() {
        let e = env(&["Member", "reader"], Some("p1"));
        let t = |r: &str| parse(r).unwrap().eval(&e);
        assert!(t("role:member"));
        assert!(!t("role:admin"));
        assert!(t("project_id:%(project_id)s"));
        assert!(!t("project_id:%(member_id)s"));
        assert!(t("'public':%(visibility)s"));
        assert!(!t("'community':%(visibility)s"));
        assert!(!t("project_id:%(no_such_attr)s"));
        assert!(t("is_admin:False"));
        assert!(!t("rule:context_is_admin"));
        assert!(!t("rule:undefined"));
        assert!(t(
            "role:reader and (project_id:%(project_id)s or 'shared':%(visibility)s)"
        ));
        assert!(t("not role:admin and @"));
        assert!(!t("!"));
        // A caller without a project never matches, even a target that says None.
        let e = env(&["member"], None);
        assert!(!parse("project_id:%(member_id)s").unwrap().eval(&e));
    }

    #[test]
    fn self_reference_terminates() {
        let mut e = env(&[], None);
        e.rules.insert("loop".into(), parse("rule:loop").unwrap());
        assert!(!parse("rule:loop").unwrap().eval(&e));
    }
}
