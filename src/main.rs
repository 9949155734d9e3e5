//! The `mqbridge` binary: parses the command line, sets up logging and signals, and calls the
//! library's `run`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "mqbridge",
    version,
    about = "MQTT v5 shared subscriptions into Kafka, at least once"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the bridge until SIGINT or SIGTERM.
    Run {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Check a config file and print every problem in it (exit code 2 when there is one).
    Validate {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Print a commented example config.
    ExampleConfig,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::ExampleConfig => {
            print!("{}", mqbridge::config::EXAMPLE);
            ExitCode::SUCCESS
        }
        Command::Validate { config } => match mqbridge::config::load_file(&config) {
            Ok(c) => {
                let enabled = c.routes.iter().filter(|r| r.enabled).count();
                println!(
                    "{}: valid ({} connection(s), {} route(s), {enabled} enabled)",
                    config.display(),
                    c.connections.len(),
                    c.routes.len()
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
        },
        Command::Run { config } => run(config),
    }
}

fn run(path: PathBuf) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let config = match mqbridge::config::load_file(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(mqbridge::run(config, shutdown_signal())) {
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

/// Completes on the first SIGINT or SIGTERM: the one place signals are handled.
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
