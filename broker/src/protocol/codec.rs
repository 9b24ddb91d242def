//! `tokio_util` decoder over [`frame::decode`]. Outbound frames are encoded
//! once, shared between subscribers and written as they are (`hpfeeds::writer`).

use bytes::BytesMut;
use tokio_util::codec::Decoder;

use super::frame::{decode, Frame, FrameError, Limits};

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone, Default)]
pub struct Codec {
    pub limits: Limits,
}

impl Decoder for Codec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        Ok(decode(src, &self.limits)?)
    }
}
