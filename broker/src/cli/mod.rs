//! The command line (docs/cli.md): `hpfriends serve` and `hpfriends ctl …`.
//! Every flag also reads `HPFRIENDS_<FLAG>` from the environment.

pub mod ctl;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{Config, SETTINGS};
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

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is
/// called, not when the future is first polled: a SIGTERM sent as soon as the
/// node says it listens must drain it, not kill it.
fn terminate() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
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

/// `serve`'s arguments: `--config`, `--pod-ordinal`, and a flag for every
/// setting of `config::SETTINGS`, each also read from its `HPFRIENDS_*`
/// variable (clap merges the two, the flag winning).
#[derive(Debug, Default)]
pub struct ServeArgs {
    /// TOML config file; flags and HPFRIENDS_* variables override it.
    pub config: Option<PathBuf>,
    /// In a Kubernetes StatefulSet: node id = ordinal + 1.
    pub pod_ordinal: Option<u64>,
    /// The settings given by flag or variable: index in `SETTINGS`, text.
    given: Vec<(usize, String)>,
    /// Secrets given as flags, which every local user can read in the process list.
    secrets_on_command_line: Vec<&'static str>,
}

/// Flag and variable names are made once per program from the settings'
/// names; clap keeps them for the program's life.
fn lasting(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

impl clap::Args for ServeArgs {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        use clap::{value_parser, Arg};
        let mut cmd = cmd
            .arg(
                Arg::new("config")
                    .long("config")
                    .env("HPFRIENDS_CONFIG")
                    .value_name("FILE")
                    .value_parser(value_parser!(PathBuf))
                    .help("TOML config file; flags and HPFRIENDS_* variables override it"),
            )
            .arg(
                Arg::new("pod_ordinal")
                    .long("pod-ordinal")
                    .env("HPFRIENDS_POD_ORDINAL")
                    .value_name("N")
                    .value_parser(value_parser!(u64))
                    .conflicts_with("node_id")
                    .help(POD_ORDINAL),
            );
        for setting in SETTINGS {
            // A value is checked as the setting reads it, so clap names the flag.
            let check = move |text: &str| setting.set(&mut Config::default(), text).map(|()| text.to_string());
            cmd = cmd.arg(
                Arg::new(setting.name)
                    .long(lasting(setting.flag()))
                    .env(lasting(setting.env()))
                    .value_name(setting.value_name)
                    .value_parser(check)
                    .help(format!("{} (default: {})", setting.what, setting.default.replace('`', "")))
                    .hide(setting.hidden)
                    .hide_env_values(setting.secret),
            );
        }
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl clap::FromArgMatches for ServeArgs {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut args = ServeArgs::default();
        args.update_from_arg_matches(matches)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        self.config = matches.get_one::<PathBuf>("config").cloned().or(self.config.take());
        self.pod_ordinal = matches.get_one::<u64>("pod_ordinal").copied().or(self.pod_ordinal);
        for (i, setting) in SETTINGS.iter().enumerate() {
            if let Some(text) = matches.get_one::<String>(setting.name) {
                self.given.push((i, text.clone()));
                if setting.secret && matches.value_source(setting.name) == Some(clap::parser::ValueSource::CommandLine)
                {
                    self.secrets_on_command_line.push(setting.name);
                }
            }
        }
        Ok(())
    }
}

const POD_ORDINAL: &str = "in a Kubernetes StatefulSet: node id = ordinal + 1; pod 0 bootstraps, the others join";

impl ServeArgs {
    /// Defaults → file → environment and flags. A secret given as a flag is
    /// taken, with a warning.
    pub fn into_config(self) -> anyhow::Result<Config> {
        for name in &self.secrets_on_command_line {
            let flag = name.replace('_', "-");
            tracing::warn!(
                "--{flag} on the command line can be read by every local user in the process list: \
                 prefer --{flag}-file or HPFRIENDS_{}",
                name.to_uppercase()
            );
        }
        let mut c = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        for (i, text) in &self.given {
            let setting = &SETTINGS[*i];
            setting.set(&mut c, text).map_err(|e| anyhow::anyhow!("--{}: {e}", setting.flag()))?;
        }
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

/// docs/cli.md's table of `serve`'s flags and settings, as the settings
/// declare them.
pub fn settings_table() -> String {
    let mut rows = vec![
        "| flag | file key | default | what |".to_string(),
        "|------|----------|---------|------|".to_string(),
        "| `--config FILE` | | none | the TOML file |".to_string(),
    ];
    for s in SETTINGS {
        rows.push(format!("| `--{} {}` | `{}` | {} | {} |", s.flag(), s.value_name, s.name, s.default, s.what));
    }
    rows.push(format!("| `--pod-ordinal N` | | none | {POD_ORDINAL} |"));
    rows.join("\n") + "\n"
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
    fn given_a_secret_as_a_flag_then_it_is_noted_and_as_a_file_or_variable_not() {
        let parse = |args: &[&str]| match Cli::try_parse_from([&["hpfriends", "serve"], args].concat()).unwrap().command
        {
            Top::Serve(a) => a,
            _ => unreachable!("parsed serve"),
        };
        let secret = "x".repeat(40);
        assert_eq!(parse(&["--cluster-secret", &secret]).secrets_on_command_line, ["cluster_secret"]);
        assert!(parse(&["--cluster-secret-file", "/run/secrets/cluster"]).secrets_on_command_line.is_empty());
        let both = serve(&["--operator-token", &secret, "--operator-token-file", "/run/secrets/token"]);
        assert!(both.unwrap_err().to_string().contains("both given"));
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

    /// docs/cli.md's table of `serve`'s flags and settings is the one the
    /// settings declare (`HPFRIENDS_WRITE_DOCS=1` writes it there).
    #[test]
    fn given_the_settings_then_docs_cli_md_has_their_table() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/cli.md");
        let doc = std::fs::read_to_string(&path).unwrap();
        let start = doc.find("| flag | file key | default | what |").expect("the table's header");
        let end = start + doc[start..].find("\n\n").expect("the table's end") + 1;
        let table = settings_table();
        if std::env::var_os("HPFRIENDS_WRITE_DOCS").is_some() {
            std::fs::write(&path, format!("{}{table}{}", &doc[..start], &doc[end..])).unwrap();
            return;
        }
        assert_eq!(
            &doc[start..end],
            table,
            "docs/cli.md's settings table differs: run this test with HPFRIENDS_WRITE_DOCS=1"
        );
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
