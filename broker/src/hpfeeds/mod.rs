//! hpfeeds connections: listener, sessions, outbound queues, close reasons.

pub mod activity;
pub mod close;
pub mod listener;
pub mod outbound;
pub mod session;
pub mod writer;
