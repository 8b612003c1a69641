//! Replication groups (cluster mode disabled) on real redis-server processes: placement over
//! zones, primary and reader endpoints, automatic failover on a crash, a freeze or a zone
//! outage, TestFailover, replica scaling, deletion and validation. Each test starts its own
//! server and drives it through `aws-sdk-elasticache`, RESP over TCP and the admin API.

// A failed unwrap is a failed test here.
#![allow(clippy::unwrap_used)]

mod engine_change;
mod failover;
mod global;
mod lifecycle;
mod migration;
mod pace;
mod placement;
mod resilience;
mod service_updates;
mod support;
mod test_failover;
mod validation;
