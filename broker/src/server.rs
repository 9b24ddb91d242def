//! `hpfriends serve`: binds the listeners, starts the Raft node, wires the
//! published view into routing, serves until SIGTERM/SIGINT, then drains
//! (ARCHITECTURE.md, "Drain"): not ready at once, stop accepting after the grace period,
//! hand Raft leadership to a caught-up peer, close clients spread over the
//! close window, flush the peer links, stop.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hpfriends_consensus::cluster_tls::Trust;
use hpfriends_consensus::network::{decode, encode};
use hpfriends_consensus::{ConsensusNode, JoinError, NodeInfo, NodeOptions};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::archive::{self, Archive};
use crate::cluster::peers::Peers;
use crate::config::Config;
use crate::hpfeeds::connection::{ConnectionConfig, Connections};
use crate::hpfeeds::listener::{tls_acceptor, Accepting, Listener};
use crate::http;
use crate::protocol::Limits;
use crate::routing::Switchboard;
use crate::state::{AccountSettings, AppState};

/// How long a new node keeps asking to join.
const JOIN_DEADLINE: Duration = Duration::from_secs(120);
/// How long one join request may take (the leader adds joins one at a time,
/// each once the learner has caught up).
const JOIN_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long connections get, past the close window, to flush and finish.
const SESSION_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a draining leader tries to hand leadership over.
const HAND_OFF_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the peer links get to send what is queued for them.
const LINK_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// A started node.
pub struct Running {
    pub hpfeeds_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub cluster_addr: SocketAddr,
    pub tls_addr: Option<SocketAddr>,
    /// Where people open the web app.
    pub web_url: String,
    pub operator_token: String,
    pub node: Arc<ConsensusNode>,
    pub switchboard: Arc<Switchboard>,
    pub peers: Arc<Peers>,
    connections: Arc<Connections>,
    archive: Option<Arc<Archive>>,
    draining: Arc<AtomicBool>,
    grace: Duration,
    close_window: Duration,
    stop_accepting: CancellationToken,
    drain: CancellationToken,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    listener_tasks: Vec<tokio::task::JoinHandle<()>>,
    http_task: tokio::task::JoinHandle<()>,
    cluster_task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    /// Keeps a fan-out link to every peer; ends with `shutdown`.
    links_task: tokio::task::JoinHandle<()>,
    /// Writes resume keys' places; ends with `stop_resumes`, after the connections.
    resumes_task: Option<tokio::task::JoinHandle<()>>,
    stop_resumes: CancellationToken,
}

/// Runs a node until `stop` resolves.
pub async fn serve(config: Config, stop: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let running = start(&config).await?;
    // One line a person (and the test harness) can read.
    println!(
        "hpfriends node {} listening: hpfeeds={} http={} cluster={}{} data={}",
        config.node_id,
        running.hpfeeds_addr,
        running.http_addr,
        running.cluster_addr,
        running.tls_addr.map(|a| format!(" tls={a}")).unwrap_or_default(),
        config.data_dir.display()
    );
    println!(
        "web app: open {}/ (the operator signs in with the token in {})",
        running.web_url,
        config.data_dir.join("operator-token").display()
    );
    stop.await;
    tokio::select! {
        _ = running.drain() => {}
        // A person at the terminal who does not want to wait for the drain.
        _ = tokio::signal::ctrl_c() => tracing::warn!("second interrupt: exiting without finishing the drain"),
    }
    Ok(())
}

/// Binds every listener, starts Raft and begins serving. Boxed so that the
/// crates calling it (tests, benches) use the future compiled here instead of
/// compiling the whole start-up again.
pub fn start(config: &Config) -> futures::future::BoxFuture<'_, anyhow::Result<Running>> {
    Box::pin(start_node(config))
}

async fn start_node(config: &Config) -> anyhow::Result<Running> {
    config.validate()?;
    private_data_dir(&config.data_dir)?;
    let max_connections = fit_fd_limit(config.max_connections)?;
    crate::telemetry::prometheus();
    let hpfeeds = bind("hpfeeds", &config.hpfeeds_addr).await?;
    let http_listener = bind("http", &config.http_addr).await?;
    let cluster_listener = bind("cluster", &config.cluster_addr).await?;
    let cluster_addr = cluster_listener.local_addr()?;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some((tls_acceptor(cert, key)?, bind("tls", &config.tls_addr).await?)),
        _ => None,
    };
    let web_tls = match (&config.web_tls_cert, &config.web_tls_key) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
        _ => None,
    };
    let hpfeeds_addr = hpfeeds.local_addr()?;
    let http_addr = http_listener.local_addr()?;
    let operator_token = match secret_file(config.operator_token_file.as_deref(), "operator_token")? {
        Some(t) => t,
        None => stored_secret(config.operator_token.as_deref(), &config.data_dir, "operator-token", "operator_token")?,
    };
    let cluster_secret =
        secret_file(config.cluster_secret_file.as_deref(), "cluster_secret")?.or(config.cluster_secret.clone());
    let trust = match (&config.cluster_tls_ca, &config.cluster_tls_cert, &config.cluster_tls_key) {
        (Some(ca), Some(cert), Some(key)) => Trust::Pki { ca: ca.clone(), cert: cert.clone(), key: key.clone() },
        _ => Trust::Secret(
            match (&cluster_secret, &config.join) {
                (Some(s), _) => s.clone(),
                (None, Some(_)) => {
                    anyhow::bail!(
                        "--join needs --cluster-secret (the secret of the cluster to join) or --cluster-tls-*"
                    )
                }
                (None, None) => stored_secret(None, &config.data_dir, "cluster-secret", "cluster_secret")?,
            }
            .into_bytes(),
        ),
    };

    let advertise = |addr: SocketAddr| match &config.advertise_addr {
        Some(host) => format!("{host}:{}", addr.port()),
        None => addr.to_string(),
    };
    let info = NodeInfo {
        cluster_addr: advertise(cluster_addr),
        http_addr: advertise(http_addr),
        hpfeeds_addr: advertise(hpfeeds_addr),
    };
    // Before the node starts: loading the snapshot and replaying the log
    // already apply, and the switchboard takes each result as its view.
    let peers = Arc::new(Peers::new(config.peer_queue_messages));
    let archive = match config.archive {
        true => Some(Archive::open(
            &config.data_dir.join("archive"),
            config.node_id,
            archive::Retention { keep: config.archive_keep.0, max_bytes: config.archive_max_bytes },
        )?),
        false => None,
    };
    let switchboard = Arc::new(Switchboard::new(Arc::default(), peers.clone(), archive.clone()));
    let node = Arc::new(
        ConsensusNode::start(NodeOptions {
            node_id: config.node_id,
            data_dir: config.data_dir.clone(),
            info: info.clone(),
            bootstrap: config.join.is_none(),
            trust,
            snapshot_every_logs: config.snapshot_every_logs,
            command_version: config.command_version,
            on_apply: switchboard.clone(),
        })
        .await?,
    );

    let resumes = archive.as_ref().map(|a| {
        crate::hpfeeds::resume::Resumes::new(
            a.clone(),
            node.clone(),
            config.resume_max_messages,
            config.resume_max_bytes,
        )
    });
    let connections = Arc::new(
        Connections::new(
            switchboard.clone(),
            ConnectionConfig {
                broker_name: config.broker_name.clone(),
                login_timeout: config.login_timeout(),
                max_outbound_bytes: config.max_outbound_bytes,
                limits: Limits { max_publish_body: config.max_publish_bytes },
                close_window: config.drain_close_window(),
                metrics_per_ident: config.metrics_per_ident,
                max_subscriptions: config.max_subscriptions_per_connection,
            },
        )
        .with_resumes(resumes.clone()),
    );
    let stop_accepting = CancellationToken::new();
    let drain = CancellationToken::new();
    let shutdown = CancellationToken::new();
    tokio::spawn(connections.clone().forget_removed_keys(shutdown.clone()));
    if let Some(a) = &archive {
        tokio::spawn(follow_keeps(node.clone(), switchboard.clone(), a.clone(), shutdown.clone()));
    }
    // Stopped by hand after the last connection closed, so its place is written.
    let stop_resumes = CancellationToken::new();
    let resumes_task = resumes.map(|r| tokio::spawn(r.write_places(stop_resumes.clone())));
    let tracker = TaskTracker::new();
    let draining = Arc::new(AtomicBool::new(false));

    // One budget for both listeners: it is what the file descriptor limit was checked against.
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let mut listeners = vec![Listener { listener: hpfeeds, tls: None, slots: slots.clone() }];
    let mut tls_addr = None;
    if let Some((acceptor, l)) = tls {
        tls_addr = Some(l.local_addr()?);
        listeners.push(Listener { listener: l, tls: Some(acceptor), slots });
    }
    let mut listener_tasks = Vec::new();
    let listening = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let listener_count = listeners.len();
    for l in listeners {
        let up = Accepting::new(listening.clone());
        let run = l.run(connections.clone(), stop_accepting.clone(), drain.clone(), tracker.clone());
        listener_tasks.push(tokio::spawn(async move {
            let _up = up;
            run.await
        }));
    }

    let accounts = AccountSettings::new(config, &advertise(http_addr));
    let state = AppState {
        switchboard: switchboard.clone(),
        peers: peers.clone(),
        node: node.clone(),
        operator_token: operator_token.clone().into(),
        draining: draining.clone(),
        min_key_secret_len: config.min_key_secret_len,
        max_channels_per_key: config.max_channels_per_key,
        listening,
        listeners: listener_count,
        accounts: accounts.clone(),
        connections: connections.clone(),
        archive: archive.clone(),
    };
    let grpc_shutdown = shutdown.clone();
    let raft_service = node.grpc_service();
    let fanout_service =
        crate::cluster::service(switchboard.clone(), peers.clone(), node.cluster_tls().clone(), shutdown.clone());
    let report_service = crate::cluster::report::service(state.clone(), node.cluster_tls().clone());
    let copy_service = archive
        .as_ref()
        .map(|a| crate::cluster::copies::service(a.clone(), node.cluster_tls().clone(), shutdown.clone()));
    if let Some(a) = &archive {
        tokio::spawn(crate::cluster::copies::follow_peers(node.clone(), a.clone(), shutdown.clone()));
    }
    let incoming = node.cluster_tls().incoming(cluster_listener);
    let links_task = tokio::spawn(crate::cluster::maintain_links(
        node.clone(),
        switchboard.clone(),
        peers.clone(),
        shutdown.clone(),
    ));
    let cluster_task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            // HTTP/2's default 64 KiB stream window would cost a round trip
            // per fan-out chunk (256 KiB) or large publish.
            .initial_stream_window_size(PEER_STREAM_WINDOW)
            .initial_connection_window_size(PEER_STREAM_WINDOW * 2)
            // Peers may send a fan-out batch in one DATA frame: with HTTP/2's
            // 16 KiB default each side spent a syscall per ~50 publishes.
            .max_frame_size(PEER_MAX_FRAME)
            .add_service(raft_service)
            .add_service(fanout_service)
            .add_service(report_service)
            .add_optional_service(copy_service)
            .serve_with_incoming_shutdown(incoming, grpc_shutdown.cancelled_owned())
            .await
    });

    let http_task = tokio::spawn(http::serve::serve(
        http_listener,
        http_routes(state),
        web_tls,
        config.http_header_timeout(),
        http::serve::Caps { total: config.http_max_connections, per_address: config.http_max_connections_per_address },
        config.proxy_protocol_nets(),
        shutdown.clone(),
    ));
    tracing::info!(%hpfeeds_addr, %http_addr, %cluster_addr, node_id = config.node_id, "serving");
    if let Some(member) = &config.join {
        if !node.is_initialized().await {
            join_cluster(&node, member, config.node_id, &info).await?;
        }
    }
    Ok(Running {
        hpfeeds_addr,
        http_addr,
        cluster_addr,
        tls_addr,
        web_url: accounts.web_url.clone(),
        operator_token,
        node,
        switchboard,
        peers,
        connections,
        archive,
        draining,
        grace: config.drain_grace(),
        close_window: config.drain_close_window(),
        stop_accepting,
        drain,
        shutdown,
        tracker,
        listener_tasks,
        http_task,
        cluster_task,
        links_task,
        resumes_task,
        stop_resumes,
    })
}

impl Running {
    /// The drain of ARCHITECTURE.md, then stop. Every step is bounded in time,
    /// so a stuck client or peer cannot keep the node from exiting.
    pub async fn drain(mut self) {
        tracing::info!(grace = ?self.grace, close_window = ?self.close_window, "draining: /readyz now answers 503");
        self.draining.store(true, Ordering::Release);
        tokio::time::sleep(self.grace).await;

        self.stop_accepting.cancel();
        for t in std::mem::take(&mut self.listener_tasks) {
            let _ = t.await;
        }
        tracing::info!("draining: no longer accepting clients");
        match self.node.hand_off_leadership(HAND_OFF_TIMEOUT).await {
            Ok(Some(leader)) => tracing::info!(leader, "draining: handed Raft leadership over"),
            Ok(None) => {}
            Err(e) => tracing::warn!("draining: could not hand leadership over, stopping as leader: {e}"),
        }

        self.drain.cancel();
        self.tracker.close();
        let sessions_done = self.close_window + SESSION_FLUSH_TIMEOUT;
        if tokio::time::timeout(sessions_done, self.tracker.wait()).await.is_err() {
            tracing::warn!("draining: connections did not finish within {sessions_done:?}");
        }
        if tokio::time::timeout(LINK_FLUSH_TIMEOUT, self.peers.flushed()).await.is_err() {
            tracing::warn!(queued = self.peers.queued(), "draining: peer links did not flush in time");
        }
        self.stop().await;
    }

    /// Stops at once: closes every listener and session, stops Raft.
    pub async fn stop(self) {
        tracing::info!("shutting down");
        self.draining.store(true, Ordering::Release);
        // Connections not yet told to close go at once.
        self.connections.set_close_window(Duration::ZERO);
        self.stop_accepting.cancel();
        self.drain.cancel();
        self.shutdown.cancel();
        self.tracker.close();
        for t in self.listener_tasks {
            let _ = t.await;
        }
        let sessions_done = self.close_window + SESSION_FLUSH_TIMEOUT;
        if tokio::time::timeout(sessions_done, self.tracker.wait()).await.is_err() {
            tracing::warn!("connections did not finish within {sessions_done:?}");
        }
        // The places resume keys' connections left, written while Raft still runs.
        self.stop_resumes.cancel();
        if let Some(task) = self.resumes_task {
            stop_within(task, "writing resume places").await;
        }
        // Graceful HTTP and gRPC shutdown waits for open connections; bounded,
        // so a stuck client or peer cannot hold the exit.
        stop_within(self.http_task, "the HTTP server").await;
        // Raft stops after the cluster port, so no peer request finds it stopped.
        stop_within(self.cluster_task, "the cluster port").await;
        stop_within(self.links_task, "the links to peers").await;
        if tokio::time::timeout(SERVER_STOP_TIMEOUT, self.node.shutdown()).await.is_err() {
            tracing::warn!("Raft did not stop within {SERVER_STOP_TIMEOUT:?}");
        }
        // Every connection is closed: nothing more is offered to the archive.
        if let Some(archive) = self.archive {
            let _ = tokio::task::spawn_blocking(move || archive.stop()).await;
        }
    }
}

/// Hands the archive the owners' keeps each time the graph changes.
async fn follow_keeps(
    node: Arc<ConsensusNode>,
    switchboard: Arc<Switchboard>,
    archive: Arc<Archive>,
    stop: CancellationToken,
) {
    let mut views = switchboard.watch_views();
    loop {
        node.read_graph(|g| archive.set_keeps(g));
        tokio::select! {
            changed = views.changed() => if changed.is_err() { return },
            _ = stop.cancelled() => return,
        }
    }
}

/// Every route of the HTTP listener: the API, then the web app, with the
/// not-found answers, the security headers, consistent reads and the deadline
/// around them.
fn http_routes(state: AppState) -> axum::Router {
    use axum::response::IntoResponse;
    http::api::routes()
        .with_state(state.clone())
        .merge(crate::web::routes(state.clone()))
        .fallback(|uri: axum::http::Uri| async move {
            if uri.path().starts_with("/api/") {
                http::ApiError::not_found("no such endpoint").into_response()
            } else {
                crate::web::not_found().into_response()
            }
        })
        .layer(axum::middleware::map_response(crate::web::security_headers))
        .layer(axum::middleware::from_fn_with_state(state, http::api::consistent_reads))
        .layer(axum::middleware::from_fn_with_state(http::api::REQUEST_TIMEOUT, http::serve::request_deadline))
}

/// HTTP/2 flow-control window for each stream a peer opens on the cluster port.
/// h2 returns credit once half of it is consumed: at 4 MiB a fan-out link with
/// 4 MiB of 64 KiB publishes in flight waited for it (6–7k msg/s; 9–10k now).
const PEER_STREAM_WINDOW: u32 = 16 << 20;
/// Largest HTTP/2 frame a peer may send on the cluster port.
const PEER_MAX_FRAME: u32 = 1 << 20;

/// How long a server gets to close its connections before it is aborted.
const SERVER_STOP_TIMEOUT: Duration = Duration::from_secs(2);

async fn stop_within<T>(mut task: tokio::task::JoinHandle<T>, what: &str) {
    if tokio::time::timeout(SERVER_STOP_TIMEOUT, &mut task).await.is_err() {
        tracing::info!("{what} still had open connections after {SERVER_STOP_TIMEOUT:?}; closing them");
        task.abort();
    }
}

/// Connections the kernel holds for `accept` (bounded by net.core.somaxconn):
/// when a node restarts, its thousands of sensors reconnect at once. The 128
/// of `TcpListener::bind` overflowed at 256 logins in flight, and each
/// overflowed SYN waited a 1 s retransmit (docs/BENCHMARKS.md, the fleet).
const LISTEN_BACKLOG: u32 = 4096;

async fn bind(what: &str, addr: &str) -> anyhow::Result<TcpListener> {
    let listen = async {
        let mut last = None;
        for a in tokio::net::lookup_host(addr).await? {
            let socket = if a.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
            socket.set_reuseaddr(true)?;
            match socket.bind(a).and_then(|()| socket.listen(LISTEN_BACKLOG)) {
                Ok(listener) => return Ok(listener),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("the address resolves to nothing")))
    };
    listen.await.with_context(|| format!("cannot listen for {what} on {addr}"))
}

/// The secret in `path` (`*_file` settings), trimmed and checked.
fn secret_file(path: Option<&Path>, setting: &'static str) -> anyhow::Result<Option<String>> {
    let Some(path) = path else { return Ok(None) };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {setting}_file {}", path.display()))?;
    let secret = text.trim().to_string();
    crate::config::check_secret(setting, &secret).with_context(|| format!("in {}", path.display()))?;
    Ok(Some(secret))
}

/// A configured secret, or one kept in `<data_dir>/<file>` (generated on
/// first start, readable by the owner only).
fn stored_secret(
    configured: Option<&str>,
    data_dir: &Path,
    file: &str,
    setting: &'static str,
) -> anyhow::Result<String> {
    if let Some(t) = configured {
        return Ok(t.to_string());
    }
    let path = data_dir.join(file);
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim().to_string();
        crate::config::check_secret(setting, &t).with_context(|| format!("in {}", path.display()))?;
        return Ok(t);
    }
    std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
    let secret = hex::encode(rand::random::<[u8; 24]>());
    write_private(&path, &secret)?;
    println!("generated {}", path.display());
    Ok(secret)
}

/// Asks the cluster through `member` (any member's cluster address) to add
/// this node, over the cluster port; retries until the join is done, and
/// stops at once when the member refuses this node or does not trust it.
async fn join_cluster(node: &ConsensusNode, member: &str, id: u64, info: &NodeInfo) -> anyhow::Result<()> {
    use hpfriends_consensus::cluster_tls::ConnectError;
    let deadline = tokio::time::Instant::now() + JOIN_DEADLINE;
    let tls = node.cluster_tls();
    loop {
        let why = match tls.probe(member).await {
            Err(e @ ConnectError::Refused { .. }) => anyhow::bail!("cannot join through {member}: {e}"),
            Err(e) => e.to_string(),
            Ok(_) => {
                let mut rpc = hpfriends_consensus::network::connect(member, tls.clone())?;
                match tokio::time::timeout(JOIN_ATTEMPT_TIMEOUT, rpc.join(encode(&(id, info.clone())))).await {
                    Err(_) => format!("no answer within {JOIN_ATTEMPT_TIMEOUT:?}"),
                    Ok(Err(status)) => hpfriends_consensus::cluster_tls::error_chain(&status),
                    Ok(Ok(reply)) => match decode::<Result<String, JoinError>>(reply.get_ref())? {
                        Ok(cluster_id) => {
                            node.joined(&cluster_id)?;
                            tracing::info!(%member, %cluster_id, "joined the cluster");
                            return Ok(());
                        }
                        Err(e) if e.is_final() => anyhow::bail!("{member} refused to add this node: {e}"),
                        Err(e) => e.to_string(),
                    },
                }
            }
        };
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "could not join through {member}: {why}");
        tracing::info!(%member, reason = %why, "join not done yet, retrying");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// File descriptors kept for everything but hpfeeds clients: listeners,
/// HTTP connections (at most `http_max_connections`, 512), peers (the
/// cluster port bounds its handshakes), RocksDB.
const RESERVED_FDS: u64 = 1024;

/// Raises the soft file descriptor limit to the hard one, and checks that
/// `max_connections` clients fit in it beside the reserve (so HTTP and the
/// cluster port keep working with every client slot taken). The default is
/// lowered to what fits, with a warning; a configured value is refused.
fn fit_fd_limit(max_connections: usize) -> anyhow::Result<usize> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        if let Err(e) = setrlimit(Resource::Nofile, Rlimit { current: limit.maximum, maximum: limit.maximum }) {
            tracing::warn!("cannot raise the file descriptor limit to {:?}: {e}", limit.maximum);
        }
    }
    let Some(fds) = getrlimit(Resource::Nofile).current else { return Ok(max_connections) };
    let fits = fds.saturating_sub(RESERVED_FDS) as usize;
    if max_connections <= fits {
        return Ok(max_connections);
    }
    anyhow::ensure!(
        max_connections == Config::default().max_connections && fits > 0,
        "max_connections = {max_connections} needs {} file descriptors with the {RESERVED_FDS} this node keeps for \
         HTTP, peers and storage, but this process may open {fds} (ulimit -Hn): raise the limit or lower \
         max_connections",
        max_connections as u64 + RESERVED_FDS
    );
    tracing::warn!(fds, "the file descriptor limit fits {fits} clients: max_connections lowered to {fits}");
    Ok(fits)
}

/// The data dir holds key secrets (the Raft log) and tokens: everything this
/// process creates is for its owner only, and a readable existing dir is named.
fn private_data_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create data dir {}", dir.display()))?;
    }
    let mode =
        std::fs::metadata(dir).with_context(|| format!("cannot read data dir {}", dir.display()))?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            "data dir {} is readable by others (mode {:o}): it holds key secrets; run chmod 700 on it",
            dir.display(),
            mode & 0o777
        );
    }
    Ok(())
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}
