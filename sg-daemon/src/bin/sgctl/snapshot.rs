//! `sgctl snapshot` (a group's snapshots: list, diff, restore) and
//! `sgctl snapshot-policy` (which groups are snapshotted, for how long):
//! their subcommands, requests and tables.

use clap::Subcommand;
use sg_daemon::{
    api::{Direction, Request, SnapshotList},
    config::schema::{self, Rule},
    snapshots::{DirectionDiff, SnapshotDiff},
};

use super::render::{View, or_dash, rule_rows, table};

#[derive(Subcommand)]
pub(crate) enum SnapshotCmd {
    /// A group's snapshots, newest first, and when the next is due.
    #[command(after_help = "Example: sgctl snapshot list sg-web")]
    List {
        /// The group (`sg-…`).
        group: String,
    },
    /// A snapshot against the group's rules in force, inbound and outbound:
    /// the rules a restore removes (-) and adds (+).
    #[command(after_help = "Example: sgctl snapshot diff sg-web ssnap-20261201T201500Z")]
    Diff {
        /// The group (`sg-…`).
        group: String,
        /// The snapshot's id (`sgctl snapshot list GROUP`).
        snapshot: String,
    },
    /// Replace every rule of the group with the snapshot's, in one change.
    /// Not undoable (though it schedules a snapshot of what it replaced):
    /// asks on a terminal; elsewhere `--yes` is required.
    #[command(
        after_help = "Example: sgctl snapshot diff sg-web ssnap-20261201T201500Z && sgctl snapshot restore sg-web ssnap-20261201T201500Z --yes"
    )]
    Restore {
        /// The group (`sg-…`).
        group: String,
        /// The snapshot's id (`sgctl snapshot list GROUP`).
        snapshot: String,
        /// Restore without asking.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
pub(crate) enum PolicyCmd {
    /// The snapshot policies.
    #[command(after_help = "Example: sgctl snapshot-policy list")]
    List,
    /// A new policy; each group it covers (if enabled) is snapshotted at
    /// once.
    #[command(
        after_help = "Example: sgctl snapshot-policy create daily --retention-days 7 --group sg-web --group sg-db"
    )]
    Create {
        /// The policy's id.
        id: String,
        /// A name to show (2..=128 characters).
        #[arg(long)]
        name: Option<String>,
        /// Days a snapshot is kept: 1..=30.
        #[arg(long, default_value_t = 1)]
        retention_days: i64,
        /// Create it disabled (it takes no snapshots until enabled).
        #[arg(long)]
        disabled: bool,
        /// A group to cover (repeat; at most 10).
        #[arg(long = "group")]
        groups: Vec<String>,
    },
    /// Changes the given fields of a policy.
    #[command(after_help = "Example: sgctl snapshot-policy modify daily --retention-days 30")]
    Modify {
        /// The policy's id.
        id: String,
        /// An empty name removes it.
        #[arg(long)]
        name: Option<String>,
        /// `true`: takes snapshots; `false`: takes none.
        #[arg(long)]
        enabled: Option<bool>,
        /// Days a snapshot is kept: 1..=30.
        #[arg(long)]
        retention_days: Option<i64>,
    },
    /// Removes a policy (the snapshots it took stay for their retention).
    #[command(after_help = "Example: sgctl snapshot-policy delete daily")]
    Delete {
        /// The policy's id.
        id: String,
    },
    /// Covers more groups (each is snapshotted at once).
    #[command(after_help = "Example: sgctl snapshot-policy associate daily sg-web sg-db")]
    Associate {
        /// The policy's id.
        id: String,
        /// The groups (`sg-…`).
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Stops covering groups.
    #[command(after_help = "Example: sgctl snapshot-policy disassociate daily sg-db")]
    Disassociate {
        /// The policy's id.
        id: String,
        /// The groups (`sg-…`).
        #[arg(required = true)]
        groups: Vec<String>,
    },
}

pub(crate) fn request(cmd: SnapshotCmd) -> (Request, View) {
    match cmd {
        SnapshotCmd::List { group } => (Request::ListSnapshots { group }, View::Plain),
        SnapshotCmd::Diff { group, snapshot } => {
            (Request::DiffSnapshot { group, snapshot }, View::Plain)
        }
        SnapshotCmd::Restore {
            group, snapshot, ..
        } => (Request::RestoreSnapshot { group, snapshot }, View::Message),
    }
}

pub(crate) fn policy_request(cmd: PolicyCmd) -> (Request, View) {
    let request = match cmd {
        PolicyCmd::List => Request::ListSnapshotPolicies,
        PolicyCmd::Create {
            id,
            name,
            retention_days,
            disabled,
            groups,
        } => Request::CreateSnapshotPolicy {
            policy: schema::SnapshotPolicy {
                id,
                name,
                enabled: disabled.then_some(false),
                retention_days: Some(retention_days),
                security_groups: groups,
            },
        },
        PolicyCmd::Modify {
            id,
            name,
            enabled,
            retention_days,
        } => Request::ModifySnapshotPolicy {
            id,
            name,
            enabled,
            retention_days,
        },
        PolicyCmd::Delete { id } => Request::DeleteSnapshotPolicy { id },
        PolicyCmd::Associate { id, groups } => Request::AssociateSnapshotPolicy { id, groups },
        PolicyCmd::Disassociate { id, groups } => {
            Request::DisassociateSnapshotPolicy { id, groups }
        }
    };
    (request, View::Message)
}

pub(crate) fn policies(list: &[schema::SnapshotPolicy]) -> String {
    if list.is_empty() {
        return "no snapshot policies\n".into();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|p| {
            vec![
                p.id.clone(),
                or_dash(p.name.as_deref()),
                if p.enabled.unwrap_or(true) {
                    "yes"
                } else {
                    "no"
                }
                .into(),
                p.retention_days.unwrap_or(1).to_string(),
                or_dash(Some(&p.security_groups.join(", "))),
            ]
        })
        .collect();
    table(
        &["ID", "NAME", "ENABLED", "RETENTION DAYS", "GROUPS"],
        &rows,
    )
}

pub(crate) fn list(l: &SnapshotList) -> String {
    let mut out = if l.snapshots.is_empty() {
        format!("group {} has no snapshots\n", l.group)
    } else {
        let rows: Vec<Vec<String>> = (l.snapshots.iter())
            .map(|s| {
                vec![
                    s.id.clone(),
                    s.taken_at.clone(),
                    s.trigger.clone(),
                    s.inbound_rules.to_string(),
                    s.outbound_rules.to_string(),
                    s.expires_at.clone(),
                    s.policies.join(", "),
                ]
            })
            .collect();
        table(
            &[
                "SNAPSHOT", "TAKEN", "WHY", "INBOUND", "OUTBOUND", "EXPIRES", "POLICY",
            ],
            &rows,
        )
    };
    if let Some(due) = &l.next_due {
        out.push_str(&format!(
            "due at {due}: a snapshot of the rules as they were before the first change since the last snapshot\n"
        ));
    }
    out
}

/// `snapshot diff`: per direction, the rules a restore removes (-), adds
/// (+) and keeps (=), then the summary.
pub(crate) fn diff(d: &SnapshotDiff) -> String {
    let mut out = format!(
        "group {} against snapshot {} (taken {})\n",
        d.group, d.snapshot, d.taken_at
    );
    for (dir, title, side) in [
        (Direction::Ingress, "inbound", &d.inbound),
        (Direction::Egress, "outbound", &d.outbound),
    ] {
        out.push_str(&format!(
            "\n{title}: {} rule(s) now, {} after a restore ({} removed, {} added, {} unchanged)\n",
            side.current.len(),
            side.restored.len(),
            side.removed.len(),
            side.added.len(),
            side.unchanged
        ));
        let marked = marked(side);
        if !marked.is_empty() {
            let rules: Vec<&Rule> = marked.iter().map(|(_, r)| *r).collect();
            let rows = rule_rows(&rules, dir);
            let rows: Vec<Vec<String>> = (marked.iter().zip(rows))
                .map(|((mark, _), row)| std::iter::once(mark.to_string()).chain(row).collect())
                .collect();
            let mut headers = vec![""];
            headers.extend(super::render::rule_headers(dir));
            out.push_str(&table(&headers, &rows));
        }
    }
    if d.is_empty() {
        out.push_str("\na restore would change nothing\n");
    }
    out
}

/// The rules of one direction, each with its mark: current ones first
/// (`-` removed, `=` kept), then the added ones (`+`).
fn marked(side: &DirectionDiff) -> Vec<(char, &Rule)> {
    let current = side.current.iter().map(|r| {
        let mark = if side.removed.contains(r) { '-' } else { '=' };
        (mark, r)
    });
    current.chain(side.added.iter().map(|r| ('+', r))).collect()
}

/// Asks before a restore (on a terminal; elsewhere `--yes` is needed).
pub(crate) fn confirm_restore(group: &str, snapshot: &str) -> Option<std::process::ExitCode> {
    super::confirm::ask(
        &format!("Replace every rule of security group {group} with snapshot {snapshot}?"),
        &format!("restoring group {group} from a snapshot"),
        "not restored",
    )
}
