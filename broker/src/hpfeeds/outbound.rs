//! A connection's outbound queue, bounded in bytes.
//!
//! Publishers push shared frames (`Bytes`, no copy per subscriber) and never
//! wait. When a push would exceed the bound the connection is marked for a
//! slow-consumer close: its writer drops the queue at once (freeing the
//! memory), sends an ERROR and closes.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::close::CloseReason;
use crate::telemetry;

#[derive(Clone)]
pub struct Outbound {
    tx: mpsc::UnboundedSender<Bytes>,
    shared: Arc<Shared>,
}

struct Shared {
    queued: AtomicUsize,
    max: usize,
    overflowed: AtomicBool,
    /// Past the high-water mark (half the bound) and not yet back under a quarter.
    filled: AtomicBool,
    /// The overflow happened before this queue: a peer node dropped publishes for it.
    lost_upstream: AtomicBool,
    /// Cancelled when the connection must close (overflow or session end).
    close: CancellationToken,
    /// Publishes queued for the client, and their bytes.
    delivered: AtomicU64,
    delivered_bytes: AtomicU64,
    /// Bytes the writer has handed to the socket, and of those, the ones
    /// flushed through it (TLS may hold some back until a flush).
    sent: AtomicU64,
    flushed: AtomicU64,
    /// A resume session waits here for the queue to drain (`wait_below`).
    room: tokio::sync::Notify,
    waiting: AtomicBool,
}

/// Bytes of a queue's frames the socket has taken.
#[derive(Clone)]
pub struct SentCounter(Arc<Shared>);

impl SentCounter {
    /// `encrypted`: only those flushed through TLS.
    pub fn bytes(&self, encrypted: bool) -> u64 {
        let counter = if encrypted { &self.0.flushed } else { &self.0.sent };
        counter.load(Ordering::Acquire)
    }
}

pub struct OutboundReceiver {
    pub rx: mpsc::UnboundedReceiver<Bytes>,
    shared: Arc<Shared>,
}

pub fn outbound(max_bytes: usize, close: CancellationToken) -> (Outbound, OutboundReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        queued: AtomicUsize::new(0),
        max: max_bytes,
        overflowed: AtomicBool::new(false),
        filled: AtomicBool::new(false),
        lost_upstream: AtomicBool::new(false),
        close,
        delivered: AtomicU64::new(0),
        delivered_bytes: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        flushed: AtomicU64::new(0),
        room: tokio::sync::Notify::new(),
        waiting: AtomicBool::new(false),
    });
    (Outbound { tx, shared: shared.clone() }, OutboundReceiver { rx, shared })
}

impl Outbound {
    /// Queues `frame`; false if the connection is closing or just overflowed.
    pub fn push(&self, frame: Bytes) -> bool {
        let len = frame.len();
        let before = self.shared.queued.fetch_add(len, Ordering::AcqRel);
        if before + len > self.shared.max {
            self.shared.queued.fetch_sub(len, Ordering::AcqRel);
            self.shared.overflow();
            return false;
        }
        if self.tx.send(frame).is_err() {
            self.shared.queued.fetch_sub(len, Ordering::AcqRel);
            return false;
        }
        // Past the mark a plain load, not a swap per push, while it stays filled.
        if before + len > self.shared.max / 2
            && !self.shared.filled.load(Ordering::Relaxed)
            && !self.shared.filled.swap(true, Ordering::AcqRel)
        {
            metrics::counter!(telemetry::SEND_BUFFER_FILL.name).increment(1);
        }
        true
    }

    /// Queues `messages` publishes (one frame, or a run of them in one
    /// `Bytes`) for the client and counts them as delivered to it.
    pub fn deliver(&self, frames: Bytes, messages: u64) -> bool {
        let len = frames.len() as u64;
        let queued = self.push(frames);
        if queued {
            self.shared.delivered.fetch_add(messages, Ordering::Relaxed);
            self.shared.delivered_bytes.fetch_add(len, Ordering::Relaxed);
        }
        queued
    }

    /// Publishes and bytes delivered to this connection so far.
    pub fn delivered(&self) -> (u64, u64) {
        (self.shared.delivered.load(Ordering::Relaxed), self.shared.delivered_bytes.load(Ordering::Relaxed))
    }

    /// Queues the last frame of a closing session (its ERROR), past the bound:
    /// nothing else will be queued after it.
    pub fn push_final(&self, frame: Bytes) {
        self.shared.queued.fetch_add(frame.len(), Ordering::AcqRel);
        let _ = self.tx.send(frame);
    }

    /// The close, if the queue overflowed (here or between nodes).
    pub fn slow_consumer(&self) -> Option<CloseReason> {
        self.shared.slow_consumer()
    }

    /// Messages for this connection were dropped on the way (a full link
    /// between nodes): it closes as a slow consumer, like an overflow.
    pub fn lost_upstream(&self) {
        self.shared.lost_upstream.store(true, Ordering::Release);
        self.shared.overflow();
    }

    pub fn queued_bytes(&self) -> usize {
        self.shared.queued.load(Ordering::Acquire)
    }

    /// The bound: a push past it closes the connection.
    pub fn capacity(&self) -> usize {
        self.shared.max
    }

    /// What the writer has sent, readable after the queue is gone.
    pub fn sent_counter(&self) -> SentCounter {
        SentCounter(self.shared.clone())
    }

    /// Returns once at most `bytes` are queued (or the connection closes):
    /// a resume session reads the archive only as fast as its client.
    pub async fn wait_below(&self, bytes: usize) {
        loop {
            let notified = self.shared.room.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            self.shared.waiting.store(true, Ordering::Release);
            if self.queued_bytes() <= bytes || self.shared.close.is_cancelled() {
                return;
            }
            tokio::select! {
                _ = notified => {}
                _ = self.shared.close.cancelled() => return,
            }
        }
    }
}

impl OutboundReceiver {
    /// Call after writing `n` bytes taken from the queue.
    pub fn written(&self, n: usize) {
        let left = self.shared.queued.fetch_sub(n, Ordering::AcqRel) - n;
        // The swap only when the flag is set: the write path stays read-only.
        if left < self.shared.max / 4
            && self.shared.filled.load(Ordering::Relaxed)
            && self.shared.filled.swap(false, Ordering::AcqRel)
        {
            metrics::counter!(telemetry::SEND_BUFFER_DRAIN.name).increment(1);
        }
        if self.shared.waiting.load(Ordering::Acquire) && self.shared.waiting.swap(false, Ordering::AcqRel) {
            self.shared.room.notify_waiters();
        }
    }

    /// Call after the socket took `n` more bytes.
    pub fn sent(&self, n: usize) {
        self.shared.sent.fetch_add(n as u64, Ordering::AcqRel);
    }

    /// Call after a flush: everything sent has gone through.
    pub fn flushed(&self) {
        self.shared.flushed.store(self.shared.sent.load(Ordering::Acquire), Ordering::Release);
    }

    /// The close, if the queue overflowed (here or between nodes).
    pub fn slow_consumer(&self) -> Option<CloseReason> {
        self.shared.slow_consumer()
    }
}

impl Shared {
    fn slow_consumer(&self) -> Option<CloseReason> {
        let overflowed = self.overflowed.load(Ordering::Acquire);
        overflowed.then(|| CloseReason::SlowConsumer { between_nodes: self.lost_upstream.load(Ordering::Acquire) })
    }

    fn overflow(&self) {
        if !self.overflowed.swap(true, Ordering::AcqRel) {
            // hpfeeds 3.x starts a deadline here; hpfriends closes at once.
            metrics::counter!(telemetry::SEND_BUFFER_DEADLINE_START.name).increment(1);
            self.close.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_pushes_beyond_bound_then_overflow_closes_and_rejects() {
        let close = CancellationToken::new();
        let (out, rx) = outbound(10, close.clone());
        assert!(out.push(Bytes::from_static(b"123456")));
        assert!(!out.push(Bytes::from_static(b"123456")), "12 bytes exceed the 10-byte bound");
        assert!(close.is_cancelled());
        assert_eq!(
            rx.slow_consumer().and_then(|r| r.error_text()).as_deref(),
            Some("Slow consumer: outbound queue exceeded its limit, closing")
        );
        assert_eq!(out.queued_bytes(), 6, "the rejected frame is not counted");
    }

    #[test]
    fn given_written_bytes_then_room_again() {
        let (out, mut rx) = outbound(10, CancellationToken::new());
        assert!(out.push(Bytes::from_static(b"12345678")));
        let f = rx.rx.try_recv().unwrap();
        rx.written(f.len());
        assert!(out.push(Bytes::from_static(b"12345678")));
    }
}
