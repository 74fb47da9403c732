//! The `sluice` command line (the seed's `airflow ...` commands, under `sluice ...`).
//! Tables by default, `--output json` for scripts; errors are one sentence and a non-zero
//! exit code (1 for failures, 2 for usage).

pub mod config;
pub mod connections;
mod dags;
pub mod error;
pub mod fernet;
mod output;
pub mod users;
pub mod variables;

pub use error::CliError;
pub use output::Output;

use crate::registry::Registry;
use crate::settings::Settings;
use crate::store::Store;
use clap::{Parser, Subcommand};
use error::Context;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "sluice", version, about = "Sluice: compiled pipelines, scheduled and run", propagate_version = true)]
struct Cli {
    /// Output format of listings.
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Everything in one process: SQLite store, scheduler, worker, web server.
    Standalone,
    /// One-shot setup: migrate the database and sync the compiled pipelines.
    Init,
    /// Distributed mode: create runs and queue ready tasks (several may run at once).
    Scheduler,
    /// Distributed mode: run tasks taken from the Redis broker.
    Worker {
        /// Comma-separated queues to take tasks from (default: every declared queue).
        #[arg(long, short = 'q', value_delimiter = ',')]
        queues: Vec<String>,
        /// How many tasks run at once (default: `deployment.executor.worker_concurrency`).
        #[arg(long, short = 'c')]
        concurrency: Option<usize>,
    },
    /// Distributed mode: the web server (UI, REST API, /health).
    Webserver,
    /// The metadata database.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Pipelines (Airflow's DAGs).
    Dags {
        #[command(subcommand)]
        command: dags::DagsCommand,
    },
    /// Tasks of a pipeline.
    Tasks {
        #[command(subcommand)]
        command: dags::TasksCommand,
    },
    /// Connections: stored with their secrets encrypted; Airflow's URIs and files.
    Connections {
        #[command(subcommand)]
        command: connections::ConnectionsCommand,
    },
    /// Variables for templates (`var.value.X`); secret ones encrypted.
    Variables {
        #[command(subcommand)]
        command: variables::VariablesCommand,
    },
    /// Users of the web UI and API.
    Users {
        #[command(subcommand)]
        command: users::UsersCommand,
    },
    /// Fernet keys: make one, rotate stored secrets onto a new one.
    Fernet {
        #[command(subcommand)]
        command: fernet::FernetCommand,
    },
    /// The effective settings (no secret values).
    Config {
        #[command(subcommand)]
        command: config::ConfigCommand,
    },
    /// Exit 0 when the named service's dependencies answer (for container health checks).
    Healthcheck {
        /// webserver, scheduler or worker
        service: String,
    },
    /// Print the version.
    Version,
}

#[derive(Subcommand, Debug)]
enum DbCommand {
    /// Apply pending migrations (forward-only, idempotent).
    Migrate,
    /// Check that the database answers.
    Check,
    /// Delete finished runs (with their tasks, tries, logs and outputs) older than a date.
    Clean {
        /// Runs with a logical date before this (RFC 3339 or YYYY-MM-DD) are deleted.
        #[arg(long)]
        clean_before_timestamp: String,
        /// Only count what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Runs the command line over the compiled `registry`; returns the process exit code.
pub fn main(registry: &'static Registry) -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    init_logging();
    // Reads FAILPOINTS when the fault tests' build turned failpoints on; a no-op otherwise.
    // Every failpoint's `return` action aborts the process where it stands, as a SIGKILL
    // would (`FAILPOINTS=store.finish.before_commit=return`); `bench/tests/faults.rs` lists them.
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    match runtime.block_on(run(registry, cli)) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(|| crate::secrets::MaskedStderr).try_init();
}

async fn run(registry: &'static Registry, cli: Cli) -> Result<ExitCode, CliError> {
    crate::secrets::register_from_env(registry);
    let settings = Settings::from_env(registry);
    match cli.command {
        Command::Standalone => {
            crate::standalone::run(registry, &settings).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Scheduler => {
            crate::distributed::scheduler(registry, &settings).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker { queues, concurrency } => {
            let declared = registry.deployment.queues;
            if let Some(unknown) = queues.iter().find(|q| !declared.contains(&q.as_str())) {
                return Err(CliError::Input(format!(
                    "queue `{unknown}` is not declared: the queues are {} (deployment.executor.queues)",
                    declared.join(", ")
                )));
            }
            let queues = if queues.is_empty() { declared.iter().map(|q| (*q).to_string()).collect() } else { queues };
            let concurrency =
                concurrency.unwrap_or_else(|| usize::try_from(registry.deployment.worker_concurrency).unwrap_or(16));
            crate::distributed::worker(registry, &settings, queues, concurrency).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Webserver => {
            crate::distributed::webserver(registry, &settings).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Init => {
            let store = open_for_migration(&settings).await?;
            let applied = store.migrate().await?;
            let report = store.sync_pipelines(registry).await?;
            crate::standalone::announce_admin(registry, &store).await?;
            match crate::crypto::Crypto::from_env(registry.deployment.fernet_key_env) {
                Ok(crypto) => crate::standalone::sync_connections(registry, &store, &crypto).await?,
                Err(e) => eprintln!("warning: connections not stored: {e}"),
            }
            println!(
                "database ready ({applied} migration(s) applied); pipelines: {} added, {} changed, {} deactivated",
                report.added.len(),
                report.changed.len(),
                report.deactivated.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Db { command: DbCommand::Migrate } => {
            let store = open_for_migration(&settings).await?;
            let applied = store.migrate().await?;
            println!("{applied} migration(s) applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Db { command: DbCommand::Check } => {
            let store = Store::connect(&settings.store_url()).await?;
            store.check().await?;
            println!("connection to {} is healthy", crate::store::redact(&settings.store_url()));
            Ok(ExitCode::SUCCESS)
        }
        Command::Db { command: DbCommand::Clean { clean_before_timestamp, dry_run } } => {
            let before = crate::clock::parse_datetime(&clean_before_timestamp).ok_or_else(|| {
                CliError::Input(format!(
                    "`{clean_before_timestamp}` is not a date: use 2024-01-01 or 2024-01-01T00:00:00+00:00"
                ))
            })?;
            let store = open_store(registry, &settings).await?;
            println!("looking for finished runs before {}...", crate::clock::to_rfc3339(before));
            let mut progress = |done: i64, total: i64| {
                if total > crate::store::CLEAN_BATCH {
                    println!("{done}/{total} run(s) deleted");
                }
            };
            let n = store.clean_before(before, dry_run, &mut progress).await?;
            if dry_run {
                println!("{n} run(s) would be deleted (dry run: nothing changed)");
            } else {
                println!("{n} run(s) deleted with their task instances, tries, logs and outputs");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Dags { command } => dags::dags(registry, &settings, command, cli.output).await,
        Command::Tasks { command } => dags::tasks(registry, &settings, command, cli.output).await,
        Command::Connections { command } => connections::main(registry, &settings, command, cli.output).await,
        Command::Variables { command } => variables::main(registry, &settings, command, cli.output).await,
        Command::Users { command } => users::main(registry, &settings, command, cli.output).await,
        Command::Fernet { command } => fernet::main(registry, &settings, command, cli.output).await,
        Command::Config { command } => config::main(registry, &settings, command, cli.output).await,
        Command::Healthcheck { service } => healthcheck(registry, &settings, &service).await,
        Command::Version => {
            println!("sluice {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn open_for_migration(settings: &Settings) -> Result<Store, CliError> {
    if settings.database_url.is_none() {
        std::fs::create_dir_all(&settings.home).map_err(|e| CliError::Foreign {
            doing: format!("cannot create {}", settings.home.display()),
            source: Box::new(e),
            fix: Some("set SLUICE_HOME to a writable folder"),
        })?;
    }
    Ok(Store::connect(&settings.migration_url()).await?)
}

/// The store for everyday commands: migrated and synced, so a fresh checkout just works,
/// and recording the changes it makes in the audit log as the CLI's user's.
pub(crate) async fn open_store(registry: &'static Registry, settings: &Settings) -> Result<Store, CliError> {
    let store = open_for_migration(settings).await?;
    store.migrate().await?;
    store.sync_pipelines(registry).await?;
    Ok(store.acting_as(crate::store::Actor::cli()))
}

async fn healthcheck(registry: &Registry, settings: &Settings, service: &str) -> Result<ExitCode, CliError> {
    match service {
        "webserver" => {
            let url = format!("http://127.0.0.1:{}/health", settings.port);
            let client = crate::tls::http_client_builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .context(|| "cannot set up the HTTP client")?;
            let response = client.get(&url).send().await.context(|| format!("{url} does not answer"))?;
            if !response.status().is_success() {
                return Err(CliError::Failure(format!("{url} answered {}", response.status())));
            }
        }
        "scheduler" | "worker" | "init" => {
            let store = Store::connect(&settings.store_url()).await?;
            store.check().await?;
            if service != "init" && settings.broker_url.is_some() {
                let broker = crate::distributed::broker(registry, settings)?;
                broker.ping().await?;
            }
        }
        other => {
            return Err(CliError::Input(format!("unknown service `{other}`: use webserver, scheduler or worker")));
        }
    }
    Ok(ExitCode::SUCCESS)
}
