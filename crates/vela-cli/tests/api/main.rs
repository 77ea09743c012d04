//! End-to-end API tests: start the real `vela` binary and talk HTTP to it.
//!
//! Set `VELA_TEST_URL=http://host:port` to run the suite against an already
//! running server instead (e.g. the real Glance, to validate expectations);
//! tests that need Vela-specific knobs (identity headers, config) then return
//! early. `eval "$(bash scripts/glance.sh start)"` runs a Glance 33 configured
//! like the import, tasks and inspection tests' Vela (`helpers::import_config`).

#![allow(clippy::unwrap_used)]

mod helpers;

mod abuse;
mod cache;
mod cluster;
mod dashboard;
mod data;
mod errors;
mod http_rules;
mod identity;
mod images;
mod import;
mod import_crash;
mod import_plugins;
mod import_safety;
mod inspection;
mod keystone;
mod list;
mod locations;
mod matrix;
mod metadefs;
mod metrics;
mod patch;
mod protections;
mod quota;
mod schemas;
mod secrets;
mod server_limits;
mod sharing;
mod stores;
mod tags_actions;
mod tasks;
mod versions;
