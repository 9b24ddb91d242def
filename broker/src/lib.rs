//! The hpfriends broker: hpfeeds protocol and sessions, routing through the
//! sharing index, the HTTP API, configuration and the CLI.

pub mod auth_limit;
pub mod bench;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod hpfeeds;
pub mod http;
pub mod import;
pub mod protocol;
pub mod routing;
pub mod server;
pub mod telemetry;
pub mod web;
