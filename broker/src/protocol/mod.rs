//! The hpfeeds wire protocol: frames and the tokio decoder.

pub mod codec;
pub mod frame;

pub use codec::Codec;
pub use frame::{auth_hash, decode, Frame, FrameError, Limits, Opcode, PublishFrame};
