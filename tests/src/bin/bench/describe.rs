//! DescribeCacheClusters at the speed of the encoder: requests per second and p99 latency of
//! four paths against a server holding 100 one-node Memcached clusters (real nodes):
//! - all 100 clusters with ShowCacheNodeInfo=true (a ~190 KB answer),
//! - one cluster by id,
//! - an id that does not exist (the not-found error),
//! - the empty answer (measured before the clusters are created).
//!
//! Requests are the Query API's GET form, unsigned (permissive auth), over 16 keep-alive
//! connections for a few seconds each: driven by `wrk -t2 -c16 --latency` when it is on
//! `PATH` (its figures are printed as it reports them), otherwise by an in-process HTTP/1.1
//! load generator. With `moto_server` on `PATH`, moto's figures for the same paths are printed
//! beside them.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_elasticache::Client;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::{CONNECTIONS, free_port, ms, percentile};

const CLUSTERS: usize = 100;
const DURATION: Duration = Duration::from_secs(5);
const DEADLINE: Duration = Duration::from_secs(120);

const ALL: &str = "/?Action=DescribeCacheClusters&Version=2015-02-02&ShowCacheNodeInfo=true";
const ONE: &str = "/?Action=DescribeCacheClusters&Version=2015-02-02&ShowCacheNodeInfo=true&CacheClusterId=load-042";
const NOT_FOUND: &str = "/?Action=DescribeCacheClusters&Version=2015-02-02&CacheClusterId=no-such-cluster";
const EMPTY: &str = "/?Action=DescribeCacheClusters&Version=2015-02-02";

/// Requests per second and p99 latency of one path.
struct Figures {
    requests_per_second: f64,
    p99: Duration,
    errors: String,
}

fn wrk_present() -> bool {
    Command::new("wrk").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// `12.5ms`, `830.00us`, `1.02s` → a duration.
fn wrk_duration(text: &str) -> Option<Duration> {
    let (number, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic())?);
    let value: f64 = number.parse().ok()?;
    let seconds = match unit {
        "us" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(seconds))
}

async fn with_wrk(address: SocketAddr, path: &str) -> anyhow::Result<Figures> {
    let output = tokio::process::Command::new("wrk")
        .args(["-t2", &format!("-c{CONNECTIONS}"), &format!("-d{}s", DURATION.as_secs()), "--latency"])
        .arg(format!("http://{address}{path}"))
        .output()
        .await
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let requests_per_second = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{text}"))?;
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .and_then(|v| wrk_duration(v.trim()))
        .with_context(|| format!("no 99% latency in wrk's output:\n{text}"))?;
    let errors = text
        .lines()
        .filter(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ");
    Ok(Figures { requests_per_second, p99, errors })
}

/// One keep-alive connection's request: the status code, after reading the whole body.
async fn exchange(stream: &mut BufReader<tokio::net::TcpStream>, request: &[u8]) -> anyhow::Result<u16> {
    stream.get_mut().write_all(request).await?;
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    let status: u16 = line.split(' ').nth(1).context("status line")?.parse()?;
    let mut length = 0usize;
    loop {
        line.clear();
        if stream.read_line(&mut line).await? == 0 {
            bail!("connection closed");
        }
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse()?;
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await?;
    Ok(status)
}

/// The fallback without wrk: CONNECTIONS keep-alive connections sending `path` in a loop.
async fn in_process(address: SocketAddr, path: &str, expected: u16) -> anyhow::Result<Figures> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n").into_bytes();
    let started = Instant::now();
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let request = request.clone();
            tokio::spawn(async move {
                let mut stream = BufReader::new(tokio::net::TcpStream::connect(address).await?);
                let (mut latencies, mut errors) = (Vec::new(), 0usize);
                while started.elapsed() < DURATION {
                    let t = Instant::now();
                    if exchange(&mut stream, &request).await? != expected {
                        errors += 1;
                    }
                    latencies.push(t.elapsed());
                }
                anyhow::Ok((latencies, errors))
            })
        })
        .collect();
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for task in tasks {
        let (l, e) = task.await??;
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Ok(Figures {
        requests_per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p99: percentile(&latencies, 0.99),
        errors: if errors > 0 { format!("{errors} unexpected statuses") } else { String::new() },
    })
}

async fn drive(address: SocketAddr, path: &str, expected: u16) -> anyhow::Result<Figures> {
    if wrk_present() { with_wrk(address, path).await } else { in_process(address, path, expected).await }
}

fn print(label: &str, ours: &Figures, moto: Option<&Figures>) {
    let mut line = format!("{label}: {:.0} req/s, p99 {:.2} ms", ours.requests_per_second, ms(ours.p99));
    if !ours.errors.is_empty() {
        line.push_str(&format!(" ({})", ours.errors));
    }
    if let Some(m) = moto {
        line.push_str(&format!("; moto {:.0} req/s, p99 {:.2} ms", m.requests_per_second, ms(m.p99)));
    }
    println!("{line}");
}

async fn create_clusters(client: &Client) -> anyhow::Result<()> {
    for chunk in (0..CLUSTERS).collect::<Vec<_>>().chunks(20) {
        let creates = chunk.iter().map(|i| {
            client
                .create_cache_cluster()
                .cache_cluster_id(format!("load-{i:03}"))
                .engine("memcached")
                .cache_node_type("cache.t3.micro")
                .num_cache_nodes(1)
                .send()
        });
        for result in futures::future::join_all(creates).await {
            result.context("create for the describe load")?;
        }
    }
    Ok(())
}

async fn wait_available(client: &Client) -> anyhow::Result<()> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let page = client.describe_cache_clusters().send().await?;
        let available = page.cache_clusters().iter().filter(|c| c.cache_cluster_status() == Some("available")).count();
        if available == CLUSTERS {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {available} of {CLUSTERS} clusters available");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// moto's figures for the same four paths, when `moto_server` is installed.
async fn moto() -> anyhow::Result<Option<[Figures; 4]>> {
    if Command::new("sh").args(["-c", "command -v moto_server"]).stdout(Stdio::null()).status()?.success() {
        let address = free_port()?;
        let mut child = crate::child_command("moto_server")
            .args(["-H", "127.0.0.1", "-p", &address.port().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let result = moto_figures(address).await;
        let _ = child.kill();
        let _ = child.wait();
        return result.map(Some);
    }
    Ok(None)
}

async fn moto_figures(address: SocketAddr) -> anyhow::Result<[Figures; 4]> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while e2e::raw_get(address, EMPTY).await.is_err() {
        if Instant::now() > deadline {
            bail!("moto_server did not answer");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let empty = drive(address, EMPTY, 200).await?;
    let client = crate::client(address).await;
    create_clusters(&client).await?;
    let all = drive(address, ALL, 200).await?;
    let one = drive(address, ONE, 200).await?;
    let not_found = drive(address, NOT_FOUND, 404).await?;
    Ok([all, one, not_found, empty])
}

pub async fn run(binary: &Path) -> anyhow::Result<()> {
    println!(
        "DescribeCacheClusters load: {} over {CONNECTIONS} connections, {} s per path",
        if wrk_present() { "wrk -t2 --latency" } else { "in-process HTTP/1.1 client (wrk not found)" },
        DURATION.as_secs()
    );
    let server = crate::Server::spawn(&binary.to_path_buf())?;
    while !crate::answered(server.address).await {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let empty = drive(server.address, EMPTY, 200).await?;
    let client = crate::client(server.address).await;
    create_clusters(&client).await?;
    wait_available(&client).await?;
    let (status, body) = e2e::raw_get(server.address, ALL).await?;
    println!("answer for all {CLUSTERS} clusters with their nodes: {status}, {} bytes", body.len());
    let all = drive(server.address, ALL, 200).await?;
    let one = drive(server.address, ONE, 200).await?;
    let not_found = drive(server.address, NOT_FOUND, 404).await?;
    server.terminate()?;
    let moto = moto().await.unwrap_or_else(|error| {
        println!("moto_server: no figures ({error:#})");
        None
    });
    let moto = moto.as_ref();
    print(&format!("all {CLUSTERS} clusters, ShowCacheNodeInfo=true"), &all, moto.map(|m| &m[0]));
    print("one cluster by id", &one, moto.map(|m| &m[1]));
    print("not found", &not_found, moto.map(|m| &m[2]));
    print("empty (no clusters)", &empty, moto.map(|m| &m[3]));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_durations() {
        assert_eq!(wrk_duration("830.00us"), Some(Duration::from_micros(830)));
        assert_eq!(wrk_duration("1.50ms"), Some(Duration::from_micros(1500)));
        assert_eq!(wrk_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(wrk_duration("fast"), None);
    }
}
