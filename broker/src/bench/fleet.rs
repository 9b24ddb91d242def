//! `hpfriends bench fleet`: the shape of a honeypot network. N sensors, each
//! its own connection and key (keys owned by many users, each user sharing
//! with one analysts' group), publish cowrie-like JSON events a few times a
//! minute with jitter; S subscribers of the analysts read them all. Reports
//! how long the whole fleet takes to connect and log in, delivered/s, loss,
//! latency, and, given the broker's pid, its memory and CPU.
//!
//! With `--reconnect` and `--drain-pid` it is a reconnect storm: a node is
//! drained mid-run, its sensors reconnect (through a load balancer in front
//! of the nodes) and publish again; the report says how long that took and
//! whether any subscriber was closed meanwhile.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::wire::{self, Login, Protocol};

const CHANNEL: &str = "fleet.events";
const ANALYST: &str = "fleet-analyst";
const READER: &str = "fleet-reader";
/// The stamp travels as hex inside the JSON: `{"stamp":"<42 hex digits>",…`.
const STAMP_AT: usize = 10;
const STAMP_HEX: usize = 42;

#[derive(clap::Args, Debug, Clone)]
pub struct FleetArgs {
    /// hpfeeds addresses of the nodes (comma-separated); sensors are spread round-robin.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:10000")]
    pub addr: Vec<SocketAddr>,
    /// Subscribers connect here instead of --addr (comma-separated, round-robin).
    #[arg(long, value_delimiter = ',')]
    pub sub_addr: Vec<SocketAddr>,
    /// HTTP addresses of the nodes (comma-separated): the fleet's users, keys
    /// and shares are applied through the first, and the run waits until
    /// every one listed has applied them.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:8080")]
    pub api: Vec<String>,
    /// The operator token (to apply the fleet's graph).
    #[arg(long, env = "HPFRIENDS_TOKEN", hide_env_values = true)]
    pub token: String,
    #[arg(long, default_value_t = 1_000)]
    pub sensors: usize,
    /// Users the sensors' keys belong to.
    #[arg(long, default_value_t = 100)]
    pub users: usize,
    /// Messages per second per sensor (each waits a random part of the period first).
    #[arg(long, default_value_t = 0.1)]
    pub rate: f64,
    #[arg(long, default_value_t = 1)]
    pub subscribers: usize,
    /// Payload bytes (JSON).
    #[arg(long, default_value_t = 512)]
    pub size: usize,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// Seconds to wait for messages in flight after publishing stops.
    #[arg(long, default_value_t = 2.0)]
    pub settle: f64,
    /// Logins in flight at once while the fleet connects.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// The broker's process id (one node): its memory and CPU are reported.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// A sensor whose connection closes connects again (after a random
    /// pause of up to a second, as clients back off) and publishes at once.
    #[arg(long)]
    pub reconnect: bool,
    /// Drain this node (SIGTERM to the process) --drain-after seconds into publishing.
    #[arg(long, requires = "reconnect")]
    pub drain_pid: Option<u32>,
    #[arg(long, default_value_t = 5.0)]
    pub drain_after: f64,
    /// One JSON line instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
pub struct FleetReport {
    pub sensors: usize,
    pub subscribers: usize,
    /// Every sensor connected and sent its AUTH.
    pub connect_seconds: f64,
    pub published: u64,
    pub delivered: u64,
    pub delivered_per_s: f64,
    /// Published and not delivered, summed over the subscribers.
    pub lost: u64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_p999_ms: f64,
    /// The broker's resident memory before the fleet, with it connected and idle, and at the end.
    pub server_rss_before: Option<u64>,
    pub server_rss_idle: Option<u64>,
    pub server_rss_end: Option<u64>,
    /// (idle − before) / connections.
    pub server_rss_per_connection: Option<f64>,
    /// Broker CPU while publishing, per delivered message.
    pub server_cpu_per_message_us: Option<f64>,
    /// Sensor connections the server closed.
    pub disconnects: u64,
    /// From the first disconnect until every disconnected sensor had published again.
    pub reconnect_seconds: Option<f64>,
    /// Per disconnect: from noticing the close until the sensor's next publish was written.
    pub downtime_p50_ms: Option<f64>,
    pub downtime_max_ms: Option<f64>,
    /// Sensors still disconnected when publishing ended.
    pub sensors_not_back: u64,
    /// Why the server closed subscribers (a slow consumer, for one), if it did.
    pub subscribers_closed: Vec<String>,
}

impl FleetReport {
    pub fn table(&self) -> String {
        let mib = |b: Option<u64>| b.map_or("—".to_string(), |b| format!("{:.1} MiB", b as f64 / 1048576.0));
        let mut out = format!(
            "sensors {}, subscribers {}\n\
             fleet connected and logged in in {:.2} s\n\
             published {}, delivered {} ({:.0}/s), lost {}\n\
             latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms\n",
            self.sensors,
            self.subscribers,
            self.connect_seconds,
            self.published,
            self.delivered,
            self.delivered_per_s,
            self.lost,
            self.latency_p50_ms,
            self.latency_p99_ms,
            self.latency_p999_ms,
        );
        if self.disconnects > 0 {
            out.push_str(&format!(
                "sensors disconnected {}, all publishing again after {}; downtime p50 {}, max {}; not back {}\n",
                self.disconnects,
                self.reconnect_seconds.map_or("—".into(), |s| format!("{s:.2} s")),
                self.downtime_p50_ms.map_or("—".into(), |m| format!("{m:.0} ms")),
                self.downtime_max_ms.map_or("—".into(), |m| format!("{m:.0} ms")),
                self.sensors_not_back,
            ));
        }
        out.push_str(&format!("subscribers closed by the server: {}\n", self.subscribers_closed.len()));
        for why in &self.subscribers_closed {
            out.push_str(&format!("  {why}\n"));
        }
        if self.server_rss_before.is_some() {
            out.push_str(&format!(
                "broker RSS before {}, fleet idle {}, end {}; per connection {}\nbroker CPU per delivered message {}\n",
                mib(self.server_rss_before),
                mib(self.server_rss_idle),
                mib(self.server_rss_end),
                self.server_rss_per_connection.map_or("—".into(), |b| format!("{:.1} KiB", b / 1024.0)),
                self.server_cpu_per_message_us.map_or("—".into(), |u| format!("{u:.1} µs")),
            ));
        }
        out
    }
}

impl FleetArgs {
    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.sensors > 0 && self.subscribers > 0, "--sensors and --subscribers must be at least 1");
        anyhow::ensure!((1..=100_000).contains(&self.users), "--users must be 1 to 100000");
        anyhow::ensure!(self.rate > 0.0 && self.rate.is_finite(), "--rate must be positive");
        anyhow::ensure!(self.size >= 128, "--size must be at least 128 bytes (a JSON event with its stamp)");
        anyhow::ensure!(self.duration > 0.0 && self.settle >= 0.0, "--duration must be positive");
        anyhow::ensure!(self.connect_concurrency > 0, "--connect-concurrency must be at least 1");
        anyhow::ensure!(!self.addr.is_empty(), "--addr needs at least one address");
        anyhow::ensure!(!self.api.is_empty(), "--api needs at least one address");
        anyhow::ensure!(
            self.drain_pid.is_none() || (self.drain_after >= 0.0 && self.drain_after < self.duration),
            "--drain-after must fall inside --duration"
        );
        Ok(())
    }
}

fn sensor_ident(k: usize) -> String {
    format!("fleet-sensor-{k}")
}

fn sensor_secret(k: usize) -> String {
    format!("fleet-secret-{k}-of-this-bench")
}

/// The fleet's users, keys and shares, as `ctl apply` takes them.
fn declaration(args: &FleetArgs) -> serde_json::Value {
    let user = |i: usize| format!("fleet-user-{i}");
    let mut users: Vec<String> = (0..args.users).map(user).collect();
    users.push(ANALYST.to_string());
    let shares: Vec<_> = (0..args.users)
        .map(|i| serde_json::json!({"from": user(i), "to": "group:fleet-analysts", "channel": CHANNEL, "kind": "shares"}))
        .collect();
    let mut keys: Vec<_> = (0..args.sensors)
        .map(|k| {
            serde_json::json!({"ident": sensor_ident(k), "secret": sensor_secret(k), "owner": user(k % args.users),
                               "publish": [CHANNEL]})
        })
        .collect();
    keys.push(
        serde_json::json!({"ident": READER, "secret": "fleet-reader-secret", "owner": ANALYST, "subscribe": [CHANNEL]}),
    );
    serde_json::json!({
        "users": users,
        "groups": [{"name": "fleet-analysts", "admins": [ANALYST], "members": [ANALYST]}],
        "shares": shares,
        "keys": keys,
    })
}

async fn apply(args: &FleetArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/apply", args.api[0].trim_end_matches('/'));
    let answer = http
        .post(&url)
        .bearer_auth(&args.token)
        .json(&declaration(args))
        .timeout(Duration::from_secs(300))
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    if !answer.status().is_success() {
        bail!("applying the fleet's graph failed: {} {}", answer.status(), answer.text().await.unwrap_or_default());
    }
    // A consistent read returns once that node has applied all that was committed.
    for api in &args.api {
        let url = format!("{}/api/v1/users?consistent=true", api.trim_end_matches('/'));
        let answer = http.get(&url).bearer_auth(&args.token).timeout(Duration::from_secs(60)).send().await;
        let answer = answer.with_context(|| format!("cannot reach {url}"))?;
        anyhow::ensure!(answer.status().is_success(), "{url} answered {}", answer.status());
    }
    Ok(())
}

/// Raises the fd limit to what the fleet needs (past the hard limit where the
/// process may, as root); says so plainly when it cannot.
fn fit_fds(args: &FleetArgs) -> anyhow::Result<()> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let needed = (args.sensors + args.subscribers) as u64 + 64;
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_some_and(|c| c < needed) {
        let wanted = Rlimit { current: Some(needed), maximum: Some(needed.max(limit.maximum.unwrap_or(0))) };
        if setrlimit(Resource::Nofile, wanted).is_err() {
            let _ = setrlimit(Resource::Nofile, Rlimit { current: limit.maximum, maximum: limit.maximum });
        }
    }
    if let Some(fds) = getrlimit(Resource::Nofile).current {
        anyhow::ensure!(
            needed <= fds,
            "this machine cannot hold {} sensors and {} subscribers in one process: they need {needed} file \
             descriptors and the limit is {fds} (ulimit -Hn; the kernel's fs.nr_open bounds it for root)",
            args.sensors,
            args.subscribers
        );
    }
    Ok(())
}

/// Resident bytes and CPU seconds (user + system) of a process, from /proc.
pub fn process_usage(pid: u32) -> Option<(u64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib: u64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // /proc counts in USER_HZ, 100 on Linux.
    Some((rss_kib * 1024, ticks as f64 / 100.0))
}

/// A cowrie-like event of `size` bytes, its stamp (sensor, seq, send time) in hex at `STAMP_AT`.
fn event(size: usize, sensor: u32, seq: u64, sent_ns: u64) -> Vec<u8> {
    let mut stamp = [0u8; 21];
    super::Stamp { probe: false, publisher: sensor, seq, sent_ns }.write(&mut stamp);
    let mut text = format!(
        "{{\"stamp\":\"{}\",\"eventid\":\"cowrie.login.failed\",\"src_ip\":\"192.0.2.{}\",\"username\":\"root\",\
         \"password\":\"123456\",\"session\":\"{:012x}\",\"pad\":\"",
        hex::encode(stamp),
        sensor % 250,
        seq
    );
    let closing = "\"}";
    while text.len() + closing.len() < size {
        text.push('x');
    }
    text.push_str(closing);
    text.into_bytes()
}

fn stamp_of(payload: &[u8]) -> Option<super::Stamp> {
    let hex_text = payload.get(STAMP_AT..STAMP_AT + STAMP_HEX)?;
    let bytes = hex::decode(hex_text).ok()?;
    super::Stamp::read(&bytes)
}

pub async fn run(args: FleetArgs) -> anyhow::Result<()> {
    let report = fleet(&args).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

pub async fn fleet(args: &FleetArgs) -> anyhow::Result<FleetReport> {
    args.check()?;
    fit_fds(args)?;
    apply(args).await?;
    let usage = || args.server_pid.and_then(process_usage);
    let before = usage();
    let epoch = Instant::now();

    let reader_login = Login { ident: READER.into(), secret: "fleet-reader-secret".into(), channel: CHANNEL.into() };
    let stop = CancellationToken::new();
    let sub_addrs = if args.sub_addr.is_empty() { &args.addr } else { &args.sub_addr };
    let mut subscribers = Vec::new();
    for i in 0..args.subscribers {
        let (reader, mut writer) =
            wire::connect(Protocol::Hpfeeds, sub_addrs[i % sub_addrs.len()], &reader_login).await?;
        writer.subscribe();
        writer.flush().await?;
        subscribers.push(tokio::spawn(subscribe(reader, writer, epoch, stop.clone())));
    }

    // The whole fleet connects and logs in, a bounded number at a time.
    let connecting = Instant::now();
    let slots = Arc::new(Semaphore::new(args.connect_concurrency));
    let mut logins = tokio::task::JoinSet::new();
    for k in 0..args.sensors {
        let slots = slots.clone();
        let addr = args.addr[k % args.addr.len()];
        logins.spawn(async move {
            let _slot = slots.acquire_owned().await.expect("the semaphore stays open");
            (k, wire::connect_small(Protocol::Hpfeeds, addr, &sensor_login(k)).await)
        });
    }
    let mut connections: Vec<Option<(wire::Reader, wire::Writer)>> = (0..args.sensors).map(|_| None).collect();
    while let Some(joined) = logins.join_next().await {
        let (k, connected) = joined?;
        connections[k] = Some(connected.with_context(|| format!("sensor {k} could not connect"))?);
    }
    let connect_seconds = connecting.elapsed().as_secs_f64();
    // Idle: every sensor logged in, nothing published yet.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = usage();

    let started = Instant::now();
    let plan = Arc::new(Plan {
        epoch,
        started,
        deadline: started + Duration::from_secs_f64(args.duration),
        period: Duration::from_secs_f64(1.0 / args.rate),
        size: args.size,
        reconnect: args.reconnect,
        published: AtomicU64::new(0),
        first_down_ns: AtomicU64::new(u64::MAX),
        last_back_ns: AtomicU64::new(0),
        downtimes_ms: Mutex::new(Vec::new()),
    });
    let drain = args.drain_pid.map(|pid| {
        let at = started + Duration::from_secs_f64(args.drain_after);
        tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            let target = rustix::process::Pid::from_raw(pid as i32).context("--drain-pid must be a process id")?;
            rustix::process::kill_process(target, rustix::process::Signal::TERM)
                .with_context(|| format!("cannot send SIGTERM to process {pid}"))
        })
    });
    let mut sensors = tokio::task::JoinSet::new();
    for (k, connection) in connections.into_iter().enumerate() {
        let connection = connection.expect("every sensor connected");
        sensors.spawn(sensor(k, args.addr[k % args.addr.len()], connection, plan.clone()));
    }
    let mut kept = Vec::new();
    let mut sensors_not_back = 0;
    while let Some(done) = sensors.join_next().await {
        match done?? {
            Some(connection) => kept.push(connection),
            None => sensors_not_back += 1,
        }
    }
    if let Some(drain) = drain {
        drain.await??;
    }
    let elapsed = started.elapsed();
    let published = plan.published.load(Ordering::Relaxed);
    // Let what is in flight arrive.
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    let end = usage();
    stop.cancel();
    let mut delivered = 0;
    let mut subscribers_closed = Vec::new();
    let mut latency = Histogram::<u64>::new_with_bounds(1, 600_000_000_000, 3).expect("valid histogram bounds");
    for s in subscribers {
        let (received, hist, closed) = s.await??;
        delivered += received;
        latency.add(&hist).expect("histograms of the same bounds add up");
        subscribers_closed.extend(closed);
    }
    drop(kept);
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1e6;
    let connections = (args.sensors + args.subscribers) as f64;
    let mut downtimes = std::mem::take(&mut *plan.downtimes_ms.lock().expect("no sensor panics"));
    downtimes.sort_unstable();
    let (first_down, last_back) =
        (plan.first_down_ns.load(Ordering::Relaxed), plan.last_back_ns.load(Ordering::Relaxed));
    Ok(FleetReport {
        sensors: args.sensors,
        subscribers: args.subscribers,
        connect_seconds,
        published,
        delivered,
        delivered_per_s: delivered as f64 / elapsed.as_secs_f64(),
        lost: (published * args.subscribers as u64).saturating_sub(delivered),
        latency_p50_ms: ms(0.5),
        latency_p99_ms: ms(0.99),
        latency_p999_ms: ms(0.999),
        server_rss_before: before.map(|u| u.0),
        server_rss_idle: idle.map(|u| u.0),
        server_rss_end: end.map(|u| u.0),
        server_rss_per_connection: before.zip(idle).map(|(b, i)| i.0.saturating_sub(b.0) as f64 / connections),
        server_cpu_per_message_us: idle
            .zip(end)
            .filter(|_| delivered > 0)
            .map(|(i, e)| (e.1 - i.1) / delivered as f64 * 1e6),
        disconnects: downtimes.len() as u64 + sensors_not_back,
        reconnect_seconds: (!downtimes.is_empty() && sensors_not_back == 0)
            .then(|| last_back.saturating_sub(first_down) as f64 / 1e9),
        downtime_p50_ms: downtimes.get(downtimes.len() / 2).map(|&d| d as f64),
        downtime_max_ms: downtimes.last().map(|&d| d as f64),
        sensors_not_back,
        subscribers_closed,
    })
}

fn sensor_login(k: usize) -> Login {
    Login { ident: sensor_ident(k), secret: sensor_secret(k), channel: CHANNEL.into() }
}

/// What every sensor shares: the schedule, and what they count together.
struct Plan {
    epoch: Instant,
    started: Instant,
    deadline: Instant,
    period: Duration,
    size: usize,
    reconnect: bool,
    published: AtomicU64,
    /// Since `epoch`: the first close any sensor saw, and the last return to publishing.
    first_down_ns: AtomicU64,
    last_back_ns: AtomicU64,
    downtimes_ms: Mutex<Vec<u64>>,
}

/// One sensor: publishes on its schedule until the deadline, and notices the
/// server closing its connection (by reading it, as real clients do). Its
/// connection at the end, or None if it was still reconnecting.
async fn sensor(
    k: usize,
    addr: SocketAddr,
    mut connection: (wire::Reader, wire::Writer),
    plan: Arc<Plan>,
) -> anyhow::Result<Option<(wire::Reader, wire::Writer)>> {
    // Each sensor starts at a random point of its period, and keeps a jitter of ±10 %.
    let mut next = plan.started + plan.period.mul_f64(rand::random::<f64>());
    let mut seq = 0u64;
    let mut down_since: Option<Instant> = None;
    loop {
        let (reader, writer) = &mut connection;
        let due = tokio::select! {
            // Not past the deadline: a sensor due after it stops there.
            _ = tokio::time::sleep_until(next.min(plan.deadline).into()) => true,
            more = reader.fill() => {
                // A publisher hears nothing but an ERROR before the server closes it.
                let open = matches!(more, Ok(true)) && matches!(reader.drain(&mut 0, |_| {}), Ok(None));
                if open {
                    continue;
                }
                false
            }
        };
        if due {
            if next >= plan.deadline {
                return Ok(Some(connection));
            }
            let sent_ns = plan.epoch.elapsed().as_nanos() as u64;
            writer.publish(&event(plan.size, k as u32, seq, sent_ns));
            if writer.flush().await.is_ok() {
                plan.published.fetch_add(1, Ordering::Relaxed);
                seq += 1;
                next += plan.period.mul_f64(0.9 + 0.2 * rand::random::<f64>());
                if let Some(since) = down_since.take() {
                    plan.downtimes_ms.lock().expect("no sensor panics").push(since.elapsed().as_millis() as u64);
                    plan.last_back_ns.fetch_max(sent_ns, Ordering::Relaxed);
                }
                continue;
            }
            writer.out.clear();
        }
        anyhow::ensure!(plan.reconnect, "sensor {k} was disconnected (run with --reconnect to reconnect)");
        if down_since.is_none() {
            down_since = Some(Instant::now());
            plan.first_down_ns.fetch_min(plan.epoch.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
        connection = loop {
            tokio::time::sleep(Duration::from_secs_f64(rand::random::<f64>())).await;
            if Instant::now() >= plan.deadline {
                return Ok(None);
            }
            if let Ok(c) = wire::connect_small(Protocol::Hpfeeds, addr, &sensor_login(k)).await {
                break c;
            }
        };
        // A reconnected sensor publishes at once, so the storm's length is
        // the time to reconnect, not to the next event on its schedule.
        next = Instant::now();
    }
}

/// Counts the events one subscriber receives and their latency; the server's
/// reason if it closed the subscriber.
async fn subscribe(
    mut reader: wire::Reader,
    _writer: wire::Writer,
    epoch: Instant,
    stop: CancellationToken,
) -> anyhow::Result<(u64, Histogram<u64>, Option<String>)> {
    let mut latency = Histogram::<u64>::new_with_bounds(1, 600_000_000_000, 3).expect("valid histogram bounds");
    let mut received = 0u64;
    let mut pings = 0;
    loop {
        let more = tokio::select! {
            _ = stop.cancelled() => return Ok((received, latency, None)),
            r = reader.fill() => r?,
        };
        let now = epoch.elapsed().as_nanos() as u64;
        let closed = reader.drain(&mut pings, |payload| {
            if let Some(stamp) = stamp_of(payload) {
                latency.saturating_record(now.saturating_sub(stamp.sent_ns).max(1));
                received += 1;
            }
        })?;
        if closed.is_some() || !more {
            let why = closed.unwrap_or_else(|| "closed without an ERROR".into());
            return Ok((received, latency, Some(why)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_an_event_then_it_is_json_of_the_size_and_its_stamp_reads_back() {
        let payload = event(512, 7, 42, 123_456_789);
        assert_eq!(payload.len(), 512);
        let json: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(json["eventid"], "cowrie.login.failed");
        let stamp = stamp_of(&payload).unwrap();
        assert_eq!((stamp.publisher, stamp.seq, stamp.sent_ns), (7, 42, 123_456_789));
    }
}
