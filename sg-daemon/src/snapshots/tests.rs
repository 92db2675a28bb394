//! The schedule on its own, with the clock given: association, the
//! shared window, retention, persistence and ids.

use std::path::Path;

use super::*;
use crate::config::parse_document;

const DAY: u64 = 86_400;
const T0: u64 = 1_796_000_000;

/// A document with `sg-web` (one rule per `ports` entry), `sg-db`, and
/// the given policies (TOML).
fn state(ports: &[u16], policies: &str) -> (Document, Config) {
    let mut text = String::from("[[security_group]]\nid = \"sg-web\"\n");
    for p in ports {
        text.push_str(&format!(
            "  [[security_group.ingress]]\n  policy = \"accept\"\n  ip_protocol = \"tcp\"\n  port_range = \"{p}/{p}\"\n  source_cidr_ip = \"0.0.0.0/0\"\n"
        ));
    }
    text.push_str("[[security_group]]\nid = \"sg-db\"\n");
    text.push_str(policies);
    let (mut doc, config) = parse_document(Path::new("sg.toml"), &text).unwrap();
    doc.fill_rule_ids(&config);
    (doc, config)
}

const WEB_DAILY: &str =
    "[[snapshot_policy]]\nid = \"daily\"\nretention_days = 2\nsecurity_groups = [\"sg-web\"]\n";

fn ports(s: &Snapshot) -> Vec<String> {
    (s.rules.ingress.iter())
        .map(|r| r.port_range.clone().unwrap())
        .collect()
}

#[test]
fn a_covered_group_is_snapshotted_at_once_and_only_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut snaps = Snapshots::open(dir.path(), 300);
    let (doc, config) = state(&[80], WEB_DAILY);
    let taken = snaps.observe(&config, &doc, T0).unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].trigger, Trigger::Associated);
    assert_eq!(taken[0].retention_days, 2);
    assert_eq!(taken[0].policies, ["daily"]);
    assert_eq!(ports(&taken[0]), ["80/80"]);
    // Seen again (a change elsewhere, a restart): nothing new.
    assert!(snaps.observe(&config, &doc, T0 + 10).unwrap().is_empty());
    let mut reopened = Snapshots::open(dir.path(), 300);
    assert!(reopened.observe(&config, &doc, T0 + 20).unwrap().is_empty());
    assert_eq!(reopened.list("sg-web").unwrap().len(), 1);
    assert!(reopened.list("sg-db").unwrap().is_empty());
}

#[test]
fn changes_within_the_window_share_one_snapshot_of_the_rules_before_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut snaps = Snapshots::open(dir.path(), 300);
    let (doc, config) = state(&[80], WEB_DAILY);
    snaps.observe(&config, &doc, T0).unwrap();
    let (doc2, config2) = state(&[80, 443], WEB_DAILY);
    snaps.observe(&config2, &doc2, T0 + 100).unwrap();
    assert_eq!(snaps.next_due(), Some(T0 + 400));
    let (doc3, config3) = state(&[443], WEB_DAILY);
    snaps.observe(&config3, &doc3, T0 + 200).unwrap();
    assert_eq!(snaps.next_due(), Some(T0 + 400), "the window is not moved");
    assert!(snaps.take_due(T0 + 399).unwrap().is_empty());
    let taken = snaps.take_due(T0 + 400).unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].trigger, Trigger::Changed);
    assert_eq!(
        ports(&taken[0]),
        ["80/80"],
        "the rules before the first change"
    );
    assert_eq!(snaps.next_due(), None);
    // A change after the window opens a new one, from the rules then.
    let (doc4, config4) = state(&[22], WEB_DAILY);
    snaps.observe(&config4, &doc4, T0 + 500).unwrap();
    assert_eq!(snaps.next_due(), Some(T0 + 800));
    let taken = snaps.take_due(T0 + 800).unwrap();
    assert_eq!(ports(&taken[0]), ["443/443"]);
    assert_eq!(snaps.list("sg-web").unwrap().len(), 3);
}

#[test]
fn a_scheduled_snapshot_survives_a_restart_and_so_does_a_change_made_while_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let (doc, config) = state(&[80], WEB_DAILY);
    let (doc2, config2) = state(&[443], WEB_DAILY);
    {
        let mut snaps = Snapshots::open(dir.path(), 300);
        snaps.observe(&config, &doc, T0).unwrap();
        snaps.observe(&config2, &doc2, T0 + 10).unwrap();
    }
    let mut snaps = Snapshots::open(dir.path(), 300);
    assert_eq!(snaps.next_due(), Some(T0 + 310));
    assert_eq!(ports(&snaps.take_due(T0 + 310).unwrap()[0]), ["80/80"]);
    // The file edited while sgd was stopped: seen at the next start.
    let (doc3, config3) = state(&[8080], WEB_DAILY);
    let mut snaps = Snapshots::open(dir.path(), 300);
    snaps.observe(&config3, &doc3, T0 + 1000).unwrap();
    assert_eq!(snaps.next_due(), Some(T0 + 1300));
    assert_eq!(ports(&snaps.take_due(T0 + 1300).unwrap()[0]), ["443/443"]);
}

#[test]
fn disabled_policies_take_nothing_and_enabling_one_snapshots_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut snaps = Snapshots::open(dir.path(), 0);
    let disabled = WEB_DAILY.replace("retention_days", "enabled = false\nretention_days");
    let (doc, config) = state(&[80], &disabled);
    assert!(snaps.observe(&config, &doc, T0).unwrap().is_empty());
    let (doc2, config2) = state(&[443], &disabled);
    snaps.observe(&config2, &doc2, T0 + 1).unwrap();
    assert_eq!(snaps.next_due(), None, "a change to an uncovered group");
    let (doc3, config3) = state(&[443], WEB_DAILY);
    let taken = snaps.observe(&config3, &doc3, T0 + 2).unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(ports(&taken[0]), ["443/443"]);
}

#[test]
fn a_snapshot_keeps_the_longest_retention_of_its_policies_and_then_goes() {
    let dir = tempfile::tempdir().unwrap();
    let mut snaps = Snapshots::open(dir.path(), 0);
    let two = format!(
        "{WEB_DAILY}[[snapshot_policy]]\nid = \"monthly\"\nretention_days = 30\nsecurity_groups = [\"sg-web\", \"sg-db\"]\n"
    );
    let (doc, config) = state(&[80], &two);
    let taken = snaps.observe(&config, &doc, T0).unwrap();
    assert_eq!(taken.len(), 2);
    let web = taken.iter().find(|s| s.group == "sg-web").unwrap();
    assert_eq!(web.retention_days, 30);
    assert_eq!(web.policies, ["daily", "monthly"]);
    assert!(snaps.purge(T0 + 30 * DAY - 1).unwrap().is_empty());
    assert_eq!(snaps.purge(T0 + 30 * DAY).unwrap().len(), 2);
    assert!(snaps.list("sg-web").unwrap().is_empty());
    assert!(!dir.path().join(SNAPSHOT_DIR).join("sg-web").exists());
}

#[test]
fn ids_name_the_time_and_never_collide() {
    let dir = tempfile::tempdir().unwrap();
    let mut snaps = Snapshots::open(dir.path(), 0);
    let (doc, config) = state(&[80], WEB_DAILY);
    let first = snaps.observe(&config, &doc, T0).unwrap().remove(0);
    assert_eq!(first.id, "ssnap-20261130T005320Z");
    let (doc2, config2) = state(&[443], WEB_DAILY);
    snaps.observe(&config2, &doc2, T0).unwrap();
    let second = snaps.take_due(T0).unwrap().remove(0);
    assert_eq!(second.id, format!("{}-2", first.id));
    assert_eq!(
        snaps
            .list("sg-web")
            .unwrap()
            .iter()
            .map(|s| &s.id)
            .collect::<Vec<_>>(),
        [&second.id, &first.id],
        "newest first"
    );
    assert!(
        snaps
            .get("sg-web", "ssnap-nope")
            .unwrap_err()
            .contains(&first.id)
    );
}

#[test]
fn a_snapshot_that_cannot_be_written_is_retried_later_not_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut snaps = Snapshots::open(dir.path(), 0);
    let (doc, config) = state(&[80], WEB_DAILY);
    snaps.observe(&config, &doc, T0).unwrap();
    let (doc2, config2) = state(&[443], WEB_DAILY);
    snaps.observe(&config2, &doc2, T0).unwrap();
    // The group's directory replaced by a file: nothing can be written.
    let group_dir = dir.path().join(SNAPSHOT_DIR).join("sg-web");
    std::fs::remove_dir_all(&group_dir).unwrap();
    std::fs::write(&group_dir, "in the way").unwrap();
    assert!(snaps.take_due(T0 + 1).is_err());
    assert_eq!(snaps.next_due(), Some(T0 + 1 + RETRY_SECS));
    std::fs::remove_file(&group_dir).unwrap();
    assert_eq!(snaps.take_due(T0 + 1 + RETRY_SECS).unwrap().len(), 1);
}

#[test]
fn a_diff_shows_what_a_restore_removes_and_adds() {
    let dir = tempfile::tempdir().unwrap();
    let mut snaps = Snapshots::open(dir.path(), 0);
    let (doc, config) = state(&[80, 443], WEB_DAILY);
    let snapshot = snaps.observe(&config, &doc, T0).unwrap().remove(0);
    let (now, _) = state(&[443, 22], WEB_DAILY);
    let d = diff(&Rules::of(&now, "sg-web"), &snapshot);
    let ports = |rules: &[Rule]| -> Vec<String> {
        rules
            .iter()
            .map(|r| r.port_range.clone().unwrap())
            .collect()
    };
    assert_eq!(ports(&d.inbound.removed), ["22/22"]);
    assert_eq!(ports(&d.inbound.added), ["80/80"]);
    assert_eq!(d.inbound.unchanged, 1);
    assert!(d.outbound.removed.is_empty() && d.outbound.added.is_empty());
    assert!(!d.is_empty());
    assert!(diff(&Rules::of(&doc, "sg-web"), &snapshot).is_empty());
}

#[test]
fn expired_snapshots_are_looked_for_hourly_not_on_every_tick() {
    let dir = tempfile::tempdir().unwrap();
    let mut snaps = Snapshots::open(dir.path(), 0);
    let (doc, config) = state(&[80], WEB_DAILY);
    snaps.observe(&config, &doc, T0).unwrap();
    let first = T0 + 2 * DAY - 10;
    assert!(snaps.purge_now_and_then(first).unwrap().is_empty());
    // Expired (2 days) but looked at less than an hour later: kept.
    assert!(snaps.purge_now_and_then(T0 + 2 * DAY).unwrap().is_empty());
    assert_eq!(
        snaps
            .purge_now_and_then(first + PURGE_EVERY_SECS)
            .unwrap()
            .len(),
        1
    );
}
