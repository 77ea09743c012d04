//! End-to-end API tests: start the real `vela` binary and talk HTTP to it.
//!
//! Set `VELA_TEST_URL=http://host:port` to run the suite against an already
//! running server instead (e.g. the real Glance, to validate expectations);
//! tests that need Vela-specific knobs (identity headers, config) then return
//! early.

#![allow(clippy::unwrap_used)]

mod helpers;

mod cluster;
mod data;
mod errors;
mod identity;
mod images;
mod keystone;
mod list;
mod locations;
mod matrix;
mod patch;
mod protections;
mod schemas;
mod sharing;
mod stores;
mod tags_actions;
mod versions;
