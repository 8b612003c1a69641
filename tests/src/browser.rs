//! A real headless Chromium driven over the DevTools protocol, for tests of the dashboard.
//!
//! `--dump-dom` and `--screenshot` act at the page's load event, before the dashboard has
//! fetched and drawn its data, and `--virtual-time-budget` never runs out while the page's
//! event stream is open; so the browser is driven instead: `--remote-debugging-pipe` (JSON
//! messages ending in NUL on file descriptors 3 and 4, no WebSocket needed), polling the
//! page's DOM until it shows what a test waits for, as a user would look at it.
//!
//! Chromium comes from the Debian package `chromium` (`scripts/install-test-tools.sh`);
//! `CHROMIUM` names another binary. Its absence fails the test rather than skipping it.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// How long one DevTools command may take to answer.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The Chromium binary: `CHROMIUM`, else `chromium` (Debian) or `chromium-browser` on `PATH`.
pub fn chromium_binary() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let candidates: Vec<PathBuf> = match std::env::var_os("CHROMIUM") {
        Some(chromium) => vec![PathBuf::from(chromium)],
        None => std::env::split_paths(&path)
            .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
            .collect(),
    };
    match candidates.into_iter().find(|candidate| candidate.is_file()) {
        Some(found) => Ok(found),
        None => bail!(
            "chromium not found (CHROMIUM, else chromium or chromium-browser on PATH): the dashboard \
             tests need a real browser; install it with scripts/install-test-tools.sh (apt-get install \
             chromium), as CI does"
        ),
    }
}

/// One headless Chromium with one page open; killed when dropped.
pub struct Browser {
    child: Child,
    commands: File,
    messages: mpsc::UnboundedReceiver<Value>,
    next_id: u64,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium with a window of `width`×`height` and opens `url` in it.
    pub async fn open(url: &str, width: u32, height: u32) -> anyhow::Result<Self> {
        let binary = chromium_binary()?;
        let profile = tempfile::tempdir()?;
        let (to_browser_read, to_browser_write) = pipe()?;
        let (from_browser_read, from_browser_write) = pipe()?;
        let (child_in, child_out) = (to_browser_read.as_raw_fd(), from_browser_write.as_raw_fd());
        let mut command = Command::new(&binary);
        command
            // Root in CI: Chromium's sandbox needs namespaces a container seldom grants.
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe"])
            .args(["--no-first-run", "--no-default-browser-check", "--disable-extensions", "--mute-audio"])
            .arg(format!("--window-size={width},{height}"))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: between fork and exec only dup2 runs, which is async-signal-safe; the
        // descriptors are open in the parent until the child has started.
        unsafe {
            command.pre_exec(move || {
                // Moved out of the way first if it sits where the other end goes.
                let child_out = if child_out == 3 { libc::dup(child_out) } else { child_out };
                for (fd, target) in [(child_in, 3), (child_out, 4)] {
                    // dup2 onto itself would keep close-on-exec set.
                    let failed = if fd == target {
                        libc::fcntl(fd, libc::F_SETFD, 0) < 0
                    } else {
                        fd < 0 || libc::dup2(fd, target) < 0
                    };
                    if failed {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = command.spawn().with_context(|| format!("starting {}", binary.display()))?;
        // The child's ends stay with the child only: EOF reaches us when it exits.
        drop((to_browser_read, from_browser_write));
        let (sender, messages) = mpsc::unbounded_channel();
        let reader = File::from(from_browser_read);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(reader);
            let mut buffer = Vec::new();
            while reader.read_until(0, &mut buffer).is_ok_and(|n| n > 0) {
                buffer.pop_if(|b| *b == 0);
                if let Ok(message) = serde_json::from_slice::<Value>(&buffer)
                    && sender.send(message).is_err()
                {
                    return;
                }
                buffer.clear();
            }
        });
        let mut browser = Browser {
            child,
            commands: File::from(to_browser_write),
            messages,
            next_id: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = browser.call("Target.createTarget", json!({"url": url})).await?;
        let target = target["targetId"].as_str().context("no targetId")?.to_string();
        let attached = browser.call("Target.attachToTarget", json!({"targetId": target, "flatten": true})).await?;
        browser.session = attached["sessionId"].as_str().context("no sessionId")?.to_string();
        // The window's frame takes some of --window-size: the page gets exactly this much.
        let metrics = json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false});
        browser.call("Emulation.setDeviceMetricsOverride", metrics).await?;
        Ok(browser)
    }

    /// One DevTools command (to the page once attached) → its result.
    async fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&message)?;
        bytes.push(0);
        self.commands.write_all(&bytes).context("writing to chromium")?;
        let deadline = tokio::time::Instant::now() + COMMAND_TIMEOUT;
        loop {
            let message = tokio::time::timeout_at(deadline, self.messages.recv())
                .await
                .with_context(|| format!("{method}: no answer within {COMMAND_TIMEOUT:?}"))?
                .context("chromium exited")?;
            if message["id"].as_u64() != Some(id) {
                continue;
            }
            if let Some(error) = message.get("error") {
                bail!("{method}: {error}");
            }
            return Ok(message["result"].clone());
        }
    }

    /// Evaluates `expression` in the page → its value (JSON-serialisable values only).
    pub async fn eval(&mut self, expression: &str) -> anyhow::Result<Value> {
        let params = json!({"expression": expression, "returnByValue": true, "awaitPromise": true});
        let result = self.call("Runtime.evaluate", params).await?;
        if let Some(exception) = result.get("exceptionDetails") {
            bail!("{expression}: {exception}");
        }
        Ok(result["result"]["value"].clone())
    }

    /// Polls `expression` until it is true; fails after `timeout`, saying what was looked
    /// for and the last value of `describe` (a JS expression showing what the page shows).
    pub async fn wait_for(
        &mut self,
        what: &str,
        expression: &str,
        describe: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            // Until the page has loaded, what the expression reads may not exist yet.
            let value = self.eval(expression).await;
            if value.as_ref().is_ok_and(|v| *v == json!(true)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let seen = self.eval(describe).await.unwrap_or_else(|e| json!(e.to_string()));
                let last = value.map_or_else(|e| e.to_string(), |v| v.to_string());
                bail!("page did not show {what} within {timeout:?} (last: {last}); it shows: {seen}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A PNG of the window as it is now.
    pub async fn screenshot(&mut self) -> anyhow::Result<Vec<u8>> {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"})).await?;
        decode_base64(shot["data"].as_str().context("no screenshot data")?)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pipe whose ends are not inherited by child processes (until dup2'd).
fn pipe() -> anyhow::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array we pass.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: both descriptors were just opened and are owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Standard base64 (DevTools' encoding of binary data).
fn decode_base64(text: &str) -> anyhow::Result<Vec<u8>> {
    let value = |c: u8| -> anyhow::Result<u32> {
        Ok(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => bail!("not base64: {:?}", c as char),
        }
        .into())
    };
    let bytes: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c)? << (18 - 6 * i);
        }
        let produced = chunk.len() * 6 / 8;
        out.extend_from_slice(&n.to_be_bytes()[1..1 + produced]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_every_padding() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8h").unwrap(), b"hello!");
        assert_eq!(decode_base64("aGk=").unwrap(), b"hi");
        assert!(decode_base64("a*").is_err());
    }
}
