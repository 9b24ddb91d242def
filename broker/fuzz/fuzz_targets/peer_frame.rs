//! Feeds arbitrary bytes to the receiving side of a fan-out link, as a peer
//! (or anyone past its TLS) could send them: protobuf decoding of a
//! `PeerFrame`, then the check of a `runs` message's frames. Nothing may
//! panic, and every run handed on must be whole PUBLISH frames of one channel.
#![no_main]

use hpfriends_broker::cluster::proto::fanout::{peer_frame, PeerFrame};
use hpfriends_broker::protocol::{decode, Frame, Limits};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(PeerFrame { kind: Some(peer_frame::Kind::Runs(runs)) }) = PeerFrame::decode(data) else { return };
    let _ = hpfriends_broker::cluster::runs::for_each_run(runs, |_owner, channel, frames, count| {
        let mut rest = bytes::BytesMut::from(&frames[..]);
        let limits = Limits { max_publish_body: usize::MAX >> 8 };
        for _ in 0..count {
            match decode(&mut rest, &limits) {
                Ok(Some(Frame::Publish(p))) => assert_eq!(p.channel(), channel),
                other => panic!("a checked run held {other:?}"),
            }
        }
        assert!(rest.is_empty(), "a checked run had bytes after its frames");
    });
});
