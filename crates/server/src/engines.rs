//! Which engine binaries this machine has, for `/_emulator/health`.

use std::path::PathBuf;

use serde_json::{Value, json};

/// The engine binaries found on `PATH` at start-up.
#[derive(Debug, Clone)]
pub struct Engines {
    pub redis: Option<PathBuf>,
    pub valkey: Option<PathBuf>,
    pub memcached: Option<PathBuf>,
}

impl Engines {
    pub fn detect() -> Self {
        Self {
            redis: find_on_path("redis-server"),
            valkey: find_on_path("valkey-server"),
            memcached: find_on_path("memcached"),
        }
    }

    /// For each engine: the binary that would run it (valkey falls back to redis-server).
    pub fn to_json(&self) -> Value {
        let describe = |binary: &Option<PathBuf>| match binary {
            Some(path) => json!({"available": true, "binary": path.display().to_string()}),
            None => json!({"available": false}),
        };
        json!({
            "redis": describe(&self.redis),
            "valkey": describe(self.valkey.as_ref().map_or(&self.redis, |_| &self.valkey)),
            "memcached": describe(&self.memcached),
        })
    }
}

fn find_on_path(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(binary)).find(|candidate| candidate.is_file())
}
