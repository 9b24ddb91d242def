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
//!
//! With `--processes N` the sensors are spread over N child processes (a
//! process may open only so many files): each child connects its shard,
//! says so on stdout, starts publishing when the parent says go (the same
//! instant for all, on the machine's monotonic clock, which stamps every
//! event too) and prints what its sensors did; the parent keeps the
//! subscribers and merges the report.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
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
    /// The nodes' process ids (comma-separated, in --api's order): each
    /// node's memory and CPU are reported, and its connections, read from
    /// its /metrics, when there is one pid per --api address.
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Client processes the sensors are spread over (each opens its share of
    /// the connections: the file limit is per process).
    #[arg(long, default_value_t = 1)]
    pub processes: usize,
    /// Run shard K/N of a --processes run: what a child is started with.
    #[arg(long, hide = true, value_parser = parse_shard)]
    pub shard: Option<Shard>,
    /// Local addresses the sensors connect from (comma-separated,
    /// round-robin): one address has only ~28,000 ports towards one server
    /// address (a load balancer's service address, for one).
    #[arg(long, value_delimiter = ',')]
    pub source: Vec<IpAddr>,
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
    /// Client processes the sensors ran in.
    pub processes: usize,
    /// Per node given by --server-pid (the server_* figures above are their sums).
    pub nodes: Vec<NodeUsage>,
}

/// One node's share of the run.
#[derive(Debug, Serialize)]
pub struct NodeUsage {
    pub pid: u32,
    /// Logged-in hpfeeds connections with the fleet idle (its /metrics).
    pub connections: Option<u64>,
    pub rss_before: u64,
    pub rss_idle: u64,
    /// None when the node had exited by the end (a drained one).
    pub rss_end: Option<u64>,
    /// (idle − before) / its connections.
    pub rss_per_connection: Option<f64>,
    /// Its CPU while publishing, per message delivered to the subscribers
    /// (None when it had exited by the end).
    pub cpu_per_message_us: Option<f64>,
}

/// Shard K of N: the sensors k with k mod N = K.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shard {
    pub k: usize,
    pub n: usize,
}

fn parse_shard(text: &str) -> Result<Shard, String> {
    let (k, n) = text.split_once('/').ok_or("a shard is K/N")?;
    let (k, n) = (k.parse().map_err(|_| "K is a number")?, n.parse().map_err(|_| "N is a number")?);
    if k >= n {
        return Err("K must be below N".into());
    }
    Ok(Shard { k, n })
}

/// What the sensors of one shard did while publishing.
#[derive(Debug, Serialize, Deserialize)]
struct ShardReport {
    published: u64,
    downtimes_ms: Vec<u64>,
    /// Monotonic clock: the first close a sensor saw, the last return to publishing.
    first_down_ns: u64,
    last_back_ns: u64,
    not_back: u64,
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
        let kib = |b: Option<f64>| b.map_or("—".into(), |b| format!("{:.1} KiB", b / 1024.0));
        let us = |u: Option<f64>| u.map_or("—".into(), |u| format!("{u:.1} µs"));
        if self.server_rss_before.is_some() {
            out.push_str(&format!(
                "broker RSS before {}, fleet idle {}, end {}; per connection {}\nbroker CPU per delivered message {}\n",
                mib(self.server_rss_before),
                mib(self.server_rss_idle),
                mib(self.server_rss_end),
                kib(self.server_rss_per_connection),
                us(self.server_cpu_per_message_us),
            ));
        }
        if self.nodes.len() > 1 {
            for n in &self.nodes {
                out.push_str(&format!(
                    "  node pid {}: {} connections, RSS idle {}, per connection {}, CPU per delivered message {}\n",
                    n.pid,
                    n.connections.map_or("—".into(), |c| c.to_string()),
                    mib(Some(n.rss_idle)),
                    kib(n.rss_per_connection),
                    us(n.cpu_per_message_us),
                ));
            }
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
            (1..=64).contains(&self.processes) && self.processes <= self.sensors,
            "--processes must be 1 to 64, and at most --sensors"
        );
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

/// Raises the fd limit to what this process's sensors and subscribers need
/// (past the hard limit where the process may, as root); says so plainly
/// when it cannot.
fn fit_fds(sensors: usize, subscribers: usize) -> anyhow::Result<()> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let needed = (sensors + subscribers) as u64 + 64;
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
            "this machine cannot hold {sensors} sensors and {subscribers} subscribers in one process: they need \
             {needed} file descriptors and the limit is {fds} (ulimit -Hn; the kernel's fs.nr_open bounds it for \
             root): spread the sensors over processes (--processes)"
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

/// Nanoseconds on the machine's monotonic clock: one time line for every
/// process of a run (the stamps, the start, the reconnects).
fn mono_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// The `Instant` of a monotonic-clock reading.
fn instant_at(ns: u64) -> Instant {
    let now = mono_ns();
    match ns.checked_sub(now) {
        Some(ahead) => Instant::now() + Duration::from_nanos(ahead),
        None => Instant::now() - Duration::from_nanos(now - ns),
    }
}

pub async fn run(args: FleetArgs) -> anyhow::Result<()> {
    if let Some(shard) = args.shard {
        return run_shard(&args, shard).await;
    }
    let report = fleet(&args).await?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

/// A child of a `--processes` run: connects its shard, says `connected`,
/// publishes from the instant the parent's `go <ns>` names, prints its
/// report and keeps its connections until the parent closes stdin.
async fn run_shard(args: &FleetArgs, shard: Shard) -> anyhow::Result<()> {
    args.check()?;
    fit_fds(shard_sensors(args.sensors, shard).count(), 0)?;
    let connections = connect_shard(args, shard).await?;
    let mut stdout = tokio::io::stdout();
    stdout.write_all(b"connected\n").await?;
    stdout.flush().await?;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let go = lines.next_line().await?.context("the parent ended the run before it started")?;
    let start_ns = go.strip_prefix("go ").and_then(|n| n.parse().ok()).context("expected `go <ns>` on stdin")?;
    let (report, kept) = publish_shard(args, connections, start_ns).await?;
    stdout.write_all(format!("{}\n", serde_json::to_string(&report)?).as_bytes()).await?;
    stdout.flush().await?;
    while lines.next_line().await?.is_some() {}
    drop(kept);
    Ok(())
}

fn shard_sensors(sensors: usize, shard: Shard) -> impl Iterator<Item = usize> {
    (shard.k..sensors).step_by(shard.n)
}

/// The sensors of one process: their connections, or the children that hold them.
enum Sensors {
    Here(Vec<(usize, Connection)>),
    Children(Vec<Child>),
}

type Connection = (wire::Reader, wire::Writer);

struct Child {
    process: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Child {
    async fn line(&mut self, k: usize) -> anyhow::Result<String> {
        match self.lines.next_line().await? {
            Some(line) => Ok(line),
            None => bail!("fleet process {k} ended early: {}", self.process.wait().await?),
        }
    }
}

/// Starts one child per shard, each with the arguments its sensors need.
fn spawn_children(args: &FleetArgs) -> anyhow::Result<Vec<Child>> {
    let exe = std::env::current_exe().context("cannot find this program to start the fleet's processes")?;
    let join = |items: Vec<String>| items.join(",");
    let mut children = Vec::new();
    for k in 0..args.processes {
        let mut command = tokio::process::Command::new(&exe);
        command
            .args(["bench", "fleet", "--shard", &format!("{k}/{}", args.processes)])
            .args(["--addr", &join(args.addr.iter().map(|a| a.to_string()).collect())])
            .args(["--sensors", &args.sensors.to_string(), "--users", &args.users.to_string()])
            .args(["--rate", &args.rate.to_string(), "--size", &args.size.to_string()])
            .args(["--duration", &args.duration.to_string()])
            .args(["--connect-concurrency", &(args.connect_concurrency / args.processes).max(1).to_string()])
            .env("HPFRIENDS_TOKEN", &args.token)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        if !args.source.is_empty() {
            command.args(["--source", &join(args.source.iter().map(|a| a.to_string()).collect())]);
        }
        if args.reconnect {
            command.arg("--reconnect");
        }
        let mut process = command.spawn().with_context(|| format!("cannot start {}", exe.display()))?;
        let stdin = process.stdin.take().expect("piped");
        let lines = BufReader::new(process.stdout.take().expect("piped")).lines();
        children.push(Child { process, stdin, lines });
    }
    Ok(children)
}

/// Connects and logs in the shard's sensors, a bounded number at a time.
async fn connect_shard(args: &FleetArgs, shard: Shard) -> anyhow::Result<Vec<(usize, Connection)>> {
    let slots = Arc::new(Semaphore::new(args.connect_concurrency));
    let mut logins = tokio::task::JoinSet::new();
    for k in shard_sensors(args.sensors, shard) {
        let slots = slots.clone();
        let (addr, from) = sensor_route(args, k);
        logins.spawn(async move {
            let _slot = slots.acquire_owned().await.expect("the semaphore stays open");
            (k, wire::connect_small(Protocol::Hpfeeds, addr, from, &sensor_login(k)).await)
        });
    }
    let mut connections = Vec::new();
    while let Some(joined) = logins.join_next().await {
        let (k, connected) = joined?;
        connections.push((k, connected.with_context(|| format!("sensor {k} could not connect"))?));
    }
    Ok(connections)
}

/// Where sensor k connects, and from which local address.
fn sensor_route(args: &FleetArgs, k: usize) -> (SocketAddr, Option<IpAddr>) {
    (args.addr[k % args.addr.len()], (!args.source.is_empty()).then(|| args.source[k % args.source.len()]))
}

/// Runs the sensors from `start_ns` until the run's end: what they did, and
/// the connections still open.
async fn publish_shard(
    args: &FleetArgs,
    connections: Vec<(usize, Connection)>,
    start_ns: u64,
) -> anyhow::Result<(ShardReport, Vec<Connection>)> {
    let started = instant_at(start_ns);
    let plan = Arc::new(Plan {
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
    let mut sensors = tokio::task::JoinSet::new();
    for (k, connection) in connections {
        let (addr, from) = sensor_route(args, k);
        sensors.spawn(sensor(k, addr, from, connection, plan.clone()));
    }
    let mut kept = Vec::new();
    let mut not_back = 0;
    while let Some(done) = sensors.join_next().await {
        match done?? {
            Some(connection) => kept.push(connection),
            None => not_back += 1,
        }
    }
    let report = ShardReport {
        published: plan.published.load(Ordering::Relaxed),
        downtimes_ms: std::mem::take(&mut *plan.downtimes_ms.lock().expect("no sensor panics")),
        first_down_ns: plan.first_down_ns.load(Ordering::Relaxed),
        last_back_ns: plan.last_back_ns.load(Ordering::Relaxed),
        not_back,
    };
    Ok((report, kept))
}

/// Resident bytes and CPU seconds of each node given by --server-pid.
fn usages(args: &FleetArgs) -> Vec<Option<(u64, f64)>> {
    args.server_pid.iter().map(|&pid| process_usage(pid)).collect()
}

/// Each node's logged-in hpfeeds connections, from its /metrics, when there
/// is one pid per --api address (the same nodes in the same order).
async fn node_connections(args: &FleetArgs) -> Vec<Option<u64>> {
    let http = reqwest::Client::new();
    let mut counts = Vec::new();
    for (i, _) in args.server_pid.iter().enumerate() {
        let Some(api) = args.api.get(i).filter(|_| args.api.len() == args.server_pid.len()) else {
            counts.push(None);
            continue;
        };
        let url = format!("{}/metrics", api.trim_end_matches('/'));
        let body = match http.get(&url).timeout(Duration::from_secs(10)).send().await {
            Ok(answer) => answer.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let name = crate::telemetry::AUTHENTICATED_CONNECTIONS.name;
        counts.push(
            body.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<f64>().ok())
                .map(|c| c as u64),
        );
    }
    counts
}

pub async fn fleet(args: &FleetArgs) -> anyhow::Result<FleetReport> {
    args.check()?;
    anyhow::ensure!(args.shard.is_none(), "--shard is for the fleet's own child processes");
    fit_fds(if args.processes == 1 { args.sensors } else { 0 }, args.subscribers)?;
    apply(args).await?;
    let before = usages(args);

    let reader_login = Login { ident: READER.into(), secret: "fleet-reader-secret".into(), channel: CHANNEL.into() };
    let stop = CancellationToken::new();
    let sub_addrs = if args.sub_addr.is_empty() { &args.addr } else { &args.sub_addr };
    let mut subscribers = Vec::new();
    for i in 0..args.subscribers {
        let (reader, mut writer) =
            wire::connect(Protocol::Hpfeeds, sub_addrs[i % sub_addrs.len()], &reader_login).await?;
        writer.subscribe();
        writer.flush().await?;
        subscribers.push(tokio::spawn(subscribe(reader, writer, stop.clone())));
    }

    // The whole fleet connects and logs in.
    let connecting = Instant::now();
    let sensors = if args.processes == 1 {
        Sensors::Here(connect_shard(args, Shard { k: 0, n: 1 }).await?)
    } else {
        let mut children = spawn_children(args)?;
        for (k, child) in children.iter_mut().enumerate() {
            let said = child.line(k).await?;
            anyhow::ensure!(said == "connected", "fleet process {k} said {said:?}");
        }
        Sensors::Children(children)
    };
    let connect_seconds = connecting.elapsed().as_secs_f64();
    // Idle: every sensor logged in, nothing published yet.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = usages(args);
    let connections_per_node = node_connections(args).await;

    // Every process starts publishing at the same instant.
    let start_ns = mono_ns() + 100_000_000;
    let started = instant_at(start_ns);
    let drain = args.drain_pid.map(|pid| {
        let at = started + Duration::from_secs_f64(args.drain_after);
        tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            let target = rustix::process::Pid::from_raw(pid as i32).context("--drain-pid must be a process id")?;
            rustix::process::kill_process(target, rustix::process::Signal::TERM)
                .with_context(|| format!("cannot send SIGTERM to process {pid}"))
        })
    });
    let mut shards = Vec::new();
    let mut kept = Vec::new();
    let mut children = Vec::new();
    match sensors {
        Sensors::Here(connections) => {
            let (report, open) = publish_shard(args, connections, start_ns).await?;
            shards.push(report);
            kept = open;
        }
        Sensors::Children(mut all) => {
            for child in &mut all {
                child.stdin.write_all(format!("go {start_ns}\n").as_bytes()).await?;
                child.stdin.flush().await?;
            }
            for (k, child) in all.iter_mut().enumerate() {
                let line = child.line(k).await?;
                shards.push(serde_json::from_str(&line).with_context(|| format!("fleet process {k} said {line:?}"))?);
            }
            children = all;
        }
    }
    if let Some(drain) = drain {
        drain.await??;
    }
    let elapsed = started.elapsed();
    let published: u64 = shards.iter().map(|s| s.published).sum();
    // Let what is in flight arrive.
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    let end = usages(args);
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
    for mut child in children {
        drop(child.stdin);
        child.process.wait().await?;
    }
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1e6;
    let connections = (args.sensors + args.subscribers) as f64;
    let mut downtimes: Vec<u64> = shards.iter().flat_map(|s| s.downtimes_ms.iter().copied()).collect();
    downtimes.sort_unstable();
    let sensors_not_back: u64 = shards.iter().map(|s| s.not_back).sum();
    let first_down = shards.iter().map(|s| s.first_down_ns).min().unwrap_or(u64::MAX);
    let last_back = shards.iter().map(|s| s.last_back_ns).max().unwrap_or(0);
    let per_message = |cpu: f64| (delivered > 0).then(|| cpu / delivered as f64 * 1e6);
    let nodes: Vec<NodeUsage> = (args.server_pid.iter().enumerate())
        .filter_map(|(i, &pid)| {
            let (b, i_, e, c) = (before[i]?, idle[i]?, end[i], connections_per_node[i]);
            Some(NodeUsage {
                pid,
                connections: c,
                rss_before: b.0,
                rss_idle: i_.0,
                rss_end: e.map(|e| e.0),
                rss_per_connection: c.filter(|&c| c > 0).map(|c| i_.0.saturating_sub(b.0) as f64 / c as f64),
                cpu_per_message_us: e.and_then(|e| per_message(e.1 - i_.1)),
            })
        })
        .collect();
    // Sums over the nodes (None if one lacks the figure).
    let sum = |f: fn(&NodeUsage) -> Option<u64>| (!nodes.is_empty()).then(|| nodes.iter().map(f).sum()).flatten();
    let (rss_before, rss_idle) = (sum(|n| Some(n.rss_before)), sum(|n| Some(n.rss_idle)));
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
        server_rss_before: rss_before,
        server_rss_idle: rss_idle,
        server_rss_end: sum(|n| n.rss_end),
        server_rss_per_connection: rss_before.zip(rss_idle).map(|(b, i)| i.saturating_sub(b) as f64 / connections),
        // Over the nodes that ran to the end.
        server_cpu_per_message_us: nodes.iter().filter_map(|n| n.cpu_per_message_us).reduce(|a, b| a + b),
        disconnects: downtimes.len() as u64 + sensors_not_back,
        reconnect_seconds: (!downtimes.is_empty() && sensors_not_back == 0)
            .then(|| last_back.saturating_sub(first_down) as f64 / 1e9),
        downtime_p50_ms: downtimes.get(downtimes.len() / 2).map(|&d| d as f64),
        downtime_max_ms: downtimes.last().map(|&d| d as f64),
        sensors_not_back,
        subscribers_closed,
        processes: args.processes,
        nodes,
    })
}

fn sensor_login(k: usize) -> Login {
    Login { ident: sensor_ident(k), secret: sensor_secret(k), channel: CHANNEL.into() }
}

/// What every sensor of a process shares: the schedule, and what they count together.
struct Plan {
    started: Instant,
    deadline: Instant,
    period: Duration,
    size: usize,
    reconnect: bool,
    published: AtomicU64,
    /// Monotonic clock: the first close any sensor saw, and the last return to publishing.
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
    from: Option<IpAddr>,
    mut connection: Connection,
    plan: Arc<Plan>,
) -> anyhow::Result<Option<Connection>> {
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
            let sent_ns = mono_ns();
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
            plan.first_down_ns.fetch_min(mono_ns(), Ordering::Relaxed);
        }
        connection = loop {
            tokio::time::sleep(Duration::from_secs_f64(rand::random::<f64>())).await;
            if Instant::now() >= plan.deadline {
                return Ok(None);
            }
            if let Ok(c) = wire::connect_small(Protocol::Hpfeeds, addr, from, &sensor_login(k)).await {
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
        let now = mono_ns();
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
