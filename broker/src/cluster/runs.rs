//! The `runs` format publishes cross between nodes in, both ways: a chunk
//! of hpfeeds PUBLISH frames exactly as received, back to back, cut into
//! runs of consecutive frames of one publisher on one channel. The sender
//! builds it without protobuf work per publish; the receiver checks a run's
//! frames once and delivers the run at once.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use hpfriends_graph::UserId;

use super::proto::fanout::{PublishRuns, Run};
use crate::protocol::frame::{self, FrameError, Limits, Opcode};
use crate::protocol::PublishFrame;

/// Most frame bytes in a chunk (one message to the peer), unless one frame is larger.
pub const MAX_CHUNK_BYTES: usize = 256 * 1024;

/// Largest message a peer may send on a link: one publish of any size the
/// hpfeeds limits allow (a chunk of publishes stays near `MAX_CHUNK_BYTES`).
pub const MAX_PEER_MESSAGE: usize = 256 << 20;

/// Publishes queued for a peer, as one message carries them.
#[derive(Default)]
pub struct Chunk {
    frames: BytesMut,
    runs: Vec<Run>,
    messages: usize,
    /// Where the last run's channel is in `frames`.
    run_channel: Range<usize>,
}

impl Chunk {
    /// An empty chunk with room for `bytes` of frames (allocated whole:
    /// growing a chunk by reallocation copies it again).
    pub fn with_capacity(bytes: usize) -> Chunk {
        Chunk { frames: BytesMut::with_capacity(bytes), ..Chunk::default() }
    }

    pub fn push(&mut self, owner: UserId, publish: &PublishFrame) {
        let start = self.frames.len();
        let raw = publish.raw();
        let same_run = self.runs.last().is_some_and(|r| r.owner == owner)
            && self.frames[self.run_channel.clone()] == *publish.channel();
        self.frames.extend_from_slice(raw);
        match self.runs.last_mut() {
            Some(run) if same_run => run.len += raw.len() as u32,
            _ => {
                self.runs.push(Run { owner, len: raw.len() as u32 });
                let channel = publish.channel_range();
                self.run_channel = start + channel.start..start + channel.end;
            }
        }
        self.messages += 1;
    }

    pub fn messages(&self) -> usize {
        self.messages
    }

    pub fn bytes(&self) -> usize {
        self.frames.len()
    }

    pub fn into_runs(self) -> PublishRuns {
        PublishRuns { frames: self.frames.freeze(), runs: self.runs }
    }
}

/// What is wrong with a peer's `runs` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunsError {
    #[error("a run of {len} bytes where {left} are left")]
    RunTooLong { len: usize, left: usize },
    #[error("{0} bytes of frames after the last run")]
    TrailingFrames(usize),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("{0} frame instead of PUBLISH")]
    NotPublish(&'static str),
    #[error("a run with frames on more than one channel")]
    MixedChannels,
    #[error("an empty run")]
    EmptyRun,
}

/// Calls `each(owner, channel, frames, count)` for every run, in order; stops
/// at the first malformed one and says what is wrong with it.
pub fn for_each_run(runs: PublishRuns, mut each: impl FnMut(UserId, &[u8], &Bytes, usize)) -> Result<(), RunsError> {
    let mut frames = runs.frames;
    for run in runs.runs {
        let len = run.len as usize;
        if len > frames.len() {
            return Err(RunsError::RunTooLong { len, left: frames.len() });
        }
        let run_frames = frames.split_to(len);
        let (channel, count) = run_channel(&run_frames)?;
        each(run.owner, channel, &run_frames, count);
    }
    if !frames.is_empty() {
        return Err(RunsError::TrailingFrames(frames.len()));
    }
    Ok(())
}

/// The channel of a run's frames and how many there are, once each is
/// checked to be a whole PUBLISH frame on that one channel.
fn run_channel(frames: &[u8]) -> Result<(&[u8], usize), RunsError> {
    let limits = Limits { max_publish_body: MAX_PEER_MESSAGE };
    let mut rest = frames;
    let mut run: Option<(&[u8], usize)> = None;
    while !rest.is_empty() {
        let (op, raw) = frame::split_raw(&mut rest, &limits)?;
        if op != Opcode::Publish {
            return Err(RunsError::NotPublish(op.name()));
        }
        let channel = frame::publish_channel(raw)?;
        match &mut run {
            None => run = Some((channel, 1)),
            Some((first, count)) if *first == channel => *count += 1,
            Some(_) => return Err(RunsError::MixedChannels),
        }
    }
    run.ok_or(RunsError::EmptyRun)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::{encode_publish, encode_subscribe};

    fn chunk_of(publishes: &[(UserId, &str, &str)]) -> Chunk {
        let mut chunk = Chunk::default();
        for (owner, channel, payload) in publishes {
            chunk.push(*owner, &PublishFrame::new(b"ident", channel.as_bytes(), payload.as_bytes()));
        }
        chunk
    }

    fn runs_of(runs: &[(UserId, &[Bytes])]) -> PublishRuns {
        let mut frames = Vec::new();
        let mut out = Vec::new();
        for (owner, run) in runs {
            let bytes: Vec<u8> = run.concat();
            out.push(Run { owner: *owner, len: bytes.len() as u32 });
            frames.extend(bytes);
        }
        PublishRuns { frames: frames.into(), runs: out }
    }

    fn delivered(runs: PublishRuns) -> Result<Vec<(UserId, Bytes, Bytes, usize)>, String> {
        let mut out = Vec::new();
        for_each_run(runs, |owner, channel, frames, count| {
            out.push((owner, Bytes::copy_from_slice(channel), frames.clone(), count))
        })
        .map_err(|e| e.to_string())?;
        Ok(out)
    }

    #[test]
    fn given_publishes_then_a_chunk_runs_consecutive_ones_of_one_owner_and_channel() {
        let chunk = chunk_of(&[(1, "a", "x"), (1, "a", "yy"), (2, "a", "z"), (2, "b", "z"), (1, "b", "z")]);
        assert_eq!(chunk.messages(), 5);
        let frame_len = |payload: &str| PublishFrame::new(b"ident", b"a", payload.as_bytes()).raw().len() as u32;
        let runs = chunk.into_runs();
        let owners_lens: Vec<(UserId, u32)> = runs.runs.iter().map(|r| (r.owner, r.len)).collect();
        let z = frame_len("z");
        assert_eq!(owners_lens, vec![(1, frame_len("x") + frame_len("yy")), (2, z), (2, z), (1, z)]);
        assert_eq!(runs.frames.len() as u32, owners_lens.iter().map(|(_, l)| l).sum::<u32>());
    }

    #[test]
    fn given_a_chunk_then_its_runs_decode_to_the_same_owners_channels_and_frames_in_order() {
        let sent = [(7, "a", "one"), (7, "a", "two"), (u32::MAX, "bb", "")];
        let got = delivered(chunk_of(&sent).into_runs()).unwrap();
        let frame = |c: &str, p: &str| PublishFrame::new(b"ident", c.as_bytes(), p.as_bytes()).raw().clone();
        let want = vec![
            (7, Bytes::from_static(b"a"), Bytes::from([&frame("a", "one")[..], &frame("a", "two")[..]].concat()), 2),
            (u32::MAX, Bytes::from_static(b"bb"), frame("bb", ""), 1),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn given_runs_then_each_is_delivered_whole_with_its_owner_channel_and_count() {
        let (a1, a2, b) =
            (encode_publish(b"i", b"a", b"1"), encode_publish(b"i", b"a", b"22"), encode_publish(b"i", b"b", b""));
        let got = delivered(runs_of(&[(7, &[a1.clone(), a2.clone()]), (u32::MAX, &[b.clone()])])).unwrap();
        let want = vec![
            (7, Bytes::from_static(b"a"), Bytes::from([&a1[..], &a2[..]].concat()), 2),
            (u32::MAX, Bytes::from_static(b"b"), b, 1),
        ];
        assert_eq!(got, want);
        assert_eq!(delivered(runs_of(&[])).unwrap(), vec![]);
    }

    #[test]
    fn given_malformed_runs_then_nothing_after_the_fault_is_delivered_and_the_error_says_why() {
        let a = encode_publish(b"i", b"a", b"payload");
        let b = encode_publish(b"i", b"b", b"payload");
        let mut long = runs_of(&[(1, &[a.clone()])]);
        long.runs[0].len += 1;
        assert_eq!(delivered(long).unwrap_err(), format!("a run of {} bytes where {} are left", a.len() + 1, a.len()));
        let mut trailing = runs_of(&[(1, &[a.clone(), a.clone()])]);
        trailing.runs[0].len = a.len() as u32;
        assert_eq!(delivered(trailing).unwrap_err(), format!("{} bytes of frames after the last run", a.len()));
        let mut cut = runs_of(&[(1, &[a.clone()])]);
        cut.frames = cut.frames.slice(..a.len() - 1);
        cut.runs[0].len -= 1;
        assert_eq!(delivered(cut).unwrap_err(), "malformed PUBLISH frame: frame longer than the data");
        let mixed = runs_of(&[(1, &[a.clone(), b])]);
        assert_eq!(delivered(mixed).unwrap_err(), "a run with frames on more than one channel");
        let subscribe = runs_of(&[(1, &[encode_subscribe(b"i", b"a")])]);
        assert_eq!(delivered(subscribe).unwrap_err(), "SUBSCRIBE frame instead of PUBLISH");
        let empty = PublishRuns { frames: Bytes::new(), runs: vec![Run { owner: 1, len: 0 }] };
        assert_eq!(delivered(empty).unwrap_err(), "an empty run");
        let bad_opcode = runs_of(&[(1, &[Bytes::from_static(&[0, 0, 0, 5, 99])])]);
        assert_eq!(delivered(bad_opcode).unwrap_err(), "unknown opcode 99");
    }
}
