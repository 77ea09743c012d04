//! Federation of the embedded identity service with external identity providers, as Keystone
//! does it: mapping rules from a provider's attributes to local users, projects and roles.

pub mod mapping;
pub mod oidc;
pub mod websso;
