//! A snapshot against the rules in force, as the console's restore dialog
//! shows it: per direction, the current rules and the restored ones, and
//! which rules a restore removes and adds (a rule changed in place is
//! both).

use serde::{Deserialize, Serialize};

use super::{Rules, Snapshot, rfc3339};
use crate::config::schema::Rule;

/// One direction: current against restored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DirectionDiff {
    pub current: Vec<Rule>,
    pub restored: Vec<Rule>,
    /// In force now, gone after a restore.
    pub removed: Vec<Rule>,
    /// Absent now, in force after a restore.
    pub added: Vec<Rule>,
    pub unchanged: usize,
}

/// `sgctl snapshot diff`: inbound and outbound.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotDiff {
    pub group: String,
    pub snapshot: String,
    /// RFC 3339, UTC.
    pub taken_at: String,
    pub inbound: DirectionDiff,
    pub outbound: DirectionDiff,
}

impl SnapshotDiff {
    /// Whether a restore would change nothing.
    pub fn is_empty(&self) -> bool {
        [&self.inbound, &self.outbound]
            .iter()
            .all(|d| d.removed.is_empty() && d.added.is_empty())
    }
}

/// The group's rules in force (`current`) against `snapshot`'s.
pub fn diff(current: &Rules, snapshot: &Snapshot) -> SnapshotDiff {
    SnapshotDiff {
        group: snapshot.group.clone(),
        snapshot: snapshot.id.clone(),
        taken_at: rfc3339(snapshot.taken_at),
        inbound: direction(&current.ingress, &snapshot.rules.ingress),
        outbound: direction(&current.egress, &snapshot.rules.egress),
    }
}

fn direction(current: &[Rule], restored: &[Rule]) -> DirectionDiff {
    let removed: Vec<Rule> = (current.iter())
        .filter(|r| !restored.contains(r))
        .cloned()
        .collect();
    let added: Vec<Rule> = (restored.iter())
        .filter(|r| !current.contains(r))
        .cloned()
        .collect();
    DirectionDiff {
        current: current.to_vec(),
        restored: restored.to_vec(),
        unchanged: current.len() - removed.len(),
        removed,
        added,
    }
}
