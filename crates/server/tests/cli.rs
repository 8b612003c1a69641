//! The subcommands for people (`status`, `nodes`, `outage`, `--version`) run as a user runs
//! them: the binary Cargo built, against a real `serve` process of the same binary, with
//! real nodes.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_elasticache-local");
const START_TIMEOUT: Duration = Duration::from_secs(30);
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

/// `elasticache-local serve --ephemeral --listen 127.0.0.1:0`, its port read from its log.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start() -> Self {
        Self::start_with_path(None)
    }

    /// A server whose engines are looked up on `path` first (the `PATH` it is given).
    fn start_with_path(path: Option<&std::path::Path>) -> Self {
        let mut command = Command::new(BINARY);
        if let Some(dir) = path {
            let inherited = std::env::var_os("PATH").unwrap_or_default();
            let paths = std::iter::once(dir.to_path_buf()).chain(std::env::split_paths(&inherited));
            command.env("PATH", std::env::join_paths(paths).unwrap());
        }
        let mut child = command
            .args(["serve", "--ephemeral", "--listen", "127.0.0.1:0", "--warm-nodes", "0"])
            .env("ELASTICACHE_LOCAL_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        // Reads the log to its end (a full pipe would block the server), passing it on.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let line = strip_ansi(&line);
                if line.contains("listening")
                    && let Some(addr) = line.split_whitespace().find_map(|w| w.strip_prefix("address="))
                {
                    let _ = tx.send(addr.parse::<SocketAddr>().unwrap());
                }
                println!("server: {line}");
            }
        });
        let addr = rx.recv_timeout(START_TIMEOUT).expect("the server logs the address it listens on");
        Server { child, addr }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `elasticache-local ARGS --endpoint <this server>`.
    fn cli(&self, args: &[&str]) -> Output {
        cli(&[args, &["--endpoint", &self.url()]].concat())
    }

    /// An unsigned Query API call (the server's default auth is permissive) → (status, body).
    fn query(&self, form: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(self.addr).unwrap();
        stream.set_read_timeout(Some(SETTLE_TIMEOUT)).unwrap();
        let request = format!(
            "POST / HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
            self.addr,
            form.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        (status, response)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM: the server stops its nodes before it exits; SIGKILL if it takes too long.
        let pid = libc::pid_t::try_from(self.child.id()).unwrap_or(0);
        // SAFETY: kill only sends a signal to our own child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(POLL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cli(args: &[&str]) -> Output {
    Command::new(BINARY)
        .args(args)
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_ENDPOINT_URL_ELASTICACHE")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The words of the node table's row for `cluster`/`node` in `status` output.
fn node_row(status: &str, cluster: &str, node: &str) -> Option<Vec<String>> {
    status
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|words| words.len() > 4 && words[0].starts_with("us-east-1") && words[1] == cluster && words[2] == node)
}

/// Runs `status` until `accept` takes the output (exit status and text), or panics.
fn status_until(server: &Server, what: &str, accept: impl Fn(i32, &str) -> bool) -> String {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let output = server.cli(&["status"]);
        let (code, text) = (output.status.code().unwrap_or(-1), stdout(&output));
        if accept(code, &text) {
            return text;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; last status (exit {code}):\n{text}");
        std::thread::sleep(POLL);
    }
}

#[test]
fn version_is_the_crates() {
    let output = cli(&["--version"]);
    assert!(output.status.success());
    assert_eq!(stdout(&output).trim(), format!("elasticache-local {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn status_shows_a_clusters_node_in_its_zone_and_follows_node_actions_and_outages() {
    let server = Server::start();
    let empty = server.cli(&["status"]);
    println!("{}", stdout(&empty));
    assert_eq!(empty.status.code(), Some(0), "{}", stderr(&empty));
    assert!(stdout(&empty).contains("no resources"));

    let (code, body) = server.query(
        "Action=CreateCacheCluster&Version=2015-02-02&CacheClusterId=cli-made&Engine=redis\
         &CacheNodeType=cache.t3.micro&NumCacheNodes=1&PreferredAvailabilityZone=us-east-1b",
    );
    assert_eq!(code, 200, "{body}");
    let text = status_until(&server, "a healthy node", |code, text| {
        code == 0 && node_row(text, "cli-made", "0001").is_some_and(|row| row[4] == "healthy")
    });
    println!("{text}");
    let row = node_row(&text, "cli-made", "0001").unwrap();
    assert_eq!(row[0], "us-east-1b", "{row:?}");
    assert_eq!((row[3].as_str(), row[6].as_str()), ("primary", "redis"), "{row:?}");
    assert!(text.lines().any(|l| l.starts_with("cli-made ") && l.contains("available")), "{text}");
    let pid = row[10].clone();

    let stopped = server.cli(&["nodes", "stop", "cli-made", "0001"]);
    assert!(stopped.status.success(), "{}", stderr(&stopped));
    assert_eq!(stdout(&stopped).trim(), "stopped node 0001 of cache cluster cli-made");
    // A frozen node's health is reported (`paused`, or `unreachable` once probes time out).
    let text = status_until(&server, "the stopped node's health reported", |_, text| {
        node_row(text, "cli-made", "0001").is_some_and(|row| row[4] != "healthy")
    });
    println!("after stop:\n{text}");

    let resumed = server.cli(&["nodes", "resume", "cli-made", "0001"]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    status_until(&server, "the resumed node healthy", |_, text| {
        node_row(text, "cli-made", "0001").is_some_and(|row| row[4] == "healthy")
    });

    let killed = server.cli(&["nodes", "kill", "cli-made", "0001"]);
    assert!(killed.status.success(), "{}", stderr(&killed));
    assert_eq!(stdout(&killed).trim(), "killed node 0001 of cache cluster cli-made");
    // The emulator replaces a crashed node: a new process, healthy again.
    let text = status_until(&server, "a new healthy process", |_, text| {
        node_row(text, "cli-made", "0001").is_some_and(|row| row[4] == "healthy" && row[10] != pid && row[10] != "-")
    });
    println!("after kill:\n{text}");

    let missing = server.cli(&["nodes", "kill", "cli-made", "0009"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("no node 0009 in cache cluster cli-made"), "{}", stderr(&missing));

    let outage = server.cli(&["outage", "start", "us-east-1b"]);
    assert!(outage.status.success(), "{}", stderr(&outage));
    assert_eq!(stdout(&outage).trim(), "zone us-east-1b: outage started (nodes cli-made/0001)");
    let text = status_until(&server, "the zone's node no longer healthy", |_, text| {
        node_row(text, "cli-made", "0001").is_some_and(|row| row[4] != "healthy")
    });
    println!("during the outage:\n{text}");
    assert!(text.contains("us-east-1b (outage)"), "{text}");
    let ended = server.cli(&["outage", "end", "us-east-1b"]);
    assert!(ended.status.success(), "{}", stderr(&ended));
    status_until(&server, "the zone's node healthy", |_, text| {
        !text.contains("(outage)") && node_row(text, "cli-made", "0001").is_some_and(|row| row[4] == "healthy")
    });

    let unknown = server.cli(&["outage", "start", "mars-1a"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(stderr(&unknown).contains("unknown zone mars-1a"), "{}", stderr(&unknown));
}

#[test]
fn an_unreachable_endpoint_is_named_and_fails() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let output = cli(&["status", "--endpoint", &url]);
    println!("{}", stderr(&output));
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains(&format!("cannot reach the emulator at {url}")), "{}", stderr(&output));

    // Without --endpoint, the AWS environment's endpoint is the one asked.
    let output = Command::new(BINARY)
        .args(["nodes", "kill", "c", "0001"])
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
        .env("AWS_ENDPOINT_URL_ELASTICACHE", &url)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains(&url), "{}", stderr(&output));
}

#[test]
fn status_exits_2_while_a_resource_is_in_a_failure_status() {
    use std::os::unix::fs::PermissionsExt as _;
    // A redis-server that tells its version (engine detection) but starts no node.
    let dir = tempfile::tempdir().unwrap();
    let real = which("redis-server");
    let script = dir.path().join("redis-server");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncase \"$1\" in -v|--version) exec '{}' \"$@\";; esac\necho 'injected start failure' >&2\nexit 1\n",
            real.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = Server::start_with_path(Some(dir.path()));
    let (code, body) = server.query(
        "Action=CreateCacheCluster&Version=2015-02-02&CacheClusterId=doomed&Engine=redis\
         &CacheNodeType=cache.t3.micro&NumCacheNodes=1",
    );
    assert_eq!(code, 200, "{body}");
    let text = status_until(&server, "exit status 2", |code, _| code == 2);
    println!("{text}");
    let output = server.cli(&["status"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("cache cluster doomed in us-east-1 is create-failed"), "{}", stderr(&output));
    assert!(text.lines().any(|l| l.starts_with("doomed ") && l.contains("create-failed")), "{text}");
}

fn which(binary: &str) -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(binary))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{binary} not on PATH"))
}
