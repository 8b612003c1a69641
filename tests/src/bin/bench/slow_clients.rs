//! `/_emulator/health` latency (p50, p99 of 200 requests, each on a new connection) with no
//! other client, then while 20,000 half-open connections are held by `hold_connections`
//! helper processes (taken from beside this binary).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use e2e::half_open::HalfOpen;

use crate::{Server, answered, ms, percentile};

const HALF_OPEN: usize = 20_000;
const PROBES: usize = 200;

async fn health_latencies(address: SocketAddr) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::with_capacity(PROBES);
    for _ in 0..PROBES {
        let started = Instant::now();
        let (status, _) = e2e::raw_get(address, "/_emulator/health").await?;
        if status != 200 {
            bail!("health answered {status}");
        }
        latencies.push(started.elapsed());
    }
    latencies.sort();
    Ok(latencies)
}

fn print(label: &str, latencies: &[Duration]) {
    println!(
        "health {label}: p50 {:.2} ms, p99 {:.2} ms over {PROBES} requests",
        ms(percentile(latencies, 0.50)),
        ms(percentile(latencies, 0.99))
    );
}

pub async fn run(binary: &PathBuf) -> anyhow::Result<()> {
    let helper = std::env::current_exe()?.with_file_name("hold_connections");
    if !helper.is_file() {
        bail!("{} not found: build it with `cargo build --release -p e2e`", helper.display());
    }
    let server = Server::spawn(binary)?;
    while !answered(server.address).await {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    print("alone", &health_latencies(server.address).await?);
    let started = Instant::now();
    let half_open = HalfOpen::hold(&helper, server.address, HALF_OPEN).await.context("holding connections")?;
    println!("{} half-open connections opened in {:.0} ms", half_open.held, ms(started.elapsed()));
    print(&format!("with {} half-open connections held", half_open.held), &health_latencies(server.address).await?);
    Ok(())
}
