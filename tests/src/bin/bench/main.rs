//! Benchmarks that print figures (never asserted in tests).
//!
//! `make bench` (or `cargo build --release -p server -p e2e && target/release/bench [api|clusters|describe|scale|replication|migration|global|service-updates|cluster-mode|snapshots|tls|serverless|waiters|slow-clients|dashboard|thousand]`):
//! - api: start-up (process start → first answered API request, median of 10 runs), and
//!   throughput and p99 latency of DescribeCacheParameters and DescribeCacheParameterGroups
//!   under 16 concurrent connections, through the Rust SDK;
//! - clusters: see `clusters.rs`;
//! - describe: see `describe.rs`;
//! - scale: see `scale.rs`;
//! - replication: see `replication.rs`;
//! - migration: see `migration.rs`;
//! - global: see `global.rs`;
//! - service-updates: see `service_updates.rs`;
//! - cluster-mode: see `cluster_mode.rs`;
//! - snapshots: see `snapshots.rs`;
//! - tls: see `tls.rs`;
//! - waiters: see `waiters.rs`;
//! - serverless: see `serverless.rs`;
//! - slow-clients: see `slow_clients.rs`;
//! - dashboard: see `dashboard.rs` (needs chromium);
//! - thousand: see `thousand.rs` (a thousand nodes; needs several GiB of memory).
//!
//! `bench soak --minutes N --seed S` is the chaos soak (see `soak/mod.rs`): never part of
//! the default run, since it runs as long as it is told.
//!
//! The server binary is taken from beside this one (`target/<profile>/elasticache-local`) or
//! from `ELASTICACHE_LOCAL_BIN`.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_elasticache::Client;

mod cluster_mode;
mod clusters;
mod dashboard;
mod describe;
mod global;
mod migration;
mod proc_stats;
mod replication;
mod scale;
mod serverless;
mod service_updates;
mod slow_clients;
mod snapshots;
mod soak;
mod thousand;
mod tls;
mod waiters;

const STARTUP_RUNS: usize = 10;
const CONNECTIONS: usize = 16;
const LOAD_DURATION: Duration = Duration::from_secs(5);

fn server_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("ELASTICACHE_LOCAL_BIN") {
        return Ok(PathBuf::from(path));
    }
    let beside = std::env::current_exe()?.with_file_name("elasticache-local");
    if beside.is_file() {
        Ok(beside)
    } else {
        bail!("{} not found: build it with `cargo build --release -p server`", beside.display())
    }
}

/// A command for `program` whose process gets a SIGTERM when the bench ends, even killed by a
/// signal, which runs no destructor: a bench stopped half-way must not leave an emulator
/// (and its nodes) running. Linux sends it when the *thread* that spawned the child ends;
/// the bench spawns from its runtime's threads, which live as long as the bench (it never
/// blocks in place).
fn child_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new(program);
    nodes::spawner::die_with_parent(&mut command, libc::SIGTERM);
    command
}

fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A server process, killed on drop.
struct Server {
    child: Child,
    address: SocketAddr,
}

impl Server {
    fn spawn(binary: &PathBuf) -> anyhow::Result<Self> {
        Self::spawn_on(binary, free_port()?, None)
    }

    /// An ephemeral server with extra `serve` flags.
    fn spawn_with(binary: &PathBuf, flags: &[&str]) -> anyhow::Result<Self> {
        Self::spawn_command(binary, free_port()?, None, flags)
    }

    /// A server on `address`, keeping its state in `state_dir` (ephemeral without one).
    fn spawn_on(binary: &PathBuf, address: SocketAddr, state_dir: Option<&std::path::Path>) -> anyhow::Result<Self> {
        Self::spawn_command(binary, address, state_dir, &[])
    }

    fn spawn_command(
        binary: &PathBuf,
        address: SocketAddr,
        state_dir: Option<&std::path::Path>,
        flags: &[&str],
    ) -> anyhow::Result<Self> {
        let mut command = child_command(binary);
        command.args(["serve", "--listen", &address.to_string()]).args(flags);
        match state_dir {
            Some(dir) => command.arg("--state-dir").arg(dir),
            None => command.arg("--ephemeral"),
        };
        // BENCH_SERVER_LOG=<file> keeps the servers' log there (appended, every state
        // change; finer with ELASTICACHE_LOCAL_LOG, e.g. `info,reconciler::schedule=debug`),
        // to see what a slow figure came from.
        let (log, level) = match std::env::var_os("BENCH_SERVER_LOG") {
            Some(path) => {
                let file =
                    std::fs::OpenOptions::new().create(true).append(true).open(path).context("BENCH_SERVER_LOG")?;
                (Some(file), std::env::var("ELASTICACHE_LOCAL_LOG").unwrap_or_else(|_| "info".to_string()))
            }
            None => (None, "warn".to_string()),
        };
        let output = || -> anyhow::Result<Stdio> {
            Ok(match &log {
                Some(file) => Stdio::from(file.try_clone()?),
                None => Stdio::null(),
            })
        };
        let child = command
            .env("ELASTICACHE_LOCAL_LOG", &level)
            .stdout(output()?)
            .stderr(output()?)
            .spawn()
            .context("spawning the server")?;
        Ok(Self { child, address })
    }

    /// SIGTERM, then wait: the emulator stops its nodes cleanly.
    fn terminate(mut self) -> anyhow::Result<()> {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        if !status.success() {
            bail!("kill -TERM failed");
        }
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One Query request (GET form); true when the server answered 200.
async fn answered(address: SocketAddr) -> bool {
    matches!(e2e::raw_get(address, "/?Action=DescribeCacheEngineVersions&Version=2015-02-02").await, Ok((200, _)))
}

async fn startup(binary: &PathBuf) -> anyhow::Result<Vec<Duration>> {
    let mut times = Vec::new();
    for _ in 0..STARTUP_RUNS {
        let started = Instant::now();
        let server = Server::spawn(binary)?;
        let deadline = started + Duration::from_secs(30);
        while !answered(server.address).await {
            if Instant::now() > deadline {
                bail!("server did not answer within 30 s");
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        times.push(started.elapsed());
    }
    Ok(times)
}

async fn client(address: SocketAddr) -> Client {
    client_in(address, "us-east-1").await
}

/// A client signing for `region` (the server keeps resources per region).
async fn client_in(address: SocketAddr, region: &str) -> Client {
    let config = e2e::sdk_config(&format!("http://{address}"), region)
        .credentials_provider(aws_sdk_elasticache::config::Credentials::new("bench", "bench", None, None, "bench"));
    Client::from_conf(config.build())
}

struct Load {
    requests: usize,
    errors: usize,
    latencies: Vec<Duration>,
    elapsed: Duration,
}

/// Runs `call` from CONNECTIONS concurrent tasks for LOAD_DURATION.
async fn load<F, Fut>(client: Client, call: F) -> Load
where
    F: Fn(Client) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (client, call) = (client.clone(), call.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0;
                while started.elapsed() < LOAD_DURATION {
                    let t = Instant::now();
                    if !call(client.clone()).await {
                        errors += 1;
                    }
                    latencies.push(t.elapsed());
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut all = Load { requests: 0, errors: 0, latencies: Vec::new(), elapsed: Duration::ZERO };
    for task in tasks {
        if let Ok((latencies, errors)) = task.await {
            all.requests += latencies.len();
            all.errors += errors;
            all.latencies.extend(latencies);
        }
    }
    all.elapsed = started.elapsed();
    all.latencies.sort();
    all
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1).min(sorted.len() - 1)]
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(name: &str, load: &Load) {
    println!(
        "{name}: {:.0} req/s over {CONNECTIONS} connections ({} requests, {} errors), p50 {:.2} ms, p99 {:.2} ms",
        load.requests as f64 / load.elapsed.as_secs_f64(),
        load.requests,
        load.errors,
        ms(percentile(&load.latencies, 0.50)),
        ms(percentile(&load.latencies, 0.99)),
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "soak") {
        return soak::main(&args[1..]).await;
    }
    let which = std::env::args().nth(1);
    let binary = server_binary()?;
    println!("server binary: {}", binary.display());
    if which.as_deref().is_none_or(|w| w == "api") {
        api(&binary).await?;
    }
    if which.as_deref().is_none_or(|w| w == "clusters") {
        let server = Server::spawn(&binary)?;
        while !answered(server.address).await {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        clusters::run(&client(server.address).await, server.address).await?;
    }
    if which.as_deref().is_none_or(|w| w == "describe") {
        describe::run(&binary).await?;
    }
    if which.as_deref().is_none_or(|w| w == "scale") {
        scale::run().await?;
    }
    if which.as_deref().is_none_or(|w| w == "replication") {
        let server = Server::spawn(&binary)?;
        while !answered(server.address).await {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        replication::run(&client(server.address).await, server.address).await?;
    }
    if which.as_deref().is_none_or(|w| w == "migration") {
        let server = Server::spawn(&binary)?;
        while !answered(server.address).await {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        migration::run(&client(server.address).await).await?;
        migration::serverless(&client(server.address).await, server.address).await?;
    }
    if which.as_deref().is_none_or(|w| w == "service-updates") {
        let server = Server::spawn(&binary)?;
        while !answered(server.address).await {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        service_updates::run(&client(server.address).await).await?;
    }
    if which.as_deref().is_none_or(|w| w == "global") {
        let server = Server::spawn(&binary)?;
        while !answered(server.address).await {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        global::run(&client(server.address).await, &client_in(server.address, "us-west-2").await).await?;
    }
    if which.as_deref().is_none_or(|w| w == "cluster-mode") {
        let server = Server::spawn(&binary)?;
        while !answered(server.address).await {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        cluster_mode::run(&client(server.address).await).await?;
    }
    if which.as_deref().is_none_or(|w| w == "snapshots") {
        snapshots::run(&binary).await?;
    }
    if which.as_deref().is_none_or(|w| w == "waiters") {
        waiters::run(&binary).await?;
    }
    if which.as_deref().is_none_or(|w| w == "tls") {
        let server = Server::spawn(&binary)?;
        while !answered(server.address).await {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tls::run(&client(server.address).await, server.address).await?;
    }
    if which.as_deref().is_none_or(|w| w == "serverless") {
        let server = Server::spawn(&binary)?;
        while !answered(server.address).await {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        serverless::run(&client(server.address).await, server.address).await?;
        let server = Server::spawn_with(&binary, &["--serverless-shard-bytes", serverless::SCALE_SHARD_BYTES])?;
        while !answered(server.address).await {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        serverless::scale_out(&client(server.address).await, server.address).await?;
    }
    if which.as_deref().is_none_or(|w| w == "slow-clients") {
        slow_clients::run(&binary).await?;
    }
    if which.as_deref().is_none_or(|w| w == "dashboard") {
        dashboard::run(&binary).await?;
    }
    if which.as_deref().is_none_or(|w| w == "thousand") {
        let nodes = match args.get(1) {
            Some(n) => n.parse().context("bench thousand N: N is a number of nodes")?,
            None => 1000,
        };
        thousand::run(&binary, nodes).await?;
    }
    Ok(())
}

async fn api(binary: &PathBuf) -> anyhow::Result<()> {
    let mut times = startup(binary).await?;
    times.sort();
    println!(
        "start-up (process start -> first answered API request): median {:.1} ms, min {:.1} ms, max {:.1} ms over {STARTUP_RUNS} runs",
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1]),
    );

    let server = Server::spawn(binary)?;
    while !answered(server.address).await {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let client = client(server.address).await;
    // Warm up the region's defaults and the connection pool.
    client.describe_cache_parameter_groups().send().await.context("warm-up request")?;

    let parameters = load(client.clone(), |c: Client| async move {
        c.describe_cache_parameters().cache_parameter_group_name("default.redis7").send().await.is_ok()
    })
    .await;
    report("DescribeCacheParameters(default.redis7, 100 records)", &parameters);

    let groups =
        load(client, |c: Client| async move { c.describe_cache_parameter_groups().send().await.is_ok() }).await;
    report("DescribeCacheParameterGroups", &groups);
    Ok(())
}
