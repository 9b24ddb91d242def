//! The two wire protocols the load generator speaks: hpfeeds (hpfriends, the
//! raw relay, the hpfeeds 3.x broker) and NATS's text protocol (nats-server),
//! each written directly so the client side costs the same for every target.

use std::net::{IpAddr, SocketAddr};

use anyhow::{bail, Context};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};

use crate::protocol::frame::{auth_hash, encode_auth, encode_subscribe, put_publish};
use crate::protocol::{decode, Frame, Limits};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    Hpfeeds,
    Nats,
}

/// Who a connection logs in as, and on which channel (NATS: subject).
#[derive(Clone, Debug)]
pub struct Login {
    pub ident: String,
    pub secret: String,
    pub channel: String,
}

/// The reading side of a connection.
pub struct Reader {
    protocol: Protocol,
    half: OwnedReadHalf,
    buf: BytesMut,
    limits: Limits,
}

/// The writing side: frames are appended to `out` and written together.
pub struct Writer {
    protocol: Protocol,
    half: OwnedWriteHalf,
    pub out: BytesMut,
    ident: Bytes,
    channel: Bytes,
}

/// Connects and logs in; for hpfeeds the broker's answer to AUTH is silence,
/// so a wrong secret shows up as an ERROR on the first read.
pub async fn connect(protocol: Protocol, addr: SocketAddr, login: &Login) -> anyhow::Result<(Reader, Writer)> {
    connect_with(protocol, addr, None, login, 1 << 16).await
}

/// As `connect`, with buffers for a connection that sends a message now and
/// then (a sensor of a fleet of thousands), from local address `from` if
/// given (one local address has ~28,000 ports towards one server address).
pub async fn connect_small(
    protocol: Protocol,
    addr: SocketAddr,
    from: Option<IpAddr>,
    login: &Login,
) -> anyhow::Result<(Reader, Writer)> {
    connect_with(protocol, addr, from, login, 1 << 10).await
}

async fn connect_with(
    protocol: Protocol,
    addr: SocketAddr,
    from: Option<IpAddr>,
    login: &Login,
    buffer: usize,
) -> anyhow::Result<(Reader, Writer)> {
    let stream = match from {
        None => TcpStream::connect(addr).await,
        Some(ip) => {
            let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
            socket.bind(SocketAddr::new(ip, 0)).with_context(|| format!("cannot bind a socket to {ip}"))?;
            socket.connect(addr).await
        }
    };
    let stream = stream.with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let (r, w) = stream.into_split();
    // Frames up to the largest payload the bench sends, and then some.
    let limits = Limits { max_publish_body: 16 << 20 };
    let mut reader = Reader { protocol, half: r, buf: BytesMut::with_capacity(buffer), limits };
    let mut writer = Writer {
        protocol,
        half: w,
        out: BytesMut::with_capacity(buffer),
        ident: Bytes::from(login.ident.clone()),
        channel: Bytes::from(login.channel.clone()),
    };
    match protocol {
        Protocol::Hpfeeds => {
            let Some(Frame::Info { nonce, .. }) = reader.frame().await? else {
                bail!("{addr} did not start with an INFO frame");
            };
            writer.out.put(encode_auth(login.ident.as_bytes(), &auth_hash(&nonce, login.secret.as_bytes())));
        }
        Protocol::Nats => {
            let info = reader.line().await?;
            if !info.starts_with(b"INFO ") {
                bail!("{addr} did not start with a NATS INFO line");
            }
            writer.out.put_slice(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"echo\":false}\r\n");
        }
    }
    writer.flush().await?;
    Ok((reader, writer))
}

impl Writer {
    pub fn subscribe(&mut self) {
        match self.protocol {
            Protocol::Hpfeeds => self.out.put(encode_subscribe(&self.ident, &self.channel)),
            Protocol::Nats => {
                self.out.put_slice(b"SUB ");
                self.out.put_slice(&self.channel);
                self.out.put_slice(b" 1\r\n");
            }
        }
    }

    /// Appends one publish of `payload` to the output buffer.
    pub fn publish(&mut self, payload: &[u8]) {
        match self.protocol {
            Protocol::Hpfeeds => put_publish(&mut self.out, &self.ident, &self.channel, payload),
            Protocol::Nats => {
                self.out.put_slice(b"PUB ");
                self.out.put_slice(&self.channel);
                self.out.put_slice(format!(" {}\r\n", payload.len()).as_bytes());
                self.out.put_slice(payload);
                self.out.put_slice(b"\r\n");
            }
        }
    }

    pub async fn flush(&mut self) -> anyhow::Result<()> {
        self.half.write_all(&self.out).await.context("write failed")?;
        self.out.clear();
        Ok(())
    }
}

impl Reader {
    /// Waits for more bytes from the server (one read); false once it closed
    /// the connection. Cancel-safe.
    pub async fn fill(&mut self) -> anyhow::Result<bool> {
        Ok(self.half.read_buf(&mut self.buf).await? > 0)
    }

    /// Hands every delivered payload complete in the buffer to `each`, in
    /// order; other frames are skipped (NATS PINGs are counted in `pings`,
    /// for the caller to answer with [`pong`]). `Some(text)` when the server
    /// sent an error, which ends the connection.
    pub fn drain(&mut self, pings: &mut u32, mut each: impl FnMut(&[u8])) -> anyhow::Result<Option<String>> {
        loop {
            match self.protocol {
                Protocol::Hpfeeds => match decode(&mut self.buf, &self.limits)? {
                    Some(Frame::Publish(p)) => each(p.payload()),
                    Some(Frame::Error { message }) => return Ok(Some(String::from_utf8_lossy(&message).into_owned())),
                    Some(_) => {}
                    None => return Ok(None),
                },
                Protocol::Nats => match self.nats_message(pings)? {
                    Some(NatsMessage::Payload(payload)) => each(&payload),
                    Some(NatsMessage::Error(text)) => return Ok(Some(text)),
                    None => return Ok(None),
                },
            }
        }
    }

    async fn frame(&mut self) -> anyhow::Result<Option<Frame>> {
        loop {
            if let Some(f) = decode(&mut self.buf, &self.limits)? {
                return Ok(Some(f));
            }
            if self.half.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }

    async fn line(&mut self) -> anyhow::Result<Bytes> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf.split_to(end).freeze();
                self.buf.advance(2);
                return Ok(line);
            }
            if self.half.read_buf(&mut self.buf).await? == 0 {
                bail!("connection closed before a full line");
            }
        }
    }

    /// One NATS protocol message from the buffer, if complete: `MSG subject
    /// sid len\r\npayload\r\n`, `PING`, `+OK`, `-ERR '...'`.
    fn nats_message(&mut self, pings: &mut u32) -> anyhow::Result<Option<NatsMessage>> {
        loop {
            let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") else { return Ok(None) };
            let line = &self.buf[..end];
            if line.starts_with(b"MSG ") {
                let len: usize = std::str::from_utf8(line.rsplit(|b| *b == b' ').next().unwrap_or_default())
                    .ok()
                    .and_then(|n| n.parse().ok())
                    .with_context(|| format!("bad MSG line {:?}", String::from_utf8_lossy(line)))?;
                if self.buf.len() < end + 2 + len + 2 {
                    return Ok(None);
                }
                self.buf.advance(end + 2);
                let payload = self.buf.split_to(len).freeze();
                self.buf.advance(2);
                return Ok(Some(NatsMessage::Payload(payload)));
            }
            if line.starts_with(b"-ERR") {
                let text = String::from_utf8_lossy(line).into_owned();
                return Ok(Some(NatsMessage::Error(text)));
            }
            if line == b"PING" {
                *pings += 1;
            }
            self.buf.advance(end + 2); // +OK, PONG, INFO updates
        }
    }
}

enum NatsMessage {
    Payload(Bytes),
    Error(String),
}

/// A PONG for each PING the reader saw (NATS closes clients that do not answer).
pub fn pong(writer: &mut Writer, pings: u32) {
    for _ in 0..pings {
        writer.out.put_slice(b"PONG\r\n");
    }
}
