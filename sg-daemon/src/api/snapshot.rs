//! Snapshot policies (edits of the desired document, like any object) and
//! a group's snapshots: listed, compared with the rules in force, restored
//! in one change (see [`crate::snapshots`] for when they are taken).

use serde::{Deserialize, Serialize};

use super::{
    Reply, Request,
    change::{change, report_note},
};
use crate::{
    config::schema::{Document, SnapshotPolicy},
    daemon::ApplyReport,
    model::Config,
    snapshots::{Rules, Snapshot, diff, rfc3339},
    store::Store,
};

/// The snapshot policy verbs, on a copy of the document.
pub(super) fn edit_policy(
    doc: &mut Document,
    request: Request,
) -> Result<(String, Option<String>), String> {
    match request {
        Request::CreateSnapshotPolicy { policy } => {
            if policy.id.is_empty() {
                return Err("a snapshot policy needs an id".into());
            }
            if find(doc, &policy.id).is_ok() {
                return Err(format!("snapshot policy {} exists", policy.id));
            }
            let message = format!(
                "created snapshot policy {}{}",
                policy.id,
                covering(&policy.security_groups)
            );
            doc.snapshot_policy.push(policy);
            Ok((message, None))
        }
        Request::ModifySnapshotPolicy {
            id,
            name,
            enabled,
            retention_days,
        } => {
            let p = find(doc, &id)?;
            if let Some(name) = name {
                p.name = (!name.is_empty()).then_some(name);
            }
            if enabled.is_some() {
                p.enabled = enabled;
            }
            if retention_days.is_some() {
                p.retention_days = retention_days;
            }
            Ok((format!("modified snapshot policy {id}"), None))
        }
        Request::DeleteSnapshotPolicy { id } => {
            find(doc, &id)?;
            doc.snapshot_policy.retain(|p| p.id != id);
            Ok((
                format!("deleted snapshot policy {id} (its snapshots stay for their retention)"),
                None,
            ))
        }
        Request::AssociateSnapshotPolicy { id, groups } => {
            let p = find(doc, &id)?;
            let new: Vec<String> = (groups.iter())
                .filter(|g| !p.security_groups.contains(g))
                .cloned()
                .collect();
            if new.is_empty() {
                return Err(format!(
                    "snapshot policy {id} covers {} already",
                    groups.join(", ")
                ));
            }
            p.security_groups.extend(new.iter().cloned());
            Ok((
                format!("snapshot policy {id} associated{}", covering(&new)),
                None,
            ))
        }
        Request::DisassociateSnapshotPolicy { id, groups } => {
            let p = find(doc, &id)?;
            if let Some(g) = groups.iter().find(|g| !p.security_groups.contains(g)) {
                return Err(format!("snapshot policy {id} does not cover group {g}"));
            }
            p.security_groups.retain(|g| !groups.contains(g));
            Ok((
                format!(
                    "snapshot policy {id} no longer covers {}",
                    groups.join(", ")
                ),
                None,
            ))
        }
        other => Err(format!("{} changes nothing here", other.verb())),
    }
}

fn covering(groups: &[String]) -> String {
    if groups.is_empty() {
        String::new()
    } else {
        format!(" (covers {})", groups.join(", "))
    }
}

fn find<'a>(doc: &'a mut Document, id: &str) -> Result<&'a mut SnapshotPolicy, String> {
    let known: Vec<String> = doc.snapshot_policy.iter().map(|p| p.id.clone()).collect();
    doc.snapshot_policy
        .iter_mut()
        .find(|p| p.id == id)
        .ok_or_else(|| match known.is_empty() {
            true => format!("no snapshot policy {id} (there are none)"),
            false => format!("no snapshot policy {id}; there are: {}", known.join(", ")),
        })
}

/// `ListSnapshots`: a group's snapshots, also of a group deleted since.
pub(super) fn list(state: &Store, group: &str) -> Result<Reply, String> {
    let snapshots = state.snapshots().list(group).map_err(|e| e.to_string())?;
    if snapshots.is_empty() && state.document().group(group).is_none() {
        return Err(format!("no group {group}"));
    }
    Ok(Reply::Snapshots(SnapshotList {
        group: group.to_owned(),
        next_due: state.snapshots().due_for(group).map(rfc3339),
        snapshots: snapshots.iter().map(info).collect(),
    }))
}

fn info(s: &Snapshot) -> SnapshotInfo {
    SnapshotInfo {
        id: s.id.clone(),
        taken_at: rfc3339(s.taken_at),
        trigger: s.trigger.name().to_owned(),
        inbound_rules: s.rules.ingress.len(),
        outbound_rules: s.rules.egress.len(),
        retention_days: s.retention_days,
        expires_at: rfc3339(s.expires_at()),
        policies: s.policies.clone(),
    }
}

/// The group's rules in force.
fn current(doc: &Document, group: &str) -> Result<Rules, String> {
    let g = doc.group(group).ok_or_else(|| {
        format!("no group {group} (its snapshots stay, but there is nothing to restore into)")
    })?;
    Ok(Rules {
        ingress: g.ingress.clone(),
        egress: g.egress.clone(),
    })
}

/// `DiffSnapshot`.
pub(super) fn diff_snapshot(state: &Store, group: &str, id: &str) -> Result<Reply, String> {
    let snapshot = state.snapshots().get(group, id)?;
    let current = current(state.document(), group)?;
    Ok(Reply::SnapshotDiff(Box::new(diff(&current, &snapshot))))
}

/// `RestoreSnapshot`: every rule of the group replaced by the snapshot's,
/// validated and applied as one change, or nothing changes (a snapshot
/// naming a list or group deleted since is refused, saying which).
pub(super) fn restore(
    state: &mut Store,
    group: &str,
    id: &str,
    apply: &mut dyn FnMut(&Config) -> anyhow::Result<ApplyReport>,
) -> Result<Reply, String> {
    let snapshot = state.snapshots().get(group, id)?;
    let before = current(state.document(), group)?;
    let changes = diff(&before, &snapshot);
    // A snapshot still due holds the rules before the window's first
    // change: taken now, so that the restore's own one holds the rules it
    // replaces (nothing is lost to the shared window).
    state.snapshot_now(group)?;
    let mut doc = state.document().clone();
    let g = doc
        .group_mut(group)
        .ok_or_else(|| format!("no group {group}"))?;
    g.ingress = snapshot.rules.ingress.clone();
    g.egress = snapshot.rules.egress.clone();
    let report =
        change(state, doc, apply).map_err(|e| format!("snapshot {id} not restored: {e}"))?;
    let counts = |d: &crate::snapshots::DirectionDiff| {
        format!("{} removed, {} added", d.removed.len(), d.added.len())
    };
    Ok(Reply::Done {
        message: format!(
            "restored group {group} from snapshot {id} (inbound: {}; outbound: {}){}",
            counts(&changes.inbound),
            counts(&changes.outbound),
            report_note(&report)
        ),
        id: None,
    })
}

/// A group's snapshots (`sgctl snapshot list`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotList {
    pub group: String,
    /// When the scheduled snapshot of the rules before a change is
    /// taken (RFC 3339, UTC), if one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_due: Option<String>,
    pub snapshots: Vec<SnapshotInfo>,
}

/// One snapshot, without its rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    pub id: String,
    /// RFC 3339, UTC.
    pub taken_at: String,
    /// `associated` (the group became covered) or `changed` (the rules
    /// before a change).
    pub trigger: String,
    pub inbound_rules: usize,
    pub outbound_rules: usize,
    pub retention_days: u32,
    /// RFC 3339, UTC: deleted then.
    pub expires_at: String,
    pub policies: Vec<String>,
}
