//! The archive on disk: a RocksDB database of its own beside the Raft store
//! (`<data_dir>/archive`), never in the graph's log. Three column families:
//!
//! - `messages`: channel (length first) | time | node | seq → owner, position,
//!   ident, payload. A replay of one channel is one range scan.
//! - `by_time`: time | node | seq → size, channel. Retention takes the oldest
//!   through it, whatever their channel.
//! - `meta`: the totals (bytes, messages) and this node's next sequence
//!   number, written in the same batch as the messages they count.
//!
//! Numbers are big-endian, so keys sort as (time, node, seq).

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use hpfriends_graph::{Position, UserId};
use rocksdb::{ColumnFamilyDescriptor, IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions, DB};

const CF_MESSAGES: &str = "messages";
const CF_BY_TIME: &str = "by_time";
const CF_META: &str = "meta";
const META_BYTES: &[u8] = b"bytes";
const META_MESSAGES: &[u8] = b"messages";
const META_NEXT_SEQ: &[u8] = b"next_seq";
/// What a message costs besides its ident, channel and payload: both keys and
/// the fixed fields.
const OVERHEAD: u64 = 2 * 24 + 1 + 4 + 8 + 1 + 4;

/// Where a message is in the archive of every node: when, on which node it
/// was published, and its number there. Sorts oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id {
    /// Microseconds since the Unix epoch, by the publishing node's clock.
    pub time_us: u64,
    pub node: u64,
    pub seq: u64,
}

impl Id {
    fn bytes(&self) -> [u8; 24] {
        let mut b = [0; 24];
        b[..8].copy_from_slice(&self.time_us.to_be_bytes());
        b[8..16].copy_from_slice(&self.node.to_be_bytes());
        b[16..].copy_from_slice(&self.seq.to_be_bytes());
        b
    }

    fn from_bytes(b: &[u8]) -> Option<Id> {
        let n = |r: std::ops::Range<usize>| Some(u64::from_be_bytes(b.get(r)?.try_into().ok()?));
        (b.len() == 24).then_some(())?;
        Some(Id { time_us: n(0..8)?, node: n(8..16)?, seq: n(16..24)? })
    }

    /// The opaque cursor of the API: the last message of a page.
    pub fn cursor(&self) -> String {
        hex::encode(self.bytes())
    }

    pub fn from_cursor(text: &str) -> Option<Id> {
        Id::from_bytes(&hex::decode(text).ok()?)
    }

    /// The smallest id after this one.
    pub fn next(&self) -> Id {
        match self.seq.checked_add(1) {
            Some(seq) => Id { seq, ..*self },
            None => Id { time_us: self.time_us, node: self.node + 1, seq: 0 },
        }
    }
}

/// One archived message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: Id,
    /// The user whose key published it, as they were then (an id is never reused).
    pub owner: UserId,
    /// The log position the publishing node had applied: which paths existed.
    pub position: Position,
    pub ident: Vec<u8>,
    pub channel: Vec<u8>,
    pub payload: Vec<u8>,
}

impl Message {
    /// What it counts for in `archive_max_bytes`.
    pub fn size(&self) -> u64 {
        OVERHEAD + self.ident.len() as u64 + 2 * self.channel.len() as u64 + self.payload.len() as u64
    }
}

fn message_key(channel: &[u8], id: &Id) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + channel.len() + 24);
    k.push(channel.len() as u8);
    k.extend_from_slice(channel);
    k.extend_from_slice(&id.bytes());
    k
}

pub struct Store {
    db: DB,
    bytes: AtomicU64,
    messages: AtomicU64,
    /// Only the writer thread moves it.
    next_seq: AtomicU64,
}

fn read_u64(db: &DB, key: &[u8]) -> anyhow::Result<u64> {
    let cf = db.cf_handle(CF_META).expect("opened with it");
    Ok(match db.get_cf(cf, key)? {
        Some(v) => u64::from_be_bytes(v.as_slice().try_into().map_err(|_| anyhow::anyhow!("archive meta damaged"))?),
        None => 0,
    })
}

impl Store {
    pub fn open(dir: &Path) -> anyhow::Result<Store> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // The broker's descriptors are for clients.
        opts.set_max_open_files(256);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let cfs = [CF_MESSAGES, CF_BY_TIME, CF_META].map(|n| {
            let mut o = Options::default();
            o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            ColumnFamilyDescriptor::new(n, o)
        });
        let db = DB::open_cf_descriptors(&opts, dir, cfs)
            .map_err(|e| anyhow::anyhow!("cannot open the archive in {}: {e}", dir.display()))?;
        let bytes = read_u64(&db, META_BYTES)?;
        let messages = read_u64(&db, META_MESSAGES)?;
        let next_seq = read_u64(&db, META_NEXT_SEQ)?;
        Ok(Store { db, bytes: bytes.into(), messages: messages.into(), next_seq: next_seq.into() })
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }

    /// The next sequence number of this node's own messages.
    pub fn take_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(name).expect("opened with it")
    }

    /// Writes the messages and the new totals in one batch (not synced: an
    /// archive that loses its last moments in a power cut still has the rest,
    /// and the other nodes' copies).
    pub fn append(&self, messages: &[Message]) -> anyhow::Result<()> {
        let (m, t) = (self.cf(CF_MESSAGES), self.cf(CF_BY_TIME));
        let mut batch = WriteBatch::default();
        let mut added = 0;
        for msg in messages {
            let mut value = Vec::with_capacity(13 + msg.ident.len() + msg.payload.len());
            value.extend_from_slice(&msg.owner.to_be_bytes());
            value.extend_from_slice(&msg.position.to_be_bytes());
            value.push(msg.ident.len() as u8);
            value.extend_from_slice(&msg.ident);
            value.extend_from_slice(&msg.payload);
            batch.put_cf(m, message_key(&msg.channel, &msg.id), value);
            let size = msg.size();
            let mut by_time = Vec::with_capacity(8 + msg.channel.len());
            by_time.extend_from_slice(&size.to_be_bytes());
            by_time.extend_from_slice(&msg.channel);
            batch.put_cf(t, msg.id.bytes(), by_time);
            added += size;
        }
        let bytes = self.bytes() + added;
        let count = self.messages() + messages.len() as u64;
        self.put_totals(&mut batch, bytes, count);
        let mut w = WriteOptions::default();
        w.set_sync(false);
        self.db.write_opt(batch, &w)?;
        self.bytes.store(bytes, Ordering::Relaxed);
        self.messages.store(count, Ordering::Relaxed);
        Ok(())
    }

    fn put_totals(&self, batch: &mut WriteBatch, bytes: u64, messages: u64) {
        let meta = self.cf(CF_META);
        batch.put_cf(meta, META_BYTES, bytes.to_be_bytes());
        batch.put_cf(meta, META_MESSAGES, messages.to_be_bytes());
        batch.put_cf(meta, META_NEXT_SEQ, self.next_seq.load(Ordering::Relaxed).to_be_bytes());
    }

    /// The oldest message's id.
    pub fn oldest(&self) -> Option<Id> {
        let mut it = self.db.iterator_cf(self.cf(CF_BY_TIME), IteratorMode::Start);
        it.next().and_then(|r| r.ok()).and_then(|(k, _)| Id::from_bytes(&k))
    }

    /// Deletes the oldest messages while they are older than `keep_from_us`
    /// or the archive holds more than `max_bytes`. Returns how many went.
    pub fn expire(&self, keep_from_us: u64, max_bytes: u64) -> anyhow::Result<u64> {
        const CHUNK: usize = 10_000;
        let mut deleted = 0;
        loop {
            let (m, t) = (self.cf(CF_MESSAGES), self.cf(CF_BY_TIME));
            let mut batch = WriteBatch::default();
            let (mut bytes, mut count, mut in_batch) = (self.bytes(), self.messages(), 0);
            for item in self.db.iterator_cf(t, IteratorMode::Start) {
                let (key, value) = item?;
                let id = Id::from_bytes(&key).ok_or_else(|| anyhow::anyhow!("archive index damaged"))?;
                if (id.time_us >= keep_from_us && bytes <= max_bytes) || in_batch == CHUNK {
                    break;
                }
                let size = u64::from_be_bytes(value[..8].try_into()?);
                batch.delete_cf(t, &key);
                batch.delete_cf(m, message_key(&value[8..], &id));
                bytes = bytes.saturating_sub(size);
                count = count.saturating_sub(1);
                in_batch += 1;
            }
            if in_batch == 0 {
                return Ok(deleted);
            }
            self.put_totals(&mut batch, bytes, count);
            self.db.write(batch)?;
            self.bytes.store(bytes, Ordering::Relaxed);
            self.messages.store(count, Ordering::Relaxed);
            deleted += in_batch as u64;
            if in_batch < CHUNK {
                return Ok(deleted);
            }
        }
    }

    /// Visits the messages of `channel` from `from` (inclusive) to `until_us`
    /// (exclusive), oldest first, until `visit` breaks.
    pub fn scan(
        &self,
        channel: &[u8],
        from: Id,
        until_us: u64,
        mut visit: impl FnMut(Message) -> ControlFlow<()>,
    ) -> anyhow::Result<()> {
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(message_key(channel, &Id { time_us: until_us, node: 0, seq: 0 }));
        let start = message_key(channel, &from);
        let it = self.db.iterator_cf_opt(
            self.cf(CF_MESSAGES),
            opts,
            IteratorMode::From(&start, rocksdb::Direction::Forward),
        );
        let prefix = 1 + channel.len();
        for item in it {
            let (key, value) = item?;
            let damaged = || anyhow::anyhow!("archive message damaged");
            let id = Id::from_bytes(&key[prefix..]).ok_or_else(damaged)?;
            let owner = UserId::from_be_bytes(value.get(..4).ok_or_else(damaged)?.try_into()?);
            let position = Position::from_be_bytes(value.get(4..12).ok_or_else(damaged)?.try_into()?);
            let ident_len = *value.get(12).ok_or_else(damaged)? as usize;
            let ident = value.get(13..13 + ident_len).ok_or_else(damaged)?.to_vec();
            let payload = value[13 + ident_len..].to_vec();
            let message = Message { id, owner, position, ident, channel: channel.to_vec(), payload };
            if visit(message).is_break() {
                break;
            }
        }
        Ok(())
    }
}
