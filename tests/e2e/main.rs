//! The built programs, run as a user runs them: the `locked` command-line tool (feature
//! `cli`) and the HTTP example (`examples/http_api.rs`, built first by `scripts/test`),
//! against real servers.

#[cfg(feature = "cli")]
mod cli;
mod http_api;
