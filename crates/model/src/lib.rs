//! The vocabulary the API layer (`operations`), the store and the reconciler share, so that
//! none of them has to reach into another for it: what a resource is called, which statuses
//! it goes through, how its ARN reads, and what AWS offers (engine versions, parameter
//! families, node types). Plain data and pure functions; no I/O.
//!
//! # Layout
//! - [`Scope`]: the region and account every resource belongs to.
//! - [`status`]: AWS's status strings per resource, event source types, transit modes.
//! - [`names`]: how members, nodes and node groups are named.
//! - [`arn`]: building and parsing ElastiCache ARNs.
//! - [`catalog`]: engine versions, parameter families and node types, from `data/`.
//! - [`parameters`]: the values a parameter group gives its nodes.
//! - [`reserved`]: the reserved cache node offerings, from `data/`.

pub mod arn;
pub mod catalog;
pub mod names;
pub mod parameters;
pub mod reserved;
pub mod service_updates;
pub mod status;

pub use catalog::Catalog;

/// Region and account: part of every resource's identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub region: String,
    pub account: String,
}
