//! `tokio_util` codec over [`frame::decode`]: frames in, pre-encoded bytes out.

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

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

/// Outbound frames are encoded once (and shared between subscribers) before
/// they reach a connection, so encoding is a copy into the write buffer.
impl Encoder<Bytes> for Codec {
    type Error = CodecError;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), CodecError> {
        dst.extend_from_slice(&item);
        Ok(())
    }
}
