//! Snapshot policies and snapshots through the API (SPEC §5): association
//! snapshots at once, a change schedules the rules before it, restore is
//! one change, and bad requests change nothing.

use super::*;
use crate::{api::SnapshotList, snapshots::SnapshotDiff};

const DAILY: &str = "[[snapshot_policy]]\nid = \"daily\"\nsecurity_groups = [\"sg-web\"]\n";

fn list(f: &mut Fixture, group: &str) -> SnapshotList {
    match f.ok(Request::ListSnapshots {
        group: group.into(),
    }) {
        Reply::Snapshots(l) => l,
        other => panic!("{other:?}"),
    }
}

fn add_ssh(f: &mut Fixture) {
    f.ok(Request::AuthorizeRule {
        group: "sg-web".into(),
        direction: Direction::Ingress,
        rule: rule(
            "id = \"ssh\"\npolicy = \"accept\"\nip_protocol = \"tcp\"\nport_range = \"22/22\"\nsource_cidr_ip = \"0.0.0.0/0\"",
        ),
    });
}

fn ingress_ports(f: &Fixture) -> Vec<String> {
    let g = f.store.document().group("sg-web").unwrap();
    (g.ingress.iter())
        .map(|r| r.port_range.clone().unwrap_or_default())
        .collect()
}

#[test]
fn a_policy_in_the_file_snapshots_at_start_and_a_change_schedules_the_rules_before() {
    let mut f = Fixture::with("snapshot_delay_secs = 0", DAILY);
    let l = list(&mut f, "sg-web");
    assert_eq!(l.snapshots.len(), 1, "{l:?}");
    assert_eq!(l.snapshots[0].trigger, "associated");
    assert_eq!(l.snapshots[0].inbound_rules, 2);
    assert_eq!(l.next_due, None);
    add_ssh(&mut f);
    f.ok(Request::RevokeRule {
        group: "sg-web".into(),
        direction: None,
        id: WEB_HTTP.into(),
    });
    assert!(list(&mut f, "sg-web").next_due.is_some());
    f.store.snapshot_tick();
    let l = list(&mut f, "sg-web");
    assert_eq!(l.snapshots.len(), 2, "one snapshot for both changes: {l:?}");
    let newest = &l.snapshots[0];
    assert_eq!(newest.trigger, "changed");
    assert_eq!(newest.inbound_rules, 2, "the rules before the first change");
    // Other groups are not covered.
    assert!(list(&mut f, "sg-db").snapshots.is_empty());
    let e = f.err(Request::ListSnapshots {
        group: "sg-nope".into(),
    });
    assert!(e.contains("no group sg-nope"), "{e}");
}

#[test]
fn diff_and_restore_replace_every_rule_in_one_change_which_is_itself_snapshotted() {
    let mut f = Fixture::with("", DAILY);
    let before = ingress_ports(&f);
    let first = list(&mut f, "sg-web").snapshots[0].id.clone();
    add_ssh(&mut f);
    let Reply::SnapshotDiff(d) = f.ok(Request::DiffSnapshot {
        group: "sg-web".into(),
        snapshot: first.clone(),
    }) else {
        panic!()
    };
    let d: SnapshotDiff = *d;
    assert_eq!(d.inbound.removed.len(), 1);
    assert_eq!(d.inbound.removed[0].id.as_deref(), Some("ssh"));
    assert!(d.inbound.added.is_empty() && d.outbound.removed.is_empty());
    assert_eq!(d.inbound.unchanged, 2);

    let applied = f.applied.len();
    let Reply::Done { message, .. } = f.ok(Request::RestoreSnapshot {
        group: "sg-web".into(),
        snapshot: first.clone(),
    }) else {
        panic!()
    };
    assert!(message.contains("1 removed, 0 added"), "{message}");
    assert_eq!(f.applied.len(), applied + 1, "one apply");
    assert_eq!(ingress_ports(&f), before);
    // Persisted: a restart has the restored rules.
    let reopened =
        Store::open(&f._dir.path().join("state"), &f._dir.path().join("sg.toml")).unwrap();
    assert_eq!(reopened.document(), f.store.document());
    // The restore is a change: the rules it replaced are due (300 s).
    assert!(list(&mut f, "sg-web").next_due.is_some());

    // A restore within that window: the due snapshot is taken first, so
    // the rules this restore replaces (the SSH rule again) are due in a
    // snapshot of their own, not lost to the window.
    add_ssh(&mut f);
    let count = list(&mut f, "sg-web").snapshots.len();
    f.ok(Request::RestoreSnapshot {
        group: "sg-web".into(),
        snapshot: first.clone(),
    });
    let l = list(&mut f, "sg-web");
    assert_eq!(l.snapshots.len(), count + 1, "{l:?}");
    assert_eq!(
        l.snapshots[0].inbound_rules, 3,
        "the rules before the first restore"
    );
    assert!(
        l.next_due.is_some(),
        "the rules the second restore replaced"
    );
}

#[test]
fn a_restore_that_cannot_be_applied_changes_nothing() {
    let mut f = Fixture::with("", DAILY);
    let first = list(&mut f, "sg-web").snapshots[0].id.clone();
    // The snapshot names pl-office and prl-web: gone now.
    f.ok(Request::ModifyRule {
        group: "sg-web".into(),
        direction: None,
        id: WEB_OFFICE.into(),
        rule: rule("port_range = \"443/443\"\nport_range_list_id = \"\"\nsource_cidr_ip = \"203.0.113.0/24\""),
    });
    f.ok(Request::DeletePrefixList {
        id: "pl-office".into(),
    });
    let e = f.err(Request::RestoreSnapshot {
        group: "sg-web".into(),
        snapshot: first.clone(),
    });
    assert!(e.contains("not restored") && e.contains("pl-office"), "{e}");
    // A failing apply: the rules in force are restored, nothing persisted.
    let mut g = Fixture::with("", DAILY);
    let first = list(&mut g, "sg-web").snapshots[0].id.clone();
    add_ssh(&mut g);
    g.fail = true;
    let e = g.err(Request::RestoreSnapshot {
        group: "sg-web".into(),
        snapshot: first,
    });
    assert!(e.contains("the kernel said no"), "{e}");
    let e = g.err(Request::RestoreSnapshot {
        group: "sg-web".into(),
        snapshot: "ssnap-nope".into(),
    });
    assert!(
        e.contains("no snapshot \"ssnap-nope\"") && e.contains("ssnap-"),
        "{e}"
    );
}

#[test]
fn policies_are_edited_like_any_object_and_refused_when_out_of_bounds() {
    let mut f = Fixture::new();
    let policy = |id: &str, days: i64, groups: &[&str]| Request::CreateSnapshotPolicy {
        policy: schema::SnapshotPolicy {
            id: id.into(),
            name: None,
            enabled: None,
            retention_days: Some(days),
            security_groups: groups.iter().map(|g| g.to_string()).collect(),
        },
    };
    let e = f.err(policy("weekly", 31, &["sg-web"]));
    assert!(
        e.contains("snapshot policy weekly: retention_days") && e.contains("1..=30"),
        "{e}"
    );
    let e = f.err(policy("weekly", 7, &["sg-nope"]));
    assert!(e.contains("no group \"sg-nope\""), "{e}");
    let e = f.err(policy("weekly", 7, &["sg-web", "sg-web"]));
    assert!(e.contains("listed twice"), "{e}");
    assert!(list(&mut f, "sg-web").snapshots.is_empty());

    f.ok(policy("weekly", 7, &["sg-web"]));
    let l = list(&mut f, "sg-web");
    assert_eq!(l.snapshots.len(), 1);
    assert_eq!(l.snapshots[0].retention_days, 7);
    let e = f.err(policy("weekly", 7, &[]));
    assert!(e.contains("exists"), "{e}");
    // Associating snapshots the new group at once; twice is refused.
    f.ok(Request::AssociateSnapshotPolicy {
        id: "weekly".into(),
        groups: vec!["sg-db".into()],
    });
    assert_eq!(list(&mut f, "sg-db").snapshots.len(), 1);
    let e = f.err(Request::AssociateSnapshotPolicy {
        id: "weekly".into(),
        groups: vec!["sg-db".into()],
    });
    assert!(e.contains("covers sg-db already"), "{e}");
    // Disabled: changes schedule nothing.
    f.ok(Request::ModifySnapshotPolicy {
        id: "weekly".into(),
        name: None,
        enabled: Some(false),
        retention_days: None,
    });
    add_ssh(&mut f);
    assert!(list(&mut f, "sg-web").next_due.is_none());
    let Reply::SnapshotPolicies(policies) = f.ok(Request::ListSnapshotPolicies) else {
        panic!()
    };
    assert_eq!(policies[0].enabled, Some(false));
    // A deleted group leaves its policies; its snapshots stay.
    f.ok(Request::AssociateSnapshotPolicy {
        id: "weekly".into(),
        groups: vec!["sg-spare".into()],
    });
    let Reply::Done { message, .. } = f.ok(Request::DeleteGroup {
        group: "sg-spare".into(),
    }) else {
        panic!()
    };
    assert!(
        message.contains("took it off snapshot policy weekly"),
        "{message}"
    );
    let e = f.err(Request::DisassociateSnapshotPolicy {
        id: "weekly".into(),
        groups: vec!["sg-spare".into()],
    });
    assert!(e.contains("does not cover group sg-spare"), "{e}");
    let e = f.err(Request::DeleteSnapshotPolicy { id: "nope".into() });
    assert!(e.contains("there are: weekly"), "{e}");
    f.ok(Request::DeleteSnapshotPolicy {
        id: "weekly".into(),
    });
    assert_eq!(list(&mut f, "sg-db").snapshots.len(), 1, "snapshots stay");
}
