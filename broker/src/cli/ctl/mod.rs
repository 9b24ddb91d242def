//! `hpfriends ctl`: the HTTP API for people (and scripts, with `--json`).
//! The flags are here; each resource's commands are in a file of their own,
//! speaking the API's own types (`app::types`) through `client.rs`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

mod archive;
mod client;
mod cluster;
mod graph;
mod groups;
mod history;
mod keys;
mod messages;
mod shares;
mod users;

use client::{Api, Output};

#[derive(Args, Debug)]
pub struct CtlArgs {
    /// HTTP address of any node.
    #[arg(long, env = "HPFRIENDS_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Operator or user token.
    #[arg(long, env = "HPFRIENDS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the API's JSON instead of text for people.
    #[arg(long, env = "HPFRIENDS_JSON")]
    pub json: bool,
    /// Reads see every write committed before them (asks the leader).
    #[arg(long, env = "HPFRIENDS_CONSISTENT")]
    pub consistent: bool,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Subcommand, Debug)]
pub enum CtlCommand {
    /// Make the graph contain a declaration (JSON or TOML); idempotent.
    Apply { file: PathBuf },
    /// Import an hpfeeds 3.x JSON auth file as users, keys and shares.
    ImportHpfeeds { file: PathBuf },
    #[command(subcommand)]
    User(UserCmd),
    #[command(subcommand)]
    Group(GroupCmd),
    #[command(subcommand)]
    Share(ShareCmd),
    #[command(subcommand)]
    Key(KeyCmd),
    /// Show the path that lets --to read --from's data on --channel.
    Explain {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        #[arg(long)]
        channel: String,
    },
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Changes of the graph, newest first: who made them, when, through which node.
    History(HistoryArgs),
    /// Archived messages of a channel that you may read, oldest first.
    Messages(MessagesArgs),
    /// How long the archive keeps your messages, channel by channel.
    #[command(subcommand)]
    Archive(ArchiveCmd),
}

#[derive(Subcommand, Debug)]
pub enum ArchiveCmd {
    /// Keep your messages on a channel for less than the node does (`12h`, `2d`), not at all (`off`), or as the node does (`default`).
    Set {
        #[arg(long)]
        channel: String,
        #[arg(long)]
        keep: String,
        /// Whose messages (the operator names the user).
        #[arg(long)]
        owner: Option<String>,
    },
    /// The channels where you set a keep.
    List {
        #[arg(long)]
        owner: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct MessagesArgs {
    #[arg(long)]
    pub channel: String,
    /// From this time on: an age (`15m`, `1h`, `2d`), 2026-12-01T08:00:00Z, a date or Unix seconds.
    #[arg(long)]
    pub since: Option<String>,
    /// Before this time (the same forms).
    #[arg(long)]
    pub until: Option<String>,
    /// Only the messages of this key.
    #[arg(long)]
    pub publisher: Option<String>,
    /// At most this many messages.
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
    /// Then go on printing each message as it is archived, until interrupted
    /// (no --until, no --limit).
    #[arg(long, conflicts_with_all = ["until", "limit"])]
    pub follow: bool,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct HistoryArgs {
    /// Changes that touch this user (made by them, naming them, or about their groups).
    #[arg(long)]
    pub user: Option<String>,
    /// Changes about this channel.
    #[arg(long)]
    pub channel: Option<String>,
    /// From this time on: 2026-12-01, 2026-12-01T08:00:00Z or Unix seconds.
    #[arg(long)]
    pub since: Option<String>,
    /// Before this time.
    #[arg(long)]
    pub until: Option<String>,
    /// At most this many changes.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    #[command(subcommand)]
    pub command: Option<HistoryCmd>,
}

#[derive(Subcommand, Debug)]
pub enum HistoryCmd {
    /// Show how much history every node keeps; with a flag, change it (operator).
    Retention {
        #[arg(long)]
        max_age_days: Option<u32>,
        #[arg(long)]
        max_events: Option<u64>,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    Add {
        name: String,
    },
    List,
    Remove {
        name: String,
    },
    /// Issue a new API token for the user (replaces the old one).
    Token {
        name: String,
    },
    /// A one-time link for a person to set their web app password (the user is made if new).
    Invite {
        name: String,
    },
    /// A new one-time link to set the password again (the old password works until it is used).
    Reset {
        name: String,
    },
    /// End the user's sessions and stop their keys and tokens, on every node.
    Disable {
        name: String,
    },
    Enable {
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum GroupCmd {
    Add {
        name: String,
        /// First admin (needed with the operator token; a user creates groups as themselves).
        #[arg(long)]
        admin: Option<String>,
    },
    List,
    Invite {
        group: String,
        user: String,
    },
    /// Accept an invitation (the operator names the user with --user).
    Join {
        group: String,
        #[arg(long)]
        user: Option<String>,
    },
    Leave {
        group: String,
        #[arg(long)]
        user: Option<String>,
    },
    RemoveMember {
        group: String,
        user: String,
    },
}

#[derive(Args, Debug)]
pub struct ShareRef {
    #[arg(long)]
    pub from: String,
    /// A user, or group:NAME.
    #[arg(long)]
    pub to: String,
    #[arg(long)]
    pub channel: String,
}

/// A share's filter (docs/sharing.md, "Filters").
#[derive(Args, Debug)]
pub struct FilterArgs {
    /// Only messages for which this CEL condition is true, e.g.
    /// 'payload.eventid == "cowrie.login.success"'.
    #[arg(long = "where", value_name = "EXPR")]
    pub condition: Option<String>,
    /// Removes the value at this JSON Pointer (repeatable).
    #[arg(long, value_name = "POINTER")]
    pub redact: Vec<String>,
    /// Replaces the value at this JSON Pointer by the sender's keyed hash (repeatable).
    #[arg(long, value_name = "POINTER")]
    pub pseudonymize: Vec<String>,
}

impl FilterArgs {
    pub fn filter(&self) -> Option<hpfriends_graph::Filter> {
        let f = hpfriends_graph::Filter {
            condition: self.condition.clone(),
            redact: self.redact.clone(),
            pseudonymize: self.pseudonymize.clone(),
        };
        (!f.is_empty()).then_some(f)
    }
}

#[derive(Subcommand, Debug)]
pub enum ShareCmd {
    Add {
        #[command(flatten)]
        share: ShareRef,
        #[arg(long, value_parser = ["shares", "shares_all"])]
        kind: String,
        /// Once accepted, the recipient also reads the archive from before.
        #[arg(long)]
        with_history: bool,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Sets what the share lets through; with no option, clears its filter.
    Filter {
        #[command(flatten)]
        share: ShareRef,
        #[command(flatten)]
        filter: FilterArgs,
    },
    Accept(ShareRef),
    Remove(ShareRef),
    List {
        #[arg(long)]
        user: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    Add {
        #[arg(long)]
        owner: String,
        #[arg(long)]
        ident: String,
        /// Generated when omitted.
        #[arg(long)]
        secret: Option<String>,
        #[arg(long, value_delimiter = ',')]
        publish: Vec<String>,
        #[arg(long, value_delimiter = ',')]
        subscribe: Vec<String>,
        /// Subscriptions resume where the key's last connection left off:
        /// what it missed comes first when it subscribes again.
        #[arg(long)]
        resume: bool,
    },
    Remove {
        ident: String,
    },
    List {
        #[arg(long)]
        owner: Option<String>,
    },
    /// What a key did, summed over the cluster (every key of yours without IDENT).
    Stats {
        ident: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    Status,
    Leave { node_id: u64 },
}

pub async fn run(args: CtlArgs) -> anyhow::Result<()> {
    let api = Api::new(args.server.clone(), args.token.clone(), args.consistent);
    if let CtlCommand::Messages(m) = &args.command {
        // Printed as they come, a line each: they may be many.
        return messages::print(&api, m, args.json).await;
    }
    let Output { json, text } = execute(&api, &args.command).await?;
    if args.json {
        println!("{}", serde_json::to_string(&json)?);
    } else if !text.is_empty() {
        println!("{text}");
    }
    Ok(())
}

/// Runs one command; returns the API's JSON and the text for people.
async fn execute(api: &Api, cmd: &CtlCommand) -> anyhow::Result<Output> {
    use CtlCommand as C;
    match cmd {
        C::Apply { file } => graph::apply(api, file).await,
        C::ImportHpfeeds { file } => graph::import_hpfeeds(api, file).await,
        C::Explain { from, to, channel } => graph::explain(api, from, to, channel).await,
        C::User(u) => users::run(api, u).await,
        C::Group(g) => groups::run(api, g).await,
        C::Share(s) => shares::run(api, s).await,
        C::Key(k) => keys::run(api, k).await,
        C::Cluster(c) => cluster::run(api, c).await,
        C::History(h) => history::run(api, h).await,
        C::Archive(a) => archive::run(api, a).await,
        C::Messages(_) => unreachable!("printed by run"),
    }
}
