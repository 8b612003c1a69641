//! The dashboard (`/_emulator/ui`): its weight as served, its time to first render in a
//! headless Chromium (the page's own `performance.now()` when it has drawn the topology, and
//! the wall time of a `chromium --headless --screenshot` run), and the server's idle CPU
//! with the event stream open and closed (utime + stime from /proc over [`IDLE_WINDOW`]),
//! on an empty server and with a three-node replication group.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::browser::{Browser, chromium_binary};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::proc_stats::cpu_time;
use crate::{Server, answered, client, median, ms};

const RENDER_RUNS: usize = 5;
const IDLE_WINDOW: Duration = Duration::from_secs(30);

pub async fn run(binary: &PathBuf) -> anyhow::Result<()> {
    let server = Server::spawn(binary)?;
    while !answered(server.address).await {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let pid = server.child.id();
    let client = client(server.address).await;

    let (_, page) = e2e::raw_get(server.address, "/_emulator/ui").await?;
    println!("dashboard page weight: {} bytes (HTML, CSS and JS in one response, uncompressed)", page.len());
    let (_, topology) = e2e::raw_get(server.address, "/_emulator/topology").await?;
    println!("dashboard: topology document {} bytes on an empty server", topology.len());

    idle(server.address, pid, "empty server").await?;
    crate::thousand::create_group(&client, "bench-ui", "redis").await?;
    let (_, topology) = e2e::raw_get(server.address, "/_emulator/topology").await?;
    println!("dashboard: topology document {} bytes with a 3-node group", topology.len());
    render(server.address).await?;
    idle(server.address, pid, "3-node replication group").await?;
    Ok(())
}

async fn render(address: SocketAddr) -> anyhow::Result<()> {
    let url = format!("http://{address}/_emulator/ui");
    let (mut first, mut response_end, mut dom_ready) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RENDER_RUNS {
        let mut page = Browser::open(&url, 1400, 900).await?;
        page.wait_for(
            "a first render",
            "document.body.dataset.firstRender !== undefined",
            "document.body.outerHTML.slice(0, 200)",
            Duration::from_secs(30),
        )
        .await?;
        let timing = page
            .eval("(() => { const n = performance.getEntriesByType('navigation')[0]; return [Number(document.body.dataset.firstRender), n.responseEnd, n.domContentLoadedEventEnd]; })()")
            .await?;
        let at = |i: usize| Duration::from_secs_f64(timing[i].as_f64().unwrap_or(0.0) / 1000.0);
        first.push(at(0));
        response_end.push(at(1));
        dom_ready.push(at(2));
    }
    println!(
        "dashboard time to first render (3 nodes, headless Chromium, from navigation start): median {:.0} ms (page received {:.0} ms, DOMContentLoaded {:.0} ms), {RENDER_RUNS} runs",
        ms(median(&mut first)),
        ms(median(&mut response_end)),
        ms(median(&mut dom_ready)),
    );
    let chromium = chromium_binary()?;
    let shot = tempfile::tempdir()?;
    let started = Instant::now();
    let status = Command::new(&chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,900"])
        .arg(format!("--screenshot={}", shot.path().join("page.png").display()))
        .arg(format!("--user-data-dir={}", shot.path().join("profile").display()))
        .arg(&url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    println!(
        "dashboard: `chromium --headless --screenshot` run {:.0} ms wall time (browser start to exit; {status})",
        ms(started.elapsed())
    );
    Ok(())
}

async fn idle(address: SocketAddr, pid: u32, what: &str) -> anyhow::Result<()> {
    // Let what the last request started settle first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = cpu_time(pid)?;
    tokio::time::sleep(IDLE_WINDOW).await;
    let closed = cpu_time(pid)? - before;

    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let request = format!("GET /_emulator/events HTTP/1.1\r\nHost: {address}\r\nAccept: text/event-stream\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let reading = tokio::spawn(async move {
        let (mut total, mut buffer) = (0usize, vec![0; 16384]);
        while let Ok(n) = stream.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            total += n;
        }
        total
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = cpu_time(pid)?;
    tokio::time::sleep(IDLE_WINDOW).await;
    let open = cpu_time(pid)? - before;
    reading.abort();
    let percent = |d: Duration| d.as_secs_f64() / IDLE_WINDOW.as_secs_f64() * 100.0;
    println!(
        "dashboard: server idle CPU ({what}) over {} s: {:.0} ms ({:.2}%) with no event stream, {:.0} ms ({:.2}%) with one open",
        IDLE_WINDOW.as_secs(),
        ms(closed),
        percent(closed),
        ms(open),
        percent(open),
    );
    Ok(())
}
