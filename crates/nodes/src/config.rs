//! AWS cache parameter values → engine configuration: a `redis.conf` for redis/valkey,
//! command-line arguments for memcached. Pure functions; what a binary supports comes in
//! from [`capabilities`](crate::capabilities).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use std::net::Ipv4Addr;

use crate::NodeSpec;
use crate::capabilities::{MemcachedOptions, RedisSettings};
use crate::exposure::Exposure;
use crate::tls::NodeTlsFiles;

pub const REDIS_CONFIG_FILE: &str = "redis.conf";
pub const REDIS_LOG_FILE: &str = "redis.log";
/// Where a node's stdout and stderr go (memcached logs there; redis before its log opens).
pub const CONSOLE_LOG_FILE: &str = "console.log";
/// The unix socket the runtime talks to a redis node through, in the node's directory.
pub const REDIS_SOCKET_FILE: &str = "redis.sock";
/// Unix socket paths are limited to 108 bytes (`sun_path`); leave room for the NUL.
const MAX_SOCKET_PATH: usize = 100;

/// The unix socket of the redis node living in `dir` (absolute): `dir/redis.sock`, or, when
/// that path is too long for a unix socket, a short one in a private directory under the
/// system temp dir named after a hash of `dir`.
pub fn control_socket(dir: &Path) -> std::path::PathBuf {
    let inside = dir.join(REDIS_SOCKET_FILE);
    if inside.as_os_str().len() <= MAX_SOCKET_PATH {
        return inside;
    }
    use std::hash::{Hash as _, Hasher as _};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    dir.hash(&mut hasher);
    // SAFETY: getuid(2) cannot fail and has no preconditions.
    let uid = unsafe { libc::getuid() };
    std::env::temp_dir().join(format!("elasticache-local-{uid}")).join(format!("{:016x}.sock", hasher.finish()))
}

/// Where the redis node living in `dir` says it is ready (see `ready`): beside its
/// [`control_socket`], so as short.
pub fn ready_socket(dir: &Path) -> std::path::PathBuf {
    control_socket(dir).with_extension("ready")
}

/// Whether the redis node living in `dir` has an append-only file to load. Only a finished
/// one counts: its manifest is written once the first rewrite is done.
pub(crate) fn has_aof(dir: &Path) -> bool {
    dir.join(AOF_DIR).join(AOF_MANIFEST).exists()
}

/// Whether the redis node living in `dir` starts with its append-only file on: when it has
/// one, or no data at all (redis writes an empty one as it starts, where turning it on
/// once started forks a rewrite: 4 ms of a create beside a thousand nodes). A node whose
/// data is an RDB file only (seeded from a snapshot, or from before AOF) starts without
/// and turns it on once started (see `Runtime::start`): redis started with `appendonly
/// yes` and no AOF would ignore the RDB file.
fn starts_on_aof(dir: &Path) -> bool {
    has_aof(dir) || !dir.join(RDB_FILE).exists()
}

/// Redis settings the emulator owns: a parameter group may not move the node's address,
/// files or cluster mode. (`cluster-enabled` is decided by the replication group, and
/// arrives through [`NodeSpec::directives`]; AWS's `cluster-preferred-endpoint-type`
/// default, `tls-dynamic`, is a value only ElastiCache's own engine build accepts.)
const REDIS_RESERVED: &[&str] = &[
    // Persistence is the emulator's (see `render_redis`), whatever the parameter group says.
    "appenddirname",
    "appendfsync",
    "appendonly",
    "bind",
    "cluster-config-file",
    "cluster-enabled",
    "cluster-preferred-endpoint-type",
    "daemonize",
    "dbfilename",
    "dir",
    "include",
    "logfile",
    "loadmodule",
    "masterauth",
    "masteruser",
    "maxmemory",
    "pidfile",
    "port",
    "protected-mode",
    "rename-command",
    "replicaof",
    "requirepass",
    "slaveof",
    "supervised",
    "syslog-enabled",
    "unixsocket",
    "unixsocketperm",
];

/// Where a redis node keeps its append-only file, under its directory.
pub const AOF_DIR: &str = "appendonlydir";
/// The RDB file a node loads at start (redis's default `dbfilename`).
pub(crate) const RDB_FILE: &str = "dump.rdb";
/// The AOF's manifest (redis's default `appendfilename` is `appendonly.aof`).
const AOF_MANIFEST: &str = "appendonly.aof.manifest";

/// Whether a parameter may reach redis at all (also used for `CONFIG SET`).
pub fn redis_parameter_allowed(name: &str, settings: &RedisSettings) -> bool {
    let name = name.to_ascii_lowercase();
    !REDIS_RESERVED.contains(&name.as_str()) && !name.starts_with("tls-") && settings.supports(&name)
}

/// The `redis.conf` for `spec`, listening on `port` as `exposure` says (with TLS only on
/// it when `tls` names the node's certificate files).
pub fn render_redis(
    spec: &NodeSpec,
    port: u16,
    exposure: &Exposure,
    settings: &RedisSettings,
    tls: Option<&NodeTlsFiles>,
    control_password: &str,
) -> String {
    let mut out = String::from("# Rendered by elasticache-local at every start; edits are lost.\n");
    let dir = spec.dir.display().to_string();
    match tls {
        None => {
            let _ = writeln!(out, "port {port}");
        }
        Some(files) => {
            // The node's one TCP port speaks TLS only; plaintext has no port at all.
            let _ = writeln!(out, "port 0\ntls-port {port}");
            let _ = writeln!(out, "tls-cert-file {}", quote_always(&files.cert.display().to_string()));
            let _ = writeln!(out, "tls-key-file {}", quote_always(&files.key.display().to_string()));
            let _ = writeln!(out, "tls-ca-cert-file {}", quote_always(&files.ca.display().to_string()));
            // AWS asks clients for no certificate; nodes trust each other through the CA.
            out.push_str("tls-auth-clients no\ntls-replication yes\ntls-cluster yes\n");
        }
    }
    let bind: Vec<String> = exposure.bind_addresses(spec.address).iter().map(Ipv4Addr::to_string).collect();
    let _ = writeln!(out, "bind {}", bind.join(" "));
    // `supervised systemd`: the node says when it is ready (see `ready`).
    out.push_str("protected-mode no\ndaemonize no\nsupervised systemd\n");
    if exposure.is_advertised() && cluster_enabled(spec) && settings.supports("cluster-announce-hostname") {
        // Redirections and slot maps name the advertised host; the cluster bus keeps
        // announcing the node's own address, so nodes keep meeting on loopback.
        let _ = writeln!(out, "cluster-announce-hostname {}", quote(&exposure.host));
        out.push_str("cluster-preferred-endpoint-type hostname\n");
    }
    let _ = writeln!(out, "dir {}", quote_always(&dir));
    // Relative to `dir` (redis works in it), so the log follows the directory if it moves
    // (a warm node handed to its cluster, see `warm`); redis opens it at every line.
    let _ = writeln!(out, "logfile {}", quote_always(REDIS_LOG_FILE));
    // An acknowledged write must survive the emulator's crash (its nodes die with it): every
    // write reaches the append-only file (the kernel's cache) before redis answers it, which
    // a killed process cannot undo. No fsync: surviving a crash of the machine is not the
    // point, and fsyncs of many nodes at once slow what they do (slot moves). A node
    // with an AOF, or no data, starts with it on; one with an RDB file only turns it on once
    // started (see `starts_on_aof`).
    let aof = if starts_on_aof(&spec.dir) { "yes" } else { "no" };
    let _ = writeln!(out, "save \"\"\nappendonly {aof}\nappendfsync no\nappenddirname {AOF_DIR}");
    let _ = writeln!(out, "maxmemory {}", spec.max_memory_bytes);
    // The runtime's own way in, whatever the TCP port speaks (TLS only, or nothing).
    let _ = writeln!(out, "unixsocket {}", quote_always(&control_socket(&spec.dir).display().to_string()));
    out.push_str("unixsocketperm 700\n");
    // The runtime's own user, untouched by AUTH tokens and user groups; replicas reach
    // their primary with it too.
    let _ =
        writeln!(out, "user {} on {} ~* &* +@all", crate::CONTROL_USER, quote_always(&format!(">{control_password}")));
    let _ = writeln!(out, "masteruser {}", crate::CONTROL_USER);
    let _ = writeln!(out, "masterauth {}", quote_always(control_password));
    if !spec.passwords.is_empty() {
        // The default user with every valid token: two while a token rotates.
        let mut rule = String::from("user default on resetpass");
        for password in &spec.passwords {
            rule.push(' ');
            rule.push_str(&quote_always(&format!(">{password}")));
        }
        rule.push_str(" ~* &* +@all\n");
        out.push_str(&rule);
    }

    out.push_str("# cache parameter group\n");
    let mut buffer_limits = BufferLimits::default();
    for (name, value) in &spec.parameters {
        if buffer_limits.set_from_aws(name, value) {
            continue;
        }
        if redis_parameter_allowed(name, settings) {
            let _ = writeln!(out, "{} {}", name.to_ascii_lowercase(), quote(&redis_value(name, value)));
        } else {
            tracing::debug!(node = %spec.key, parameter = %name, "not a setting of this redis binary; skipped");
        }
    }
    if let Some(value) = buffer_limits.render_changed()
        && settings.supports("client-output-buffer-limit")
    {
        let _ = writeln!(out, "client-output-buffer-limit {value}");
    }

    if !spec.directives.is_empty() {
        out.push_str("# emulator directives\n");
        for (name, value) in &spec.directives {
            if name == "user" {
                // An ACL user's rules (`~app:*`, `#<hash>`, ...) are separate arguments.
                let rules: Vec<String> = value.split_whitespace().map(quote).collect();
                let _ = writeln!(out, "user {}", rules.join(" "));
            } else {
                let _ = writeln!(out, "{name} {}", quote(value));
            }
        }
    }
    out
}

pub(crate) fn cluster_enabled(spec: &NodeSpec) -> bool {
    spec.directives.iter().any(|(name, value)| name == "cluster-enabled" && value == "yes")
}

/// Quotes a value for `redis.conf`. Plain words (spaces included, so that multi-argument
/// values such as `save 900 1` stay several arguments) go as they are; anything else is
/// double-quoted with escapes, so no value can inject a second directive.
pub fn quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value.chars().all(|c| c.is_ascii_alphanumeric() || " -_.:/,+@*%=<>".contains(c))
        && !value.starts_with(' ');
    if plain { value.to_owned() } else { quote_always(value) }
}

/// Double-quotes a single-argument value (a path may hold spaces) with escapes.
pub fn quote_always(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// AWS splits redis's `client-output-buffer-limit <class> <hard> <soft> <seconds>` into
/// nine parameters (`client-output-buffer-limit-normal-hard-limit`, ...); this puts them
/// back together.
#[derive(Clone, Debug)]
pub struct BufferLimits {
    /// class → [hard, soft, seconds], as redis prints them.
    classes: BTreeMap<&'static str, [String; 3]>,
    changed: Vec<&'static str>,
}

impl Default for BufferLimits {
    /// Redis's own defaults.
    fn default() -> Self {
        Self::parse("normal 0 0 0 replica 268435456 67108864 60 pubsub 33554432 8388608 60")
    }
}

impl BufferLimits {
    /// Parses redis's value (`normal 0 0 0 slave 268435456 67108864 60 pubsub ...`).
    pub fn parse(value: &str) -> Self {
        let mut classes = BTreeMap::new();
        let words: Vec<&str> = value.split_whitespace().collect();
        for chunk in words.chunks(4) {
            if let [class, hard, soft, secs] = chunk
                && let Some(class) = canonical_class(class)
            {
                classes.insert(class, [hard.to_string(), soft.to_string(), secs.to_string()]);
            }
        }
        Self { classes, changed: Vec::new() }
    }

    /// Whether `name` is one of the split AWS parameters (then it was recorded).
    pub fn set_from_aws(&mut self, name: &str, value: &str) -> bool {
        let Some(rest) = name.to_ascii_lowercase().strip_prefix("client-output-buffer-limit-").map(str::to_owned)
        else {
            return false;
        };
        let Some((class, field)) = rest.split_once('-') else { return false };
        let Some(class) = canonical_class(class) else { return false };
        let index = match field {
            "hard-limit" => 0,
            "soft-limit" => 1,
            "soft-seconds" => 2,
            _ => return false,
        };
        let entry = self.classes.entry(class).or_insert_with(|| ["0".into(), "0".into(), "0".into()]);
        entry[index] = value.trim().to_owned();
        if !self.changed.contains(&class) {
            self.changed.push(class);
        }
        true
    }

    /// The value for only the classes that were set, or `None` when none was.
    pub fn render_changed(&self) -> Option<String> {
        if self.changed.is_empty() {
            return None;
        }
        let parts: Vec<String> = self
            .changed
            .iter()
            .filter_map(|class| self.classes.get(class).map(|[h, s, t]| format!("{class} {h} {s} {t}")))
            .collect();
        Some(parts.join(" "))
    }
}

fn canonical_class(class: &str) -> Option<&'static str> {
    match class.to_ascii_lowercase().as_str() {
        "normal" => Some("normal"),
        "replica" | "slave" => Some("replica"),
        "pubsub" => Some("pubsub"),
        _ => None,
    }
}

/// The `memcached` command line for `spec`, listening on `port` as `exposure` says (TLS
/// only when `tls` names the node's certificate files).
///
/// `run_as_root` adds `-u root`: memcached refuses to start as root without `-u`, and
/// containers and CI commonly run as root.
pub fn memcached_args(
    spec: &NodeSpec,
    port: u16,
    exposure: &Exposure,
    options: &MemcachedOptions,
    run_as_root: bool,
    tls: Option<&NodeTlsFiles>,
) -> Vec<String> {
    let memory_mib = spec.max_memory_bytes.div_ceil(1024 * 1024).max(1);
    let mut args: Vec<String> = vec![
        "-l".into(),
        exposure.bind_addresses(spec.address).iter().map(Ipv4Addr::to_string).collect::<Vec<_>>().join(","),
        "-p".into(),
        port.to_string(),
        "-U".into(),
        "0".into(),
        "-m".into(),
        memory_mib.to_string(),
    ];
    if run_as_root {
        args.extend(["-u".into(), "root".into()]);
    }
    let mut extended: Vec<String> = Vec::new();
    for (name, value) in &spec.parameters {
        let value = value.trim();
        let mapped = memcached_parameter(name, value, memory_mib, options);
        match mapped {
            Mapped::Flag(flag) => args.push(flag.into()),
            Mapped::FlagValue(flag, v) => args.extend([flag.into(), v]),
            Mapped::Extended(option) => extended.push(option),
            Mapped::Nothing => {}
            Mapped::Skip(why) => {
                tracing::debug!(node = %spec.key, parameter = %name, value, why, "memcached parameter skipped")
            }
        }
    }
    if let Some(files) = tls {
        // `-Z` makes every listener TLS; AWS asks clients for no certificate.
        args.push("-Z".into());
        extended.push(format!("ssl_chain_cert={}", files.cert.display()));
        extended.push(format!("ssl_key={}", files.key.display()));
    }
    if !extended.is_empty() {
        args.extend(["-o".into(), extended.join(",")]);
    }
    for (flag, value) in &spec.directives {
        args.push(flag.clone());
        if !value.is_empty() {
            args.push(value.clone());
        }
    }
    args
}

enum Mapped {
    Flag(&'static str),
    FlagValue(&'static str, String),
    Extended(String),
    /// Understood, and nothing to pass (a boolean at its default).
    Nothing,
    Skip(&'static str),
}

fn memcached_parameter(name: &str, value: &str, memory_mib: u64, options: &MemcachedOptions) -> Mapped {
    let int = |flag: &'static str| match value.parse::<u64>() {
        Ok(n) => Mapped::FlagValue(flag, n.to_string()),
        Err(_) => Mapped::Skip("not an integer"),
    };
    let switch = |flag: &'static str| match parse_bool(value) {
        Some(true) => Mapped::Flag(flag),
        Some(false) => Mapped::Nothing,
        None => Mapped::Skip("not a boolean"),
    };
    let ext = |option: String| {
        let base = option.split('=').next().unwrap_or_default();
        if options.supports_suboption(base) {
            Mapped::Extended(option)
        } else {
            Mapped::Skip("not supported by this memcached")
        }
    };
    let ext_int = |option: &str| match value.parse::<u64>() {
        Ok(n) => ext(format!("{option}={n}")),
        Err(_) => Mapped::Skip("not an integer"),
    };
    let ext_float = |option: &str| match value.parse::<f64>() {
        Ok(f) if f.is_finite() => ext(format!("{option}={value}")),
        _ => Mapped::Skip("not a number"),
    };
    let ext_bool = |option: &str| match parse_bool(value) {
        Some(true) => ext(option.to_owned()),
        Some(false) => ext(format!("no_{option}")),
        None => Mapped::Skip("not a boolean"),
    };
    match name.to_ascii_lowercase().as_str() {
        // AWS's default (65000) is above what this machine may allow a process; memcached
        // refuses to start rather than lower it, so it is capped at the open-files limit.
        "max_simultaneous_connections" => match value.parse::<u64>() {
            Ok(n) => Mapped::FlagValue("-c", n.min(connection_limit(MEMCACHED_RESERVED_FILES)).to_string()),
            Err(_) => Mapped::Skip("not an integer"),
        },
        "max_item_size" => match value.parse::<u64>() {
            // memcached refuses items over half its memory, and outside 1 KiB..1 GiB.
            Ok(n) if (1024..=1024 * 1024 * 1024).contains(&n) && n <= memory_mib * 1024 * 1024 / 2 => {
                Mapped::FlagValue("-I", n.to_string())
            }
            Ok(_) => Mapped::Skip("outside what memcached accepts for this memory size"),
            Err(_) => Mapped::Skip("not an integer"),
        },
        "chunk_size" => int("-n"),
        "chunk_size_growth_factor" => match value.parse::<f64>() {
            Ok(f) if f > 1.0 && f.is_finite() => Mapped::FlagValue("-f", value.to_owned()),
            _ => Mapped::Skip("not a factor above 1"),
        },
        "cas_disabled" => switch("-C"),
        "error_on_memory_exhausted" => switch("-M"),
        "large_memory_pages" => switch("-L"),
        "lock_down_paged_memory" => switch("-k"),
        "disable_flush_all" => switch("-F"),
        "binding_protocol" => match value.to_ascii_lowercase().as_str() {
            p @ ("ascii" | "binary" | "auto") => Mapped::FlagValue("-B", p.to_owned()),
            _ => Mapped::Skip("not ascii, binary or auto"),
        },
        "backlog_queue_limit" => int("-b"),
        "requests_per_event" => int("-R"),
        "num_threads" => int("-t"),
        "maxconns_fast" => ext_bool("maxconns_fast"),
        "slab_reassign" => ext_bool("slab_reassign"),
        "lru_crawler" => ext_bool("lru_crawler"),
        "lru_maintainer" => ext_bool("lru_maintainer"),
        "track_sizes" => match parse_bool(value) {
            Some(true) => ext("track_sizes".into()),
            Some(false) => Mapped::Nothing,
            None => Mapped::Skip("not a boolean"),
        },
        "hashpower_init" => ext_int("hashpower"),
        "slab_automove" => ext_int("slab_automove"),
        "idle_timeout" => ext_int("idle_timeout"),
        "tail_repair_time" => ext_int("tail_repair_time"),
        "hot_lru_pct" => ext_int("hot_lru_pct"),
        "warm_lru_pct" => ext_int("warm_lru_pct"),
        "temporary_ttl" => ext_int("temporary_ttl"),
        "watcher_logbuf_size" => ext_int("watcher_logbuf_size"),
        "worker_logbuf_size" => ext_int("worker_logbuf_size"),
        "hot_max_factor" => ext_float("hot_max_factor"),
        "warm_max_factor" => ext_float("warm_max_factor"),
        // AWS gives bytes; memcached takes kilobytes.
        "slab_chunk_max" => match value.parse::<u64>() {
            Ok(bytes) if bytes >= 1024 => ext(format!("slab_chunk_max={}", bytes / 1024)),
            _ => Mapped::Skip("not a byte count of at least 1 KiB"),
        },
        "hash_algorithm" => match value.to_ascii_lowercase().as_str() {
            a @ ("jenkins" | "murmur3" | "xxh3") => ext(format!("hash_algorithm={a}")),
            _ => Mapped::Skip("unknown hash algorithm"),
        },
        _ => Mapped::Skip("not a memcached setting"),
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// The last `max_bytes` of a text file, for error reports; empty if unreadable.
pub fn tail(path: &Path, max_bytes: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else { return String::new() };
    let start = bytes.len().saturating_sub(max_bytes);
    String::from_utf8_lossy(&bytes[start..]).trim().to_owned()
}

/// The value a redis-like node is given for parameter `name`: `maxclients` within what
/// the open-files limit allows. Asked for more (AWS's default is 65000), redis lowers it
/// itself, but only after trying every limit in between, 16 at a time: under a hard limit
/// of 20,000 that is 2,800 failed `setrlimit` calls and 3 ms of every start. The value it
/// ends with is the same, give or take those 16.
pub fn redis_value<'a>(name: &str, value: &'a str) -> Cow<'a, str> {
    match value.parse::<u64>() {
        Ok(clients) if name.eq_ignore_ascii_case("maxclients") => {
            Cow::Owned(clients.min(connection_limit(REDIS_RESERVED_FILES)).to_string())
        }
        _ => Cow::Borrowed(value),
    }
}

/// The files redis keeps for itself beyond `maxclients` (`CONFIG_MIN_RESERVED_FDS`).
const REDIS_RESERVED_FILES: u64 = 32;
/// What memcached needs beyond its connections.
const MEMCACHED_RESERVED_FILES: u64 = 64;

/// The most connections an engine started by this process can be given: the hard limit on
/// open files, less the `reserved` files the engine needs for itself.
fn connection_limit(reserved: u64) -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes into the struct we pass.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    // rlim_t is u64 on Linux.
    let hard: u64 = limit.rlim_max;
    if ok { hard.saturating_sub(reserved).max(64) } else { 1024 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EngineKind, NodeKey};

    fn spec(parameters: &[(&str, &str)]) -> NodeSpec {
        NodeSpec {
            key: NodeKey::new("us-east-1/000000000000", "c", "0001"),
            engine: EngineKind::Redis,
            dir: "/tmp/node".into(),
            max_memory_bytes: 3 * 1024 * 1024 + 1,
            parameters: parameters.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
            ..NodeSpec::default()
        }
    }

    /// AWS's 65000 clients, under an open-files limit that allows fewer, are rendered as
    /// what the limit allows (redis would end there itself, after thousands of tries).
    #[test]
    fn maxclients_stays_within_the_open_files_limit() {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit only writes into the struct we pass.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
        let settings = RedisSettings::from_names(["maxclients"]);
        let render = |clients: &str| {
            render_redis(&spec(&[("maxclients", clients)]), 7000, &Exposure::default(), &settings, None, "secret")
        };
        let allowed = 65000.min(limit.rlim_max - 32);
        assert!(render("65000").contains(&format!("\nmaxclients {allowed}\n")), "{}", render("65000"));
        assert!(render("100").contains("\nmaxclients 100\n"));
        assert_eq!(redis_value("maxmemory-policy", "65000"), "65000");
    }

    #[test]
    fn redis_config_keeps_only_supported_parameters() {
        let settings = RedisSettings::from_names([
            "maxmemory-policy",
            "notify-keyspace-events",
            "cluster-enabled",
            "client-output-buffer-limit",
            "port",
        ]);
        let text = render_redis(
            &spec(&[
                ("maxmemory-policy", "allkeys-lru"),
                ("notify-keyspace-events", ""),
                ("reserved-memory-percent", "25"),
                ("cluster-enabled", "yes"),
                ("port", "1"),
                ("client-output-buffer-limit-pubsub-hard-limit", "100"),
            ]),
            7000,
            &Exposure::default(),
            &settings,
            None,
            "control-secret",
        );
        assert!(text.contains("\nport 7000\n"));
        assert!(text.contains("\nuser elasticache-local on \">control-secret\" ~* &* +@all\n"), "{text}");
        assert!(text.contains("\nmaxmemory-policy allkeys-lru\n"));
        assert!(text.contains("\nnotify-keyspace-events \"\"\n"));
        assert!(!text.contains("reserved-memory"));
        assert!(!text.contains("cluster-enabled"));
        assert!(!text.contains("port 1\n"));
        assert!(text.contains("\nclient-output-buffer-limit pubsub 100 8388608 60\n"));
    }

    #[test]
    fn advertised_nodes_listen_beyond_loopback_and_redirect_to_the_host() {
        let settings = RedisSettings::from_names(["cluster-announce-hostname"]);
        let everywhere = Exposure::new(Ipv4Addr::UNSPECIFIED, "cache.test".into());
        let mut cluster = spec(&[]);
        cluster.directives = vec![("cluster-enabled".into(), "yes".into())];
        let text = render_redis(&cluster, 7000, &everywhere, &settings, None, "secret");
        assert!(text.contains("\nbind 0.0.0.0\n"), "{text}");
        assert!(text.contains("\ncluster-announce-hostname cache.test\ncluster-preferred-endpoint-type hostname\n"));
        let text = render_redis(&spec(&[]), 7000, &everywhere, &settings, None, "secret");
        assert!(!text.contains("cluster-announce"), "cluster mode only: {text}");
        let local = render_redis(&cluster, 7000, &Exposure::default(), &settings, None, "secret");
        assert!(local.contains("\nbind 127.0.0.1\n") && !local.contains("cluster-announce"), "{local}");

        let one = Exposure::new(Ipv4Addr::new(10, 9, 0, 1), "10.9.0.1".into());
        let mut memcached = spec(&[]);
        memcached.engine = EngineKind::Memcached;
        let args = memcached_args(&memcached, 11211, &one, &MemcachedOptions::default(), false, None);
        assert_eq!(args[..2], ["-l".to_string(), "10.9.0.1,127.0.0.1".to_string()]);
    }

    #[test]
    fn quoting_prevents_injection() {
        assert_eq!(quote("900 1"), "900 1");
        assert_eq!(quote(""), "\"\"");
        assert_eq!(quote("a\nport 1"), "\"a\\nport 1\"");
        assert_eq!(quote("x\"y"), "\"x\\\"y\"");
        assert_eq!(quote_always("/tmp/my dir"), "\"/tmp/my dir\"");
    }

    #[test]
    fn buffer_limits_merge_into_current_value() {
        let mut limits = BufferLimits::parse("normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60");
        assert!(limits.set_from_aws("client-output-buffer-limit-replica-soft-seconds", "30"));
        assert!(!limits.set_from_aws("timeout", "1"));
        assert_eq!(limits.render_changed().as_deref(), Some("replica 268435456 67108864 30"));
    }

    #[test]
    fn memcached_flags_from_aws_names() {
        let options = MemcachedOptions::from_help("   - maxconns_fast: x\n   - hashpower: x\n");
        let mut s = spec(&[
            ("max_simultaneous_connections", "100"),
            ("max_item_size", "1048576"),
            ("cas_disabled", "1"),
            ("error_on_memory_exhausted", "0"),
            ("chunk_size", "96"),
            ("chunk_size_growth_factor", "1.5"),
            ("maxconns_fast", "0"),
            ("hashpower_init", "16"),
            ("memcached_connections_overhead", "100"),
            ("lru_segmented", "1"),
        ]);
        s.engine = EngineKind::Memcached;
        s.max_memory_bytes = 64 * 1024 * 1024;
        let args = memcached_args(&s, 11211, &Exposure::default(), &options, true, None).join(" ");
        assert_eq!(
            args,
            "-l 127.0.0.1 -p 11211 -U 0 -m 64 -u root -c 100 -I 1048576 -C -n 96 -f 1.5 -o no_maxconns_fast,hashpower=16"
        );
    }

    #[test]
    fn memcached_memory_rounds_up_to_a_mebibyte() {
        let mut s = spec(&[("max_item_size", "1048576")]);
        s.max_memory_bytes = 1;
        let args = memcached_args(&s, 1, &Exposure::default(), &MemcachedOptions::default(), false, None);
        assert_eq!(args[7], "1");
        // 1 MiB items need at least 2 MiB of memory.
        assert!(!args.contains(&"-I".to_string()));
    }
}
