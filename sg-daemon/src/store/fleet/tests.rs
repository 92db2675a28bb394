//! A fleet host's desired state without etcd: composition, members
//! from other hosts' records, the cached view.

use super::*;
use crate::config::parse_document;

#[test]
fn other_hosts_instances_are_members_and_bindings_meet_the_shared_groups() {
    let (shared, _) = parse_document(
        Path::new("shared.toml"),
        "[[security_group]]\nid = \"sg-app\"\n[[security_group]]\nid = \"sg-web\"\n  [[security_group.ingress]]\n  policy = \"accept\"\n  ip_protocol = \"tcp\"\n  port_range = \"80/80\"\n  source_group_id = \"sg-app\"\n",
    )
    .unwrap();
    let mut view = SharedView {
        revision: 9,
        groups: (shared.security_group.iter())
            .map(|g| (g.id.clone(), g.clone()))
            .collect(),
        ..SharedView::default()
    };
    let binding = |host: &str, addr: &str| HostRecord {
        host_id: host.into(),
        bindings: vec![PublishedBinding {
            interface: "eth0".into(),
            security_groups: vec!["sg-app".into()],
            addresses: vec![addr.parse().unwrap()],
        }],
    };
    view.hosts
        .insert("hv-1".into(), binding("hv-1", "192.0.2.1"));
    view.hosts
        .insert("hv-2".into(), binding("hv-2", "192.0.2.2"));
    let settings = FleetSettings {
        endpoints: vec!["http://198.51.100.250:2379".into()],
        prefix: "/sg".into(),
        host_id: "hv-2".into(),
        tls: None,
        lease_ttl_secs: 10,
    };
    let (local, _) = parse_document(
        Path::new("host.toml"),
        "[datastore]\nkind = \"etcd\"\nendpoints = [\"http://198.51.100.250:2379\"]\n[[interface]]\nname = \"eth0\"\naddresses = [\"192.0.2.2\"]\nsecurity_groups = [\"sg-web\"]\n",
    )
    .unwrap();
    let (doc, config) = compose(&local, &view, &settings).unwrap();
    assert_eq!(doc.security_group.len(), 2);
    assert_eq!(doc.datastore, None);
    // Its own record is not a member from elsewhere.
    let app = &config.fleet_members["sg-app"];
    assert_eq!(app, &["192.0.2.1".parse::<IpAddr>().unwrap()]);
    // Records name only unicast instances.
    view.hosts.get_mut("hv-1").unwrap().bindings[0]
        .addresses
        .extend(
            [
                "0.0.0.0",
                "127.0.0.1",
                "224.0.0.1",
                "255.255.255.255",
                "::",
                "::ffff:192.0.2.9",
                "fe80::1",
            ]
            .map(|a| a.parse::<IpAddr>().unwrap()),
        );
    let (_, config) = compose(&local, &view, &settings).unwrap();
    assert_eq!(config.fleet_members["sg-app"], app.clone());
    // A group deleted elsewhere leaves the bindings that name it; the
    // rest applies.
    let (two, _) = parse_document(
        Path::new("host.toml"),
        "[datastore]\nkind = \"etcd\"\nendpoints = [\"http://198.51.100.250:2379\"]\n[[interface]]\nname = \"eth0\"\naddresses = [\"192.0.2.2\"]\nsecurity_groups = [\"sg-web\", \"sg-app\"]\n",
    )
    .unwrap();
    view.groups.remove("sg-app");
    view.groups.get_mut("sg-web").unwrap().ingress.clear();
    let (doc, _) = compose(&two, &view, &settings).unwrap();
    assert_eq!(doc.interface[0].security_groups, ["sg-web"]);
    // A binding left with no group is not valid here: the rules in
    // force stay.
    view.groups.remove("sg-web");
    let e = compose(&local, &view, &settings).unwrap_err().to_string();
    assert!(e.contains("sg-web") && e.contains("revision 9"), "{e}");
}

#[test]
fn the_cached_view_is_of_its_prefix_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(CACHE_FILE);
    let view = SharedView {
        revision: 5,
        ..SharedView::default()
    };
    let text = serde_json::to_string(&CacheRef {
        prefix: "/sg",
        view: &view,
    })
    .unwrap();
    std::fs::write(&path, text).unwrap();
    assert_eq!(read_cache(&path, "/sg"), Some(view));
    assert_eq!(read_cache(&path, "/other"), None);
    std::fs::write(&path, "{").unwrap();
    assert_eq!(read_cache(&path, "/sg"), None);
}
