//! The command line: parse arguments, set up logging, run, map the outcome to an exit code
//! (0 success, 1 configuration or runtime error, 2 usage error).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

const DEFAULT_CONFIG: &str = "/etc/switchyard/switchyard.toml";

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Reverse proxy and static file server for one app host behind a load balancer"
)]
struct Cli {
    /// Configuration file [default: $SWITCHYARD_CONFIG, else /etc/switchyard/switchyard.toml]
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration and print a summary (like `nginx -t`)
    Check,
    /// Make NAME the active upstream: edit the file (keeping comments), validate, reload
    /// the running daemon and wait until it reports NAME active
    Switch {
        /// An upstream defined in [upstreams]
        name: String,
        /// Do not wait for the daemon to confirm the switch
        #[arg(long)]
        no_wait: bool,
    },
    /// Validate the file, SIGHUP the daemon ($MAINPID under systemd, else pid_file) and
    /// wait until it reports the new generation (exit 0) or the refusal (exit 1)
    Reload,
    /// The daemon's state from admin_listen's /status: exit 0 when the active upstream is
    /// up, 3 otherwise
    Status {
        /// The /status document as JSON, for scripts
        #[arg(long)]
        json: bool,
    },
    /// Start a canary of NAME: write [canary], reload, and follow the daemon's plan; on
    /// success make NAME active and remove [canary] (exit 0), on rollback remove [canary]
    /// and exit 1 with the reason
    Canary {
        /// An upstream defined in [upstreams], with a health path
        #[arg(required_unless_present = "abort")]
        name: Option<String>,
        /// Percent of clients at each step, rising
        #[arg(long, value_delimiter = ',', default_value = "5,25,50,100")]
        steps: Vec<u8>,
        /// How long each step is held and judged
        #[arg(long, default_value = "60s")]
        interval: String,
        /// Roll back when more than this share of the canary's requests fail (1% or 0.01)
        #[arg(long, default_value = "1%", value_parser = parse_ratio)]
        max_error_ratio: f64,
        /// Roll back when the canary's p99 latency over an interval is above this
        #[arg(long, value_name = "DURATION")]
        max_p99: Option<String>,
        /// Write [canary] and reload, without following the plan
        #[arg(long)]
        no_wait: bool,
        /// Remove [canary] now: every client back on the active upstream
        #[arg(long, conflicts_with = "name")]
        abort: bool,
    },
}

/// `1%` or `0.01`. A bare number must be a fraction below 1: `1` is far more likely a
/// percent without its sign than "roll back only when every request fails".
fn parse_ratio(text: &str) -> Result<f64, String> {
    let (number, scale) = match text.strip_suffix('%') {
        Some(percent) => (percent, 100.0),
        None => (text, 1.0),
    };
    match number.trim().parse::<f64>() {
        Ok(n) if scale == 100.0 && (0.0..=100.0).contains(&n) => Ok(n / 100.0),
        Ok(n) if scale == 1.0 && (0.0..1.0).contains(&n) => Ok(n),
        _ => Err(format!(
            "{text:?} is not an error ratio: a percentage from 0% to 100% (1%) or a fraction below 1 (0.01)"
        )),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let path = cli
        .config
        .or_else(|| std::env::var_os("SWITCHYARD_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    match cli.command {
        Some(Command::Check) => check(&path),
        Some(Command::Switch { name, no_wait }) => switch(&path, &name, !no_wait),
        Some(Command::Reload) => report(switchyard::cli::reload::run(&path)),
        Some(Command::Status { json }) => status(&path, json),
        Some(Command::Canary { abort: true, .. }) => report(switchyard::cli::canary::abort(&path)),
        Some(Command::Canary {
            name,
            steps,
            interval,
            max_error_ratio,
            max_p99,
            no_wait,
            abort: false,
        }) => {
            let plan = switchyard::cli::canary::Plan {
                steps,
                interval,
                max_error_ratio,
                max_p99,
            };
            let name = name.unwrap_or_default();
            let mut say = |line: String| println!("{line}");
            match switchyard::cli::canary::run(&path, &name, &plan, !no_wait, &mut say) {
                // A plan that cannot be is a usage error, like a flag clap refuses.
                Err(e @ switchyard::cli::canary::CanaryError::Plan(_)) => {
                    eprintln!("{e}");
                    ExitCode::from(2)
                }
                outcome => report(outcome),
            }
        }
        None => run(&path),
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match switchyard::config::load(path) {
        Ok(config) => {
            print!("{}", switchyard::config::summary(&config));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

fn switch(path: &std::path::Path, name: &str, wait: bool) -> ExitCode {
    report(switchyard::cli::switch::run(path, name, wait))
}

/// A command's message on stdout (exit 0) or its error on stderr (exit 1).
fn report<E: std::fmt::Display>(outcome: Result<String, E>) -> ExitCode {
    match outcome {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

fn status(path: &std::path::Path, json: bool) -> ExitCode {
    match switchyard::cli::status::run(path, json) {
        Ok((text, healthy)) => {
            print!("{text}");
            if json {
                println!();
            }
            match healthy {
                true => ExitCode::SUCCESS,
                false => ExitCode::from(switchyard::cli::status::UNHEALTHY),
            }
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

fn run(path: &std::path::Path) -> ExitCode {
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("switchyard: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(switchyard::daemon::run(path)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Said once: the first line is `file:line:column: what is wrong` for a config
            // error, a snippet may follow.
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}
