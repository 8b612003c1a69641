//! The clean-up of nodes a previous emulator left running.
//!
//! `PDEATHSIG` and `kill_on_drop` cover a normal exit and a `kill -9` of the emulator on
//! Linux, but not every case (another OS, a node in the instant of its spawn before it asked
//! for the signal, a debugger). The next emulator therefore calls [`reap_orphans`] on its
//! state directory before starting anything: every node works in its own directory below
//! it, so any engine process working there is a leftover. (Pidfiles, used before, were
//! written only once the spawn had returned: a node spawned by an emulator killed in that
//! instant had none.)

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

// valkey-check-rdb: Debian's backports ship the Valkey server under that name (see install-engines.sh).
const ENGINE_BINARIES: &[&str] = &["redis-server", "valkey-server", "valkey-check-rdb", "memcached"];

/// Kills the engine processes working in a directory under `state_dir`; returns their pids.
/// A process only counts when `/proc` shows one of our engine binaries there, so nothing
/// else is ever killed. Call it before starting any node: it would kill this emulator's
/// own nodes too.
pub fn reap_orphans(state_dir: &Path) -> Vec<u32> {
    let Ok(state_dir) = state_dir.canonicalize() else { return Vec::new() };
    let Ok(processes) = std::fs::read_dir("/proc") else { return Vec::new() };
    let pids = processes.flatten().filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok());
    let mut killed = Vec::new();
    for pid in pids.filter(|pid| *pid != std::process::id()) {
        if let Some(dir) = node_dir_under(pid, &state_dir) {
            tracing::warn!(pid, dir = %dir.display(), "killing node left over by a previous run");
            if kill_and_wait(pid) {
                killed.push(pid);
            }
        }
    }
    killed
}

/// The directory under `state_dir` that process `pid` works in, if it is one of our
/// engines. Redis rewrites its process title (dropping the config path from `cmdline`),
/// so the node directory is recognised by the process's working directory, which the
/// spawn sets to it (and which follows the directory when a warm node's is moved).
fn node_dir_under(pid: u32, state_dir: &Path) -> Option<PathBuf> {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let cwd = std::fs::read_link(proc_dir.join("cwd")).ok().filter(|cwd| cwd.starts_with(state_dir))?;
    let cmdline = std::fs::read(proc_dir.join("cmdline")).ok()?;
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    let argv0 = String::from_utf8_lossy(argv0);
    let exe = std::fs::read_link(proc_dir.join("exe")).map(|p| p.display().to_string()).unwrap_or_default();
    let names_engine = |text: &str| {
        let first_word = text.split_whitespace().next().unwrap_or_default();
        let name = Path::new(first_word).file_name().and_then(|n| n.to_str()).unwrap_or_default();
        ENGINE_BINARIES.contains(&name)
    };
    (names_engine(&argv0) || names_engine(&exe)).then_some(cwd)
}

/// SIGKILL, then wait (briefly) until the process is gone or a zombie.
fn kill_and_wait(pid: u32) -> bool {
    let Ok(raw) = libc::pid_t::try_from(pid) else { return false };
    // SAFETY: kill(2) has no memory-safety preconditions.
    if unsafe { libc::kill(raw, libc::SIGKILL) } != 0 {
        return false;
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if !is_alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

/// Whether any thread of the process is still running. The thread-group leader turns
/// zombie before its sibling threads finish exiting, and the sockets close only with the
/// last of them, so every thread is checked: once this is false, the node's port is free.
fn is_alive(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    tasks.flatten().any(|task| {
        std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
            // The state follows the parenthesised command name, which may itself hold spaces.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z" && state != "X")
        })
    })
}
