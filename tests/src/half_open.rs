//! Many half-open connections held against a server by `hold_connections` helper processes.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// How many connections one helper holds: a quarter of 20,000, each helper from its own
/// loopback address so that no address runs short of ports.
const PER_HELPER: usize = 5_000;

/// The helpers; their connections close when this is dropped.
pub struct HalfOpen {
    helpers: Vec<Child>,
    /// How many connections the helpers opened.
    pub held: usize,
}

impl HalfOpen {
    /// Opens `total` half-open connections to `server` with the helper binary at `helper`,
    /// and returns once every helper has opened its share.
    pub async fn hold(helper: &Path, server: SocketAddr, total: usize) -> anyhow::Result<Self> {
        let mut half_open = HalfOpen { helpers: Vec::new(), held: 0 };
        for (index, start) in (0..total).step_by(PER_HELPER).enumerate() {
            let count = PER_HELPER.min(total - start);
            let source = format!("127.0.0.{}", index + 2);
            let child = Command::new(helper)
                .args([server.to_string(), source, count.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting {}", helper.display()))?;
            half_open.helpers.push(child);
        }
        for child in &mut half_open.helpers {
            let stdout = child.stdout.take().context("helper stdout")?;
            let line = BufReader::new(stdout).lines().next_line().await?.context("helper exited early")?;
            let held: usize = line.strip_prefix("held ").and_then(|n| n.parse().ok()).context("helper output")?;
            half_open.held += held;
        }
        Ok(half_open)
    }
}
