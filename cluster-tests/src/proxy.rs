//! A TCP relay the test controls, placed between nodes: it passes every byte
//! on and keeps a copy, so a test can look at what crosses the wire.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// What one relayed connection carried, each direction separately.
#[derive(Clone, Default)]
pub struct Recorded {
    pub to_target: Vec<u8>,
    pub from_target: Vec<u8>,
}

pub struct RecordingProxy {
    pub addr: SocketAddr,
    connections: Arc<Mutex<Vec<Arc<Mutex<Recorded>>>>>,
}

impl RecordingProxy {
    /// Listens on `listen` and relays each connection to `target`.
    pub fn start(listen: SocketAddr, target: SocketAddr) -> std::io::Result<RecordingProxy> {
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let connections: Arc<Mutex<Vec<Arc<Mutex<Recorded>>>>> = Arc::default();
        let all = connections.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let Ok(server) = TcpStream::connect(target) else { continue };
                let record = Arc::new(Mutex::new(Recorded::default()));
                all.lock().expect("proxy lock").push(record.clone());
                let (c2, s2) = (client.try_clone().expect("clone"), server.try_clone().expect("clone"));
                let up = record.clone();
                std::thread::spawn(move || pump(client, server, move |b| up.lock().expect("rec").to_target.extend(b)));
                std::thread::spawn(move || pump(s2, c2, move |b| record.lock().expect("rec").from_target.extend(b)));
            }
        });
        Ok(RecordingProxy { addr, connections })
    }

    /// Every connection relayed so far.
    pub fn connections(&self) -> Vec<Recorded> {
        self.connections.lock().expect("proxy lock").iter().map(|r| r.lock().expect("rec").clone()).collect()
    }

    /// Every byte relayed so far, both directions.
    pub fn all_bytes(&self) -> Vec<u8> {
        self.connections().into_iter().flat_map(|r| [r.to_target, r.from_target].concat()).collect()
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, mut keep: impl FnMut(&[u8])) {
    let mut buf = [0u8; 64 * 1024];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 {
            break;
        }
        keep(&buf[..n]);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// True when `needle` occurs anywhere in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
