//! The load the soak keeps on its resources while the faults go on: one writer per Redis
//! group (`SET soak:<group>:<n> v<n>` then `WAIT 1 500` on the same connection; only a write
//! at least one replica confirmed counts as acknowledged), a reader on the
//! cluster-mode-disabled group's reader endpoint and a set/get client on the Memcached nodes
//! (their errors are counted, never violations), and the read-back of every acknowledged key.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use aws_sdk_elasticache::Client;
use e2e::{MemcachedClient, RedisClient, Resp};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{CM, MC, RG};

/// How long a write waits for a replica's acknowledgement.
const WAIT_MS: &str = "500";
/// Keys per pipelined read-back round trip.
const READ_BATCH: usize = 500;

type Address = (String, u16);

/// The counters of one resource's load.
#[derive(Default)]
pub struct Stats {
    /// The n of every acknowledged `soak:<group>:<n>` not yet found lost.
    acked_keys: Mutex<Vec<u64>>,
    pub writes: AtomicU64,
    pub acked: AtomicU64,
    /// `SET` answered OK but no replica confirmed it in time.
    pub unacked: AtomicU64,
    pub write_errors: AtomicU64,
    pub lost: AtomicU64,
    pub reads: AtomicU64,
    pub read_errors: AtomicU64,
    /// A reader found no value (a replica behind its primary; not a violation).
    pub read_misses: AtomicU64,
}

impl Stats {
    fn acknowledged(&self, n: u64) {
        self.acked.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut keys) = self.acked_keys.lock() {
            keys.push(n);
        }
    }

    fn keys(&self) -> Vec<u64> {
        self.acked_keys.lock().map(|k| k.clone()).unwrap_or_default()
    }

    /// Counts `lost` once and stops checking them.
    fn forget(&self, lost: &[u64]) {
        self.lost.fetch_add(lost.len() as u64, Ordering::Relaxed);
        if let Ok(mut keys) = self.acked_keys.lock() {
            keys.retain(|n| !lost.contains(n));
        }
    }

    fn random_key(&self, draw: u64) -> Option<u64> {
        let keys = self.acked_keys.lock().ok()?;
        if keys.is_empty() { None } else { keys.get((draw % keys.len() as u64) as usize).copied() }
    }
}

pub fn key(group: &str, n: u64) -> String {
    format!("soak:{group}:{n}")
}

pub fn value(n: u64) -> String {
    format!("v{n}")
}

pub struct Load {
    stop: watch::Sender<bool>,
    tasks: tokio::sync::Mutex<Vec<JoinHandle<()>>>,
    pub rg: Arc<Stats>,
    pub cm: Arc<Stats>,
    pub mc: Arc<Stats>,
    pub rg_primary: Address,
    pub cm_configuration: Address,
}

fn address(endpoint: Option<&aws_sdk_elasticache::types::Endpoint>) -> anyhow::Result<Address> {
    let endpoint = endpoint.context("no endpoint")?;
    Ok((endpoint.address().context("no address")?.to_string(), endpoint.port().context("no port")? as u16))
}

impl Load {
    pub async fn start(client: &Client, rate: u32) -> anyhow::Result<Self> {
        let rg = client.describe_replication_groups().replication_group_id(RG).send().await?;
        let rg = rg.replication_groups().first().and_then(|g| g.node_groups().first()).context("soak-rg")?;
        let (rg_primary, rg_reader) = (address(rg.primary_endpoint())?, address(rg.reader_endpoint())?);
        let cm = client.describe_replication_groups().replication_group_id(CM).send().await?;
        let cm_configuration = address(cm.replication_groups().first().and_then(|g| g.configuration_endpoint()))?;
        let mc = client.describe_cache_clusters().cache_cluster_id(MC).show_cache_node_info(true).send().await?;
        let mc_nodes = mc
            .cache_clusters()
            .first()
            .map(|c| c.cache_nodes().iter().filter_map(|n| address(n.endpoint()).ok()).collect::<Vec<_>>())
            .unwrap_or_default();
        let (stop, stopped) = watch::channel(false);
        let load = Self {
            stop,
            tasks: tokio::sync::Mutex::new(Vec::new()),
            rg: Arc::default(),
            cm: Arc::default(),
            mc: Arc::default(),
            rg_primary: rg_primary.clone(),
            cm_configuration: cm_configuration.clone(),
        };
        let period = Duration::from_secs_f64(1.0 / f64::from(rate));
        let tasks = vec![
            tokio::spawn(plain_writer(rg_primary, load.rg.clone(), period, stopped.clone())),
            tokio::spawn(cluster_writer(cm_configuration, load.cm.clone(), period, stopped.clone())),
            tokio::spawn(reader(rg_reader, load.rg.clone(), period, stopped.clone())),
            tokio::spawn(memcached(mc_nodes, load.mc.clone(), period, stopped)),
        ];
        *load.tasks.lock().await = tasks;
        Ok(load)
    }

    /// Stops every writer and reader and waits for them (a write under way ends first).
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        for task in self.tasks.lock().await.drain(..) {
            let _ = task.await;
        }
    }

    /// Reads back every acknowledged key of both groups; the lost ones are counted once and
    /// returned as `(group, keys)`. Fails when a group cannot be read at all.
    pub async fn read_back(&self) -> anyhow::Result<Vec<(&'static str, Vec<String>)>> {
        let mut lost = Vec::new();
        let keys = self.rg.keys();
        let missing = read_back_plain(&self.rg_primary, RG, &keys).await.context("reading back soak-rg")?;
        self.rg.forget(&missing);
        lost.push((RG, missing.iter().map(|&n| key(RG, n)).collect()));
        let keys = self.cm.keys();
        let missing = read_back_cluster(&self.cm_configuration, &keys).await.context("reading back soak-cm")?;
        self.cm.forget(&missing);
        lost.push((CM, missing.iter().map(|&n| key(CM, n)).collect()));
        Ok(lost)
    }

    /// The keys of soak-rg acknowledged so far (for a snapshot's check).
    pub fn rg_keys(&self) -> Vec<u64> {
        self.rg.keys()
    }

    pub fn report(&self) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (name, s) in [(RG, &self.rg), (CM, &self.cm)] {
            println!(
                "writes to {name}: {} SETs, {} acknowledged by WAIT 1 (>= 1 replica), {} answered OK but not confirmed by a replica, {} errors; acknowledged writes lost: {}",
                get(&s.writes),
                get(&s.acked),
                get(&s.unacked),
                get(&s.write_errors),
                get(&s.lost)
            );
        }
        println!(
            "reads through {RG}'s reader endpoint: {} ({} errors, {} not there yet: replica lag, not violations)",
            get(&self.rg.reads),
            get(&self.rg.read_errors),
            get(&self.rg.read_misses)
        );
        println!(
            "memcached {MC}: {} sets, {} gets, {} errors (counted, not violations)",
            get(&self.mc.writes),
            get(&self.mc.reads),
            get(&self.mc.write_errors) + get(&self.mc.read_errors)
        );
        let acked = get(&self.rg.acked) + get(&self.cm.acked);
        let lost = get(&self.rg.lost) + get(&self.cm.lost);
        println!("acknowledged writes: {acked}; lost: {lost}");
    }
}

fn ticker(period: Duration) -> tokio::time::Interval {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

/// `SET` then `WAIT 1` through the primary endpoint, reconnecting after any error.
async fn plain_writer(endpoint: Address, stats: Arc<Stats>, period: Duration, stop: watch::Receiver<bool>) {
    let mut tick = ticker(period);
    let mut connection: Option<RedisClient> = None;
    let mut n = 0u64;
    while !*stop.borrow() {
        tick.tick().await;
        if connection.is_none() {
            match RedisClient::connect(&endpoint.0, endpoint.1).await {
                Ok(c) => connection = Some(c),
                Err(_) => {
                    stats.write_errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
        }
        let Some(redis) = connection.as_mut() else { continue };
        n += 1;
        stats.writes.fetch_add(1, Ordering::Relaxed);
        match write_and_wait(redis, &key(RG, n), &value(n)).await {
            Ok(true) => stats.acknowledged(n),
            Ok(false) => {
                stats.unacked.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                stats.write_errors.fetch_add(1, Ordering::Relaxed);
                connection = None;
            }
        }
    }
}

/// `SET key value` then `WAIT 1` on the same connection: whether a replica confirmed it.
async fn write_and_wait(redis: &mut RedisClient, key: &str, value: &str) -> anyhow::Result<bool> {
    match redis.command(&["SET", key, value]).await? {
        Resp::Simple(ok) if ok == "OK" => {}
        other => bail!("SET answered {other:?}"),
    }
    match redis.command(&["WAIT", "1", WAIT_MS]).await? {
        Resp::Integer(replicas) => Ok(replicas >= 1),
        other => bail!("WAIT answered {other:?}"),
    }
}

/// A slot map from `CLUSTER SLOTS` and a connection per node: routes a command to the
/// node that owns its key, following MOVED and ASK, so that a write's `WAIT` runs on the
/// very node (and connection) that took the write.
struct Router {
    configuration: Address,
    slots: Vec<(u16, u16, Address)>,
    connections: HashMap<Address, RedisClient>,
}

impl Router {
    fn new(configuration: Address) -> Self {
        Self { configuration, slots: Vec::new(), connections: HashMap::new() }
    }

    async fn refresh(&mut self) -> anyhow::Result<()> {
        let mut redis = RedisClient::connect(&self.configuration.0, self.configuration.1).await?;
        let Resp::Array(Some(ranges)) = redis.command(&["CLUSTER", "SLOTS"]).await? else {
            bail!("CLUSTER SLOTS answered no array");
        };
        let mut slots = Vec::new();
        for range in ranges {
            let Resp::Array(Some(items)) = range else { continue };
            let (Some(Resp::Integer(from)), Some(Resp::Integer(to)), Some(Resp::Array(Some(primary)))) =
                (items.first(), items.get(1), items.get(2))
            else {
                continue;
            };
            let host = primary.first().and_then(Resp::text).unwrap_or_default();
            let host = if host.is_empty() { self.configuration.0.clone() } else { host };
            let Some(Resp::Integer(port)) = primary.get(1) else { continue };
            slots.push((*from as u16, *to as u16, (host, *port as u16)));
        }
        if slots.is_empty() {
            bail!("CLUSTER SLOTS listed no slot");
        }
        self.slots = slots;
        Ok(())
    }

    fn owner(&self, key: &str) -> Option<Address> {
        let slot = nodes::cluster::key_slot(key.as_bytes());
        self.slots.iter().find(|(from, to, _)| (*from..=*to).contains(&slot)).map(|(_, _, a)| a.clone())
    }

    async fn connection(&mut self, address: &Address) -> anyhow::Result<&mut RedisClient> {
        if !self.connections.contains_key(address) {
            let redis = RedisClient::connect(&address.0, address.1).await?;
            self.connections.insert(address.clone(), redis);
        }
        self.connections.get_mut(address).context("connection")
    }

    /// Runs `args` (whose key is `key`) where the key lives; the reply and the node's address.
    async fn on_owner(&mut self, key: &str, args: &[&str]) -> anyhow::Result<(Resp, Address)> {
        if self.slots.is_empty() {
            self.refresh().await?;
        }
        let mut target = self.owner(key).context("no node owns the key's slot")?;
        let mut asking = false;
        for _ in 0..5 {
            let result = async {
                let redis = self.connection(&target).await?;
                if asking {
                    redis.command(&["ASKING"]).await?;
                }
                redis.command(args).await
            }
            .await;
            let reply = match result {
                Ok(reply) => reply,
                Err(e) => {
                    self.connections.remove(&target);
                    self.slots.clear();
                    return Err(e);
                }
            };
            match &reply {
                Resp::Error(e) if e.starts_with("MOVED ") || e.starts_with("ASK ") => {
                    asking = e.starts_with("ASK ");
                    let to = e.split_whitespace().nth(2).unwrap_or_default();
                    let (host, port) = to.rsplit_once(':').context("redirect without an address")?;
                    let host = if host.is_empty() { target.0.clone() } else { host.to_string() };
                    target = (host, port.parse().context("redirect port")?);
                    if !asking {
                        // The map is stale; this key's node is known, the rest is fetched later.
                        self.slots.clear();
                    }
                }
                _ => return Ok((reply, target)),
            }
        }
        bail!("too many redirects for {key}")
    }
}

/// `SET` then `WAIT 1` on the node that owns each key, through a cluster-aware router.
async fn cluster_writer(configuration: Address, stats: Arc<Stats>, period: Duration, stop: watch::Receiver<bool>) {
    let mut tick = ticker(period);
    let mut router = Router::new(configuration);
    let mut n = 0u64;
    while !*stop.borrow() {
        tick.tick().await;
        n += 1;
        stats.writes.fetch_add(1, Ordering::Relaxed);
        let (k, v) = (key(CM, n), value(n));
        let acked = async {
            let (reply, node) = router.on_owner(&k, &["SET", &k, &v]).await?;
            if reply != Resp::Simple("OK".to_string()) {
                bail!("SET answered {reply:?}");
            }
            match router.connection(&node).await?.command(&["WAIT", "1", WAIT_MS]).await? {
                Resp::Integer(replicas) => Ok(replicas >= 1),
                other => bail!("WAIT answered {other:?}"),
            }
        }
        .await;
        match acked {
            Ok(true) => stats.acknowledged(n),
            Ok(false) => {
                stats.unacked.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                stats.write_errors.fetch_add(1, Ordering::Relaxed);
                router.slots.clear();
                router.connections.clear();
            }
        }
    }
}

/// `GET` of acknowledged keys through the reader endpoint.
async fn reader(endpoint: Address, stats: Arc<Stats>, period: Duration, stop: watch::Receiver<bool>) {
    let mut tick = ticker(period);
    let mut connection: Option<RedisClient> = None;
    let mut draw = super::Rng::new(0x5EED);
    while !*stop.borrow() {
        tick.tick().await;
        let Some(n) = stats.random_key(draw.next()) else { continue };
        if connection.is_none() {
            connection = RedisClient::connect(&endpoint.0, endpoint.1).await.ok();
        }
        stats.reads.fetch_add(1, Ordering::Relaxed);
        let Some(redis) = connection.as_mut() else {
            stats.read_errors.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        match redis.get(&key(RG, n)).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                stats.read_misses.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                stats.read_errors.fetch_add(1, Ordering::Relaxed);
                connection = None;
            }
        }
    }
}

/// `set` then `get` on the Memcached nodes in turn (a cache: nothing is expected to last).
async fn memcached(nodes: Vec<Address>, stats: Arc<Stats>, period: Duration, stop: watch::Receiver<bool>) {
    let mut tick = ticker(period);
    let mut connections: Vec<Option<MemcachedClient>> = nodes.iter().map(|_| None).collect();
    let mut n = 0u64;
    while !*stop.borrow() && !nodes.is_empty() {
        tick.tick().await;
        n += 1;
        let i = (n % nodes.len() as u64) as usize;
        if connections[i].is_none() {
            connections[i] = MemcachedClient::connect(&nodes[i].0, nodes[i].1).await.ok();
        }
        let Some(mc) = connections[i].as_mut() else {
            stats.write_errors.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        stats.writes.fetch_add(1, Ordering::Relaxed);
        let k = key(MC, n);
        if mc.set(&k, &value(n)).await.is_err() {
            stats.write_errors.fetch_add(1, Ordering::Relaxed);
            connections[i] = None;
            continue;
        }
        stats.reads.fetch_add(1, Ordering::Relaxed);
        if mc.get(&k).await.is_err() {
            stats.read_errors.fetch_add(1, Ordering::Relaxed);
            connections[i] = None;
        }
    }
}

/// `GET` of many keys on one server in pipelined batches: the values, in order.
async fn pipelined_get(address: &Address, keys: &[String]) -> anyhow::Result<Vec<Option<String>>> {
    let client = redis::Client::open(format!("redis://{}:{}/", address.0, address.1))?;
    let mut connection = tokio::time::timeout(Duration::from_secs(5), client.get_multiplexed_async_connection())
        .await
        .context("connect timed out")??;
    let mut values = Vec::with_capacity(keys.len());
    for batch in keys.chunks(READ_BATCH) {
        let mut pipe = redis::pipe();
        for k in batch {
            pipe.get(k);
        }
        let got: Vec<Option<String>> = tokio::time::timeout(Duration::from_secs(10), pipe.query_async(&mut connection))
            .await
            .context("pipelined GET timed out")??;
        values.extend(got);
    }
    Ok(values)
}

/// The ns of `keys` that `soak-rg`'s primary endpoint does not hold as written.
pub async fn read_back_plain(endpoint: &Address, group: &str, keys: &[u64]) -> anyhow::Result<Vec<u64>> {
    let names: Vec<String> = keys.iter().map(|&n| key(group, n)).collect();
    let values = pipelined_get(endpoint, &names).await?;
    Ok(keys.iter().zip(values).filter(|(n, v)| v.as_deref() != Some(value(**n).as_str())).map(|(n, _)| *n).collect())
}

/// The ns of `keys` the cluster-mode group does not hold as written: each key asked of the
/// node that owns its slot, pipelined per node; a batch that meets a redirect is asked key
/// by key through the router instead.
async fn read_back_cluster(configuration: &Address, keys: &[u64]) -> anyhow::Result<Vec<u64>> {
    let mut router = Router::new(configuration.clone());
    router.refresh().await?;
    let mut by_node: BTreeMap<Address, Vec<u64>> = BTreeMap::new();
    for &n in keys {
        let owner = router.owner(&key(CM, n)).context("a slot without an owner")?;
        by_node.entry(owner).or_default().push(n);
    }
    let mut missing = Vec::new();
    for (node, ns) in by_node {
        let names: Vec<String> = ns.iter().map(|&n| key(CM, n)).collect();
        match pipelined_get(&node, &names).await {
            Ok(values) => missing.extend(
                ns.iter().zip(values).filter(|(n, v)| v.as_deref() != Some(value(**n).as_str())).map(|(n, _)| *n),
            ),
            Err(_) => {
                for n in ns {
                    let k = key(CM, n);
                    match router.on_owner(&k, &["GET", &k]).await? {
                        (Resp::Error(e), node) => bail!("GET {k} on {node:?} answered {e}"),
                        (reply, _) if reply.text() != Some(value(n)) => missing.push(n),
                        _ => {}
                    }
                }
            }
        }
    }
    missing.sort();
    Ok(missing)
}
