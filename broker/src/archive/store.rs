//! The archive on disk: a RocksDB database of its own beside the Raft store
//! (`<data_dir>/archive`), never in the graph's log.
//!
//! Messages are stored in chunks: the messages of one writer batch with the
//! same channel and publishing node, one LZ4-compressed RocksDB value (at most a minute and
//! 256 KiB of them). A key per message cost three memtable inserts each and held the
//! writer to half a million messages a second; a chunk costs three per
//! batch. Four column families:
//!
//! - `messages`: channel (length first) | first message's id → the chunk. A
//!   replay of one channel is one range scan.
//! - `by_time`: first message's id → newest time, size, count, channel.
//!   Retention takes the oldest chunks through it, whatever their channel.
//! - `by_origin`: node | first seq → last seq, first time, the first seq of
//!   the node's messages in the same write, count, size, channel. The copies
//!   to other nodes and followers read each publishing node's messages in
//!   order through it. The chunks of one write interleave (one channel's
//!   messages are 1, 3, 5, another's 2, 4, 6); those of two writes do not.
//! - `meta`: the totals (bytes, messages) and, per publishing node, the next
//!   sequence number held (`mark`), written in the same batch as the chunks.
//!
//! Numbers are big-endian, so keys sort as (time, node, seq).

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::{Buf, BufMut, Bytes};
use hpfriends_graph::{Position, UserId};
use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, Options, ReadOptions, WriteBatch, WriteOptions, DB};

const CF_MESSAGES: &str = "messages";
const CF_BY_TIME: &str = "by_time";
const CF_BY_ORIGIN: &str = "by_origin";
const CF_META: &str = "meta";
const META_BYTES: &[u8] = b"bytes";
const META_MESSAGES: &[u8] = b"messages";
/// Followed by the node id: the mark of that node's messages.
const META_MARK: &[u8] = b"mark/";
/// Bytes of memtables, all column families together.
const MEMTABLES: usize = 32 * 1024 * 1024;
/// The longest time one chunk spans: a replay from a time starts this much
/// earlier in the channel's keys.
const CHUNK_SPAN_US: u64 = 60_000_000;
/// A chunk is cut once its messages pass this many bytes (retention and
/// reads work in whole chunks).
const CHUNK_BYTES: u64 = 256 * 1024;
/// What a message costs besides its ident and payload (its fixed fields), and
/// a chunk besides its messages (its keys and index entries).
const RECORD_OVERHEAD: u64 = 8 + 8 + 8 + 4 + 8 + 1 + 4;
const CHUNK_OVERHEAD: u64 = 3 * 24 + 64;
/// A chunk's messages before compression, at most: a chunk is cut past
/// CHUNK_BYTES, and its last message may be the largest PUBLISH allowed.
const MAX_CHUNK_RECORDS: usize = CHUNK_BYTES as usize + 64 * 1024 * 1024 + 1024;

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
}

/// Where a page stopped: a chunk and how many of its messages were looked at.
/// The API's opaque cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    chunk: Id,
    taken: u32,
}

impl Cursor {
    pub fn encode(&self) -> String {
        let mut b = self.chunk.bytes().to_vec();
        b.extend_from_slice(&self.taken.to_be_bytes());
        hex::encode(b)
    }

    pub fn decode(text: &str) -> Option<Cursor> {
        let b = hex::decode(text).ok()?;
        (b.len() == 28).then_some(())?;
        Some(Cursor { chunk: Id::from_bytes(&b[..24])?, taken: u32::from_be_bytes(b[24..].try_into().ok()?) })
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
    pub ident: Bytes,
    pub channel: Bytes,
    pub payload: Bytes,
}

/// What a chunk is written from: an archived message, or a publish stamped
/// by the writer (its fields are parts of the received frame, not copies).
pub trait Record {
    fn id(&self) -> Id;
    fn owner(&self) -> UserId;
    fn position(&self) -> Position;
    fn ident(&self) -> &[u8];
    fn channel(&self) -> &[u8];
    fn payload(&self) -> &[u8];

    /// What it counts for in `archive_max_bytes`.
    fn size(&self) -> u64 {
        RECORD_OVERHEAD + self.ident().len() as u64 + self.payload().len() as u64
    }

    fn put(&self, out: &mut Vec<u8>) {
        let id = self.id();
        out.put_u64(id.time_us);
        out.put_u64(id.node);
        out.put_u64(id.seq);
        out.put_u32(self.owner());
        out.put_u64(self.position());
        out.put_u8(self.ident().len() as u8);
        out.put_slice(self.ident());
        out.put_u32(self.payload().len() as u32);
        out.put_slice(self.payload());
    }
}

impl Record for Message {
    fn id(&self) -> Id {
        self.id
    }
    fn owner(&self) -> UserId {
        self.owner
    }
    fn position(&self) -> Position {
        self.position
    }
    fn ident(&self) -> &[u8] {
        &self.ident
    }
    fn channel(&self) -> &[u8] {
        &self.channel
    }
    fn payload(&self) -> &[u8] {
        &self.payload
    }
}

/// A chunk's value: its messages, LZ4-compressed here rather than by
/// RocksDB, so the WAL, its checksums, the memtable and compactions handle
/// the compressed bytes (they cost the writer thread most of its time).
///
/// The first byte says which: `LZ4`, or `RAW` when compressing saved less
/// than a quarter (payloads that are already compressed or encrypted); a
/// channel whose chunk did not compress is not tried again for the next
/// RAW_RUN chunks, which saves the writer the attempt.
///
/// `raw` is the tag `RAW` followed by the records: kept as it is when it is
/// not worth compressing (no copy).
fn compress(raw: Vec<u8>, try_lz4: bool) -> Vec<u8> {
    let records = &raw[1..];
    if try_lz4 {
        let mut out = vec![LZ4];
        out.extend_from_slice(&lz4_flex::block::compress_prepend_size(records));
        if out.len() < records.len() - records.len() / 4 {
            return out;
        }
    }
    raw
}

const RAW: u8 = 0;
const LZ4: u8 = 1;
/// Chunks of a channel stored without trying to compress them after one that did not compress.
const RAW_RUN: u32 = 16;

/// The messages of a chunk, decoded one by one from its stored value.
fn records(channel: Bytes, stored: &[u8]) -> anyhow::Result<impl Iterator<Item = anyhow::Result<Message>>> {
    let damaged = || anyhow::anyhow!("archive chunk damaged");
    let mut value = match stored.split_first() {
        Some((&RAW, records)) => Bytes::copy_from_slice(records),
        Some((&LZ4, compressed)) => {
            let (size, _) = lz4_flex::block::uncompressed_size(compressed).map_err(|_| damaged())?;
            // Its own data, but a damaged length must not ask for gigabytes.
            if size > MAX_CHUNK_RECORDS {
                return Err(damaged());
            }
            Bytes::from(lz4_flex::block::decompress_size_prepended(compressed).map_err(|_| damaged())?)
        }
        _ => return Err(damaged()),
    };
    Ok(std::iter::from_fn(move || {
        if value.is_empty() {
            return None;
        }
        let damaged = || anyhow::anyhow!("archive chunk damaged");
        if value.len() < 37 {
            value.clear();
            return Some(Err(damaged()));
        }
        let id = Id { time_us: value.get_u64(), node: value.get_u64(), seq: value.get_u64() };
        let (owner, position) = (value.get_u32(), value.get_u64());
        let ident_len = value.get_u8() as usize;
        if value.len() < ident_len + 4 {
            value.clear();
            return Some(Err(damaged()));
        }
        let ident = value.split_to(ident_len);
        let payload_len = value.get_u32() as usize;
        if value.len() < payload_len {
            value.clear();
            return Some(Err(damaged()));
        }
        let payload = value.split_to(payload_len);
        Some(Ok(Message { id, owner, position, ident, channel: channel.clone(), payload }))
    }))
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

/// Messages of one channel and publishing node in a write.
type Group<'a, R> = ((&'a [u8], u64), Vec<&'a R>);

/// Fixed bytes of a `by_origin` value, before the channel.
const ORIGIN_FIXED: usize = 8 + 8 + 8 + 4 + 8;

/// One `by_origin` entry.
struct OriginChunk {
    first_seq: u64,
    last_seq: u64,
    time_us: u64,
    /// The first number of the node's messages in the write that made it.
    write_first: u64,
    count: u32,
    bytes: u64,
    channel: Bytes,
}

impl OriginChunk {
    fn decode(key: &[u8], value: &[u8]) -> anyhow::Result<OriginChunk> {
        let damaged = || anyhow::anyhow!("archive origin index damaged");
        let n = |b: &[u8], at: usize| -> anyhow::Result<u64> {
            Ok(u64::from_be_bytes(b.get(at..at + 8).ok_or_else(damaged)?.try_into()?))
        };
        if value.len() < ORIGIN_FIXED {
            return Err(damaged());
        }
        Ok(OriginChunk {
            first_seq: n(key, 8)?,
            last_seq: n(value, 0)?,
            time_us: n(value, 8)?,
            write_first: n(value, 16)?,
            count: u32::from_be_bytes(value[24..28].try_into()?),
            bytes: n(value, 28)?,
            channel: Bytes::copy_from_slice(&value[ORIGIN_FIXED..]),
        })
    }
}

/// Messages read in the order of their numbers, and the number to read on from.
#[derive(Debug, Default)]
pub struct Scanned {
    pub messages: Vec<Message>,
    pub next: u64,
}

/// A chunk as the origin index tells of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkSummary {
    pub time_us: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub count: u32,
    /// What it counts for in `archive_max_bytes`.
    pub bytes: u64,
}

pub struct Store {
    db: DB,
    bytes: AtomicU64,
    messages: AtomicU64,
    /// Per publishing node, the next sequence number not held: below it,
    /// everything is held or expired. Only the writer thread moves it.
    marks: Mutex<HashMap<u64, u64>>,
    /// No chunk's `by_time` key is below it: expiry and `oldest` seek here
    /// rather than step over the tombstones of what expired before.
    floor: Mutex<Id>,
    /// Per channel, chunks still to be stored without trying LZ4 (`compress`).
    raw_runs: Mutex<HashMap<Vec<u8>, u32>>,
}

/// Whether files in `dir` can be opened with O_DIRECT.
fn takes_direct_io(dir: &Path) -> bool {
    use rustix::fs::{Mode, OFlags};
    if std::fs::create_dir_all(dir).is_err() {
        return false;
    }
    let probe = dir.join("direct-io-probe");
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::DIRECT;
    let takes = rustix::fs::open(&probe, flags, Mode::from_raw_mode(0o600)).is_ok();
    let _ = std::fs::remove_file(&probe);
    if !takes {
        tracing::info!("archive: {} does not take O_DIRECT; flushes go through the page cache", dir.display());
    }
    takes
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
        // The small families' memtables would otherwise keep every WAL file
        // alive until they fill: a gigabyte of WAL for a few of data.
        opts.set_max_total_wal_size(2 * MEMTABLES as u64);
        // Flushes write each byte once more; through the page cache that copy
        // cost the node a seventh of its CPU. Not every file system takes
        // O_DIRECT: asked of this one first.
        opts.set_use_direct_io_for_flush_and_compaction(takes_direct_io(dir));
        let cfs = [CF_MESSAGES, CF_BY_TIME, CF_BY_ORIGIN, CF_META].map(|n| {
            let mut o = Options::default();
            // Chunks come compressed (`compress`).
            o.set_compression_type(if n == CF_MESSAGES {
                rocksdb::DBCompressionType::None
            } else {
                rocksdb::DBCompressionType::Lz4
            });
            o.set_write_buffer_size(if n == CF_MESSAGES { MEMTABLES / 2 } else { MEMTABLES / 8 });
            if n == CF_MESSAGES {
                // Chunks go to blob files when flushed: compactions move their keys, not them.
                o.set_enable_blob_files(true);
                o.set_min_blob_size(0);
            }
            o.set_max_write_buffer_number(2);
            ColumnFamilyDescriptor::new(n, o)
        });
        let db = DB::open_cf_descriptors(&opts, dir, cfs)
            .map_err(|e| anyhow::anyhow!("cannot open the archive in {}: {e}", dir.display()))?;
        let bytes = read_u64(&db, META_BYTES)?;
        let messages = read_u64(&db, META_MESSAGES)?;
        let mut marks = HashMap::new();
        let meta = db.cf_handle(CF_META).expect("opened with it");
        for item in db.iterator_cf(meta, IteratorMode::From(META_MARK, Direction::Forward)) {
            let (key, value) = item?;
            let Some(node) = key.strip_prefix(META_MARK) else { break };
            let damaged = || anyhow::anyhow!("archive meta damaged");
            let node = u64::from_be_bytes(node.try_into().map_err(|_| damaged())?);
            marks.insert(node, u64::from_be_bytes(value.as_ref().try_into().map_err(|_| damaged())?));
        }
        let floor = Mutex::new(Id { time_us: 0, node: 0, seq: 0 });
        Ok(Store {
            db,
            bytes: bytes.into(),
            messages: messages.into(),
            marks: Mutex::new(marks),
            floor,
            raw_runs: Mutex::default(),
        })
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }

    /// How far this archive holds each publishing node's messages.
    pub fn marks(&self) -> HashMap<u64, u64> {
        self.marks.lock().expect("archive marks lock poisoned").clone()
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(name).expect("opened with it")
    }

    /// Writes the messages as chunks, with the new totals and marks, in one
    /// batch (not synced: an archive that loses its last moments in a power
    /// cut still has the rest, and the other nodes' copies). Each node's
    /// messages come in the order of their numbers, at or past its mark (the
    /// writer sees to it).
    pub fn append<R: Record>(&self, messages: &[R]) -> anyhow::Result<()> {
        // By channel and node. A batch holds few of them, mostly in runs:
        // the last group is tried first, then the others one by one.
        let mut groups: Vec<Group<R>> = Vec::new();
        // Per node, the first number of this write: where a reader from inside it starts.
        let mut write_first: Vec<(u64, u64)> = Vec::new();
        for msg in messages {
            let (id, channel) = (msg.id(), msg.channel());
            let same = |((c, n), _): &&mut Group<R>| *n == id.node && *c == channel;
            match groups.last_mut().filter(same) {
                Some((_, group)) => group.push(msg),
                None => match groups.iter_mut().rev().find(same) {
                    Some((_, group)) => group.push(msg),
                    None => groups.push(((channel, id.node), vec![msg])),
                },
            }
            match write_first.iter_mut().find(|(n, _)| *n == id.node) {
                Some((_, first)) => *first = (*first).min(id.seq),
                None => write_first.push((id.node, id.seq)),
            }
        }
        let write_first = |node: u64| write_first.iter().find(|(n, _)| *n == node).map_or(0, |(_, f)| *f);
        let mut batch = WriteBatch::default();
        let (mut added, mut marks) = (0, self.marks());
        for ((channel, node), group) in &groups {
            // Cut where a chunk would span more than a minute or CHUNK_BYTES.
            let mut rest = &group[..];
            while let Some(first) = rest.first() {
                let mut filled = 0;
                let n = rest
                    .iter()
                    .take_while(|m| {
                        filled += m.size();
                        m.id().time_us.abs_diff(first.id().time_us) < CHUNK_SPAN_US
                            && (filled <= CHUNK_BYTES || filled == m.size())
                    })
                    .count();
                let (chunk, tail) = rest.split_at(n);
                rest = tail;
                let first_id = chunk.iter().map(|m| m.id().time_us).min().map(|t| Id { time_us: t, ..first.id() });
                let first_id = first_id.expect("a chunk holds messages");
                let last_seq = chunk.last().map_or(0, |m| m.id().seq);
                added += self.put_chunk(&mut batch, channel, &first_id, chunk, last_seq, write_first(*node));
                let mark = marks.entry(*node).or_default();
                *mark = (*mark).max(last_seq + 1);
            }
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

    /// Puts one chunk (messages of `channel` and `first.node`, keyed by
    /// `first`) with its `by_time` and `by_origin` entries; returns its size.
    fn put_chunk<R: Record>(
        &self,
        batch: &mut WriteBatch,
        channel: &[u8],
        first: &Id,
        messages: &[&R],
        last_seq: u64,
        write_first: u64,
    ) -> u64 {
        let mut value = Vec::with_capacity(1 + messages.iter().map(|m| m.size() as usize).sum::<usize>());
        value.push(RAW);
        let mut size = CHUNK_OVERHEAD + channel.len() as u64;
        for msg in messages {
            msg.put(&mut value);
            size += msg.size();
        }
        let try_lz4 = {
            let mut raw_runs = self.raw_runs.lock().expect("archive raw runs lock poisoned");
            match raw_runs.get_mut(channel) {
                Some(0) | None => true,
                Some(left) => {
                    *left -= 1;
                    false
                }
            }
        };
        let stored = compress(value, try_lz4);
        if try_lz4 {
            let mut raw_runs = self.raw_runs.lock().expect("archive raw runs lock poisoned");
            if stored[0] == RAW {
                // One entry per channel that carries incompressible payloads; bounded all the same.
                if raw_runs.len() >= 10_000 {
                    raw_runs.clear();
                }
                raw_runs.insert(channel.to_vec(), RAW_RUN);
            } else {
                raw_runs.remove(channel);
            }
        }
        batch.put_cf(self.cf(CF_MESSAGES), message_key(channel, first), stored);
        let newest = messages.iter().map(|m| m.id().time_us).max().unwrap_or(first.time_us);
        let mut by_time = Vec::with_capacity(20 + channel.len());
        by_time.put_u64(newest);
        by_time.put_u64(size);
        by_time.put_u32(messages.len() as u32);
        by_time.put_slice(channel);
        batch.put_cf(self.cf(CF_BY_TIME), first.bytes(), by_time);
        let mut floor = self.floor.lock().expect("archive floor lock poisoned");
        *floor = (*floor).min(*first);
        let mut by_origin = Vec::with_capacity(ORIGIN_FIXED + channel.len());
        by_origin.put_u64(last_seq);
        by_origin.put_u64(first.time_us);
        by_origin.put_u64(write_first);
        by_origin.put_u32(messages.len() as u32);
        by_origin.put_u64(size);
        by_origin.put_slice(channel);
        batch.put_cf(self.cf(CF_BY_ORIGIN), origin_key(first.node, first.seq), by_origin);
        size
    }

    fn put_totals(&self, batch: &mut WriteBatch, bytes: u64, messages: u64) {
        let meta = self.cf(CF_META);
        batch.put_cf(meta, META_BYTES, bytes.to_be_bytes());
        batch.put_cf(meta, META_MESSAGES, messages.to_be_bytes());
    }

    /// `node`'s messages of `channel` (any, if `None`) from sequence number
    /// `from` on, in order, until `max` of them or `max_bytes` of payload
    /// (whole writes: a little more), and the number to read on from.
    pub fn scan_origin(
        &self,
        node: u64,
        from: u64,
        channel: Option<&[u8]>,
        max: usize,
        max_bytes: usize,
    ) -> anyhow::Result<Scanned> {
        let (mut out, mut bytes, mut next) = (Vec::new(), 0, from);
        for chunk in self.origin_chunks(node, from)? {
            let chunk = chunk?;
            // Stop only between writes: a later chunk of this write may hold lower numbers.
            if chunk.first_seq >= next && (out.len() >= max || bytes >= max_bytes) {
                break;
            }
            next = next.max(chunk.last_seq + 1);
            if channel.is_some_and(|c| c != &chunk.channel[..]) {
                continue;
            }
            let id = Id { time_us: chunk.time_us, node, seq: chunk.first_seq };
            // Expired between the two reads: skipped.
            let Some(value) = self.db.get_cf(self.cf(CF_MESSAGES), message_key(&chunk.channel, &id))? else { continue };
            for msg in records(chunk.channel, &value)? {
                let msg = msg?;
                if msg.id.seq >= from {
                    bytes += msg.payload.len();
                    out.push(msg);
                }
            }
        }
        out.sort_by_key(|m| m.id.seq);
        Ok(Scanned { messages: out, next })
    }

    /// What `scan_origin(node, from, Some(channel), ..)` would give, by
    /// chunk, without reading a message: (first time, first seq, count, bytes).
    /// Chunks that start before `from` are counted whole.
    pub fn origin_summary(&self, node: u64, from: u64, channel: &[u8]) -> anyhow::Result<Vec<ChunkSummary>> {
        let mut out = Vec::new();
        for chunk in self.origin_chunks(node, from)? {
            let chunk = chunk?;
            if &chunk.channel[..] == channel && chunk.last_seq >= from {
                out.push(ChunkSummary {
                    time_us: chunk.time_us,
                    first_seq: chunk.first_seq,
                    last_seq: chunk.last_seq,
                    count: chunk.count,
                    bytes: chunk.bytes,
                });
            }
        }
        Ok(out)
    }

    /// `node`'s chunks in the order of their first numbers, from the first
    /// chunk of the write that holds `from`.
    fn origin_chunks(
        &self,
        node: u64,
        from: u64,
    ) -> anyhow::Result<impl Iterator<Item = anyhow::Result<OriginChunk>> + '_> {
        let o = self.cf(CF_BY_ORIGIN);
        let mut start = origin_key(node, from);
        let mut back = self.db.raw_iterator_cf(o);
        back.seek_for_prev(origin_key(node, from));
        if let (Some(key), Some(value)) = (back.key(), back.value()) {
            if key.starts_with(&node.to_be_bytes()) {
                start = origin_key(node, OriginChunk::decode(key, value)?.write_first);
            }
        }
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(match node.checked_add(1) {
            Some(next) => origin_key(next, 0).to_vec(),
            None => vec![0xff; 17],
        });
        let it = self.db.iterator_cf_opt(o, opts, IteratorMode::From(&start, Direction::Forward));
        Ok(it.map(|item| {
            let (key, value) = item?;
            OriginChunk::decode(&key, &value)
        }))
    }

    /// The oldest chunk's first id.
    pub fn oldest(&self) -> Option<Id> {
        let floor = self.floor().bytes();
        let mut it = self.db.iterator_cf(self.cf(CF_BY_TIME), IteratorMode::From(&floor, Direction::Forward));
        it.next().and_then(|r| r.ok()).and_then(|(k, _)| Id::from_bytes(&k))
    }

    fn floor(&self) -> Id {
        *self.floor.lock().expect("archive floor lock poisoned")
    }

    /// Deletes the oldest chunks while their newest message is older than
    /// `keep_from_us` or the archive holds more than `max_bytes`. Returns how
    /// many messages went.
    pub fn expire(&self, keep_from_us: u64, max_bytes: u64) -> anyhow::Result<u64> {
        const CHUNKS: usize = 1_000;
        let mut deleted = 0;
        loop {
            let (m, t, o) = (self.cf(CF_MESSAGES), self.cf(CF_BY_TIME), self.cf(CF_BY_ORIGIN));
            let mut batch = WriteBatch::default();
            let (mut bytes, mut count, mut chunks) = (self.bytes(), self.messages(), 0);
            let (floor, mut last) = (self.floor().bytes(), None);
            for item in self.db.iterator_cf(t, IteratorMode::From(&floor, Direction::Forward)) {
                let (key, value) = item?;
                let damaged = || anyhow::anyhow!("archive index damaged");
                let id = Id::from_bytes(&key).ok_or_else(damaged)?;
                let newest = u64::from_be_bytes(value.get(..8).ok_or_else(damaged)?.try_into()?);
                if (newest >= keep_from_us && bytes <= max_bytes) || chunks == CHUNKS {
                    break;
                }
                let size = u64::from_be_bytes(value.get(8..16).ok_or_else(damaged)?.try_into()?);
                let n = u32::from_be_bytes(value.get(16..20).ok_or_else(damaged)?.try_into()?) as u64;
                batch.delete_cf(t, &key);
                batch.delete_cf(m, message_key(&value[20..], &id));
                batch.delete_cf(o, origin_key(id.node, id.seq));
                bytes = bytes.saturating_sub(size);
                count = count.saturating_sub(n);
                deleted += n;
                chunks += 1;
                last = Some(id);
            }
            let Some(last) = last else { return Ok(deleted) };
            self.put_totals(&mut batch, bytes, count);
            self.db.write(batch)?;
            // Only this thread writes chunks: none came below `last` meanwhile.
            *self.floor.lock().expect("archive floor lock poisoned") = last;
            self.bytes.store(bytes, Ordering::Relaxed);
            self.messages.store(count, Ordering::Relaxed);
            if chunks < CHUNKS {
                return Ok(deleted);
            }
        }
    }

    /// Deletes the messages of `channel` published from `since_us` to
    /// `until_us` that `kept` refuses, rewriting the chunks that hold them
    /// (whole chunks go when nothing is left). Returns how many went.
    pub fn purge(
        &self,
        channel: &[u8],
        since_us: u64,
        until_us: u64,
        kept: impl Fn(&Message) -> bool,
    ) -> anyhow::Result<u64> {
        let (m, t, o) = (self.cf(CF_MESSAGES), self.cf(CF_BY_TIME), self.cf(CF_BY_ORIGIN));
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(message_key(channel, &Id { time_us: until_us, node: 0, seq: 0 }));
        let start = message_key(channel, &Id { time_us: since_us.saturating_sub(CHUNK_SPAN_US), node: 0, seq: 0 });
        let prefix = 1 + channel.len();
        let shared = Bytes::copy_from_slice(channel);
        let mut batch = WriteBatch::default();
        let (mut bytes, mut count, mut gone) = (self.bytes(), self.messages(), 0);
        for item in self.db.iterator_cf_opt(m, opts, IteratorMode::From(&start, Direction::Forward)) {
            let (key, value) = item?;
            let first = Id::from_bytes(&key[prefix..]).ok_or_else(|| anyhow::anyhow!("archive key damaged"))?;
            let all: Vec<Message> = records(shared.clone(), &value)?.collect::<anyhow::Result<_>>()?;
            let left: Vec<&Message> = all.iter().filter(|msg| kept(msg)).collect();
            if left.len() == all.len() {
                continue;
            }
            let removed: u64 = all.iter().filter(|msg| !kept(msg)).map(|msg| msg.size()).sum();
            bytes = bytes.saturating_sub(removed);
            count = count.saturating_sub((all.len() - left.len()) as u64);
            gone += (all.len() - left.len()) as u64;
            if left.is_empty() {
                batch.delete_cf(m, &key);
                batch.delete_cf(t, first.bytes());
                batch.delete_cf(o, origin_key(first.node, first.seq));
                bytes = bytes.saturating_sub(CHUNK_OVERHEAD + channel.len() as u64);
                continue;
            }
            // Same keys and numbers; the indexes' counts and sizes follow what is left.
            let ok = origin_key(first.node, first.seq);
            let (last_seq, write_first) = match self.db.get_cf(o, ok)? {
                Some(old) => OriginChunk::decode(&ok, &old).map(|c| (c.last_seq, c.write_first))?,
                None => (left.last().map_or(first.seq, |msg| msg.id.seq), first.seq),
            };
            self.put_chunk(&mut batch, channel, &first, &left, last_seq, write_first);
        }
        if gone > 0 {
            self.put_totals(&mut batch, bytes, count);
            self.db.write(batch)?;
            self.bytes.store(bytes, Ordering::Relaxed);
            self.messages.store(count, Ordering::Relaxed);
        }
        Ok(gone)
    }

    /// Visits the messages of `channel` from `since_us` to `until_us`
    /// (exclusive), chunk by chunk in the order of their first message, each
    /// chunk's in order, starting after `after` when given, until `visit`
    /// breaks. `visit` is given each message and the cursor just past it.
    pub fn scan(
        &self,
        channel: &[u8],
        since_us: u64,
        until_us: u64,
        after: Option<Cursor>,
        mut visit: impl FnMut(Message, Cursor) -> ControlFlow<()>,
    ) -> anyhow::Result<()> {
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(message_key(channel, &Id { time_us: until_us, node: 0, seq: 0 }));
        let from = match after {
            Some(c) => c.chunk,
            None => Id { time_us: since_us.saturating_sub(CHUNK_SPAN_US), node: 0, seq: 0 },
        };
        let start = message_key(channel, &from);
        let it = self.db.iterator_cf_opt(self.cf(CF_MESSAGES), opts, IteratorMode::From(&start, Direction::Forward));
        let prefix = 1 + channel.len();
        let channel = Bytes::copy_from_slice(channel);
        for item in it {
            let (key, value) = item?;
            let chunk = Id::from_bytes(&key[prefix..]).ok_or_else(|| anyhow::anyhow!("archive key damaged"))?;
            let skip = after.filter(|c| c.chunk == chunk).map_or(0, |c| c.taken as usize);
            for (i, msg) in records(channel.clone(), &value)?.enumerate().skip(skip) {
                let msg = msg?;
                let cursor = Cursor { chunk, taken: i as u32 + 1 };
                if msg.id.time_us < since_us || msg.id.time_us >= until_us {
                    continue;
                }
                if visit(msg, cursor).is_break() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(node: u64, seq: u64, channel: &'static str) -> Message {
        Message {
            id: Id { time_us: 1_000 + seq, node, seq },
            owner: 1,
            position: 0,
            ident: Bytes::from_static(b"i"),
            channel: Bytes::from_static(channel.as_bytes()),
            payload: Bytes::from(format!("{channel}{seq}")),
        }
    }

    /// Every seq `scan_origin` gives from 0 on, a page of `max` at a time.
    fn read_all(store: &Store, channel: Option<&[u8]>, max: usize) -> Vec<u64> {
        let (mut from, mut got) = (0, Vec::new());
        loop {
            let s = store.scan_origin(2, from, channel, max, usize::MAX).unwrap();
            got.extend(s.messages.iter().map(|m| m.id.seq));
            if s.next == from {
                return got;
            }
            from = s.next;
        }
    }

    #[test]
    fn given_writes_whose_channels_interleave_then_reading_a_node_in_pages_gives_each_message_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // Two writes; in each, channels a and b take turns (their chunks overlap).
        let channels = ["a", "b", "a", "a", "b", "b", "a", "b"];
        let first: Vec<Message> = (0..8).map(|s| message(2, s, channels[s as usize])).collect();
        let second: Vec<Message> = (8..16).map(|s| message(2, s, channels[(s - 8) as usize])).collect();
        store.append(&first).unwrap();
        store.append(&second).unwrap();
        for max in [1, 2, 3, 100] {
            assert_eq!(read_all(&store, None, max), (0..16).collect::<Vec<_>>(), "pages of {max}");
            let b: Vec<u64> = (0..16).filter(|s| channels[(s % 8) as usize] == "b").collect();
            assert_eq!(read_all(&store, Some(b"b"), max), b, "channel b in pages of {max}");
        }
        // From inside a write: what is at or past the number, nothing before it.
        let s = store.scan_origin(2, 3, None, 100, usize::MAX).unwrap();
        assert_eq!(s.messages.iter().map(|m| m.id.seq).collect::<Vec<_>>(), (3..16).collect::<Vec<_>>());
        let summary = store.origin_summary(2, 9, b"a").unwrap();
        assert_eq!(summary.iter().map(|c| (c.first_seq, c.last_seq, c.count)).collect::<Vec<_>>(), [(8, 14, 4)]);
    }

    #[test]
    fn given_chunks_expired_then_a_copy_older_than_them_is_still_seen_and_expired() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.append(&(0..10).map(|s| message(2, s, "a")).collect::<Vec<_>>()).unwrap();
        store.append(&(10..20).map(|s| message(2, s, "a")).collect::<Vec<_>>()).unwrap();
        // The first chunk (times 1000..1009) goes; expiry starts past it from now on.
        assert_eq!(store.expire(1_010, u64::MAX).unwrap(), 10);
        assert_eq!(store.oldest().map(|id| id.seq), Some(10));
        // A late copy from another node, published before all of them.
        let mut late = message(3, 0, "b");
        late.id.time_us = 5;
        store.append(&[late]).unwrap();
        assert_eq!(store.oldest().map(|id| (id.node, id.time_us)), Some((3, 5)));
        assert_eq!(store.expire(1_010, u64::MAX).unwrap(), 1, "the late copy is as old as what expired");
        assert_eq!(store.oldest().map(|id| id.seq), Some(10));
    }

    #[test]
    fn given_a_damaged_chunk_then_reading_it_is_an_error_not_an_allocation() {
        // A length prefix of 2 GiB: refused before anything is allocated.
        let stored = [LZ4, 0xff, 0xff, 0xff, 0x7f, 0, 0];
        assert!(records(Bytes::from_static(b"a"), &stored).is_err());
        // A length that fits but bytes that are not LZ4.
        let mut stored = vec![LZ4];
        stored.extend_from_slice(&100u32.to_le_bytes());
        stored.extend_from_slice(&[0xf0; 8]);
        assert!(records(Bytes::from_static(b"a"), &stored).is_err());
        // Neither kind, or nothing at all.
        assert!(records(Bytes::from_static(b"a"), &[7, 1, 2]).is_err());
        assert!(records(Bytes::from_static(b"a"), &[]).is_err());
    }

    #[test]
    fn given_payloads_that_do_not_compress_then_chunks_are_stored_raw_and_read_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // Pseudo-random payloads (xorshift), then text that compresses.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut noise = |n: usize| -> Bytes {
            (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect::<Vec<u8>>()
                .into()
        };
        let mut sent = Vec::new();
        for write in 0..3u64 {
            let batch: Vec<Message> = (0..50)
                .map(|i| {
                    let mut m = message(2, write * 50 + i, "r");
                    m.payload = if write < 2 { noise(300) } else { Bytes::from(vec![b'a'; 300]) };
                    m
                })
                .collect();
            store.append(&batch).unwrap();
            sent.extend(batch);
        }
        let kinds: Vec<u8> =
            store.db.iterator_cf(store.cf(CF_MESSAGES), IteratorMode::Start).map(|item| item.unwrap().1[0]).collect();
        // The first did not compress; the next RAW_RUN are stored raw untried, even the third, which would compress.
        assert_eq!(kinds, [RAW, RAW, RAW]);
        let read = store.scan_origin(2, 0, None, 1_000, usize::MAX).unwrap().messages;
        assert_eq!(read, sent);
        // A channel whose payloads compress is stored compressed.
        store.append(&(0..50).map(|s| message(3, s, "t")).collect::<Vec<_>>()).unwrap();
        let last = store.db.iterator_cf(store.cf(CF_MESSAGES), IteratorMode::End).next().unwrap().unwrap();
        assert_eq!(last.1[0], LZ4);
    }

    #[test]
    fn given_a_data_dir_then_o_direct_is_probed_there_and_the_probe_removed() {
        let here = tempfile::tempdir().unwrap();
        assert!(takes_direct_io(here.path()), "the disk the tests run on takes O_DIRECT");
        assert!(!here.path().join("direct-io-probe").exists(), "the probe is removed");
        // A directory that cannot be made: no O_DIRECT, and opening it is the error to report.
        let file = here.path().join("a-file");
        std::fs::write(&file, b"").unwrap();
        assert!(!takes_direct_io(&file.join("archive")));
    }
}
