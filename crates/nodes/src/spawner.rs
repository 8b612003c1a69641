//! The thread every engine process is started from.
//!
//! Node processes must never outlive the emulator, even when it is `kill -9`'d. On Linux the
//! child asks for `PR_SET_PDEATHSIG = SIGKILL`, but the kernel delivers that signal when the
//! *thread* that started the child exits, not the process. Tokio's blocking and worker
//! threads come and go (idle blocking threads retire after a few seconds), so starting from
//! whichever task happens to call `start` would kill healthy nodes at random. Every spawn is
//! therefore sent to one dedicated thread that lives exactly as long as the [`Spawner`]
//! (and so the [`Runtime`](crate::Runtime)).
//!
//! A `fork` copies the emulator's page tables, so it costs more the more memory the
//! emulator holds: 5 ms at a thousand nodes (about 100 MB), 25 ms under the load of their
//! restart, and the restart's thousand spawns queued on this thread for 25 s. So the
//! child is not forked to run code of ours before its `exec`: it is `posix_spawn`ed (no
//! copy, about 1 ms whatever the emulator's size) as `setpriv --pdeathsig KILL -- <engine>`
//! (util-linux, essential on Debian), which asks for the signal and then `exec`s the engine;
//! the signal request survives an `exec`. Where there is no `setpriv` the child is forked
//! and asks itself. A `kill -9` in the instant before `setpriv` asks leaves the node
//! running; [`reap_orphans`](crate::reap_orphans) finds it at the next start.
//!
//! The command is a `tokio::process::Command` spawned inside the caller's runtime context
//! (the caller's `Handle` travels with the request), so the child is reaped by that
//! runtime and keeps `kill_on_drop` — the second line of defence when the emulator exits
//! normally.

use std::ffi::OsStr;
use std::io;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::mpsc;

use tokio::process::{Child, Command};
use tokio::sync::oneshot;

struct Request {
    command: Command,
    handle: tokio::runtime::Handle,
    reply: oneshot::Sender<io::Result<Child>>,
}

/// Owns the spawner thread; the thread ends when this is dropped, and with it (through
/// `PDEATHSIG`) every process it started that is still alive.
pub struct Spawner {
    requests: Mutex<Option<mpsc::Sender<Request>>>,
    /// `setpriv`, to ask for the parent-death signal without a fork (see the module doc).
    setpriv: Option<PathBuf>,
}

impl Spawner {
    pub fn new() -> Self {
        let (tx, rx) = mpsc::channel::<Request>();
        let thread = std::thread::Builder::new().name("nodes-spawner".into()).spawn(move || {
            for request in rx {
                let _entered = request.handle.enter();
                let mut command = request.command;
                let _ = request.reply.send(command.spawn());
            }
        });
        let requests = match thread {
            Ok(_) => Some(tx),
            Err(error) => {
                tracing::error!(%error, "cannot start the node spawner thread");
                None
            }
        };
        let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"].into_iter().map(PathBuf::from).find(|p| p.is_file());
        Self { requests: Mutex::new(requests), setpriv: if cfg!(target_os = "linux") { setpriv } else { None } }
    }

    /// A command that runs `program` and dies with the emulator once [`Spawner::spawn`]ed.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        match &self.setpriv {
            Some(setpriv) => {
                let mut command = Command::new(setpriv);
                command.args(["--pdeathsig", "KILL", "--"]).arg(program);
                command
            }
            None => {
                let mut command = Command::new(program);
                // Without `setpriv`: the forked child asks for the signal itself.
                die_with_parent(command.as_std_mut(), libc::SIGKILL);
                command
            }
        }
    }

    /// Spawns `command` (made by [`Spawner::command`]) on the spawner thread, in a process
    /// group of its own: a Ctrl-C meant for the emulator must not reach the nodes before
    /// the emulator has had its chance to stop them in order.
    pub async fn spawn(&self, mut command: Command) -> io::Result<Child> {
        harden(&mut command);
        let (reply, answer) = oneshot::channel();
        let handle = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let request = Request { command, handle, reply };
        let sent = match self.requests.lock() {
            Ok(guard) => guard.as_ref().map(|tx| tx.send(request).is_ok()).unwrap_or(false),
            Err(_) => false,
        };
        if !sent {
            return Err(io::Error::other("node spawner thread is not running"));
        }
        answer.await.map_err(|_| io::Error::other("node spawner thread went away"))?
    }
}

impl Default for Spawner {
    fn default() -> Self {
        Self::new()
    }
}

fn harden(command: &mut Command) {
    command.kill_on_drop(true).stdin(std::process::Stdio::null()).process_group(0);
}

/// Has the child `command` starts ask, between its fork and its `exec`, for `signal` when
/// the thread that started it ends (`PR_SET_PDEATHSIG`). The nodes' way without `setpriv`
/// (SIGKILL), and the bench's for the servers it starts (SIGTERM).
#[cfg_attr(not(target_os = "linux"), allow(unused_variables))]
pub fn die_with_parent(command: &mut std::process::Command, signal: libc::c_int) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt as _;
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
        // system calls (prctl, getppid); it allocates nothing.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl; then no signal will come.
                if libc::getppid() != parent {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
    }
}
