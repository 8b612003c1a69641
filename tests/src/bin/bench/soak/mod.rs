//! The chaos soak: `bench soak --minutes N --seed S [--server PATH] [--settle-bound SECS]
//! [--rate WRITES_PER_S]`.
//!
//! It starts the emulator binary itself (a child process on a loopback port, with a state dir
//! of its own, so that it can `kill -9` it and start it again on the same state), creates a
//! few small resources of every kind — a cluster-mode-disabled group (3 nodes, Multi-AZ,
//! automatic failover, a custom parameter group), a cluster-mode group (2 shards × 2 nodes)
//! and a Memcached cluster — keeps writers and readers busy on them, and for N minutes
//! injects faults drawn at random from the seed: node kills and freezes, zone outages,
//! TestFailover, resharding, replica count changes, snapshot + restore, parameter changes and
//! `kill -9` + restart of the emulator. After every fault it waits, bounded, for every
//! resource to settle and checks the invariants (`invariants.rs`). It prints a report and
//! fails (exit status 1) on any violation, naming the seed to replay.
//!
//! # Layout
//! - `emulator.rs`: the emulator child process and the process table under its state dir;
//! - `load.rs`: writers (`SET` + `WAIT 1`, acknowledged keys recorded), readers, read-back;
//! - `faults.rs`: the faults, drawn from the seeded RNG, and how each is injected;
//! - `invariants.rs`: settling and the checks after each fault;
//! - here: options, set-up, the loop and the report.

mod emulator;
mod faults;
mod invariants;
mod load;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_elasticache::Client;
use aws_sdk_elasticache::types::ParameterNameValue;

use emulator::Emulator;
use faults::Fault;
use load::Load;

pub const RG: &str = "soak-rg";
pub const CM: &str = "soak-cm";
pub const MC: &str = "soak-mc";
pub const PARAMS: &str = "soak-params";

struct Options {
    minutes: f64,
    seed: u64,
    server: Option<PathBuf>,
    settle_bound: Duration,
    rate: u32,
}

fn parse(args: &[String]) -> anyhow::Result<Options> {
    let mut options = Options {
        minutes: 2.0,
        seed: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs(),
        server: None,
        settle_bound: Duration::from_secs(120),
        rate: 100,
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--minutes" => options.minutes = value()?.parse().context("--minutes")?,
            "--seed" => options.seed = value()?.parse().context("--seed")?,
            "--server" => options.server = Some(PathBuf::from(value()?)),
            "--settle-bound" => options.settle_bound = Duration::from_secs(value()?.parse().context("--settle-bound")?),
            "--rate" => options.rate = value()?.parse().context("--rate")?,
            other => bail!(
                "unknown option {other}; usage: bench soak --minutes N --seed S [--server PATH] [--settle-bound SECS] [--rate WRITES_PER_S]"
            ),
        }
    }
    if options.minutes <= 0.0 || options.rate == 0 {
        bail!("--minutes and --rate must be positive");
    }
    Ok(options)
}

/// xorshift64*: a tiny generator, so that a seed replays the same draws on any build.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // Never zero (xorshift would stay there); spread small seeds.
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// Uniform in `[lo, hi]` milliseconds.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo + 1))
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() { None } else { items.get(self.below(items.len())) }
    }
}

/// Everything a fault or a check needs.
pub struct Soak {
    pub emulator: Emulator,
    pub client: Client,
    pub rng: Rng,
    pub settle_bound: Duration,
    pub load: Option<Load>,
    pub started: Instant,
    /// The fault under way (for the violations it causes).
    pub current: String,
    pub violations: Vec<String>,
    pub faults: BTreeMap<&'static str, usize>,
    /// Faults the API refused (not violations, but listed).
    pub refused: Vec<String>,
    pub settle_times: Vec<Duration>,
    /// Read-backs that failed for a while after Describe said every resource was settled.
    pub late_reads: Vec<(Duration, String)>,
    /// The maxmemory-policy the parameter group now asks for.
    pub policy: String,
    pub next_id: usize,
}

impl Soak {
    pub fn violation(&mut self, what: impl std::fmt::Display) {
        let line = format!("[{:.1}s] after {}: {what}", self.started.elapsed().as_secs_f64(), self.current);
        println!("  VIOLATION {line}");
        self.violations.push(line);
    }

    pub fn log(&self, what: impl std::fmt::Display) {
        println!("[{:>6.1}s] {what}", self.started.elapsed().as_secs_f64());
    }
}

pub async fn main(args: &[String]) -> anyhow::Result<()> {
    let options = parse(args)?;
    let binary = match options.server.clone() {
        Some(path) => path,
        None => crate::server_binary()?,
    };
    let seed = options.seed;
    println!(
        "soak: seed {seed}, {} minute(s) of faults, settle bound {:?}, {} writes/s per writer, server {}",
        options.minutes,
        options.settle_bound,
        options.rate,
        binary.display()
    );
    let dir = tempfile::Builder::new().prefix("soak-").tempdir().context("temporary dir")?;
    let emulator = Emulator::start(binary, dir.path()).await?;
    println!(
        "emulator pid {} on {}, state dir {}",
        emulator.pid().unwrap_or(0),
        emulator.address,
        emulator.state_dir.display()
    );
    let client = crate::client(emulator.address).await;
    let mut soak = Soak {
        emulator,
        client,
        rng: Rng::new(seed),
        settle_bound: options.settle_bound,
        load: None,
        started: Instant::now(),
        current: "set-up".to_string(),
        violations: Vec::new(),
        faults: BTreeMap::new(),
        refused: Vec::new(),
        settle_times: Vec::new(),
        late_reads: Vec::new(),
        policy: "volatile-lru".to_string(),
        next_id: 0,
    };
    let outcome = run(&mut soak, &options).await;
    let ran = soak.started.elapsed();
    let rss_end = soak.emulator.rss_kib();
    if let Some(load) = &soak.load {
        load.stop().await;
    }
    let stopped = soak.emulator.terminate().await;
    report(&soak, &options, ran, rss_end);
    if let Err(e) = &outcome {
        println!("soak aborted: {e:#}");
    }
    if let Err(e) = &stopped {
        println!("emulator did not stop cleanly: {e:#}");
    }
    if outcome.is_err() || !soak.violations.is_empty() {
        let kept = dir.keep();
        println!("state dir and emulator log kept: {} (server.log)", kept.display());
        bail!(
            "soak failed with seed {seed}: {} violation(s){}; replay: bench soak --minutes {} --seed {seed}",
            soak.violations.len(),
            if outcome.is_err() { ", aborted" } else { "" },
            options.minutes
        );
    }
    Ok(())
}

async fn run(soak: &mut Soak, options: &Options) -> anyhow::Result<()> {
    let setup = Instant::now();
    create_resources(&soak.client).await?;
    invariants::settle(soak).await;
    let rss_start = soak.emulator.rss_kib();
    soak.log(format!(
        "set-up done in {:.1} s; emulator RSS {}",
        setup.elapsed().as_secs_f64(),
        rss_start.map_or("?".to_string(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
    ));
    soak.emulator.rss_start = rss_start;
    soak.load = Some(Load::start(&soak.client, options.rate).await?);
    invariants::check(soak).await;

    let faults_until = Instant::now() + Duration::from_secs_f64(options.minutes * 60.0);
    let mut n = 0;
    while Instant::now() < faults_until {
        // The soak's own pacing between faults: random, from the seed.
        let pause = soak.rng.millis(300, 2500);
        tokio::time::sleep(pause).await;
        n += 1;
        let fault = Fault::draw(&mut soak.rng);
        *soak.faults.entry(fault.name()).or_default() += 1;
        faults::inject(soak, fault, n).await?;
        let settled = invariants::settle(soak).await;
        invariants::check(soak).await;
        soak.log(format!("  settled in {:.1} s", settled.as_secs_f64()));
    }
    soak.current = "the end of the run".to_string();
    // The load stops before the last read-back, so every acknowledged key is checked.
    if let Some(load) = &soak.load {
        load.stop().await;
    }
    invariants::settle(soak).await;
    invariants::check(soak).await;
    Ok(())
}

pub fn pnv(name: &str, value: &str) -> ParameterNameValue {
    ParameterNameValue::builder().parameter_name(name).parameter_value(value).build()
}

async fn create_resources(client: &Client) -> anyhow::Result<()> {
    client
        .create_cache_parameter_group()
        .cache_parameter_group_name(PARAMS)
        .cache_parameter_group_family("redis7")
        .description("soak")
        .send()
        .await
        .context("CreateCacheParameterGroup")?;
    client
        .modify_cache_parameter_group()
        .cache_parameter_group_name(PARAMS)
        .parameter_name_values(pnv("maxmemory-policy", "volatile-lru"))
        .send()
        .await
        .context("ModifyCacheParameterGroup")?;
    client
        .create_replication_group()
        .replication_group_id(RG)
        .replication_group_description("soak: cluster mode disabled")
        .num_cache_clusters(3)
        .cache_node_type("cache.t3.micro")
        .cache_parameter_group_name(PARAMS)
        .automatic_failover_enabled(true)
        .multi_az_enabled(true)
        .send()
        .await
        .context("CreateReplicationGroup soak-rg")?;
    client
        .create_replication_group()
        .replication_group_id(CM)
        .replication_group_description("soak: cluster mode")
        .num_node_groups(2)
        .replicas_per_node_group(1)
        .cache_node_type("cache.t3.micro")
        .cache_parameter_group_name("default.redis7.cluster.on")
        .automatic_failover_enabled(true)
        .multi_az_enabled(true)
        .send()
        .await
        .context("CreateReplicationGroup soak-cm")?;
    client
        .create_cache_cluster()
        .cache_cluster_id(MC)
        .engine("memcached")
        .num_cache_nodes(2)
        .cache_node_type("cache.t3.micro")
        .send()
        .await
        .context("CreateCacheCluster soak-mc")?;
    Ok(())
}

fn report(soak: &Soak, options: &Options, ran: Duration, rss_end: Option<u64>) {
    let mib = |k: Option<u64>| k.map_or("?".to_string(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
    println!();
    println!("=== soak report (seed {}) ===", options.seed);
    println!(
        "minutes run: {:.2} end to end ({} minute(s) of faults asked for)",
        ran.as_secs_f64() / 60.0,
        options.minutes
    );
    let total: usize = soak.faults.values().sum();
    let kinds: Vec<String> = soak.faults.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!("faults injected: {total} ({})", kinds.join(", "));
    if !soak.refused.is_empty() {
        println!("faults the API refused: {}", soak.refused.len());
        for r in &soak.refused {
            println!("  {r}");
        }
    }
    let mut settles = soak.settle_times.clone();
    settles.sort();
    if let (Some(max), false) = (settles.last(), settles.is_empty()) {
        println!(
            "settle after a fault: median {:.1} s, max {:.1} s (bound {:?})",
            settles[settles.len() / 2].as_secs_f64(),
            max.as_secs_f64(),
            soak.settle_bound
        );
    }
    if let Some((longest, error)) = soak.late_reads.iter().max_by_key(|(took, _)| *took) {
        println!(
            "settled but not yet readable: {} time(s), longest {:.1} s ({error})",
            soak.late_reads.len(),
            longest.as_secs_f64()
        );
    }
    if let Some(load) = &soak.load {
        load.report();
    } else {
        println!("(no load figures: the run stopped before the load started)");
    }
    println!("invariant violations: {}", soak.violations.len());
    for v in &soak.violations {
        println!("  {v}");
    }
    println!(
        "emulator RSS: {} at start, {} at end ({} kill -9 + restart(s))",
        mib(soak.emulator.rss_start),
        mib(rss_end),
        soak.emulator.restarts
    );
    println!("replay: bench soak --minutes {} --seed {}", options.minutes, options.seed);
}
