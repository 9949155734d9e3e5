//! The `mqbridge` binary: parses the command line, sets up logging and signals, and calls the
//! library's `run`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mqbridge::config::{Config, Spelling};
use mqbridge::control::{Control, ControlHandle};
use mqbridge::settings::Secret;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "mqbridge",
    version,
    about = "Carries MQTT to Kafka, RocketMQ, functions and other brokers, and back, at least once"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the bridge until SIGINT or SIGTERM; SIGHUP reloads the config file.
    Run {
        #[arg(short, long)]
        config: PathBuf,
        /// Log lines as JSON objects (for log collectors) instead of text.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Check the broker (credentials, each route's filters), and every connection; one verdict
    /// line per item, exit code 0 only when all pass.
    Check {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Show the routes of a running bridge: state, consumers, counts, delay, last error.
    Status {
        #[command(flatten)]
        admin: AdminArgs,
        /// Print the JSON of `/routes` instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Pause a route: its consumers stay connected and read nothing more (the broker keeps
    /// queueing); what it holds is delivered and acknowledged.
    Pause {
        route: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Resume a paused route.
    Resume {
        route: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Make a running bridge read its config file again and apply what changed.
    Reload {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Check a config file and print every problem in it (exit code 2 when there is one).
    Validate {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Try a route's or downlink's rules (`where`, `transform`, `schema`) on sample messages:
    /// one JSON line per message on stdin (`{"topic": ..., "payload": ..., "properties":
    /// {...}}`), one line per outcome on stdout (deliver, with what; filter; dead_letter, with
    /// the error).
    TestRule {
        #[arg(short, long)]
        config: PathBuf,
        /// The route or downlink whose rules to try.
        #[arg(long)]
        route: String,
    },
    /// Send dead letters again through the routes they came from, once what refused them is
    /// mended: a letter a rule refused runs through the route's current rules, any other goes
    /// to the route's sink. Safe to run twice: what was replayed is recorded in FILE.replayed
    /// and skipped the next time. A letter that fails again becomes a new dead letter.
    Replay {
        #[arg(short, long)]
        config: PathBuf,
        /// Only the letters of this route.
        #[arg(long)]
        route: Option<String>,
        /// Only the letters of this error kind (`too_large`, `schema_invalid`, ...).
        #[arg(long)]
        error_kind: Option<String>,
        /// The dead letters: a dead-letter file (JSON lines, as `[dead_letter] path` writes
        /// it), or `kafka:CONNECTION/TOPIC`, a topic a `dead_letter` connection writes.
        file: String,
    },
    /// Print a commented example config.
    ExampleConfig,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Where the running bridge's admin API is.
#[derive(clap::Args)]
struct AdminArgs {
    /// The bridge's admin listener (its `[admin] listen`).
    #[arg(long, env = "MQBRIDGE_ADMIN", default_value = "http://127.0.0.1:9464")]
    admin: String,
    /// A file holding the admin token (for pause, resume and reload); or set
    /// MQBRIDGE_ADMIN_TOKEN.
    #[arg(long)]
    token_file: Option<PathBuf>,
}

impl AdminArgs {
    fn client(&self) -> Result<mqbridge::admin::client::Client, String> {
        let token = match &self.token_file {
            Some(path) => std::fs::read_to_string(path)
                .map(|t| Some(t.trim_end_matches(['\r', '\n']).to_owned()))
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
            None => std::env::var("MQBRIDGE_ADMIN_TOKEN").ok(),
        };
        mqbridge::admin::client::Client::new(&self.admin, token.map(Secret::new))
            .map_err(|e| e.to_string())
    }
}

/// Runs one request to a running bridge and prints its answer.
fn remote(
    admin: &AdminArgs,
    ask: impl AsyncFnOnce(mqbridge::admin::client::Client) -> Result<String, String>,
) -> ExitCode {
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(async { ask(admin.client()?).await }));
    match outcome {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mqbridge: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Status { admin, json } => remote(&admin, async |c| {
            let overview = c.routes().await.map_err(|e| e.to_string())?;
            Ok(match json {
                true => format!("{overview:#}\n"),
                false => mqbridge::admin::client::routes_table(&overview),
            })
        }),
        Command::Pause { route, admin } => set_paused(&admin, &route, true),
        Command::Resume { route, admin } => set_paused(&admin, &route, false),
        Command::Reload { admin } => remote(&admin, async |c| {
            let report = c.reload().await.map_err(|e| e.to_string())?;
            Ok(reload_text(&report))
        }),
        Command::ExampleConfig => {
            print!("{}", mqbridge::config::EXAMPLE);
            ExitCode::SUCCESS
        }
        Command::Validate { config } => validate(&config),
        Command::TestRule { config, route } => test_rule(&config, &route),
        Command::Run { config, log_format } => run(config, log_format),
        Command::Check { config } => check(config),
        Command::Replay {
            config,
            route,
            error_kind,
            file,
        } => replay(&config, route, error_kind, &file),
    }
}

/// Pauses or resumes the route or downlink `name` of the bridge at `admin`.
fn set_paused(admin: &AdminArgs, name: &str, paused: bool) -> ExitCode {
    remote(admin, async |c| {
        let status = c
            .set_paused(name, paused)
            .await
            .map_err(|e| e.to_string())?;
        Ok(format!(
            "\"{name}\": {}\n",
            status["state"].as_str().unwrap_or("?")
        ))
    })
}

/// What a reload did, for the terminal.
fn reload_text(report: &serde_json::Value) -> String {
    let list = |key: &str| {
        let names: Vec<&str> = report[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .collect();
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    };
    let mut text = format!(
        "reloaded: added {}; restarted {}; removed {}; unchanged {}\n",
        list("added"),
        list("restarted"),
        list("removed"),
        list("unchanged")
    );
    for note in report["notes"].as_array().into_iter().flatten() {
        text += &format!("note: {}\n", note.as_str().unwrap_or_default());
    }
    text
}

/// `mqbridge validate`: every problem of the file at once (exit code 2), or a summary.
fn validate(config: &Path) -> ExitCode {
    match mqbridge::config::load_file(config) {
        Ok(c) => {
            let routes = c.spelled(Spelling::Route);
            let (count, enabled) =
                routes.fold((0, 0), |(n, on), r| (n + 1, on + r.enabled as usize));
            println!(
                "{}: valid ({} connection(s), {count} route(s), {enabled} enabled)",
                config.display(),
                c.defined_connections(),
            );
            for warning in c.warnings() {
                println!("  {}: warning: {warning}", config.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

/// Prints what the rules of flow `name` make of each sample message on stdin.
fn test_rule(config: &Path, name: &str) -> ExitCode {
    let config = match mqbridge::config::load_file(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let Some(spec) = config
        .routes
        .iter()
        .find(|r| r.name == name)
        .map(|r| &r.rules)
    else {
        eprintln!(
            "no route or downlink \"{name}\" in {}",
            config_name(&config)
        );
        return ExitCode::from(2);
    };
    let rules = match spec.compile() {
        Ok(Some(rules)) => rules,
        Ok(None) => {
            eprintln!("\"{name}\" has no rules (`where`, `transform`, `schema`)");
            return ExitCode::from(2);
        }
        Err(problems) => {
            problems.iter().for_each(|(k, e)| eprintln!("{k}: {e}"));
            return ExitCode::from(2);
        }
    };
    for line in std::io::stdin().lines() {
        let Ok(line) = line else { break };
        if !line.trim().is_empty() {
            println!("{}", mqbridge::rules::sample::try_line(&rules, &line));
        }
    }
    ExitCode::SUCCESS
}

fn config_name(config: &Config) -> String {
    config
        .source
        .as_ref()
        .map_or("the config".into(), |p| p.display().to_string())
}

/// glibc gives each thread that allocates its own heap arena (up to eight per core), and keeps
/// what each holds: the runtime's workers and the blocking threads that write disk buffers
/// grew the bridge's memory by tens of MiB that way (a route with a disk buffer, 1 KiB
/// messages: 84 MiB peak, 53 MiB with two arenas). Two arenas keep it bounded on a gateway.
fn few_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator tunable; it is called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// The config file and a runtime to run it on; on failure, the exit code (2: an invalid file).
fn load(path: &Path) -> Result<(Config, tokio::runtime::Runtime), ExitCode> {
    let config = mqbridge::config::load_file(path).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(2)
    })?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| {
        eprintln!("cannot start the runtime: {e}");
        ExitCode::FAILURE
    })?;
    Ok((config, runtime))
}

fn replay(path: &Path, route: Option<String>, error_kind: Option<String>, file: &str) -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let (config, runtime) = match load(path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let filter = mqbridge::replay::Filter { route, error_kind };
    let letters = mqbridge::replay::Letters::parse(file);
    match runtime.block_on(mqbridge::replay::replay(&config, &letters, &filter)) {
        Ok(s) => {
            println!(
                "replayed {}, filtered {}, dead-lettered again {}, already replayed {}, skipped {}, unreadable {}",
                s.replayed, s.filtered, s.dead_lettered, s.already, s.skipped, s.unreadable
            );
            // Client libraries may hold connections: exit without waiting for them.
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("mqbridge: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: PathBuf) -> ExitCode {
    let (config, runtime) = match load(&path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let verdicts = runtime.block_on(mqbridge::check::check(&config));
    for v in &verdicts {
        println!("{v}");
    }
    let failed = verdicts.iter().filter(|v| !v.ok).count();
    // Client libraries may hold connections to unreachable servers: exit without waiting.
    std::process::exit(match failed {
        0 => 0,
        _ => {
            eprintln!("{failed} of {} checks failed", verdicts.len());
            1
        }
    })
}

fn run(path: PathBuf, log_format: LogFormat) -> ExitCode {
    few_malloc_arenas();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    match log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    let (config, runtime) = match load(&path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let control = Control::new();
    let reloads = control.handle();
    let code = match runtime.block_on(async {
        tokio::spawn(reload_on_hangup(reloads));
        mqbridge::run_with(config, shutdown_signal(), control).await
    }) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("mqbridge: {e}");
            1
        }
    };
    // Everything delivered is acknowledged and the consumers have disconnected: exit without
    // waiting for client libraries to tear down connections to unreachable servers.
    std::process::exit(code)
}

/// Reloads the configuration on every SIGHUP (the outcome is logged by the bridge).
async fn reload_on_hangup(control: ControlHandle) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        tracing::warn!("cannot watch SIGHUP; reload through the admin API instead");
        return;
    };
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP received: reloading the configuration");
        let _ = control.reload().await;
    }
}

/// Completes on the first SIGINT or SIGTERM. Signals are handled here and in
/// `reload_on_hangup` only.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only SIGINT stops the bridge");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}
