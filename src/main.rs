//! The `ferroboard` command line: serve (default), migrate, healthcheck, backup, rules check / test.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ferroboard::config::Config;

#[derive(Parser)]
#[command(
    name = "ferroboard",
    version,
    about = "ThingsBoard-compatible IoT device platform in one binary",
    after_help = "Configuration: embedded defaults, then an optional TOML file (--config FILE or \
                  FERROBOARD_CONFIG), then FERROBOARD_* variables (FERROBOARD_<KEY> for a top-level \
                  key, FERROBOARD_<SECTION>_<KEY> for a key of a section, e.g. \
                  FERROBOARD_MQTT_MAX_PACKET_SIZE). ferroboard.example.toml lists every key with its \
                  default; docs/configuration.md explains them."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default command): MQTT, REST, rule engine and storage.
    Serve {
        /// TOML configuration file; FERROBOARD_* variables override its keys.
        #[arg(long, env = "FERROBOARD_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Apply pending database migrations to the configured database and exit.
    Migrate {
        /// TOML configuration file; FERROBOARD_* variables override its keys.
        #[arg(long, env = "FERROBOARD_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
        /// List the pending migrations without applying them.
        #[arg(long)]
        dry_run: bool,
    },
    /// Ask the local node's /api/health (the configured HTTP address); exit 0 on 200, 1 otherwise.
    /// For container health checks.
    Healthcheck {
        /// TOML configuration file; FERROBOARD_* variables override its keys.
        #[arg(long, env = "FERROBOARD_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
        /// Give up (exit 1) after this many milliseconds.
        #[arg(long, default_value_t = 3000, value_name = "MS")]
        timeout_ms: u64,
    },
    /// Copy the configured SQLite database to FILE while the server runs (a consistent snapshot;
    /// FILE must not exist). PostgreSQL databases are backed up with pg_dump instead.
    Backup {
        /// The new backup file.
        file: PathBuf,
        /// TOML configuration file; FERROBOARD_* variables override its keys.
        #[arg(long, env = "FERROBOARD_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Work with a rules directory offline.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Validate every chain and script of a rules directory; exit non-zero on any error.
    Check {
        /// The rules directory (default: ./rules).
        dir: Option<PathBuf>,
    },
    /// Run the fixtures in DIR/tests/*.toml through the chains offline; exit non-zero when a case
    /// fails or there is none.
    Test {
        /// The rules directory (default: ./rules).
        dir: Option<PathBuf>,
        /// TOML configuration file whose script budgets (`[engine]`, FERROBOARD_* variables)
        /// the cases run with, as the server would.
        #[arg(long, env = "FERROBOARD_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _telemetry = ferroboard::observability::init_tracing();
    let result = match cli.command.unwrap_or(Command::Serve { config: None }) {
        Command::Serve { config } => with_runtime(|| async move { serve(config).await }),
        Command::Migrate { config, dry_run } => {
            with_runtime(|| async move { migrate(config, dry_run).await })
        }
        Command::Healthcheck { config, timeout_ms } => {
            with_runtime(|| async move { healthcheck(config, timeout_ms).await })
        }
        Command::Backup { file, config } => {
            with_runtime(|| async move { backup(config, file).await })
        }
        Command::Rules {
            command: RulesCommand::Check { dir },
        } => rules_check(dir.unwrap_or_else(|| PathBuf::from("rules"))),
        Command::Rules {
            command: RulesCommand::Test { dir, config },
        } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from("rules"));
            with_runtime(|| async move { rules_test(dir, config).await })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let text = format!("{e:#}");
            eprintln!(
                "error: {}",
                ferroboard::observability::redact_secrets(&text)
            );
            ExitCode::FAILURE
        }
    }
}

fn with_runtime<F, Fut>(f: F) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .thread_name("tokio-wrk")
        .enable_all()
        .build()?;
    let result = rt.block_on(f());
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

async fn serve(config: Option<PathBuf>) -> anyhow::Result<()> {
    let config = Config::load(config.as_deref())?;
    ensure_sqlite_dir(&config.database_url)?;
    let app = ferroboard::app::start(config).await?;
    wait_for_signal().await;
    tracing::info!("shutdown signal received");
    app.shutdown().await
}

async fn migrate(config: Option<PathBuf>, dry_run: bool) -> anyhow::Result<()> {
    let config = Config::load(config.as_deref())?;
    ensure_sqlite_dir(&config.database_url)?;
    let store = ferroboard::storage::open_retrying(&config.database_url, &config.storage).await?;
    if dry_run {
        let pending = store.pending_migrations().await;
        store.close().await;
        let pending = pending?;
        if pending.is_empty() {
            println!("no pending migrations");
        }
        for (version, name) in pending {
            println!("pending: {version:04} {name}");
        }
        return Ok(());
    }
    store.migrate().await?;
    store.close().await;
    tracing::info!(storage = store.backend(), "migrations applied");
    Ok(())
}

/// GET `/api/health` on the configured HTTP address (a wildcard address is asked on loopback).
async fn healthcheck(config: Option<PathBuf>, timeout_ms: u64) -> anyhow::Result<()> {
    let config = Config::load(config.as_deref())?;
    let url = format!(
        "http://{}/api/health",
        ferroboard::config::local_address(&config.http_addr)
    );
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(timeout_ms))
        .no_proxy()
        .build()?;
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    println!("{url}: {} {body}", status.as_u16());
    anyhow::ensure!(status == reqwest::StatusCode::OK, "{url} answered {status}");
    Ok(())
}

async fn backup(config: Option<PathBuf>, file: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(config.as_deref())?;
    let store = ferroboard::storage::open(&config.database_url, &config.storage).await?;
    let result = store.backup(&file).await;
    store.close().await;
    result?;
    println!("backup written to {}", file.display());
    Ok(())
}

/// The embedded default keeps its database under ./data; create the folder on first start.
fn ensure_sqlite_dir(url: &str) -> anyhow::Result<()> {
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let path = path.split('?').next().unwrap_or(path);
        if let Some(parent) = std::path::Path::new(path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent)?;
        }
    }
    Ok(())
}

fn rules_check(dir: PathBuf) -> anyhow::Result<()> {
    let summary = ferroboard::engine::check_dir(&dir)
        .map_err(|e| anyhow::anyhow!("{}:\n{e}", dir.display()))?;
    println!("{}: {summary}", dir.display());
    Ok(())
}

async fn rules_test(dir: PathBuf, config: Option<PathBuf>) -> anyhow::Result<()> {
    let config = Config::load(config.as_deref())?;
    let limits = ferroboard::engine::ScriptLimits::from_config(&config.engine);
    let report = ferroboard::engine::run_fixtures(&dir, limits)
        .await
        .map_err(|e| anyhow::anyhow!("{}:\n{e}", dir.display()))?;
    for case in &report.cases {
        println!("{case}");
    }
    println!("{}", report.summary());
    anyhow::ensure!(
        report.failed() == 0,
        "{}: {} of {} case(s) failed",
        dir.display(),
        report.failed(),
        report.cases.len()
    );
    Ok(())
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
