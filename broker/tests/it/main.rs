//! The broker's integration tests, one binary for all of them: each file
//! of its own would link RocksDB and the broker again (see
//! ARCHITECTURE.md, "Tests").

mod common;

mod archive;
mod bench_tool;
mod drain;
mod filters;
mod hpfeeds_protocol;
mod http_api;
mod interop;
mod metrics;
mod openapi;
mod resume;
mod trust;
mod versions;
mod web;
