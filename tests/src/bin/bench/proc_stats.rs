//! What /proc says of a process: its resident memory and the CPU time it has used.

use std::time::Duration;

use anyhow::Context;

/// Resident set size of `pid` in KiB (None once it is gone).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()
}

/// CPU time `pid` has used so far (user + system).
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // After the command name in parentheses (it may hold spaces): utime is the 12th field,
    // stime the 13th.
    let fields: Vec<&str> = stat.rsplit_once(')').context("malformed stat")?.1.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).context("stat field");
    let ticks = field(11)? + field(12)?;
    // SAFETY: sysconf only reads a system constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_millis(ticks * 1000 / per_second))
}

/// The shares of one core each group of processes in `groups` used, all together, over the
/// next `over` (the groups measured over the same window).
pub async fn cpu_shares(groups: &[&[u32]], over: Duration) -> anyhow::Result<Vec<f64>> {
    let used = |pids: &[u32]| pids.iter().map(|pid| cpu_time(*pid)).sum::<anyhow::Result<Duration>>();
    let before: Vec<Duration> = groups.iter().map(|g| used(g)).collect::<anyhow::Result<_>>()?;
    tokio::time::sleep(over).await;
    let mut shares = Vec::new();
    for (group, before) in groups.iter().zip(before) {
        shares.push((used(group)? - before).as_secs_f64() / over.as_secs_f64());
    }
    Ok(shares)
}
