//! DescribeEvents: the last hour by default, up to 14 days, filtered as AWS filters.

use aws_smithy_types::DateTime;
use protocol::shapes::*;
use protocol::{ApiError, RequestContext};
use store::{EVENT_RETENTION_MILLIS, EventFilter, now_millis};

use crate::pagination::paginate;
use crate::{Operations, internal};

const DEFAULT_MINUTES: i64 = 60;
const RETENTION_MINUTES: i64 = EVENT_RETENTION_MILLIS / 60_000;

pub async fn describe(
    ops: &Operations,
    ctx: &RequestContext,
    input: DescribeEventsMessage,
) -> Result<EventsMessage, ApiError> {
    let scope = ops.scope(ctx).await?;
    let millis = |t: &DateTime| t.secs() * 1000 + i64::from(t.subsec_nanos() / 1_000_000);
    let now = now_millis();
    let (start, end) = match (&input.start_time, &input.end_time, input.duration) {
        (None, None, duration) => {
            let minutes = i64::from(duration.unwrap_or(DEFAULT_MINUTES as i32));
            if !(0..=RETENTION_MINUTES).contains(&minutes) {
                return Err(ApiError::invalid_parameter_value(format!(
                    "Duration must be between 0 and {RETENTION_MINUTES} minutes."
                )));
            }
            (now - minutes * 60_000, now)
        }
        (start, end, _) => {
            let end = end.as_ref().map_or(now, millis);
            let start = start.as_ref().map_or(end - DEFAULT_MINUTES * 60_000, millis);
            if start > end {
                return Err(ApiError::invalid_parameter_value("StartTime must be before EndTime."));
            }
            (start, end)
        }
    };
    let filter = EventFilter {
        source_type: input.source_type.map(|t| t.as_str().to_string()),
        source_identifier: input.source_identifier.clone(),
        start_millis: Some(start),
        end_millis: Some(end),
    };
    let events = ops.store.events(&scope, &filter).await.map_err(internal)?;
    // The backing of a serverless cache is no resource of the user's.
    let events: Vec<_> =
        events.into_iter().filter(|(_, e)| !model::names::is_serverless_backing(&e.source_identifier)).collect();
    let page = paginate(events, |(id, _)| format!("{id:020}"), input.marker.as_deref(), input.max_records)?;
    Ok(EventsMessage {
        events: Some(
            page.items
                .into_iter()
                .map(|(_, e)| Event {
                    date: Some(DateTime::from_millis(e.date_millis)),
                    message: Some(e.message),
                    source_identifier: Some(e.source_identifier),
                    source_type: SourceType::from_wire(&e.source_type),
                })
                .collect(),
        ),
        marker: page.marker,
    })
}
