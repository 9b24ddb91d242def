//! `hpfriends bench relay`: the ceiling for this framing on this machine. It
//! speaks just enough hpfeeds for the same clients (INFO on connect, then
//! PUBLISH forwarded unchanged to every connection subscribed to its channel)
//! and does nothing else: no authentication, no graph, no limits.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::protocol::frame::{encode_info, HEADER_LEN};
use crate::protocol::Opcode;

#[derive(clap::Args, Debug)]
pub struct RelayArgs {
    #[arg(long, default_value = "127.0.0.1:10100")]
    pub listen: String,
}

/// Largest frame the relay takes (the bench's largest payloads are far below).
const MAX_FRAME: usize = 64 << 20;

type Subscribers = Vec<(Bytes, mpsc::UnboundedSender<Bytes>)>;

#[derive(Default)]
struct Relay {
    subscribers: ArcSwap<Subscribers>,
    /// Serializes writers of `subscribers`.
    write: Mutex<()>,
}

pub async fn run(args: RelayArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind(&args.listen).await?;
    println!("relay listening on {}", listener.local_addr()?);
    let relay = Arc::new(Relay::default());
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(connection(stream, relay.clone()));
    }
}

async fn connection(stream: TcpStream, relay: Arc<Relay>) {
    let (mut read, write) = stream.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    let _ = tx.send(encode_info(b"relay", &[0; 4]));
    tokio::spawn(write_loop(rx, write));
    let mut buf = BytesMut::with_capacity(1 << 16);
    while matches!(read.read_buf(&mut buf).await, Ok(n) if n > 0) {
        while buf.len() >= HEADER_LEN {
            let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            if !(HEADER_LEN..=MAX_FRAME).contains(&len) {
                return; // not hpfeeds, or more than any bench sends
            }
            if buf.len() < len {
                buf.reserve(len - buf.len());
                break;
            }
            let frame = buf.split_to(len).freeze();
            match Opcode::from_u8(frame[4]) {
                Some(Opcode::Publish) => {
                    let Some(channel) = str8_after_str8(&frame) else { continue };
                    for (c, sub) in relay.subscribers.load().iter() {
                        if *c == channel {
                            let _ = sub.send(frame.clone());
                        }
                    }
                }
                Some(Opcode::Subscribe) => {
                    // ident (str8), then the channel fills the rest.
                    let Some(&ident_len) = frame.get(HEADER_LEN) else { continue };
                    let start = HEADER_LEN + 1 + ident_len as usize;
                    if start > frame.len() {
                        continue;
                    }
                    let channel = frame.slice(start..);
                    let _w = relay.write.lock().expect("relay lock");
                    let mut subs = Subscribers::clone(&relay.subscribers.load());
                    subs.retain(|(_, s)| !s.is_closed());
                    subs.push((channel, tx.clone()));
                    relay.subscribers.store(Arc::new(subs));
                }
                _ => {}
            }
        }
    }
}

/// The channel of a PUBLISH frame: the second length-prefixed string.
fn str8_after_str8(frame: &Bytes) -> Option<Bytes> {
    let mut body = &frame[HEADER_LEN..];
    let ident_len = *body.first()? as usize;
    body.advance(1);
    let channel_len = *body.get(ident_len)? as usize;
    let start = HEADER_LEN + 1 + ident_len + 1;
    (start + channel_len <= frame.len()).then(|| frame.slice(start..start + channel_len))
}

/// Many queued frames per write, like the broker's writer.
async fn write_loop(mut rx: mpsc::UnboundedReceiver<Bytes>, mut write: OwnedWriteHalf) {
    let mut out = BytesMut::with_capacity(1 << 16);
    while let Some(first) = rx.recv().await {
        out.extend_from_slice(&first);
        while out.len() < 1 << 16 {
            let Ok(next) = rx.try_recv() else { break };
            out.extend_from_slice(&next);
        }
        if write.write_all(&out).await.is_err() {
            return;
        }
        out.clear();
    }
}
