//! Security-group snapshots (SPEC §5, seed 002): the rules of a group as
//! they were, kept for `retention_days`, to be compared with the rules in
//! force and restored.
//!
//! - A group is covered while an enabled `[[snapshot_policy]]` lists it.
//!   When it becomes covered (a policy created, enabled, or associated with
//!   it; also while sgd was stopped), its rules are snapshotted at once.
//! - A change to a covered group's rules schedules a snapshot of the rules
//!   as they were *before* it, taken `[daemon] snapshot_delay_secs` later;
//!   further changes within that window share it (the seeds' 5 minutes).
//!   Changes made to the config file while sgd was stopped count too: the
//!   rules last seen are kept with the schedule.
//! - A snapshot keeps the longest retention of the policies that covered
//!   its group when it was taken, and is deleted once older than that.
//!
//! Everything lives under `<state_dir>/snapshots/`, each file written
//! atomically: `schedule.json` (the rules last seen of each covered group,
//! and the snapshots due), and `<group>/<snapshot id>.json`. Only
//! [`crate::store::Store`] drives this module: it sees every change of the
//! desired state (`files` reads and writes, `diff` compares).

mod diff;
mod files;

use std::{
    collections::BTreeMap,
    io,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

pub use self::diff::{DirectionDiff, SnapshotDiff, diff};
use crate::{
    config::schema::{Document, Rule},
    model::Config,
};

/// Expired snapshots are looked for this often (and at start).
pub const PURGE_EVERY_SECS: u64 = 3600;

/// A snapshot that could not be written is tried again this much later.
const RETRY_SECS: u64 = 60;

/// The directory of snapshots under `state_dir`.
pub const SNAPSHOT_DIR: &str = "snapshots";

/// Seconds since the Unix epoch: snapshots are dated by the wall clock
/// (they are shown to people and outlive reboots).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A time as RFC 3339 in UTC, `2026-12-01T20:15:00Z`.
pub fn rfc3339(unix: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}

/// A group's rules, both directions, as the desired state writes them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rules {
    #[serde(default)]
    pub ingress: Vec<Rule>,
    #[serde(default)]
    pub egress: Vec<Rule>,
}

impl Rules {
    fn of(doc: &Document, group: &str) -> Rules {
        doc.group(group)
            .map(|g| Rules {
                ingress: g.ingress.clone(),
                egress: g.egress.clone(),
            })
            .unwrap_or_default()
    }

    pub fn count(&self) -> usize {
        self.ingress.len() + self.egress.len()
    }
}

/// Why a snapshot was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The group became covered by a policy.
    Associated,
    /// The group's rules changed (the rules before the change).
    Changed,
}

impl Trigger {
    pub fn name(self) -> &'static str {
        match self {
            Trigger::Associated => "associated",
            Trigger::Changed => "changed",
        }
    }
}

/// One stored snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub id: String,
    pub group: String,
    /// Unix seconds.
    pub taken_at: u64,
    pub trigger: Trigger,
    /// Kept this long after `taken_at`.
    pub retention_days: u32,
    /// The enabled policies that covered the group.
    pub policies: Vec<String>,
    pub rules: Rules,
}

impl Snapshot {
    pub fn expires_at(&self) -> u64 {
        self.taken_at + u64::from(self.retention_days) * 86_400
    }
}

/// A snapshot waiting for its time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Pending {
    /// Unix seconds.
    due: u64,
    retention_days: u32,
    policies: Vec<String>,
    /// The rules before the first change of the window.
    rules: Rules,
}

/// What `schedule.json` holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Schedule {
    /// Each covered group's rules as last seen.
    #[serde(default)]
    watched: BTreeMap<String, Rules>,
    #[serde(default)]
    pending: BTreeMap<String, Pending>,
}

/// The snapshots of one host, and the schedule of those due.
#[derive(Debug)]
pub struct Snapshots {
    dir: PathBuf,
    delay_secs: u64,
    schedule: Schedule,
    /// When expired snapshots were last looked for.
    purged_at: Option<u64>,
}

impl Snapshots {
    /// The snapshots under `state_dir`; an unreadable schedule is reported
    /// and started afresh (every covered group is then snapshotted anew).
    pub fn open(state_dir: &Path, delay_secs: u64) -> Snapshots {
        let dir = state_dir.join(SNAPSHOT_DIR);
        let schedule = files::read_schedule(&dir).unwrap_or_else(|e| {
            warn!("snapshots: {e}; starting a new schedule");
            Schedule::default()
        });
        Snapshots {
            dir,
            delay_secs,
            schedule,
            purged_at: None,
        }
    }

    pub fn set_delay(&mut self, delay_secs: u64) {
        self.delay_secs = delay_secs;
    }

    /// Looks at the desired state in force (after every change, and at
    /// start): snapshots the groups newly covered at once, and schedules a
    /// snapshot for each covered group whose rules changed since last seen
    /// (unless one is scheduled already). Returns the snapshots taken.
    pub fn observe(
        &mut self,
        config: &Config,
        doc: &Document,
        now: u64,
    ) -> io::Result<Vec<Snapshot>> {
        let mut taken = Vec::new();
        let mut watched = BTreeMap::new();
        for (group, (retention_days, policies)) in config.snapshot_coverage() {
            let rules = Rules::of(doc, group);
            let policies: Vec<String> = policies.into_iter().map(str::to_owned).collect();
            match self.schedule.watched.get(group) {
                None => {
                    let snapshot = self.write(
                        group,
                        now,
                        Trigger::Associated,
                        retention_days,
                        &policies,
                        rules.clone(),
                    )?;
                    info!(group, snapshot = %snapshot.id, "snapshot taken: the group is covered by {}", policies.join(", "));
                    taken.push(snapshot);
                }
                Some(before) if *before != rules && !self.schedule.pending.contains_key(group) => {
                    let due = now + self.delay_secs;
                    info!(group, due = %rfc3339(due), "rules changed: a snapshot of the rules before is due");
                    self.schedule.pending.insert(
                        group.to_owned(),
                        Pending {
                            due,
                            retention_days,
                            policies,
                            rules: before.clone(),
                        },
                    );
                }
                Some(_) => {}
            }
            watched.insert(group.to_owned(), rules);
        }
        self.schedule.watched = watched;
        files::write_schedule(&self.dir, &self.schedule)?;
        Ok(taken)
    }

    /// When the next scheduled snapshot is due (Unix seconds).
    pub fn next_due(&self) -> Option<u64> {
        self.schedule.pending.values().map(|p| p.due).min()
    }

    /// Takes the scheduled snapshots due by `now`.
    pub fn take_due(&mut self, now: u64) -> io::Result<Vec<Snapshot>> {
        let due: Vec<String> = (self.schedule.pending.iter())
            .filter(|(_, p)| p.due <= now)
            .map(|(g, _)| g.clone())
            .collect();
        let mut taken = Vec::new();
        for group in due {
            let p = self.schedule.pending[&group].clone();
            let written = self.write(
                &group,
                now,
                Trigger::Changed,
                p.retention_days,
                &p.policies,
                p.rules,
            );
            let snapshot = match written {
                Ok(snapshot) => snapshot,
                Err(e) => {
                    // Tried again a minute later, not in a tight loop.
                    if let Some(p) = self.schedule.pending.get_mut(&group) {
                        p.due = now + RETRY_SECS;
                    }
                    return Err(e);
                }
            };
            info!(group, snapshot = %snapshot.id, "snapshot taken of the rules before a change");
            self.schedule.pending.remove(&group);
            files::write_schedule(&self.dir, &self.schedule)?;
            taken.push(snapshot);
        }
        Ok(taken)
    }

    /// Takes `group`'s scheduled snapshot now, if one is due later: before
    /// a restore, so that the rules the restore replaces get a snapshot of
    /// their own (a restore is not undoable; its window must not swallow
    /// them).
    pub fn take_now(&mut self, group: &str, now: u64) -> io::Result<Option<Snapshot>> {
        let Some(p) = self.schedule.pending.get_mut(group) else {
            return Ok(None);
        };
        p.due = now;
        Ok(self.take_due(now)?.into_iter().find(|s| s.group == group))
    }

    /// [`Snapshots::purge`], at most every [`PURGE_EVERY_SECS`] (it reads
    /// every snapshot).
    pub fn purge_now_and_then(&mut self, now: u64) -> io::Result<Vec<Snapshot>> {
        if self.purged_at.is_some_and(|at| now < at + PURGE_EVERY_SECS) {
            return Ok(Vec::new());
        }
        self.purged_at = Some(now);
        self.purge(now)
    }

    /// Deletes the snapshots older than their retention; returns them.
    pub fn purge(&self, now: u64) -> io::Result<Vec<Snapshot>> {
        let mut purged = Vec::new();
        for snapshot in files::read_all(&self.dir)? {
            if snapshot.expires_at() <= now {
                files::remove(&self.dir, &snapshot)?;
                info!(group = %snapshot.group, snapshot = %snapshot.id, "snapshot deleted: older than its retention ({} days)", snapshot.retention_days);
                purged.push(snapshot);
            }
        }
        Ok(purged)
    }

    /// A group's snapshots, newest first (none for text that is not a
    /// group id: it names a directory).
    pub fn list(&self, group: &str) -> io::Result<Vec<Snapshot>> {
        let is_id = group.starts_with(|c: char| c.is_ascii_alphanumeric())
            && group
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !is_id {
            return Ok(Vec::new());
        }
        let mut all = files::read_group(&self.dir, group)?;
        all.sort_by(|a, b| b.taken_at.cmp(&a.taken_at).then(b.id.cmp(&a.id)));
        Ok(all)
    }

    /// One of a group's snapshots.
    pub fn get(&self, group: &str, id: &str) -> Result<Snapshot, String> {
        let all = self.list(group).map_err(|e| e.to_string())?;
        let known: Vec<&str> = all.iter().take(5).map(|s| s.id.as_str()).collect();
        all.iter().find(|s| s.id == id).cloned().ok_or_else(|| {
            if known.is_empty() {
                format!("group {group} has no snapshot {id:?} (it has none)")
            } else {
                format!(
                    "group {group} has no snapshot {id:?}; the newest: {} (sgctl snapshot list {group})",
                    known.join(", ")
                )
            }
        })
    }

    /// Whether the group has a snapshot scheduled, and when (Unix
    /// seconds).
    pub fn due_for(&self, group: &str) -> Option<u64> {
        self.schedule.pending.get(group).map(|p| p.due)
    }

    fn write(
        &self,
        group: &str,
        now: u64,
        trigger: Trigger,
        retention_days: u32,
        policies: &[String],
        rules: Rules,
    ) -> io::Result<Snapshot> {
        let snapshot = Snapshot {
            id: files::free_id(&self.dir, group, now),
            group: group.to_owned(),
            taken_at: now,
            trigger,
            retention_days,
            policies: policies.to_vec(),
            rules,
        };
        files::write(&self.dir, &snapshot)?;
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests;
