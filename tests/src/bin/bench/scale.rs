//! Costs that stay flat as resources pile up, measured without nodes: the API's operations
//! over a real SQLite store in a temporary directory, called in this process through the
//! same decode → operation → encode path an HTTP request takes (`protocol::dispatch`). No
//! reconciler runs, so nothing spawns processes; where the reconciler would move a cluster
//! on (`creating` → `available`, `deleting` → gone), this bench writes what it would.
//!
//! Printed:
//! - CreateCacheCluster: median latency of the first and of the last 50 of 1,000 creates
//!   (250 one-node Memcached clusters in each of four regions: AWS's quotas are per region);
//! - DescribeCacheClusters of one id with 10 clusters stored and with 1,000;
//! - DescribeCacheClusters pages (MaxRecords 20 and 100) of a region holding 250 clusters;
//! - this process's resident memory before and along 10,000 create → available → delete →
//!   gone cycles.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use protocol::{QueryParams, RequestContext};
use store::{Scope, Store};

use crate::median;

const REGIONS: [&str; 4] = ["us-east-1", "us-west-2", "eu-west-1", "ap-southeast-1"];
const PER_REGION: usize = 250;
const TIMED_CALLS: usize = 200;
const CYCLES: usize = 10_000;
const ACCOUNT: &str = "000000000000";

struct Api {
    ops: Arc<operations::Operations>,
    store: Arc<Store>,
}

impl Api {
    async fn call(&self, region: &str, query: &str) -> Result<String, protocol::ApiError> {
        let ctx = RequestContext { request_id: "bench".into(), region: region.into(), account: ACCOUNT.into() };
        let params = QueryParams::parse(query.as_bytes());
        let action = params.get("Action").unwrap_or_default().to_string();
        protocol::dispatch(self.ops.as_ref(), &ctx, &action, &params).await
    }

    async fn create(&self, region: &str, id: &str) -> anyhow::Result<Duration> {
        let started = Instant::now();
        self.call(
            region,
            &format!(
                "Action=CreateCacheCluster&CacheClusterId={id}&Engine=memcached&CacheNodeType=cache.t3.micro&NumCacheNodes=1"
            ),
        )
        .await
        .map_err(|e| anyhow::anyhow!("create {id}: {} {}", e.code, e.message))?;
        Ok(started.elapsed())
    }

    /// What the reconciler writes once the nodes answer.
    async fn make_available(&self, region: &str, id: &str) -> anyhow::Result<()> {
        let scope = Scope { region: region.into(), account: ACCOUNT.into() };
        let updated = self
            .store
            .update_cache_cluster(&scope, id, |cluster, nodes| {
                cluster.status = "available".into();
                for (i, node) in nodes.iter_mut().enumerate() {
                    node.status = "available".into();
                    node.address = "127.0.0.1".into();
                    node.port = 20_000 + i as u16;
                }
                Ok::<_, ()>(Vec::new())
            })
            .await;
        match updated {
            Ok(Some(_)) => Ok(()),
            _ => bail!("marking {id} available failed"),
        }
    }

    /// DeleteCacheCluster, then what the reconciler does once the nodes are stopped.
    async fn delete(&self, region: &str, id: &str) -> anyhow::Result<()> {
        self.call(region, &format!("Action=DeleteCacheCluster&CacheClusterId={id}"))
            .await
            .map_err(|e| anyhow::anyhow!("delete {id}: {} {}", e.code, e.message))?;
        let scope = Scope { region: region.into(), account: ACCOUNT.into() };
        let arn = format!("arn:aws:elasticache:{region}:{ACCOUNT}:cluster:{id}");
        self.store.delete_cache_cluster(&scope, id, &arn, &[]).await.context("removing the deleted cluster")
    }

    /// Median latency of `TIMED_CALLS` calls of `query`.
    async fn timed(&self, region: &str, query: &str) -> anyhow::Result<Duration> {
        let mut times = Vec::with_capacity(TIMED_CALLS);
        for _ in 0..TIMED_CALLS {
            let started = Instant::now();
            self.call(region, query).await.map_err(|e| anyhow::anyhow!("{query}: {} {}", e.code, e.message))?;
            times.push(started.elapsed());
        }
        Ok(median(&mut times))
    }
}

/// This process's resident memory, in MiB.
fn rss_mib() -> f64 {
    crate::proc_stats::rss_kib(std::process::id()).unwrap_or(0) as f64 / 1024.0
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

pub async fn run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Arc::new(Store::open(&dir.path().join("scale.sqlite")).await?);
    let ops = Arc::new(operations::Operations::new(
        store.clone(),
        Arc::new(operations::Catalog::load()),
        operations::Settings {
            account: ACCOUNT.into(),
            zones: vec!["us-east-1a".into(), "us-east-1b".into(), "us-east-1c".into()],
            reconcile: Arc::default(),
            exports_dir: dir.path().join("exports"),
            settle_timeout: Duration::ZERO,
            serverless_gb_bytes: 1 << 30,
            endpoint_host: "127.0.0.1".into(),
            node_capacity: operations::NodeCapacity { nodes: usize::MAX, bound_by: "nothing".into() },
        },
    ));
    let api = Api { ops, store };
    println!("scale (in process, store and operations without nodes):");

    // Creates, and Describe of one id, as the store fills.
    let mut creates = Vec::new();
    let mut describe_small = Duration::ZERO;
    for i in 0..PER_REGION {
        for region in REGIONS {
            let id = format!("c-{i:04}");
            creates.push(api.create(region, &id).await?);
            api.make_available(region, &id).await?;
        }
        if i == 2 {
            describe_small = api
                .timed("us-east-1", "Action=DescribeCacheClusters&CacheClusterId=c-0001&ShowCacheNodeInfo=true")
                .await?;
        }
    }
    let total = creates.len();
    let (first, last) = (median(&mut creates[..50].to_vec()), median(&mut creates[total - 50..].to_vec()));
    println!(
        "CreateCacheCluster: median of the first 50 {:.0} us, of the last 50 (of {total}) {:.0} us",
        us(first),
        us(last)
    );
    let describe_large =
        api.timed("us-east-1", "Action=DescribeCacheClusters&CacheClusterId=c-0001&ShowCacheNodeInfo=true").await?;
    println!(
        "DescribeCacheClusters of one id: {:.0} us with {} clusters stored, {:.0} us with {total}",
        us(describe_small),
        3 * REGIONS.len(),
        us(describe_large)
    );

    // Pages of a region holding PER_REGION clusters.
    let page = |max: usize, marker: &str| {
        format!("Action=DescribeCacheClusters&ShowCacheNodeInfo=true&MaxRecords={max}&Marker={marker}")
    };
    let page_20 = api.timed("us-east-1", &page(20, "c-0100")).await?;
    let page_100 = api.timed("us-east-1", &page(100, "c-0100")).await?;
    println!(
        "DescribeCacheClusters page of a region with {PER_REGION} clusters: 20 records {:.0} us, 100 records {:.0} us ({:.1}x for 5x the records)",
        us(page_20),
        us(page_100),
        page_100.as_secs_f64() / page_20.as_secs_f64()
    );

    // Memory across create/delete cycles, in a region of its own (empty beside them).
    let region = "sa-east-1";
    let before = rss_mib();
    let started = Instant::now();
    let mut line = format!("resident memory over {CYCLES} create/delete cycles: {before:.1} MiB at 0");
    for cycle in 1..=CYCLES {
        let id = format!("cycle-{cycle}");
        api.create(region, &id).await?;
        api.make_available(region, &id).await?;
        api.delete(region, &id).await?;
        if cycle % (CYCLES / 4) == 0 {
            line.push_str(&format!(", {:.1} at {cycle}", rss_mib()));
        }
    }
    println!("{line} ({:.1} s)", started.elapsed().as_secs_f64());
    println!("(the store holds {total} clusters throughout; SQLite's page cache is bounded per connection)");
    Ok(())
}
