//! The seeds' management operations through the API (SPEC §5): the
//! health check, clone, export and import, on the fixture of `mod.rs`.

use super::*;

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
    crate::api::edit::edit_document(&mut doc, clone("sg-web", "sg-c", false)).unwrap();
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
const CONSOLE_JSON: &str = include_str!("../../ecs/fixtures/console_web_ssh.json");

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
    // `n` distinct rules, as CSV rows.
    let rows = |n: usize| -> String {
        (0..n)
            .map(|i| {
                let port = format!("{}/{}", 1000 + i, 1000 + i);
                row("ingress", "TCP", &port, "10.1.0.0/16", "1")
            })
            .collect()
    };
    // More than 200 rules: the whole file refused.
    let e = f.err(import(
        "sg-spare",
        "csv",
        &format!("{header}\n{}", rows(201)),
        false,
    ));
    assert!(e.contains("201 rules") && e.contains("200"), "{e}");
    // 200 are fine.
    let r = import_report(
        &mut f,
        import("sg-spare", "csv", &format!("{header}\n{}", rows(200)), true),
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
    // An existing rule of sg-web (its description differs, its protocol
    // given by name or by number): a duplicate.
    for protocol in ["TCP", "6"] {
        let web = format!(
            r#"[{{"Direction":"ingress","IpProtocol":"{protocol}","PortRange":"80/80","SourceCidrIp":"0.0.0.0/0","Policy":"Accept","Priority":"1","Description":"web"}}]"#
        );
        let r = import_report(&mut f, import("sg-web", "", &web, false));
        assert_eq!(
            r.skipped.first().map(|s| s.reason.clone()),
            Some(format!("duplicate of rule {WEB_HTTP}")),
            "{protocol}: {r:?}"
        );
    }
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

#[test]
fn a_single_host_says_its_datastore_is_the_file_and_has_nothing_to_push() {
    let mut f = Fixture::new();
    let Reply::Datastore(info) = f.ok(Request::DatastoreStatus) else {
        panic!()
    };
    assert_eq!(info.kind, "file");
    assert!(info.connection.is_none() && info.hosts.is_empty());
    let e = f.err(Request::DatastorePush {
        content: "[[security_group]]\nid = \"sg-x\"\n".into(),
    });
    assert!(e.contains("[datastore] kind = \"file\""), "{e}");
    // A bad file is refused with its position before anything else.
    let e = f.err(Request::DatastorePush {
        content: "[[security_group]]\nid = \"bad\"\n".into(),
    });
    assert!(e.contains("the pushed file:2"), "{e}");
}
