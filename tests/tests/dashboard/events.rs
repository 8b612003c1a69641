//! `GET /_emulator/events`: ElastiCache events and node changes as Server-Sent Events.

use std::net::SocketAddr;
use std::time::Duration;

use e2e::{SETTLE, TestServer, admin_post, wait_cluster_available};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One message of the stream.
#[derive(Debug)]
struct Message {
    event: String,
    id: Option<String>,
    data: Value,
}

/// A client of the stream over plain HTTP/1.1 (chunked), parsing as an `EventSource` does.
struct Stream {
    socket: TcpStream,
    raw: Vec<u8>,
    text: String,
}

impl Stream {
    async fn open(addr: SocketAddr, last_event_id: Option<i64>) -> Self {
        let mut socket = TcpStream::connect(addr).await.unwrap();
        let resume = last_event_id.map(|id| format!("Last-Event-ID: {id}\r\n")).unwrap_or_default();
        let request =
            format!("GET /_emulator/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{resume}\r\n");
        socket.write_all(request.as_bytes()).await.unwrap();
        let mut stream = Stream { socket, raw: Vec::new(), text: String::new() };
        let head = loop {
            if let Some(end) = stream.raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break String::from_utf8(stream.raw.drain(..end + 4).collect()).unwrap();
            }
            assert!(stream.read().await, "closed before the headers");
        };
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.to_ascii_lowercase().contains("content-type: text/event-stream"), "{head}");
        stream
    }

    /// Reads more bytes; false at EOF.
    async fn read(&mut self) -> bool {
        let mut buffer = [0; 8192];
        let n = self.socket.read(&mut buffer).await.unwrap_or(0);
        self.raw.extend_from_slice(&buffer[..n]);
        n > 0
    }

    /// The next message (keep-alive comments skipped); None when the stream ends.
    async fn next(&mut self) -> Option<Message> {
        loop {
            // Whole chunks move from the raw bytes to the text.
            while let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") {
                let size =
                    usize::from_str_radix(std::str::from_utf8(&self.raw[..line_end]).unwrap().trim(), 16).unwrap();
                if size == 0 {
                    return None;
                }
                if self.raw.len() < line_end + 2 + size + 2 {
                    break;
                }
                let chunk: Vec<u8> = self.raw.drain(..line_end + 2 + size + 2).collect();
                self.text.push_str(std::str::from_utf8(&chunk[line_end + 2..line_end + 2 + size]).unwrap());
            }
            if let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
                let field = |name: &str| block.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_string());
                let Some(data) = field("data:") else { continue };
                return Some(Message {
                    event: field("event:").unwrap_or_else(|| "message".to_string()),
                    id: field("id:"),
                    data: serde_json::from_str(&data).unwrap(),
                });
            }
            if !self.read().await {
                return None;
            }
        }
    }

    /// Reads until a message `matches`, failing after [`SETTLE`].
    async fn until(&mut self, what: &str, matches: impl Fn(&Message) -> bool) -> Message {
        let [message] = self.until_each(what, [&matches]).await;
        message
    }

    /// Reads until each of `wanted` has matched a message, in whatever order they come,
    /// failing after [`SETTLE`]; the first match of each, in the order of `wanted`.
    async fn until_each<const N: usize>(&mut self, what: &str, wanted: [&dyn Fn(&Message) -> bool; N]) -> [Message; N] {
        let mut found: [Option<Message>; N] = std::array::from_fn(|_| None);
        let mut seen = Vec::new();
        let all = tokio::time::timeout(SETTLE, async {
            while let Some(message) = self.next().await {
                seen.push(format!("{} {}", message.event, message.data));
                let slot = wanted.iter().zip(&found).position(|(matches, f)| f.is_none() && matches(&message));
                if let Some(slot) = slot {
                    found[slot] = Some(message);
                }
                if found.iter().all(Option::is_some) {
                    return true;
                }
            }
            false
        })
        .await;
        match all {
            Ok(true) => found.map(Option::unwrap),
            _ => panic!("no {what} on the stream; seen: {seen:#?}"),
        }
    }
}

fn node_event(m: &Message, cluster: &str, health: &str) -> bool {
    m.event == "node" && m.data["node"]["cache_cluster_id"] == cluster && m.data["node"]["health"] == health
}

#[tokio::test]
async fn the_stream_carries_events_and_node_changes_resumes_and_ends_with_the_server() {
    let server = TestServer::start().await;
    let client = server.client();
    let mut stream = Stream::open(server.addr(), None).await;
    let ready = stream.until("ready", |m| m.event == "ready").await;
    assert_eq!(ready.data["last_event_id"], 0, "{ready:?}");

    client
        .create_cache_cluster()
        .cache_cluster_id("feed")
        .engine("redis")
        .cache_node_type("cache.t3.micro")
        .num_cache_nodes(1)
        .send()
        .await
        .unwrap();
    let created = stream
        .until("the creation event", |m| {
            m.event == "elasticache"
                && m.data["source_identifier"] == "feed"
                && m.data["message"] == "Cache cluster created"
        })
        .await;
    assert_eq!(created.data["region"], e2e::REGION);
    assert_eq!(created.data["source_type"], "cache-cluster");
    assert!(created.data["date"].as_str().is_some_and(|d| d.ends_with('Z')), "{created:?}");
    assert_eq!(created.id.as_deref(), Some(created.data["id"].to_string().as_str()));
    stream.until("the node healthy", |m| node_event(m, "feed", "healthy")).await;
    wait_cluster_available(&client, "feed").await;

    // A crash: the monitor's view changes and the recovery's event is recorded. The two come
    // in either order: one wake-up of the stream may carry both.
    let (status, body) = admin_post(&server, "/_emulator/nodes/feed/0001/kill").await;
    assert_eq!(status, 200, "{body}");
    let exited = |m: &Message| node_event(m, "feed", "exited");
    let recovery = |m: &Message| m.event == "elasticache" && m.data["message"] == "Recovering cache nodes 0001";
    let [exited, recovering] = stream.until_each("the node exited and the recovery event", [&exited, &recovery]).await;
    assert_eq!(exited.data["previous"]["health"], "healthy", "{exited:?}");
    stream.until("the node healthy again", |m| node_event(m, "feed", "healthy")).await;

    // A reconnecting client names the last event it saw and gets what came after it.
    let seen: i64 = recovering.id.unwrap().parse().unwrap();
    let mut resumed = Stream::open(server.addr(), Some(seen - 1)).await;
    resumed.until("ready", |m| m.event == "ready").await;
    let next = resumed.until("an event", |m| m.event == "elasticache").await;
    assert_eq!(next.data["id"], seen, "resumed right after the id given: {next:?}");

    // An open stream does not hold the server up when it stops; the stream ends.
    let state_dir = tokio::time::timeout(Duration::from_secs(30), server.stop()).await.expect("server stopped");
    drop(state_dir);
    let end = tokio::time::timeout(Duration::from_secs(10), async { while resumed.next().await.is_some() {} }).await;
    assert!(end.is_ok(), "the stream ends with the server");
}
