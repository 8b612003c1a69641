//! Reserved cache node offerings: what DescribeReservedCacheNodesOfferings lists and
//! PurchaseReservedCacheNodesOffering buys, expanded from `data/reserved-node-offerings.json`
//! (`data/README.md`, "Reserved node offerings", names the source of every number).
//!
//! Each node type there has an on-demand price and the products (engines) AWS sells it for;
//! each becomes one offering per duration and offering type of its generation. Prices are
//! AWS's ratios to the on-demand price; `published` entries, AWS's own answers, replace what
//! the ratios give. Ids are derived from what an offering is, so they never change.

use std::collections::BTreeMap;

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// One year and three years, in seconds: the only durations AWS sells.
pub const ONE_YEAR: i32 = 31_536_000;
pub const THREE_YEARS: i32 = 94_608_000;

/// The hourly price of a recurring charge, as AWS names its frequency.
pub const HOURLY: &str = "Hourly";

/// Offering types of current node families (M5, R5 onwards) and of the previous ones.
pub const STANDARD_OFFERING_TYPES: [&str; 3] = ["No Upfront", "Partial Upfront", "All Upfront"];
pub const LEGACY_OFFERING_TYPES: [&str; 3] = ["Heavy Utilization", "Medium Utilization", "Light Utilization"];

#[derive(Debug, Clone, PartialEq)]
pub struct Offering {
    /// UUID-shaped, as AWS's are.
    pub id: String,
    pub node_type: String,
    /// Seconds: [`ONE_YEAR`] or [`THREE_YEARS`].
    pub duration: i32,
    pub offering_type: String,
    /// `redis`, `memcached` or `valkey`.
    pub product_description: String,
    pub fixed_price: f64,
    pub usage_price: f64,
    /// The hourly recurring charge. None for legacy Medium and Light Utilization offerings,
    /// which charge `usage_price` for each hour a node runs instead.
    pub recurring_hourly: Option<f64>,
}

#[derive(Deserialize)]
struct Data {
    valkey_factor: f64,
    legacy_families: Vec<String>,
    standard: BTreeMap<i32, BTreeMap<String, Ratio>>,
    legacy: BTreeMap<i32, BTreeMap<String, Ratio>>,
    node_types: BTreeMap<String, NodeTypePrice>,
    published: Vec<Published>,
}

/// Prices as fractions of the on-demand price: `fixed` of the whole term's on-demand cost,
/// `recurring` and `usage` of the hourly on-demand price.
#[derive(Deserialize)]
struct Ratio {
    fixed: f64,
    recurring: Option<f64>,
    usage: Option<f64>,
}

#[derive(Deserialize)]
struct NodeTypePrice {
    /// Redis OSS / Memcached on-demand price per node-hour (Valkey is `valkey_factor` of it).
    hourly: f64,
    products: Vec<String>,
}

#[derive(Deserialize)]
struct Published {
    id: String,
    node_type: String,
    duration: i32,
    offering_type: String,
    product_description: String,
    fixed_price: Option<f64>,
    usage_price: Option<f64>,
    recurring_hourly: Option<f64>,
}

/// Every offering `text` (the data file) describes, in AWS's order: by offering id.
pub fn expand(text: &str) -> Result<Vec<Offering>, serde_json::Error> {
    let data: Data = serde_json::from_str(text)?;
    let mut offerings = Vec::new();
    for (node_type, price) in &data.node_types {
        let family = node_type.split('.').nth(1).unwrap_or_default();
        for product in &price.products {
            let valkey = product == "valkey";
            // Valkey is sold with the current offering types on every node type it runs on.
            let ratios =
                if data.legacy_families.iter().any(|f| f == family) && !valkey { &data.legacy } else { &data.standard };
            for (&duration, types) in ratios {
                let hours = f64::from(duration) / 3600.0;
                for (offering_type, ratio) in types {
                    // AWS prices Valkey at a fixed fraction of the rounded Redis OSS price.
                    let factor = if valkey { data.valkey_factor } else { 1.0 };
                    let hourly = |share: f64| round(round(share * price.hourly, 3) * factor, 4);
                    offerings.push(Offering {
                        id: offering_id(node_type, duration, offering_type, product),
                        node_type: node_type.clone(),
                        duration,
                        offering_type: offering_type.clone(),
                        product_description: product.clone(),
                        fixed_price: round(round(ratio.fixed * price.hourly * hours, 3) * factor, 4),
                        usage_price: ratio.usage.map_or(0.0, hourly),
                        recurring_hourly: ratio.recurring.map(hourly),
                    });
                }
            }
        }
    }
    for p in &data.published {
        let Some(o) = offerings.iter_mut().find(|o| {
            o.node_type == p.node_type
                && o.duration == p.duration
                && o.offering_type == p.offering_type
                && o.product_description == p.product_description
        }) else {
            continue;
        };
        o.id = p.id.clone();
        if let Some(fixed) = p.fixed_price {
            o.fixed_price = fixed;
            o.usage_price = p.usage_price.unwrap_or(0.0);
            o.recurring_hourly = p.recurring_hourly;
        }
    }
    offerings.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(offerings)
}

fn round(value: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (value * scale).round() / scale
}

/// A UUID (version 8: derived, not random) from what the offering is, so that it is the
/// same on every start and in every state dir.
fn offering_id(node_type: &str, duration: i32, offering_type: &str, product: &str) -> String {
    let digest = Sha256::digest(format!("{node_type}|{duration}|{offering_type}|{product}"));
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATA: &str = include_str!("../data/reserved-node-offerings.json");

    fn find<'a>(all: &'a [Offering], node_type: &str, duration: i32, kind: &str, product: &str) -> &'a Offering {
        all.iter()
            .find(|o| {
                o.node_type == node_type
                    && o.duration == duration
                    && o.offering_type == kind
                    && o.product_description == product
            })
            .unwrap_or_else(|| panic!("no {node_type} {duration} {kind} {product}"))
    }

    #[test]
    fn ratios_give_aws_prices() {
        let all = expand(DATA).expect("valid data");
        // AWS Price List, us-east-1, cache.c7gn.large (data/README.md): every term of both
        // Redis OSS and Valkey comes out as AWS lists it.
        let expected = [
            (ONE_YEAR, "No Upfront", 0.0, 0.173, 0.0, 0.1384),
            (ONE_YEAR, "Partial Upfront", 725.985, 0.083, 580.788, 0.0664),
            (ONE_YEAR, "All Upfront", 1429.632, 0.0, 1143.7056, 0.0),
            (THREE_YEARS, "No Upfront", 0.0, 0.133, 0.0, 0.1064),
            (THREE_YEARS, "Partial Upfront", 1608.336, 0.061, 1286.6688, 0.0488),
            (THREE_YEARS, "All Upfront", 3015.63, 0.0, 2412.504, 0.0),
        ];
        for (duration, kind, fixed, hourly, valkey_fixed, valkey_hourly) in expected {
            for product in ["redis", "memcached"] {
                let o = find(&all, "cache.c7gn.large", duration, kind, product);
                assert_eq!((o.fixed_price, o.recurring_hourly), (fixed, Some(hourly)), "{o:?}");
            }
            let o = find(&all, "cache.c7gn.large", duration, kind, "valkey");
            assert_eq!((o.fixed_price, o.recurring_hourly), (valkey_fixed, Some(valkey_hourly)), "{o:?}");
        }
        // aws-cli's describe-reserved-cache-nodes example.
        assert_eq!(find(&all, "cache.t3.small", ONE_YEAR, "No Upfront", "redis").recurring_hourly, Some(0.023));
    }

    #[test]
    fn published_answers_win() {
        let all = expand(DATA).expect("valid data");
        let o = find(&all, "cache.m3.2xlarge", ONE_YEAR, "Heavy Utilization", "redis");
        assert_eq!(o.id, "0443a27b-4da5-4b90-b92d-929fbd7abed2");
        assert_eq!((o.fixed_price, o.usage_price, o.recurring_hourly), (1772.0, 0.0, Some(0.25)));
        let o = find(&all, "cache.m1.large", ONE_YEAR, "Medium Utilization", "memcached");
        assert_eq!((o.fixed_price, o.usage_price, o.recurring_hourly), (1820.0, 0.368, None));
        // Only the id is pinned here; the price is the ratios'.
        let o = find(&all, "cache.m7g.large", ONE_YEAR, "No Upfront", "valkey");
        assert_eq!(o.id, "94544d30-2194-4e2c-85b3-5a209f3eb0f5");
        assert_eq!(o.recurring_hourly, Some(0.0856));
        let data: serde_json::Value = serde_json::from_str(DATA).expect("json");
        let published = data["published"].as_array().expect("published").len();
        let pinned = all.iter().filter(|o| o.id.as_bytes()[14] != b'8').count();
        assert_eq!(pinned, published, "every published answer names an offering");
    }

    #[test]
    fn generations_products_and_ids() {
        let all = expand(DATA).expect("valid data");
        assert!(all.windows(2).all(|w| w[0].id < w[1].id), "sorted by id, each id once");
        assert!(all.iter().all(|o| o.id.len() == 36 && o.id.split('-').count() == 5));
        let kinds = |node_type: &str, product: &str| {
            let mut kinds: Vec<&str> = all
                .iter()
                .filter(|o| o.node_type == node_type && o.product_description == product && o.duration == ONE_YEAR)
                .map(|o| o.offering_type.as_str())
                .collect();
            kinds.sort_unstable();
            kinds
        };
        assert_eq!(kinds("cache.r7g.large", "redis"), ["All Upfront", "No Upfront", "Partial Upfront"]);
        assert_eq!(
            kinds("cache.r4.large", "memcached"),
            ["Heavy Utilization", "Light Utilization", "Medium Utilization"]
        );
        assert_eq!(kinds("cache.r4.large", "valkey"), ["All Upfront", "No Upfront", "Partial Upfront"]);
        assert!(kinds("cache.r8g.large", "redis").is_empty(), "Valkey-only node type");
        assert!(kinds("cache.r6gd.xlarge", "memcached").is_empty(), "data tiering: no Memcached");
        for o in &all {
            assert!([ONE_YEAR, THREE_YEARS].contains(&o.duration));
            let legacy = LEGACY_OFFERING_TYPES.contains(&o.offering_type.as_str());
            assert!(legacy || STANDARD_OFFERING_TYPES.contains(&o.offering_type.as_str()), "{o:?}");
            // Heavy Utilization and the standard types charge hourly; Medium and Light per hour used.
            let usage_priced = o.offering_type == "Medium Utilization" || o.offering_type == "Light Utilization";
            assert_eq!(o.recurring_hourly.is_none(), usage_priced, "{o:?}");
            assert!(o.fixed_price >= 0.0 && o.usage_price >= 0.0, "{o:?}");
        }
        assert_eq!(offering_id("a", 1, "b", "c"), offering_id("a", 1, "b", "c"));
    }
}
