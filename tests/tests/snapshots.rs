//! Security-group snapshots through `sgctl`, against a running `sgd` in the
//! server's namespace (SPEC §5, seed 002): a covered group is snapshotted
//! when sgd starts; changes schedule one snapshot of the rules before them;
//! `snapshot diff` says what a restore would do; a restore needs `--yes`
//! off a terminal, puts the rules back for real traffic and schedules a
//! snapshot of what it replaced; snapshots survive a restart; bad input
//! changes nothing; a bad `[[snapshot_policy]]` is named by `sgd --check`.

use std::{
    fs,
    process::Stdio,
    thread,
    time::{Duration, Instant},
};

use sg_daemon::{api::serde_json, snapshots::Snapshot};
use sg_tests::*;

/// The id `sgd` gives [`web`]'s HTTP rule.
const WEB_HTTP: &str = "sg-web/ingress/a9921e34";
/// The id `sgd` gives SSH open to everyone in sg-web.
const WEB_SSH: &str = "sg-web/ingress/bdceab40";

/// Seconds from a rule change to its snapshot, in these tests.
const DELAY_SECS: u64 = 2;

/// How long a scheduled snapshot may take to appear.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTP open to everyone (IPv4).
fn web() -> Group {
    Group::new("sg-web")
        .name("web")
        .rules([accept_in("tcp", "80/80", "0.0.0.0/0")])
}

/// sg-web on the server's interface, under policy `daily` (7 days), with
/// changes snapshotted [`DELAY_SECS`] later.
fn config() -> String {
    format!(
        "snapshot_delay_secs = {DELAY_SECS}\n{}{}",
        groups_on(SERVER_IF, &[web()]),
        snapshot_policy("daily", 7, &["sg-web"])
    )
}

/// `sgctl --output json ARGS`, parsed.
fn json(ctl: &Ctl, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let text = ctl.ok(&all);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("sgctl {args:?}: {e}:\n{text}"))
}

/// `sgctl snapshot list sg-web` as JSON.
fn list(ctl: &Ctl) -> serde_json::Value {
    json(ctl, &["snapshot", "list", "sg-web"])
}

/// The snapshots of `list`, newest first, as (id, trigger, inbound rules).
fn snapshots(list: &serde_json::Value) -> Vec<(String, String, u64)> {
    (list["snapshots"]
        .as_array()
        .unwrap_or_else(|| panic!("{list:#}")))
    .iter()
    .map(|s| {
        (
            s["id"].as_str().unwrap().to_owned(),
            s["trigger"].as_str().unwrap().to_owned(),
            s["inbound_rules"].as_u64().unwrap(),
        )
    })
    .collect()
}

/// Waits up to [`SNAPSHOT_TIMEOUT`] for sg-web to have `n` snapshots and
/// none due; returns the list. Panics with the last list if it does not.
#[track_caller]
fn wait_for_snapshots(ctl: &Ctl, n: usize) -> serde_json::Value {
    let deadline = Instant::now() + SNAPSHOT_TIMEOUT;
    loop {
        let l = list(ctl);
        if snapshots(&l).len() == n && l["next_due"].is_null() {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "no {n} snapshots (and none due) within {SNAPSHOT_TIMEOUT:?}: {l:#}"
        );
        thread::sleep(Duration::from_millis(200));
    }
}

/// The ids of the rules of one side of a `snapshot diff` in JSON
/// (`inbound.removed`, ...).
fn ids(diff: &serde_json::Value, direction: &str, side: &str) -> Vec<String> {
    (diff[direction][side]
        .as_array()
        .unwrap_or_else(|| panic!("{diff:#}")))
    .iter()
    .map(|r| r["id"].as_str().unwrap().to_owned())
    .collect()
}

#[test]
fn snapshot_on_association_and_change_diff_restore_and_restart() {
    let t = Topology::pair("snap").unwrap();
    let (s, c) = (t.server(), t.client());
    let _srv = tcp_servers(s, &[s.v4(80), s.v4(22)]);
    let config = config();
    let mut sgd = Daemon::start(s, &config).unwrap_or_else(|e| panic!("{e:#}"));
    let ctl = sgd.ctl();
    let ssh = |expect| probe("ssh", Tcp(22), c, s.ipv4(), expect);
    let http = |expect| probe("http", Tcp(80), c, s.ipv4(), expect);
    let snapshot_file = |id: &str| -> Snapshot {
        let path = (sgd.dirs().state_dir())
            .join(sg_daemon::snapshots::SNAPSHOT_DIR)
            .join("sg-web")
            .join(format!("{id}.json"));
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}:\n{text}"))
    };

    // Covered at start: one snapshot at once, of the file's rules.
    let table = ctl.ok(&["snapshot", "list", "sg-web"]);
    assert!(table.starts_with("SNAPSHOT "), "{table}");
    assert!(
        table.contains("associated") && table.contains("daily"),
        "{table}"
    );
    let l = list(&ctl);
    let first = snapshots(&l);
    assert_eq!(first.len(), 1, "{l:#}");
    assert_eq!(
        (first[0].1.as_str(), first[0].2),
        ("associated", 1),
        "{l:#}"
    );
    assert_eq!(l["snapshots"][0]["retention_days"], 7, "{l:#}");
    assert!(l["next_due"].is_null(), "nothing changed yet: {l:#}");
    check(&[ssh(DROPPED), http(PASS)]);

    // Two changes within the window: one snapshot due, none taken yet.
    let said = ctl.ok(&open_to_all("sg-web", "22/22"));
    assert!(said.contains(WEB_SSH), "{said}");
    ctl.ok(&open_to_all("sg-web", "443/443"));
    let l = list(&ctl);
    assert_eq!(snapshots(&l).len(), 1, "taken before its time: {l:#}");
    assert!(l["next_due"].is_string(), "no snapshot due: {l:#}");
    let table = ctl.ok(&["snapshot", "list", "sg-web"]);
    assert!(
        table.contains(
            ": a snapshot of the rules as they were before the first change since the last snapshot"
        ),
        "{table}"
    );

    // After the delay: exactly one new snapshot, of the rules before the
    // first change.
    let l = wait_for_snapshots(&ctl, 2);
    let two = snapshots(&l);
    assert_eq!(two[1], first[0], "{l:#}");
    assert_eq!((two[0].1.as_str(), two[0].2), ("changed", 1), "{l:#}");
    let changed = two[0].0.clone();
    let held = snapshot_file(&changed);
    let held: Vec<_> = held.rules.ingress.iter().map(|r| r.id.clone()).collect();
    assert_eq!(held, [Some(WEB_HTTP.to_owned())], "{changed}");
    check(&[ssh(PASS), http(PASS)]);

    // The diff: a restore would remove the two new rules.
    let table = ctl.ok(&["snapshot", "diff", "sg-web", &changed]);
    assert!(
        table.contains(
            "inbound: 3 rule(s) now, 1 after a restore (2 removed, 0 added, 1 unchanged)"
        ),
        "{table}"
    );
    let marked = |mark: &str, id: &str| {
        (table.lines()).any(|l| l.starts_with(mark) && l.split_whitespace().nth(1) == Some(id))
    };
    assert!(marked("-", WEB_SSH), "{table}");
    assert!(marked("=", WEB_HTTP), "{table}");
    let diff = json(&ctl, &["snapshot", "diff", "sg-web", &changed]);
    let removed = ids(&diff, "inbound", "removed");
    assert_eq!(removed.len(), 2, "{diff:#}");
    assert!(removed.contains(&WEB_SSH.to_owned()), "{diff:#}");
    assert!(ids(&diff, "inbound", "added").is_empty(), "{diff:#}");
    assert_eq!(ids(&diff, "inbound", "restored"), [WEB_HTTP], "{diff:#}");
    assert!(ids(&diff, "outbound", "current").is_empty(), "{diff:#}");

    // Without --yes, stdin not a terminal: exit 2, nothing changes.
    let before = ctl.ok(&["export"]);
    let mut cmd = ctl.command(&["snapshot", "restore", "sg-web", &changed]);
    cmd.stdin(Stdio::null());
    let out = Ctl::run_command(cmd);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("--yes"), "{out:?}");
    assert_eq!(ctl.ok(&["export"]), before);

    // An unknown snapshot: refused, naming the newest; nothing changes.
    for verb in ["diff", "restore"] {
        let mut args = vec!["snapshot", verb, "sg-web", "ssnap-20000101T000000Z"];
        if verb == "restore" {
            args.push("--yes");
        }
        let e = ctl.refused(&args);
        assert!(
            e.contains("no snapshot \"ssnap-20000101T000000Z\"")
                && e.contains(&changed)
                && e.contains(&first[0].0),
            "{e}"
        );
    }
    let e = ctl.refused(&["snapshot", "restore", "sg-nope", &changed, "--yes"]);
    assert!(e.contains("sg-nope"), "{e}");
    assert_eq!(ctl.ok(&["export"]), before);
    check(&[ssh(PASS), http(PASS)]);
    assert_eq!(snapshots(&list(&ctl)), two, "bad input took a snapshot");

    // The restore: the rules are back, for real traffic too.
    let said = ctl.ok(&["snapshot", "restore", "sg-web", &changed, "--yes"]);
    assert!(
        said.contains(&format!(
            "restored group sg-web from snapshot {changed} (inbound: 2 removed, 0 added"
        )),
        "{said}"
    );
    check(&[ssh(DROPPED), http(PASS)]);
    let show = json(&ctl, &["group", "show", "sg-web"]);
    let rules = show[0]["group"]["ingress"].as_array().unwrap();
    assert_eq!(rules.len(), 1, "{show:#}");
    assert_eq!(rules[0]["id"], WEB_HTTP, "{show:#}");
    let diff = ctl.ok(&["snapshot", "diff", "sg-web", &changed]);
    assert!(diff.contains("a restore would change nothing"), "{diff}");

    // ... and it schedules a snapshot of what it replaced.
    let l = list(&ctl);
    assert!(
        l["next_due"].is_string(),
        "restore scheduled nothing: {l:#}"
    );
    let l = wait_for_snapshots(&ctl, 3);
    let three = snapshots(&l);
    assert_eq!(three[1..], two[..], "{l:#}");
    assert_eq!((three[0].1.as_str(), three[0].2), ("changed", 3), "{l:#}");

    // Bad policies: refused with the allowed values; nothing changes.
    let before = ctl.ok(&["export"]);
    let policies = ctl.ok(&["snapshot-policy", "list"]);
    let e = ctl.refused(&[
        "snapshot-policy",
        "create",
        "weekly",
        "--retention-days",
        "31",
        "--group",
        "sg-web",
    ]);
    assert!(e.contains("retention_days") && e.contains("1..=30"), "{e}");
    let e = ctl.refused(&["snapshot-policy", "create", "weekly", "--group", "sg-nope"]);
    assert!(
        e.contains("no group \"sg-nope\"") && e.contains("allowed"),
        "{e}"
    );
    let e = ctl.refused(&[
        "snapshot-policy",
        "modify",
        "daily",
        "--retention-days",
        "0",
    ]);
    assert!(e.contains("1..=30"), "{e}");
    assert_eq!(ctl.ok(&["export"]), before);
    assert_eq!(ctl.ok(&["snapshot-policy", "list"]), policies);
    assert_eq!(snapshots(&list(&ctl)), three);

    // A restart keeps them, and takes no new one (nothing changed).
    sgd.restart(s, &config).unwrap();
    let l = list(&ctl);
    assert_eq!(snapshots(&l), three, "{l:#}");
    assert!(l["next_due"].is_null(), "{l:#}");
    check(&[ssh(DROPPED), http(PASS)]);
    let diff = json(&ctl, &["snapshot", "diff", "sg-web", &three[0].0]);
    assert_eq!(ids(&diff, "inbound", "added").len(), 2, "{diff:#}");
}

/// A bad `[[snapshot_policy]]`: `sgd --check` names the file, the line,
/// the field and the allowed values; so does a bad `snapshot_delay_secs`.
#[test]
fn check_names_a_bad_snapshot_policy() {
    let good = format!(
        "{}{}",
        groups_on(SERVER_IF, &[web()]),
        snapshot_policy("daily", 7, &["sg-web"])
    );
    let (ok, out) = sgd_check(&good);
    assert!(ok, "{out}");

    let line_of = |text: &str, needle: &str| {
        text.lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle} in {text}"))
            + 1
    };
    let bad_policy = |retention_days, groups: &[&str]| {
        format!(
            "{}{}",
            groups_on(SERVER_IF, &[web()]),
            snapshot_policy("daily", retention_days, groups)
        )
    };
    let bad = bad_policy(31, &["sg-web"]);
    let (ok, out) = sgd_check(&bad);
    assert!(!ok, "{out}");
    let line = line_of(&bad, "retention_days = 31");
    assert!(
        out.contains(&format!("sg.toml:{line}:"))
            && out.contains("snapshot_policy[0].retention_days")
            && out.contains("1..=30"),
        "{out}"
    );

    let bad = bad_policy(7, &["sg-web", "sg-nope"]);
    let (ok, out) = sgd_check(&bad);
    assert!(!ok, "{out}");
    assert!(
        out.contains("snapshot_policy[0].security_groups[1]") && out.contains("sg-nope"),
        "{out}"
    );

    let bad = format!("[daemon]\nsnapshot_delay_secs = 86401\n{good}");
    let (ok, out) = sgd_check(&bad);
    assert!(!ok, "{out}");
    assert!(
        out.contains("sg.toml:2:") && out.contains("snapshot_delay_secs") && out.contains("86400"),
        "{out}"
    );
}
