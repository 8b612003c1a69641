//! Reserved cache nodes: DescribeReservedCacheNodesOfferings over the catalog's offerings,
//! PurchaseReservedCacheNodesOffering and DescribeReservedCacheNodes over the store.
//!
//! A reservation's state follows from its times, so nothing has to move it on: the
//! purchase answers `payment-pending` (AWS's answer at the call: aws-cli's
//! purchase-reserved-cache-nodes-offering example), and the reservation is `active` from
//! then on (as AWS shows it once the payment went through, which takes minutes there) until
//! StartTime + Duration, then `retired`. The emulator's admin API can end one early
//! ([`retire`]), so that a client can see `retired` without waiting years.
//!
//! Sources: the offering and reservation fields and the generated id shape
//! (`ri-YYYY-MM-DD-HH-MM-SS-mmm`) are from aws-cli's examples and a recorded purchase (see
//! `model/data/README.md`); the Duration and OfferingType values are the API reference's.
//! The error codes and statuses are the model's; the error messages are the emulator's own
//! (no AWS answer with their wording was found).

use aws_smithy_types::DateTime;
use model::reserved::{self, HOURLY, LEGACY_OFFERING_TYPES, Offering, STANDARD_OFFERING_TYPES};
use protocol::shapes::*;
use protocol::{ApiError, ErrorCode, RequestContext};
use store::{ReservedCacheNodeRecord, Scope, StoreError, now_millis};

use crate::arn::{self, Kind, NotFound as _};
use crate::pagination::paginate;
use crate::{Operations, answered, internal, refuse, tags, validate, written};

/// AWS's fault says a purchase may not "exceed the user's cache node quota": the nodes of
/// every reservation not yet retired count against the region's node quota (300).
const NODE_QUOTA: i64 = 300;

const PAYMENT_PENDING: &str = "payment-pending";
const ACTIVE: &str = "active";
const RETIRED: &str = "retired";

const MAX_ID_LEN: usize = 255;

/// The Duration filter: years (`1`, `3`) or seconds, as the API reference lists them.
fn duration(text: Option<&str>) -> Result<Option<i32>, ApiError> {
    let Some(text) = text else { return Ok(None) };
    match text.trim() {
        "1" | "31536000" => Ok(Some(reserved::ONE_YEAR)),
        "3" | "94608000" => Ok(Some(reserved::THREE_YEARS)),
        _ => Err(ApiError::invalid_parameter_value(format!(
            "Invalid value for Duration: {text}. Valid values are 1, 3, 31536000 and 94608000."
        ))),
    }
}

/// The OfferingType filter: one of the six types the API reference lists.
fn offering_type(text: Option<&str>) -> Result<Option<&str>, ApiError> {
    let Some(text) = text else { return Ok(None) };
    if STANDARD_OFFERING_TYPES.contains(&text) || LEGACY_OFFERING_TYPES.contains(&text) {
        return Ok(Some(text));
    }
    Err(ApiError::invalid_parameter_value(format!(
        "Invalid value for OfferingType: {text}. Valid values are {}.",
        STANDARD_OFFERING_TYPES
            .iter()
            .chain(&LEGACY_OFFERING_TYPES)
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// The filters both Describe operations share; each given one narrows the result.
struct Filters<'a> {
    offering_id: Option<&'a str>,
    node_type: Option<&'a str>,
    duration: Option<i32>,
    product_description: Option<&'a str>,
    offering_type: Option<&'a str>,
}

impl Filters<'_> {
    fn matches(&self, offering_id: &str, node_type: &str, duration: i32, product: &str, kind: &str) -> bool {
        self.offering_id.is_none_or(|id| id == offering_id)
            && self.node_type.is_none_or(|t| t == node_type)
            && self.duration.is_none_or(|d| d == duration)
            && self.product_description.is_none_or(|p| p.eq_ignore_ascii_case(product))
            && self.offering_type.is_none_or(|k| k == kind)
    }
}

fn offering_not_found(id: &str) -> ApiError {
    ApiError::new(
        ErrorCode::ReservedCacheNodesOfferingNotFoundFault,
        format!("ReservedCacheNodesOffering not found: {id}"),
    )
}

fn recurring(hourly: Option<f64>) -> Option<Vec<RecurringCharge>> {
    Some(
        hourly
            .map(|amount| RecurringCharge {
                recurring_charge_amount: Some(amount),
                recurring_charge_frequency: Some(HOURLY.to_string()),
            })
            .into_iter()
            .collect(),
    )
}

fn offering_output(o: &Offering) -> ReservedCacheNodesOffering {
    ReservedCacheNodesOffering {
        cache_node_type: Some(o.node_type.clone()),
        duration: Some(o.duration),
        fixed_price: Some(o.fixed_price),
        offering_type: Some(o.offering_type.clone()),
        product_description: Some(o.product_description.clone()),
        recurring_charges: recurring(o.recurring_hourly),
        reserved_cache_nodes_offering_id: Some(o.id.clone()),
        usage_price: Some(o.usage_price),
    }
}

/// `active` until the term (or the admin API) ends it, then `retired`.
fn state(r: &ReservedCacheNodeRecord, now: i64) -> &'static str {
    let term_end = r.start_millis + i64::from(r.duration) * 1000;
    let end = r.retired_millis.map_or(term_end, |retired| retired.min(term_end));
    if now >= end { RETIRED } else { ACTIVE }
}

fn output(scope: &Scope, r: &ReservedCacheNodeRecord, state: &str) -> ReservedCacheNode {
    ReservedCacheNode {
        cache_node_count: Some(r.node_count),
        cache_node_type: Some(r.node_type.clone()),
        duration: Some(r.duration),
        fixed_price: Some(r.fixed_price),
        offering_type: Some(r.offering_type.clone()),
        product_description: Some(r.product_description.clone()),
        recurring_charges: recurring(r.recurring_hourly),
        reservation_arn: Some(arn::build(scope, Kind::ReservedInstance, &r.id)),
        reserved_cache_node_id: Some(r.id.clone()),
        reserved_cache_nodes_offering_id: Some(r.offering_id.clone()),
        start_time: Some(DateTime::from_millis(r.start_millis)),
        state: Some(state.to_string()),
        usage_price: Some(r.usage_price),
    }
}

pub fn describe_offerings(
    ops: &Operations,
    input: DescribeReservedCacheNodesOfferingsMessage,
) -> Result<ReservedCacheNodesOfferingMessage, ApiError> {
    let filters = Filters {
        offering_id: input.reserved_cache_nodes_offering_id.as_deref(),
        node_type: input.cache_node_type.as_deref(),
        duration: duration(input.duration.as_deref())?,
        product_description: input.product_description.as_deref(),
        offering_type: offering_type(input.offering_type.as_deref())?,
    };
    if let Some(id) = filters.offering_id
        && ops.catalog.reserved_offering(id).is_none()
    {
        return Err(offering_not_found(id));
    }
    let matching: Vec<&Offering> = ops
        .catalog
        .reserved_offerings()
        .iter()
        .filter(|o| filters.matches(&o.id, &o.node_type, o.duration, &o.product_description, &o.offering_type))
        .collect();
    // Offerings are sorted by id, which is unique: the id of the next one is the marker.
    let page = paginate(matching, |o| o.id.clone(), input.marker.as_deref(), input.max_records)?;
    Ok(ReservedCacheNodesOfferingMessage {
        marker: page.marker,
        reserved_cache_nodes_offerings: Some(page.items.into_iter().map(offering_output).collect()),
    })
}

/// `YYYYMMDD` of a time, as AWS's service update names carry it.
pub(crate) fn civil_date(millis: i64) -> String {
    generated_id(millis).get(3..13).unwrap_or_default().replace('-', "")
}

/// AWS's id for a reservation bought without one: `ri-` and the purchase time to the
/// millisecond, e.g. `ri-2020-06-30-17-59-40-474`.
fn generated_id(millis: i64) -> String {
    let (days, ms) = (millis.div_euclid(86_400_000), millis.rem_euclid(86_400_000));
    let (year, month, day) = protocol::xml::civil_from_days(days);
    let (h, m, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    format!("ri-{year:04}-{month:02}-{day:02}-{h:02}-{m:02}-{s:02}-{milli:03}")
}

pub async fn purchase(
    ops: &Operations,
    ctx: &RequestContext,
    input: PurchaseReservedCacheNodesOfferingMessage,
) -> Result<PurchaseReservedCacheNodesOfferingResult, ApiError> {
    let scope = ops.scope(ctx).await?;
    let offering = ops
        .catalog
        .reserved_offering(&input.reserved_cache_nodes_offering_id)
        .ok_or_else(|| offering_not_found(&input.reserved_cache_nodes_offering_id))?;
    // AWS keeps a given id lowercase (the guide's purchase example: myreservationID is
    // shown as myreservationid).
    let given = input
        .reserved_cache_node_id
        .as_deref()
        .map(|id| validate::resource_id("ReservedCacheNodeId", id, MAX_ID_LEN))
        .transpose()?;
    let count = input.cache_node_count.unwrap_or(1);
    if count < 1 {
        return Err(ApiError::invalid_parameter_value(format!(
            "Invalid value for CacheNodeCount: {count}. It must be at least 1."
        )));
    }
    let tags = tags::validate(input.tags.as_deref().unwrap_or_default())?;
    let now = now_millis();
    let mut record = ReservedCacheNodeRecord {
        id: given.clone().unwrap_or_default(),
        offering_id: offering.id.clone(),
        node_type: offering.node_type.clone(),
        duration: offering.duration,
        fixed_price: offering.fixed_price,
        usage_price: offering.usage_price,
        recurring_hourly: offering.recurring_hourly,
        node_count: count,
        product_description: offering.product_description.clone(),
        offering_type: offering.offering_type.clone(),
        start_millis: now,
        retired_millis: None,
    };
    let refusal = |e: &StoreError| match e {
        StoreError::AlreadyExists => Some(ApiError::new(
            ErrorCode::ReservedCacheNodeAlreadyExistsFault,
            format!("You already have a reservation with the identifier {}.", given.as_deref().unwrap_or_default()),
        )),
        _ => None,
    };
    let record = written(
        ops.store
            .write(async |tx| {
                let existing = tx.reserved_cache_nodes(&scope).await?;
                let reserved: i64 =
                    existing.iter().filter(|r| state(r, now) != RETIRED).map(|r| i64::from(r.node_count)).sum();
                if reserved + i64::from(count) > NODE_QUOTA {
                    return refuse(ApiError::new(
                        ErrorCode::ReservedCacheNodeQuotaExceededFault,
                        format!(
                            "The request cannot be processed because it would exceed the cache node quota of {NODE_QUOTA} reserved nodes ({reserved} reserved)."
                        ),
                    ));
                }
                if given.is_none() {
                    // Two purchases in one millisecond each get an id of their own.
                    let mut millis = now;
                    while existing.iter().any(|r| r.id == generated_id(millis)) {
                        millis += 1;
                    }
                    record.id = generated_id(millis);
                }
                let arn = arn::build(&scope, Kind::ReservedInstance, &record.id);
                tx.create_reserved_cache_node(&scope, &record, &arn, &tags).await.map_err(|e| answered(e, refusal))?;
                Ok(record)
            })
            .await,
    )?;
    tracing::info!(
        reserved_cache_node = record.id,
        region = scope.region,
        offering = record.offering_id,
        count,
        from = "(none)",
        to = PAYMENT_PENDING,
        "purchased reserved cache node"
    );
    Ok(PurchaseReservedCacheNodesOfferingResult { reserved_cache_node: Some(output(&scope, &record, PAYMENT_PENDING)) })
}

pub async fn describe(
    ops: &Operations,
    ctx: &RequestContext,
    input: DescribeReservedCacheNodesMessage,
) -> Result<ReservedCacheNodeMessage, ApiError> {
    let scope = ops.scope(ctx).await?;
    let filters = Filters {
        offering_id: input.reserved_cache_nodes_offering_id.as_deref(),
        node_type: input.cache_node_type.as_deref(),
        duration: duration(input.duration.as_deref())?,
        product_description: input.product_description.as_deref(),
        offering_type: offering_type(input.offering_type.as_deref())?,
    };
    let nodes = match &input.reserved_cache_node_id {
        Some(id) => {
            let id = id.to_ascii_lowercase();
            let found = ops.store.reserved_cache_node(&scope, &id).await.map_err(internal)?;
            vec![found.ok_or_else(|| Kind::ReservedInstance.not_found(&id))?]
        }
        None => ops.store.reserved_cache_nodes(&scope).await.map_err(internal)?,
    };
    let matching: Vec<ReservedCacheNodeRecord> = nodes
        .into_iter()
        .filter(|r| filters.matches(&r.offering_id, &r.node_type, r.duration, &r.product_description, &r.offering_type))
        .collect();
    let page = paginate(matching, |r| r.id.clone(), input.marker.as_deref(), input.max_records)?;
    let now = now_millis();
    Ok(ReservedCacheNodeMessage {
        marker: page.marker,
        reserved_cache_nodes: Some(page.items.iter().map(|r| output(&scope, r, state(r, now))).collect()),
    })
}

pub async fn exists(ops: &Operations, scope: &Scope, id: &str) -> Result<bool, ApiError> {
    Ok(ops.store.reserved_cache_node(scope, id).await.map_err(internal)?.is_some())
}

/// What the admin API's retire answers: the reservation, now retired.
#[derive(Debug, Clone, PartialEq)]
pub struct Retired {
    pub region: String,
    pub reserved_cache_node_id: String,
    pub state: &'static str,
}

/// Ends the reservation `id` now, as if its term were over (the emulator's admin API). Ids
/// are per region: the one in `preferred_region` wins when several regions have it.
pub async fn retire(ops: &Operations, id: &str, preferred_region: &str) -> Result<Option<Retired>, StoreError> {
    let id = id.to_ascii_lowercase();
    let named = ops.store.reserved_cache_nodes_named(&id).await?;
    let Some((scope, _)) = named.iter().min_by_key(|(s, _)| s.region != preferred_region) else { return Ok(None) };
    let now = now_millis();
    let Some(record) = ops.store.retire_reserved_cache_node(scope, &id, now).await? else { return Ok(None) };
    tracing::info!(
        reserved_cache_node = id,
        region = scope.region,
        from = ACTIVE,
        to = RETIRED,
        "retired reserved cache node"
    );
    Ok(Some(Retired {
        region: scope.region.clone(),
        reserved_cache_node_id: record.id.clone(),
        state: state(&record, now),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_read_as_aws_writes_them() {
        // aws-cli's purchase example: StartTime 2020-06-30T17:59:40.474Z.
        assert_eq!(generated_id(1_593_539_980_474), "ri-2020-06-30-17-59-40-474");
        assert_eq!(generated_id(0), "ri-1970-01-01-00-00-00-000");
        assert_eq!(generated_id(951_782_400_000), "ri-2000-02-29-00-00-00-000");
    }

    #[test]
    fn filters_take_aws_values_only() {
        assert_eq!(duration(Some("1")).ok(), Some(Some(reserved::ONE_YEAR)));
        assert_eq!(duration(Some("94608000")).ok(), Some(Some(reserved::THREE_YEARS)));
        assert_eq!(duration(None).ok(), Some(None));
        for bad in ["2", "0", "P1Y", "31536001", ""] {
            assert_eq!(duration(Some(bad)).map_err(|e| e.code), Err("InvalidParameterValue"), "{bad}");
        }
        assert_eq!(offering_type(Some("Heavy Utilization")).ok(), Some(Some("Heavy Utilization")));
        assert_eq!(offering_type(Some("no upfront")).map_err(|e| e.code), Err("InvalidParameterValue"));
    }

    #[test]
    fn state_follows_the_term() {
        let record = ReservedCacheNodeRecord {
            id: "r".into(),
            offering_id: "o".into(),
            node_type: "cache.t3.small".into(),
            duration: reserved::ONE_YEAR,
            fixed_price: 0.0,
            usage_price: 0.0,
            recurring_hourly: Some(0.023),
            node_count: 1,
            product_description: "redis".into(),
            offering_type: "No Upfront".into(),
            start_millis: 1_000,
            retired_millis: None,
        };
        let end = 1_000 + i64::from(reserved::ONE_YEAR) * 1000;
        assert_eq!(state(&record, 1_000), ACTIVE);
        assert_eq!(state(&record, end - 1), ACTIVE);
        assert_eq!(state(&record, end), RETIRED);
        let retired = ReservedCacheNodeRecord { retired_millis: Some(5_000), ..record };
        assert_eq!(state(&retired, 4_999), ACTIVE);
        assert_eq!(state(&retired, 5_000), RETIRED);
    }
}
