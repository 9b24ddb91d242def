//! hpfeeds connections: listener, connection tasks and their table,
//! outbound queues, writers, close reasons, per-key activity.

pub(crate) mod activity;
pub(crate) mod close;
pub(crate) mod connection;
pub(crate) mod listener;
pub mod outbound;
pub(crate) mod resume;
pub(crate) mod socket;
pub(crate) mod writer;
