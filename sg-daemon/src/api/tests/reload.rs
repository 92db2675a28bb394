//! Reloads through the API: API changes kept unless discarded, deletion
//! protection held, rule ids stable.

use super::*;

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

/// A reload keeps where the shared objects live: a file turned into a
/// fleet host's (groups gone, `[datastore]` etcd) would otherwise bind
/// its interfaces to groups it no longer has.
#[test]
fn a_reload_refuses_a_file_that_moves_the_shared_objects() {
    let mut f = Fixture::new();
    let file = f.store.config_file().to_owned();
    let text = std::fs::read_to_string(&file).unwrap();
    let (daemon, _) = text.split_once("[[prefix_list]]").unwrap();
    let host = format!(
        "{daemon}\n[datastore]\nkind = \"etcd\"\nendpoints = [\"http://198.51.100.250:2379\"]\n\n\
         [[interface]]\nname = \"sgt-none0\"\naddresses = [\"192.0.2.10\"]\nsecurity_groups = [\"sg-web\"]\n"
    );
    std::fs::write(&file, host).unwrap();
    let applied = f.applied.len();
    let e = f.err(reload(true));
    assert!(
        e.contains("[datastore]") && e.contains("restart sgd"),
        "{e}"
    );
    assert_eq!(f.applied.len(), applied, "nothing applied");
}
