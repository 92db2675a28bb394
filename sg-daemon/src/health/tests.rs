//! The geometry of the health check, and a property test against the
//! classifier's own matching (`TableRule::matches`).

use std::{net::IpAddr, path::Path};

use ipnet::IpNet;
use proptest::prelude::*;

use super::*;
use crate::{
    compile::{Fields, Origin, TableRule},
    model::{Addresses, Config, SecurityGroup},
};

fn config(rules: &str) -> Config {
    let text = format!(
        "[[prefix_list]]\nid = \"pl-a\"\nmax_entries = 5\nentries = [\"10.0.0.0/25\", \"10.0.0.128/25\"]\n\
         [[security_group]]\nid = \"sg-o\"\nmembers = [\"10.9.0.1\", \"10.9.0.2\"]\n\
         [[security_group]]\nid = \"sg-a\"\n{rules}"
    );
    crate::config::parse(Path::new("t.toml"), &text).unwrap()
}

fn findings(rules: &str) -> Vec<(String, String, Option<String>)> {
    check(&config(rules), "sg-a")
        .unwrap()
        .into_iter()
        .map(|f| (f.kind, f.rule, f.by))
        .collect()
}

fn rule(id: &str, fields: &str) -> String {
    let policy = if fields.contains("policy") {
        ""
    } else {
        "policy = \"accept\"\n"
    };
    format!("[[security_group.ingress]]\nid = \"{id}\"\n{policy}{fields}\n")
}

fn red(a: &str, b: &str) -> (String, String, Option<String>) {
    ("redundant".into(), a.into(), Some(b.into()))
}

#[test]
fn port_ranges_inside_a_wider_one_are_redundant() {
    let rules = rule(
        "wide",
        "ip_protocol = \"tcp\"\nport_range = \"1/1000\"\nsource_cidr_ip = \"10.0.0.0/8\"",
    ) + &rule(
        "narrow",
        "priority = 5\nip_protocol = \"tcp\"\nport_range = \"80/443\"\nsource_cidr_ip = \"10.1.0.0/16\"",
    ) + &rule(
        "udp",
        "priority = 5\nip_protocol = \"udp\"\nport_range = \"80/443\"\nsource_cidr_ip = \"10.1.0.0/16\"",
    ) + &rule(
        "edge",
        "priority = 5\nip_protocol = \"tcp\"\nport_range = \"1000/1001\"\nsource_cidr_ip = \"10.1.0.0/16\"",
    );
    assert_eq!(findings(&rules), [red("narrow", "wide")]);
}

#[test]
fn a_stronger_rule_is_not_redundant_by_a_weaker_one() {
    let rules = rule(
        "weak",
        "priority = 10\nip_protocol = \"tcp\"\nport_range = \"1/1000\"\nsource_cidr_ip = \"10.0.0.0/8\"",
    ) + &rule(
        "strong",
        "priority = 1\nip_protocol = \"tcp\"\nport_range = \"80/80\"\nsource_cidr_ip = \"10.1.0.0/16\"",
    );
    assert_eq!(findings(&rules), []);
}

#[test]
fn identical_rules_report_only_the_later_one() {
    let r = "priority = 3\nip_protocol = \"tcp\"\nport_range = \"80/80\"\nsource_cidr_ip = \"10.0.0.0/8\"";
    let rules = rule("first", r) + &rule("second", r) + &rule("third", r);
    assert_eq!(
        findings(&rules),
        [red("second", "first"), red("third", "first")]
    );
}

#[test]
fn a_prefix_list_is_its_entries_and_cidrs_cover_it_together() {
    let rules = rule(
        "list",
        "ip_protocol = \"all\"\nsource_prefix_list_id = \"pl-a\"",
    ) + &rule(
        "half",
        "priority = 2\nip_protocol = \"icmp\"\nsource_cidr_ip = \"10.0.0.0/24\"",
    ) + &rule(
        "outside",
        "priority = 2\nip_protocol = \"icmp\"\nsource_cidr_ip = \"10.0.1.0/24\"",
    );
    assert_eq!(findings(&rules), [red("half", "list")]);
    // Two halves, one in a list, cover the whole /24 only together: no
    // single rule does.
    let rules = rule(
        "low",
        "ip_protocol = \"tcp\"\nport_range = \"1/65535\"\nsource_cidr_ip = \"10.0.0.0/25\"",
    ) + &rule(
        "whole",
        "priority = 2\nip_protocol = \"tcp\"\nport_range = \"22/22\"\nsource_cidr_ip = \"10.0.0.0/24\"",
    );
    assert_eq!(findings(&rules), []);
}

#[test]
fn a_group_reference_is_covered_by_itself_or_by_all_its_members() {
    let rules = rule(
        "ref",
        "ip_protocol = \"tcp\"\nport_range = \"1/65535\"\nsource_group_id = \"sg-o\"",
    ) + &rule(
        "ref2",
        "priority = 2\nip_protocol = \"tcp\"\nport_range = \"22/22\"\nsource_group_id = \"sg-o\"",
    ) + &rule(
        "cidr",
        "priority = 3\nip_protocol = \"tcp\"\nport_range = \"22/22\"\nsource_cidr_ip = \"10.9.0.1/32\"",
    );
    // A reference covers no CIDR (its members change).
    assert_eq!(findings(&rules), [red("ref2", "ref")]);
    let rules = rule(
        "net",
        "ip_protocol = \"tcp\"\nport_range = \"22/22\"\nsource_cidr_ip = \"10.9.0.0/30\"",
    ) + &rule(
        "ref",
        "priority = 2\nip_protocol = \"tcp\"\nport_range = \"22/22\"\nsource_group_id = \"sg-o\"",
    ) + &rule(
        "part",
        "priority = 2\nip_protocol = \"tcp\"\nport_range = \"22/22\"\nsource_cidr_ip = \"10.9.0.1/32\"",
    );
    assert_eq!(findings(&rules), [red("ref", "net"), red("part", "net")]);
}

#[test]
fn five_tuple_fields_narrow_what_a_rule_covers() {
    let rules = rule(
        "local",
        "ip_protocol = \"tcp\"\nport_range = \"22/22\"\nsource_cidr_ip = \"10.0.0.0/8\"\ndest_cidr_ip = \"192.0.2.0/24\"",
    ) + &rule(
        "anylocal",
        "priority = 2\nip_protocol = \"tcp\"\nport_range = \"22/22\"\nsource_cidr_ip = \"10.0.0.0/8\"",
    ) + &rule(
        "sport",
        "priority = 2\nip_protocol = \"tcp\"\nport_range = \"22/22\"\nsource_port_range = \"1024/2048\"\nsource_cidr_ip = \"10.0.0.0/8\"\ndest_cidr_ip = \"192.0.2.1/32\"",
    );
    // `local` is narrower than "any local": it does not cover `anylocal`.
    assert_eq!(findings(&rules), [red("sport", "local")]);
}

#[test]
fn a_stronger_opposite_rule_shadows_and_a_drop_wins_a_tie() {
    let rules = rule(
        "drop",
        "policy = \"drop\"\npriority = 5\nip_protocol = \"tcp\"\nport_range = \"1/65535\"\nsource_cidr_ip = \"0.0.0.0/0\"",
    ) + &rule(
        "tie",
        "priority = 5\nip_protocol = \"tcp\"\nport_range = \"80/80\"\nsource_cidr_ip = \"10.0.0.0/8\"",
    ) + &rule(
        "weaker",
        "priority = 9\nip_protocol = \"tcp\"\nport_range = \"80/80\"\nsource_cidr_ip = \"10.0.0.0/8\"",
    ) + &rule(
        "stronger",
        "priority = 4\nip_protocol = \"tcp\"\nport_range = \"80/80\"\nsource_cidr_ip = \"10.0.0.0/8\"",
    );
    let f = findings(&rules);
    let shadowed = |a: &str| ("shadowed".to_owned(), a.to_owned(), Some("drop".to_owned()));
    assert!(
        f.contains(&shadowed("tie")) && f.contains(&shadowed("weaker")),
        "{f:?}"
    );
    assert!(
        !f.iter().any(|x| x.1 == "stronger" && x.0 == "shadowed"),
        "{f:?}"
    );
    // At equal priority an accept does not shadow a drop.
    let rules = rule(
        "accept",
        "priority = 5\nip_protocol = \"all\"\nsource_cidr_ip = \"10.0.0.0/8\"",
    ) + &rule(
        "drop",
        "policy = \"drop\"\npriority = 5\nip_protocol = \"tcp\"\nport_range = \"80/80\"\nsource_cidr_ip = \"10.0.0.0/8\"",
    );
    assert_eq!(findings(&rules), []);
}

#[test]
fn sensitive_ports_open_to_the_world_are_reported() {
    let rules = rule(
        "ssh",
        "ip_protocol = \"tcp\"\nport_range = \"22/22\"\nsource_cidr_ip = \"0.0.0.0/0\"",
    ) + &rule(
        "web",
        "ip_protocol = \"tcp\"\nport_range = \"80/80\"\nsource_cidr_ip = \"::/0\"",
    ) + &rule(
        "db",
        "ip_protocol = \"tcp\"\nport_range = \"3000/6000\"\nsource_cidr_ip = \"::/0\"",
    ) + &rule(
        "office",
        "ip_protocol = \"tcp\"\nport_range = \"3389/3389\"\nsource_cidr_ip = \"198.51.100.0/24\"",
    );
    let f = check(&config(&rules), "sg-a").unwrap();
    let exposed: Vec<(&str, &str)> = f
        .iter()
        .filter(|f| f.kind == "exposed")
        .map(|f| (f.rule.as_str(), f.why.as_str()))
        .collect();
    assert_eq!(exposed.len(), 2, "{exposed:?}");
    assert!(exposed[0].0 == "ssh" && exposed[0].1.contains("22 (SSH)"));
    assert!(exposed[1].0 == "db" && exposed[1].1.contains("3306 (MySQL), 5432 (PostgreSQL)"));
    assert!(
        check(&config(""), "sg-x")
            .unwrap_err()
            .contains("no group sg-x")
    );
}

// The property: whenever A is reported covered by B, every packet of a
// grid around the rules' edges that A matches, B matches.

fn arb_rule(id: usize) -> impl Strategy<Value = Rule> {
    let nets = prop::sample::select(vec![
        "10.0.0.0/8",
        "10.0.0.0/24",
        "10.0.0.0/25",
        "10.0.0.128/25",
        "10.0.1.0/24",
        "0.0.0.0/0",
        "2001:db8::/32",
        "2001:db8::/64",
        "::/0",
        "10.9.0.1/32",
    ]);
    let proto = prop::sample::select(vec![
        Protocol::All,
        Protocol::Number(6),
        Protocol::Number(17),
        Protocol::Number(1),
    ]);
    let range = (0u16..6, 0u16..6).prop_map(|(a, b)| {
        let ports = [0u16, 22, 80, 443, 1024, 65535];
        let (a, b) = (
            ports[a as usize].min(ports[b as usize]),
            ports[a as usize].max(ports[b as usize]),
        );
        PortRange {
            start: a.max(1),
            end: b.max(1),
        }
    });
    (
        proto,
        prop::collection::vec(range.clone(), 1..3),
        prop::option::of(range),
        prop::collection::vec(nets.clone(), 1..3),
        any::<bool>(),
        prop::option::of(nets),
        any::<bool>(),
        1u8..4,
    )
        .prop_map(
            move |(protocol, ports, sport, remote, group, local, accept, priority)| {
                let has = protocol.has_ports();
                Rule {
                    id: format!("r{id}"),
                    policy: if accept { Policy::Accept } else { Policy::Drop },
                    priority,
                    protocol,
                    ports: if has { ports } else { vec![PortRange::ANY] },
                    source_ports: if has {
                        sport.unwrap_or(PortRange::ANY)
                    } else {
                        PortRange::ANY
                    },
                    peer: if group {
                        Peer::Group("sg-o".into())
                    } else {
                        Peer::Cidrs(remote.iter().map(|n| n.parse().unwrap()).collect())
                    },
                    local: local.map(|n| n.parse().unwrap()),
                    description: String::new(),
                }
            },
        )
}

fn table_rule(r: &Rule, addresses: &Addresses) -> TableRule {
    TableRule {
        origin: Origin::IntraGroup,
        accept: r.policy == Policy::Accept,
        protocol: r.protocol,
        ports: r.ports.clone(),
        source_ports: r.source_ports,
        remote: match &r.peer {
            Peer::Cidrs(n) => n.clone(),
            Peer::Group(g) => addresses.members(g).to_vec(),
        },
        local: r.local,
    }
}

proptest! {
    #[test]
    fn a_reported_cover_matches_every_packet_of_the_covered_rule(a in arb_rule(0), b in arb_rule(1)) {
        let mut config = config("");
        config.groups.push(SecurityGroup {
            id: "sg-p".into(),
            name: "sg-p".into(),
            description: String::new(),
            kind: crate::model::GroupType::Basic,
            inner_access_accept: true,
            members: vec![],
            ingress: vec![b.clone(), a.clone()],
            egress: vec![],
            deletion_protection: false,
        });
        let addresses = Addresses::resolve(&config, |_| vec![]);
        let (ta, tb) = (table_rule(&a, &addresses), table_rule(&b, &addresses));
        let reported = check(&config, "sg-p").unwrap().iter().any(|f| f.rule == "r0" && f.by.as_deref() == Some("r1"));
        if reported {
            prop_assert!(covered(&config, &b, &a));
        }
        if covered(&config, &b, &a) {
            let addrs: Vec<IpAddr> = [
                "10.0.0.0", "10.0.0.127", "10.0.0.128", "10.0.0.255", "10.0.1.0", "10.9.0.1",
                "10.9.0.2", "10.255.255.255", "11.0.0.0", "2001:db8::", "2001:db8::1:0:0:0:1",
                "2001:db9::",
            ]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
            for proto in [1u8, 6, 17, 47] {
                let ports: &[u16] = if sg_common::proto::has_ports(proto) {
                    &[0, 1, 21, 22, 23, 79, 80, 81, 443, 444, 1023, 1024, 1025, 65535]
                } else {
                    &[0]
                };
                for &dst_port in ports {
                    for &src_port in ports {
                        for &remote in &addrs {
                            for &local in &addrs {
                                if remote.is_ipv4() != local.is_ipv4() {
                                    continue;
                                }
                                let f = Fields { proto, src_port, dst_port, remote, local };
                                if ta.matches(&f) {
                                    prop_assert!(tb.matches(&f), "{a:?} covered by {b:?}, but not {f:?}");
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn cidr_unions() {
    let n = |s: &str| -> IpNet { s.parse().unwrap() };
    assert!(net_covered(
        n("10.0.0.0/24"),
        &[n("10.0.0.0/25"), n("10.0.0.128/25")]
    ));
    assert!(!net_covered(
        n("10.0.0.0/24"),
        &[n("10.0.0.0/25"), n("10.0.0.128/26")]
    ));
    assert!(!net_covered(n("10.0.0.0/24"), &[n("2001:db8::/32")]));
    let r = |a, b| PortRange { start: a, end: b };
    assert!(ranges_covered(&[r(10, 30)], &[r(21, 30), r(1, 20)]));
    assert!(!ranges_covered(&[r(10, 30)], &[r(22, 30), r(1, 20)]));
}

/// The verdict of `rules` in decision order (SPEC §3: priority, drop
/// before accept, then file order) for `f`: `None` for the default.
fn verdict(rules: &[Rule], addresses: &Addresses, f: &Fields) -> Option<bool> {
    let mut sorted: Vec<&Rule> = rules.iter().collect();
    sorted.sort_by_key(|r| (r.priority, r.policy));
    sorted
        .into_iter()
        .map(|r| table_rule(r, addresses))
        .find(|t| t.matches(f))
        .map(|t| t.accept)
}

proptest! {
    /// Removing every redundant rule, and every shadowed one, changes no
    /// verdict of the group.
    #[test]
    fn removing_the_findings_changes_no_verdict(
        rules in (arb_rule(0), arb_rule(1), arb_rule(2), arb_rule(3), arb_rule(4))
    ) {
        let rules = vec![rules.0, rules.1, rules.2, rules.3, rules.4];
        let mut config = config("");
        config.groups.push(SecurityGroup {
            id: "sg-p".into(),
            name: "sg-p".into(),
            description: String::new(),
            kind: crate::model::GroupType::Basic,
            inner_access_accept: true,
            members: vec![],
            ingress: rules.clone(),
            egress: vec![],
            deletion_protection: false,
        });
        let addresses = Addresses::resolve(&config, |_| vec![]);
        let findings = check(&config, "sg-p").unwrap();
        let gone = |kind: &str| -> Vec<Rule> {
            rules
                .iter()
                .filter(|r| !findings.iter().any(|f| f.kind == kind && f.rule == r.id))
                .cloned()
                .collect()
        };
        let (without_redundant, without_shadowed) = (gone("redundant"), gone("shadowed"));
        for proto in [1u8, 6, 17] {
            let ports: &[u16] = if sg_common::proto::has_ports(proto) { &[0, 22, 80, 443, 1024, 65535] } else { &[0] };
            for &dst_port in ports {
                for &src_port in ports {
                    for remote in ["10.0.0.1", "10.0.0.200", "10.0.1.1", "10.9.0.1", "11.0.0.1", "2001:db8::1", "2001:db9::1"] {
                        for local in ["10.0.0.1", "10.9.0.1", "2001:db8::1", "2001:db9::1"] {
                            let (remote, local): (IpAddr, IpAddr) = (remote.parse().unwrap(), local.parse().unwrap());
                            if remote.is_ipv4() != local.is_ipv4() {
                                continue;
                            }
                            let f = Fields { proto, src_port, dst_port, remote, local };
                            let all = verdict(&rules, &addresses, &f);
                            prop_assert_eq!(all, verdict(&without_redundant, &addresses, &f), "redundant {:?} {:?}", findings, f);
                            prop_assert_eq!(all, verdict(&without_shadowed, &addresses, &f), "shadowed {:?} {:?}", findings, f);
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn egress_ipv6_and_the_local_side_of_one_family() {
    let egress = |id: &str, fields: &str| {
        format!("[[security_group.egress]]\nid = \"{id}\"\npolicy = \"drop\"\n{fields}\n")
    };
    // An egress drop to 2001:db8::/48 is covered by one to 2001:db8::/32;
    // an ingress rule of the same geometry is not compared with it.
    let rules = egress(
        "wide",
        "ip_protocol = \"udp\"\nport_range = \"1/65535\"\ndest_cidr_ip = \"2001:db8::/32\"",
    ) + &egress(
        "narrow",
        "priority = 2\nip_protocol = \"udp\"\nport_range = \"53/53\"\ndest_cidr_ip = \"2001:db8::/48\"",
    ) + &rule(
        "in",
        "priority = 2\nip_protocol = \"udp\"\nport_range = \"53/53\"\nsource_cidr_ip = \"2001:db8::/48\"",
    );
    let f = check(&config(&rules), "sg-a").unwrap();
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(
        (f[0].direction, f[0].rule.as_str()),
        (Direction::Egress, "narrow")
    );
    // A local 0.0.0.0/0 covers "any local address" for IPv4 remotes only.
    let rules = rule(
        "all4",
        "ip_protocol = \"tcp\"\nport_range = \"80/80\"\nsource_cidr_ip = \"10.0.0.0/8\"\ndest_cidr_ip = \"0.0.0.0/0\"",
    ) + &rule(
        "any",
        "priority = 2\nip_protocol = \"tcp\"\nport_range = \"80/80\"\nsource_cidr_ip = \"10.1.0.0/16\"",
    ) + &rule(
        "all6",
        "ip_protocol = \"tcp\"\nport_range = \"80/80\"\nsource_cidr_ip = \"2001:db8::/32\"\ndest_cidr_ip = \"::/0\"",
    ) + &rule(
        "any6",
        "priority = 2\nip_protocol = \"tcp\"\nport_range = \"80/80\"\nsource_cidr_ip = \"2001:db8:1::/48\"",
    ) + &rule(
        "local6",
        "priority = 2\nip_protocol = \"tcp\"\nport_range = \"80/80\"\nsource_cidr_ip = \"2001:db8:1::/48\"\ndest_cidr_ip = \"2001:db8::1/128\"",
    );
    assert_eq!(
        findings(&rules),
        [
            red("any", "all4"),
            red("any6", "all6"),
            red("local6", "all6")
        ]
    );
}

#[test]
fn findings_say_why_in_the_rules_own_terms() {
    let text = "[[port_list]]\nid = \"prl-w\"\nmax_entries = 2\nentries = [\"80/80\", \"443/443\"]\n\
                [[security_group]]\nid = \"sg-o\"\n[[security_group]]\nid = \"sg-a\"\n\
                [[security_group.egress]]\nid = \"wide\"\npolicy = \"drop\"\nip_protocol = \"tcp\"\nport_range_list_id = \"prl-w\"\ndest_group_id = \"sg-o\"\n\
                [[security_group.egress]]\nid = \"narrow\"\npolicy = \"drop\"\npriority = 2\nip_protocol = \"tcp\"\nport_range = \"443/443\"\ndest_group_id = \"sg-o\"\n";
    let config = crate::config::parse(Path::new("t.toml"), text).unwrap();
    let f = check(&config, "sg-a").unwrap();
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(
        f[0].why,
        "every packet it matches is matched by wide (drop, priority 1 < 2): tcp 80/80,443/443 to group sg-o"
    );
}
