//! Which engine binaries this machine has, and their versions.
//!
//! Detection runs at server start, so the three `--version` commands run concurrently and
//! the whole lookup costs about as much as the slowest of them (a few milliseconds).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

/// An engine as AWS names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EngineKind {
    Redis,
    Valkey,
    Memcached,
}

impl EngineKind {
    pub const ALL: [EngineKind; 3] = [EngineKind::Redis, EngineKind::Valkey, EngineKind::Memcached];

    /// The engine name used by the AWS API (`redis`, `valkey`, `memcached`).
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Redis => "redis",
            EngineKind::Valkey => "valkey",
            EngineKind::Memcached => "memcached",
        }
    }

    /// Redis and Valkey speak RESP and share configuration; memcached does neither.
    pub fn is_redis_like(self) -> bool {
        !matches!(self, EngineKind::Memcached)
    }

    /// The port AWS gives a node when the user asks for none.
    pub fn default_port(self) -> u16 {
        match self {
            EngineKind::Memcached => 11211,
            _ => 6379,
        }
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for EngineKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "redis" => Ok(EngineKind::Redis),
            "valkey" => Ok(EngineKind::Valkey),
            "memcached" => Ok(EngineKind::Memcached),
            other => Err(format!("unknown engine {other:?}")),
        }
    }
}

/// An engine executable and the version it reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binary {
    pub path: PathBuf,
    /// `7.0.15`, `8.0.1`, `1.6.18`; empty when the binary would not say.
    pub version: String,
}

/// The engine binaries found at start-up.
#[derive(Clone, Debug, Default)]
pub struct Engines {
    redis: Option<Binary>,
    valkey: Option<Binary>,
    memcached: Option<Binary>,
}

impl Engines {
    /// Explicit binaries, for tests and for callers that locate engines themselves.
    pub fn new(redis: Option<Binary>, valkey: Option<Binary>, memcached: Option<Binary>) -> Self {
        Self { redis, valkey, memcached }
    }

    /// Looks the engines up on `PATH`. Valkey runs on `valkey-server` when present and
    /// falls back to `redis-server`, which speaks the same protocol and configuration.
    pub fn detect() -> Self {
        let redis_path = find_on_path("redis-server");
        let valkey_path = find_on_path("valkey-server");
        let memcached_path = find_on_path("memcached");

        // Spawn every version command before waiting on any, so they run side by side.
        let redis_child = redis_path.as_deref().and_then(|p| spawn_version(p, "--version"));
        let valkey_child = valkey_path.as_deref().and_then(|p| spawn_version(p, "--version"));
        let memcached_child = memcached_path.as_deref().and_then(|p| spawn_version(p, "-V"));

        let redis = redis_path.map(|path| {
            let version = collect_version(redis_child, parse_redis_version);
            Binary { path, version }
        });
        let valkey = match valkey_path {
            Some(path) => {
                let version = collect_version(valkey_child, parse_redis_version);
                Some(Binary { path, version })
            }
            None => redis.clone(),
        };
        let memcached = memcached_path.map(|path| {
            let version = collect_version(memcached_child, parse_memcached_version);
            Binary { path, version }
        });
        let engines = Self { redis, valkey, memcached };
        tracing::debug!(?engines, "detected engine binaries");
        engines
    }

    /// The binary that runs `engine`, if this machine has one.
    pub fn binary(&self, engine: EngineKind) -> Option<&Binary> {
        match engine {
            EngineKind::Redis => self.redis.as_ref(),
            EngineKind::Valkey => self.valkey.as_ref(),
            EngineKind::Memcached => self.memcached.as_ref(),
        }
    }

    /// Valkey runs on redis-server because no valkey-server is installed.
    fn valkey_falls_back(&self) -> bool {
        self.valkey.is_some() && self.valkey == self.redis
    }

    /// Why this machine's binary serves `engine` at the AWS version `requested` (e.g.
    /// `8.1.0`): it is of the same release line, it is the closest one installed, or
    /// redis-server stands in for a missing valkey-server. One binary per engine is
    /// installed, so the closest is that one.
    pub fn why(&self, engine: EngineKind, requested: &str) -> Option<String> {
        let binary = self.binary(engine)?;
        let line = |version: &str| version.split('.').take(2).collect::<Vec<_>>().join(".");
        let name = binary.path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        Some(if engine == EngineKind::Valkey && self.valkey_falls_back() {
            format!(
                "no valkey-server is installed: {name} {} serves valkey {requested} (same protocol and configuration)",
                binary.version
            )
        } else if line(&binary.version) == line(requested) {
            format!("{name} {} is of the {} line asked for", binary.version, line(requested))
        } else {
            format!("{name} {} is the closest {} installed to {requested}", binary.version, engine.name())
        })
    }

    /// For `/_emulator/health`: per engine, whether it can run, on which binary, which version.
    pub fn to_json(&self) -> Value {
        let mut out = serde_json::Map::new();
        for engine in EngineKind::ALL {
            let entry = match self.binary(engine) {
                Some(binary) => json!({
                    "available": true,
                    "binary": binary.path.display().to_string(),
                    "version": binary.version,
                    "falls_back_to_redis": engine == EngineKind::Valkey && self.valkey_falls_back(),
                }),
                None => json!({"available": false, "binary": null, "version": null}),
            };
            out.insert(engine.name().to_owned(), entry);
        }
        Value::Object(out)
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn spawn_version(path: &Path, flag: &str) -> Option<Child> {
    Command::new(path)
        .arg(flag)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|error| tracing::warn!(path = %path.display(), %error, "cannot run engine binary"))
        .ok()
}

fn collect_version(child: Option<Child>, parse: fn(&str) -> Option<String>) -> String {
    let Some(child) = child else { return String::new() };
    match child.wait_with_output() {
        Ok(output) => parse(&String::from_utf8_lossy(&output.stdout)).unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// `Redis server v=7.0.15 sha=00000000:0 ...` / `Valkey server v=8.0.1 ...` → `7.0.15`.
pub(crate) fn parse_redis_version(text: &str) -> Option<String> {
    text.split_whitespace().find_map(|word| word.strip_prefix("v=")).map(str::to_owned)
}

/// `memcached 1.6.18` → `1.6.18`.
pub(crate) fn parse_memcached_version(text: &str) -> Option<String> {
    text.split_whitespace().nth(1).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        assert_eq!(
            parse_redis_version("Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64").as_deref(),
            Some("7.0.15")
        );
        assert_eq!(parse_redis_version("Valkey server v=8.0.1 sha=0").as_deref(), Some("8.0.1"));
        assert_eq!(parse_memcached_version("memcached 1.6.18\n").as_deref(), Some("1.6.18"));
        assert_eq!(parse_memcached_version(""), None);
    }

    #[test]
    fn missing_engines_are_unavailable_in_json() {
        let json = Engines::default().to_json();
        assert_eq!(json["redis"]["available"], false);
        assert_eq!(json["memcached"]["binary"], Value::Null);
    }

    #[test]
    fn says_why_a_binary_serves_a_version() {
        let binary = |path: &str, version: &str| Some(Binary { path: path.into(), version: version.into() });
        let redis = binary("/usr/bin/redis-server", "7.0.15");
        let engines = Engines::new(redis.clone(), binary("/usr/local/bin/valkey-server", "8.0.1"), None);
        assert_eq!(
            engines.why(EngineKind::Valkey, "8.0.1").as_deref(),
            Some("valkey-server 8.0.1 is of the 8.0 line asked for")
        );
        assert_eq!(
            engines.why(EngineKind::Valkey, "8.1.0").as_deref(),
            Some("valkey-server 8.0.1 is the closest valkey installed to 8.1.0")
        );
        assert_eq!(engines.why(EngineKind::Memcached, "1.6.22"), None);
        let fallback = Engines::new(redis.clone(), redis, None);
        assert!(fallback.why(EngineKind::Valkey, "8.0.1").is_some_and(|why| why.starts_with("no valkey-server")));
        assert_eq!(fallback.to_json()["valkey"]["falls_back_to_redis"], true);
        assert_eq!(engines.to_json()["valkey"]["falls_back_to_redis"], false);
    }
}
