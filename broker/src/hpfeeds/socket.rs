//! What the kernel says of a client's socket: how much of what the broker
//! wrote the client has not acknowledged yet. A resume key's place is the
//! first message behind that point (docs/protocol.md, "Resume").
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use tokio::net::TcpStream;

/// A connection's transport: the TCP socket under it, and whether what the
/// session writes is encrypted first (then the socket's byte counts are the
/// records', larger than what was written).
pub trait Transport {
    fn socket(&self) -> RawFd;
    const ENCRYPTED: bool;
}

impl Transport for TcpStream {
    fn socket(&self) -> RawFd {
        self.as_raw_fd()
    }
    const ENCRYPTED: bool = false;
}

impl Transport for tokio_rustls::server::TlsStream<TcpStream> {
    fn socket(&self) -> RawFd {
        self.get_ref().0.as_raw_fd()
    }
    const ENCRYPTED: bool = true;
}

/// Linux's SIOCOUTQ (= TIOCOUTQ): bytes in the send queue the peer has not
/// acknowledged. Neither rustix nor socket2 wraps it.
const SIOCOUTQ: rustix::ioctl::Opcode = 0x5411;

/// Bytes written to `socket` that its peer has not acknowledged, also after
/// the peer reset the connection; `None` if the kernel does not say.
///
/// `socket` must be open for the whole call: the session asks only while
/// its halves of the stream, which own it, are alive.
pub fn unacknowledged(socket: RawFd) -> Option<u64> {
    // SAFETY: the caller keeps the descriptor open during the call (above),
    // and SIOCOUTQ writes one int, the type the getter is made with.
    let n = unsafe {
        let fd = BorrowedFd::borrow_raw(socket);
        rustix::ioctl::ioctl(fd, rustix::ioctl::Getter::<SIOCOUTQ, std::ffi::c_int>::new())
    };
    n.ok().and_then(|n| u64::try_from(n).ok())
}
