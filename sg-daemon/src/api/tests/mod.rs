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
        Fixture::with("", "")
    }

    /// BASE with `daemon` lines added to `[daemon]` and `objects` after
    /// BASE's.
    fn with(daemon: &str, objects: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sg.toml");
        std::fs::write(
            &file,
            format!(
                "[daemon]\nstate_dir = {:?}\nruntime_dir = {:?}\n{daemon}\n{BASE}\n{objects}",
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

mod operations;
mod reload;
mod snapshots;
