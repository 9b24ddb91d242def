//! The command line (docs/cli.md): `hpfriends serve` and `hpfriends ctl …`.
//! Every flag also reads `HPFRIENDS_<FLAG>` from the environment.

pub mod ctl;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Config;
pub use ctl::CtlArgs;

/// The `hpfriends` program. It lives in the library, not in main.rs, so the
/// server's futures are compiled once, here, rather than again in the binary.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Top::Serve(args) => {
                crate::telemetry::init_logging();
                let config = args.into_config()?;
                crate::server::serve(config, terminate()).await
            }
            Top::Ctl(args) => ctl::run(args).await,
            Top::Bench(args) => crate::bench::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn terminate() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[derive(Parser, Debug)]
#[command(name = "hpfriends", version, about = "hpfeeds broker with a social sharing graph, clustered with Raft")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Top,
}

#[derive(Subcommand, Debug)]
pub enum Top {
    /// Run a broker node (no arguments: a single node with data in ./data).
    Serve(ServeArgs),
    /// Administer users, groups, shares and keys over the HTTP API.
    Ctl(CtlArgs),
    /// Load an hpfeeds (or NATS) server and report rates, loss and latency;
    /// `bench relay` runs the raw forwarder that shows the machine's ceiling.
    Bench(crate::bench::BenchArgs),
}

#[derive(clap::Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML config file; flags and HPFRIENDS_* variables override it.
    #[arg(long, env = "HPFRIENDS_CONFIG")]
    pub config: Option<PathBuf>,
    #[arg(long, env = "HPFRIENDS_NODE_ID")]
    pub node_id: Option<u64>,
    #[arg(long, env = "HPFRIENDS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[arg(long, env = "HPFRIENDS_HPFEEDS_ADDR")]
    pub hpfeeds_addr: Option<String>,
    #[arg(long, env = "HPFRIENDS_HTTP_ADDR")]
    pub http_addr: Option<String>,
    #[arg(long, env = "HPFRIENDS_CLUSTER_ADDR")]
    pub cluster_addr: Option<String>,
    #[arg(long, env = "HPFRIENDS_ADVERTISE_ADDR")]
    pub advertise_addr: Option<String>,
    /// Cluster address (host:port) of any member of the cluster to join.
    #[arg(long, env = "HPFRIENDS_JOIN")]
    pub join: Option<String>,
    #[arg(long, env = "HPFRIENDS_OPERATOR_TOKEN", hide_env_values = true)]
    pub operator_token: Option<String>,
    #[arg(long, env = "HPFRIENDS_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// The cluster port with an operator's PKI instead of the secret: the CA
    /// peers' certificates must chain to (with --cluster-tls-cert/-key).
    #[arg(long, env = "HPFRIENDS_CLUSTER_TLS_CA")]
    pub cluster_tls_ca: Option<PathBuf>,
    /// This node's certificate for the cluster port (PEM; serverAuth and clientAuth).
    #[arg(long, env = "HPFRIENDS_CLUSTER_TLS_CERT")]
    pub cluster_tls_cert: Option<PathBuf>,
    #[arg(long, env = "HPFRIENDS_CLUSTER_TLS_KEY")]
    pub cluster_tls_key: Option<PathBuf>,
    #[arg(long, env = "HPFRIENDS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, env = "HPFRIENDS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Address of the TLS hpfeeds listener (with --tls-cert/--tls-key).
    #[arg(long, env = "HPFRIENDS_TLS_ADDR")]
    pub tls_addr: Option<String>,
    /// Drain: how long /readyz answers 503 before the node stops accepting.
    #[arg(long, env = "HPFRIENDS_DRAIN_GRACE_MS")]
    pub drain_grace_ms: Option<u64>,
    /// Drain: client connections are closed spread over this window.
    #[arg(long, env = "HPFRIENDS_DRAIN_CLOSE_WINDOW_MS")]
    pub drain_close_window_ms: Option<u64>,
    /// Publishes queued for one peer node before they are dropped (and the
    /// subscribers that would have got them are closed).
    #[arg(long, env = "HPFRIENDS_PEER_QUEUE_MESSAGES")]
    pub peer_queue_messages: Option<usize>,
    /// Shortest hpfeeds key secret a person may set (default 8).
    #[arg(long, env = "HPFRIENDS_MIN_KEY_SECRET_LEN")]
    pub min_key_secret_len: Option<usize>,
    /// In a Kubernetes StatefulSet: the pod's ordinal. Node id becomes
    /// ordinal + 1; pod 0 bootstraps (ignores --join), the others join.
    #[arg(long, env = "HPFRIENDS_POD_ORDINAL", conflicts_with = "node_id")]
    pub pod_ordinal: Option<u64>,
    /// Who may make a web app account: invite (default), open, closed.
    #[arg(long, env = "HPFRIENDS_SIGNUP")]
    pub signup: Option<crate::config::Signup>,
    /// Where people open the web app (invitation links point there).
    #[arg(long, env = "HPFRIENDS_WEB_URL")]
    pub web_url: Option<String>,
    /// Serve the web app and API over TLS with this certificate (PEM; with --web-tls-key).
    #[arg(long, env = "HPFRIENDS_WEB_TLS_CERT", requires = "web_tls_key")]
    pub web_tls_cert: Option<PathBuf>,
    #[arg(long, env = "HPFRIENDS_WEB_TLS_KEY", requires = "web_tls_cert")]
    pub web_tls_key: Option<PathBuf>,
    /// How long an invitation or password-reset link works (default 168).
    #[arg(long, env = "HPFRIENDS_INVITE_TTL_HOURS")]
    pub invite_ttl_hours: Option<u64>,
    /// How long a web app sign-in lasts (default 168).
    #[arg(long, env = "HPFRIENDS_SESSION_TTL_HOURS")]
    pub session_ttl_hours: Option<u64>,
    /// Rehearsing an upgrade: announce and read the previous command version.
    #[arg(long, env = "HPFRIENDS_COMMAND_VERSION", hide = true)]
    pub command_version: Option<u32>,
}

impl ServeArgs {
    /// Defaults → file → environment and flags (clap merges those two, flags winning).
    pub fn into_config(self) -> anyhow::Result<Config> {
        let mut c = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { c.$field = v; } )* };
        }
        macro_rules! set_opt {
            ($($field:ident),*) => { $( if self.$field.is_some() { c.$field = self.$field; } )* };
        }
        set!(
            node_id,
            data_dir,
            hpfeeds_addr,
            http_addr,
            cluster_addr,
            tls_addr,
            drain_grace_ms,
            drain_close_window_ms,
            peer_queue_messages,
            min_key_secret_len,
            signup,
            invite_ttl_hours,
            session_ttl_hours,
            command_version
        );
        set_opt!(
            advertise_addr,
            join,
            operator_token,
            cluster_secret,
            cluster_tls_ca,
            cluster_tls_cert,
            cluster_tls_key,
            tls_cert,
            tls_key,
            web_url,
            web_tls_cert,
            web_tls_key
        );
        if let Some(ordinal) = self.pod_ordinal {
            c.node_id = ordinal + 1;
            if ordinal == 0 {
                c.join = None;
            } else {
                anyhow::ensure!(c.join.is_some(), "--pod-ordinal {ordinal} needs --join (pod 0's cluster address)");
            }
        }
        c.validate()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(args: &[&str]) -> anyhow::Result<Config> {
        let cli = Cli::try_parse_from([&["hpfriends", "serve"], args].concat())?;
        match cli.command {
            Top::Serve(a) => a.into_config(),
            _ => unreachable!("parsed serve"),
        }
    }

    #[test]
    fn given_pod_ordinal_then_node_id_follows_and_only_pod_0_bootstraps() {
        let join = ["--join", "hpfriends-0.hpfriends-peers:7000"];
        let first = serve(&[&["--pod-ordinal", "0"][..], &join].concat()).unwrap();
        assert_eq!((first.node_id, first.join), (1, None));
        let third = serve(&[&["--pod-ordinal", "2"][..], &join].concat()).unwrap();
        assert_eq!((third.node_id, third.join.as_deref()), (3, Some(join[1])));
        let err = serve(&["--pod-ordinal", "1"]).unwrap_err().to_string();
        assert!(err.contains("needs --join"), "{err}");
        assert!(serve(&["--pod-ordinal", "1", "--node-id", "4"]).is_err(), "both may not be given");
    }

    /// docs/cli.md names every `serve` flag, every setting of the file, and
    /// every `ctl` command, so the reference cannot fall behind the code.
    #[test]
    fn given_docs_cli_md_then_it_names_every_flag_setting_and_command() {
        use clap::CommandFactory;
        let doc = include_str!("../../../docs/cli.md");
        let cli = Cli::command();
        let serve = cli.find_subcommand("serve").expect("serve");
        for flag in serve.get_arguments().filter_map(|a| a.get_long()).filter(|l| *l != "help") {
            assert!(doc.contains(&format!("`--{flag}")), "docs/cli.md does not name serve --{flag}");
        }
        let settings = toml::Value::try_from(Config::default()).expect("the config serializes");
        for key in settings.as_table().expect("a table").keys() {
            assert!(doc.contains(&format!("`{key}`")), "docs/cli.md does not name the setting {key}");
        }
        let ctl = cli.find_subcommand("ctl").expect("ctl");
        for command in ctl.get_subcommands().filter(|c| c.get_name() != "help") {
            let leaves: Vec<String> = match command.get_subcommands().filter(|c| c.get_name() != "help").count() {
                0 => vec![command.get_name().to_string()],
                _ => command
                    .get_subcommands()
                    .filter(|c| c.get_name() != "help")
                    .map(|c| format!("{} {}", command.get_name(), c.get_name()))
                    .collect(),
            };
            for leaf in leaves {
                assert!(doc.contains(&format!("`{leaf}")), "docs/cli.md does not name ctl {leaf}");
            }
        }
    }
}
