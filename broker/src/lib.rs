//! The hpfriends broker: hpfeeds protocol and connections, routing through
//! the sharing index, the application layer (`app/`) under the HTTP API and
//! the web app, configuration and the CLI.
//!
//! Public are only what the binary (`cli::main`), the integration tests, the
//! benches and the fuzz targets use; everything else is the crate's own.

pub mod app;
pub mod archive;
pub(crate) mod auth_limit;
pub mod bench;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod hpfeeds;
pub(crate) mod http;
pub(crate) mod import;
pub mod protocol;
pub mod routing;
pub mod server;
pub(crate) mod state;
pub mod telemetry;
pub(crate) mod web;
