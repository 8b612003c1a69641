//! The thread every engine process is forked from.
//!
//! Node processes must never outlive the emulator, even when it is `kill -9`'d. On Linux the
//! child asks for `PR_SET_PDEATHSIG = SIGKILL`, but the kernel delivers that signal when the
//! *thread* that forked the child exits, not the process. Tokio's blocking and worker
//! threads come and go (idle blocking threads retire after a few seconds), so forking from
//! whichever task happens to call `start` would kill healthy nodes at random. Every spawn is
//! therefore sent to one dedicated thread that lives exactly as long as the [`Spawner`]
//! (and so the [`Runtime`](crate::Runtime)). The fork itself takes well under a
//! millisecond, so a single thread is no bottleneck.
//!
//! The command is a `tokio::process::Command` spawned inside the caller's runtime context
//! (the caller's `Handle` travels with the request), so the child is reaped by that
//! runtime and keeps `kill_on_drop` — the second line of defence when the emulator exits
//! normally.

use std::io;
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
        Self { requests: Mutex::new(requests) }
    }

    /// Spawns `command` on the spawner thread, hardened so the child dies with us.
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
    command.kill_on_drop(true).stdin(std::process::Stdio::null());
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
        // system calls (prctl, getppid, setpgid); it allocates nothing.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl; then no signal will come.
                if libc::getppid() != parent {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                // Own process group: a Ctrl-C meant for the emulator must not reach the
                // nodes before the emulator has had its chance to stop them in order.
                if libc::setpgid(0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}
