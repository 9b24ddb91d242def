//! A connection's writer task: drains the outbound queue into the socket,
//! handing the queued frames (shared `Bytes`) to one vectored write, many
//! per syscall when the client is behind, without copying them first.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::outbound::OutboundReceiver;
use crate::protocol::frame::encode_error;

/// Most bytes gathered into one write syscall.
const WRITE_BATCH_BYTES: usize = 64 * 1024;
/// Most frames per write: Linux takes at most 1024 buffers per writev.
const WRITE_BATCH_FRAMES: usize = 1024;
/// How long a closing connection may take to flush its last frames.
pub const FINAL_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Frames taken from the queue and not yet fully written.
#[derive(Default)]
struct Batch {
    frames: VecDeque<Bytes>,
    /// The front frame is partly written: it must be finished before any
    /// other frame, or the client's framing breaks.
    front_started: bool,
}

impl Batch {
    /// Adds what is queued (without waiting) up to the batch limits.
    fn fill(&mut self, first: Bytes, queue: &mut OutboundReceiver) -> usize {
        let mut bytes = first.len();
        self.frames.push_back(first);
        while bytes < WRITE_BATCH_BYTES && self.frames.len() < WRITE_BATCH_FRAMES {
            let Ok(next) = queue.rx.try_recv() else { break };
            bytes += next.len();
            self.frames.push_back(next);
        }
        bytes
    }

    /// One vectored write of the frames, in order; returns the bytes written.
    async fn write_some<W: AsyncWrite + Unpin>(&self, w: &mut W) -> std::io::Result<usize> {
        let slices: Vec<IoSlice> = self.frames.iter().map(|f| IoSlice::new(f)).collect();
        match w.write_vectored(&slices).await? {
            0 => Err(std::io::ErrorKind::WriteZero.into()),
            n => Ok(n),
        }
    }

    /// Forgets the first `n` bytes, which were written.
    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let front = self.frames.front_mut().expect("no more written than batched");
            if n < front.len() {
                front.advance(n);
                self.front_started = true;
                return;
            }
            n -= front.len();
            self.frames.pop_front();
            self.front_started = false;
        }
    }

    /// Keeps only a partly written frame: the rest of it is still owed.
    fn keep_started_frame(&mut self) {
        self.frames.truncate(self.front_started as usize);
    }
}

/// Writes queued frames until the queue's senders are gone (then flushes and
/// shuts the socket) or `close` is cancelled (then drops the queue at once and,
/// for a slow consumer, sends an ERROR).
pub async fn write_loop<W: AsyncWrite + Unpin>(mut w: W, mut queue: OutboundReceiver, close: CancellationToken) {
    let mut batch = Batch::default();
    'run: loop {
        let first = tokio::select! {
            biased;
            _ = close.cancelled() => break,
            frame = queue.rx.recv() => match frame {
                Some(f) => f,
                None => {
                    // Every sender is gone: the session ended and queued its last frames.
                    let _ = tokio::time::timeout(FINAL_FLUSH_TIMEOUT, w.shutdown()).await;
                    return;
                }
            },
        };
        let bytes = batch.fill(first, &mut queue);
        while !batch.frames.is_empty() {
            let written = tokio::select! {
                biased;
                _ = close.cancelled() => break 'run,
                r = batch.write_some(&mut w) => r,
            };
            match written {
                Ok(n) => {
                    batch.advance(n);
                    queue.sent(n);
                }
                Err(_) => {
                    close.cancel();
                    return;
                }
            }
        }
        queue.written(bytes);
        // A no-op for TCP; TLS may hold the end of a record back until asked.
        if w.flush().await.is_err() {
            close.cancel();
            return;
        }
        queue.flushed();
    }
    // Closed from outside: an overflow or a shutdown. Free the queue at once.
    let error = queue.slow_consumer().and_then(|reason| reason.error_text());
    drop(queue);
    batch.keep_started_frame();
    if let Some(text) = error {
        batch.frames.push_back(encode_error(&text));
        let _ = tokio::time::timeout(FINAL_FLUSH_TIMEOUT, async {
            while !batch.frames.is_empty() {
                match batch.write_some(&mut w).await {
                    Ok(n) => batch.advance(n),
                    Err(_) => return,
                }
            }
            let _ = w.shutdown().await;
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    fn batch(frames: &[&'static [u8]]) -> Batch {
        Batch { frames: frames.iter().map(|f| Bytes::from_static(f)).collect(), front_started: false }
    }

    #[test]
    fn given_partial_writes_then_advance_keeps_the_unwritten_rest_in_order() {
        let mut b = batch(&[b"abc", b"de", b"fgh"]);
        b.advance(4);
        assert_eq!(b.frames, [&b"e"[..], b"fgh"]);
        assert!(b.front_started);
        b.advance(1);
        assert_eq!(b.frames, [&b"fgh"[..]]);
        assert!(!b.front_started, "a frame written to its end is no longer owed");
        b.advance(3);
        assert!(b.frames.is_empty());
    }

    #[test]
    fn given_close_mid_frame_then_only_the_started_frame_is_kept() {
        let mut b = batch(&[b"abc", b"de"]);
        b.advance(1);
        b.keep_started_frame();
        assert_eq!(b.frames, [&b"bc"[..]]);
        let mut untouched = batch(&[b"abc", b"de"]);
        untouched.keep_started_frame();
        assert!(untouched.frames.is_empty());
    }

    #[tokio::test]
    async fn given_slow_consumer_then_rest_of_started_frame_then_error_are_written() {
        let close = CancellationToken::new();
        let (out, rx) = super::super::outbound::outbound(1 << 20, close.clone());
        // A peer that reads nothing: 4 KiB of pipe, then the writer blocks mid-frame.
        let (ours, mut theirs) = tokio::io::duplex(4096);
        let frame = crate::protocol::frame::encode_publish(b"i", b"c", &[7u8; 10_000]);
        out.push(frame.clone());
        out.push(frame.clone());
        let task = tokio::spawn(write_loop(ours, rx, close.clone()));
        // The writer has started the first frame once some of it arrives.
        let mut got = vec![0u8; 100];
        theirs.read_exact(&mut got).await.unwrap();
        // Overflow: the queue is dropped, the started frame finished, then the ERROR.
        assert!(!out.push(Bytes::from(vec![0u8; 2 << 20])));
        theirs.read_to_end(&mut got).await.unwrap();
        task.await.unwrap();
        let mut expected = frame.to_vec();
        expected.extend_from_slice(&encode_error("Slow consumer: outbound queue exceeded its limit, closing"));
        assert_eq!(got, expected, "one whole frame, then the ERROR, nothing else");
    }
}
