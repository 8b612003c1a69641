//! Which settings an engine binary accepts, asked of the binary itself once and cached
//! for the life of the process.
//!
//! A parameter group may name settings the installed engine does not know (AWS-only ones,
//! or ones from a newer engine version). Passing one would make redis refuse to start, so
//! the config renderer keeps only names found here:
//! - redis/valkey: a throwaway instance on a Unix socket (no TCP port to race for) answers
//!   `CONFIG GET *`; aliases such as `slave-read-only` are included in that answer.
//! - memcached: the `-o` sub-options and flags listed by `memcached -h`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::BufReader;
use tokio::net::UnixStream;
use tokio::process::Command;
use tokio::sync::OnceCell;

use crate::Binary;
use crate::resp::{self, Reply};
use crate::spawner::Spawner;

/// How long the throwaway redis may take to come up before the static list is used.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings a redis-like binary accepts.
#[derive(Clone, Debug, Default)]
pub struct RedisSettings {
    names: HashSet<String>,
}

impl RedisSettings {
    pub fn from_names<I: IntoIterator<Item = S>, S: Into<String>>(names: I) -> Self {
        Self { names: names.into_iter().map(|n| n.into().to_ascii_lowercase()).collect() }
    }

    pub fn supports(&self, name: &str) -> bool {
        self.names.contains(&name.to_ascii_lowercase())
    }

    /// Used when the binary could not be asked: settings every redis since 5.0 has, so a
    /// start never fails on an unknown name (some valid parameters are then left out).
    pub fn conservative() -> Self {
        Self::from_names([
            "activerehashing",
            "appendfsync",
            "appendonly",
            "client-output-buffer-limit",
            "databases",
            "hash-max-ziplist-entries",
            "hash-max-ziplist-value",
            "hz",
            "lazyfree-lazy-eviction",
            "lazyfree-lazy-expire",
            "lazyfree-lazy-server-del",
            "lua-time-limit",
            "maxclients",
            "maxmemory-policy",
            "maxmemory-samples",
            "min-slaves-max-lag",
            "min-slaves-to-write",
            "notify-keyspace-events",
            "repl-backlog-size",
            "repl-backlog-ttl",
            "repl-timeout",
            "set-max-intset-entries",
            "slave-lazy-flush",
            "slowlog-log-slower-than",
            "slowlog-max-len",
            "tcp-keepalive",
            "timeout",
            "zset-max-ziplist-entries",
            "zset-max-ziplist-value",
        ])
    }
}

/// What a memcached binary accepts on its command line.
#[derive(Clone, Debug, Default)]
pub struct MemcachedOptions {
    /// `-o` sub-option names as listed (`hashpower`, `no_lru_crawler`, `idle_timeout`, ...).
    suboptions: HashSet<String>,
}

impl MemcachedOptions {
    /// Parses the output of `memcached -h`.
    pub fn from_help(help: &str) -> Self {
        let suboptions = help
            .lines()
            .filter_map(|line| line.trim_start().strip_prefix("- "))
            .filter_map(|rest| rest.split_once(':'))
            .map(|(name, _)| name.trim().to_owned())
            .filter(|name| !name.is_empty() && !name.contains(' '))
            .collect();
        Self { suboptions }
    }

    /// Whether `-o name` (or `-o name=value`) is accepted. `lru_crawler` is accepted when
    /// only `no_lru_crawler` is listed, and the other way round: memcached documents only
    /// the non-default spelling but parses both.
    pub fn supports_suboption(&self, name: &str) -> bool {
        let base = name.strip_prefix("no_").unwrap_or(name);
        self.suboptions.contains(name)
            || self.suboptions.contains(base)
            || self.suboptions.contains(&format!("no_{base}"))
    }
}

type Cache<T> = Mutex<HashMap<(PathBuf, String), Arc<OnceCell<Arc<T>>>>>;

fn cell<T>(cache: &'static OnceLock<Cache<T>>, binary: &Binary) -> Arc<OnceCell<Arc<T>>> {
    let cache = cache.get_or_init(Default::default);
    let mut map = cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    map.entry((binary.path.clone(), binary.version.clone())).or_default().clone()
}

/// The settings `binary` accepts; asked once per binary per process.
pub async fn redis_settings(spawner: &Spawner, binary: &Binary) -> Arc<RedisSettings> {
    static CACHE: OnceLock<Cache<RedisSettings>> = OnceLock::new();
    let cell = cell(&CACHE, binary);
    cell.get_or_init(|| async {
        match ask_redis(spawner, &binary.path).await {
            Ok(settings) => Arc::new(settings),
            Err(error) => {
                tracing::warn!(binary = %binary.path.display(), %error,
                    "cannot list redis settings; passing only well-known parameters");
                Arc::new(RedisSettings::conservative())
            }
        }
    })
    .await
    .clone()
}

/// The command-line options `binary` accepts; asked once per binary per process.
pub async fn memcached_options(binary: &Binary) -> Arc<MemcachedOptions> {
    static CACHE: OnceLock<Cache<MemcachedOptions>> = OnceLock::new();
    let cell = cell(&CACHE, binary);
    cell.get_or_init(|| async {
        // `-h` prints and exits at once, so it needs no spawner thread or supervision.
        let output = Command::new(&binary.path)
            .arg("-h")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await;
        match output {
            Ok(output) => Arc::new(MemcachedOptions::from_help(&String::from_utf8_lossy(&output.stdout))),
            Err(error) => {
                tracing::warn!(binary = %binary.path.display(), %error, "cannot list memcached options");
                Arc::new(MemcachedOptions::default())
            }
        }
    })
    .await
    .clone()
}

async fn ask_redis(spawner: &Spawner, binary: &Path) -> std::io::Result<RedisSettings> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // Short path: Unix socket paths are limited to 107 bytes.
    let dir = std::env::temp_dir().join(format!(
        "ecl-caps-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    let result = ask_redis_in(spawner, binary, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn ask_redis_in(spawner: &Spawner, binary: &Path, dir: &Path) -> std::io::Result<RedisSettings> {
    let socket = dir.join("s.sock");
    let mut command = spawner.command(binary);
    command
        .arg("--port")
        .arg("0")
        .arg("--unixsocket")
        .arg(&socket)
        .arg("--dir")
        .arg(dir)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = spawner.spawn(command).await?;
    let asked = tokio::time::timeout(PROBE_TIMEOUT, async {
        loop {
            if let Some(status) = child.try_wait()? {
                return Err(std::io::Error::other(format!("exited early: {status}")));
            }
            if let Ok(stream) = UnixStream::connect(&socket).await {
                let mut stream = BufReader::new(stream);
                return match resp::command(&mut stream, &["CONFIG", "GET", "*"]).await {
                    Ok(Reply::Array(Some(items))) => {
                        Ok(RedisSettings::from_names(items.iter().step_by(2).filter_map(Reply::as_text)))
                    }
                    Ok(other) => Err(std::io::Error::other(format!("CONFIG GET * answered {other:?}"))),
                    Err(e) => Err(std::io::Error::other(e.to_string())),
                };
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    let _ = child.start_kill();
    let _ = child.wait().await;
    match asked {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::other("timed out")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_memcached_help() {
        let help = "-o, --extended   comma separated list\n   - maxconns_fast:       immediately close\n   - hashpower:           an integer\n   - no_lru_crawler:      disable LRU Crawler\n";
        let options = MemcachedOptions::from_help(help);
        assert!(options.supports_suboption("hashpower"));
        assert!(options.supports_suboption("lru_crawler"));
        assert!(options.supports_suboption("no_maxconns_fast"));
        assert!(!options.supports_suboption("expirezero_does_not_evict"));
    }
}
