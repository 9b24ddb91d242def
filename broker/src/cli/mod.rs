//! The command line (DESIGN.md §4): `hpfriends serve` and `hpfriends ctl …`.
//! Every flag also reads `HPFRIENDS_<FLAG>` from the environment.

pub mod ctl;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Config;
pub use ctl::CtlArgs;

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
    /// HTTP URL of any member of the cluster to join.
    #[arg(long, env = "HPFRIENDS_JOIN")]
    pub join: Option<String>,
    #[arg(long, env = "HPFRIENDS_OPERATOR_TOKEN", hide_env_values = true)]
    pub operator_token: Option<String>,
    #[arg(long, env = "HPFRIENDS_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    #[arg(long, env = "HPFRIENDS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, env = "HPFRIENDS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Address of the TLS hpfeeds listener (with --tls-cert/--tls-key).
    #[arg(long, env = "HPFRIENDS_TLS_ADDR")]
    pub tls_addr: Option<String>,
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
        set!(node_id, data_dir, hpfeeds_addr, http_addr, cluster_addr, tls_addr);
        set_opt!(advertise_addr, join, operator_token, cluster_secret, tls_cert, tls_key);
        c.validate()?;
        Ok(c)
    }
}
