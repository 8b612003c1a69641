//! `elasticache-local`: the command line. `serve` runs the emulator; the other
//! subcommands (`status`, `nodes`, `outage`, in `cli/`) talk to a running one.

mod cli;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use nodes::capacity::Capacity;
use server::auth::{AccessKey, AuthMode, AuthSettings};

#[derive(Parser)]
#[command(name = "elasticache-local", version, about = "A local emulator of the Amazon ElastiCache control plane")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the ElastiCache API.
    // Boxed: its many flags would make every other subcommand as large.
    Serve(Box<ServeArgs>),
    /// Show a running emulator's resources and nodes (exit status 2 if a resource failed).
    Status(cli::status::Args),
    /// Kill, stop (freeze) or resume one node of a running emulator.
    Nodes(cli::nodes::Args),
    /// Start or end a simulated outage of one availability zone.
    Outage(cli::outage::Args),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address of the API (and of the admin API under /_emulator/).
    #[arg(long, env = "ELASTICACHE_LOCAL_LISTEN", default_value = "127.0.0.1:4566")]
    listen: SocketAddr,
    /// Directory holding the store; defaults to $XDG_DATA_HOME/elasticache-local.
    #[arg(long, env = "ELASTICACHE_LOCAL_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Region for requests whose signature names none.
    #[arg(long, env = "ELASTICACHE_LOCAL_REGION", default_value = "us-east-1")]
    region: String,
    /// Simulated availability zones; defaults to <region>a,<region>b,<region>c.
    #[arg(long, env = "ELASTICACHE_LOCAL_ZONES", value_delimiter = ',')]
    zones: Vec<String>,
    /// Keep nothing: state lives in a temporary directory removed at exit.
    #[arg(long, env = "ELASTICACHE_LOCAL_EPHEMERAL")]
    ephemeral: bool,
    /// Milliseconds between two health probes of a node.
    #[arg(long, env = "ELASTICACHE_LOCAL_HEALTH_CHECK_INTERVAL_MS", default_value_t = default_health().interval.as_millis() as u64)]
    health_check_interval_ms: u64,
    /// Milliseconds a health probe may take before it counts as failed.
    #[arg(long, env = "ELASTICACHE_LOCAL_HEALTH_CHECK_TIMEOUT_MS", default_value_t = default_health().timeout.as_millis() as u64)]
    health_check_timeout_ms: u64,
    /// Failed probes in a row after which an unreachable primary is failed over.
    #[arg(long, env = "ELASTICACHE_LOCAL_HEALTH_CHECK_FAILURE_THRESHOLD", default_value_t = default_health().failure_threshold)]
    health_check_failure_threshold: u32,
    /// Account id in every ARN.
    #[arg(long, env = "ELASTICACHE_LOCAL_ACCOUNT_ID", default_value = "000000000000")]
    account_id: String,
    /// `permissive` serves every request; `strict` requires a SigV4 signature by an --access-key.
    #[arg(long, env = "ELASTICACHE_LOCAL_AUTH", value_enum, default_value_t = AuthMode::Permissive)]
    auth: AuthMode,
    /// An access key strict mode accepts, as ACCESS_KEY_ID:SECRET_ACCESS_KEY; repeatable (the
    /// environment variable takes a comma-separated list).
    // Parsed after clap, whose errors would echo the value, secret included.
    #[arg(
        long = "access-key",
        value_name = "ACCESS_KEY_ID:SECRET",
        env = "ELASTICACHE_LOCAL_ACCESS_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    access_keys: Vec<String>,
    /// An S3-compatible endpoint (`http://host:port`) that CopySnapshot --target-bucket
    /// exports upload to; without one they go to <state dir>/exports/<bucket>/. Signed with
    /// ELASTICACHE_LOCAL_S3_ACCESS_KEY_ID / ELASTICACHE_LOCAL_S3_SECRET_ACCESS_KEY (or the
    /// usual AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY).
    #[arg(long, env = "ELASTICACHE_LOCAL_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// The region exports are signed for; defaults to --region.
    #[arg(long, env = "ELASTICACHE_LOCAL_S3_REGION")]
    s3_region: Option<String>,
    /// Milliseconds a mutation (create, modify, delete, failover, snapshot, ...) waits for its
    /// change to settle before it answers, so a waiter's first poll sees the result; 0
    /// answers at once, while the resource is still `creating`.
    #[arg(long, env = "ELASTICACHE_LOCAL_SETTLE_TIMEOUT_MS", default_value_t = server::DEFAULT_SETTLE_TIMEOUT.as_millis() as u64)]
    settle_timeout_ms: u64,
    /// Cluster-enabled redis nodes kept started ahead of need, so a new cluster-mode group
    /// is available without redis's two-second start-up delay (with two standalone nodes per
    /// engine and a cluster-enabled valkey one); 0 keeps none (no idle cost).
    #[arg(long, env = "ELASTICACHE_LOCAL_WARM_NODES", default_value_t = server::DEFAULT_WARM_NODES)]
    warm_nodes: usize,
    /// Bytes one "GB" of a serverless cache's CacheUsageLimits.DataStorage stands for; a
    /// small value lets a test reach the limit with little data.
    #[arg(long, env = "ELASTICACHE_LOCAL_SERVERLESS_GB_BYTES", default_value_t = server::DEFAULT_SERVERLESS_GB_BYTES)]
    serverless_gb_bytes: u64,
    /// Bytes of data one shard behind a serverless endpoint holds before the cache scales
    /// out by a shard (it scales in below half of what one shard fewer would hold).
    #[arg(long, env = "ELASTICACHE_LOCAL_SERVERLESS_SHARD_BYTES", default_value_t = server::DEFAULT_SERVERLESS_SHARD_BYTES)]
    serverless_shard_bytes: u64,
    /// The host every endpoint clients are told of names (node, primary, reader and
    /// configuration endpoints, auto discovery, redis cluster redirections, TLS
    /// certificates): a name or an IPv4 address other machines reach this one by. Defaults
    /// to --node-listen, or 127.0.0.1 when that is 0.0.0.0.
    #[arg(long, env = "ELASTICACHE_LOCAL_ADVERTISE_HOST", value_parser = parse_host)]
    advertise_host: Option<String>,
    /// Where nodes and the emulator's endpoints listen for clients: 127.0.0.1, one address
    /// of this machine, or 0.0.0.0 for all (as in the Docker image).
    #[arg(long, env = "ELASTICACHE_LOCAL_NODE_LISTEN", default_value = "127.0.0.1")]
    node_listen: std::net::Ipv4Addr,
    /// A directory of scripts run once the API listens, one at a time in name order (the
    /// executable files only), with AWS_ENDPOINT_URL and test credentials set;
    /// /_emulator/health shows their progress under "init".
    #[arg(long, env = "ELASTICACHE_LOCAL_INIT_DIR")]
    init_dir: Option<PathBuf>,
    /// The most cache nodes to run, over every region; creates past it are refused with
    /// NodeQuotaForCustomerExceeded. Defaults to what this machine's open files, process
    /// limits and memory allow (logged at start-up).
    #[arg(long, env = "ELASTICACHE_LOCAL_MAX_NODES")]
    max_nodes: Option<usize>,
}

/// The export target from --s3-endpoint and the credentials in the environment.
fn s3_target(args: &ServeArgs) -> anyhow::Result<Option<reconciler::S3Target>> {
    let Some(endpoint) = &args.s3_endpoint else { return Ok(None) };
    let credential = |ours: &str, usual: &str| std::env::var(ours).or_else(|_| std::env::var(usual)).ok();
    let (Some(access_key_id), Some(secret_access_key)) = (
        credential("ELASTICACHE_LOCAL_S3_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
        credential("ELASTICACHE_LOCAL_S3_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"),
    ) else {
        anyhow::bail!(
            "--s3-endpoint needs credentials: set ELASTICACHE_LOCAL_S3_ACCESS_KEY_ID and ELASTICACHE_LOCAL_S3_SECRET_ACCESS_KEY"
        );
    };
    if !endpoint.starts_with("http://") {
        anyhow::bail!("--s3-endpoint must be an http:// URL (TLS endpoints are not supported)");
    }
    Ok(Some(reconciler::S3Target {
        endpoint: endpoint.trim_end_matches('/').to_string(),
        region: args.s3_region.clone().unwrap_or_else(|| args.region.clone()),
        access_key_id,
        secret_access_key,
    }))
}

/// An IPv4 address or a DNS name (letters, digits, `-` and `.`): what redis accepts as its
/// announced host name and a certificate can name.
fn parse_host(text: &str) -> Result<String, String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if text.parse::<std::net::Ipv4Addr>().is_ok() || (text.len() <= 253 && text.split('.').all(label_ok)) {
        Ok(text.to_ascii_lowercase())
    } else {
        Err("expected an IPv4 address or a DNS name".to_string())
    }
}

/// Where nodes listen, and what they are advertised as (see --advertise-host).
fn exposure(args: &ServeArgs) -> nodes::exposure::Exposure {
    let listen = args.node_listen;
    let host = args.advertise_host.clone().unwrap_or_else(|| match listen.is_unspecified() {
        true => nodes::exposure::LOOPBACK_HOST.to_string(),
        false => listen.to_string(),
    });
    nodes::exposure::Exposure::new(listen, host)
}

/// The health checks' defaults, shown by `--help`.
fn default_health() -> reconciler::HealthSettings {
    reconciler::HealthSettings::default()
}

fn default_state_dir() -> PathBuf {
    let data_home = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share")));
    data_home.unwrap_or_else(std::env::temp_dir).join("elasticache-local")
}

/// Lifts the soft limit on open files to the hard one, as servers do: the default soft limit
/// (1,024 on Debian) would cap the connections and nodes one emulator can serve. Nodes
/// inherit it.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            tracing::warn!("could not read the open files limit");
            return;
        }
        let was = limit.rlim_cur;
        if was < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                tracing::warn!(limit = was, "could not raise the open files limit");
                return;
            }
        }
        tracing::info!(limit = limit.rlim_cur, was, hard_limit = limit.rlim_max, "open files limit");
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = match Cli::parse().command {
        Command::Serve(args) => *args,
        Command::Status(args) => std::process::exit(cli::status::run(args).await),
        Command::Nodes(args) => std::process::exit(cli::nodes::run(args).await),
        Command::Outage(args) => std::process::exit(cli::outage::run(args).await),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ELASTICACHE_LOCAL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    raise_open_files_limit();
    let node_capacity = args.max_nodes.map(Capacity::configured).unwrap_or_else(Capacity::measure);
    tracing::info!(nodes = node_capacity.nodes, bound_by = %node_capacity.bound_by, "node capacity");
    let s3 = s3_target(&args)?;
    let exposure = exposure(&args);
    let zones = if args.zones.is_empty() {
        ["a", "b", "c"].iter().map(|s| format!("{}{s}", args.region)).collect()
    } else {
        args.zones
    };
    let ephemeral_dir = if args.ephemeral {
        let dir = std::env::temp_dir().join(format!("elasticache-local-{}", uuid::Uuid::new_v4()));
        Some(dir)
    } else {
        None
    };
    let state_dir = ephemeral_dir.clone().or(args.state_dir).unwrap_or_else(default_state_dir);
    let health = reconciler::HealthSettings {
        interval: std::time::Duration::from_millis(args.health_check_interval_ms),
        timeout: std::time::Duration::from_millis(args.health_check_timeout_ms),
        failure_threshold: args.health_check_failure_threshold,
        ..default_health()
    };
    let access_keys = args
        .access_keys
        .iter()
        .filter(|key| !key.trim().is_empty())
        .map(|key| key.parse::<AccessKey>().map_err(|e| anyhow::anyhow!("--access-key: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let auth = AuthSettings { mode: args.auth, access_keys };
    // Fail before binding, so that a typo in the keys does not leave a port half-opened.
    auth.validate()?;
    let config = server::Config {
        state_dir,
        region: args.region,
        account: args.account_id,
        zones,
        health,
        auth,
        s3,
        settle_timeout: std::time::Duration::from_millis(args.settle_timeout_ms),
        engines: None,
        warm_nodes: args.warm_nodes,
        connections: Default::default(),
        serverless_gb_bytes: args.serverless_gb_bytes,
        serverless_shard_bytes: args.serverless_shard_bytes,
        exposure,
        init_dir: args.init_dir,
        node_capacity,
    };
    let listener = server::connections::listen(args.listen).with_context(|| format!("binding {}", args.listen))?;
    let result = server::run(listener, config, shutdown_signal()).await;
    if let Some(dir) = ephemeral_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}
