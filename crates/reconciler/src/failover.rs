//! The failover decision, one for both cluster modes: given what was observed of a shard's
//! primary and replicas, and what was asked, which replica to promote and how, or why none.
//! Pure: the callers observe the nodes, carry the decision out and record it.
//!
//! The rules, in order:
//! 1. Only a replica that answers its probe, and whose replication offset could be read, is
//!    a candidate; a requested member is the only candidate.
//! 2. A replica that has data (offset above 0) beats one still in its first sync; then the
//!    highest offset (the least data lost); then one in another zone than the primary.
//! 3. The old primary still answering makes it a coordinated switch-over (writes pause until
//!    the replica has caught up, nothing is lost); a dead or unreachable one (crashed,
//!    frozen, its zone down) a takeover.
//! 4. No candidate: a dead primary of an automatic failover restarts in place (empty, as a
//!    replaced node does on AWS); otherwise the failover waits for a candidate.

use nodes::Health;
use store::FailoverRequest;

/// The shard's primary as observed.
#[derive(Debug, Clone)]
pub struct Primary<'a> {
    pub id: &'a str,
    pub zone: &'a str,
    pub health: Health,
}

/// One replica as observed; `offset` is None when its replication state could not be read
/// or it has not been linked to the primary since it started.
#[derive(Debug, Clone)]
pub struct Replica<'a> {
    pub id: &'a str,
    pub zone: &'a str,
    pub health: Health,
    pub offset: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<'a> {
    /// Promote `to`; `coordinated` when the old primary still answers.
    Promote { to: &'a str, coordinated: bool },
    /// Nothing to promote and the primary is dead: start it again in place.
    RestartPrimary,
    /// Nothing to promote yet: look again later.
    Wait,
}

pub fn decide<'a>(request: &FailoverRequest, primary: &Primary<'_>, replicas: &[Replica<'a>]) -> Decision<'a> {
    let best = replicas
        .iter()
        .filter(|r| r.id != primary.id && r.health == Health::Healthy)
        .filter(|r| request.target().is_none_or(|target| target == r.id))
        .filter_map(|r| r.offset.map(|offset| (r, (offset > 0, offset, r.zone != primary.zone))))
        .max_by(|(a, rank_a), (b, rank_b)| rank_a.cmp(rank_b).then_with(|| b.id.cmp(a.id)));
    match best {
        Some((replica, _)) => Decision::Promote { to: replica.id, coordinated: primary.health == Health::Healthy },
        None if *request == FailoverRequest::BestReplica && primary.health == Health::Exited => {
            Decision::RestartPrimary
        }
        None => Decision::Wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "us-east-1a";
    const B: &str = "us-east-1b";

    fn primary(health: Health) -> Primary<'static> {
        Primary { id: "g-001", zone: A, health }
    }

    fn replica(id: &'static str, zone: &'static str, health: Health, offset: Option<u64>) -> Replica<'static> {
        Replica { id, zone, health, offset }
    }

    #[test]
    fn rules() {
        use Health::*;
        let best = FailoverRequest::BestReplica;
        let promote = |to, coordinated| Decision::Promote { to, coordinated };
        // (what, request, primary health, replicas, decision)
        let cases: Vec<(&str, FailoverRequest, Health, Vec<Replica>, Decision)> = vec![
            (
                "the healthy replica with the highest offset",
                best.clone(),
                Exited,
                vec![replica("g-002", A, Healthy, Some(90)), replica("g-003", A, Healthy, Some(100))],
                promote("g-003", false),
            ),
            (
                "a replica with data beats one in its first sync, whatever the zones",
                best.clone(),
                Exited,
                vec![replica("g-002", A, Healthy, Some(5)), replica("g-003", B, Healthy, Some(0))],
                promote("g-002", false),
            ),
            (
                "equal offsets: another zone than the primary's",
                best.clone(),
                Exited,
                vec![replica("g-002", A, Healthy, Some(7)), replica("g-003", B, Healthy, Some(7))],
                promote("g-003", false),
            ),
            (
                "unhealthy replicas are no candidates (a zone outage freezes them)",
                best.clone(),
                Exited,
                vec![
                    replica("g-002", B, Paused, Some(100)),
                    replica("g-003", B, Unreachable, Some(100)),
                    replica("g-004", A, Healthy, Some(1)),
                ],
                promote("g-004", false),
            ),
            (
                "a replica whose offset could not be read is no candidate",
                best.clone(),
                Exited,
                vec![replica("g-002", A, Healthy, None)],
                Decision::RestartPrimary,
            ),
            (
                "a primary that still answers: a coordinated switch-over",
                best.clone(),
                Healthy,
                vec![replica("g-002", B, Healthy, Some(3))],
                promote("g-002", true),
            ),
            (
                "a frozen primary (zone outage): a takeover",
                best.clone(),
                Paused,
                vec![replica("g-002", B, Healthy, Some(3))],
                promote("g-002", false),
            ),
            (
                "an unreachable primary: a takeover",
                best.clone(),
                Unreachable,
                vec![replica("g-002", B, Healthy, Some(3))],
                promote("g-002", false),
            ),
            (
                "a requested member only, even if another is better",
                FailoverRequest::To("g-002".into()),
                Healthy,
                vec![replica("g-002", A, Healthy, Some(1)), replica("g-003", B, Healthy, Some(100))],
                promote("g-002", true),
            ),
            (
                "a requested member that is down: wait for it",
                FailoverRequest::To("g-002".into()),
                Exited,
                vec![replica("g-002", A, Exited, None), replica("g-003", B, Healthy, Some(100))],
                Decision::Wait,
            ),
            ("no replica, dead primary: restart it in place", best.clone(), Exited, vec![], Decision::RestartPrimary),
            (
                "no healthy replica, frozen primary: wait (it may come back with its data)",
                best.clone(),
                Paused,
                vec![replica("g-002", B, Paused, Some(9))],
                Decision::Wait,
            ),
            (
                "the primary itself is never a candidate",
                best.clone(),
                Unreachable,
                vec![replica("g-001", A, Healthy, Some(100))],
                Decision::Wait,
            ),
        ];
        for (what, request, health, replicas, expected) in cases {
            assert_eq!(decide(&request, &primary(health), &replicas), expected, "{what}");
        }
    }
}
