//! A small SQL text builder that writes each dialect's placeholders and collects arguments.

use sqlx::any::{Any, AnyArguments};
use sqlx::{Arguments, Encode, Type};

use crate::Dialect;

/// SQL text plus its bound arguments.
pub struct Sql {
    pub text: String,
    pub args: AnyArguments<'static>,
    dialect: Dialect,
    n: usize,
}

impl Sql {
    /// Starts a statement in `dialect` with `text`.
    pub fn new(dialect: Dialect, text: &str) -> Self {
        Sql {
            text: text.to_owned(),
            args: AnyArguments::default(),
            dialect,
            n: 0,
        }
    }

    /// Appends SQL text.
    pub fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    /// Appends a placeholder bound to `v`.
    pub fn bind<T>(&mut self, v: T) -> &mut Self
    where
        T: 'static + Encode<'static, Any> + Type<Any> + Send,
    {
        self.n += 1;
        match self.dialect {
            Dialect::Sqlite | Dialect::Mysql => self.text.push('?'),
            Dialect::Postgres => {
                self.text.push('$');
                self.text.push_str(&self.n.to_string());
            }
        }
        // Encoding into Any's argument buffer cannot fail for the scalar types used here.
        let _ = self.args.add(v);
        self
    }

    /// Appends `(?, ?, …)` bound to `values`.
    pub fn bind_list<T>(&mut self, values: impl IntoIterator<Item = T>) -> &mut Self
    where
        T: 'static + Encode<'static, Any> + Type<Any> + Send,
    {
        self.push("(");
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind(v);
        }
        self.push(")")
    }
}
