//! The archive on disk: a RocksDB database of its own beside the Raft store
//! (`<data_dir>/archive`), never in the graph's log. Three column families:
//!
//! - `messages`: channel (length first) | time | node | seq → owner, position,
//!   ident, payload. A replay of one channel is one range scan.
//! - `by_time`: time | node | seq → size, channel. Retention takes the oldest
//!   through it, whatever their channel.
//! - `by_origin`: node | seq → time, channel. The copies to other nodes read
//!   each publishing node's messages in order through it.
//! - `meta`: the totals (bytes, messages) and, per publishing node, the next
//!   sequence number held (`mark`), written in the same batch as the messages.
//!
//! Numbers are big-endian, so keys sort as (time, node, seq).

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hpfriends_graph::{Position, UserId};
use rocksdb::{ColumnFamilyDescriptor, IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions, DB};

const CF_MESSAGES: &str = "messages";
const CF_BY_TIME: &str = "by_time";
const CF_BY_ORIGIN: &str = "by_origin";
const CF_META: &str = "meta";
const META_BYTES: &[u8] = b"bytes";
const META_MESSAGES: &[u8] = b"messages";
/// Bytes of memtables, all column families together.
const MEMTABLES: usize = 32 * 1024 * 1024;
/// Followed by the node id: the mark of that node's messages.
const META_MARK: &[u8] = b"mark/";
/// What a message costs besides its ident, channel and payload: its keys and
/// the fixed fields.
const OVERHEAD: u64 = 3 * 24 + 1 + 4 + 8 + 1 + 8 + 8;

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
        OVERHEAD + self.ident.len() as u64 + 3 * self.channel.len() as u64 + self.payload.len() as u64
    }

    /// The value under its `messages` key.
    fn value(&self) -> Vec<u8> {
        let mut value = Vec::with_capacity(13 + self.ident.len() + self.payload.len());
        value.extend_from_slice(&self.owner.to_be_bytes());
        value.extend_from_slice(&self.position.to_be_bytes());
        value.push(self.ident.len() as u8);
        value.extend_from_slice(&self.ident);
        value.extend_from_slice(&self.payload);
        value
    }

    fn decode(id: Id, channel: &[u8], value: &[u8]) -> anyhow::Result<Message> {
        let damaged = || anyhow::anyhow!("archive message damaged");
        let owner = UserId::from_be_bytes(value.get(..4).ok_or_else(damaged)?.try_into()?);
        let position = Position::from_be_bytes(value.get(4..12).ok_or_else(damaged)?.try_into()?);
        let ident_len = *value.get(12).ok_or_else(damaged)? as usize;
        let ident = value.get(13..13 + ident_len).ok_or_else(damaged)?.to_vec();
        let payload = value[13 + ident_len..].to_vec();
        Ok(Message { id, owner, position, ident, channel: channel.to_vec(), payload })
    }
}

fn message_key(channel: &[u8], id: &Id) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + channel.len() + 24);
    k.push(channel.len() as u8);
    k.extend_from_slice(channel);
    k.extend_from_slice(&id.bytes());
    k
}

fn origin_key(node: u64, seq: u64) -> [u8; 16] {
    let mut k = [0; 16];
    k[..8].copy_from_slice(&node.to_be_bytes());
    k[8..].copy_from_slice(&seq.to_be_bytes());
    k
}

pub struct Store {
    db: DB,
    bytes: AtomicU64,
    messages: AtomicU64,
    /// Per publishing node, the next sequence number not held: below it,
    /// everything is held or expired. Only the writer thread moves it.
    marks: Mutex<HashMap<u64, u64>>,
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
        // Memtables of all families together: RocksDB's default (64 MiB per
        // family, two each) tripled the node's memory under load.
        opts.set_db_write_buffer_size(MEMTABLES);
        let cfs = [CF_MESSAGES, CF_BY_TIME, CF_BY_ORIGIN, CF_META].map(|n| {
            let mut o = Options::default();
            o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            o.set_write_buffer_size(if n == CF_MESSAGES { MEMTABLES / 2 } else { MEMTABLES / 8 });
            o.set_max_write_buffer_number(2);
            ColumnFamilyDescriptor::new(n, o)
        });
        let db = DB::open_cf_descriptors(&opts, dir, cfs)
            .map_err(|e| anyhow::anyhow!("cannot open the archive in {}: {e}", dir.display()))?;
        let bytes = read_u64(&db, META_BYTES)?;
        let messages = read_u64(&db, META_MESSAGES)?;
        let mut marks = HashMap::new();
        let meta = db.cf_handle(CF_META).expect("opened with it");
        for item in db.iterator_cf(meta, IteratorMode::From(META_MARK, rocksdb::Direction::Forward)) {
            let (key, value) = item?;
            let Some(node) = key.strip_prefix(META_MARK) else { break };
            let damaged = || anyhow::anyhow!("archive meta damaged");
            let node = u64::from_be_bytes(node.try_into().map_err(|_| damaged())?);
            marks.insert(node, u64::from_be_bytes(value.as_ref().try_into().map_err(|_| damaged())?));
        }
        Ok(Store { db, bytes: bytes.into(), messages: messages.into(), marks: Mutex::new(marks) })
    }

    /// How far this archive holds each publishing node's messages.
    pub fn marks(&self) -> HashMap<u64, u64> {
        self.marks.lock().expect("archive marks lock poisoned").clone()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(name).expect("opened with it")
    }

    /// Writes the messages, the new totals and marks in one batch (not
    /// synced: an archive that loses its last moments in a power cut still
    /// has the rest, and the other nodes' copies). Each message's sequence
    /// number must be at or past its node's mark (the writer sees to it).
    pub fn append(&self, messages: &[Message]) -> anyhow::Result<()> {
        let (m, t, o) = (self.cf(CF_MESSAGES), self.cf(CF_BY_TIME), self.cf(CF_BY_ORIGIN));
        let mut batch = WriteBatch::default();
        let mut added = 0;
        let mut marks = self.marks();
        for msg in messages {
            batch.put_cf(m, message_key(&msg.channel, &msg.id), msg.value());
            let size = msg.size();
            let mut by_time = Vec::with_capacity(8 + msg.channel.len());
            by_time.extend_from_slice(&size.to_be_bytes());
            by_time.extend_from_slice(&msg.channel);
            batch.put_cf(t, msg.id.bytes(), by_time);
            let mut by_origin = Vec::with_capacity(8 + msg.channel.len());
            by_origin.extend_from_slice(&msg.id.time_us.to_be_bytes());
            by_origin.extend_from_slice(&msg.channel);
            batch.put_cf(o, origin_key(msg.id.node, msg.id.seq), by_origin);
            added += size;
            let mark = marks.entry(msg.id.node).or_default();
            *mark = (*mark).max(msg.id.seq + 1);
        }
        let bytes = self.bytes() + added;
        let count = self.messages() + messages.len() as u64;
        self.put_totals(&mut batch, bytes, count);
        let meta = self.cf(CF_META);
        for (node, mark) in &marks {
            batch.put_cf(meta, [META_MARK, &node.to_be_bytes()].concat(), mark.to_be_bytes());
        }
        let mut w = WriteOptions::default();
        w.set_sync(false);
        self.db.write_opt(batch, &w)?;
        self.bytes.store(bytes, Ordering::Relaxed);
        self.messages.store(count, Ordering::Relaxed);
        *self.marks.lock().expect("archive marks lock poisoned") = marks;
        Ok(())
    }

    fn put_totals(&self, batch: &mut WriteBatch, bytes: u64, messages: u64) {
        let meta = self.cf(CF_META);
        batch.put_cf(meta, META_BYTES, bytes.to_be_bytes());
        batch.put_cf(meta, META_MESSAGES, messages.to_be_bytes());
    }

    /// `node`'s messages from sequence number `from` on, in order, until
    /// `max` of them or `max_bytes` of payload.
    pub fn scan_origin(&self, node: u64, from: u64, max: usize, max_bytes: usize) -> anyhow::Result<Vec<Message>> {
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(match node.checked_add(1) {
            Some(next) => origin_key(next, 0).to_vec(),
            None => vec![0xff; 17],
        });
        let start = origin_key(node, from);
        let it = self.db.iterator_cf_opt(
            self.cf(CF_BY_ORIGIN),
            opts,
            IteratorMode::From(&start, rocksdb::Direction::Forward),
        );
        let (mut out, mut bytes) = (Vec::new(), 0);
        for item in it {
            let (key, value) = item?;
            let damaged = || anyhow::anyhow!("archive origin index damaged");
            let seq = u64::from_be_bytes(key.get(8..16).ok_or_else(damaged)?.try_into()?);
            let time_us = u64::from_be_bytes(value.get(..8).ok_or_else(damaged)?.try_into()?);
            let id = Id { time_us, node, seq };
            let channel = &value[8..];
            // Expired between the two reads: skipped.
            let Some(stored) = self.db.get_cf(self.cf(CF_MESSAGES), message_key(channel, &id))? else { continue };
            let message = Message::decode(id, channel, &stored)?;
            bytes += message.payload.len();
            out.push(message);
            if out.len() >= max || bytes >= max_bytes {
                break;
            }
        }
        Ok(out)
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
            let (m, t, o) = (self.cf(CF_MESSAGES), self.cf(CF_BY_TIME), self.cf(CF_BY_ORIGIN));
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
                batch.delete_cf(o, origin_key(id.node, id.seq));
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
            let id = Id::from_bytes(&key[prefix..]).ok_or_else(|| anyhow::anyhow!("archive key damaged"))?;
            if visit(Message::decode(id, channel, &value)?).is_break() {
                break;
            }
        }
        Ok(())
    }
}
