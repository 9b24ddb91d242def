//! Runs real `hpfriends` processes and real hpfeeds clients for tests.
//!
//! Every wait polls a condition against a deadline; every port is chosen by
//! the OS (port 0) and read back from the node's first line of output.

pub mod linearizable;
pub mod proxy;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The `hpfriends` binary of this build: beside the test executable's
/// `deps/` folder (`cargo nextest run --workspace` builds it).
pub fn hpfriends_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>");
    let bin = profile_dir.join("hpfriends");
    assert!(bin.exists(), "{} is missing: build it with `cargo build -p hpfriends`", bin.display());
    bin
}

/// The graph `hpfriends bench` expects by default: bench-pub (user sensors)
/// publishes on `bench`, shared with analyst, whose bench-sub subscribes.
/// Secrets: p and s.
pub const BENCH_GRAPH: &str = r#"{
  "shares": [{"from": "sensors", "to": "analyst", "channel": "bench", "kind": "shares"}],
  "keys": [{"ident": "bench-pub", "secret": "p", "owner": "sensors", "publish": ["bench"]},
           {"ident": "bench-sub", "secret": "s", "owner": "analyst", "subscribe": ["bench"]}]
}"#;

/// How long conditions may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `cond` until it returns `Some`, or fails after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = cond() {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One `hpfriends serve` process with its own data dir.
pub struct NodeProcess {
    bin: PathBuf,
    pub data_dir: PathBuf,
    pub token: String,
    extra: Vec<String>,
    child: Option<Child>,
    pub hpfeeds_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub cluster_addr: SocketAddr,
    /// The TLS hpfeeds listener, when started with a certificate.
    pub tls_addr: Option<SocketAddr>,
    log: Arc<Mutex<Vec<String>>>,
}

impl NodeProcess {
    /// Starts a node on fresh random loopback ports.
    pub fn start(bin: &Path, data_dir: &Path, extra: &[&str]) -> anyhow::Result<NodeProcess> {
        Self::start_on(bin, data_dir, "127.0.0.1", extra)
    }

    /// As `start`, with the cluster port on `cluster_ip` (a loopback address
    /// of its own, so that a partition can cut exactly this node's traffic).
    pub fn start_on(bin: &Path, data_dir: &Path, cluster_ip: &str, extra: &[&str]) -> anyhow::Result<NodeProcess> {
        Self::start_at(bin, data_dir, format!("{cluster_ip}:0").parse()?, extra)
    }

    /// As `start`, with the cluster port at `cluster_addr`.
    pub fn start_at(
        bin: &Path,
        data_dir: &Path,
        cluster_addr: SocketAddr,
        extra: &[&str],
    ) -> anyhow::Result<NodeProcess> {
        let mut node = NodeProcess {
            bin: bin.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
            token: "test-operator-token-0123456789abcdef".into(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
            hpfeeds_addr: "127.0.0.1:0".parse()?,
            http_addr: "127.0.0.1:0".parse()?,
            cluster_addr,
            tls_addr: None,
            log: Arc::default(),
        };
        node.spawn()?;
        Ok(node)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let mut child = Command::new(&self.bin)
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            // Port 0 on the first start; a restart keeps the ports, as a real node's address stays.
            .args(["--hpfeeds-addr", &self.hpfeeds_addr.to_string(), "--http-addr", &self.http_addr.to_string()])
            .args(["--cluster-addr", &self.cluster_addr.to_string()])
            .args(["--operator-token", &self.token])
            .args(&self.extra)
            .env("HPFRIENDS_LOG", "info,openraft=warn")
            // Test graphs use one-letter key secrets; the default of 8 has its own test.
            .env("HPFRIENDS_MIN_KEY_SECRET_LEN", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains(" listening: ") {
                    let _ = tx.send(line);
                }
            }
        });
        let stderr = child.stderr.take().expect("piped");
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().expect("log lock").push(line);
            }
        });
        let line = match rx.recv_timeout(DEADLINE) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                bail!("node did not report its addresses; stderr:\n{}", self.log.lock().expect("log").join("\n"));
            }
        };
        self.child = Some(child);
        self.hpfeeds_addr = field(&line, "hpfeeds=")?.parse()?;
        self.http_addr = field(&line, "http=")?.parse()?;
        self.cluster_addr = field(&line, "cluster=")?.parse()?;
        self.tls_addr = field(&line, "tls=").ok().map(str::parse).transpose()?;
        self.wait_ready()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// Waits until `/readyz` answers 200.
    pub fn wait_ready(&self) -> anyhow::Result<()> {
        wait_for("the node to be ready", DEADLINE, || http_status(self.http_addr, "/readyz").ok().filter(|s| *s == 200))
            .map(drop)
    }

    /// `hpfriends ctl apply` of a declarative graph given as JSON text.
    pub fn apply(&self, graph: &str) -> anyhow::Result<String> {
        let file = tempfile::NamedTempFile::new()?;
        std::fs::write(file.path(), graph)?;
        self.ctl(&["apply", &file.path().to_string_lossy()])
    }

    /// Runs `hpfriends ctl --json ARGS` against this node as the operator; returns stdout, or the stderr as the error.
    pub fn ctl(&self, args: &[&str]) -> anyhow::Result<String> {
        self.ctl_as(&self.token, args)
    }

    /// `ctl` with another token (a user's).
    pub fn ctl_as(&self, token: &str, args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new(&self.bin)
            .args(["ctl", "--json", "--server", &self.url(), "--token", token])
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!("ctl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// SIGKILL: no drain, no flush.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        self.signal("TERM")?;
        self.wait_exit(DEADLINE)
    }

    /// The running node's process id.
    pub fn pid(&self) -> anyhow::Result<u32> {
        Ok(self.child.as_ref().context("node is not running")?.id())
    }

    /// Sends a signal (`TERM`, `INT`, ...) to the running node.
    pub fn signal(&self, name: &str) -> anyhow::Result<()> {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.pid()?.to_string()).status()?;
        anyhow::ensure!(status.success(), "kill -{name} failed");
        Ok(())
    }

    /// Waits for the node to exit; kills it if it has not within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let mut c = self.child.take().context("node is not running")?;
        let exited = wait_for("the node to exit", timeout, || c.try_wait().ok().flatten());
        if exited.is_err() {
            let _ = c.kill();
            let _ = c.wait();
        }
        exited.with_context(|| format!("node log:\n{}", self.log()))
    }

    /// Adds flags for the next start.
    pub fn add_args(&mut self, more: &[&str]) {
        self.extra.extend(more.iter().map(|s| s.to_string()));
    }

    /// Drops `flag` and its value from the next start (e.g. the previous
    /// release's command version, once the node is "upgraded").
    pub fn remove_flag(&mut self, flag: &str) {
        if let Some(i) = self.extra.iter().position(|a| a == flag) {
            self.extra.drain(i..(i + 2).min(self.extra.len()));
        }
    }

    /// Starts the node again on the same data dir and ports.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// `ctl cluster status` as JSON.
    pub fn status(&self) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::from_str(&self.ctl(&["cluster", "status"])?)?)
    }

    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn field<'a>(line: &'a str, key: &str) -> anyhow::Result<&'a str> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key)).with_context(|| format!("no {key} in {line:?}"))
}

/// A minimal HTTP/1.1 GET (status, body), enough for health checks and
/// `/metrics` without a client library.
pub fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    http_get_over(std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?, addr, path)
}

/// `http_get` from `source` (any 127.x.y.z).
pub fn http_get_from(source: [u8; 4], addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    http_get_over(connect_from(source, addr)?, addr, path)
}

fn http_get_over(mut s: std::net::TcpStream, addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    use std::io::{Read, Write};
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    s.read_to_string(&mut response)?;
    let status = response.get(9..12).context("short status line")?.parse()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// A TCP connection to `to` from `source` (any 127.x.y.z).
pub fn connect_from(source: [u8; 4], to: SocketAddr) -> anyhow::Result<std::net::TcpStream> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((source, 0)))?;
        socket.connect(to).await?.into_std()
    })?;
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// Runs `cmd`, which must exit by itself within `timeout` (it is killed
/// otherwise, with everything it started); returns whether it exited in time,
/// its status and all it printed.
pub fn run_to_exit(mut cmd: Command, timeout: Duration) -> (bool, std::process::ExitStatus, String) {
    use std::os::unix::process::CommandExt;
    // Its own process group: a script's background jobs hold its output open,
    // so killing the script alone would leave the read below waiting on them.
    cmd.process_group(0);
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("the command starts");
    let exited = wait_for("the command to exit", timeout, || child.try_wait().ok().flatten()).is_ok();
    if !exited {
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
    }
    let out = child.wait_with_output().expect("the command's output");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (exited, out.status, text)
}

/// One unlabelled sample from a node's `/metrics`.
pub fn metric(http_addr: SocketAddr, name: &str) -> anyhow::Result<f64> {
    let (_, body) = http_get(http_addr, "/metrics")?;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .with_context(|| format!("no {name} in /metrics"))
}

pub fn http_status(addr: SocketAddr, path: &str) -> anyhow::Result<u16> {
    Ok(http_get(addr, path)?.0)
}

/// A minimal HTTP/1.1 POST of a JSON body with a bearer token (status, body).
pub fn http_post(addr: SocketAddr, path: &str, token: &str, json: &str) -> anyhow::Result<(u16, String)> {
    http_request(addr, "POST", path, token, json, Duration::from_secs(15))
}

/// A minimal HTTP/1.1 request with a bearer token and a JSON body (may be
/// empty); an error if no answer came within `timeout`.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    json: &str,
    timeout: Duration,
) -> anyhow::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(timeout))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
        json.len()
    )?;
    let mut response = String::new();
    s.read_to_string(&mut response)?;
    let status = response.get(9..12).context("short status line")?.parse()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// A port that was free a moment ago, for programs that cannot take port 0.
/// Chosen below the kernel's ephemeral range: a port the kernel hands out
/// (another test's port 0, an outgoing connection) would be taken between
/// this check and the program's bind often enough to fail a suite run.
pub fn free_port() -> anyhow::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u32, ephemeral_low.max(11_000));
    // Test processes run side by side: each starts at its own place.
    let start = std::process::id().wrapping_mul(7919);
    for _ in 0..(high - low) {
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = low + start.wrapping_add(step.wrapping_mul(13)) % (high - low);
        if std::net::TcpListener::bind(("0.0.0.0", port as u16)).is_ok() {
            return Ok(port as u16);
        }
    }
    anyhow::bail!("no free port between {low} and {high}")
}

/// A helper program (HAProxy, Prometheus, a client script) with its output
/// collected; killed when dropped.
pub struct Service {
    name: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

/// Every line the child prints on stdout and stderr (both piped), as it comes.
fn collect_output(child: &mut Child) -> Arc<Mutex<Vec<String>>> {
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    for stream in [
        Box::new(child.stdout.take().expect("piped")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("piped")),
    ] {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                lines.lock().expect("lines lock").push(line);
            }
        });
    }
    lines
}

impl Service {
    pub fn start(name: &str, mut cmd: Command) -> anyhow::Result<Service> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {name} ({cmd:?})"))?;
        let lines = collect_output(&mut child);
        Ok(Service { name: name.to_string(), child, lines })
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines lock").clone()
    }

    /// Waits for an output line containing `text`; returns it.
    pub fn wait_for_line(&mut self, text: &str, timeout: Duration) -> anyhow::Result<String> {
        let lines = self.lines.clone();
        self.wait_for(&format!("{text:?}"), timeout, || {
            lines.lock().expect("lines lock").iter().find(|l| l.contains(text)).cloned()
        })
    }

    /// Polls `cond` like [`wait_for`], but fails at once, with the output so
    /// far, if the process exits first.
    pub fn wait_for<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut() -> Option<T>,
    ) -> anyhow::Result<T> {
        let mut exited = None;
        let mut exited_at: Option<Instant> = None;
        let found = wait_for(&format!("{}: {what}", self.name), timeout, || {
            if let Some(v) = cond() {
                return Some(Some(v));
            }
            exited = self.child.try_wait().ok().flatten();
            exited?;
            // The reader threads may not have passed on its last lines yet.
            let at = *exited_at.get_or_insert_with(Instant::now);
            (at.elapsed() > Duration::from_secs(1)).then_some(None)
        })
        .with_context(|| format!("{} printed:\n{}", self.name, self.lines().join("\n")))?;
        match (found, exited) {
            (Some(v), _) => Ok(v),
            (None, status) => {
                bail!("{} exited ({status:?}) before {what}:\n{}", self.name, self.lines().join("\n"))
            }
        }
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        wait_for(&format!("{} to exit", self.name), DEADLINE, || self.child.try_wait().ok().flatten())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Python of the venv holding the real hpfeeds 3.1.0 client.
pub fn hpfeeds_python() -> anyhow::Result<PathBuf> {
    Ok(hpfeeds_cli()?.with_file_name("python"))
}

/// The real hpfeeds 3.1.0 command line client, from a venv made on first use.
pub fn hpfeeds_cli() -> anyhow::Result<PathBuf> {
    venv_command("hpfeeds-venv")
}

/// schemathesis (PyPI), from a venv made on first use.
pub fn schemathesis_cli() -> anyhow::Result<PathBuf> {
    venv_command("schemathesis-venv")
}

/// Python of the venv with Playwright, axe-core and Selenium (the web app's browser tests).
pub fn browser_python() -> anyhow::Result<PathBuf> {
    venv_command("browser-venv")
}

/// Runs `scripts/SCRIPT`, which makes a venv once and prints its command's path.
fn venv_command(script: &str) -> anyhow::Result<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts").join(script);
    let out = Command::new("bash").arg(&path).output().with_context(|| format!("cannot run scripts/{script}"))?;
    if !out.status.success() {
        bail!("scripts/{script} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

/// `hpfeeds subscribe`, with every line it prints collected.
pub struct Subscriber {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Subscriber {
    /// A subscriber from a prepared `hpfeeds subscribe` command.
    pub fn start_command(mut cmd: Command) -> anyhow::Result<Subscriber> {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        let lines = collect_output(&mut child);
        Ok(Subscriber { child, lines })
    }

    pub fn start(addr: SocketAddr, ident: &str, secret: &str, channel: &str) -> anyhow::Result<Subscriber> {
        Self::start_with(addr, ident, secret, channel, &[])
    }

    /// As `start`, with extra client options (`--tls`, `--tlscert CA`).
    pub fn start_with(
        addr: SocketAddr,
        ident: &str,
        secret: &str,
        channel: &str,
        extra: &[&str],
    ) -> anyhow::Result<Subscriber> {
        let mut child = hpfeeds_command(addr, "subscribe", ident, secret, channel)?
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let lines = collect_output(&mut child);
        Ok(Subscriber { child, lines })
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines lock").clone()
    }

    pub fn saw(&self, text: &str) -> bool {
        self.lines().iter().any(|l| l.contains(text))
    }

    pub fn wait_for_line(&self, text: &str) -> anyhow::Result<()> {
        wait_for(&format!("a subscriber line containing {text:?}"), DEADLINE, || self.saw(text).then_some(()))
            .with_context(|| format!("subscriber printed:\n{}", self.lines().join("\n")))
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hpfeeds_command(
    addr: SocketAddr,
    action: &str,
    ident: &str,
    secret: &str,
    channel: &str,
) -> anyhow::Result<Command> {
    let mut cmd = Command::new(hpfeeds_cli()?);
    cmd.arg(action)
        .args(["--host", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(["-i", ident, "-s", secret, "-c", channel])
        .env("PYTHONUNBUFFERED", "1");
    Ok(cmd)
}

/// `hpfeeds publish` of one message; returns everything the client printed.
/// The client retries failed connections forever, so it is stopped after a deadline.
pub fn publish(addr: SocketAddr, ident: &str, secret: &str, channel: &str, payload: &str) -> anyhow::Result<String> {
    publish_with(addr, ident, secret, channel, payload, &[])
}

/// As `publish`, with extra client options.
pub fn publish_with(
    addr: SocketAddr,
    ident: &str,
    secret: &str,
    channel: &str,
    payload: &str,
    extra: &[&str],
) -> anyhow::Result<String> {
    let mut child = hpfeeds_command(addr, "publish", ident, secret, channel)?
        .args(extra)
        .arg(payload)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let status = wait_for("hpfeeds publish to finish", Duration::from_secs(15), || child.try_wait().ok().flatten());
    if status.is_err() {
        let _ = child.kill();
    }
    let out = child.wait_with_output()?;
    Ok(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Publishes `{prefix}-0` … `{prefix}-{count - 1}` on one connection of the
/// real hpfeeds client library, in that order.
pub fn publish_numbered(
    addr: SocketAddr,
    ident: &str,
    secret: &str,
    channel: &str,
    prefix: &str,
    count: usize,
) -> anyhow::Result<()> {
    publish_numbered_padded(addr, ident, secret, channel, prefix, count, 0)
}

/// As `publish_numbered`, each payload padded with dots to `size` bytes.
pub fn publish_numbered_padded(
    addr: SocketAddr,
    ident: &str,
    secret: &str,
    channel: &str,
    prefix: &str,
    count: usize,
    size: usize,
) -> anyhow::Result<()> {
    const SCRIPT: &str = r#"
import sys, hpfeeds
host, port, ident, secret, chan, prefix, count, size = sys.argv[1:9]
c = hpfeeds.new(host, int(port), ident, secret)
for i in range(int(count)):
    c.publish(chan, f'{prefix}-{i}'.ljust(int(size), '.').encode())
c.close()
print('published', flush=True)
"#;
    let (port, count, size) = (addr.port().to_string(), count.to_string(), size.to_string());
    let out = Command::new(hpfeeds_python()?)
        .arg("-c")
        .arg(SCRIPT)
        .args([&addr.ip().to_string(), &port, ident, secret, channel, prefix, &count, &size])
        .output()?;
    if !String::from_utf8_lossy(&out.stdout).contains("published") {
        bail!("publishing {prefix}-*: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Publishes `marker` with `ident` (a key of the subscriber's own owner) until
/// `sub` prints it: the subscription is then live.
pub fn sync(
    addr: SocketAddr,
    sub: &Subscriber,
    ident: &str,
    secret: &str,
    channel: &str,
    marker: &str,
) -> anyhow::Result<()> {
    wait_for(&format!("marker {marker} to come back"), DEADLINE, || {
        if sub.saw(marker) {
            return Some(());
        }
        publish(addr, ident, secret, channel, marker).ok()?;
        std::thread::sleep(Duration::from_millis(100));
        sub.saw(marker).then_some(())
    })
}

/// The shared secret every test cluster uses.
pub const CLUSTER_SECRET: &str = "test-cluster-secret-0123456789abcdef";

/// N real nodes: node 1 bootstraps, the others join through it. Each node's
/// cluster port is on its own loopback address `127.A.B.(10+id)`, unique to
/// this cluster, so `partition` cuts only this cluster's traffic.
pub struct Cluster {
    pub nodes: Vec<NodeProcess>,
    pub dir: tempfile::TempDir,
    bin: PathBuf,
    net: String,
    /// nftables tables this cluster created (removed on heal and on drop).
    cuts: Vec<String>,
}

impl Cluster {
    pub fn start(bin: &Path, n: usize, extra: &[&str]) -> anyhow::Result<Cluster> {
        let dir = tempfile::tempdir()?;
        static CLUSTERS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n_cluster = CLUSTERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let net = format!("127.{}.{}", 20 + std::process::id() % 200, 1 + n_cluster % 250);
        let mut cluster = Cluster { nodes: Vec::new(), dir, bin: bin.to_path_buf(), net, cuts: Vec::new() };
        for _ in 0..n {
            cluster.add_node(extra)?;
        }
        Ok(cluster)
    }

    /// Starts one more node that joins through node 1 (or bootstraps, if first).
    pub fn add_node(&mut self, extra: &[&str]) -> anyhow::Result<&NodeProcess> {
        let id = (self.nodes.len() + 1).to_string();
        let mut args: Vec<String> =
            vec!["--node-id".into(), id.clone(), "--cluster-secret".into(), CLUSTER_SECRET.into()];
        if let Some(first) = self.nodes.first() {
            args.extend(["--join".into(), first.cluster_addr.to_string()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let ip = format!("{}.{}", self.net, 10 + self.nodes.len() + 1);
        let node = NodeProcess::start_on(&self.bin, &self.dir.path().join(format!("node{id}")), &ip, &args)?;
        self.nodes.push(node);
        Ok(self.nodes.last().expect("just pushed"))
    }

    /// Node `id` (1-based).
    pub fn node(&mut self, id: u64) -> &mut NodeProcess {
        &mut self.nodes[id as usize - 1]
    }

    /// Cuts every packet between node `id`'s cluster address and the other
    /// nodes' (both directions), with nftables. Clients and HTTP are untouched.
    pub fn partition(&mut self, id: u64) -> anyhow::Result<()> {
        let net = format!("{}.0/24", self.net);
        self.cut_between(&format!("{id}"), id, &net)
    }

    /// Cuts the cluster traffic between nodes `a` and `b` only: each still
    /// reaches the third (a bridge).
    pub fn cut(&mut self, a: u64, b: u64) -> anyhow::Result<()> {
        let other = self.node(b).cluster_addr.ip().to_string();
        self.cut_between(&format!("{a}_{b}"), a, &other)
    }

    fn cut_between(&mut self, name: &str, id: u64, others: &str) -> anyhow::Result<()> {
        let ip = self.node(id).cluster_addr.ip().to_string();
        let table = format!("hpfriends_cut_{}_{name}", self.net.replace('.', "_"));
        let script = format!(
            "add table inet {table}\n\
             add chain inet {table} out {{ type filter hook output priority 0 ; }}\n\
             add rule inet {table} out ip saddr {ip} ip daddr {others} drop\n\
             add rule inet {table} out ip daddr {ip} ip saddr {others} drop\n"
        );
        nft(&script).context("the partition rules")?;
        self.cuts.push(table);
        Ok(())
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        for table in self.cuts.drain(..) {
            let _ = Command::new("nft").args(["delete", "table", "inet", &table]).status();
        }
    }

    /// The leader as the running nodes agree on it (itself a running node).
    pub fn wait_leader(&mut self, timeout: Duration) -> anyhow::Result<u64> {
        wait_for("the running nodes to agree on a running leader", timeout, || {
            let mut leaders = Vec::new();
            for n in self.nodes.iter().filter(|n| n.child.is_some()) {
                leaders.push(n.status().ok()?["leader"].as_u64()?);
            }
            leaders.dedup();
            let leader = *leaders.first()?;
            let running = self.nodes.get(leader as usize - 1).is_some_and(|n| n.child.is_some());
            (leaders.len() == 1 && running).then_some(leader)
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.heal();
    }
}

/// A file of the repository's deploy/ folder.
pub fn deploy_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(name)
}

/// HAProxy (Debian's package) in front of three nodes with the shipped
/// deploy/haproxy.cfg, plus a test-only stats page to see which nodes it routes to.
pub struct HaProxy {
    pub service: Service,
    /// Where hpfeeds clients connect.
    pub hpfeeds_addr: SocketAddr,
    /// The web app and API through the balancer.
    pub web_addr: SocketAddr,
    stats_addr: SocketAddr,
}

impl HaProxy {
    pub fn start(nodes: &[NodeProcess], dir: &Path) -> anyhow::Result<HaProxy> {
        let addr = || -> anyhow::Result<SocketAddr> { Ok(format!("127.0.0.1:{}", free_port()?).parse()?) };
        let (hpfeeds_addr, web_addr, stats_addr) = (addr()?, addr()?, addr()?);
        let stats_cfg = dir.join("haproxy-stats.cfg");
        std::fs::write(
            &stats_cfg,
            format!(
                "frontend test_stats\n    mode http\n    bind {stats_addr}\n    stats enable\n    stats uri /stats\n"
            ),
        )?;
        let mut cmd = Command::new("haproxy");
        cmd.args(["-db", "-f"]).arg(deploy_file("haproxy.cfg")).arg("-f").arg(&stats_cfg);
        cmd.env("HPFEEDS_BIND", hpfeeds_addr.to_string()).env("WEB_BIND", web_addr.to_string());
        for (i, n) in nodes.iter().enumerate() {
            let id = i + 1;
            cmd.env(format!("NODE{id}_HPFEEDS"), n.hpfeeds_addr.to_string())
                .env(format!("NODE{id}_HTTP_HOST"), n.http_addr.ip().to_string())
                .env(format!("NODE{id}_HTTP_PORT"), n.http_addr.port().to_string());
        }
        let mut service = Service::start("haproxy", cmd)?;
        service.wait_for("accepting", DEADLINE, || std::net::TcpStream::connect(hpfeeds_addr).ok())?;
        let mut proxy = HaProxy { service, hpfeeds_addr, web_addr, stats_addr };
        proxy.wait_all_up()?;
        Ok(proxy)
    }

    /// Waits until HAProxy's health checks have every node in rotation.
    pub fn wait_all_up(&mut self) -> anyhow::Result<()> {
        let stats = self.stats_addr;
        self.service.wait_for("every node in rotation", DEADLINE, || {
            let (_, csv) = http_get(stats, "/stats;csv").ok()?;
            let nodes: Vec<Vec<&str>> = csv
                .lines()
                .map(|l| l.split(',').collect::<Vec<_>>())
                .filter(|f| f.len() > 17 && f[0] == "brokers" && f[1].starts_with("node"))
                .collect();
            (nodes.len() == 3 && nodes.iter().all(|f| f[17] == "UP")).then_some(())
        })
    }
}

/// Runs an nftables script (one transaction: all of it or nothing).
fn nft(script: &str) -> anyhow::Result<()> {
    let mut nft = Command::new("nft").args(["-f", "-"]).stdin(Stdio::piped()).spawn().context("cannot run nft")?;
    std::io::Write::write_all(nft.stdin.as_mut().expect("piped"), script.as_bytes())?;
    anyhow::ensure!(nft.wait()?.success(), "nft refused the rules (root and nftables are needed):\n{script}");
    Ok(())
}

/// A kernel load balancer in front of the nodes' hpfeeds ports, built as
/// Kubernetes' kube-proxy builds a Service in its nftables mode: a service
/// address whose new connections are DNATed to a ready endpoint picked by
/// `numgen random`, established ones kept by conntrack. A controller thread
/// follows each node's `/readyz` as Kubernetes follows a readiness probe
/// (every 100 ms here; out after 3 failures in a row, Kubernetes' default
/// failureThreshold, back after 1 success) and rewrites the endpoint map in
/// one nft transaction when the ready set changes.
pub struct NftService {
    /// Where the sensors connect.
    pub addr: SocketAddr,
    table: String,
    stop: Arc<std::sync::atomic::AtomicBool>,
    controller: Option<std::thread::JoinHandle<()>>,
    /// Each ready set the controller applied (node indexes, 0-based), with
    /// the time since the service started.
    pub changes: Arc<Mutex<Vec<(Duration, Vec<usize>)>>>,
}

impl NftService {
    /// The service at `addr` (a loopback address no node uses, any port).
    pub fn start(nodes: &[NodeProcess], addr: SocketAddr) -> anyhow::Result<NftService> {
        let table = format!("hpfriends_service_{}_{}", addr.ip().to_string().replace('.', "_"), addr.port());
        let mut script = format!(
            "add table ip {table}\n\
             add chain ip {table} output {{ type nat hook output priority -100 ; }}\n\
             add chain ip {table} service\n\
             add rule ip {table} output ip daddr {} tcp dport {} goto service\n",
            addr.ip(),
            addr.port()
        );
        for (i, n) in nodes.iter().enumerate() {
            script.push_str(&format!(
                "add chain ip {table} endpoint{i}\nadd rule ip {table} endpoint{i} meta l4proto tcp dnat to {}\n",
                n.hpfeeds_addr
            ));
        }
        nft(&script)?;
        let http: Vec<SocketAddr> = nodes.iter().map(|n| n.http_addr).collect();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let changes: Arc<Mutex<Vec<(Duration, Vec<usize>)>>> = Arc::default();
        let (stopped, applied_changes, table_name) = (stop.clone(), changes.clone(), table.clone());
        let started = Instant::now();
        let controller = std::thread::spawn(move || {
            let (stop, changes, table) = (stopped, applied_changes, table_name);
            let mut applied: Option<Vec<usize>> = None;
            // Failed probes in a row per node; a node starts out of the map.
            let mut failures = vec![3; http.len()];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for (i, failed) in failures.iter_mut().enumerate() {
                    let ok = http_status(http[i], "/readyz").is_ok_and(|s| s == 200);
                    *failed = if ok { 0 } else { *failed + 1 };
                }
                let ready: Vec<usize> = (0..http.len()).filter(|&i| failures[i] < 3).collect();
                if applied.as_ref() != Some(&ready) {
                    // No ready endpoint: no rule, so a new connection meets the
                    // bare service address, where nothing listens (refused).
                    let mut script = format!("flush chain ip {table} service\n");
                    if !ready.is_empty() {
                        let map: Vec<String> =
                            ready.iter().enumerate().map(|(slot, i)| format!("{slot} : goto endpoint{i}")).collect();
                        script.push_str(&format!(
                            "add rule ip {table} service numgen random mod {} vmap {{ {} }}\n",
                            ready.len(),
                            map.join(", ")
                        ));
                    }
                    if nft(&script).is_ok() {
                        changes.lock().expect("no panic holding it").push((started.elapsed(), ready.clone()));
                        applied = Some(ready);
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let mut service = NftService { addr, table, stop, controller: Some(controller), changes };
        service.wait_ready(nodes.len())?;
        Ok(service)
    }

    /// Waits until `n` endpoints are in the map.
    pub fn wait_ready(&mut self, n: usize) -> anyhow::Result<()> {
        wait_for(&format!("{n} endpoints behind the service"), DEADLINE, || {
            let changes = self.changes.lock().expect("no panic holding it");
            (changes.last()?.1.len() == n).then_some(())
        })
    }
}

impl Drop for NftService {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(controller) = self.controller.take() {
            let _ = controller.join();
        }
        let _ = Command::new("nft").args(["delete", "table", "ip", &self.table]).status();
    }
}

/// The median of a bench's rounds (the upper one of an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs `openssl ARGS` in `dir`; the test fails if it does.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl is installed");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

const EC: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

/// A CA (`<name>.pem`, `<name>.key`) in `dir`.
pub fn make_ca(dir: &Path, name: &str) {
    let (pem, key, subj) = (format!("{name}.pem"), format!("{name}.key"), format!("/CN={name}"));
    openssl(
        dir,
        &[&["req", "-x509", "-nodes", "-days", "30"][..], &EC, &["-keyout", &key, "-out", &pem, "-subj", &subj]]
            .concat(),
    );
}

/// A certificate for `ip` (serverAuth and clientAuth), signed by CA `ca`:
/// `<name>.pem`, `<name>.key`.
pub fn make_node_cert(dir: &Path, ca: &str, name: &str, ip: &str) {
    let ext = format!("{name}.ext");
    std::fs::write(
        dir.join(&ext),
        format!(
            "subjectAltName=IP:{ip}\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\n"
        ),
    )
    .unwrap();
    let (key, csr, pem, subj) =
        (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"), format!("/CN={name}"));
    openssl(dir, &[&["req", "-new", "-nodes"][..], &EC, &["-keyout", &key, "-out", &csr, "-subj", &subj]].concat());
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "30",
            "-out",
            &pem,
            "-extfile",
            &ext,
        ],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_script_whose_background_job_outlives_it_then_run_to_exit_returns_at_its_timeout() {
        let mut script = Command::new("bash");
        script.arg("-c").arg("sleep 600 & echo started; while true; do sleep 1; done");
        let started = std::time::Instant::now();
        let (exited, _, out) = run_to_exit(script, Duration::from_secs(1));
        assert!(!exited);
        assert_eq!(out.trim(), "started");
        // Without killing the group the read waited for `sleep 600`.
        assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
    }

    #[test]
    fn given_free_ports_then_none_is_one_the_kernel_hands_out_and_they_differ() {
        let ephemeral_low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let ports: Vec<u16> = (0..50).map(|_| free_port().unwrap()).collect();
        assert!(ports.iter().all(|&p| (10_000..ephemeral_low).contains(&p)), "{ports:?}");
        let distinct: std::collections::BTreeSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
        // The kernel's own choice lands in its range, where free_port never looks.
        let kernel = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        assert!(kernel >= ephemeral_low, "{kernel}");
    }
}
