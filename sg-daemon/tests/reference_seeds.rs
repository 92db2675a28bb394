//! The seeds' tables and examples (`/work/shared/seeds/`, Alibaba Cloud ECS
//! security-group documentation in Japanese) checked against the reference
//! decision of SPEC §3 (`sg_daemon::reference`). Each test cites its seed
//! file and example, with the Japanese gist in one English line. Configs are
//! SPEC §7 TOML strings parsed by `config::parse`; every rule has an explicit
//! `id` so that the deciding rule reads plainly in the assertions.
//!
//! Addresses used throughout: the protected host's `eth0` is 10.0.0.5 and
//! 2001:db8::5 (its own addresses, instance mode), `eth1` is 10.0.0.6 and
//! 2001:db8::6; a remote client is 198.51.100.10 / 2001:db8:ff::10.

use std::{net::IpAddr, path::Path};

use ipnet::IpNet;
use sg_daemon::{
    config,
    model::{Addresses, Config, Direction, InterfaceBinding, Peer},
    reference::{self, BuiltIn, DecidedBy, Decision, Fragment, Interface, Packet, State},
};

const IN: Direction = Direction::Ingress;
const OUT: Direction = Direction::Egress;

const HOST: &str = "10.0.0.5";
const HOST6: &str = "2001:db8::5";
const CLIENT: &str = "198.51.100.10";
const CLIENT6: &str = "2001:db8:ff::10";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// What the host reports as an instance-mode interface's own addresses.
fn own_addresses(binding: &InterfaceBinding) -> Vec<IpAddr> {
    match binding.name.as_str() {
        "eth0" => vec![ip(HOST), ip(HOST6)],
        "eth1" => vec![ip("10.0.0.6"), ip("2001:db8::6")],
        _ => Vec::new(),
    }
}

/// A parsed, validated config and the addresses resolved from it.
struct Host {
    config: Config,
    addresses: Addresses,
}

impl Host {
    fn new(toml: &str) -> Host {
        let config = config::parse(Path::new("seeds.toml"), toml)
            .unwrap_or_else(|e| panic!("{e}\nin:\n{toml}"));
        let addresses = Addresses::resolve(&config, own_addresses);
        Host { config, addresses }
    }

    fn iface(&self, name: &str) -> Interface<'_> {
        let binding = self
            .config
            .interfaces
            .iter()
            .find(|b| b.name == name)
            .unwrap_or_else(|| panic!("no interface {name}"));
        Interface {
            config: &self.config,
            binding,
            addresses: &self.addresses,
        }
    }

    /// One packet on `ifname`, with fresh (empty) session state.
    fn decide_on(&self, ifname: &str, dir: Direction, pkt: &Packet) -> Decision {
        reference::decide(&self.iface(ifname), &mut State::default(), dir, pkt)
    }

    /// One packet on `eth0`, with fresh (empty) session state.
    fn decide(&self, dir: Direction, pkt: &Packet) -> Decision {
        self.decide_on("eth0", dir, pkt)
    }

    /// One packet on `eth0`, keeping `state` between packets.
    fn step(&self, state: &mut State, dir: Direction, pkt: &Packet) -> Decision {
        reference::decide(&self.iface("eth0"), state, dir, pkt)
    }

    /// The merged, ordered rules of an interface as (group, rule id).
    fn order(&self, ifname: &str, dir: Direction) -> Vec<(String, String)> {
        reference::ordered_rules(&self.iface(ifname), dir)
            .into_iter()
            .map(|(g, r)| (g.to_owned(), r.id.clone()))
            .collect()
    }
}

fn packet(src: &str, dst: &str, proto: u8, src_port: u16, dst_port: u16) -> Packet {
    Packet {
        src: ip(src),
        dst: ip(dst),
        proto,
        src_port,
        dst_port,
        icmp: None,
        fragment: Fragment::No,
        quoted: None,
    }
}

fn tcp(src: &str, src_port: u16, dst: &str, dst_port: u16) -> Packet {
    packet(src, dst, reference::TCP, src_port, dst_port)
}

fn udp(src: &str, src_port: u16, dst: &str, dst_port: u16) -> Packet {
    packet(src, dst, reference::UDP, src_port, dst_port)
}

/// A packet of a protocol without ports (GRE, SCTP as a bare number, ...).
fn proto(src: &str, dst: &str, proto: u8) -> Packet {
    packet(src, dst, proto, 0, 0)
}

/// ICMP (v4 addresses) or ICMPv6 (v6 addresses) of a type and code.
fn icmp(src: &str, dst: &str, kind: u8, code: u8) -> Packet {
    let proto = if ip(src).is_ipv4() {
        reference::ICMP
    } else {
        reference::ICMPV6
    };
    Packet {
        icmp: Some((kind, code)),
        ..packet(src, dst, proto, 0, 0)
    }
}

/// An echo request; both "ports" carry the identifier.
fn echo_request(src: &str, dst: &str, ident: u16) -> Packet {
    let kind = if ip(src).is_ipv4() { 8 } else { 128 };
    Packet {
        src_port: ident,
        dst_port: ident,
        ..icmp(src, dst, kind, 0)
    }
}

fn echo_reply(src: &str, dst: &str, ident: u16) -> Packet {
    let kind = if ip(src).is_ipv4() { 0 } else { 129 };
    Packet {
        src_port: ident,
        dst_port: ident,
        ..icmp(src, dst, kind, 0)
    }
}

/// An ICMP error that quotes `quoted`.
fn quoting(mut error: Packet, quoted: &Packet) -> Packet {
    error.quoted = Some(Box::new(quoted.clone()));
    error
}

fn first_fragment(pkt: Packet, id: u32) -> Packet {
    Packet {
        fragment: Fragment::First { id },
        ..pkt
    }
}

/// A later fragment: no transport header, so no ports.
fn later_fragment(src: &str, dst: &str, proto: u8, id: u32) -> Packet {
    Packet {
        fragment: Fragment::Later { id },
        ..packet(src, dst, proto, 0, 0)
    }
}

fn rule(group: &str, id: &str) -> DecidedBy {
    DecidedBy::Rule {
        group: group.into(),
        id: id.into(),
    }
}

fn accepted(by: DecidedBy) -> Decision {
    Decision { accept: true, by }
}

fn dropped(by: DecidedBy) -> Decision {
    Decision { accept: false, by }
}

fn order(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(g, r)| (g.to_string(), r.to_string()))
        .collect()
}

// ---------------------------------------------------------------------
// Matching order (seed 003 「カスタムセキュリティグループルールの照合ポリシー」)
// ---------------------------------------------------------------------

/// seed 003, matching policy 1.a/1.b: the rules of all bound groups are
/// merged and sorted first by priority (smaller is stronger), then Drop
/// before Accept. SPEC §3.2: remaining ties keep binding order, then file
/// order; an omitted priority is 1.
#[test]
fn s003_merged_order_is_priority_then_drop_then_binding_then_file() {
    let h = Host::new(
        r#"
[[security_group]]
id = "sg-a"
ingress = [
  { id = "a-accept-p1", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "22/22", source_cidr_ip = "0.0.0.0/0" },
  { id = "a-drop-p2", policy = "drop", priority = 2, ip_protocol = "all", port_range = "-1/-1", source_cidr_ip = "0.0.0.0/0" },
  { id = "a-accept-p1-later", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "80/80", source_cidr_ip = "0.0.0.0/0" },
  { id = "a-accept-p100", policy = "accept", priority = 100, ip_protocol = "udp", port_range = "53/53", source_cidr_ip = "0.0.0.0/0" },
]

[[security_group]]
id = "sg-b"
ingress = [
  { id = "b-accept-p2", policy = "accept", priority = 2, ip_protocol = "tcp", port_range = "443/443", source_cidr_ip = "0.0.0.0/0" },
  { id = "b-accept-default-p", policy = "accept", ip_protocol = "tcp", port_range = "8080/8080", source_cidr_ip = "0.0.0.0/0" },
  { id = "b-drop-p1", policy = "drop", priority = 1, ip_protocol = "tcp", port_range = "22/22", source_cidr_ip = "203.0.113.0/24" },
]

[[interface]]
name = "eth0"
security_groups = ["sg-a", "sg-b"]

[[interface]]
name = "eth1"
security_groups = ["sg-b", "sg-a"]
"#,
    );
    assert_eq!(
        h.order("eth0", IN),
        order(&[
            ("sg-b", "b-drop-p1"),
            ("sg-a", "a-accept-p1"),
            ("sg-a", "a-accept-p1-later"),
            ("sg-b", "b-accept-default-p"),
            ("sg-a", "a-drop-p2"),
            ("sg-b", "b-accept-p2"),
            ("sg-a", "a-accept-p100"),
        ])
    );
    assert_eq!(
        h.order("eth1", IN),
        order(&[
            ("sg-b", "b-drop-p1"),
            ("sg-b", "b-accept-default-p"),
            ("sg-a", "a-accept-p1"),
            ("sg-a", "a-accept-p1-later"),
            ("sg-a", "a-drop-p2"),
            ("sg-b", "b-accept-p2"),
            ("sg-a", "a-accept-p100"),
        ])
    );
    assert!(h.order("eth0", OUT).is_empty());
    // The order decides: 443 is dropped by a-drop-p2 before b-accept-p2.
    assert_eq!(
        h.decide(IN, &tcp(CLIENT, 50000, HOST, 443)),
        dropped(rule("sg-a", "a-drop-p2"))
    );
    assert_eq!(
        h.decide(IN, &tcp("203.0.113.9", 50000, HOST, 22)),
        dropped(rule("sg-b", "b-drop-p1"))
    );
    assert_eq!(
        h.decide(IN, &tcp(CLIENT, 50000, HOST, 22)),
        accepted(rule("sg-a", "a-accept-p1"))
    );
}

/// seed 003, components 「優先度」: 1..100, the smaller value is the higher
/// priority.
#[test]
fn s003_smaller_priority_value_wins() {
    let h = Host::new(
        r#"
[[security_group]]
id = "sg-web"
ingress = [
  { id = "drop-ssh-p2", policy = "drop", priority = 2, ip_protocol = "tcp", port_range = "22/22", source_cidr_ip = "0.0.0.0/0" },
  { id = "ssh-office-p1", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "22/22", source_cidr_ip = "198.51.100.0/24" },
  { id = "http-p100", policy = "accept", priority = 100, ip_protocol = "tcp", port_range = "80/80", source_cidr_ip = "0.0.0.0/0" },
  { id = "drop-http-p99", policy = "drop", priority = 99, ip_protocol = "tcp", port_range = "80/80", source_cidr_ip = "203.0.113.0/24" },
]

[[interface]]
name = "eth0"
security_groups = ["sg-web"]
"#,
    );
    assert_eq!(
        h.decide(IN, &tcp(CLIENT, 50000, HOST, 22)),
        accepted(rule("sg-web", "ssh-office-p1"))
    );
    assert_eq!(
        h.decide(IN, &tcp("203.0.113.9", 50000, HOST, 22)),
        dropped(rule("sg-web", "drop-ssh-p2"))
    );
    assert_eq!(
        h.decide(IN, &tcp("203.0.113.9", 50000, HOST, 80)),
        dropped(rule("sg-web", "drop-http-p99"))
    );
    assert_eq!(
        h.decide(IN, &tcp(CLIENT, 50000, HOST, 80)),
        accepted(rule("sg-web", "http-p100"))
    );
}

/// seed 003, matching policy 1.b and seed 002 「同じ優先度レベルでは、拒否
/// ルールが優先されます」: at the same priority a Drop rule beats an Accept
/// rule, whatever their file or group order.
#[test]
fn s003_drop_wins_over_accept_at_equal_priority() {
    let h = Host::new(
        r#"
[[security_group]]
id = "sg-open"
ingress = [
  { id = "accept-ssh", policy = "accept", priority = 5, ip_protocol = "tcp", port_range = "22/22", source_cidr_ip = "0.0.0.0/0" },
  { id = "drop-bad-net", policy = "drop", priority = 5, ip_protocol = "tcp", port_range = "22/22", source_cidr_ip = "203.0.113.0/24" },
]

[[security_group]]
id = "sg-deny"
ingress = [
  { id = "deny-ssh-v6", policy = "drop", priority = 5, ip_protocol = "tcp", port_range = "22/22", source_cidr_ip = "::/0" },
]

[[interface]]
name = "eth0"
security_groups = ["sg-open", "sg-deny"]
"#,
    );
    assert_eq!(
        h.decide(IN, &tcp("203.0.113.9", 50000, HOST, 22)),
        dropped(rule("sg-open", "drop-bad-net"))
    );
    assert_eq!(
        h.decide(IN, &tcp(CLIENT, 50000, HOST, 22)),
        accepted(rule("sg-open", "accept-ssh"))
    );
    // A drop of a later-bound group still comes before the accept.
    assert_eq!(
        h.decide(IN, &tcp(CLIENT6, 50000, HOST6, 22)),
        dropped(rule("sg-deny", "deny-ssh-v6"))
    );
}

/// SPEC §3.2 (seed 003 matching policy only sorts by priority and action):
/// two matching rules of equal priority and action are taken in binding
/// order of their groups, then in file order within a group.
#[test]
fn s003_ties_are_broken_by_binding_order_then_file_order() {
    let h = Host::new(
        r#"
[[security_group]]
id = "sg-a"
ingress = [
  { id = "a-ssh", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "22/22", source_cidr_ip = "198.51.100.10" },
]

[[security_group]]
id = "sg-b"
ingress = [
  { id = "b-ssh", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "22/22", source_cidr_ip = "0.0.0.0/0" },
  { id = "b-ssh-again", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "20/30", source_cidr_ip = "198.51.100.0/24" },
]

[[interface]]
name = "eth0"
security_groups = ["sg-a", "sg-b"]

[[interface]]
name = "eth1"
security_groups = ["sg-b", "sg-a"]
"#,
    );
    let ssh = tcp(CLIENT, 50000, HOST, 22);
    assert_eq!(
        h.decide_on("eth0", IN, &ssh),
        accepted(rule("sg-a", "a-ssh"))
    );
    let ssh = tcp(CLIENT, 50000, "10.0.0.6", 22);
    assert_eq!(
        h.decide_on("eth1", IN, &ssh),
        accepted(rule("sg-b", "b-ssh"))
    );
    // File order inside sg-b: b-ssh before b-ssh-again.
    let ssh = tcp("198.51.100.11", 50000, HOST, 22);
    assert_eq!(
        h.decide_on("eth0", IN, &ssh),
        accepted(rule("sg-b", "b-ssh"))
    );
}

// ---------------------------------------------------------------------
// Seed 001: rule recipes
// ---------------------------------------------------------------------

/// seed 001 「webサービスを提供するwebサイト」: a group without rules denies
/// all inbound; accept TCP 80/80 and 443/443 from 0.0.0.0/0 at priority 1.
#[test]
fn s001_web_80_and_443_open_to_everyone() {
    let h = Host::new(
        r#"
[[security_group]]
id = "sg-web"

  [[security_group.ingress]]
  id = "http"
  policy = "accept"
  priority = 1
  ip_protocol = "tcp"
  port_range = "80/80"
  source_cidr_ip = "0.0.0.0/0"

  [[security_group.ingress]]
  id = "https"
  policy = "accept"
  priority = 1
  ip_protocol = "tcp"
  port_range = "443/443"
  source_cidr_ip = "0.0.0.0/0"

[[interface]]
name = "eth0"
security_groups = ["sg-web"]
"#,
    );
    for client in [CLIENT, "203.0.113.200", "8.8.8.8"] {
        assert_eq!(
            h.decide(IN, &tcp(client, 50000, HOST, 80)),
            accepted(rule("sg-web", "http"))
        );
        assert_eq!(
            h.decide(IN, &tcp(client, 50000, HOST, 443)),
            accepted(rule("sg-web", "https"))
        );
        for port in [22, 8080, 3389] {
            assert_eq!(
                h.decide(IN, &tcp(client, 50000, HOST, port)),
                dropped(DecidedBy::Default)
            );
        }
    }
    // 0.0.0.0/0 is IPv4 only; UDP 443 is not TCP 443.
    assert_eq!(
        h.decide(IN, &tcp(CLIENT6, 50000, HOST6, 80)),
        dropped(DecidedBy::Default)
    );
    assert_eq!(
        h.decide(IN, &udp(CLIENT, 50000, HOST, 443)),
        dropped(DecidedBy::Default)
    );
}

/// seed 001 「オンプレミスサーバーからインスタンスに接続する」 (Workbench
/// table): SSH 22/22 and RDP 3389/3389 only from 161.117.90.22/32.
#[test]
fn s001_ssh_and_rdp_from_one_address_only() {
    let h = Host::new(
        r#"
[[security_group]]
id = "sg-admin"
ingress = [
  { id = "ssh-workbench", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "22/22", source_cidr_ip = "161.117.90.22/32" },
  { id = "rdp-workbench", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "3389/3389", source_cidr_ip = "161.117.90.22/32" },
]

[[interface]]
name = "eth0"
security_groups = ["sg-admin"]
"#,
    );
    let admin = "161.117.90.22";
    assert_eq!(
        h.decide(IN, &tcp(admin, 50000, HOST, 22)),
        accepted(rule("sg-admin", "ssh-workbench"))
    );
    assert_eq!(
        h.decide(IN, &tcp(admin, 50000, HOST, 3389)),
        accepted(rule("sg-admin", "rdp-workbench"))
    );
    for other in ["161.117.90.23", "161.117.90.21", CLIENT] {
        for port in [22, 3389] {
            assert_eq!(
                h.decide(IN, &tcp(other, 50000, HOST, port)),
                dropped(DecidedBy::Default),
                "{other}:{port}"
            );
        }
    }
    assert_eq!(
        h.decide(IN, &tcp(admin, 50000, HOST, 80)),
        dropped(DecidedBy::Default)
    );
}

/// seed 001 「異なるセキュリティグループ内のインスタンスが相互に通信」: groups
/// without rules are isolated from each other; group B authorises group A's
/// id on TCP 21/21 (FTP), which grants A's members' private IPs (seed 003
/// 「セキュリティグループ ID」). Members are A's listed `members` and the
/// addresses of local interfaces bound to A.
#[test]
fn s001_group_to_group_authorisation_by_source_group_id() {
    let h = Host::new(
        r#"
[[security_group]]
id = "sg-a"
members = ["10.0.1.10"]

[[security_group]]
id = "sg-b"
ingress = [
  { id = "ftp-from-a", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "21/21", source_group_id = "sg-a" },
]

[[interface]]
name = "eth0"
security_groups = ["sg-b"]

[[interface]]
name = "eth1"
security_groups = ["sg-a"]
"#,
    );
    // A listed member, and eth1's own address (bound to sg-a).
    for member in ["10.0.1.10", "10.0.0.6"] {
        assert_eq!(
            h.decide(IN, &tcp(member, 40000, HOST, 21)),
            accepted(rule("sg-b", "ftp-from-a")),
            "{member}"
        );
        // Only the authorised port.
        assert_eq!(
            h.decide(IN, &tcp(member, 40000, HOST, 22)),
            dropped(DecidedBy::Default)
        );
    }
    assert_eq!(
        h.decide(IN, &tcp("10.0.1.11", 40000, HOST, 21)),
        dropped(DecidedBy::Default)
    );
    // The other way round nothing is authorised: sg-b's members do not
    // reach sg-a's interface, sg-a's members reach each other (basic group).
    assert_eq!(
        h.decide_on("eth1", IN, &tcp(HOST, 40000, "10.0.0.6", 21)),
        dropped(DecidedBy::Default)
    );
    assert_eq!(
        h.decide_on("eth1", IN, &tcp("10.0.1.10", 40000, "10.0.0.6", 21)),
        accepted(DecidedBy::IntraGroup)
    );
}

/// seed 001 「データベースへのアクセス」: 3306 from one address, 1521 from
/// another, 1433 from 192.168.0.0/16, 5432 from a group, 6379 from a group
/// (of another account; here simply another group).
#[test]
fn s001_database_ports_from_addresses_cidrs_and_app_groups() {
    let h = Host::new(
        r#"
[[security_group]]
id = "sg-app"
members = ["10.0.2.10", "10.0.2.11"]

[[security_group]]
id = "sg-app-other-account"
members = ["10.0.3.10"]

[[security_group]]
id = "sg-db"
ingress = [
  { id = "mysql", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "3306/3306", source_cidr_ip = "172.16.1.1" },
  { id = "oracle", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "1521/1521", source_cidr_ip = "192.168.1.1" },
  { id = "mssql", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "1433/1433", source_cidr_ip = "192.168.0.0/16" },
  { id = "postgres", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "5432/5432", source_group_id = "sg-app" },
  { id = "redis", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "6379/6379", source_group_id = "sg-app-other-account" },
]

[[interface]]
name = "eth0"
security_groups = ["sg-db"]
"#,
    );
    let cases = [
        ("172.16.1.1", 3306, Some("mysql")),
        ("172.16.1.2", 3306, None),
        ("192.168.1.1", 1521, Some("oracle")),
        ("192.168.1.2", 1521, None),
        ("192.168.200.7", 1433, Some("mssql")),
        ("192.169.0.1", 1433, None),
        ("10.0.2.10", 5432, Some("postgres")),
        ("10.0.2.11", 5432, Some("postgres")),
        ("10.0.3.10", 5432, None),
        ("10.0.3.10", 6379, Some("redis")),
        ("10.0.2.10", 6379, None),
        ("10.0.2.10", 3306, None),
    ];
    for (src, port, by) in cases {
        let expected = match by {
            Some(id) => accepted(rule("sg-db", id)),
            None => dropped(DecidedBy::Default),
        };
        assert_eq!(
            h.decide(IN, &tcp(src, 40000, HOST, port)),
            expected,
            "{src} -> {port}"
        );
    }
}

/// seed 001 「インスタンスのping」: accept all ICMP (IPv4) -1/-1 from
/// 0.0.0.0/0 and all ICMP (IPv6) -1/-1 from ::/0; the echo reply goes back
/// through the session. Seed 002 FAQ: without the ICMP rule ping fails.
#[test]
fn s001_ping_allowed_by_icmp_rules_v4_and_v6() {
    let h = Host::new(
        r#"
[[security_group]]
id = "sg-ping"
ingress = [
  { id = "ping-v4", policy = "accept", priority = 1, ip_protocol = "icmp", port_range = "-1/-1", source_cidr_ip = "0.0.0.0/0" },
  { id = "ping-v6", policy = "accept", priority = 1, ip_protocol = "icmpv6", port_range = "-1/-1", source_cidr_ip = "::/0" },
]

[[security_group]]
id = "sg-no-ping"

[[interface]]
name = "eth0"
security_groups = ["sg-ping"]

[[interface]]
name = "eth1"
security_groups = ["sg-no-ping"]
"#,
    );
    let mut st = State::default();
    assert_eq!(
        h.step(&mut st, IN, &echo_request(CLIENT, HOST, 77)),
        accepted(rule("sg-ping", "ping-v4"))
    );
    assert_eq!(
        h.step(&mut st, OUT, &echo_reply(HOST, CLIENT, 77)),
        accepted(DecidedBy::Session)
    );
    assert_eq!(
        h.step(&mut st, IN, &echo_request(CLIENT6, HOST6, 78)),
        accepted(rule("sg-ping", "ping-v6"))
    );
    assert_eq!(
        h.step(&mut st, OUT, &echo_reply(HOST6, CLIENT6, 78)),
        accepted(DecidedBy::Session)
    );
    assert_eq!(
        h.decide_on("eth1", IN, &echo_request(CLIENT, "10.0.0.6", 77)),
        dropped(DecidedBy::Default)
    );
    assert_eq!(
        h.decide_on("eth1", IN, &echo_request(CLIENT6, "2001:db8::6", 77)),
        dropped(DecidedBy::Default)
    );
}

const WHITELIST: &str = r#"
[[security_group]]
id = "sg-out"
egress = [
  { id = "drop-all", policy = "drop", priority = 2, ip_protocol = "all", port_range = "-1/-1", dest_cidr_ip = "0.0.0.0/0" },
  { id = "allow-site-80", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "80/80", dest_cidr_ip = "47.96.0.1" },
  { id = "allow-site-443", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "443/443", dest_cidr_ip = "121.199.0.1" },
]

[[interface]]
name = "eth0"
security_groups = ["sg-out"]
"#;

/// seed 001 「インスタンスから外部Webサイトへのアクセスを制限する」: a basic
/// group allows all outbound by default; to whitelist, drop All -1/-1 to
/// 0.0.0.0/0 at priority 2 and accept TCP 80 / 443 to the sites at
/// priority 1; afterwards only those sites are reachable (also by ping).
#[test]
fn s001_egress_whitelist_with_priority_2_drop_all() {
    let h = Host::new(WHITELIST);
    let mut st = State::default();
    let request = tcp(HOST, 40000, "47.96.0.1", 80);
    assert_eq!(
        h.step(&mut st, OUT, &request),
        accepted(rule("sg-out", "allow-site-80"))
    );
    assert_eq!(
        h.step(&mut st, IN, &tcp("47.96.0.1", 80, HOST, 40000)),
        accepted(DecidedBy::Session)
    );
    assert_eq!(
        h.decide(OUT, &tcp(HOST, 40001, "121.199.0.1", 443)),
        accepted(rule("sg-out", "allow-site-443"))
    );
    let blocked = [
        tcp(HOST, 40002, "47.96.0.1", 443),
        tcp(HOST, 40003, "121.199.0.1", 80),
        tcp(HOST, 40004, "93.184.216.34", 80),
        udp(HOST, 40005, "8.8.8.8", 53),
        echo_request(HOST, "47.96.0.1", 1),
    ];
    for pkt in &blocked {
        assert_eq!(
            h.decide(OUT, pkt),
            dropped(rule("sg-out", "drop-all")),
            "{pkt:?}"
        );
    }
}

/// seed 001, same recipe, note 2: at equal priority the drop rule wins, so
/// the drop-all must have a lower priority than the accepts — with both at
/// 1 nothing gets out.
#[test]
fn s001_egress_whitelist_fails_with_drop_all_at_the_same_priority() {
    let h = Host::new(&WHITELIST.replace("priority = 2", "priority = 1"));
    assert_eq!(
        h.decide(OUT, &tcp(HOST, 40000, "47.96.0.1", 80)),
        dropped(rule("sg-out", "drop-all"))
    );
    assert_eq!(
        h.decide(OUT, &tcp(HOST, 40000, "121.199.0.1", 443)),
        dropped(rule("sg-out", "drop-all"))
    );
}

/// seed 001, same recipe, note 1: 「許可ルールが一致して適用されるまで、
/// セッションは確立されません」 — no session until an accept rule applies,
/// so a dropped request gets no reply through.
#[test]
fn s001_no_session_until_an_accept_rule_applies() {
    let h = Host::new(WHITELIST);
    let mut st = State::default();
    assert_eq!(
        h.step(&mut st, OUT, &tcp(HOST, 40000, "93.184.216.34", 443)),
        dropped(rule("sg-out", "drop-all"))
    );
    assert_eq!(
        h.step(&mut st, IN, &tcp("93.184.216.34", 443, HOST, 40000)),
        dropped(DecidedBy::Default)
    );
}

// ---------------------------------------------------------------------
// Seed 000 / 002 / 004: using groups
// ---------------------------------------------------------------------

/// seed 000 FAQ 2: the gateway's group was authorised on 8080 only; when the
/// service moves to 8081 access fails — authorise a wider range such as
/// 1/65535 (several port ranges may be given).
#[test]
fn s000_gateway_group_authorised_on_port_ranges() {
    let h = Host::new(
        r#"
[[security_group]]
id = "sg-gateway"
members = ["10.0.9.1", "10.0.9.2"]

[[security_group]]
id = "sg-backend"
ingress = [
  { id = "gw-8080", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "8080/8080", source_group_id = "sg-gateway" },
  { id = "gw-9000-9100", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "9000/9100", source_group_id = "sg-gateway" },
]

[[security_group]]
id = "sg-backend-wide"
ingress = [
  { id = "gw-all-ports", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "1/65535", source_group_id = "sg-gateway" },
]

[[interface]]
name = "eth0"
security_groups = ["sg-backend"]

[[interface]]
name = "eth1"
security_groups = ["sg-backend-wide"]
"#,
    );
    assert_eq!(
        h.decide(IN, &tcp("10.0.9.1", 40000, HOST, 8080)),
        accepted(rule("sg-backend", "gw-8080"))
    );
    assert_eq!(
        h.decide(IN, &tcp("10.0.9.2", 40000, HOST, 9050)),
        accepted(rule("sg-backend", "gw-9000-9100"))
    );
    assert_eq!(
        h.decide(IN, &tcp("10.0.9.1", 40000, HOST, 8081)),
        dropped(DecidedBy::Default)
    );
    for port in [1, 8081, 65535] {
        assert_eq!(
            h.decide_on("eth1", IN, &tcp("10.0.9.1", 40000, "10.0.0.6", port)),
            accepted(rule("sg-backend-wide", "gw-all-ports"))
        );
    }
    assert_eq!(
        h.decide_on("eth1", IN, &tcp(CLIENT, 40000, "10.0.0.6", 8081)),
        dropped(DecidedBy::Default)
    );
}

/// seed 002 introduction (figure): inbound SSH 22 only from one address
/// (121.XX.XX.XX); outbound to a known high-risk address denied.
#[test]
fn s002_intro_admin_ssh_and_blocked_risky_destination() {
    let h = Host::new(
        r#"
[[security_group]]
id = "sg-intro"
ingress = [
  { id = "ssh-admin", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "22/22", source_cidr_ip = "121.40.0.1" },
]
egress = [
  { id = "deny-risky", policy = "drop", priority = 1, ip_protocol = "all", port_range = "-1/-1", dest_cidr_ip = "203.0.113.66" },
]

[[interface]]
name = "eth0"
security_groups = ["sg-intro"]
"#,
    );
    assert_eq!(
        h.decide(IN, &tcp("121.40.0.1", 50000, HOST, 22)),
        accepted(rule("sg-intro", "ssh-admin"))
    );
    assert_eq!(
        h.decide(IN, &tcp("121.40.0.2", 50000, HOST, 22)),
        dropped(DecidedBy::Default)
    );
    assert_eq!(
        h.decide(OUT, &tcp(HOST, 40000, "203.0.113.66", 443)),
        dropped(rule("sg-intro", "deny-risky"))
    );
    assert_eq!(
        h.decide(OUT, &udp(HOST, 40000, "203.0.113.66", 53)),
        dropped(rule("sg-intro", "deny-risky"))
    );
    assert_eq!(
        h.decide(OUT, &tcp(HOST, 40000, "203.0.113.67", 443)),
        accepted(DecidedBy::Default)
    );
}

/// seed 002 「セキュリティグループの作成」 (API) and seed 003: a new basic
/// group without rules accepts traffic from other instances of the same
/// group, drops all other inbound and accepts all outbound.
#[test]
fn s002_basic_group_hidden_defaults() {
    let h = Host::new(
        r#"
[[security_group]]
id = "sg-new"
members = ["10.0.0.20", "2001:db8::20"]

[[interface]]
name = "eth0"
security_groups = ["sg-new"]

[[interface]]
name = "eth1"
security_groups = ["sg-new"]
"#,
    );
    // Members: listed ones and the other local interface bound to it.
    for member in ["10.0.0.20", "10.0.0.6"] {
        assert_eq!(
            h.decide(IN, &tcp(member, 40000, HOST, 22)),
            accepted(DecidedBy::IntraGroup),
            "{member}"
        );
    }
    for member in ["2001:db8::20", "2001:db8::6"] {
        assert_eq!(
            h.decide(IN, &udp(member, 40000, HOST6, 53)),
            accepted(DecidedBy::IntraGroup),
            "{member}"
        );
    }
    assert_eq!(
        h.decide(IN, &echo_request("10.0.0.20", HOST, 1)),
        accepted(DecidedBy::IntraGroup)
    );
    assert_eq!(
        h.decide(IN, &tcp(CLIENT, 40000, HOST, 22)),
        dropped(DecidedBy::Default)
    );
    assert_eq!(
        h.decide(IN, &tcp(CLIENT6, 40000, HOST6, 22)),
        dropped(DecidedBy::Default)
    );
    assert_eq!(
        h.decide(IN, &tcp("10.0.0.21", 40000, HOST, 22)),
        dropped(DecidedBy::Default)
    );
    for pkt in [
        tcp(HOST, 40000, CLIENT, 443),
        udp(HOST6, 40000, CLIENT6, 53),
        echo_request(HOST, "8.8.8.8", 1),
        proto(HOST, CLIENT, 47),
    ] {
        assert_eq!(h.decide(OUT, &pkt), accepted(DecidedBy::Default), "{pkt:?}");
    }
}

/// seed 002 「セキュリティグループ内のインスタンス間のネットワーク通信」: the
/// intra-group policy can be set to internal isolation, which forbids
/// member-to-member traffic; even then, rules can allow it.
#[test]
fn s002_internal_isolation_and_rules_that_still_allow_members() {
    let h = Host::new(
        r#"
[[security_group]]
id = "sg-iso"
inner_access_policy = "drop"
members = ["10.0.0.20"]

[[security_group]]
id = "sg-iso-with-rule"
inner_access_policy = "drop"
members = ["10.0.0.30"]
ingress = [
  { id = "members-https", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "443/443", source_group_id = "sg-iso-with-rule" },
]

[[interface]]
name = "eth0"
security_groups = ["sg-iso"]

[[interface]]
name = "eth1"
security_groups = ["sg-iso-with-rule"]
"#,
    );
    assert_eq!(
        h.decide(IN, &tcp("10.0.0.20", 40000, HOST, 22)),
        dropped(DecidedBy::Default)
    );
    // Outbound stays allowed (SPEC §3.4: all outbound of basic groups).
    assert_eq!(
        h.decide(OUT, &tcp(HOST, 40000, "10.0.0.20", 22)),
        accepted(DecidedBy::Default)
    );
    assert_eq!(
        h.decide_on("eth1", IN, &tcp("10.0.0.30", 40000, "10.0.0.6", 443)),
        accepted(rule("sg-iso-with-rule", "members-https"))
    );
    assert_eq!(
        h.decide_on("eth1", IN, &tcp("10.0.0.30", 40000, "10.0.0.6", 22)),
        dropped(DecidedBy::Default)
    );
}

/// seed 002, same section: when an instance is in several groups, it can
/// talk to members if ANY of the groups' intra-group policy allows it.
#[test]
fn s002_any_bound_group_that_grants_intra_group_access_grants_it() {
    let h = Host::new(
        r#"
[[security_group]]
id = "sg-iso"
inner_access_policy = "drop"
members = ["10.0.0.20", "10.0.0.21"]

[[security_group]]
id = "sg-open"
inner_access_policy = "accept"
members = ["10.0.0.20", "10.0.0.22"]

[[interface]]
name = "eth0"
security_groups = ["sg-iso", "sg-open"]

[[interface]]
name = "eth1"
security_groups = ["sg-iso"]
"#,
    );
    // Member of both, and member of the accepting group only.
    for src in ["10.0.0.20", "10.0.0.22"] {
        assert_eq!(
            h.decide(IN, &tcp(src, 40000, HOST, 22)),
            accepted(DecidedBy::IntraGroup),
            "{src}"
        );
    }
    // Member of the isolated group only.
    assert_eq!(
        h.decide(IN, &tcp("10.0.0.21", 40000, HOST, 22)),
        dropped(DecidedBy::Default)
    );
    // eth1 is only in the isolated group: even a member of both is dropped.
    assert_eq!(
        h.decide_on("eth1", IN, &tcp("10.0.0.20", 40000, "10.0.0.6", 22)),
        dropped(DecidedBy::Default)
    );
}

/// seed 002 「インスタンスへのセキュリティグループの関連付け」 and 「ルールの
/// 優先度競合」: the rules of several groups on one NIC are merged and applied
/// by priority; a stronger drop of one group overrides a weaker accept of
/// another, and the other groups' rules keep applying.
#[test]
fn s002_several_groups_on_one_interface_are_merged() {
    let h = Host::new(
        r#"
[[security_group]]
id = "sg-web"
ingress = [
  { id = "http", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "80/80", source_cidr_ip = "0.0.0.0/0" },
  { id = "mysql-anyone", policy = "accept", priority = 10, ip_protocol = "tcp", port_range = "3306/3306", source_cidr_ip = "0.0.0.0/0" },
]

[[security_group]]
id = "sg-baseline"
ingress = [
  { id = "ssh-admin", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "22/22", source_cidr_ip = "203.0.113.5" },
  { id = "no-mysql", policy = "drop", priority = 5, ip_protocol = "tcp", port_range = "3306/3306", source_cidr_ip = "0.0.0.0/0" },
]
egress = [
  { id = "no-telnet-out", policy = "drop", priority = 1, ip_protocol = "tcp", port_range = "23/23", dest_cidr_ip = "0.0.0.0/0" },
]

[[interface]]
name = "eth0"
security_groups = ["sg-web", "sg-baseline"]
"#,
    );
    assert_eq!(
        h.decide(IN, &tcp(CLIENT, 40000, HOST, 80)),
        accepted(rule("sg-web", "http"))
    );
    assert_eq!(
        h.decide(IN, &tcp("203.0.113.5", 40000, HOST, 22)),
        accepted(rule("sg-baseline", "ssh-admin"))
    );
    assert_eq!(
        h.decide(IN, &tcp(CLIENT, 40000, HOST, 3306)),
        dropped(rule("sg-baseline", "no-mysql"))
    );
    assert_eq!(
        h.decide(OUT, &tcp(HOST, 40000, CLIENT, 23)),
        dropped(rule("sg-baseline", "no-telnet-out"))
    );
    assert_eq!(
        h.decide(OUT, &tcp(HOST, 40000, CLIENT, 22)),
        accepted(DecidedBy::Default)
    );
}

/// seed 002 FAQ 「すべて拒否に設定した後、内部の Alibaba Cloud サービス
/// からのアクセスを許可する」: after denying everything, allow inbound from
/// 100.64.0.0/10 (health checks).
#[test]
fn s002_allow_internal_services_after_deny_all() {
    let h = Host::new(
        r#"
[[security_group]]
id = "sg-locked"
ingress = [
  { id = "deny-all", policy = "drop", priority = 100, ip_protocol = "all", port_range = "-1/-1", source_cidr_ip = "0.0.0.0/0" },
  { id = "aliyun-internal", policy = "accept", priority = 1, ip_protocol = "all", port_range = "-1/-1", source_cidr_ip = "100.64.0.0/10" },
]

[[interface]]
name = "eth0"
security_groups = ["sg-locked"]
"#,
    );
    for src in ["100.64.0.1", "100.100.0.5", "100.127.255.254"] {
        assert_eq!(
            h.decide(IN, &tcp(src, 40000, HOST, 22)),
            accepted(rule("sg-locked", "aliyun-internal"))
        );
        assert_eq!(
            h.decide(IN, &echo_request(src, HOST, 9)),
            accepted(rule("sg-locked", "aliyun-internal"))
        );
    }
    for src in ["100.128.0.1", CLIENT] {
        assert_eq!(
            h.decide(IN, &tcp(src, 40000, HOST, 22)),
            dropped(rule("sg-locked", "deny-all"))
        );
    }
}

/// seed 002 「プレフィックスリストの使用」 and seed 003 「プレフィックスリスト
/// ID」: a rule authorising a prefix list (SourcePrefixListId /
/// DestPrefixListId) matches any of its CIDRs, IPv4 or IPv6.
#[test]
fn s002_prefix_list_rules_match_any_entry() {
    let h = Host::new(
        r#"
[[prefix_list]]
id = "pl-office"
max_entries = 10
entries = ["203.0.113.0/24", "2001:db8:1::/48", "192.0.2.7"]

[[security_group]]
id = "sg-office"
ingress = [
  { id = "ssh-office", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "22/22", source_prefix_list_id = "pl-office" },
]
egress = [
  { id = "https-office", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "443/443", dest_prefix_list_id = "pl-office" },
  { id = "drop-v4", policy = "drop", priority = 2, ip_protocol = "all", port_range = "-1/-1", dest_cidr_ip = "0.0.0.0/0" },
  { id = "drop-v6", policy = "drop", priority = 2, ip_protocol = "all", port_range = "-1/-1", dest_cidr_ip = "::/0" },
]

[[interface]]
name = "eth0"
security_groups = ["sg-office"]
"#,
    );
    for (src, dst) in [
        ("203.0.113.9", HOST),
        ("192.0.2.7", HOST),
        ("2001:db8:1:2::9", HOST6),
    ] {
        assert_eq!(
            h.decide(IN, &tcp(src, 40000, dst, 22)),
            accepted(rule("sg-office", "ssh-office")),
            "{src}"
        );
        assert_eq!(
            h.decide(OUT, &tcp(dst, 40000, src, 443)),
            accepted(rule("sg-office", "https-office")),
            "{src}"
        );
    }
    for (src, dst) in [
        ("192.0.2.8", HOST),
        (CLIENT, HOST),
        ("2001:db8:2::9", HOST6),
    ] {
        assert_eq!(
            h.decide(IN, &tcp(src, 40000, dst, 22)),
            dropped(DecidedBy::Default),
            "{src}"
        );
    }
    assert_eq!(
        h.decide(OUT, &tcp(HOST, 40000, CLIENT, 443)),
        dropped(rule("sg-office", "drop-v4"))
    );
    assert_eq!(
        h.decide(OUT, &tcp(HOST6, 40000, "2001:db8:2::9", 443)),
        dropped(rule("sg-office", "drop-v6"))
    );
}

/// seed 002 「制限事項」 and 「異なるセキュリティグループ内のインスタンス間」,
/// seed 004: enterprise groups cannot authorise groups, have no intra-group
/// policy, and one NIC uses one group type only.
#[test]
fn s002_enterprise_group_restrictions_are_rejected() {
    let errors = |text: &str| {
        config::parse(Path::new("seeds.toml"), text)
            .expect_err("must be rejected")
            .to_string()
    };
    let e = errors(
        r#"
[[security_group]]
id = "sg-app"
[[security_group]]
id = "sg-ent"
type = "enterprise"
ingress = [
  { id = "from-app", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "22/22", source_group_id = "sg-app" },
]
"#,
    );
    assert!(e.contains("source_group_id"), "{e}");
    let e = errors(
        r#"
[[security_group]]
id = "sg-ent"
type = "enterprise"
inner_access_policy = "accept"
"#,
    );
    assert!(e.contains("inner_access_policy"), "{e}");
    let e = errors(
        r#"
[[security_group]]
id = "sg-basic"
[[security_group]]
id = "sg-ent"
type = "enterprise"
[[interface]]
name = "eth0"
security_groups = ["sg-basic", "sg-ent"]
"#,
    );
    assert!(e.contains("security_groups"), "{e}");
}

// ---------------------------------------------------------------------
// Seed 003 / 004: defaults, components, built-ins, 5-tuple rules
// ---------------------------------------------------------------------

/// seed 003 (hidden default rules) and seed 004 (advanced groups): an
/// enterprise group drops inbound and outbound by default and has no
/// intra-group communication; accepted traffic still has its session.
#[test]
fn s003_enterprise_defaults_drop_both_ways_without_intra_group() {
    let h = Host::new(
        r#"
[[security_group]]
id = "sg-ent"
type = "enterprise"
members = ["10.0.0.20"]

[[security_group]]
id = "sg-ent-https"
type = "enterprise"
egress = [
  { id = "https-out", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "443/443", dest_cidr_ip = "0.0.0.0/0" },
]

[[interface]]
name = "eth0"
security_groups = ["sg-ent"]

[[interface]]
name = "eth1"
security_groups = ["sg-ent", "sg-ent-https"]
"#,
    );
    for src in ["10.0.0.20", "10.0.0.6", CLIENT] {
        assert_eq!(
            h.decide(IN, &tcp(src, 40000, HOST, 22)),
            dropped(DecidedBy::Default),
            "{src}"
        );
    }
    for pkt in [
        tcp(HOST, 40000, CLIENT, 443),
        tcp(HOST, 40000, "10.0.0.20", 22),
        udp(HOST6, 40000, CLIENT6, 53),
        echo_request(HOST, CLIENT, 1),
    ] {
        assert_eq!(h.decide(OUT, &pkt), dropped(DecidedBy::Default), "{pkt:?}");
    }
    let iface = h.iface("eth1");
    let mut st = State::default();
    let request = tcp("10.0.0.6", 40000, CLIENT, 443);
    assert_eq!(
        reference::decide(&iface, &mut st, OUT, &request),
        accepted(rule("sg-ent-https", "https-out"))
    );
    let reply = tcp(CLIENT, 443, "10.0.0.6", 40000);
    assert_eq!(
        reference::decide(&iface, &mut st, IN, &reply),
        accepted(DecidedBy::Session)
    );
    assert_eq!(
        reference::decide(&iface, &mut st, OUT, &tcp("10.0.0.6", 40000, CLIENT, 80)),
        dropped(DecidedBy::Default)
    );
}

const PROTOCOLS_BY_NUMBER: &str = r#"
[[security_group]]
id = "sg-proto"
type = "enterprise"
ingress = [
  { id = "p6", policy = "accept", priority = 1, ip_protocol = 6, port_range = "22/22", source_cidr_ip = "0.0.0.0/0" },
  { id = "p17", policy = "accept", priority = 1, ip_protocol = 17, port_range = "53/53", source_cidr_ip = "0.0.0.0/0" },
  { id = "p1", policy = "accept", priority = 1, ip_protocol = 1, port_range = "-1/-1", source_cidr_ip = "0.0.0.0/0" },
  { id = "p58", policy = "accept", priority = 1, ip_protocol = 58, port_range = "-1/-1", source_cidr_ip = "::/0" },
  { id = "p47", policy = "accept", priority = 1, ip_protocol = 47, port_range = "-1/-1", source_cidr_ip = "0.0.0.0/0" },
]

[[interface]]
name = "eth0"
security_groups = ["sg-proto"]
"#;

/// seed 003 「プロトコルタイプ」: a protocol is a name (TCP, UDP, ICMP (IPv4),
/// ICMP (IPv6), GRE) or an IANA number 0..255; a number is the same as its
/// name: TCP 6, UDP 17, ICMP 1, ICMPv6 58, GRE 47.
#[test]
fn s003_protocols_by_number_are_the_same_as_by_name() {
    let by_number = Host::new(PROTOCOLS_BY_NUMBER);
    let by_name = Host::new(
        &PROTOCOLS_BY_NUMBER
            .replace("ip_protocol = 6,", "ip_protocol = \"tcp\",")
            .replace("ip_protocol = 17,", "ip_protocol = \"udp\",")
            .replace("ip_protocol = 1,", "ip_protocol = \"icmp\",")
            .replace("ip_protocol = 58,", "ip_protocol = \"icmpv6\",")
            .replace("ip_protocol = 47,", "ip_protocol = \"gre\","),
    );
    assert!(!PROTOCOLS_BY_NUMBER.contains("\"gre\""));
    assert_eq!(by_number.config.groups, by_name.config.groups);
    for h in [&by_number, &by_name] {
        let cases = [
            (tcp(CLIENT, 40000, HOST, 22), Some("p6")),
            (udp(CLIENT, 40000, HOST, 53), Some("p17")),
            (echo_request(CLIENT, HOST, 5), Some("p1")),
            (echo_request(CLIENT6, HOST6, 5), Some("p58")),
            (proto(CLIENT, HOST, 47), Some("p47")),
            (tcp(CLIENT, 40000, HOST, 53), None),
            (udp(CLIENT, 40000, HOST, 22), None),
            (proto(CLIENT6, HOST6, 47), None),
            (proto(CLIENT, HOST, 132), None),
        ];
        for (pkt, by) in cases {
            let expected = match by {
                Some(id) => accepted(rule("sg-proto", id)),
                None => dropped(DecidedBy::Default),
            };
            assert_eq!(h.decide(IN, &pkt), expected, "{pkt:?}");
        }
    }
}

/// seed 003 「プロトコルタイプ」 and seed 001 (protocol type "All"): `all`
/// matches every protocol; a bare number without a name (132, SCTP) matches
/// that protocol only.
#[test]
fn s003_protocol_all_and_bare_numbers() {
    let h = Host::new(
        r#"
[[security_group]]
id = "sg-all"
ingress = [
  { id = "office-everything", policy = "accept", priority = 1, ip_protocol = "all", port_range = "-1/-1", source_cidr_ip = "203.0.113.0/24" },
  { id = "sctp", policy = "accept", priority = 1, ip_protocol = 132, port_range = "-1/-1", source_cidr_ip = "0.0.0.0/0" },
  { id = "drop-all", policy = "drop", priority = 2, ip_protocol = "all", port_range = "-1/-1", source_cidr_ip = "0.0.0.0/0" },
]

[[interface]]
name = "eth0"
security_groups = ["sg-all"]
"#,
    );
    let office = "203.0.113.9";
    for pkt in [
        tcp(office, 40000, HOST, 22),
        udp(office, 40000, HOST, 65535),
        echo_request(office, HOST, 1),
        proto(office, HOST, 47),
        proto(office, HOST, 0),
        proto(office, HOST, 255),
    ] {
        assert_eq!(
            h.decide(IN, &pkt),
            accepted(rule("sg-all", "office-everything")),
            "{pkt:?}"
        );
    }
    assert_eq!(
        h.decide(IN, &proto(CLIENT, HOST, 132)),
        accepted(rule("sg-all", "sctp"))
    );
    for pkt in [
        tcp(CLIENT, 40000, HOST, 22),
        echo_request(CLIENT, HOST, 1),
        proto(CLIENT, HOST, 133),
    ] {
        assert_eq!(
            h.decide(IN, &pkt),
            dropped(rule("sg-all", "drop-all")),
            "{pkt:?}"
        );
    }
}

/// seed 003 「ポート範囲」: TCP/UDP take "start/end" such as 8000/9000 or
/// 22/22 (the destination port); every other protocol takes -1/-1, which
/// matches all its traffic.
#[test]
fn s003_port_ranges_match_destination_ports_inclusively() {
    let h = Host::new(
        r#"
[[security_group]]
id = "sg-ports"
type = "enterprise"
ingress = [
  { id = "tcp-8000-9000", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "8000/9000", source_cidr_ip = "0.0.0.0/0" },
  { id = "udp-22", policy = "accept", priority = 1, ip_protocol = "udp", port_range = "22/22", source_cidr_ip = "0.0.0.0/0" },
  { id = "gre-any", policy = "accept", priority = 1, ip_protocol = "gre", port_range = "-1/-1", source_cidr_ip = "0.0.0.0/0" },
]

[[interface]]
name = "eth0"
security_groups = ["sg-ports"]
"#,
    );
    let cases = [
        (tcp(CLIENT, 40000, HOST, 7999), None),
        (tcp(CLIENT, 40000, HOST, 8000), Some("tcp-8000-9000")),
        (tcp(CLIENT, 40000, HOST, 8500), Some("tcp-8000-9000")),
        (tcp(CLIENT, 40000, HOST, 9000), Some("tcp-8000-9000")),
        (tcp(CLIENT, 40000, HOST, 9001), None),
        // The source port is not what a port range looks at.
        (tcp(CLIENT, 8500, HOST, 40000), None),
        (udp(CLIENT, 40000, HOST, 8500), None),
        (udp(CLIENT, 40000, HOST, 22), Some("udp-22")),
        (udp(CLIENT, 40000, HOST, 23), None),
        (tcp(CLIENT, 40000, HOST, 22), None),
        (proto(CLIENT, HOST, 47), Some("gre-any")),
    ];
    for (pkt, by) in cases {
        let expected = match by {
            Some(id) => accepted(rule("sg-ports", id)),
            None => dropped(DecidedBy::Default),
        };
        assert_eq!(h.decide(IN, &pkt), expected, "{pkt:?}");
    }
}

/// seed 003 「ポートリスト」: a port list instead of a single range (TCP or UDP
/// only); the rule matches any of its entries.
#[test]
fn s003_port_list_rules_match_any_entry() {
    let h = Host::new(
        r#"
[[port_list]]
id = "prl-web"
max_entries = 5
entries = ["80/80", "443/443", "8000/8080"]

[[security_group]]
id = "sg-web"
ingress = [
  { id = "web-ports", policy = "accept", priority = 1, ip_protocol = "tcp", port_range_list_id = "prl-web", source_cidr_ip = "0.0.0.0/0" },
  { id = "web-ports-udp", policy = "accept", priority = 1, ip_protocol = "udp", port_range_list_id = "prl-web", source_cidr_ip = "::/0" },
]

[[interface]]
name = "eth0"
security_groups = ["sg-web"]
"#,
    );
    for port in [80, 443, 8000, 8042, 8080] {
        assert_eq!(
            h.decide(IN, &tcp(CLIENT, 40000, HOST, port)),
            accepted(rule("sg-web", "web-ports")),
            "{port}"
        );
        assert_eq!(
            h.decide(IN, &udp(CLIENT6, 40000, HOST6, port)),
            accepted(rule("sg-web", "web-ports-udp")),
            "{port}"
        );
    }
    for port in [79, 81, 442, 7999, 8081] {
        assert_eq!(
            h.decide(IN, &tcp(CLIENT, 40000, HOST, port)),
            dropped(DecidedBy::Default),
            "{port}"
        );
    }
    assert_eq!(
        h.decide(IN, &udp(CLIENT, 40000, HOST, 80)),
        dropped(DecidedBy::Default)
    );
}

/// seed 003 「IPv6 アドレス / IPv6 CIDR ブロック」: addresses and CIDRs are
/// normalised (2408:180:0000::1 is 2408:180::1, 2408:4321:180:0000::/64 is
/// 2408:4321:180::/64) and match the normalised packet addresses.
#[test]
fn s003_ipv6_authorisation_objects_are_normalised() {
    let h = Host::new(
        r#"
[[security_group]]
id = "sg-v6"
ingress = [
  { id = "v6-host", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "22/22", source_cidr_ip = "2408:180:0000::1" },
  { id = "v6-net", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "80/80", source_cidr_ip = "2408:4321:180:0000::/64" },
  { id = "v6-long", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "443/443", source_cidr_ip = "2408:4321:180:1701:94c7:bc38:3bfa:9" },
]

[[interface]]
name = "eth0"
security_groups = ["sg-v6"]
"#,
    );
    let ingress = &h.config.groups[0].ingress;
    let net = |s: &str| Peer::Cidrs(vec![s.parse::<IpNet>().unwrap()]);
    assert_eq!(ingress[0].peer, net("2408:180::1/128"));
    assert_eq!(ingress[1].peer, net("2408:4321:180::/64"));
    assert_eq!(
        h.decide(IN, &tcp("2408:180::1", 40000, HOST6, 22)),
        accepted(rule("sg-v6", "v6-host"))
    );
    assert_eq!(
        h.decide(IN, &tcp("2408:180:0:0:0:0:0:1", 40000, HOST6, 22)),
        accepted(rule("sg-v6", "v6-host"))
    );
    assert_eq!(
        h.decide(IN, &tcp("2408:180::2", 40000, HOST6, 22)),
        dropped(DecidedBy::Default)
    );
    assert_eq!(
        h.decide(IN, &tcp("2408:4321:180::9", 40000, HOST6, 80)),
        accepted(rule("sg-v6", "v6-net"))
    );
    assert_eq!(
        h.decide(IN, &tcp("2408:4321:180:1::9", 40000, HOST6, 80)),
        dropped(DecidedBy::Default)
    );
    assert_eq!(
        h.decide(
            IN,
            &tcp("2408:4321:180:1701:94c7:bc38:3bfa:9", 40000, HOST6, 443)
        ),
        accepted(rule("sg-v6", "v6-long"))
    );
}

/// seed 003 「権限付与オブジェクト」 (IPv4 and IPv6 addresses and CIDRs) and
/// seed 001 (ping table: one rule for IPv4 0.0.0.0/0, another for IPv6
/// ::/0): an IPv4 object never matches IPv6 traffic and vice versa.
#[test]
fn s003_ipv4_objects_do_not_match_ipv6_traffic_and_vice_versa() {
    let h = Host::new(
        r#"
[[security_group]]
id = "sg-mixed"
ingress = [
  { id = "http-v4", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "80/80", source_cidr_ip = "0.0.0.0/0" },
  { id = "ssh-v6", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "22/22", source_cidr_ip = "::/0" },
]
egress = [
  { id = "drop-all-v4", policy = "drop", priority = 1, ip_protocol = "all", port_range = "-1/-1", dest_cidr_ip = "0.0.0.0/0" },
]

[[interface]]
name = "eth0"
security_groups = ["sg-mixed"]
"#,
    );
    assert_eq!(
        h.decide(IN, &tcp(CLIENT, 40000, HOST, 80)),
        accepted(rule("sg-mixed", "http-v4"))
    );
    assert_eq!(
        h.decide(IN, &tcp(CLIENT6, 40000, HOST6, 80)),
        dropped(DecidedBy::Default)
    );
    assert_eq!(
        h.decide(IN, &tcp(CLIENT6, 40000, HOST6, 22)),
        accepted(rule("sg-mixed", "ssh-v6"))
    );
    assert_eq!(
        h.decide(IN, &tcp(CLIENT, 40000, HOST, 22)),
        dropped(DecidedBy::Default)
    );
    // A v4 drop-all leaves v6 outbound to the basic default.
    assert_eq!(
        h.decide(OUT, &tcp(HOST, 40000, CLIENT, 443)),
        dropped(rule("sg-mixed", "drop-all-v4"))
    );
    assert_eq!(
        h.decide(OUT, &tcp(HOST6, 40000, CLIENT6, 443)),
        accepted(DecidedBy::Default)
    );
}

/// seed 003 「MetaServer へのアクセス」: outbound to the metadata service
/// 100.100.100.200 is allowed by default and cannot be blocked by rules;
/// SPEC §3.7: and its replies.
#[test]
fn s003_metadata_service_is_reachable_despite_drop_all_egress() {
    let h = Host::new(
        r#"
[[security_group]]
id = "sg-locked"
egress = [
  { id = "drop-all-out", policy = "drop", priority = 1, ip_protocol = "all", port_range = "-1/-1", dest_cidr_ip = "0.0.0.0/0" },
  { id = "drop-metadata", policy = "drop", priority = 1, ip_protocol = "tcp", port_range = "80/80", dest_cidr_ip = "100.100.100.200/32" },
]

[[security_group]]
id = "sg-ent"
type = "enterprise"

[[interface]]
name = "eth0"
security_groups = ["sg-locked"]

[[interface]]
name = "eth1"
security_groups = ["sg-ent"]
"#,
    );
    let md = "100.100.100.200";
    let mut st = State::default();
    assert_eq!(
        h.step(&mut st, OUT, &tcp(HOST, 40000, md, 80)),
        accepted(DecidedBy::BuiltIn(BuiltIn::Metadata))
    );
    assert_eq!(
        h.step(&mut st, IN, &tcp(md, 80, HOST, 40000)),
        accepted(DecidedBy::Session)
    );
    assert_eq!(
        h.step(&mut st, OUT, &tcp(HOST, 40000, md, 80)),
        accepted(DecidedBy::Session)
    );
    // Any protocol to the metadata address; only that address.
    assert_eq!(
        h.decide(OUT, &udp(HOST, 40001, md, 53)),
        accepted(DecidedBy::BuiltIn(BuiltIn::Metadata))
    );
    assert_eq!(
        h.decide(OUT, &tcp(HOST, 40000, "100.100.100.201", 80)),
        dropped(rule("sg-locked", "drop-all-out"))
    );
    // Without a session the metadata service cannot call in.
    assert_eq!(
        h.decide(IN, &tcp(md, 80, HOST, 40002)),
        dropped(DecidedBy::Default)
    );
    // The same in an enterprise group (everything dropped by default).
    let iface = h.iface("eth1");
    let mut st = State::default();
    assert_eq!(
        reference::decide(&iface, &mut st, OUT, &tcp("10.0.0.6", 40000, md, 80)),
        accepted(DecidedBy::BuiltIn(BuiltIn::Metadata))
    );
    assert_eq!(
        reference::decide(&iface, &mut st, IN, &tcp(md, 80, "10.0.0.6", 40000)),
        accepted(DecidedBy::Session)
    );
}

/// seed 003 「ICMP (PMTUD エラーメッセージ)」: the ICMP error carrying the path
/// MTU (IPv4 type 3 code 4; SPEC §3.7: ICMPv6 type 2) is let in by default,
/// from any address; other ICMP errors are not built-in.
#[test]
fn s003_pmtud_messages_are_let_in_from_anyone() {
    let h = Host::new(
        r#"
[[security_group]]
id = "sg-ent"
type = "enterprise"

[[security_group]]
id = "sg-deny"
ingress = [
  { id = "deny-all-v4", policy = "drop", priority = 1, ip_protocol = "all", port_range = "-1/-1", source_cidr_ip = "0.0.0.0/0" },
  { id = "deny-all-v6", policy = "drop", priority = 1, ip_protocol = "all", port_range = "-1/-1", source_cidr_ip = "::/0" },
]

[[interface]]
name = "eth0"
security_groups = ["sg-ent"]

[[interface]]
name = "eth1"
security_groups = ["sg-deny"]
"#,
    );
    let router = "203.0.113.1";
    let router6 = "2001:db8:ff::1";
    let pmtud = DecidedBy::BuiltIn(BuiltIn::Pmtud);
    assert_eq!(
        h.decide(IN, &icmp(router, HOST, 3, 4)),
        accepted(pmtud.clone())
    );
    assert_eq!(
        h.decide(IN, &icmp(router6, HOST6, 2, 0)),
        accepted(pmtud.clone())
    );
    assert_eq!(
        h.decide_on("eth1", IN, &icmp(router, "10.0.0.6", 3, 4)),
        accepted(pmtud.clone())
    );
    assert_eq!(
        h.decide_on("eth1", IN, &icmp(router6, "2001:db8::6", 2, 0)),
        accepted(pmtud)
    );
    // Port unreachable, time exceeded, ICMPv6 unreachable: rules decide.
    for pkt in [
        icmp(router, HOST, 3, 3),
        icmp(router, HOST, 3, 1),
        icmp(router, HOST, 11, 0),
        icmp(router6, HOST6, 1, 4),
    ] {
        assert_eq!(h.decide(IN, &pkt), dropped(DecidedBy::Default), "{pkt:?}");
    }
    assert_eq!(
        h.decide_on("eth1", IN, &icmp(router, "10.0.0.6", 3, 3)),
        dropped(rule("sg-deny", "deny-all-v4"))
    );
}

/// SPEC §3.7 (the host stays on the network; seeds silent beyond "some
/// traffic is allowed by default"): IPv6 neighbour and router discovery and
/// DHCP / DHCPv6 client exchanges pass an enterprise group with no rules;
/// an operator can turn both off.
#[test]
fn spec_3_7_neighbour_discovery_and_dhcp_client_are_built_in() {
    const ENT: &str = r#"
[[security_group]]
id = "sg-ent"
type = "enterprise"

[[interface]]
name = "eth0"
security_groups = ["sg-ent"]
"#;
    let h = Host::new(ENT);
    let nd = accepted(DecidedBy::BuiltIn(BuiltIn::NeighborDiscovery));
    let dhcp = accepted(DecidedBy::BuiltIn(BuiltIn::DhcpClient));
    let nd_cases = [
        (OUT, icmp("fe80::5", "ff02::2", 133, 0)), // router solicitation
        (IN, icmp("fe80::1", "ff02::1", 134, 0)),  // router advertisement
        (IN, icmp("fe80::1", "ff02::1:ff00:5", 135, 0)), // neighbour solicitation
        (OUT, icmp("fe80::5", "fe80::1", 136, 0)), // neighbour advertisement
        (OUT, icmp(HOST6, "ff02::1:ff00:1", 135, 0)),
        (IN, icmp("2001:db8::1", HOST6, 136, 0)),
    ];
    let dhcp_cases = [
        (OUT, udp("0.0.0.0", 68, "255.255.255.255", 67)),
        (IN, udp("10.0.0.1", 67, "255.255.255.255", 68)),
        (IN, udp("10.0.0.1", 67, HOST, 68)),
        (OUT, udp("fe80::5", 546, "ff02::1:2", 547)),
        (IN, udp("fe80::1", 547, "fe80::5", 546)),
    ];
    for (dir, pkt) in &nd_cases {
        assert_eq!(h.decide(*dir, pkt), nd, "{pkt:?}");
    }
    for (dir, pkt) in &dhcp_cases {
        assert_eq!(h.decide(*dir, pkt), dhcp, "{pkt:?}");
    }
    // Not built-in: a DHCP server role, ICMPv6 echo, ICMPv4 type 134.
    for (dir, pkt) in [
        (IN, udp(CLIENT, 68, HOST, 67)),
        (OUT, udp(HOST, 67, CLIENT, 68)),
        (IN, echo_request(CLIENT6, HOST6, 1)),
        (IN, icmp(CLIENT, HOST, 134, 0)),
    ] {
        assert_eq!(h.decide(dir, &pkt), dropped(DecidedBy::Default), "{pkt:?}");
    }
    let off = Host::new(&format!(
        "[daemon]\nbuiltin_neighbor_discovery = false\nbuiltin_dhcp_client = false\n{ENT}"
    ));
    for (dir, pkt) in nd_cases.iter().chain(&dhcp_cases) {
        assert_eq!(
            off.decide(*dir, pkt),
            dropped(DecidedBy::Default),
            "{pkt:?}"
        );
    }
}

/// seed 003 (notes) and seed 002 「パブリックアクセスポート」: TCP port 25 is
/// restricted by default (send mail on 465 instead), even with an accept
/// rule; SPEC §3.8: switchable per host (`block_smtp_egress = false`).
#[test]
fn s003_outbound_port_25_is_blocked_and_465_is_not() {
    const SMTP: &str = r#"
[[security_group]]
id = "sg-mail"
ingress = [
  { id = "smtp-in", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "25/25", source_cidr_ip = "0.0.0.0/0" },
]
egress = [
  { id = "smtp-out", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "25/25", dest_cidr_ip = "0.0.0.0/0" },
  { id = "smtps-out", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "465/465", dest_cidr_ip = "0.0.0.0/0" },
]

[[interface]]
name = "eth0"
security_groups = ["sg-mail"]
"#;
    let h = Host::new(SMTP);
    let mx = "192.0.2.25";
    let blocked = dropped(DecidedBy::BuiltIn(BuiltIn::SmtpBlocked));
    assert_eq!(h.decide(OUT, &tcp(HOST, 40000, mx, 25)), blocked);
    assert_eq!(
        h.decide(OUT, &tcp(HOST6, 40000, "2001:db8:25::25", 25)),
        blocked
    );
    assert_eq!(
        h.decide(OUT, &tcp(HOST, 40000, mx, 465)),
        accepted(rule("sg-mail", "smtps-out"))
    );
    // UDP 25 and TCP from local port 25 are not the restriction.
    assert_eq!(
        h.decide(OUT, &udp(HOST, 40000, mx, 25)),
        accepted(DecidedBy::Default)
    );
    // Receiving mail on 25 works, replies go out through the session.
    let mut st = State::default();
    assert_eq!(
        h.step(&mut st, IN, &tcp(mx, 40000, HOST, 25)),
        accepted(rule("sg-mail", "smtp-in"))
    );
    assert_eq!(
        h.step(&mut st, OUT, &tcp(HOST, 25, mx, 40000)),
        accepted(DecidedBy::Session)
    );
    let open = Host::new(&format!("[daemon]\nblock_smtp_egress = false\n{SMTP}"));
    assert_eq!(
        open.decide(OUT, &tcp(HOST, 40000, mx, 25)),
        accepted(rule("sg-mail", "smtp-out"))
    );
}

/// seed 003 「セキュリティグループクインテットルール」 example: an outbound
/// 5-tuple rule — source 172.16.1.0/32, source port 22, destination
/// 10.0.0.1/32, any destination port, TCP.
#[test]
fn s003_five_tuple_egress_rule_of_the_example() {
    let h = Host::new(
        r#"
[[security_group]]
id = "sg-5t"
type = "enterprise"
egress = [
  { id = "ssh-replies-to-jump", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "1/65535", source_port_range = "22/22", source_cidr_ip = "172.16.1.0/32", dest_cidr_ip = "10.0.0.1/32" },
]

[[interface]]
name = "eth0"
addresses = ["172.16.1.0", "172.16.1.1"]
security_groups = ["sg-5t"]
"#,
    );
    for dport in [1, 51000, 65535] {
        assert_eq!(
            h.decide(OUT, &tcp("172.16.1.0", 22, "10.0.0.1", dport)),
            accepted(rule("sg-5t", "ssh-replies-to-jump"))
        );
    }
    for pkt in [
        tcp("172.16.1.0", 2222, "10.0.0.1", 51000), // other source port
        tcp("172.16.1.1", 22, "10.0.0.1", 51000),   // other local address
        tcp("172.16.1.0", 22, "10.0.0.2", 51000),   // other destination
        udp("172.16.1.0", 22, "10.0.0.1", 51000),   // other protocol
    ] {
        assert_eq!(h.decide(OUT, &pkt), dropped(DecidedBy::Default), "{pkt:?}");
    }
}

/// seed 003 「セキュリティグループクインテットルール」: in an inbound 5-tuple
/// rule the destination IP selects one instance address (a private IP),
/// and a source port can be given.
#[test]
fn s003_five_tuple_ingress_rules_with_local_address_and_source_port() {
    let h = Host::new(
        r#"
[[security_group]]
id = "sg-5t-in"
ingress = [
  { id = "web-on-5", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "80/80", source_cidr_ip = "0.0.0.0/0", dest_cidr_ip = "10.0.0.5" },
  { id = "from-dns-port", policy = "accept", priority = 1, ip_protocol = "udp", port_range = "1/65535", source_cidr_ip = "192.0.2.53", source_port_range = "53/53" },
]

[[interface]]
name = "eth0"
addresses = ["10.0.0.5", "10.0.0.7"]
security_groups = ["sg-5t-in"]
"#,
    );
    assert_eq!(
        h.decide(IN, &tcp(CLIENT, 40000, "10.0.0.5", 80)),
        accepted(rule("sg-5t-in", "web-on-5"))
    );
    assert_eq!(
        h.decide(IN, &tcp(CLIENT, 40000, "10.0.0.7", 80)),
        dropped(DecidedBy::Default)
    );
    assert_eq!(
        h.decide(IN, &udp("192.0.2.53", 53, "10.0.0.7", 40000)),
        accepted(rule("sg-5t-in", "from-dns-port"))
    );
    assert_eq!(
        h.decide(IN, &udp("192.0.2.53", 54, "10.0.0.7", 40000)),
        dropped(DecidedBy::Default)
    );
    assert_eq!(
        h.decide(IN, &udp("192.0.2.54", 53, "10.0.0.7", 40000)),
        dropped(DecidedBy::Default)
    );
}

// ---------------------------------------------------------------------
// Stateful behaviour (seed 003 notes, SPEC §3.5 and §3.6)
// ---------------------------------------------------------------------

const WEB_CLIENT: &str = r#"
[[security_group]]
id = "sg-web"
ingress = [
  { id = "http", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "80/80", source_cidr_ip = "0.0.0.0/0" },
]
egress = [
  { id = "drop-all-out", policy = "drop", priority = 2, ip_protocol = "all", port_range = "-1/-1", dest_cidr_ip = "0.0.0.0/0" },
  { id = "https-out", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "443/443", dest_cidr_ip = "0.0.0.0/0" },
]

[[interface]]
name = "eth0"
security_groups = ["sg-web"]
"#;

/// seed 003 notes 「セキュリティグループはステートフルです」 (sessions live up
/// to 910 s) and seed 002 「インバウンドルールを設定するだけで…応答トラフィ
/// ックを自動的に許可」: once a packet is accepted every later packet of its
/// session passes both ways; unsolicited inbound does not.
#[test]
fn s003_stateful_replies_pass_without_rules() {
    let h = Host::new(WEB_CLIENT);
    assert_eq!(h.config.daemon.session_timeout_secs, 910);
    let mut st = State::default();
    // Outbound request, its reply, more of the same session.
    let api = "192.0.2.80";
    assert_eq!(
        h.step(&mut st, OUT, &tcp(HOST, 40000, api, 443)),
        accepted(rule("sg-web", "https-out"))
    );
    assert_eq!(
        h.step(&mut st, IN, &tcp(api, 443, HOST, 40000)),
        accepted(DecidedBy::Session)
    );
    assert_eq!(
        h.step(&mut st, OUT, &tcp(HOST, 40000, api, 443)),
        accepted(DecidedBy::Session)
    );
    // Unsolicited inbound: another local port, another remote port.
    assert_eq!(
        h.step(&mut st, IN, &tcp(api, 443, HOST, 40001)),
        dropped(DecidedBy::Default)
    );
    assert_eq!(
        h.step(&mut st, IN, &tcp(api, 444, HOST, 40000)),
        dropped(DecidedBy::Default)
    );
    assert_eq!(
        h.step(&mut st, IN, &udp(api, 443, HOST, 40000)),
        dropped(DecidedBy::Default)
    );
    // Inbound accepted: its replies go out despite the egress drop-all.
    assert_eq!(
        h.step(&mut st, IN, &tcp(CLIENT, 50000, HOST, 80)),
        accepted(rule("sg-web", "http"))
    );
    assert_eq!(
        h.step(&mut st, OUT, &tcp(HOST, 80, CLIENT, 50000)),
        accepted(DecidedBy::Session)
    );
    assert_eq!(
        h.step(&mut st, OUT, &tcp(HOST, 80, CLIENT, 50001)),
        dropped(rule("sg-web", "drop-all-out"))
    );
}

/// SPEC §3.5 (seed 003 stateful sessions) for ping: an echo reply belongs to
/// the session of the echo request with the same identifier.
#[test]
fn s003_icmp_echo_reply_follows_its_request_identifier() {
    let h = Host::new(
        r#"
[[security_group]]
id = "sg-ent"
type = "enterprise"
egress = [
  { id = "ping-out", policy = "accept", priority = 1, ip_protocol = "icmp", port_range = "-1/-1", dest_cidr_ip = "0.0.0.0/0" },
  { id = "ping6-out", policy = "accept", priority = 1, ip_protocol = "icmpv6", port_range = "-1/-1", dest_cidr_ip = "::/0" },
]

[[interface]]
name = "eth0"
security_groups = ["sg-ent"]
"#,
    );
    let mut st = State::default();
    for (local, remote, by) in [(HOST, CLIENT, "ping-out"), (HOST6, CLIENT6, "ping6-out")] {
        assert_eq!(
            h.step(&mut st, OUT, &echo_request(local, remote, 0x1234)),
            accepted(rule("sg-ent", by))
        );
        assert_eq!(
            h.step(&mut st, IN, &echo_reply(remote, local, 0x1234)),
            accepted(DecidedBy::Session)
        );
        assert_eq!(
            h.step(&mut st, IN, &echo_reply(remote, local, 0x4321)),
            dropped(DecidedBy::Default)
        );
        assert_eq!(
            h.step(&mut st, IN, &echo_reply("192.0.2.99", local, 0x1234)),
            dropped(DecidedBy::Default)
        );
    }
}

/// SPEC §3.5: ICMP errors quoting a tracked session (destination
/// unreachable, time exceeded, packet too big, ...) are related traffic.
#[test]
fn spec_3_5_icmp_errors_about_a_tracked_session_are_related() {
    let h = Host::new(
        r#"
[[security_group]]
id = "sg-client"

[[interface]]
name = "eth0"
security_groups = ["sg-client"]
"#,
    );
    let mut st = State::default();
    let request = tcp(HOST, 40000, CLIENT, 443);
    let query6 = udp(HOST6, 5353, CLIENT6, 53);
    assert_eq!(h.step(&mut st, OUT, &request), accepted(DecidedBy::Default));
    assert_eq!(h.step(&mut st, OUT, &query6), accepted(DecidedBy::Default));
    let router = "203.0.113.1";
    let router6 = "2001:db8:ff::1";
    for error in [
        icmp(router, HOST, 3, 3),
        icmp(router, HOST, 3, 13),
        icmp(router, HOST, 11, 0),
        icmp(CLIENT, HOST, 3, 3),
    ] {
        assert_eq!(
            h.step(&mut st, IN, &quoting(error, &request)),
            accepted(DecidedBy::Related)
        );
    }
    for error in [icmp(router6, HOST6, 1, 4), icmp(router6, HOST6, 3, 0)] {
        assert_eq!(
            h.step(&mut st, IN, &quoting(error, &query6)),
            accepted(DecidedBy::Related)
        );
    }
    // The same errors about a flow that is not tracked, or quoting nothing.
    let untracked = tcp(HOST, 40001, CLIENT, 443);
    assert_eq!(
        h.step(&mut st, IN, &quoting(icmp(router, HOST, 3, 3), &untracked)),
        dropped(DecidedBy::Default)
    );
    assert_eq!(
        h.step(&mut st, IN, &icmp(router, HOST, 11, 0)),
        dropped(DecidedBy::Default)
    );
    // Not an error: an echo request "quoting" a session is just a ping.
    assert_eq!(
        h.step(
            &mut st,
            IN,
            &quoting(echo_request(router, HOST, 1), &request)
        ),
        dropped(DecidedBy::Default)
    );
}

const HTTP_ACCEPT: &str = r#"
[[security_group]]
id = "sg-web"
ingress = [
  { id = "http", policy = "accept", priority = 1, ip_protocol = "tcp", port_range = "80/80", source_cidr_ip = "0.0.0.0/0" },
]

[[interface]]
name = "eth0"
security_groups = ["sg-web"]
"#;

/// seed 003 notes 「ルール動作が変更されない限り…確立されたセッションに影響
/// しません」 and SPEC §3.6: removing the rule keeps the established session
/// (new connections are dropped); a new explicit drop rule matching it ends
/// the session at its next packet.
#[test]
fn s003_rule_changes_keep_sessions_unless_a_drop_rule_matches() {
    let old = Host::new(HTTP_ACCEPT);
    let removed = Host::new(
        r#"
[[security_group]]
id = "sg-web"

[[interface]]
name = "eth0"
security_groups = ["sg-web"]
"#,
    );
    let blocked = Host::new(
        r#"
[[security_group]]
id = "sg-web"
ingress = [
  { id = "block-client-net", policy = "drop", priority = 1, ip_protocol = "tcp", port_range = "80/80", source_cidr_ip = "198.51.100.0/24" },
]

[[interface]]
name = "eth0"
security_groups = ["sg-web"]
"#,
    );
    let mut st = State::default();
    let request = tcp(CLIENT, 50000, HOST, 80);
    let reply = tcp(HOST, 80, CLIENT, 50000);
    assert_eq!(
        old.step(&mut st, IN, &request),
        accepted(rule("sg-web", "http"))
    );
    assert_eq!(old.step(&mut st, OUT, &reply), accepted(DecidedBy::Session));

    st.ruleset_changed();
    assert_eq!(
        removed.step(&mut st, IN, &request),
        accepted(DecidedBy::Session)
    );
    assert_eq!(
        removed.step(&mut st, OUT, &reply),
        accepted(DecidedBy::Session)
    );
    assert_eq!(
        removed.step(&mut st, IN, &tcp(CLIENT, 50001, HOST, 80)),
        dropped(DecidedBy::Default)
    );

    st.ruleset_changed();
    assert_eq!(
        blocked.step(&mut st, IN, &request),
        dropped(DecidedBy::SessionEnded {
            group: "sg-web".into(),
            id: "block-client-net".into()
        })
    );
    // The session is gone: the rule decides from now on.
    assert_eq!(
        blocked.step(&mut st, IN, &request),
        dropped(rule("sg-web", "block-client-net"))
    );
}

/// seed 003 notes, same sentence: 「ルール動作が変更されない限り」 — when the
/// action of the rule that accepted the session changes to drop, the
/// session ends (at its next packet, in either direction).
#[test]
fn s003_changing_the_rule_action_to_drop_ends_the_session() {
    let old = Host::new(HTTP_ACCEPT);
    let flipped = Host::new(&HTTP_ACCEPT.replace("policy = \"accept\"", "policy = \"drop\""));
    let mut st = State::default();
    let request = tcp(CLIENT, 50000, HOST, 80);
    assert_eq!(
        old.step(&mut st, IN, &request),
        accepted(rule("sg-web", "http"))
    );
    // An unrelated change keeps it.
    st.ruleset_changed();
    assert_eq!(
        old.step(&mut st, OUT, &tcp(HOST, 80, CLIENT, 50000)),
        accepted(DecidedBy::Session)
    );
    st.ruleset_changed();
    assert_eq!(
        flipped.step(&mut st, OUT, &tcp(HOST, 80, CLIENT, 50000)),
        dropped(DecidedBy::SessionEnded {
            group: "sg-web".into(),
            id: "http".into()
        })
    );
}

/// seed 003 notes: changing the groups of a NIC does not affect established
/// sessions (even those that relied on the intra-group default); SPEC §3.6
/// 「Moving an interface from one group to another keeps its sessions」.
#[test]
fn s003_moving_an_interface_to_another_group_keeps_its_sessions() {
    let old = Host::new(
        r#"
[[security_group]]
id = "sg-a"
members = ["10.0.0.20"]

[[security_group]]
id = "sg-b"

[[interface]]
name = "eth0"
security_groups = ["sg-a"]
"#,
    );
    let new = Host::new(
        r#"
[[security_group]]
id = "sg-a"
members = ["10.0.0.20"]

[[security_group]]
id = "sg-b"

[[interface]]
name = "eth0"
security_groups = ["sg-b"]
"#,
    );
    let mut st = State::default();
    let request = tcp("10.0.0.20", 40000, HOST, 22);
    assert_eq!(
        old.step(&mut st, IN, &request),
        accepted(DecidedBy::IntraGroup)
    );
    st.ruleset_changed();
    assert_eq!(
        new.step(&mut st, IN, &request),
        accepted(DecidedBy::Session)
    );
    assert_eq!(
        new.step(&mut st, OUT, &tcp(HOST, 22, "10.0.0.20", 40000)),
        accepted(DecidedBy::Session)
    );
    assert_eq!(
        new.step(&mut st, IN, &tcp("10.0.0.20", 40001, HOST, 22)),
        dropped(DecidedBy::Default)
    );
}

/// seed 003 (port 25 restriction) with SPEC §3.6: a session to port 25
/// opened while the restriction was off, then the restriction is switched
/// on together with an explicit drop rule for TCP 25: the drop rule matches
/// the session, so it ends.
#[test]
fn spec_3_6_explicit_drop_rule_ends_a_port_25_session() {
    let before = Host::new(
        r#"
[daemon]
block_smtp_egress = false

[[security_group]]
id = "sg-mail"

[[interface]]
name = "eth0"
security_groups = ["sg-mail"]
"#,
    );
    let after = Host::new(
        r#"
[daemon]
block_smtp_egress = true

[[security_group]]
id = "sg-mail"
egress = [
  { id = "no-smtp", policy = "drop", priority = 1, ip_protocol = "tcp", port_range = "25/25", dest_cidr_ip = "0.0.0.0/0" },
]

[[interface]]
name = "eth0"
security_groups = ["sg-mail"]
"#,
    );
    let mut st = State::default();
    let mx = "192.0.2.25";
    assert_eq!(
        before.step(&mut st, OUT, &tcp(HOST, 40000, mx, 25)),
        accepted(DecidedBy::Default)
    );
    st.ruleset_changed();
    assert_eq!(
        after.step(&mut st, IN, &tcp(mx, 25, HOST, 40000)),
        dropped(DecidedBy::SessionEnded {
            group: "sg-mail".into(),
            id: "no-smtp".into()
        })
    );
}

/// SPEC §3.7 with §3.6: the metadata service cannot be blocked by rules, so
/// a new drop rule for it does not end its session either.
#[test]
fn spec_3_6_a_drop_rule_does_not_end_a_metadata_session() {
    let old = Host::new(
        r#"
[[security_group]]
id = "sg-a"

[[interface]]
name = "eth0"
security_groups = ["sg-a"]
"#,
    );
    let new = Host::new(
        r#"
[[security_group]]
id = "sg-a"
egress = [
  { id = "drop-metadata", policy = "drop", priority = 1, ip_protocol = "all", port_range = "-1/-1", dest_cidr_ip = "100.100.100.200" },
]

[[interface]]
name = "eth0"
security_groups = ["sg-a"]
"#,
    );
    let md = "100.100.100.200";
    let mut st = State::default();
    assert_eq!(
        old.step(&mut st, OUT, &tcp(HOST, 40000, md, 80)),
        accepted(DecidedBy::BuiltIn(BuiltIn::Metadata))
    );
    st.ruleset_changed();
    assert_eq!(
        new.step(&mut st, IN, &tcp(md, 80, HOST, 40000)),
        accepted(DecidedBy::Session)
    );
}

// ---------------------------------------------------------------------
// Fragments (SPEC §3.9)
// ---------------------------------------------------------------------

/// SPEC §3.9: a non-first fragment follows the verdict of its first
/// fragment; an unknown later fragment is dropped inbound and, outbound,
/// judged without ports.
#[test]
fn spec_3_9_later_fragments_follow_their_first_fragment() {
    let h = Host::new(
        r#"
[[security_group]]
id = "sg-dns"
ingress = [
  { id = "dns", policy = "accept", priority = 1, ip_protocol = "udp", port_range = "53/53", source_cidr_ip = "0.0.0.0/0" },
]

[[interface]]
name = "eth0"
security_groups = ["sg-dns"]
"#,
    );
    let mut st = State::default();
    let udp_ = reference::UDP;
    let dns = rule("sg-dns", "dns");
    assert_eq!(
        h.step(&mut st, IN, &first_fragment(udp(CLIENT, 5000, HOST, 53), 7)),
        accepted(dns.clone())
    );
    assert_eq!(
        h.step(&mut st, IN, &later_fragment(CLIENT, HOST, udp_, 7)),
        accepted(DecidedBy::Fragment(Some(Box::new(accepted(dns)))))
    );
    assert_eq!(
        h.step(&mut st, IN, &first_fragment(udp(CLIENT, 5000, HOST, 54), 8)),
        dropped(DecidedBy::Default)
    );
    assert_eq!(
        h.step(&mut st, IN, &later_fragment(CLIENT, HOST, udp_, 8)),
        dropped(DecidedBy::Fragment(Some(Box::new(dropped(
            DecidedBy::Default
        )))))
    );
    // Same id from another source is another datagram: unknown.
    assert_eq!(
        h.step(&mut st, IN, &later_fragment("198.51.100.11", HOST, udp_, 7)),
        dropped(DecidedBy::Fragment(None))
    );
    assert_eq!(
        h.step(&mut st, IN, &later_fragment(CLIENT6, HOST6, udp_, 9)),
        dropped(DecidedBy::Fragment(None))
    );
    // Outbound unknown later fragment: judged without ports (basic: accept).
    assert_eq!(
        h.step(&mut st, OUT, &later_fragment(HOST, CLIENT, udp_, 10)),
        accepted(DecidedBy::Default)
    );
    // A fragmented reply of a session follows the session's verdict.
    assert_eq!(
        h.step(&mut st, OUT, &udp(HOST, 6000, "192.0.2.53", 53)),
        accepted(DecidedBy::Default)
    );
    assert_eq!(
        h.step(
            &mut st,
            IN,
            &first_fragment(udp("192.0.2.53", 53, HOST, 6000), 11)
        ),
        accepted(DecidedBy::Session)
    );
    assert_eq!(
        h.step(&mut st, IN, &later_fragment("192.0.2.53", HOST, udp_, 11)),
        accepted(DecidedBy::Fragment(Some(Box::new(accepted(
            DecidedBy::Session
        )))))
    );
}

// ---------------------------------------------------------------------
// Hypervisor mode (SPEC §2, interface binding)
// ---------------------------------------------------------------------

const HYPERVISOR: &str = r#"
[[security_group]]
id = "sg-app"

[[security_group]]
id = "sg-other"

[[interface]]
name = "tap-vm1"
mode = "hypervisor"
addresses = ["10.0.0.11", "2001:db8::11"]
security_groups = ["sg-app"]

[[interface]]
name = "tap-vm2"
mode = "hypervisor"
addresses = ["10.0.0.12"]
security_groups = ["sg-app"]

[[interface]]
name = "tap-vm3"
mode = "hypervisor"
addresses = ["10.0.0.13"]
security_groups = ["sg-other"]
"#;

/// SPEC §2 (hypervisor mode) with seed 002 / 004 intra-group communication:
/// two instances on one host in one basic group reach each other by the
/// intra-group default; an instance of another group does not.
#[test]
fn spec_2_hypervisor_instances_in_one_basic_group_reach_each_other() {
    let h = Host::new(HYPERVISOR);
    let vm1 = h.iface("tap-vm1");
    let vm2 = h.iface("tap-vm2");
    let vm3 = h.iface("tap-vm3");
    let (mut st1, mut st2, mut st3) = (State::default(), State::default(), State::default());
    let ssh = tcp("10.0.0.11", 40000, "10.0.0.12", 22);
    assert_eq!(
        reference::decide(&vm1, &mut st1, OUT, &ssh),
        accepted(DecidedBy::Default)
    );
    assert_eq!(
        reference::decide(&vm2, &mut st2, IN, &ssh),
        accepted(DecidedBy::IntraGroup)
    );
    let back = tcp("10.0.0.12", 22, "10.0.0.11", 40000);
    assert_eq!(
        reference::decide(&vm2, &mut st2, OUT, &back),
        accepted(DecidedBy::Session)
    );
    assert_eq!(
        reference::decide(&vm1, &mut st1, IN, &back),
        accepted(DecidedBy::Session)
    );
    let from_vm3 = tcp("10.0.0.13", 40000, "10.0.0.12", 22);
    assert_eq!(
        reference::decide(&vm3, &mut st3, OUT, &from_vm3),
        accepted(DecidedBy::Default)
    );
    assert_eq!(
        reference::decide(&vm2, &mut st2, IN, &from_vm3),
        dropped(DecidedBy::Default)
    );
}

/// SPEC §2 (hypervisor mode, `addresses`): a packet an instance sends from
/// any address not its own is dropped, so it cannot pose as a member of a
/// group it is not in.
#[test]
fn spec_2_hypervisor_instance_sending_from_another_address_is_spoofed() {
    let h = Host::new(HYPERVISOR);
    // vm3 (sg-other) poses as vm1 (sg-app).
    assert_eq!(
        h.decide_on("tap-vm3", OUT, &tcp("10.0.0.11", 40000, "10.0.0.12", 22)),
        dropped(DecidedBy::Spoofed)
    );
    assert_eq!(
        h.decide_on("tap-vm3", OUT, &tcp("10.0.0.99", 40000, CLIENT, 443)),
        dropped(DecidedBy::Spoofed)
    );
    assert_eq!(
        h.decide_on("tap-vm1", OUT, &tcp("2001:db8::11", 40000, CLIENT6, 443)),
        accepted(DecidedBy::Default)
    );
    assert_eq!(
        h.decide_on("tap-vm1", OUT, &tcp("2001:db8::99", 40000, CLIENT6, 443)),
        dropped(DecidedBy::Spoofed)
    );
    assert_eq!(
        h.decide_on("tap-vm1", OUT, &echo_request("10.0.0.12", CLIENT, 1)),
        dropped(DecidedBy::Spoofed)
    );
    // The instance's own addresses are fine; DHCP before it has one, too.
    assert_eq!(
        h.decide_on("tap-vm3", OUT, &tcp("10.0.0.13", 40000, CLIENT, 443)),
        accepted(DecidedBy::Default)
    );
    assert_eq!(
        h.decide_on("tap-vm3", OUT, &udp("0.0.0.0", 68, "255.255.255.255", 67)),
        accepted(DecidedBy::BuiltIn(BuiltIn::DhcpClient))
    );
}

/// SPEC §2 (hypervisor mode): 「a packet the instance sends with any other
/// source address is dropped (anti-spoofing), so no instance can pose as a
/// member of a group it is not in」. The built-ins of SPEC §3.7 need only the
/// unspecified address (DHCP DISCOVER, DAD) and link-local sources, which
/// stay allowed; posing as another instance must not be.
#[test]
fn spec_2_hypervisor_built_ins_do_not_bypass_anti_spoofing() {
    let h = Host::new(HYPERVISOR);
    // Still fine: DHCP before an address, ND from link-local or ::.
    assert_eq!(
        h.decide_on("tap-vm3", OUT, &udp("0.0.0.0", 68, "255.255.255.255", 67)),
        accepted(DecidedBy::BuiltIn(BuiltIn::DhcpClient))
    );
    assert_eq!(
        h.decide_on("tap-vm1", OUT, &icmp("fe80::11", "ff02::2", 133, 0)),
        accepted(DecidedBy::BuiltIn(BuiltIn::NeighborDiscovery))
    );
    assert_eq!(
        h.decide_on("tap-vm1", OUT, &icmp("::", "ff02::1:ff00:11", 135, 0)),
        accepted(DecidedBy::BuiltIn(BuiltIn::NeighborDiscovery))
    );
    // vm3 (sg-other) poses as vm1 (sg-app) with a DHCP-client-shaped packet.
    assert_eq!(
        h.decide_on("tap-vm3", OUT, &udp("10.0.0.11", 68, "10.0.0.12", 67)),
        dropped(DecidedBy::Spoofed)
    );
    // vm1 advertises an address that is not its own (NDP spoofing).
    assert_eq!(
        h.decide_on("tap-vm1", OUT, &icmp("2001:db8::12", "ff02::1", 136, 0)),
        dropped(DecidedBy::Spoofed)
    );
}
