//! Applying the replication stream: commands taken in order into units (a transaction
//! waits for its EXEC), applied in batches, the applied offset moved past each batch.

use std::convert::Infallible;

use tokio::sync::mpsc;

use super::source::Event;
use super::state::Shared;
use super::target::{Targets, Unit};
use super::{BridgePhase, MAX_BATCH, Resume, Stop};

/// Applies the stream in batches: whatever has arrived, up to [`MAX_BATCH`] commands.
pub(super) async fn stream(
    mut events: mpsc::UnboundedReceiver<Event>,
    mut targets: Targets,
    resume: &mut Resume,
    shared: &Shared,
) -> Result<Infallible, Stop> {
    let mut batch = Batch::default();
    loop {
        if events.is_empty() {
            // Caught up with what the source sent.
            shared.set_phase(BridgePhase::Streaming);
        }
        let Some(first) = events.recv().await else {
            return Err(Stop::Retry("the link to the source ended".into()));
        };
        let mut closed = batch.take(first, resume.offset);
        while closed.is_none() && batch.units.len() < MAX_BATCH {
            let Ok(event) = events.try_recv() else { break };
            closed = batch.take(event, resume.offset);
        }
        let units = std::mem::take(&mut batch.units);
        if !units.is_empty() {
            let refused = targets.execute(units).await?;
            for error in refused.iter().take(5) {
                tracing::warn!(bridge = %shared.id, error, "the target refused a replicated command");
            }
        }
        if batch.applied_to > resume.offset {
            resume.offset = batch.applied_to;
            resume.db = targets.db();
            shared.set_applied(resume.offset);
            shared.set_phase(BridgePhase::Streaming);
        }
        if std::mem::take(&mut batch.ack_requested) {
            shared.ack_now.notify_one();
        }
        if let Some(reason) = closed {
            return Err(Stop::Retry(reason));
        }
    }
}

/// Stream commands turned into units to apply.
#[derive(Default)]
struct Batch {
    units: Vec<Unit>,
    /// The offset just past the last command taken, but before an open MULTI.
    applied_to: u64,
    /// Commands of a transaction whose EXEC has not arrived yet.
    multi: Option<Vec<Vec<Vec<u8>>>>,
    ack_requested: bool,
}

impl Batch {
    /// Takes one event; returns why the link closed if it did.
    fn take(&mut self, event: Event, applied: u64) -> Option<String> {
        self.applied_to = self.applied_to.max(applied);
        let (args, end) = match event {
            Event::Frame { args, end } => (args, end),
            Event::Closed(reason) => return Some(reason),
        };
        let name = args.first().map(|n| String::from_utf8_lossy(n).to_ascii_lowercase()).unwrap_or_default();
        if let Some(queued) = self.multi.as_mut() {
            match name.as_str() {
                "exec" => {
                    let commands = std::mem::take(queued);
                    self.multi = None;
                    self.units.push(Unit::Transaction(commands));
                    self.applied_to = end;
                }
                "discard" => {
                    self.multi = None;
                    self.applied_to = end;
                }
                _ => queued.push(args),
            }
            return None;
        }
        match name.as_str() {
            "multi" => self.multi = Some(Vec::new()),
            "ping" => {}
            "replconf" => {
                self.ack_requested |= args.get(1).is_some_and(|a| a.eq_ignore_ascii_case(b"getack"));
            }
            "select" => {
                let db = args.get(1).and_then(|a| std::str::from_utf8(a).ok()?.parse().ok()).unwrap_or(0);
                self.units.push(Unit::Select(db));
            }
            _ => self.units.push(Unit::Command(args)),
        }
        if self.multi.is_none() {
            self.applied_to = end;
        }
        None
    }
}
