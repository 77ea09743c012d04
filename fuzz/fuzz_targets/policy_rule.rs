//! The oslo.policy rule parser (`vela_domain::policy::check::parse`): no panic; a parsed rule
//! prints to a rule that parses back to itself, and evaluates without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vela_domain::policy::check::{parse, Check, Cred, Env};

struct Caller {
    roles: Vec<String>,
}

impl Env for Caller {
    fn cred(&self, key: &str) -> Option<Cred<'_>> {
        match key {
            "roles" => Some(Cred::List(&self.roles)),
            "project_id" => Some(Cred::Str("p1")),
            "is_admin" => Some(Cred::Bool(false)),
            _ => None,
        }
    }
    fn target(&self, key: &str) -> Option<String> {
        (key == "owner").then(|| "p1".to_owned())
    }
    fn rule(&self, _name: &str) -> Option<&Check> {
        None
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(rule) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(check) = parse(rule) {
        let printed = check.to_string();
        assert_eq!(
            parse(&printed).as_ref(),
            Ok(&check),
            "{rule:?} printed as {printed:?}"
        );
        let caller = Caller {
            roles: vec!["member".to_owned(), "reader".to_owned()],
        };
        let _ = check.eval(&caller);
    }
});
