//! `hpfriends ctl`: the HTTP API for people (and scripts, with `--json`).

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

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
    /// Operator notes kept in the replicated log (needs command version 2 on every voter).
    #[command(subcommand)]
    Note(NoteCmd),
}

#[derive(Subcommand, Debug)]
pub enum NoteCmd {
    Add { text: String },
    List,
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
    from: String,
    /// A user, or group:NAME.
    #[arg(long)]
    to: String,
    #[arg(long)]
    channel: String,
}

#[derive(Subcommand, Debug)]
pub enum ShareCmd {
    Add {
        #[command(flatten)]
        share: ShareRef,
        #[arg(long, value_parser = ["shares", "shares_all"])]
        kind: String,
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
    },
    Remove {
        ident: String,
    },
    List {
        #[arg(long)]
        owner: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClusterCmd {
    Status,
    Leave { node_id: u64 },
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    consistent: bool,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base.trim_end_matches('/'));
        let mut req = self.http.request(method, &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "raw": text }));
        if !status.is_success() {
            let msg = value["error"]["message"].as_str().map(str::to_string).unwrap_or_else(|| text.clone());
            bail!("{status}: {msg}");
        }
        Ok(value)
    }
    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        if self.consistent {
            let sep = if path.contains('?') { '&' } else { '?' };
            return self.call(reqwest::Method::GET, &format!("{path}{sep}consistent=true"), None).await;
        }
        self.call(reqwest::Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
    async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::DELETE, path, None).await
    }
}

fn enc(s: &str) -> String {
    // Path segments and query values: keep unreserved characters, escape the rest.
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `path`, with `?key=value` when a filter is given.
fn filtered(path: &str, key: &str, value: Option<&str>) -> String {
    match value {
        Some(v) => format!("{path}?{key}={}", enc(v)),
        None => path.to_string(),
    }
}

fn share_body(s: &ShareRef) -> Value {
    json!({ "from": s.from, "to": s.to, "channel": s.channel })
}

/// Reads a declaration file: JSON, or TOML when the name ends in `.toml`.
fn read_declaration(file: &PathBuf) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    if file.extension().is_some_and(|e| e == "toml") {
        let v: toml::Value = toml::from_str(&text).with_context(|| format!("{} is not valid TOML", file.display()))?;
        Ok(serde_json::to_value(v)?)
    } else {
        serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", file.display()))
    }
}

pub async fn run(args: CtlArgs) -> anyhow::Result<()> {
    let api = Api {
        http: reqwest::Client::new(),
        base: args.server.clone(),
        token: args.token.clone(),
        consistent: args.consistent,
    };
    let (value, text) = execute(&api, &args.command).await?;
    if args.json {
        println!("{}", serde_json::to_string(&value)?);
    } else if !text.is_empty() {
        println!("{text}");
    }
    Ok(())
}

/// Runs one command; returns the API's JSON and the text for people.
async fn execute(api: &Api, cmd: &CtlCommand) -> anyhow::Result<(Value, String)> {
    use CtlCommand as C;
    Ok(match cmd {
        C::Apply { file } => {
            let v = api.post("/api/v1/apply", read_declaration(file)?).await?;
            let text = format!("applied {}: {} change(s)", file.display(), v["changes"]);
            (v, text)
        }
        C::ImportHpfeeds { file } => {
            let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
            let decl = crate::import::from_hpfeeds_auth(&text)?;
            // Old keys are kept as they are, short secrets too: each is named.
            let v = api.post("/api/v1/apply?allow_short_secrets=true", serde_json::to_value(&decl)?).await?;
            for warning in v["warnings"].as_array().into_iter().flatten() {
                eprintln!("warning: {}", warning.as_str().unwrap_or_default());
            }
            let summary = format!(
                "imported {}: {} users, {} keys, {} shares declared; {} change(s)",
                file.display(),
                decl.users.len(),
                decl.keys.len(),
                decl.shares.len(),
                v["changes"]
            );
            (v, summary)
        }
        C::User(u) => match u {
            UserCmd::Add { name } => {
                done(api.post("/api/v1/users", json!({ "name": name })).await?, format!("added user {name}"))
            }
            UserCmd::Remove { name } => {
                done(api.delete(&format!("/api/v1/users/{}", enc(name))).await?, format!("removed user {name}"))
            }
            UserCmd::List => {
                let v = api.get("/api/v1/users").await?;
                let text = lines(&v["users"], |u| u["name"].as_str().unwrap_or_default().to_string());
                (v, text)
            }
            UserCmd::Token { name } => {
                let v = api.post(&format!("/api/v1/users/{}/token", enc(name)), json!({})).await?;
                let text = v["token"].as_str().unwrap_or_default().to_string();
                (v, text)
            }
        },
        C::Note(n) => match n {
            NoteCmd::Add { text } => done(api.post("/api/v1/notes", json!({ "text": text })).await?, "noted".into()),
            NoteCmd::List => {
                let v = api.get("/api/v1/notes").await?;
                let text = lines(&v["notes"], |n| n.as_str().unwrap_or_default().to_string());
                (v, text)
            }
        },
        C::Group(g) => match g {
            GroupCmd::Add { name, admin } => done(
                api.post("/api/v1/groups", json!({ "name": name, "admin": admin })).await?,
                format!("added group {name}"),
            ),
            GroupCmd::List => {
                let v = api.get("/api/v1/groups").await?;
                let text = lines(&v["groups"], |g| {
                    let members: Vec<String> = g["members"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|m| {
                            let name = m["user"].as_str().unwrap_or_default();
                            if m["accepted"].as_bool() == Some(true) {
                                name.to_string()
                            } else {
                                format!("{name} (invited)")
                            }
                        })
                        .collect();
                    format!(
                        "{}  admins: {}  members: {}",
                        g["name"].as_str().unwrap_or_default(),
                        join(&g["admins"]),
                        members.join(", ")
                    )
                });
                (v, text)
            }
            GroupCmd::Invite { group, user } => done(
                api.post(&format!("/api/v1/groups/{}/invite", enc(group)), json!({ "user": user })).await?,
                format!("invited {user} to {group}"),
            ),
            GroupCmd::Join { group, user } => done(
                api.post(&format!("/api/v1/groups/{}/join", enc(group)), json!({ "user": user })).await?,
                format!("joined {group}"),
            ),
            GroupCmd::Leave { group, user } => done(
                api.post(&format!("/api/v1/groups/{}/leave", enc(group)), json!({ "user": user })).await?,
                format!("left {group}"),
            ),
            GroupCmd::RemoveMember { group, user } => done(
                api.post(&format!("/api/v1/groups/{}/remove-member", enc(group)), json!({ "user": user })).await?,
                format!("removed {user} from {group}"),
            ),
        },
        C::Share(s) => match s {
            ShareCmd::Add { share, kind } => {
                let mut body = share_body(share);
                body["kind"] = json!(kind);
                done(
                    api.post("/api/v1/shares", body).await?,
                    format!(
                        "{} offers {} to {} ({kind}); it carries data once accepted",
                        share.from, share.channel, share.to
                    ),
                )
            }
            ShareCmd::Accept(share) => done(
                api.post("/api/v1/shares/accept", share_body(share)).await?,
                format!("accepted {} -> {} on {}", share.from, share.to, share.channel),
            ),
            ShareCmd::Remove(share) => done(
                api.post("/api/v1/shares/remove", share_body(share)).await?,
                format!("removed {} -> {} on {}", share.from, share.to, share.channel),
            ),
            ShareCmd::List { user } => {
                let v = api.get(&filtered("/api/v1/shares", "user", user.as_deref())).await?;
                let text = lines(&v["shares"], |s| {
                    format!(
                        "{} -> {}  {}  {}  {}",
                        s["from"].as_str().unwrap_or_default(),
                        s["to"].as_str().unwrap_or_default(),
                        s["channel"].as_str().unwrap_or_default(),
                        s["kind"].as_str().unwrap_or_default(),
                        if s["accepted"].as_bool() == Some(true) { "accepted" } else { "pending" }
                    )
                });
                (v, text)
            }
        },
        C::Key(k) => match k {
            KeyCmd::Add { owner, ident, secret, publish, subscribe } => {
                let body = json!({ "owner": owner, "ident": ident, "secret": secret, "publish": publish, "subscribe": subscribe });
                let v = api.post("/api/v1/keys", body).await?;
                let text = format!("added key {ident}\nsecret: {}", v["key"]["secret"].as_str().unwrap_or_default());
                (v, text)
            }
            KeyCmd::Remove { ident } => {
                done(api.delete(&format!("/api/v1/keys/{}", enc(ident))).await?, format!("removed key {ident}"))
            }
            KeyCmd::List { owner } => {
                let v = api.get(&filtered("/api/v1/keys", "owner", owner.as_deref())).await?;
                let text = lines(&v["keys"], |k| {
                    format!(
                        "{}  owner: {}  publish: {}  subscribe: {}",
                        k["ident"].as_str().unwrap_or_default(),
                        k["owner"].as_str().unwrap_or_default(),
                        join(&k["publish"]),
                        join(&k["subscribe"])
                    )
                });
                (v, text)
            }
        },
        C::Explain { from, to, channel } => {
            let v =
                api.get(&format!("/api/v1/explain?from={}&to={}&channel={}", enc(from), enc(to), enc(channel))).await?;
            let text = v["text"].as_str().unwrap_or_default().to_string();
            (v, text)
        }
        C::Cluster(c) => match c {
            ClusterCmd::Status => {
                let v = api.get("/api/v1/cluster/status").await?;
                let mut text = format!(
                    "node {} is {} (term {}, leader {}, last applied {})",
                    v["node_id"],
                    v["role"].as_str().unwrap_or_default(),
                    v["term"],
                    v["leader"],
                    v["last_applied"]
                );
                for n in v["nodes"].as_array().into_iter().flatten() {
                    text.push_str(&format!(
                        "\n  node {}{}{}  lag {}  http {}  hpfeeds {}  cluster {}",
                        n["id"],
                        if n["leader"].as_bool() == Some(true) { " (leader)" } else { "" },
                        if n["voter"].as_bool() == Some(true) { "" } else { " (learner)" },
                        n["lag"],
                        n["http_addr"].as_str().unwrap_or_default(),
                        n["hpfeeds_addr"].as_str().unwrap_or_default(),
                        n["cluster_addr"].as_str().unwrap_or_default()
                    ));
                }
                (v, text)
            }
            ClusterCmd::Leave { node_id } => {
                let v = api.post("/api/v1/cluster/leave", json!({ "node_id": node_id })).await?;
                (v, format!("node {node_id} left the cluster"))
            }
        },
    })
}

fn done(v: Value, text: String) -> (Value, String) {
    (v, text)
}

fn lines(list: &Value, f: impl Fn(&Value) -> String) -> String {
    list.as_array().into_iter().flatten().map(f).collect::<Vec<_>>().join("\n")
}

fn join(list: &Value) -> String {
    list.as_array().into_iter().flatten().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(",")
}
