//! How many cache nodes this machine can hold: the smallest of what its open files, its
//! processes and threads, and its memory allow. The API refuses a create past it with AWS's
//! quota error, before anything is written or started, rather than failing half-way with
//! nodes that cannot start.

use std::fmt;

/// Descriptors the emulator holds per node: the probe's connection, the command session,
/// the process's pipes and pidfd, and a proxy's two ends for a client or two.
const FILES_PER_NODE: u64 = 8;
/// Descriptors kept for the API's own clients, the store and the logs.
const FILES_RESERVED: u64 = 1024;
/// Threads of one engine process (redis's main and I/O threads, its three background
/// threads and jemalloc's; memcached's workers and maintainers).
const THREADS_PER_NODE: u64 = 10;
/// Resident memory of one idle node with the little data tests write (an idle redis-server
/// is about 4 MiB, memcached less), with room for what it is given to hold.
const MEMORY_PER_NODE: u64 = 16 << 20;

/// The machine's node capacity and the resource that bounds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub nodes: usize,
    pub bound_by: Bound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    OpenFiles,
    Threads,
    Memory,
    /// `--max-nodes`.
    Configured,
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Bound::OpenFiles => "the open files limit",
            Bound::Threads => "the process and thread limits",
            Bound::Memory => "the machine's memory",
            Bound::Configured => "--max-nodes",
        })
    }
}

impl Capacity {
    /// Measured from this process's limits (after the open files limit is raised: nodes
    /// inherit it) and the machine's memory.
    pub fn measure() -> Self {
        Self::from_limits(Limits::read())
    }

    /// What `--max-nodes` sets.
    pub fn configured(nodes: usize) -> Self {
        Self { nodes, bound_by: Bound::Configured }
    }

    fn from_limits(limits: Limits) -> Self {
        let candidates = [
            (limits.open_files.saturating_sub(FILES_RESERVED) / FILES_PER_NODE, Bound::OpenFiles),
            (limits.threads / THREADS_PER_NODE, Bound::Threads),
            (limits.memory_bytes / MEMORY_PER_NODE, Bound::Memory),
        ];
        let (nodes, bound_by) = candidates.into_iter().min_by_key(|(n, _)| *n).expect("three candidates");
        Self { nodes: usize::try_from(nodes).unwrap_or(usize::MAX), bound_by }
    }
}

/// The limits capacity is computed from; `u64::MAX` where a limit is unknown or unlimited.
#[derive(Debug, Clone, Copy)]
struct Limits {
    open_files: u64,
    threads: u64,
    memory_bytes: u64,
}

impl Limits {
    fn read() -> Self {
        let threads = [
            rlimit(libc::RLIMIT_NPROC),
            proc_number("/proc/sys/kernel/threads-max"),
            proc_number("/proc/sys/kernel/pid_max"),
        ];
        Self {
            open_files: rlimit(libc::RLIMIT_NOFILE),
            threads: threads.into_iter().min().unwrap_or(u64::MAX),
            memory_bytes: mem_total().unwrap_or(u64::MAX),
        }
    }
}

fn rlimit(resource: libc::__rlimit_resource_t) -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes into the struct we pass.
    let ok = unsafe { libc::getrlimit(resource, &mut limit) } == 0;
    if ok && limit.rlim_cur != libc::RLIM_INFINITY { limit.rlim_cur } else { u64::MAX }
}

fn proc_number(path: &str) -> u64 {
    std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(u64::MAX)
}

/// `MemTotal` of /proc/meminfo, in bytes.
fn mem_total() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tightest_limit_bounds_the_capacity() {
        let gib = 1u64 << 30;
        let machine = Limits { open_files: 1_048_576, threads: 4_194_304, memory_bytes: 24 * gib };
        assert_eq!(Capacity::from_limits(machine), Capacity { nodes: 1536, bound_by: Bound::Memory });

        let few_files = Limits { open_files: 4096, ..machine };
        assert_eq!(Capacity::from_limits(few_files), Capacity { nodes: 384, bound_by: Bound::OpenFiles });

        let few_threads = Limits { threads: 2000, ..machine };
        assert_eq!(Capacity::from_limits(few_threads), Capacity { nodes: 200, bound_by: Bound::Threads });
    }

    #[test]
    fn a_soft_limit_below_the_reserve_leaves_no_room() {
        let tiny = Limits { open_files: 512, threads: u64::MAX, memory_bytes: u64::MAX };
        assert_eq!(Capacity::from_limits(tiny).nodes, 0);
    }

    #[test]
    fn reads_the_machines_memory() {
        assert!(mem_total().is_some_and(|bytes| bytes > 0));
    }
}
