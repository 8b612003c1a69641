//! Pidfiles, and the clean-up of nodes a previous emulator left running.
//!
//! `PDEATHSIG` and `kill_on_drop` cover a normal exit and a `kill -9` of the emulator on
//! Linux, but not every case (another OS, a node that was mid-spawn, a debugger). Each node
//! therefore leaves `node.pid` in its directory, and the next emulator calls
//! [`reap_orphans`] on its state directory before starting anything.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const PID_FILE: &str = "node.pid";

/// How deep below the state directory node directories may sit.
const MAX_DEPTH: usize = 8;
// valkey-check-rdb: Debian's backports ship the Valkey server under that name (see install-engines.sh).
const ENGINE_BINARIES: &[&str] = &["redis-server", "valkey-server", "valkey-check-rdb", "memcached"];

pub(crate) fn write_pidfile(dir: &Path, pid: u32) -> std::io::Result<()> {
    std::fs::write(dir.join(PID_FILE), format!("{pid}\n"))
}

pub(crate) fn remove_pidfile(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(PID_FILE));
}

/// Kills engine processes recorded in pidfiles under `state_dir` that are still running;
/// returns their pids. A pid only counts when `/proc` confirms it is one of our engine
/// binaries working in that very node directory, so a recycled pid is never killed.
/// Call it before starting any node: it would kill this emulator's own nodes too.
pub fn reap_orphans(state_dir: &Path) -> Vec<u32> {
    let mut pidfiles = Vec::new();
    find_pidfiles(state_dir, 0, &mut pidfiles);
    let mut killed = Vec::new();
    for pidfile in pidfiles {
        let Some(dir) = pidfile.parent() else { continue };
        let pid = std::fs::read_to_string(&pidfile).ok().and_then(|text| text.trim().parse::<u32>().ok());
        if let Some(pid) = pid
            && pid != std::process::id()
            && is_our_node(pid, dir)
        {
            tracing::warn!(pid, dir = %dir.display(), "killing node left over by a previous run");
            if kill_and_wait(pid) {
                killed.push(pid);
            }
        }
        remove_pidfile(dir);
    }
    killed
}

fn find_pidfiles(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() && depth < MAX_DEPTH {
            find_pidfiles(&entry.path(), depth + 1, out);
        } else if kind.is_file() && entry.file_name() == PID_FILE {
            out.push(entry.path());
        }
    }
}

/// Redis rewrites its process title (dropping the config path from `cmdline`), so the
/// node directory is recognised by the process's working directory, which we set to it.
fn is_our_node(pid: u32, dir: &Path) -> bool {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let Ok(cmdline) = std::fs::read(proc_dir.join("cmdline")) else { return false };
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    let argv0 = String::from_utf8_lossy(argv0);
    let exe = std::fs::read_link(proc_dir.join("exe")).map(|p| p.display().to_string()).unwrap_or_default();
    let names_engine = |text: &str| {
        let first_word = text.split_whitespace().next().unwrap_or_default();
        let name = Path::new(first_word).file_name().and_then(|n| n.to_str()).unwrap_or_default();
        ENGINE_BINARIES.contains(&name)
    };
    if !names_engine(&argv0) && !names_engine(&exe) {
        return false;
    }
    let Ok(dir) = dir.canonicalize() else { return false };
    let cwd_matches = std::fs::read_link(proc_dir.join("cwd")).is_ok_and(|cwd| cwd == dir);
    let cmdline_names_dir = String::from_utf8_lossy(&cmdline).contains(&*dir.to_string_lossy());
    cwd_matches || cmdline_names_dir
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
pub(crate) fn is_alive(pid: u32) -> bool {
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
