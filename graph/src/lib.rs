//! The hpfriends sharing graph: users, groups, shares and authkeys; the
//! versioned `Command`s that change it (the Raft log entries); the flattened
//! `SharingIndex`; and `explain`. Pure: no I/O, no clocks, no randomness.

pub mod accounts;
mod authz;
mod command;
pub mod declare;
mod dry_run;
mod error;
mod explain;
pub mod filter;
pub mod history;
mod index;
mod keep;
mod model;
pub mod names;
mod past;
pub mod resume;
/// A seeded generator of large graphs, for benchmarks (not behind a feature:
/// one build of this crate serves the binary, the tests and the fuzz targets).
pub mod synthetic;

pub use authz::{authorize, may_accept, Actor, Forbidden};
pub use command::{Command, COMMAND_VERSION};
pub use error::{GraphError, Named};
pub use explain::{explain, explain_all, publishers_reaching, readers_through, Explanation, Hop};
pub use filter::{Chain, CompiledFilter, Filter, Message, Outcome, Parsed, Routes, ShareFilter, Step};
pub use index::{may_read, LookupMap, Readers, SharingIndex};
pub use keep::{ChannelKeeps, Keep};
pub use model::{
    Applied, AuthKey, Dirty, Graph, Group, GroupId, Position, Share, ShareKind, ShareRecord, Target, User, UserId,
};
pub use past::PastReaders;
