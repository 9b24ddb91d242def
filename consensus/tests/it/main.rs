//! The consensus crate's integration tests, one binary for all of them (each
//! file of its own would link RocksDB again; ARCHITECTURE.md, "Tests").

mod restart;
mod storage_suite;
