//! `serve --init-dir DIR`: once the API listens, the executable files in DIR run one at a
//! time, in name order, against this server (as LocalStack's init hooks do), and
//! `GET /_emulator/health` tells how far they got.
//!
//! A failing script does not stop the others (LocalStack runs the rest too): the run ends
//! `failed`, naming the first script that failed, once every script has had its turn. The
//! server keeps serving either way. Each script gets the AWS environment that points an
//! unmodified client (aws-cli, boto3, an SDK) at this server; its output goes to the log,
//! line by line.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::watch;

use crate::auth::{AuthMode, AuthSettings};

/// The state of the whole run, as `/_emulator/health` shows it under `init`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// No init dir, or none to be found.
    None,
    /// From the start when an init dir is given, until every script has run.
    Running,
    /// Every script exited 0.
    Done,
    /// Every script has run and at least one failed (or the dir could not be read).
    Failed,
}

/// One file of the init dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScriptState {
    Pending,
    Running,
    Done,
    Failed,
    /// Not executable: never run.
    Skipped,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScriptReport {
    pub name: String,
    pub state: ScriptState,
    /// None until it exits, or when it could not start or was killed by a signal.
    pub exit_code: Option<i32>,
    /// Why it failed without an exit code (could not start, killed by a signal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InitReport {
    pub state: RunState,
    /// The script running now; once the run failed, the first one that failed.
    pub script: Option<String>,
    pub scripts: Vec<ScriptReport>,
}

/// The run's progress, shared with the health endpoint.
#[derive(Debug)]
pub struct InitScripts(Mutex<InitReport>);

impl InitScripts {
    /// `running` when there is an init dir to look at (until [`run`] knows better), else
    /// `none`.
    pub fn new(dir_given: bool) -> Self {
        let state = if dir_given { RunState::Running } else { RunState::None };
        Self(Mutex::new(InitReport { state, script: None, scripts: Vec::new() }))
    }

    pub fn report(&self) -> InitReport {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, InitReport> {
        // A panic while holding the lock leaves a report that is still worth showing.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn update(&self, change: impl FnOnce(&mut InitReport)) {
        change(&mut self.lock());
    }
}

/// What a script's environment says about the server it is to talk to.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://<address this machine reaches the API at>`.
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl Target {
    /// The API bound at `address`: an unspecified address (0.0.0.0, ::) is reached on
    /// loopback; strict mode signs with its first key, permissive mode with any.
    pub fn new(address: SocketAddr, region: &str, auth: &AuthSettings) -> Self {
        let ip = match address.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let (access_key_id, secret_access_key) = match (auth.mode, auth.access_keys.first()) {
            (AuthMode::Strict, Some(key)) => (key.id.clone(), key.secret.clone()),
            _ => ("test".to_string(), "test".to_string()),
        };
        Self {
            endpoint: format!("http://{}", SocketAddr::new(ip, address.port())),
            region: region.to_string(),
            access_key_id,
            secret_access_key,
        }
    }

    fn environment(&self) -> [(&'static str, &str); 6] {
        [
            ("AWS_ENDPOINT_URL", &self.endpoint),
            ("AWS_ENDPOINT_URL_ELASTICACHE", &self.endpoint),
            ("AWS_DEFAULT_REGION", &self.region),
            ("AWS_REGION", &self.region),
            ("AWS_ACCESS_KEY_ID", &self.access_key_id),
            ("AWS_SECRET_ACCESS_KEY", &self.secret_access_key),
        ]
    }
}

/// Variables of the server's own environment that would make a client sign with other
/// credentials than the ones given (a profile, a session token of a real account).
const CLEARED: &[&str] = &["AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"];

/// Runs the scripts of `dir` once, recording progress in `progress`; stops (killing the
/// running script) when `stopped` turns true.
pub async fn run(dir: PathBuf, target: Target, progress: Arc<InitScripts>, mut stopped: watch::Receiver<bool>) {
    let files = match list(&dir) {
        Ok(files) => files,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(dir = %dir.display(), "init dir not found: no init scripts run");
            progress.update(|r| r.state = RunState::None);
            return;
        }
        Err(error) => {
            tracing::error!(dir = %dir.display(), %error, "init dir unreadable: no init scripts run");
            progress.update(|r| r.state = RunState::Failed);
            return;
        }
    };
    progress.update(|r| {
        r.state = RunState::Running;
        r.scripts = files
            .iter()
            .map(|(name, executable)| ScriptReport {
                name: name.to_string_lossy().into_owned(),
                state: if *executable { ScriptState::Pending } else { ScriptState::Skipped },
                exit_code: None,
                error: None,
            })
            .collect();
    });
    tracing::info!(dir = %dir.display(), scripts = files.iter().filter(|(_, x)| *x).count(), "running init scripts");
    let mut first_failure = None;
    for (index, (file, executable)) in files.iter().enumerate() {
        let name = file.to_string_lossy().into_owned();
        if !executable {
            tracing::info!(script = name, "init script skipped: not executable");
            continue;
        }
        progress.update(|r| {
            r.script = Some(name.clone());
            r.scripts[index].state = ScriptState::Running;
        });
        tracing::info!(script = name, "init script started");
        let outcome = tokio::select! {
            outcome = run_one(&dir, file, &name, &target) => outcome,
            _ = stopped.wait_for(|stopped| *stopped) => {
                tracing::info!(script = name, "server stopping: init script killed");
                return;
            }
        };
        let (state, exit_code, error) = match outcome {
            Ok(status) if status.success() => (ScriptState::Done, status.code(), None),
            Ok(status) => (ScriptState::Failed, status.code(), status.code().is_none().then(|| status.to_string())),
            Err(error) => (ScriptState::Failed, None, Some(format!("could not start: {error}"))),
        };
        match (&state, &error) {
            (ScriptState::Done, _) => tracing::info!(script = name, "init script done"),
            (_, Some(error)) => tracing::error!(script = name, error, "init script failed"),
            _ => tracing::error!(script = name, exit_code, "init script failed"),
        }
        if state == ScriptState::Failed && first_failure.is_none() {
            first_failure = Some(name.clone());
        }
        progress.update(|r| {
            r.scripts[index] = ScriptReport { name, state, exit_code, error };
        });
    }
    progress.update(|r| {
        r.state = if first_failure.is_some() { RunState::Failed } else { RunState::Done };
        r.script = first_failure.clone();
    });
    match first_failure {
        Some(script) => tracing::error!(first_failure = script, "init scripts finished, some failed"),
        None => tracing::info!("init scripts done"),
    }
}

/// The regular files of `dir` (symbolic links followed) in name order, each with whether
/// it is executable.
fn list(dir: &Path) -> std::io::Result<Vec<(OsString, bool)>> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(metadata) = std::fs::metadata(entry.path()) else { continue };
        if metadata.is_file() {
            files.push((entry.file_name(), metadata.permissions().mode() & 0o111 != 0));
        }
    }
    files.sort();
    Ok(files)
}

/// Runs one script to its end, its output logged line by line. Killed, with everything it
/// started, if the future is dropped before it exits.
async fn run_one(dir: &Path, file: &OsString, name: &str, target: &Target) -> std::io::Result<ExitStatus> {
    let mut command = tokio::process::Command::new(dir.join(file));
    command
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .envs(target.environment())
        // Its own process group, so that stopping the server stops what the script started.
        .process_group(0)
        .kill_on_drop(true);
    for variable in CLEARED {
        command.env_remove(variable);
    }
    let mut child = command.spawn()?;
    let mut group = KillGroupOnDrop(child.id());
    let stdout = child.stdout.take().map(|out| tokio::spawn(log_lines(out, name.to_string(), "stdout")));
    let stderr = child.stderr.take().map(|err| tokio::spawn(log_lines(err, name.to_string(), "stderr")));
    let status = child.wait().await?;
    // What the script left running in the background (a daemon it started) is its business.
    group.0 = None;
    // The pipes close once the script and whatever inherited them exit; a background process
    // holding them open keeps its reader logging, detached.
    for reader in [stdout, stderr].into_iter().flatten() {
        let _ = tokio::time::timeout(OUTPUT_DRAIN, reader).await;
    }
    Ok(status)
}

/// How long the last lines of a script that exited may take to reach the log before its
/// exit is logged.
const OUTPUT_DRAIN: std::time::Duration = std::time::Duration::from_secs(1);

async fn log_lines(stream: impl AsyncRead + Unpin, script: String, stream_name: &'static str) {
    let mut lines = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match lines.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                tracing::info!(script, stream = stream_name, "{}", text.trim_end());
            }
        }
    }
}

/// SIGKILLs a script's process group when dropped (a no-op once the group is gone).
struct KillGroupOnDrop(Option<u32>);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0.and_then(|pid| i32::try_from(pid).ok()) {
            // SAFETY: kill only sends a signal; a group that no longer exists yields ESRCH.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AccessKey;

    #[test]
    fn an_unspecified_address_is_reached_on_loopback() {
        let auth = AuthSettings::default();
        let target = Target::new("0.0.0.0:4566".parse().unwrap_or_else(|_| unreachable!()), "eu-west-1", &auth);
        assert_eq!(target.endpoint, "http://127.0.0.1:4566");
        assert_eq!((target.access_key_id.as_str(), target.secret_access_key.as_str()), ("test", "test"));
        let target = Target::new("[::]:4566".parse().unwrap_or_else(|_| unreachable!()), "eu-west-1", &auth);
        assert_eq!(target.endpoint, "http://[::1]:4566");
    }

    #[test]
    fn strict_mode_signs_with_the_first_key() {
        let keys = ["AKIDONE:one", "AKIDTWO:two"].map(|k| k.parse::<AccessKey>().unwrap_or_else(|_| unreachable!()));
        let auth = AuthSettings::strict(keys.to_vec());
        let target = Target::new("127.0.0.2:1234".parse().unwrap_or_else(|_| unreachable!()), "us-east-1", &auth);
        assert_eq!(target.endpoint, "http://127.0.0.2:1234");
        assert_eq!((target.access_key_id.as_str(), target.secret_access_key.as_str()), ("AKIDONE", "one"));
    }
}
