//! Service updates: what DescribeServiceUpdates lists, from `data/service-updates.json`
//! (`data/README.md`, "Service updates", names the sources), plus the statuses an update
//! action and each of its nodes go through, which the API and the reconciler share.

use serde::{Deserialize, Serialize};

/// A service update as AWS describes it; dates in milliseconds since the epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceUpdate {
    pub name: String,
    pub release_millis: i64,
    pub end_millis: Option<i64>,
    /// critical, important, medium or low.
    pub severity: String,
    pub recommended_apply_by_millis: Option<i64>,
    /// available, cancelled or expired.
    pub status: String,
    pub description: String,
    /// security-update, the only type AWS has.
    pub update_type: String,
    /// The engines it applies to, as AWS writes them: "redis, memcached".
    pub engine: String,
    pub engine_version: String,
    pub auto_update_after_recommended_apply_by_date: bool,
    pub estimated_update_time: String,
}

impl ServiceUpdate {
    /// Whether a cluster or group of `engine` gets an update action for it.
    pub fn applies_to(&self, engine: &str) -> bool {
        self.engine.split(',').any(|e| e.trim().eq_ignore_ascii_case(engine))
    }
}

pub const SEVERITIES: [&str; 4] = ["critical", "important", "medium", "low"];
pub const STATUSES: [&str; 3] = [AVAILABLE, "cancelled", "expired"];
pub const AVAILABLE: &str = "available";
pub const SECURITY_UPDATE: &str = "security-update";

/// UpdateActionStatus and NodeUpdateStatus values the emulator moves through.
pub mod action {
    pub const NOT_APPLIED: &str = "not-applied";
    pub const WAITING_TO_START: &str = "waiting-to-start";
    pub const IN_PROGRESS: &str = "in-progress";
    pub const STOPPING: &str = "stopping";
    pub const STOPPED: &str = "stopped";
    pub const COMPLETE: &str = "complete";
    /// The actions the reconciler works on.
    pub const ACTIVE: [&str; 3] = [WAITING_TO_START, IN_PROGRESS, STOPPING];
}

#[derive(Deserialize)]
struct Data {
    service_updates: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    name: String,
    release_date: String,
    end_date: Option<String>,
    severity: String,
    recommended_apply_by_date: Option<String>,
    status: String,
    description: String,
    #[serde(rename = "type")]
    update_type: String,
    engine: String,
    engine_version: String,
    auto_update_after_recommended_apply_by_date: bool,
    estimated_update_time: String,
}

/// Every service update `text` (the data file) lists, by name.
pub fn parse(text: &str) -> Result<Vec<ServiceUpdate>, String> {
    let data: Data = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let date = |d: &str| parse_date(d).ok_or_else(|| format!("bad date {d}"));
    let mut updates = data
        .service_updates
        .into_iter()
        .map(|e| {
            Ok(ServiceUpdate {
                release_millis: date(&e.release_date)?,
                end_millis: e.end_date.as_deref().map(date).transpose()?,
                recommended_apply_by_millis: e.recommended_apply_by_date.as_deref().map(date).transpose()?,
                name: e.name,
                severity: e.severity,
                status: e.status,
                description: e.description,
                update_type: e.update_type,
                engine: e.engine,
                engine_version: e.engine_version,
                auto_update_after_recommended_apply_by_date: e.auto_update_after_recommended_apply_by_date,
                estimated_update_time: e.estimated_update_time,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    updates.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(updates)
}

/// `YYYY-MM-DDTHH:MM:SS[.fff]Z` to milliseconds since the epoch.
pub fn parse_date(text: &str) -> Option<i64> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, min, s) = (t.next()??, t.next()??, t.next()??);
    let millis: i64 = format!("{frac:0<3}").get(..3)?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h > 23 || min > 59 || s > 60 {
        return None;
    }
    // Howard Hinnant's days-from-civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + min) * 60_000 + s * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_read_as_aws_writes_them() {
        assert_eq!(parse_date("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_date("2019-12-05T19:15:19.995Z"), Some(1_575_573_319_995));
        assert_eq!(parse_date("2000-02-29T00:00:00Z"), Some(951_782_400_000));
        assert_eq!(parse_date("2019-13-01T00:00:00Z"), None);
        assert_eq!(parse_date("yesterday"), None);
    }

    #[test]
    fn the_catalog_is_valid_and_uses_aws_values() {
        let updates = parse(include_str!("../data/service-updates.json")).expect("valid");
        assert!(!updates.is_empty());
        for u in &updates {
            assert!(SEVERITIES.contains(&u.severity.as_str()), "{}", u.name);
            assert!(STATUSES.contains(&u.status.as_str()), "{}", u.name);
            assert_eq!(u.update_type, SECURITY_UPDATE);
        }
        let named = |n: &str| updates.iter().find(|u| u.name == n).expect(n);
        assert!(named("elc-20191007-001").applies_to("memcached"));
        assert!(!named("elasticache-20240611-001").applies_to("memcached"));
    }
}
