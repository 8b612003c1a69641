//! The emulator under test, as a child process on a loopback port with a state dir of its
//! own (so that a `kill -9` and a restart on the same state is possible), and the engine
//! processes found in the process table that work under that state dir.

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long the emulator may take to answer `/_emulator/health` after a (re)start.
const READY_BOUND: Duration = Duration::from_secs(60);
/// How long a graceful stop (SIGTERM: every node stopped first) may take.
const STOP_BOUND: Duration = Duration::from_secs(30);

pub struct Emulator {
    binary: PathBuf,
    pub address: SocketAddr,
    pub state_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    pub restarts: usize,
    pub rss_start: Option<u64>,
}

impl Emulator {
    /// Starts `binary serve` with its state in `dir/state` and its log in `dir/server.log`,
    /// and waits until it answers.
    pub async fn start(binary: PathBuf, dir: &Path) -> anyhow::Result<Self> {
        let state_dir = dir.join("state");
        std::fs::create_dir_all(&state_dir)?;
        let state_dir = state_dir.canonicalize()?;
        let address = crate::free_port()?;
        let mut emulator =
            Self { binary, address, state_dir, log: dir.join("server.log"), child: None, restarts: 0, rss_start: None };
        emulator.spawn()?;
        emulator.wait_ready().await?;
        Ok(emulator)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = crate::child_command(&self.binary)
            .args(["serve", "--listen", &self.address.to_string(), "--state-dir"])
            .arg(&self.state_dir)
            .env("ELASTICACHE_LOCAL_LOG", std::env::var("SOAK_LOG").unwrap_or_else(|_| "info".to_string()))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("spawning {}", self.binary.display()))?;
        self.child = Some(child);
        Ok(())
    }

    pub async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_BOUND;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("the emulator exited before answering: {status}; see {}", self.log.display());
            }
            if let Ok((200, body)) = e2e::raw_get(self.address, "/_emulator/health").await
                && body.contains("\"ok\"")
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the emulator did not answer within {READY_BOUND:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `kill -9` of the emulator (nothing to clean up, as a crash), reaped at once.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        let mut child = self.child.take().context("the emulator is not running")?;
        child.kill().context("SIGKILL")?;
        child.wait()?;
        Ok(())
    }

    /// Starts it again on the same port and state dir and waits until it answers.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.restarts += 1;
        self.spawn()?;
        self.wait_ready().await
    }

    /// The resident set size of the running emulator, in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        crate::proc_stats::rss_kib(self.pid()?)
    }

    /// SIGTERM (the emulator stops its nodes), then waits, bounded.
    pub async fn terminate(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        // Our own child, not reaped yet: its pid is still its own.
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().context("kill -TERM")?;
        let deadline = Instant::now() + STOP_BOUND;
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                child.kill()?;
                child.wait()?;
                bail!("the emulator did not stop within {STOP_BOUND:?} of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An engine process (redis-server, valkey-server, memcached) seen in `/proc`.
#[derive(Debug, Clone)]
pub struct EngineProcess {
    pub pid: u64,
    pub name: String,
    pub cwd: PathBuf,
}

const ENGINES: &[&str] = &["redis-server", "valkey-server", "valkey-check-rd", "memcached"];

/// Every live engine process whose working directory or command line lies under `state_dir`
/// (a node runs in its own directory below the state dir).
pub fn engine_processes(state_dir: &Path) -> Vec<EngineProcess> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let under = state_dir.display().to_string();
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u64>().ok()) else { continue };
        let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else { continue };
        let name = comm.trim().to_string();
        if !ENGINES.iter().any(|e| name.starts_with(e)) || !e2e::process_alive(pid) {
            continue;
        }
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cwd.starts_with(state_dir) || cmdline.contains(&under) {
            found.push(EngineProcess { pid, name, cwd });
        }
    }
    found.sort_by_key(|p| p.pid);
    found
}
