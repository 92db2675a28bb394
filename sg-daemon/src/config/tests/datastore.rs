//! `[datastore]` (SPEC §8): the file default, an etcd host's file (host
//! settings and bindings only), and every field's checks.

use super::*;

const HOST: &str = r#"
[daemon]
state_dir = "/var/lib/sg"

[datastore]
kind = "etcd"
endpoints = ["http://198.51.100.250:2379", "http://[2001:db8::250]:2379"]
prefix = "/fleet/a/"
host_id = "hv-07"

[[interface]]
name = "eth0"
security_groups = ["sg-web", "sg-shared"]
"#;

#[test]
fn an_etcd_host_file_binds_groups_it_does_not_hold() {
    assert_eq!(parse(Path::new("sg.toml"), GOOD).unwrap().datastore, None);
    let config = parse(Path::new("sg.toml"), HOST).unwrap();
    let fleet = config.datastore.unwrap();
    assert_eq!(fleet.prefix, "/fleet/a", "a trailing / is ignored");
    assert_eq!(fleet.host_id, "hv-07");
    assert_eq!(fleet.lease_ttl_secs, 10);
    assert_eq!(fleet.tls, None);
    assert_eq!(
        config.interfaces[0].security_groups,
        ["sg-web", "sg-shared"]
    );
    let default_host = HOST.replace("host_id = \"hv-07\"\n", "");
    let fleet = parse(Path::new("sg.toml"), &default_host)
        .unwrap()
        .datastore
        .unwrap();
    assert!(!fleet.host_id.is_empty(), "the host name");
}

#[test]
fn shared_objects_in_an_etcd_host_file_are_refused_at_their_lines() {
    let text = format!(
        "{HOST}\n[[security_group]]\nid = \"sg-web\"\n\n[[prefix_list]]\nid = \"pl-x\"\nmax_entries = 1\n"
    );
    let errs = errors(&text);
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["security_group[0]", "prefix_list[0]"], "{errs:#?}");
    assert!(
        errs[0].message.contains("sgctl datastore push"),
        "{}",
        errs[0].message
    );
    let line = text
        .lines()
        .position(|l| l == "[[security_group]]")
        .unwrap()
        + 1;
    assert_eq!(errs[0].line, line);
}

#[test]
fn every_datastore_field_is_checked_with_the_allowed_values() {
    for (from, to, field, allowed) in [
        (
            "kind = \"etcd\"",
            "kind = \"consul\"",
            "datastore.kind",
            "\"file\" (default), \"etcd\"",
        ),
        (
            "\"http://198.51.100.250:2379\", ",
            "\"198.51.100.250:2379\", ",
            "datastore.endpoints[0]",
            "http://HOST:PORT",
        ),
        (
            "prefix = \"/fleet/a/\"",
            "prefix = \"fleet\"",
            "datastore.prefix",
            "(default \"/sg\")",
        ),
        (
            "host_id = \"hv-07\"",
            "host_id = \"hv 07\"",
            "datastore.host_id",
            "letters, digits",
        ),
        (
            "host_id = \"hv-07\"",
            "lease_ttl_secs = 1",
            "datastore.lease_ttl_secs",
            "2..=300 seconds",
        ),
        (
            "host_id = \"hv-07\"",
            "ca_file = \"ca.pem\"",
            "datastore.ca_file",
            "absolute",
        ),
        (
            "host_id = \"hv-07\"",
            "cert_file = \"/etc/sg/c.pem\"",
            "datastore.cert_file",
            "go together",
        ),
        (
            "host_id = \"hv-07\"",
            "cert_file = \"/c.pem\"\nkey_file = \"/k.pem\"",
            "datastore.ca_file",
            "required with cert_file",
        ),
        (
            "endpoints = [\"http://198.51.100.250:2379\", \"http://[2001:db8::250]:2379\"]",
            "",
            "datastore.endpoints",
            "required",
        ),
    ] {
        assert!(HOST.contains(from), "{from}");
        let errs = errors(&HOST.replace(from, to));
        let e = errs
            .iter()
            .find(|e| e.field == field)
            .unwrap_or_else(|| panic!("{to}: {errs:#?}"));
        assert!(e.message.contains(allowed), "{to}: {}", e.message);
    }
    // The etcd fields need kind = "etcd".
    let errs = errors(&HOST.replace("kind = \"etcd\"", "kind = \"file\""));
    assert!(
        errs.iter()
            .any(|e| e.field == "datastore.endpoints"
                && e.message.contains("only with kind = \"etcd\"")),
        "{errs:#?}"
    );
    // TLS with a client identity.
    let errs = errors(&HOST.replace("http://[", "https://["));
    assert!(errs[0].message.contains("needs TLS"), "{errs:#?}");
    let tls = HOST.replace("http://", "https://").replace(
        "host_id = \"hv-07\"",
        "ca_file = \"/etc/sg/ca.pem\"\ncert_file = \"/etc/sg/hv.pem\"\nkey_file = \"/etc/sg/hv.key\"",
    );
    let fleet = parse(Path::new("sg.toml"), &tls)
        .unwrap()
        .datastore
        .unwrap();
    let t = fleet.tls.unwrap();
    assert_eq!(t.ca_file, Path::new("/etc/sg/ca.pem"));
    assert!(t.identity.is_some());
}
