//! A connection's outbound queue, bounded in bytes.
//!
//! Publishers push shared frames (`Bytes`, no copy per subscriber) and never
//! wait. When a push would exceed the bound the connection is marked for a
//! slow-consumer close: its writer drops the queue at once (freeing the
//! memory), sends an ERROR and closes.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct Outbound {
    tx: mpsc::UnboundedSender<Bytes>,
    shared: Arc<Shared>,
}

struct Shared {
    queued: AtomicUsize,
    max: usize,
    overflowed: AtomicBool,
    /// Cancelled when the connection must close (overflow or session end).
    close: CancellationToken,
}

pub struct OutboundReceiver {
    pub rx: mpsc::UnboundedReceiver<Bytes>,
    shared: Arc<Shared>,
}

pub fn outbound(max_bytes: usize, close: CancellationToken) -> (Outbound, OutboundReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let shared =
        Arc::new(Shared { queued: AtomicUsize::new(0), max: max_bytes, overflowed: AtomicBool::new(false), close });
    (Outbound { tx, shared: shared.clone() }, OutboundReceiver { rx, shared })
}

impl Outbound {
    /// Queues `frame`; false if the connection is closing or just overflowed.
    pub fn push(&self, frame: Bytes) -> bool {
        let len = frame.len();
        let before = self.shared.queued.fetch_add(len, Ordering::AcqRel);
        if before + len > self.shared.max {
            self.shared.queued.fetch_sub(len, Ordering::AcqRel);
            if !self.shared.overflowed.swap(true, Ordering::AcqRel) {
                self.shared.close.cancel();
            }
            return false;
        }
        if self.tx.send(frame).is_err() {
            self.shared.queued.fetch_sub(len, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Queues the last frame of a closing session (its ERROR), past the bound:
    /// nothing else will be queued after it.
    pub fn push_final(&self, frame: Bytes) {
        self.shared.queued.fetch_add(frame.len(), Ordering::AcqRel);
        let _ = self.tx.send(frame);
    }

    pub fn overflowed(&self) -> bool {
        self.shared.overflowed.load(Ordering::Acquire)
    }

    pub fn queued_bytes(&self) -> usize {
        self.shared.queued.load(Ordering::Acquire)
    }
}

impl OutboundReceiver {
    /// Call after writing `n` bytes taken from the queue.
    pub fn written(&self, n: usize) {
        self.shared.queued.fetch_sub(n, Ordering::AcqRel);
    }

    pub fn overflowed(&self) -> bool {
        self.shared.overflowed.load(Ordering::Acquire)
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
        assert!(rx.overflowed());
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
