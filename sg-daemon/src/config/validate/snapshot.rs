//! `[[snapshot_policy]]`: ids unique, the retention within the seeds'
//! 1..=30 days, and at most 10 groups, each present and named once.

use std::collections::HashSet;

use super::Validator;
use crate::{
    config::{
        limits::{MAX_GROUPS_PER_SNAPSHOT_POLICY, SNAPSHOT_RETENTION_DAYS_RANGE},
        schema,
    },
    model::SnapshotPolicy,
};

impl Validator {
    pub(super) fn snapshot_policies(
        &mut self,
        policies: &[schema::SnapshotPolicy],
        group_ids: &HashSet<String>,
    ) -> Vec<SnapshotPolicy> {
        let mut ids = HashSet::new();
        let mut out = Vec::new();
        for (i, p) in policies.iter().enumerate() {
            let field = format!("snapshot_policy[{i}]");
            self.id(&format!("{field}.id"), &p.id, "");
            if !ids.insert(p.id.as_str()) {
                self.error(
                    format!("{field}.id"),
                    format!("duplicate snapshot policy id {:?}", p.id),
                );
            }
            self.name(&format!("{field}.name"), p.name.as_deref());
            let retention = p.retention_days.unwrap_or(1);
            if !SNAPSHOT_RETENTION_DAYS_RANGE.contains(&retention) {
                self.error(
                    format!("{field}.retention_days"),
                    format!(
                        "{retention} is out of range; allowed: {}..={} days (default 1)",
                        SNAPSHOT_RETENTION_DAYS_RANGE.start(),
                        SNAPSHOT_RETENTION_DAYS_RANGE.end()
                    ),
                );
            }
            if p.security_groups.len() > MAX_GROUPS_PER_SNAPSHOT_POLICY {
                self.error(
                    format!("{field}.security_groups"),
                    format!(
                        "{} groups; allowed: at most {MAX_GROUPS_PER_SNAPSHOT_POLICY} per snapshot policy",
                        p.security_groups.len()
                    ),
                );
            }
            let mut seen = HashSet::new();
            for (j, g) in p.security_groups.iter().enumerate() {
                let at = format!("{field}.security_groups[{j}]");
                if !group_ids.contains(g) {
                    self.error(
                        at,
                        format!("no group {g:?}; allowed: the id of a [[security_group]]"),
                    );
                } else if !seen.insert(g.as_str()) {
                    self.error(at, format!("group {g:?} is listed twice"));
                }
            }
            out.push(SnapshotPolicy {
                id: p.id.clone(),
                name: p.name.clone(),
                enabled: p.enabled.unwrap_or(true),
                retention_days: retention.clamp(1, 30) as u32,
                groups: p.security_groups.clone(),
            });
        }
        out
    }
}
