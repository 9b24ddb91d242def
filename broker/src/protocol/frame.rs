//! hpfeeds frames, byte-exact (docs/protocol.md).
//!
//! Every frame: `u32` big-endian total length (including the 5-byte header),
//! `u8` opcode, body. `str8` = one length byte and that many bytes; "rest" =
//! everything to the end of the frame. Decoding is a pure function over a
//! buffer that tells "need more bytes" (`Ok(None)`) from an invalid frame.

use std::ops::Range;

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub const HEADER_LEN: usize = 5;
/// Default largest PUBLISH/ERROR body.
pub const DEFAULT_MAX_PUBLISH_BODY: usize = 1024 * 1024;
/// INFO and AUTH: str8 (up to 1 + 255 bytes) and a 20-byte hash or 4-byte nonce.
pub const MAX_AUTH_BODY: usize = 256 + 20;
/// SUBSCRIBE and UNSUBSCRIBE: str8 ident and a channel of up to 255 bytes.
pub const MAX_SUBSCRIBE_BODY: usize = 256 + 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Opcode {
    Error = 0,
    Info = 1,
    Auth = 2,
    Publish = 3,
    Subscribe = 4,
    Unsubscribe = 5,
}

impl Opcode {
    pub fn from_u8(op: u8) -> Option<Opcode> {
        Some(match op {
            0 => Opcode::Error,
            1 => Opcode::Info,
            2 => Opcode::Auth,
            3 => Opcode::Publish,
            4 => Opcode::Subscribe,
            5 => Opcode::Unsubscribe,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Opcode::Error => "ERROR",
            Opcode::Info => "INFO",
            Opcode::Auth => "AUTH",
            Opcode::Publish => "PUBLISH",
            Opcode::Subscribe => "SUBSCRIBE",
            Opcode::Unsubscribe => "UNSUBSCRIBE",
        }
    }
}

/// One decoded frame. Fields are slices of the received buffer (no copies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Error { message: Bytes },
    Info { name: Bytes, nonce: Bytes },
    Auth { ident: Bytes, hash: Bytes },
    Publish(PublishFrame),
    Subscribe { ident: Bytes, channel: Bytes },
    Unsubscribe { ident: Bytes, channel: Bytes },
}

impl Frame {
    pub fn opcode(&self) -> Opcode {
        match self {
            Frame::Error { .. } => Opcode::Error,
            Frame::Info { .. } => Opcode::Info,
            Frame::Auth { .. } => Opcode::Auth,
            Frame::Publish(_) => Opcode::Publish,
            Frame::Subscribe { .. } => Opcode::Subscribe,
            Frame::Unsubscribe { .. } => Opcode::Unsubscribe,
        }
    }
}

/// A PUBLISH as received: the whole frame, delivered unchanged to
/// subscribers, and where its fields lie in it. One `Bytes` instead of one
/// per field: decoding a publish costs one reference count, and the value
/// stays small enough to move without a call to memcpy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishFrame {
    raw: Bytes,
    ident_len: u8,
    channel_len: u8,
}

impl PublishFrame {
    pub fn new(ident: &[u8], channel: &[u8], payload: &[u8]) -> Self {
        let raw = encode_publish(ident, channel, payload);
        PublishFrame { raw, ident_len: ident.len() as u8, channel_len: channel.len() as u8 }
    }

    /// A whole PUBLISH frame already split from a stream (`split_raw`).
    pub fn from_raw(raw: Bytes) -> Result<Self, FrameError> {
        let (ident_len, channel_len) = publish_field_lens(&raw)?;
        Ok(PublishFrame { raw, ident_len, channel_len })
    }

    /// The whole frame, header included.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    pub fn ident(&self) -> &[u8] {
        &self.raw[HEADER_LEN + 1..self.channel_start() - 1]
    }

    pub fn channel(&self) -> &[u8] {
        &self.raw[self.channel_start()..self.payload_start()]
    }

    /// The channel as a `Bytes` sharing the frame's buffer.
    pub fn channel_bytes(&self) -> Bytes {
        self.raw.slice(self.channel_range())
    }

    /// Where the channel is in `raw()`.
    pub fn channel_range(&self) -> Range<usize> {
        self.channel_start()..self.payload_start()
    }

    pub fn payload(&self) -> &[u8] {
        &self.raw[self.payload_start()..]
    }

    fn channel_start(&self) -> usize {
        HEADER_LEN + 2 + self.ident_len as usize
    }

    fn payload_start(&self) -> usize {
        self.channel_start() + self.channel_len as usize
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes is too large for {op} (max {max})")]
    FrameTooLarge { op: &'static str, len: usize, max: usize },
    #[error("frame length {len} is shorter than the 5-byte header")]
    LengthTooSmall { len: usize },
    #[error("unknown opcode {0}")]
    UnknownOpcode(u8),
    #[error("malformed {op} frame: {fault}")]
    Malformed { op: &'static str, fault: Fault },
}

/// What is wrong in a malformed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    #[error("{0} length byte missing")]
    LengthByteMissing(Field),
    #[error("{0} longer than the frame")]
    FieldTooLong(Field),
    /// Bytes after the last whole frame of a batch.
    #[error("fewer than 5 bytes left")]
    TrailingBytes,
    #[error("frame longer than the data")]
    FrameTooLong,
}

/// A length-prefixed (str8) field of a frame body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Ident,
    Channel,
    BrokerName,
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Field::Ident => "ident",
            Field::Channel => "channel",
            Field::BrokerName => "name",
        })
    }
}

/// Size limits for decoding.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_publish_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_publish_body: DEFAULT_MAX_PUBLISH_BODY }
    }
}

impl Limits {
    fn max_frame(&self, op: Opcode) -> usize {
        HEADER_LEN
            + match op {
                Opcode::Publish | Opcode::Error => self.max_publish_body,
                Opcode::Info | Opcode::Auth => MAX_AUTH_BODY,
                Opcode::Subscribe | Opcode::Unsubscribe => MAX_SUBSCRIBE_BODY,
            }
    }
}

/// Decodes one frame from the front of `buf`, consuming it; `Ok(None)` when
/// more bytes are needed (nothing is consumed then, so this is cancel-safe).
/// Limits are checked from the header alone, before the body arrives.
pub fn decode(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Frame>, FrameError> {
    let Some((op, len)) = header_of(buf, limits)? else { return Ok(None) };
    if buf.len() < len {
        buf.reserve(len - buf.len());
        return Ok(None);
    }
    let raw = buf.split_to(len).freeze();
    parse_body(op, raw).map(Some)
}

/// Takes the frame at the front of `buf` (frames back to back) without
/// parsing its body: its opcode and all of its bytes.
pub fn split_raw<'a>(buf: &mut &'a [u8], limits: &Limits) -> Result<(Opcode, &'a [u8]), FrameError> {
    let Some((op, len)) = header_of(buf, limits)? else {
        return Err(FrameError::Malformed { op: "trailing", fault: Fault::TrailingBytes });
    };
    if buf.len() < len {
        return Err(FrameError::Malformed { op: op.name(), fault: Fault::FrameTooLong });
    }
    let (frame, rest) = buf.split_at(len);
    *buf = rest;
    Ok((op, frame))
}

/// The channel of a whole PUBLISH frame (`raw` from `split_raw`).
pub fn publish_channel(raw: &[u8]) -> Result<&[u8], FrameError> {
    let (ident_len, channel_len) = publish_field_lens(raw)?;
    let start = HEADER_LEN + 2 + ident_len as usize;
    Ok(&raw[start..start + channel_len as usize])
}

/// The ident and channel lengths of a PUBLISH frame, checked to fit.
fn publish_field_lens(raw: &[u8]) -> Result<(u8, u8), FrameError> {
    let op = Opcode::Publish.name();
    let ident_len = str8_len(&raw[HEADER_LEN..], op, Field::Ident)?;
    let channel_len = str8_len(&raw[HEADER_LEN + 1 + ident_len as usize..], op, Field::Channel)?;
    Ok((ident_len, channel_len))
}

/// The opcode and length from a frame's header, checked against `limits`;
/// `None` until the header is complete.
fn header_of(buf: &[u8], limits: &Limits) -> Result<Option<(Opcode, usize)>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let op = Opcode::from_u8(buf[4]).ok_or(FrameError::UnknownOpcode(buf[4]))?;
    if len < HEADER_LEN {
        return Err(FrameError::LengthTooSmall { len });
    }
    let max = limits.max_frame(op);
    if len > max {
        return Err(FrameError::FrameTooLarge { op: op.name(), len, max });
    }
    Ok(Some((op, len)))
}

fn parse_body(op: Opcode, raw: Bytes) -> Result<Frame, FrameError> {
    let name = op.name();
    let body = || raw.slice(HEADER_LEN..);
    let frame = match op {
        Opcode::Error => Frame::Error { message: body() },
        Opcode::Info => {
            let mut body = body();
            let name_field = str8(&mut body, name, Field::BrokerName)?;
            Frame::Info { name: name_field, nonce: body }
        }
        Opcode::Auth => {
            let mut body = body();
            let ident = str8(&mut body, name, Field::Ident)?;
            Frame::Auth { ident, hash: body }
        }
        Opcode::Publish => {
            let (ident_len, channel_len) = publish_field_lens(&raw)?;
            Frame::Publish(PublishFrame { raw, ident_len, channel_len })
        }
        Opcode::Subscribe => {
            let mut body = body();
            let ident = str8(&mut body, name, Field::Ident)?;
            Frame::Subscribe { ident, channel: body }
        }
        Opcode::Unsubscribe => {
            let mut body = body();
            let ident = str8(&mut body, name, Field::Ident)?;
            Frame::Unsubscribe { ident, channel: body }
        }
    };
    Ok(frame)
}

fn str8(body: &mut Bytes, op: &'static str, field: Field) -> Result<Bytes, FrameError> {
    let n = str8_len(body, op, field)? as usize;
    body.advance(1);
    Ok(body.split_to(n))
}

/// The length of the str8 field at the start of `body`, checked to fit.
fn str8_len(body: &[u8], op: &'static str, field: Field) -> Result<u8, FrameError> {
    let Some(&n) = body.first() else {
        return Err(FrameError::Malformed { op, fault: Fault::LengthByteMissing(field) });
    };
    if body.len() < 1 + n as usize {
        return Err(FrameError::Malformed { op, fault: Fault::FieldTooLong(field) });
    }
    Ok(n)
}

// ---- encoding ----

fn header(buf: &mut BytesMut, op: Opcode, body_len: usize) {
    buf.reserve(HEADER_LEN + body_len);
    buf.put_u32((HEADER_LEN + body_len) as u32);
    buf.put_u8(op as u8);
}

fn put_str8(buf: &mut BytesMut, s: &[u8]) {
    debug_assert!(s.len() <= 255, "str8 fields are at most 255 bytes");
    buf.put_u8(s.len() as u8);
    buf.put_slice(s);
}

pub fn encode_error(message: &str) -> Bytes {
    let mut buf = BytesMut::new();
    header(&mut buf, Opcode::Error, message.len());
    buf.put_slice(message.as_bytes());
    buf.freeze()
}

pub fn encode_info(name: &[u8], nonce: &[u8]) -> Bytes {
    let mut buf = BytesMut::new();
    header(&mut buf, Opcode::Info, 1 + name.len() + nonce.len());
    put_str8(&mut buf, name);
    buf.put_slice(nonce);
    buf.freeze()
}

pub fn encode_auth(ident: &[u8], hash: &[u8]) -> Bytes {
    let mut buf = BytesMut::new();
    header(&mut buf, Opcode::Auth, 1 + ident.len() + hash.len());
    put_str8(&mut buf, ident);
    buf.put_slice(hash);
    buf.freeze()
}

pub fn encode_publish(ident: &[u8], channel: &[u8], payload: &[u8]) -> Bytes {
    let mut buf = BytesMut::new();
    put_publish(&mut buf, ident, channel, payload);
    buf.freeze()
}

/// Appends a PUBLISH frame to `buf` (a client batching many per write).
pub fn put_publish(buf: &mut BytesMut, ident: &[u8], channel: &[u8], payload: &[u8]) {
    header(buf, Opcode::Publish, 2 + ident.len() + channel.len() + payload.len());
    put_str8(buf, ident);
    put_str8(buf, channel);
    buf.put_slice(payload);
}

fn encode_sub(op: Opcode, ident: &[u8], channel: &[u8]) -> Bytes {
    let mut buf = BytesMut::new();
    header(&mut buf, op, 1 + ident.len() + channel.len());
    put_str8(&mut buf, ident);
    buf.put_slice(channel);
    buf.freeze()
}

pub fn encode_subscribe(ident: &[u8], channel: &[u8]) -> Bytes {
    encode_sub(Opcode::Subscribe, ident, channel)
}

pub fn encode_unsubscribe(ident: &[u8], channel: &[u8]) -> Bytes {
    encode_sub(Opcode::Unsubscribe, ident, channel)
}

/// The AUTH hash: SHA-1(nonce ‖ secret).
pub fn auth_hash(nonce: &[u8], secret: &[u8]) -> [u8; 20] {
    use sha1::{Digest, Sha1};
    let mut h = Sha1::new();
    h.update(nonce);
    h.update(secret);
    h.finalize().into()
}

/// The decoder's invariants on arbitrary input, shared by the fuzz target and
/// the property test: feeding `data` in chunks never panics, consumes nothing
/// while a frame is incomplete, and every frame decoded re-encodes to exactly
/// the bytes it consumed.
pub fn check_decoder_on(data: &[u8], limits: &Limits) {
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut consumed = 0;
    // Feed in chunks whose sizes come from the data itself.
    while fed < data.len() {
        let step = 1 + (data[fed] as usize % 7);
        let end = (fed + step).min(data.len());
        buf.extend_from_slice(&data[fed..end]);
        fed = end;
        loop {
            let before = buf.len();
            match decode(&mut buf, limits) {
                Ok(Some(frame)) => {
                    let used = before - buf.len();
                    assert_eq!(encode(&frame), data[consumed..consumed + used], "re-encoding differs");
                    consumed += used;
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "incomplete frame consumed bytes");
                    break;
                }
                Err(_) => return,
            }
        }
    }
}

/// Encodes any frame (the inverse of `decode`).
pub fn encode(frame: &Frame) -> Bytes {
    match frame {
        Frame::Error { message } => {
            let mut buf = BytesMut::new();
            header(&mut buf, Opcode::Error, message.len());
            buf.put_slice(message);
            buf.freeze()
        }
        Frame::Info { name, nonce } => encode_info(name, nonce),
        Frame::Auth { ident, hash } => encode_auth(ident, hash),
        // From the fields, not `raw`: the decoder's checks compare the two.
        Frame::Publish(p) => encode_publish(p.ident(), p.channel(), p.payload()),
        Frame::Subscribe { ident, channel } => encode_subscribe(ident, channel),
        Frame::Unsubscribe { ident, channel } => encode_unsubscribe(ident, channel),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> Result<Option<Frame>, FrameError> {
        decode(&mut BytesMut::from(bytes), &Limits::default())
    }

    #[test]
    fn given_back_to_back_frames_then_split_raw_takes_one_at_a_time_and_rejects_a_cut_one() {
        let (a, b) = (encode_publish(b"i", b"c", b"one"), encode_subscribe(b"i", b"c"));
        let all = [&a[..], &b[..], &a[..3]].concat();
        let mut buf = &all[..];
        let limits = Limits::default();
        assert_eq!(split_raw(&mut buf, &limits).unwrap(), (Opcode::Publish, &a[..]));
        assert_eq!(split_raw(&mut buf, &limits).unwrap(), (Opcode::Subscribe, &b[..]));
        let cut = split_raw(&mut buf, &limits).unwrap_err();
        assert_eq!(cut.to_string(), "malformed trailing frame: fewer than 5 bytes left");
        let mut short = &a[..a.len() - 1];
        let err = split_raw(&mut short, &limits).unwrap_err();
        assert_eq!(err.to_string(), "malformed PUBLISH frame: frame longer than the data");
    }

    #[test]
    fn given_back_to_back_frames_then_split_raw_gives_each_whole_and_publish_channel_reads_it() {
        let (a, b) = (encode_publish(b"ident", b"chan", b"payload"), encode_subscribe(b"i", b"c"));
        let joined = [&a[..], &b[..]].concat();
        let mut rest = &joined[..];
        let limits = Limits::default();
        let (op, raw) = split_raw(&mut rest, &limits).unwrap();
        assert_eq!((op, raw), (Opcode::Publish, &a[..]));
        assert_eq!(publish_channel(raw).unwrap(), b"chan");
        assert_eq!(split_raw(&mut rest, &limits).unwrap(), (Opcode::Subscribe, &b[..]));
        assert!(rest.is_empty());
        let mut cut = &a[..a.len() - 1];
        assert_eq!(
            split_raw(&mut cut, &limits).unwrap_err().to_string(),
            "malformed PUBLISH frame: frame longer than the data"
        );
        // Length 8: the ident claims 5 bytes where 2 are left.
        let bad_ident = [0, 0, 0, 8, 3, 5, b'a', b'b'];
        assert_eq!(
            publish_channel(&bad_ident).unwrap_err().to_string(),
            "malformed PUBLISH frame: ident longer than the frame"
        );
    }

    fn samples() -> Vec<(Bytes, Frame)> {
        let publish = encode_publish(b"jojo-sensor", b"dionaea.captures", b"{\"x\":1}");
        vec![
            (encode_error("boom"), Frame::Error { message: Bytes::from_static(b"boom") }),
            (
                encode_info(b"hpfriends", &[1, 2, 3, 4]),
                Frame::Info { name: Bytes::from_static(b"hpfriends"), nonce: Bytes::from_static(&[1, 2, 3, 4]) },
            ),
            (
                encode_auth(b"id", &[7; 20]),
                Frame::Auth { ident: Bytes::from_static(b"id"), hash: Bytes::from_static(&[7; 20]) },
            ),
            (publish, Frame::Publish(PublishFrame::new(b"jojo-sensor", b"dionaea.captures", b"{\"x\":1}"))),
            (
                encode_subscribe(b"id", b"chan"),
                Frame::Subscribe { ident: Bytes::from_static(b"id"), channel: Bytes::from_static(b"chan") },
            ),
            (
                encode_unsubscribe(b"id", b"chan"),
                Frame::Unsubscribe { ident: Bytes::from_static(b"id"), channel: Bytes::from_static(b"chan") },
            ),
        ]
    }

    #[test]
    fn given_publish_then_fields_are_its_ident_channel_and_payload() {
        let mut buf = BytesMut::from(&encode_publish(b"jojo-sensor", b"", b"{}")[..]);
        let Some(Frame::Publish(p)) = decode(&mut buf, &Limits::default()).unwrap() else { panic!("a publish") };
        assert_eq!((p.ident(), p.channel(), p.payload()), (&b"jojo-sensor"[..], &b""[..], &b"{}"[..]));
        assert_eq!(p.channel_bytes(), Bytes::new());
        let empty = PublishFrame::new(b"", b"ch", b"");
        assert_eq!((empty.ident(), empty.channel(), empty.payload()), (&b""[..], &b"ch"[..], &b""[..]));
        assert_eq!(&empty.raw()[..], &[0, 0, 0, 9, 3, 0, 2, b'c', b'h']);
    }

    #[test]
    fn wire_compat_byte_layout() {
        assert_eq!(&encode_error("no")[..], &[0, 0, 0, 7, 0, b'n', b'o']);
        assert_eq!(&encode_info(b"hp", &[9, 8, 7, 6])[..], &[0, 0, 0, 12, 1, 2, b'h', b'p', 9, 8, 7, 6]);
        let auth = encode_auth(b"i", &[0xAA; 20]);
        assert_eq!(&auth[..7], &[0, 0, 0, 27, 2, 1, b'i']);
        assert_eq!(auth.len(), 27);
        assert_eq!(
            &encode_publish(b"i", b"ch", b"xyz")[..],
            &[0, 0, 0, 13, 3, 1, b'i', 2, b'c', b'h', b'x', b'y', b'z']
        );
        assert_eq!(&encode_subscribe(b"i", b"ch")[..], &[0, 0, 0, 9, 4, 1, b'i', b'c', b'h']);
        assert_eq!(&encode_unsubscribe(b"i", b"ch")[..], &[0, 0, 0, 9, 5, 1, b'i', b'c', b'h']);
    }

    #[test]
    fn given_each_frame_when_encoded_then_decodes_to_itself() {
        for (bytes, frame) in samples() {
            let mut buf = BytesMut::from(&bytes[..]);
            buf.extend_from_slice(b"next");
            assert_eq!(decode(&mut buf, &Limits::default()).unwrap(), Some(frame));
            assert_eq!(&buf[..], b"next", "exactly one frame is consumed");
        }
    }

    #[test]
    fn given_every_truncated_prefix_then_need_more_and_nothing_consumed() {
        for (bytes, _) in samples() {
            for cut in 0..bytes.len() {
                let mut buf = BytesMut::from(&bytes[..cut]);
                assert_eq!(decode(&mut buf, &Limits::default()), Ok(None), "prefix {cut} of {bytes:?}");
                assert_eq!(buf.len(), cut);
            }
        }
    }

    #[test]
    fn given_oversized_publish_then_error_names_limit_before_body_arrives() {
        let limits = Limits { max_publish_body: 10 };
        let mut buf = BytesMut::from(&[0u8, 0, 0, 100, 3][..]);
        assert_eq!(decode(&mut buf, &limits), Err(FrameError::FrameTooLarge { op: "PUBLISH", len: 100, max: 15 }));
        let mut auth = BytesMut::from(&[0u8, 0, 2, 0, 2][..]); // 512 > 5 + 256 + 20
        assert!(matches!(decode(&mut auth, &limits), Err(FrameError::FrameTooLarge { op: "AUTH", .. })));
    }

    #[test]
    fn given_bad_header_or_fields_then_specific_errors() {
        assert_eq!(decode_all(&[0, 0, 0, 5, 9]), Err(FrameError::UnknownOpcode(9)));
        assert_eq!(decode_all(&[0, 0, 0, 3, 3]), Err(FrameError::LengthTooSmall { len: 3 }));
        assert!(matches!(decode_all(&[0, 0, 0, 5, 3]), Err(FrameError::Malformed { op: "PUBLISH", .. })));
        // ident claims 9 bytes but the frame has 2 left.
        assert!(matches!(decode_all(&[0, 0, 0, 8, 4, 9, b'a', b'b']), Err(FrameError::Malformed { .. })));
        // PUBLISH whose channel length runs past the end.
        assert!(matches!(
            decode_all(&[0, 0, 0, 9, 3, 1, b'i', 5, b'c']),
            Err(FrameError::Malformed { fault: Fault::FieldTooLong(Field::Channel), .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn given_arbitrary_bytes_then_decoder_keeps_its_invariants(data in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            check_decoder_on(&data, &Limits { max_publish_body: 300 });
        }

        #[test]
        fn given_valid_frames_in_any_chunking_then_all_decode(payload in proptest::collection::vec(proptest::num::u8::ANY, 0..300), n in 1usize..5) {
            let mut data = Vec::new();
            for _ in 0..n {
                data.extend_from_slice(&encode_publish(b"id", b"chan", &payload));
            }
            check_decoder_on(&data, &Limits::default());
        }
    }

    #[test]
    fn auth_hash_is_sha1_of_nonce_then_secret() {
        // sha1("abc") = a9993e36...
        assert_eq!(hex::encode(auth_hash(b"a", b"bc")), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }
}
