//! The hpfriends broker: hpfeeds protocol and sessions, routing through the
//! sharing index, the HTTP API, configuration and the CLI.

pub mod hpfeeds;
pub mod protocol;
pub mod routing;
