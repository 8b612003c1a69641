//! `GET /_emulator/events`: a Server-Sent Events stream of what changes, for the dashboard.
//!
//! - `elasticache`: an event as DescribeEvents lists it (`id`, `region`, `source_identifier`,
//!   `source_type`, `message`, `date`); the SSE `id:` is its id, so a reconnecting
//!   `EventSource` (which sends `Last-Event-ID`) misses none.
//! - `node`: a node appeared, went, or changed role, health or status: `node` is its
//!   `/_emulator/nodes` object (null once gone), `previous` what it was (null when new).
//! - `ready`: first, once the stream is live.
//!
//! On connect the latest [`BACKLOG`] events come first. The stream wakes only when the store
//! commits a write or the health monitor sees a node's health change: an idle stream costs a
//! keep-alive comment every [`KEEP_ALIVE`] and nothing else. It ends when the server stops.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::AppState;

/// Events sent on connect, before the live ones.
const BACKLOG: i64 = 50;
/// Events read from the store at once.
const BATCH: u32 = 500;
/// Proxies close a response that stays silent for long; a comment keeps it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()?.trim().parse::<i64>().ok());
    let feed = Feed::start(state, resume).await;
    let stream = futures::stream::unfold(feed, |mut feed| async move {
        loop {
            if let Some(event) = feed.pending.pop_front() {
                return Some((Ok(event), feed));
            }
            if !feed.wait().await {
                return None;
            }
            feed.refresh().await;
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

/// What one stream has passed on, and what wakes it.
struct Feed {
    state: AppState,
    /// The id of the last event sent.
    last_event: i64,
    /// Each node's last state sent, by (region, cache cluster, cache node).
    nodes: BTreeMap<(String, String, String), Value>,
    pending: VecDeque<Event>,
    store_changes: watch::Receiver<u64>,
    health_changes: watch::Receiver<u64>,
    stopped: watch::Receiver<bool>,
}

impl Feed {
    async fn start(state: AppState, resume: Option<i64>) -> Self {
        let mut store_changes = state.operations.store().changes();
        let mut health_changes = state.reconciler.health_changes();
        // Whatever happens from here on wakes the stream.
        store_changes.mark_unchanged();
        health_changes.mark_unchanged();
        let last_event = match resume {
            Some(id) => id,
            None => state.operations.store().last_event_id().await.map_or(0, |last| (last - BACKLOG).max(0)),
        };
        let stopped = state.stopped.clone();
        let mut feed = Feed {
            state,
            last_event,
            nodes: BTreeMap::new(),
            pending: VecDeque::new(),
            store_changes,
            health_changes,
            stopped,
        };
        feed.read_events().await;
        // The nodes as they are now are the page's starting point, not news.
        feed.nodes = feed.read_nodes().await.unwrap_or_default();
        let ready = json!({"last_event_id": feed.last_event});
        feed.pending.push_front(Event::default().event("ready").data(ready.to_string()));
        feed
    }

    /// Waits for a change; false once the server stops.
    async fn wait(&mut self) -> bool {
        tokio::select! {
            changed = self.store_changes.changed() => changed.is_ok(),
            changed = self.health_changes.changed() => changed.is_ok(),
            stopped = self.stopped.wait_for(|stopped| *stopped) => {
                let _ = stopped;
                false
            }
        }
    }

    async fn refresh(&mut self) {
        // A change after these reads wakes the stream again.
        self.store_changes.mark_unchanged();
        self.health_changes.mark_unchanged();
        self.read_events().await;
        self.diff_nodes().await;
    }

    async fn read_events(&mut self) {
        loop {
            let events = match self.state.operations.store().events_after(self.last_event, BATCH).await {
                Ok(events) => events,
                Err(error) => {
                    tracing::warn!(%error, "event stream: reading events failed");
                    return;
                }
            };
            let full = events.len() == BATCH as usize;
            for (id, scope, event) in events {
                self.last_event = id;
                // The backing of a serverless cache is no resource of the user's (as in DescribeEvents).
                if model::names::is_serverless_backing(&event.source_identifier) {
                    continue;
                }
                let date = aws_smithy_types::DateTime::from_millis(event.date_millis)
                    .fmt(aws_smithy_types::date_time::Format::DateTime)
                    .unwrap_or_default();
                let data = json!({
                    "id": id,
                    "region": scope.region,
                    "source_identifier": event.source_identifier,
                    "source_type": event.source_type,
                    "message": event.message,
                    "date": date,
                });
                self.pending.push_back(Event::default().event("elasticache").id(id.to_string()).data(data.to_string()));
            }
            if !full {
                return;
            }
        }
    }

    async fn read_nodes(&self) -> Option<BTreeMap<(String, String, String), Value>> {
        match crate::topology::nodes(&self.state).await {
            Ok(nodes) => Some(nodes.into_iter().map(|n| (node_key(&n), n)).collect()),
            Err(error) => {
                tracing::warn!(%error, "event stream: reading nodes failed");
                None
            }
        }
    }

    async fn diff_nodes(&mut self) {
        let Some(now) = self.read_nodes().await else { return };
        let before = std::mem::take(&mut self.nodes);
        for (key, node) in &now {
            let previous = before.get(key);
            if previous.is_none_or(|p| summary(p) != summary(node)) {
                let data = json!({"node": node, "previous": previous.map(summary)});
                self.pending.push_back(Event::default().event("node").data(data.to_string()));
            }
        }
        for (key, node) in &before {
            if !now.contains_key(key) {
                let data = json!({
                    "node": Value::Null,
                    "previous": summary(node),
                    "region": key.0, "cache_cluster_id": key.1, "cache_node_id": key.2,
                });
                self.pending.push_back(Event::default().event("node").data(data.to_string()));
            }
        }
        self.nodes = now;
    }
}

fn node_key(node: &Value) -> (String, String, String) {
    let text = |field: &str| node[field].as_str().unwrap_or_default().to_string();
    (text("region"), text("cache_cluster_id"), text("cache_node_id"))
}

/// What of a node is news when it changes.
fn summary(node: &Value) -> Value {
    json!({
        "cache_cluster_id": node["cache_cluster_id"],
        "cache_node_id": node["cache_node_id"],
        "role": node["role"],
        "health": node["health"],
        "status": node["status"],
        "availability_zone": node["availability_zone"],
    })
}
