//! Requests run against a store on a temporary directory, with an `apply`
//! that records the configs it is given (the socket and the wire format are
//! tested next to their code).

use std::path::Path;

use super::{
    Direction, Probe, Reply, Request, Response, diagnose::diagnose, effective::effective_rules,
    handle_desired,
};
use crate::{
    config::schema,
    daemon::ApplyReport,
    model::Config,
    store::{self, Store},
};

/// The ids BASE's rules without one get (derived from their content).
const WEB_HTTP: &str = "sg-web/ingress/a9921e34";
const WEB_OFFICE: &str = "sg-web/ingress/f53322a8";
const DB_PG: &str = "sg-db/ingress/4b4eb765";

const BASE: &str = r#"
[[prefix_list]]
id = "pl-office"
max_entries = 4
entries = ["203.0.113.0/24"]

[[port_list]]
id = "prl-web"
max_entries = 2
entries = ["80/80", "443/443"]

[[security_group]]
id = "sg-web"
name = "web"
  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range = "80/80"
  source_cidr_ip = "0.0.0.0/0"
  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range_list_id = "prl-web"
  source_prefix_list_id = "pl-office"
  [[security_group.egress]]
  id = "no-smtp-relay"
  policy = "drop"
  priority = 2
  ip_protocol = "tcp"
  port_range = "587/587"
  dest_cidr_ip = "0.0.0.0/0"

[[security_group]]
id = "sg-db"
deletion_protection = true
  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range = "5432/5432"
  source_group_id = "sg-web"

[[security_group]]
id = "sg-spare"

[[interface]]
name = "sgt-none0"
addresses = ["192.0.2.10"]
security_groups = ["sg-web"]
"#;

/// A store on a temp dir, and an `apply` that records what it was
/// given and fails when told to.
struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    applied: Vec<Config>,
    fail: bool,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sg.toml");
        std::fs::write(
            &file,
            format!(
                "[daemon]\nstate_dir = {:?}\nruntime_dir = {:?}\n{BASE}",
                dir.path().join("state"),
                dir.path().join("run")
            ),
        )
        .unwrap();
        let store = Store::open(&dir.path().join("state"), &file).unwrap();
        Fixture {
            _dir: dir,
            store,
            applied: Vec::new(),
            fail: false,
        }
    }

    fn run(&mut self, request: Request) -> Response {
        let applied = &mut self.applied;
        let fail = self.fail;
        handle_desired(&mut self.store, request, &mut |c: &Config| {
            applied.push(c.clone());
            if fail {
                anyhow::bail!("the kernel said no")
            }
            Ok(ApplyReport::default())
        })
    }

    fn ok(&mut self, request: Request) -> Reply {
        match self.run(request.clone()) {
            Response::Ok(r) => r,
            Response::Error(e) => panic!("{request:?} failed: {e}"),
        }
    }

    fn err(&mut self, request: Request) -> String {
        let before = self.store.document().clone();
        let state = std::fs::read(self.store.state_file()).ok();
        match self.run(request.clone()) {
            Response::Error(e) => {
                assert_eq!(
                    self.store.document(),
                    &before,
                    "{request:?} changed the state"
                );
                assert_eq!(std::fs::read(self.store.state_file()).ok(), state);
                e
            }
            Response::Ok(r) => panic!("{request:?} succeeded: {r:?}"),
        }
    }
}

fn rule(text: &str) -> schema::Rule {
    toml::from_str(text).unwrap()
}

#[test]
fn an_authorized_rule_is_applied_persisted_and_survives_reopening() {
    let mut f = Fixture::new();
    let reply = f.ok(Request::AuthorizeRule {
        group: "sg-web".into(),
        direction: Direction::Ingress,
        rule: rule(
            "policy = \"accept\"\nip_protocol = \"tcp\"\nport_range = \"22/22\"\nsource_cidr_ip = \"198.51.100.0/24\"",
        ),
    });
    let Reply::Done { id: Some(id), .. } = reply else {
        panic!("{reply:?}")
    };
    assert!(id.starts_with("sg-web/ingress/"), "{id}");
    assert_eq!(f.applied.len(), 1);
    assert_eq!(f.applied[0].groups[0].ingress[2].id, id);
    assert_eq!(f.store.source(), store::Source::State);
    let reopened = Store::open(
        f.store.state_file().parent().unwrap(),
        f.store.config_file(),
    )
    .unwrap();
    assert_eq!(reopened.config(), f.store.config());

    // Removing the first rule keeps the others' ids.
    f.ok(Request::RevokeRule {
        group: "sg-web".into(),
        direction: None,
        id: WEB_HTTP.into(),
    });
    assert_eq!(ingress_ids(&f), [WEB_OFFICE, &id]);
}

fn ingress_ids(f: &Fixture) -> Vec<String> {
    f.store.config().groups[0]
        .ingress
        .iter()
        .map(|r| r.id.clone())
        .collect()
}

#[test]
fn an_id_revoked_through_the_api_is_not_reused_for_another_rule() {
    let mut f = Fixture::new();
    let mut added = Vec::new();
    for r in [
        "policy = \"accept\"\nip_protocol = \"tcp\"\nport_range = \"22/22\"\nsource_cidr_ip = \"0.0.0.0/0\"",
        "policy = \"accept\"\nip_protocol = \"tcp\"\nport_range = \"3306/3306\"\nsource_cidr_ip = \"10.0.0.0/8\"",
    ] {
        let Reply::Done { id: Some(id), .. } = f.ok(Request::AuthorizeRule {
            group: "sg-web".into(),
            direction: Direction::Ingress,
            rule: rule(r),
        }) else {
            panic!()
        };
        // Each new rule is the last: revoke it before adding the next.
        assert!(!added.contains(&id), "{id} reused: {added:?}");
        f.ok(Request::RevokeRule {
            group: "sg-web".into(),
            direction: None,
            id: id.clone(),
        });
        added.push(id);
    }
}

#[test]
fn reloading_a_file_without_an_earlier_rule_keeps_the_later_ids() {
    let mut f = Fixture::new();
    let before = ingress_ids(&f);
    assert_eq!(before.len(), 2);
    let file = f.store.config_file().to_owned();
    let text = std::fs::read_to_string(&file).unwrap();
    // The first ingress rule of sg-web (port 80) goes.
    let first = "  [[security_group.ingress]]\n  policy = \"accept\"\n  ip_protocol = \"tcp\"\n  port_range = \"80/80\"\n  source_cidr_ip = \"0.0.0.0/0\"\n";
    assert!(text.contains(first));
    std::fs::write(&file, text.replacen(first, "", 1)).unwrap();
    f.ok(reload(false));
    assert_eq!(ingress_ids(&f), [before[1].clone()]);
    assert_eq!(before, [WEB_HTTP, WEB_OFFICE]);
}

#[test]
fn a_bad_request_changes_nothing_and_says_what_is_wrong() {
    let mut f = Fixture::new();
    let e = f.err(Request::AuthorizeRule {
        group: "sg-web".into(),
        direction: Direction::Ingress,
        rule: rule("policy = \"accept\"\npriority = 101\nip_protocol = \"tcp\"\nport_range = \"22/22\"\nsource_cidr_ip = \"0.0.0.0/0\""),
    });
    assert!(
        e.contains("group sg-web ingress rule sg-web/ingress/") && e.contains(": priority"),
        "{e}"
    );
    assert!(e.contains("1..=100"), "{e}");
    assert!(f.applied.is_empty());

    let e = f.err(Request::AuthorizeRule {
        group: "sg-nope".into(),
        direction: Direction::Egress,
        rule: schema::Rule::default(),
    });
    assert_eq!(e, "no group sg-nope");

    // The kernel refuses: nothing persisted, the old state re-applied.
    f.fail = true;
    let e = f.err(Request::ModifyGroup {
        group: "sg-web".into(),
        name: Some("www".into()),
        description: None,
        inner_access_policy: None,
        deletion_protection: None,
        members: None,
    });
    assert!(e.contains("the kernel said no"), "{e}");
    assert_eq!(f.applied.len(), 2);
    assert_eq!(f.applied[1].groups[0].name, "web");
    assert!(!f.store.state_file().exists());
}

#[test]
fn groups_in_use_cannot_be_deleted() {
    let mut f = Fixture::new();
    let e = f.err(Request::DeleteGroup {
        group: "sg-web".into(),
    });
    assert!(e.contains("bound to interface sgt-none0"), "{e}");
    assert!(e.contains(&format!("sg-db ingress rule {DB_PG}")), "{e}");
    let e = f.err(Request::DeleteGroup {
        group: "sg-db".into(),
    });
    assert!(e.contains("deletion protection"), "{e}");
    f.ok(Request::DeleteGroup {
        group: "sg-spare".into(),
    });
    assert!(f.store.document().group("sg-spare").is_none());
}

#[test]
fn modify_rule_replaces_the_remote_side_as_a_whole() {
    let mut f = Fixture::new();
    f.ok(Request::ModifyRule {
        group: "sg-web".into(),
        direction: Some(Direction::Ingress),
        id: WEB_OFFICE.into(),
        rule: rule("source_cidr_ip = \"198.51.100.7\"\nport_range = \"8080/8080\"\npriority = 7"),
    });
    let r = &f.store.document().security_group[0].ingress[1];
    assert_eq!(r.source_prefix_list_id, None);
    assert_eq!(r.port_range_list_id, None);
    assert_eq!(r.source_cidr_ip.as_deref(), Some("198.51.100.7"));
    assert_eq!(f.store.config().groups[0].ingress[1].priority, 7);
    let e = f.err(Request::ModifyRule {
        group: "sg-web".into(),
        direction: Some(Direction::Egress),
        id: WEB_OFFICE.into(),
        rule: schema::Rule::default(),
    });
    assert!(e.contains("no egress rule"), "{e}");
    let e = f.err(Request::ModifyRule {
        group: "sg-web".into(),
        direction: None,
        id: WEB_OFFICE.into(),
        rule: schema::Rule::default(),
    });
    assert!(e.contains("nothing to modify"), "{e}");
}

#[test]
fn interfaces_join_and_leave_and_lists_are_protected() {
    let mut f = Fixture::new();
    f.ok(Request::JoinInterface {
        interface: "sgt-none0".into(),
        group: "sg-spare".into(),
        mode: None,
        addresses: None,
    });
    assert_eq!(
        f.store.config().interfaces[0].security_groups,
        ["sg-web", "sg-spare"]
    );
    let e = f.err(Request::JoinInterface {
        interface: "sgt-none1".into(),
        group: "sg-web".into(),
        mode: Some("hypervisor".into()),
        addresses: None,
    });
    assert!(
        e.contains("interface sgt-none1: addresses: required"),
        "{e}"
    );
    f.ok(Request::LeaveInterface {
        interface: "sgt-none0".into(),
        group: "sg-web".into(),
    });
    // The last group stays: leaving it would unbind the interface.
    let e = f.err(Request::LeaveInterface {
        interface: "sgt-none0".into(),
        group: "sg-spare".into(),
    });
    assert!(e.contains("last group of interface sgt-none0"), "{e}");
    assert!(e.contains("remove its [[interface]]"), "{e}");
    assert_eq!(f.store.config().interfaces[0].security_groups, ["sg-spare"]);

    let e = f.err(Request::DeletePrefixList {
        id: "pl-office".into(),
    });
    assert!(
        e.contains(&format!("sg-web ingress rule {WEB_OFFICE}")),
        "{e}"
    );
    let e = f.err(Request::SetPortList {
        list: schema::List {
            id: "prl-web".into(),
            max_entries: 1,
            entries: vec!["80/80".into(), "443/443".into()],
            ..Default::default()
        },
    });
    assert!(e.contains("port list prl-web: entries"), "{e}");
}

#[test]
fn effective_rules_are_ordered_with_their_groups() {
    let f = Fixture::new();
    let e = effective_rules(f.store.document(), f.store.config(), "sgt-none0").unwrap();
    assert_eq!(e.instance_addresses, ["192.0.2.10"]);
    let ingress: Vec<_> = e
        .ingress
        .rules
        .iter()
        .map(|r| (r.group.as_deref(), r.id.as_str(), r.port_range.as_str()))
        .collect();
    assert_eq!(
        ingress,
        [
            (Some("sg-web"), WEB_HTTP, "80/80"),
            (Some("sg-web"), WEB_OFFICE, "prl-web"),
            (None, "(intra-group)", "-1/-1"),
        ]
    );
    assert_eq!(e.ingress.rules[1].remote, "pl-office");
    assert_eq!(e.ingress.default_policy, "drop");
    assert_eq!(e.egress.rules[0].priority, Some(2));
    assert_eq!(e.egress.default_policy, "accept");
}

#[test]
fn diagnose_names_the_deciding_rule_default_or_builtin() {
    let f = Fixture::new();
    let probe = |dir, proto: &str, src: &str, dst: &str, dport| Probe {
        interface: "sgt-none0".into(),
        direction: dir,
        protocol: proto.into(),
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        src_port: 40000,
        dst_port: dport,
        icmp_type: None,
        icmp_code: None,
    };
    let d = |p: Probe| match diagnose(f.store.config(), &p, None).unwrap() {
        Reply::Diagnosis(d) => d,
        other => panic!("{other:?}"),
    };
    let http = d(probe(
        Direction::Ingress,
        "tcp",
        "198.51.100.1",
        "192.0.2.10",
        80,
    ));
    assert_eq!(
        (http.verdict.as_str(), http.rule.as_deref()),
        ("accept", Some(WEB_HTTP))
    );
    let ssh = d(probe(
        Direction::Ingress,
        "tcp",
        "198.51.100.1",
        "192.0.2.10",
        22,
    ));
    assert_eq!(
        (ssh.verdict.as_str(), ssh.decided_by.as_str()),
        ("drop", "default")
    );
    let relay = d(probe(
        Direction::Egress,
        "tcp",
        "192.0.2.10",
        "198.51.100.1",
        587,
    ));
    assert_eq!(relay.rule.as_deref(), Some("no-smtp-relay"));
    let smtp = d(probe(
        Direction::Egress,
        "6",
        "192.0.2.10",
        "198.51.100.1",
        25,
    ));
    assert_eq!(
        (smtp.verdict.as_str(), smtp.decided_by.as_str()),
        ("drop", "builtin")
    );
    let ping = d(probe(
        Direction::Ingress,
        "icmp",
        "198.51.100.1",
        "192.0.2.10",
        0,
    ));
    assert_eq!(ping.verdict, "drop");
    assert!(
        diagnose(
            f.store.config(),
            &probe(Direction::Ingress, "tcp", "::1", "192.0.2.10", 1),
            None
        )
        .is_err()
    );
}

fn reload(discard_api_changes: bool) -> Request {
    Request::Reload {
        discard_api_changes,
    }
}

/// Issue #9 item 5: a reload does not silently drop what the API made.
#[test]
fn a_reload_refuses_to_discard_api_changes_unless_asked() {
    let mut f = Fixture::new();
    f.ok(Request::CreateGroup {
        group: toml::from_str("id = \"sg-new\"\ndescription = \"d\"").unwrap(),
    });
    f.ok(Request::DeleteGroup {
        group: "sg-spare".into(),
    });
    let Reply::Export { toml } = f.ok(Request::Export) else {
        panic!()
    };
    let parsed = crate::config::parse(Path::new("export"), &toml).unwrap();
    assert_eq!(&parsed, f.store.config());
    let applied = f.applied.len();
    let e = f.err(reload(false));
    assert_eq!(
        f.applied.len(),
        applied,
        "a refused reload applied something"
    );
    for what in [
        "security group sg-new added through the API",
        "security group sg-spare removed through the API",
        "sgctl export >",
        "--discard-api-changes",
    ] {
        assert!(e.contains(what), "{what}: {e}");
    }
    let Reply::Done { message, .. } = f.ok(reload(true)) else {
        panic!()
    };
    assert!(message.contains("discarded"), "{message}");
    assert!(f.store.document().group("sg-new").is_none());
    assert!(f.store.document().group("sg-spare").is_some());
    assert!(!f.store.state_file().exists());
    // Nothing made through the API any more: a plain reload is fine.
    f.ok(reload(false));
}

/// A group under deletion protection survives every reload, even one that
/// discards the API's changes, and the API's delete.
#[test]
fn a_protected_group_survives_a_discarding_reload() {
    let mut f = Fixture::new();
    f.ok(Request::CreateGroup {
        group: toml::from_str("id = \"sg-keep\"\ndeletion_protection = true").unwrap(),
    });
    let e = f.err(Request::DeleteGroup {
        group: "sg-keep".into(),
    });
    assert!(e.contains("deletion protection"), "{e}");
    let e = f.err(reload(true));
    assert!(e.contains("sg-keep"), "{e}");
    assert!(e.contains("deletion protection"), "{e}");
    // The file's own protected group, removed from the file, stays too.
    let file = f.store.config_file().to_owned();
    let text = std::fs::read_to_string(&file).unwrap();
    f.ok(Request::ModifyGroup {
        group: "sg-keep".into(),
        name: None,
        description: None,
        inner_access_policy: None,
        deletion_protection: Some(false),
        members: None,
    });
    f.ok(Request::DeleteGroup {
        group: "sg-keep".into(),
    });
    f.ok(reload(true));
    let db = "[[security_group]]\nid = \"sg-db\"\ndeletion_protection = true\n";
    assert!(text.contains(db));
    let without_db = text.replacen(db, "[[security_group]]\nid = \"sg-db-gone\"\n", 1);
    std::fs::write(&file, without_db).unwrap();
    let e = f.err(reload(true));
    assert!(e.contains("no group sg-db,"), "{e}");
    assert!(f.store.document().group("sg-db").is_some());
}

/// The file's refusals (`config::tests::text_and_addresses_that_could_lie_are_refused`)
/// hold through the API: one validation for both, and nothing changes.
#[test]
fn text_and_addresses_that_could_lie_are_refused_through_the_api() {
    let mut f = Fixture::new();
    let group = |id: &str, description: &str| Request::CreateGroup {
        group: schema::Group {
            id: id.into(),
            description: Some(description.into()),
            ..Default::default()
        },
    };
    let authorize = |text: &str| Request::AuthorizeRule {
        group: "sg-web".into(),
        direction: Direction::Ingress,
        rule: rule(&format!(
            "policy = \"accept\"\nip_protocol = \"tcp\"\nport_range = \"22/22\"\n{text}"
        )),
    };
    let list = |id: &str, entry: &str| Request::SetPrefixList {
        list: schema::List {
            id: id.into(),
            max_entries: 2,
            entries: vec![entry.into()],
            ..Default::default()
        },
    };
    for (request, says) in [
        (
            group("sg-x\nsg-fake", "x"),
            "is not an id; allowed: 1..=128 characters starting with \"sg-\"",
        ),
        (group("x", "x"), "starting with \"sg-\""),
        (
            group("sg-x", "admins\nsg-fake   basic"),
            "description: \"admins\\nsg-fake   basic\" (22 characters) is not a description; allowed: at most 512 characters, no control characters",
        ),
        (
            group("sg-x", &"x".repeat(7 << 20)),
            "(7340032 characters) is not a description",
        ),
        (
            Request::ModifyGroup {
                group: "sg-web".into(),
                name: Some("w".into()),
                description: None,
                inner_access_policy: None,
                deletion_protection: None,
                members: None,
            },
            "allowed: 2..=128 characters",
        ),
        (
            authorize("id = \"../etc\"\nsource_cidr_ip = \"0.0.0.0/0\""),
            "starting with a letter or digit",
        ),
        (
            authorize("description = \"a\\nb\"\nsource_cidr_ip = \"0.0.0.0/0\""),
            "no control characters",
        ),
        (
            authorize("source_cidr_ip = \"192.0.2.5/24\""),
            "host bits set (the network is \"192.0.2.0/24\")",
        ),
        (
            authorize("source_cidr_ip = \" 192.0.2.0/24\""),
            "surrounding spaces",
        ),
        (
            authorize("source_cidr_ip = \"0.0.0.0/0\"\ndest_cidr_ip = \"2001:db8::1\""),
            "2001:db8::1/128 is IPv6 but the remote side 0.0.0.0/0 is IPv4",
        ),
        (
            list("pl-of/fice", "192.0.2.0/24"),
            "starting with \"pl-\", of letters, digits",
        ),
        (
            list("pl-x", "2001:db8::1/32"),
            "host bits set (the network is \"2001:db8::/32\")",
        ),
    ] {
        let e = f.err(request);
        assert!(e.contains(says), "{says:?} not in {e}");
        // The refusal itself cannot fake a line either.
        assert!(!e.contains('\n'), "a raw newline in {e:?}");
    }
    assert!(f.applied.is_empty());
}

/// An address given through the API is stored, and shown, in its one
/// canonical form.
#[test]
fn addresses_are_stored_in_canonical_form() {
    let mut f = Fixture::new();
    f.ok(Request::AuthorizeRule {
        group: "sg-web".into(),
        direction: Direction::Ingress,
        rule: rule("id = \"v6\"\npolicy = \"accept\"\nip_protocol = \"tcp\"\nport_range = \"22/22\"\nsource_cidr_ip = \"2001:0DB8:0000::0001\"\ndest_cidr_ip = \"2001:db8:0:0::/64\""),
    });
    let g = f.store.document().group("sg-web").unwrap();
    let r = g
        .ingress
        .iter()
        .find(|r| r.id.as_deref() == Some("v6"))
        .unwrap();
    assert_eq!(r.source_cidr_ip.as_deref(), Some("2001:db8::1"));
    assert_eq!(r.dest_cidr_ip.as_deref(), Some("2001:db8::/64"));
}

#[test]
fn the_health_check_reports_redundant_rules_and_removes_them_in_one_change() {
    let mut f = Fixture::new();
    let health = |group: &str, remove: bool| Request::HealthCheck {
        group: group.into(),
        remove,
    };
    let Reply::Health(report) = f.ok(health("sg-web", false)) else {
        panic!()
    };
    assert!(report.findings.is_empty(), "{report:?}");
    for (id, text) in [
        (
            "narrow",
            "priority = 5\nip_protocol = \"tcp\"\nport_range = \"80/80\"\nsource_cidr_ip = \"198.51.100.0/24\"",
        ),
        (
            "ssh",
            "priority = 5\nip_protocol = \"tcp\"\nport_range = \"22/22\"\nsource_cidr_ip = \"::/0\"",
        ),
    ] {
        f.ok(Request::AuthorizeRule {
            group: "sg-web".into(),
            direction: Direction::Ingress,
            rule: rule(&format!("id = \"{id}\"\npolicy = \"accept\"\n{text}")),
        });
    }
    let applied = f.applied.len();
    let Reply::Health(report) = f.ok(health("sg-web", false)) else {
        panic!()
    };
    let kinds: Vec<(&str, &str, Option<&str>)> = report
        .findings
        .iter()
        .map(|x| (x.kind.as_str(), x.rule.as_str(), x.by.as_deref()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("redundant", "narrow", Some(WEB_HTTP)),
            ("exposed", "ssh", None)
        ]
    );
    assert!(report.removed.is_empty());
    assert_eq!(f.applied.len(), applied, "a report changes nothing");

    // Bad input changes nothing; neither does a refused apply.
    assert_eq!(f.err(health("sg-nope", true)), "no group sg-nope");
    f.fail = true;
    assert!(f.err(health("sg-web", true)).contains("the kernel said no"));
    f.fail = false;
    assert_eq!(ingress_ids(&f).len(), 4);

    let Reply::Health(report) = f.ok(health("sg-web", true)) else {
        panic!()
    };
    assert_eq!(report.removed, ["narrow"]);
    assert_eq!(
        ingress_ids(&f),
        [WEB_HTTP, WEB_OFFICE, "ssh"],
        "the others keep their ids"
    );
    let Reply::Health(report) = f.ok(health("sg-web", true)) else {
        panic!()
    };
    assert!(report.removed.is_empty());
    assert_eq!(report.findings.len(), 1, "{report:?}");
}

fn clone(source: &str, id: &str, without_rules: bool) -> Request {
    Request::CloneGroup {
        source: source.into(),
        id: id.into(),
        name: None,
        description: None,
        without_rules,
    }
}

#[test]
fn a_cloned_group_has_the_rules_with_fresh_ids_but_not_the_bindings() {
    let mut f = Fixture::new();
    f.ok(Request::ModifyGroup {
        group: "sg-web".into(),
        name: None,
        description: Some("web servers".into()),
        inner_access_policy: Some("drop".into()),
        deletion_protection: Some(true),
        members: Some(vec!["192.0.2.99".into()]),
    });
    let reply = f.ok(clone("sg-web", "sg-web2", false));
    assert!(
        matches!(&reply, Reply::Done { message, .. } if message.contains("cloned group sg-web as sg-web2")),
        "{reply:?}"
    );
    let doc = f.store.document();
    let (src, new) = (doc.group("sg-web").unwrap(), doc.group("sg-web2").unwrap());
    assert_eq!(new.inner_access_policy.as_deref(), Some("drop"));
    assert_eq!(new.members, src.members);
    assert_eq!(new.kind, src.kind);
    assert_eq!(new.description.as_deref(), Some("web servers"));
    assert_eq!(new.name, None);
    assert!(
        !new.deletion_protection,
        "deletion protection is not copied"
    );
    assert_eq!(new.ingress.len(), 2);
    assert_eq!(new.egress.len(), 1);
    for (a, b) in src
        .ingress
        .iter()
        .chain(&src.egress)
        .zip(new.ingress.iter().chain(&new.egress))
    {
        let (ida, idb) = (a.id.as_deref().unwrap(), b.id.as_deref().unwrap());
        assert!(idb.starts_with("sg-web2/"), "{idb}");
        assert_ne!(ida, idb);
        assert_eq!(
            schema::Rule {
                id: None,
                ..a.clone()
            },
            schema::Rule {
                id: None,
                ..b.clone()
            }
        );
    }
    // Bindings stay with the source; the clone is persisted.
    let bound: Vec<_> = doc
        .interface
        .iter()
        .flat_map(|b| &b.security_groups)
        .collect();
    assert_eq!(bound, ["sg-web"]);
    assert!(f.store.state_file().exists());
    let reopened = Store::open(
        f.store.state_file().parent().unwrap(),
        f.store.config_file(),
    )
    .unwrap();
    assert!(reopened.document().group("sg-web2").is_some());

    f.ok(Request::CloneGroup {
        source: "sg-web".into(),
        id: "sg-empty".into(),
        name: Some("empty".into()),
        description: Some("no rules".into()),
        without_rules: true,
    });
    let g = f.store.document().group("sg-empty").unwrap();
    assert!(g.ingress.is_empty() && g.egress.is_empty());
    assert_eq!(g.name.as_deref(), Some("empty"));
    assert_eq!(g.description.as_deref(), Some("no rules"));
    assert_eq!(g.members, ["192.0.2.99"]);
}

#[test]
fn clone_refuses_an_unknown_source_an_existing_id_and_bad_input() {
    let mut f = Fixture::new();
    let e = f.err(clone("sg-nope", "sg-new", false));
    assert_eq!(e, "cannot clone: no group sg-nope");
    let e = f.err(clone("sg-web", "sg-db", false));
    assert!(e.contains("group sg-db exists"), "{e}");
    let e = f.err(clone("sg-web", "", false));
    assert!(e.contains("needs an id"), "{e}");
    // The file's checks: an id with a space is refused, naming the field.
    let e = f.err(clone("sg-web", "sg new", false));
    assert!(e.starts_with("invalid: "), "{e}");
    assert!(f.applied.is_empty());
}

#[test]
fn clone_makes_priorities_over_100_100() {
    // The file's checks refuse priorities over 100, so this is the edit
    // alone, on a document that has one (as an ECS import might).
    let mut doc = Fixture::new().store.document().clone();
    doc.group_mut("sg-web").unwrap().ingress[0].priority = Some(150);
    doc.group_mut("sg-web").unwrap().ingress[1].priority = Some(7);
    super::edit::edit_document(&mut doc, clone("sg-web", "sg-c", false)).unwrap();
    let g = doc.group("sg-c").unwrap();
    assert_eq!(g.ingress[0].priority, Some(100));
    assert_eq!(g.ingress[1].priority, Some(7));
    assert_eq!(g.egress[0].priority, Some(2));
}

#[test]
fn export_group_answers_in_ecs_shape_with_the_region() {
    let mut f = Fixture::new();
    let Reply::EcsGroup(a) = f.ok(Request::ExportGroup {
        group: "sg-web".into(),
    }) else {
        panic!()
    };
    assert_eq!(a.region_id, "local");
    assert_eq!(a.security_group_id, "sg-web");
    assert_eq!(a.security_group_name, "web");
    assert_eq!(a.permissions.permission.len(), 3);
    assert_eq!(a.permissions.permission[0].security_group_rule_id, WEB_HTTP);
    assert_eq!(a.permissions.permission[2].direction, "egress");
    let e = f.err(Request::ExportGroup {
        group: "sg-nope".into(),
    });
    assert_eq!(e, "no group sg-nope");
}

/// The seeds' web-server and SSH examples, IPv6 included, as the ECS
/// console exports them (numbers as numbers, extra keys, real ids).
const CONSOLE_JSON: &str = include_str!("../ecs/fixtures/console_web_ssh.json");

fn import(group: &str, format: &str, content: &str, dry_run: bool) -> Request {
    Request::ImportGroup {
        group: group.into(),
        format: format.into(),
        content: content.into(),
        dry_run,
    }
}

fn import_report(f: &mut Fixture, request: Request) -> crate::ecs::ImportReport {
    match f.ok(request) {
        Reply::Import(r) => r,
        other => panic!("{other:?}"),
    }
}

#[test]
fn import_of_the_console_json_adds_rules_with_fresh_ids_and_skips_duplicates() {
    let mut f = Fixture::new();
    // A dry run changes nothing.
    let r = import_report(&mut f, import("sg-spare", "", CONSOLE_JSON, true));
    assert!(r.dry_run && !r.applied);
    assert_eq!(r.added.len(), 6, "{r:?}");
    assert!(f.applied.is_empty());
    assert!(
        f.store
            .document()
            .group("sg-spare")
            .unwrap()
            .ingress
            .is_empty()
    );
    // The import itself: one change.
    let r = import_report(&mut f, import("sg-spare", "json", CONSOLE_JSON, false));
    assert!(
        r.applied && r.refused.is_empty() && r.skipped.is_empty(),
        "{r:?}"
    );
    assert_eq!(r.added.len(), 6);
    assert_eq!(r.added[2].position, "index 2");
    assert_eq!(f.applied.len(), 1);
    let g = f.store.document().group("sg-spare").unwrap().clone();
    assert_eq!((g.ingress.len(), g.egress.len()), (5, 1));
    // Ids from the file are not sg's: fresh ones.
    assert!(
        g.ingress
            .iter()
            .all(|r| r.id.as_deref().unwrap().starts_with("sg-spare/"))
    );
    assert_eq!(g.ingress[2].source_cidr_ip.as_deref(), Some("::/0"));
    assert_eq!(g.ingress[4].port_range.as_deref(), Some("22/22"));
    assert_eq!(
        g.ingress[4].description.as_deref(),
        Some("SSH from the office")
    );
    // The same file again: every rule a duplicate, nothing changes.
    let r = import_report(&mut f, import("sg-spare", "", CONSOLE_JSON, false));
    assert!(r.added.is_empty() && !r.applied, "{r:?}");
    assert_eq!(r.skipped.len(), 6);
    assert!(
        r.skipped[0]
            .reason
            .starts_with("duplicate of rule sg-spare/"),
        "{r:?}"
    );
    assert_eq!(f.applied.len(), 1);
    // Import, export, import again (JSON and CSV): nothing changes.
    let Reply::EcsGroup(a) = f.ok(Request::ExportGroup {
        group: "sg-spare".into(),
    }) else {
        panic!()
    };
    for (format, text) in [("json", a.to_json()), ("", a.to_csv())] {
        let r = import_report(&mut f, import("sg-spare", format, &text, false));
        assert!(r.added.is_empty() && r.refused.is_empty(), "{r:?}");
        assert_eq!(r.skipped.len(), 6);
    }
    assert_eq!(f.applied.len(), 1);
    assert_eq!(f.store.document().group("sg-spare").unwrap(), &g);
}

#[test]
fn import_skips_priorities_over_100_and_refuses_invalid_files_whole() {
    let mut f = Fixture::new();
    let header = crate::ecs::COLUMNS.join(",");
    let row = |dir: &str, proto: &str, ports: &str, cidr: &str, prio: &str| {
        format!("{dir},{proto},{ports},{cidr},,,,,,,,,,accept,{prio},,sgr-x,\n")
    };
    // Bare JSON array, letter case of values ignored, priority over 100 skipped.
    let bare = r#"[{"Direction":"INGRESS","IpProtocol":"tcp","PortRange":"8080/8080",
        "SourceCidrIp":"10.0.0.0/8","Policy":"ACCEPT","Priority":"150"},
        {"Direction":"Ingress","IpProtocol":"udp","PortRange":"53/53",
        "SourceCidrIp":"10.0.0.0/8","Policy":"accept","Priority":"5"}]"#;
    let r = import_report(&mut f, import("sg-spare", "", bare, false));
    assert_eq!(r.added.len(), 1, "{r:?}");
    assert_eq!(r.skipped.len(), 1);
    assert_eq!(r.skipped[0].position, "index 0");
    assert!(r.skipped[0].reason.contains("over 100"), "{r:?}");
    assert_eq!(f.applied.len(), 1);
    // A CSV with an invalid port range in row 3 (the header is row 1) and a
    // bad direction in row 4: refused whole, named by row and field.
    let csv = format!(
        "{header}\n{}{}{}",
        row("ingress", "TCP", "22/22", "198.51.100.0/24", "1"),
        row("ingress", "TCP", "99999/1", "198.51.100.0/24", "1"),
        row("sideways", "TCP", "23/23", "198.51.100.0/24", "1"),
    );
    let r = import_report(&mut f, import("sg-spare", "csv", &csv, false));
    assert!(!r.applied && r.added.is_empty(), "{r:?}");
    assert_eq!(r.refused.len(), 2, "{r:?}");
    assert_eq!(r.refused[0].position, "row 3");
    assert_eq!(r.refused[0].field, "PortRange");
    assert_eq!(r.refused[1].position, "row 4");
    assert_eq!(r.refused[1].field, "Direction");
    assert_eq!(f.applied.len(), 1);
    assert_eq!(
        f.store.document().group("sg-spare").unwrap().ingress.len(),
        1
    );
    // More than 200 rules: the whole file refused.
    let many: String = (0..201)
        .map(|i| {
            row(
                "ingress",
                "TCP",
                &format!("{}/{}", 1000 + i, 1000 + i),
                "10.1.0.0/16",
                "1",
            )
        })
        .collect();
    let e = f.err(import(
        "sg-spare",
        "csv",
        &format!("{header}\n{many}"),
        false,
    ));
    assert!(e.contains("201 rules") && e.contains("200"), "{e}");
    // 200 are fine.
    let many: String = (0..200)
        .map(|i| {
            row(
                "ingress",
                "TCP",
                &format!("{}/{}", 1000 + i, 1000 + i),
                "10.1.0.0/16",
                "1",
            )
        })
        .collect();
    let r = import_report(
        &mut f,
        import("sg-spare", "csv", &format!("{header}\n{many}"), true),
    );
    assert_eq!(r.added.len(), 200, "{r:?}");
    // An unknown group, and a file that is neither format.
    let e = f.err(import("sg-nope", "", CONSOLE_JSON, false));
    assert_eq!(e, "cannot import: no group sg-nope");
    let e = f.err(import("sg-spare", "json", "{\"Permissions\": 3}", false));
    assert!(e.starts_with("cannot import: not an ECS JSON file"), "{e}");
    assert_eq!(f.applied.len(), 1);
}

#[test]
fn import_skips_duplicates_within_the_file_and_names_json_indexes_and_ipv6_columns() {
    let mut f = Fixture::new();
    let json = r#"[
        {"Direction":"ingress","IpProtocol":"TCP","PortRange":"22/22","SourceCidrIp":"198.51.100.0/24","Policy":"Accept","Priority":1,"Description":"ssh"},
        {"Direction":"ingress","IpProtocol":"tcp","PortRange":"22/22","SourceCidrIp":"198.51.100.0/24","Policy":"accept","Description":"again"}
    ]"#;
    let r = import_report(&mut f, import("sg-spare", "", json, true));
    assert_eq!((r.added.len(), r.skipped.len()), (1, 1), "{r:?}");
    assert_eq!(r.skipped[0].position, "index 1");
    assert_eq!(
        r.skipped[0].reason,
        format!("duplicate of rule {}", r.added[0].id)
    );
    // An existing rule of sg-web (its description differs): a duplicate.
    let web = r#"[{"Direction":"ingress","IpProtocol":"TCP","PortRange":"80/80","SourceCidrIp":"0.0.0.0/0","Policy":"Accept","Priority":"1","Description":"web"}]"#;
    let r = import_report(&mut f, import("sg-web", "", web, false));
    assert_eq!(
        r.skipped[0].reason,
        format!("duplicate of rule {WEB_HTTP}"),
        "{r:?}"
    );
    assert!(f.applied.is_empty());
    // An invalid IPv6 source at index 1 and a bad protocol at index 2.
    let bad = r#"[
        {"Direction":"ingress","IpProtocol":"TCP","PortRange":"22/22","SourceCidrIp":"198.51.100.0/24","Policy":"Accept"},
        {"Direction":"ingress","IpProtocol":"TCP","PortRange":"22/22","Ipv6SourceCidrIp":"2001:db8::/200","Policy":"Accept"},
        {"Direction":"ingress","IpProtocol":"SCTP-ish","PortRange":"22/22","SourceCidrIp":"10.0.0.0/8","Policy":"Accept"}
    ]"#;
    let r = import_report(&mut f, import("sg-spare", "", bad, false));
    assert!(r.added.is_empty() && !r.applied, "{r:?}");
    let at: Vec<(&str, &str)> = r
        .refused
        .iter()
        .map(|r| (r.position.as_str(), r.field.as_str()))
        .collect();
    // (The file's checks also find the port range then not valid.)
    assert_eq!(
        at[..2],
        [("index 1", "Ipv6SourceCidrIp"), ("index 2", "IpProtocol")],
        "{r:?}"
    );
    assert!(f.applied.is_empty());
}
