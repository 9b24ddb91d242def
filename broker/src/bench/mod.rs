//! `hpfriends bench`: a load generator for hpfeeds servers (and nats-server,
//! for comparison), and `hpfriends bench relay`, the raw forwarder that shows
//! this machine's ceiling for the framing.
//!
//! Every payload starts with a stamp (publisher, sequence, send time), so the
//! subscribers measure loss, order and latency themselves.

mod fleet;
mod relay;
mod wire;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use fleet::{fleet, process_usage, FleetArgs, FleetReport};
pub use relay::RelayArgs;
use wire::Login;
pub use wire::Protocol;

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: Option<BenchCmd>,
    #[command(flatten)]
    pub load: LoadArgs,
}

#[derive(clap::Subcommand, Debug)]
pub enum BenchCmd {
    /// A minimal hpfeeds forwarder (no auth, no checks): the ceiling to compare with.
    Relay(RelayArgs),
    /// A honeypot network: thousands of sensors, each its own connection and key, publishing now and then.
    Fleet(FleetArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// Server addresses (comma-separated); connections are spread round-robin.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:10000")]
    pub addr: Vec<SocketAddr>,
    /// Subscribers connect here instead of --addr (e.g. another cluster node).
    #[arg(long, value_delimiter = ',')]
    pub sub_addr: Vec<SocketAddr>,
    #[arg(long, value_enum, default_value_t = Protocol::Hpfeeds)]
    pub protocol: Protocol,
    #[arg(long, short = 'p', default_value_t = 1)]
    pub publishers: usize,
    #[arg(long, short = 's', default_value_t = 1)]
    pub subscribers: usize,
    #[arg(long, default_value = "bench-pub")]
    pub pub_ident: String,
    #[arg(long, default_value = "bench-pub")]
    pub pub_secret: String,
    #[arg(long, default_value = "bench-sub")]
    pub sub_ident: String,
    #[arg(long, default_value = "bench-sub")]
    pub sub_secret: String,
    /// Subscribers log in with N keys (of different users): subscriber i as
    /// `<sub-ident>-<i mod N>`, secret `<sub-secret>-<i mod N>`. 0: all as --sub-ident.
    #[arg(long, default_value_t = 0)]
    pub sub_keys: usize,
    /// Channel (NATS: subject) everyone publishes and subscribes on.
    #[arg(long, default_value = "bench")]
    pub channel: String,
    /// Payload bytes per message (at least the 21-byte stamp).
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Random bytes after each stamp (compression gains nothing) instead of
    /// zeros.
    #[arg(long)]
    pub random_payload: bool,
    /// A cowrie-like JSON event (at least 256 bytes) with the stamp in its
    /// `stamp` member, for shares with filters (docs/sharing.md, "Filters").
    #[arg(long, conflicts_with = "random_payload")]
    pub json_payload: bool,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Fixed total rate in messages per second (for latency).
    #[arg(long, conflicts_with = "window")]
    pub rate: Option<u64>,
    /// Closed loop: at most W messages published and not yet delivered to
    /// every subscriber (lossless capacity). Without --rate or --window:
    /// open loop at full speed.
    #[arg(long)]
    pub window: Option<u64>,
    /// Seconds to wait for messages still in flight after publishing stops.
    #[arg(long, default_value_t = 2.0)]
    pub settle: f64,
    /// One JSON line instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        Some(BenchCmd::Relay(r)) => relay::run(r).await,
        Some(BenchCmd::Fleet(f)) => fleet::run(f).await,
        None => {
            let report = load(&args.load).await?;
            if args.load.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{}", report.table());
            }
            Ok(())
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Open,
    Rate(u64),
    Window(u64),
}

impl LoadArgs {
    fn mode(&self) -> Mode {
        match (self.rate, self.window) {
            (Some(r), _) => Mode::Rate(r),
            (None, Some(w)) => Mode::Window(w),
            (None, None) => Mode::Open,
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.publishers > 0 && self.subscribers > 0,
            "--publishers and --subscribers must be at least 1"
        );
        anyhow::ensure!(self.size >= STAMP_LEN, "--size must be at least {STAMP_LEN} bytes (the stamp)");
        anyhow::ensure!(
            !self.json_payload || self.size >= JSON_EVENT.len() + 2,
            "--size must be at least {} bytes with --json-payload (the event)",
            JSON_EVENT.len() + 2
        );
        anyhow::ensure!(!self.addr.is_empty(), "--addr needs at least one address");
        anyhow::ensure!(
            self.duration > 0.0 && self.settle >= 0.0,
            "--duration must be positive, --settle not negative"
        );
        anyhow::ensure!(self.rate != Some(0) && self.window != Some(0), "--rate and --window must be at least 1");
        Ok(())
    }
}

/// Payload prefix: kind (0 data, 1 probe), publisher, sequence, send time in
/// ns since the bench started.
const STAMP_LEN: usize = 21;

/// `--json-payload`: the stamp in hex at `JSON_STAMP_AT`, then `pad` up to the size.
const JSON_EVENT: &str = concat!(
    r#"{"stamp":"000000000000000000000000000000000000000000","eventid":"cowrie.login.success","#,
    r#""src_ip":"198.51.100.7","src_port":51234,"dst_ip":"10.0.0.2","dst_port":22,"session":"a1b2c3d4e5f6","#,
    r#""username":"root","password":"123456","protocol":"ssh","sensor":"hp-eu-1","pad":""#
);
const JSON_STAMP_AT: usize = 10;

struct Stamp {
    probe: bool,
    publisher: u32,
    seq: u64,
    sent_ns: u64,
}

impl Stamp {
    fn write(&self, p: &mut [u8]) {
        p[0] = self.probe as u8;
        p[1..5].copy_from_slice(&self.publisher.to_be_bytes());
        p[5..13].copy_from_slice(&self.seq.to_be_bytes());
        p[13..21].copy_from_slice(&self.sent_ns.to_be_bytes());
    }

    /// In a `--json-payload` event: the hex stamp of its `stamp` member,
    /// wherever a filter's rewriting put it.
    fn write_json(&self, p: &mut [u8]) {
        let mut raw = [0u8; STAMP_LEN];
        self.write(&mut raw);
        p[JSON_STAMP_AT..JSON_STAMP_AT + 2 * STAMP_LEN].copy_from_slice(hex::encode(raw).as_bytes());
    }

    fn read(p: &[u8]) -> Option<Stamp> {
        if p.first() == Some(&b'{') {
            const KEY: &[u8] = b"\"stamp\":\"";
            let at = memchr::memmem::find(p, KEY)? + KEY.len();
            let raw = hex::decode(p.get(at..at + 2 * STAMP_LEN)?).ok()?;
            return Stamp::read(&raw);
        }
        let p = p.get(..STAMP_LEN)?;
        Some(Stamp {
            probe: p[0] == 1,
            publisher: u32::from_be_bytes(p[1..5].try_into().ok()?),
            seq: u64::from_be_bytes(p[5..13].try_into().ok()?),
            sent_ns: u64::from_be_bytes(p[13..21].try_into().ok()?),
        })
    }
}

/// State the tasks share while the run goes on.
struct Shared {
    epoch: Instant,
    published: AtomicU64,
    subscribers: Vec<SubscriberState>,
    /// Subscribers made progress: wakes closed-loop publishers.
    progress: Notify,
}

struct SubscriberState {
    received: AtomicU64,
    closed: AtomicBool,
    /// A probe from publisher j arrived: the subscription is live on its node.
    probed: Vec<AtomicBool>,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Published and not yet delivered to every subscriber still connected.
    fn in_flight(&self) -> u64 {
        let delivered = self
            .subscribers
            .iter()
            .filter(|s| !s.closed.load(Ordering::Acquire))
            .map(|s| s.received.load(Ordering::Acquire))
            .min();
        match delivered {
            Some(d) => self.published.load(Ordering::Acquire).saturating_sub(d),
            None => 0, // nobody left to wait for
        }
    }

    fn delivered(&self) -> u64 {
        self.subscribers.iter().map(|s| s.received.load(Ordering::Acquire)).sum()
    }

    fn all_probed(&self) -> bool {
        self.subscribers.iter().all(|s| s.probed.iter().all(|p| p.load(Ordering::Acquire)))
    }
}

/// Payload bytes a publisher at full speed writes per syscall (one frame at
/// least), as a buffering client does: 64 KiB is also what the broker reads at once.
const PUBLISH_BATCH_BYTES: usize = 64 * 1024;
/// How long subscriptions may take to become live everywhere.
const SETUP_TIMEOUT: Duration = Duration::from_secs(15);

/// One run against a server; what `hpfriends bench` prints.
pub async fn load(args: &LoadArgs) -> anyhow::Result<Report> {
    args.check()?;
    let mode = args.mode();
    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        published: AtomicU64::new(0),
        subscribers: (0..args.subscribers)
            .map(|_| SubscriberState {
                received: AtomicU64::new(0),
                closed: AtomicBool::new(false),
                probed: (0..args.publishers).map(|_| AtomicBool::new(false)).collect(),
            })
            .collect(),
        progress: Notify::new(),
    });
    let sub_addrs = if args.sub_addr.is_empty() { &args.addr } else { &args.sub_addr };
    let sub_login = |i: usize| match args.sub_keys {
        0 => Login { ident: args.sub_ident.clone(), secret: args.sub_secret.clone(), channel: args.channel.clone() },
        n => Login {
            ident: format!("{}-{}", args.sub_ident, i % n),
            secret: format!("{}-{}", args.sub_secret, i % n),
            channel: args.channel.clone(),
        },
    };
    let pub_login =
        Login { ident: args.pub_ident.clone(), secret: args.pub_secret.clone(), channel: args.channel.clone() };

    let stop_subscribers = CancellationToken::new();
    let mut subscribers = Vec::new();
    for i in 0..args.subscribers {
        let addr = sub_addrs[i % sub_addrs.len()];
        let (reader, mut writer) = wire::connect(args.protocol, addr, &sub_login(i)).await?;
        writer.subscribe();
        writer.flush().await?;
        subscribers.push(tokio::spawn(subscribe(i, reader, writer, shared.clone(), stop_subscribers.clone())));
    }
    let mut writers = Vec::new();
    let mut publisher_errors = Vec::new();
    for j in 0..args.publishers {
        let addr = args.addr[j % args.addr.len()];
        let (mut reader, writer) = wire::connect(args.protocol, addr, &pub_login).await?;
        // A publisher reads only to see why the server closed it.
        publisher_errors.push(tokio::spawn(async move {
            let (mut pings, mut delivered) = (0, false);
            loop {
                let more = match reader.fill().await {
                    Ok(more) => more,
                    Err(e) => return format!("{e:#}"),
                };
                match reader.drain(&mut pings, |_| delivered = true) {
                    _ if delivered => return "unexpected delivery to a publisher".to_string(),
                    Ok(Some(text)) => return text,
                    Err(e) => return format!("{e:#}"),
                    Ok(None) if !more => return CLOSED_BY_SERVER.to_string(),
                    Ok(None) => {}
                }
            }
        }));
        writers.push(writer);
    }

    // Probe until every subscriber hears every publisher.
    let setup_started = Instant::now();
    // Probes need the payload's shape only, not the random bytes.
    let probe_payloads = Payloads { size: args.size, random: Vec::new(), json: args.json_payload };
    let mut payload = probe_payloads.blank();
    while !shared.all_probed() {
        for (s, state) in shared.subscribers.iter().enumerate() {
            if state.closed.load(Ordering::Acquire) {
                let why = (&mut subscribers[s]).await?.closed.unwrap_or_default();
                bail!("subscriber {s} was closed before the run: {why}");
            }
        }
        for (j, p) in publisher_errors.iter_mut().enumerate() {
            if p.is_finished() {
                bail!("publisher {j} was closed before the run: {}", p.await?);
            }
        }
        if setup_started.elapsed() > SETUP_TIMEOUT {
            bail!(
                "subscriptions did not become live within {SETUP_TIMEOUT:?}: no probe arrived \
                 (check the idents, secrets and that the subscriber may read the publisher)"
            );
        }
        for (j, w) in writers.iter_mut().enumerate() {
            probe_payloads.stamp(Stamp { probe: true, publisher: j as u32, seq: 0, sent_ns: 0 }, &mut payload);
            w.publish(&payload);
            w.flush().await?;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let duration = Duration::from_secs_f64(args.duration);
    let started = Instant::now();
    let deadline = started + duration;
    let progress = tokio::spawn(progress_lines(shared.clone(), started));
    let publishers: Vec<_> = writers
        .into_iter()
        .enumerate()
        .map(|(j, w)| tokio::spawn(publish(j, args.publishers, w, payloads(args), mode, deadline, shared.clone())))
        .collect();
    for p in publishers {
        p.await?.with_context(|| "a publisher failed")?;
    }
    let elapsed = started.elapsed();
    let delivered_in_time = shared.delivered();
    progress.abort();

    // Let what is in flight arrive, then stop the subscribers.
    let settle_until = Instant::now() + Duration::from_secs_f64(args.settle);
    while shared.in_flight() > 0 && Instant::now() < settle_until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop_subscribers.cancel();
    let mut results = Vec::new();
    for s in subscribers {
        results.push(s.await?);
    }
    for p in publisher_errors {
        p.abort();
    }
    Ok(Report::new(args, mode, &shared, elapsed, delivered_in_time, results))
}

/// What follows the stamps: zeros, or a window onto random bytes that moves
/// with every message (no two payloads of a chunk alike); or a JSON event.
struct Payloads {
    size: usize,
    random: Vec<u8>,
    json: bool,
}

fn payloads(args: &LoadArgs) -> Payloads {
    use rand::RngCore;
    let mut random = Vec::new();
    if args.random_payload {
        random = vec![0u8; (4 << 20).max(4 * args.size)];
        rand::thread_rng().fill_bytes(&mut random);
    }
    Payloads { size: args.size, random, json: args.json_payload }
}

impl Payloads {
    /// A payload to stamp: zeros, or the JSON event padded to the size.
    fn blank(&self) -> Vec<u8> {
        if !self.json {
            return vec![0u8; self.size];
        }
        let mut p = JSON_EVENT.as_bytes().to_vec();
        p.resize(self.size - 2, b'x');
        p.extend_from_slice(b"\"}");
        p
    }

    fn stamp(&self, stamp: Stamp, payload: &mut [u8]) {
        match self.json {
            true => stamp.write_json(payload),
            false => stamp.write(payload),
        }
    }
}

async fn publish(
    j: usize,
    publishers: usize,
    mut w: wire::Writer,
    payloads: Payloads,
    mode: Mode,
    deadline: Instant,
    shared: Arc<Shared>,
) -> anyhow::Result<()> {
    let size = payloads.size;
    let mut payload = payloads.blank();
    let mut seq = 0u64;
    let batch = (PUBLISH_BATCH_BYTES / size).max(1) as u64;
    // One send time per batch: its frames leave in one write.
    let mut put = |w: &mut wire::Writer, n: u64| {
        let sent_ns = shared.now_ns();
        for _ in 0..n {
            if !payloads.random.is_empty() {
                let at = (seq as usize * 4099) % (payloads.random.len() - size);
                payload[STAMP_LEN..].copy_from_slice(&payloads.random[at..at + size - STAMP_LEN]);
            }
            payloads.stamp(Stamp { probe: false, publisher: j as u32, seq, sent_ns }, &mut payload);
            w.publish(&payload);
            seq += 1;
        }
    };
    match mode {
        Mode::Open => {
            while Instant::now() < deadline {
                put(&mut w, batch);
                w.flush().await?;
                shared.published.fetch_add(batch, Ordering::AcqRel);
            }
        }
        Mode::Rate(total) => {
            let per_second = total as f64 / publishers as f64;
            let start = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_micros(250));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut sent = 0u64;
            while Instant::now() < deadline {
                tick.tick().await;
                let due = (start.elapsed().as_secs_f64() * per_second) as u64;
                if due > sent {
                    put(&mut w, due - sent);
                    w.flush().await?;
                    shared.published.fetch_add(due - sent, Ordering::AcqRel);
                    sent = due;
                }
            }
        }
        Mode::Window(window) => {
            while Instant::now() < deadline {
                let notified = shared.progress.notified();
                let in_flight = shared.in_flight();
                if in_flight >= window {
                    // Progress wakes us; the timeout covers a wake-up that
                    // came between the check and the wait.
                    let _ = tokio::time::timeout(Duration::from_millis(1), notified).await;
                    continue;
                }
                let n = (window - in_flight).min(batch);
                put(&mut w, n);
                // Counted before the write, so in_flight never undercounts.
                shared.published.fetch_add(n, Ordering::AcqRel);
                w.flush().await?;
            }
        }
    }
    Ok(())
}

struct SubscriberResult {
    received: u64,
    out_of_order: u64,
    latency: Histogram<u64>,
    closed: Option<String>,
}

/// Why a connection ended when the server closed it without an ERROR.
const CLOSED_BY_SERVER: &str = "connection closed by the server";

async fn subscribe(
    i: usize,
    mut reader: wire::Reader,
    mut writer: wire::Writer,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> SubscriberResult {
    let state = &shared.subscribers[i];
    let publishers = state.probed.len();
    let mut next_seq = vec![0u64; publishers];
    let mut result = SubscriberResult {
        received: 0,
        out_of_order: 0,
        latency: Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("valid histogram bounds"),
        closed: None,
    };
    let mut pings = 0;
    loop {
        let more = tokio::select! {
            _ = stop.cancelled() => break,
            r = reader.fill() => r,
        };
        // One arrival time per read: its frames reached us together.
        let now = shared.now_ns();
        let before = result.received;
        let ended = reader.drain(&mut pings, |payload| {
            let Some(stamp) = Stamp::read(payload) else { return };
            let Some(expected) = next_seq.get_mut(stamp.publisher as usize) else { return };
            if stamp.probe {
                state.probed[stamp.publisher as usize].store(true, Ordering::Release);
                return;
            }
            result.latency.saturating_record(now.saturating_sub(stamp.sent_ns).max(1));
            if stamp.seq < *expected {
                result.out_of_order += 1;
            } else {
                *expected = stamp.seq + 1;
            }
            result.received += 1;
        });
        if result.received > before {
            state.received.fetch_add(result.received - before, Ordering::AcqRel);
            shared.progress.notify_waiters();
        }
        if pings > 0 {
            wire::pong(&mut writer, std::mem::take(&mut pings));
            if writer.flush().await.is_err() {
                result.closed = Some("write failed".into());
                break;
            }
        }
        result.closed = match (ended, more) {
            (Ok(None), Ok(true)) => continue,
            (Ok(Some(text)), _) => Some(text),
            (Err(e), _) | (_, Err(e)) => Some(format!("{e:#}")),
            (Ok(None), Ok(false)) => Some(CLOSED_BY_SERVER.into()),
        };
        break;
    }
    if result.closed.is_some() {
        state.closed.store(true, Ordering::Release);
        shared.progress.notify_waiters();
    }
    result
}

/// One line a second on stderr while the run goes on.
async fn progress_lines(shared: Arc<Shared>, started: Instant) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let (mut published, mut delivered) = (0, 0);
    loop {
        tick.tick().await;
        let (p, d) = (shared.published.load(Ordering::Acquire), shared.delivered());
        eprintln!(
            "{:5.1} s  published {:>10}/s  delivered {:>10}/s  in flight {}",
            started.elapsed().as_secs_f64(),
            thousands((p - published) as f64),
            thousands((d - delivered) as f64),
            shared.in_flight()
        );
        (published, delivered) = (p, d);
    }
}

#[derive(Serialize)]
pub struct Report {
    pub protocol: String,
    pub mode: String,
    pub publishers: usize,
    pub subscribers: usize,
    pub size: usize,
    pub seconds: f64,
    pub published: u64,
    pub published_per_s: f64,
    /// Deliveries during the publishing time, per second, all subscribers.
    pub delivered_per_s: f64,
    pub delivered: u64,
    /// Expected deliveries (published × subscribers still connected) that never came.
    pub lost: u64,
    pub out_of_order: u64,
    pub latency_us: Latency,
    pub per_subscriber: Vec<SubscriberReport>,
}

#[derive(Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

#[derive(Serialize)]
pub struct SubscriberReport {
    pub received: u64,
    pub per_s: f64,
    pub lost: u64,
    pub out_of_order: u64,
    /// Why the server closed this subscriber, if it did.
    pub closed: Option<String>,
}

impl Report {
    fn new(
        args: &LoadArgs,
        mode: Mode,
        shared: &Shared,
        elapsed: Duration,
        delivered_in_time: u64,
        results: Vec<SubscriberResult>,
    ) -> Report {
        let secs = elapsed.as_secs_f64();
        let published = shared.published.load(Ordering::Acquire);
        let mut latency = Histogram::<u64>::new_with_bounds(1, 600_000_000_000, 3).expect("valid histogram bounds");
        let per_subscriber: Vec<SubscriberReport> = results
            .iter()
            .map(|r| {
                latency.add(&r.latency).expect("same bounds");
                SubscriberReport {
                    received: r.received,
                    per_s: r.received as f64 / secs,
                    lost: if r.closed.is_some() { 0 } else { published.saturating_sub(r.received) },
                    out_of_order: r.out_of_order,
                    closed: r.closed.clone(),
                }
            })
            .collect();
        let us = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
        Report {
            protocol: format!("{:?}", args.protocol).to_lowercase(),
            mode: match mode {
                Mode::Open => "open".into(),
                Mode::Rate(r) => format!("rate {r}/s"),
                Mode::Window(w) => format!("window {w}"),
            },
            publishers: args.publishers,
            subscribers: args.subscribers,
            size: args.size,
            seconds: secs,
            published,
            published_per_s: published as f64 / secs,
            delivered_per_s: delivered_in_time as f64 / secs,
            delivered: per_subscriber.iter().map(|s| s.received).sum(),
            lost: per_subscriber.iter().map(|s| s.lost).sum(),
            out_of_order: per_subscriber.iter().map(|s| s.out_of_order).sum(),
            latency_us: Latency { p50: us(0.5), p99: us(0.99), p999: us(0.999), max: latency.max() as f64 / 1000.0 },
            per_subscriber,
        }
    }

    fn table(&self) -> String {
        let closed = self.per_subscriber.iter().filter(|s| s.closed.is_some()).count();
        let mut t = format!(
            "{} {}→{}, {} B, {}, {:.1} s\n\
             published      {:>12}/s  ({} messages)\n\
             delivered      {:>12}/s  (all subscribers)\n\
             lost           {:>12}\n\
             out of order   {:>12}\n\
             closed         {:>12}  (subscribers the server closed)\n\
             latency        p50 {:.1} µs  p99 {:.1} µs  p99.9 {:.1} µs  max {:.1} µs\n",
            self.protocol,
            self.publishers,
            self.subscribers,
            self.size,
            self.mode,
            self.seconds,
            thousands(self.published_per_s),
            self.published,
            thousands(self.delivered_per_s),
            self.lost,
            self.out_of_order,
            closed,
            self.latency_us.p50,
            self.latency_us.p99,
            self.latency_us.p999,
            self.latency_us.max,
        );
        for (i, s) in self.per_subscriber.iter().enumerate() {
            t += &format!("  subscriber {i:>3}: {:>12}/s  lost {}", thousands(s.per_s), s.lost);
            if let Some(why) = &s.closed {
                t += &format!("  closed: {why}");
            }
            t.push('\n');
        }
        t
    }
}

/// 1234567.8 → "1,234,568".
fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_stamp_when_written_then_read_back() {
        let mut p = vec![0u8; 30];
        Stamp { probe: true, publisher: 7, seq: 1 << 40, sent_ns: 12345 }.write(&mut p);
        let s = Stamp::read(&p).unwrap();
        assert_eq!((s.probe, s.publisher, s.seq, s.sent_ns), (true, 7, 1 << 40, 12345));
        assert!(Stamp::read(&p[..20]).is_none(), "shorter than a stamp");
    }

    #[test]
    fn given_a_json_event_when_a_filter_rewrote_it_then_its_stamp_is_still_read() {
        let payloads = Payloads { size: 400, random: vec![], json: true };
        let mut p = payloads.blank();
        payloads.stamp(Stamp { probe: false, publisher: 3, seq: 99, sent_ns: 777 }, &mut p);
        let mut event: serde_json::Value = serde_json::from_slice(&p).expect("the event is JSON");
        assert_eq!(p.len(), 400);
        event.as_object_mut().unwrap().remove("dst_ip");
        let rewritten = serde_json::to_vec(&event).unwrap();
        let s = Stamp::read(&rewritten).unwrap();
        assert_eq!((s.probe, s.publisher, s.seq, s.sent_ns), (false, 3, 99, 777));
    }

    #[test]
    fn given_numbers_then_thousands_separated() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1234567.8), "1,234,568");
    }
}
