//! Exact security-group semantics (SPEC §2, §3) with real traffic, one
//! focused test per rule of the spec, in the style of Neutron's fullstack
//! security-group tests: every test builds its own namespaces and config,
//! starts `sgd` where the protected interface lives and judges connections
//! only by what gets through. Blocked means dropped, so a blocked probe
//! times out (after [`DEFAULT_TIMEOUT`], one second).
//!
//! The server's interface is `sg0` (192.0.2.1, 2001:db8::1); clients are
//! 192.0.2.2.. and 2001:db8::2.. Only documentation addresses are used, plus
//! the metadata address 100.100.100.200 inside a client namespace.

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use sg_tests::*;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// `ip:port` as a socket address (IPv6 without brackets is fine: `"2001:db8::1"`).
fn sa(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse::<IpAddr>().expect("an IP address"), port)
}

/// Asserts the outcome of a TCP handshake from `ns` (from `src` if given).
#[track_caller]
fn assert_tcp_outcome(ns: &Netns, src: Option<SocketAddr>, dst: SocketAddr, expected: Outcome) {
    let got = tcp_connect_from(ns, src, dst, DEFAULT_TIMEOUT);
    assert!(
        got == expected,
        "TCP from netns {} ({}) to {dst}: expected {expected:?}, got {got:?}",
        ns.name(),
        src.map_or("any source".to_owned(), |s| s.to_string()),
    );
}

/// The wildcard address of `dst`'s family, port 0.
fn unspecified(dst: SocketAddr) -> SocketAddr {
    let any: IpAddr = if dst.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    SocketAddr::new(any, 0)
}

/// Sends a datagram of `len` bytes from `ns` to a UDP echo server at `dst`
/// and says whether the whole datagram came back within `timeout`.
fn udp_echo_len(ns: &Netns, dst: SocketAddr, len: usize, timeout: Duration) -> bool {
    let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let socket = ns
        .run_in(|| UdpSocket::bind(unspecified(dst)))
        .expect("UDP socket in the client namespace");
    socket.send_to(&payload, dst).expect("UDP send");
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        socket.set_read_timeout(Some(left)).unwrap();
        match socket.recv_from(&mut buf) {
            Ok((n, from)) if from == dst && buf[..n] == payload[..] => return true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// Sends one datagram from a connected UDP socket in `ns` to `dst`, where
/// nothing listens, and says whether the peer's ICMP port unreachable came
/// back (the socket's next `recv` fails with ECONNREFUSED) within
/// [`DEFAULT_TIMEOUT`].
fn udp_refused(ns: &Netns, dst: SocketAddr) -> bool {
    let socket = ns
        .run_in(|| UdpSocket::bind(unspecified(dst)))
        .expect("UDP socket");
    socket.connect(dst).expect("UDP connect");
    socket.set_read_timeout(Some(DEFAULT_TIMEOUT)).unwrap();
    socket.send(b"is anybody there?").expect("UDP send");
    let mut buf = [0u8; 64];
    match socket.recv(&mut buf) {
        Err(e) => e.kind() == ErrorKind::ConnectionRefused,
        Ok(_) => panic!("a datagram came back from {dst}, where nothing should listen"),
    }
}

/// Starts a TCP echo server on each of `addrs` in `ns`.
fn tcp_servers(ns: &Netns, addrs: &[SocketAddr]) -> Vec<TcpServer> {
    addrs
        .iter()
        .map(|a| TcpServer::start(ns, *a).unwrap())
        .collect()
}

// ---------------------------------------------------------------------------
// §3.2, §3.3: order of the merged rule list
// ---------------------------------------------------------------------------

/// SPEC §3.2/§3.3: rules are sorted by priority (1 is the strongest) and the
/// first match decides, whatever their order in the file: a priority-1 drop
/// beats a priority-2 accept, and a priority-1 accept beats a priority-2
/// drop.
#[test]
fn priority_decides_between_accept_and_drop() {
    let t = Topology::pair("prio").unwrap();
    let s = t.server();
    let _srv = tcp_servers(s, &[s.v4(8000), s.v4(8001)]);
    let dirs = DaemonDirs::new().unwrap();
    // In each pair the weaker rule comes first in the file.
    let _sgd = Sgd::start(
        s,
        &dirs.config(
            r#"
[[security_group]]
id = "sg-prio"
  [[security_group.ingress]]
  policy = "accept"
  priority = 2
  ip_protocol = "tcp"
  port_range = "8000/8000"
  source_cidr_ip = "0.0.0.0/0"
  [[security_group.ingress]]
  policy = "drop"
  priority = 1
  ip_protocol = "tcp"
  port_range = "8000/8000"
  source_cidr_ip = "192.0.2.0/24"

  [[security_group.ingress]]
  policy = "drop"
  priority = 2
  ip_protocol = "all"
  port_range = "-1/-1"
  source_cidr_ip = "0.0.0.0/0"
  [[security_group.ingress]]
  policy = "accept"
  priority = 1
  ip_protocol = "tcp"
  port_range = "8001/8001"
  source_cidr_ip = "192.0.2.2"
[[interface]]
name = "sg0"
security_groups = ["sg-prio"]
"#,
        ),
    )
    .unwrap();
    assert_tcp_blocked(t.client(), s.v4(8000));
    assert_tcp_allowed(t.client(), s.v4(8001));
}

/// SPEC §3.2: at equal priority a drop comes before an accept, also when
/// the accept is first in the file.
#[test]
fn drop_wins_at_equal_priority() {
    let t = Topology::pair("tie").unwrap();
    let s = t.server();
    let _srv = tcp_servers(s, &[s.v4(8000), s.v4(8001), s.v6(8000)]);
    let dirs = DaemonDirs::new().unwrap();
    let _sgd = Sgd::start(
        s,
        &dirs.config(
            r#"
[[security_group]]
id = "sg-tie"
  [[security_group.ingress]]
  policy = "accept"
  priority = 5
  ip_protocol = "tcp"
  port_range = "8000/8001"
  source_cidr_ip = "0.0.0.0/0"
  [[security_group.ingress]]
  policy = "accept"
  priority = 5
  ip_protocol = "tcp"
  port_range = "8000/8001"
  source_cidr_ip = "::/0"
  [[security_group.ingress]]
  policy = "drop"
  priority = 5
  ip_protocol = "tcp"
  port_range = "8000/8000"
  source_cidr_ip = "192.0.2.2/32"
  [[security_group.ingress]]
  policy = "drop"
  priority = 5
  ip_protocol = "tcp"
  port_range = "8000/8000"
  source_cidr_ip = "2001:db8::/64"
[[interface]]
name = "sg0"
security_groups = ["sg-tie"]
"#,
        ),
    )
    .unwrap();
    assert_tcp_blocked(t.client(), s.v4(8000));
    assert_tcp_blocked(t.client(), s.v6(8000));
    // The accept itself works where no drop of its priority matches.
    assert_tcp_allowed(t.client(), s.v4(8001));
}

/// SPEC §3.1/§3.2: the groups bound to one interface are merged into one
/// list: a rule of the second group opens a port, and a drop in one group
/// beats an accept of equal priority in another, in either group order.
#[test]
fn groups_bound_to_one_interface_are_merged() {
    let t = Topology::pair("merge").unwrap();
    let s = t.server();
    let _srv = tcp_servers(s, &[s.v4(80), s.v4(8080), s.v4(9000), s.v4(9001), s.v4(22)]);
    let dirs = DaemonDirs::new().unwrap();
    let _sgd = Sgd::start(
        s,
        &dirs.config(
            r#"
[[security_group]]
id = "sg-a"
  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range = "80/80"
  source_cidr_ip = "0.0.0.0/0"
  [[security_group.ingress]]
  policy = "accept"
  priority = 10
  ip_protocol = "tcp"
  port_range = "9000/9000"
  source_cidr_ip = "0.0.0.0/0"
  [[security_group.ingress]]
  policy = "drop"
  priority = 10
  ip_protocol = "tcp"
  port_range = "9001/9001"
  source_cidr_ip = "0.0.0.0/0"

[[security_group]]
id = "sg-b"
  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range = "8080/8080"
  source_cidr_ip = "0.0.0.0/0"
  [[security_group.ingress]]
  policy = "drop"
  priority = 10
  ip_protocol = "tcp"
  port_range = "9000/9000"
  source_cidr_ip = "0.0.0.0/0"
  [[security_group.ingress]]
  policy = "accept"
  priority = 10
  ip_protocol = "tcp"
  port_range = "9001/9001"
  source_cidr_ip = "0.0.0.0/0"

[[interface]]
name = "sg0"
security_groups = ["sg-a", "sg-b"]
"#,
        ),
    )
    .unwrap();
    assert_tcp_allowed(t.client(), s.v4(80));
    assert_tcp_allowed(t.client(), s.v4(8080));
    // Accept in the first group, drop in the second: drop.
    assert_tcp_blocked(t.client(), s.v4(9000));
    // Drop in the first group, accept in the second: drop.
    assert_tcp_blocked(t.client(), s.v4(9001));
    assert_tcp_blocked(t.client(), s.v4(22));
}

// ---------------------------------------------------------------------------
// §2, §3.4: group references and the intra-group default
// ---------------------------------------------------------------------------

/// SPEC §2 (rule `source_group_id`): a rule that references a group admits
/// that group's members (its listed `members`), on the rule's port only, and
/// nobody else.
#[test]
fn group_reference_admits_members_only() {
    let t = Topology::lan("gref", 2).unwrap();
    let s = t.server();
    let (member, stranger) = (t.client(), t.client2());
    let _srv = tcp_servers(s, &[s.v4(5432), s.v6(5432), s.v4(22)]);
    let dirs = DaemonDirs::new().unwrap();
    let config = format!(
        r#"
[[security_group]]
id = "sg-app"
members = ["{}", "{}"]

[[security_group]]
id = "sg-db"
  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range = "5432/5432"
  source_group_id = "sg-app"

[[interface]]
name = "sg0"
security_groups = ["sg-db"]
"#,
        member.ipv4(),
        member.ipv6()
    );
    let _sgd = Sgd::start(s, &dirs.config(&config)).unwrap();
    assert_tcp_allowed(member, s.v4(5432));
    assert_tcp_allowed(member, s.v6(5432));
    // The member of sg-app is not a member of sg-db: only 5432 is open.
    assert_tcp_blocked(member, s.v4(22));
    assert_tcp_blocked(stranger, s.v4(5432));
    assert_tcp_blocked(stranger, s.v6(5432));
}

/// SPEC §3.4 (basic default): with `inner_access_policy = "accept"` a member
/// of the bound group reaches every port without any rule; a non-member
/// reaches none.
#[test]
fn inner_access_accept_admits_members_on_any_port() {
    let t = Topology::lan("inacc", 2).unwrap();
    let s = t.server();
    let (member, stranger) = (t.client(), t.client2());
    let _srv = tcp_servers(s, &[s.v4(22), s.v4(5000), s.v6(22)]);
    let dirs = DaemonDirs::new().unwrap();
    let config = format!(
        r#"
[[security_group]]
id = "sg-app"
type = "basic"
inner_access_policy = "accept"
members = ["{}", "{}"]

[[interface]]
name = "sg0"
security_groups = ["sg-app"]
"#,
        member.ipv4(),
        member.ipv6()
    );
    let _sgd = Sgd::start(s, &dirs.config(&config)).unwrap();
    assert_tcp_allowed(member, s.v4(22));
    assert_tcp_allowed(member, s.v4(5000));
    assert_tcp_allowed(member, s.v6(22));
    assert_ping(member, s.ipv4().into(), true);
    assert_tcp_blocked(stranger, s.v4(22));
    assert_tcp_blocked(stranger, s.v6(22));
    assert_ping(stranger, s.ipv4().into(), false);
}

/// SPEC §3.4: a group in internal isolation (`inner_access_policy =
/// "drop"`) grants its members nothing by default; a rule that references
/// the group still admits them on its port.
#[test]
fn inner_access_drop_isolates_members() {
    let t = Topology::lan("indrop", 2).unwrap();
    let s = t.server();
    let (member, stranger) = (t.client(), t.client2());
    let _srv = tcp_servers(s, &[s.v4(22), s.v4(80)]);
    let dirs = DaemonDirs::new().unwrap();
    let config = format!(
        r#"
[[security_group]]
id = "sg-iso"
inner_access_policy = "drop"
members = ["{}"]
  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range = "80/80"
  source_group_id = "sg-iso"

[[interface]]
name = "sg0"
security_groups = ["sg-iso"]
"#,
        member.ipv4()
    );
    let _sgd = Sgd::start(s, &dirs.config(&config)).unwrap();
    assert_tcp_blocked(member, s.v4(22));
    assert_ping(member, s.ipv4().into(), false);
    assert_tcp_allowed(member, s.v4(80));
    assert_tcp_blocked(stranger, s.v4(80));
}

/// SPEC §3.4: with several bound groups, the intra-group default is granted
/// to members of any bound group whose policy is accept, and not to members
/// only of an isolated one.
#[test]
fn inner_access_is_granted_by_any_accepting_bound_group() {
    let t = Topology::lan("inany", 3).unwrap();
    let s = t.server();
    let (isolated, open, both) = (&t.clients()[0], &t.clients()[1], &t.clients()[2]);
    let _srv = tcp_servers(s, &[s.v4(22)]);
    let dirs = DaemonDirs::new().unwrap();
    let config = format!(
        r#"
[[security_group]]
id = "sg-iso"
inner_access_policy = "drop"
members = ["{iso}", "{both}"]

[[security_group]]
id = "sg-open"
inner_access_policy = "accept"
members = ["{open}", "{both}"]

[[interface]]
name = "sg0"
security_groups = ["sg-iso", "sg-open"]
"#,
        iso = isolated.ipv4(),
        open = open.ipv4(),
        both = both.ipv4(),
    );
    let _sgd = Sgd::start(s, &dirs.config(&config)).unwrap();
    assert_tcp_allowed(open, s.v4(22));
    assert_tcp_allowed(both, s.v4(22));
    assert_tcp_blocked(isolated, s.v4(22));
}

// ---------------------------------------------------------------------------
// §3.4: enterprise groups
// ---------------------------------------------------------------------------

/// SPEC §3.4 (enterprise): a group without rules drops inbound and outbound
/// alike, and has no intra-group default: a listed member is dropped too.
#[test]
fn enterprise_without_rules_drops_both_ways() {
    let t = Topology::pair("entdef").unwrap();
    let s = t.server();
    let c = t.client();
    let _srv = tcp_servers(s, &[s.v4(22), s.v6(22)]);
    let _remote = tcp_servers(c, &[c.v4(8080), c.v6(8080)]);
    // The harness is sound: everything passes before enforcement.
    assert_tcp_allowed(c, s.v4(22));
    assert_tcp_allowed(s, c.v4(8080));

    let dirs = DaemonDirs::new().unwrap();
    let config = format!(
        r#"
[[security_group]]
id = "sg-ent"
type = "enterprise"
members = ["{}"]

[[interface]]
name = "sg0"
security_groups = ["sg-ent"]
"#,
        c.ipv4()
    );
    let _sgd = Sgd::start(s, &dirs.config(&config)).unwrap();
    assert_tcp_blocked(c, s.v4(22));
    assert_tcp_blocked(c, s.v6(22));
    assert_tcp_outcome(s, None, c.v4(8080), Outcome::TimedOut);
    assert_tcp_outcome(s, None, c.v6(8080), Outcome::TimedOut);
    assert_ping(s, c.ipv4().into(), false);
    assert_udp(s, c.v4(8080), false);
}

/// SPEC §3.4 (enterprise): an egress accept rule opens exactly what it
/// names; the replies of that traffic pass by the session, and other
/// outbound traffic stays dropped.
#[test]
fn enterprise_egress_rule_opens_outbound() {
    let t = Topology::pair("entout").unwrap();
    let s = t.server();
    let c = t.client();
    let _remote = tcp_servers(c, &[c.v4(8080), c.v4(8081), c.v6(8080)]);
    let dirs = DaemonDirs::new().unwrap();
    let _sgd = Sgd::start(
        s,
        &dirs.config(
            r#"
[[security_group]]
id = "sg-ent"
type = "enterprise"
  [[security_group.egress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range = "8080/8080"
  dest_cidr_ip = "192.0.2.0/24"
  [[security_group.egress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range = "8080/8080"
  dest_cidr_ip = "2001:db8::/64"

[[interface]]
name = "sg0"
security_groups = ["sg-ent"]
"#,
        ),
    )
    .unwrap();
    tcp_echo(s, c.v4(8080), b"out through the rule").unwrap();
    tcp_echo(s, c.v6(8080), b"out through the rule, v6").unwrap();
    assert_tcp_outcome(s, None, c.v4(8081), Outcome::TimedOut);
    assert_ping(s, c.ipv4().into(), false);
}

// ---------------------------------------------------------------------------
// §2: prefix lists, port lists, 5-tuple rules
// ---------------------------------------------------------------------------

/// SPEC §2 (prefix list / port list): `source_prefix_list_id` matches every
/// entry of the list, IPv4 and IPv6, and `port_range_list_id` every port
/// range of the list; addresses and ports outside the lists stay dropped.
#[test]
fn prefix_lists_and_port_lists() {
    let t = Topology::lan("lists", 2).unwrap();
    let s = t.server();
    let (trusted, other) = (t.client(), t.client2());
    let _srv = tcp_servers(
        s,
        &[
            s.v4(22),
            s.v6(22),
            s.v4(80),
            s.v4(8000),
            s.v4(8001),
            s.v4(8002),
            s.v4(8080),
        ],
    );
    let dirs = DaemonDirs::new().unwrap();
    let config = format!(
        r#"
[[prefix_list]]
id = "pl-admin"
max_entries = 4
entries = ["{}/32", "{}/128", "203.0.113.0/24"]

[[port_list]]
id = "prl-web"
max_entries = 4
entries = ["80/80", "8000/8001"]

[[security_group]]
id = "sg-lists"
  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range = "22/22"
  source_prefix_list_id = "pl-admin"
  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range_list_id = "prl-web"
  source_cidr_ip = "0.0.0.0/0"

[[interface]]
name = "sg0"
security_groups = ["sg-lists"]
"#,
        trusted.ipv4(),
        trusted.ipv6()
    );
    let _sgd = Sgd::start(s, &dirs.config(&config)).unwrap();
    assert_tcp_allowed(trusted, s.v4(22));
    assert_tcp_allowed(trusted, s.v6(22));
    assert_tcp_blocked(other, s.v4(22));
    assert_tcp_blocked(other, s.v6(22));
    for port in [80, 8000, 8001] {
        assert_tcp_allowed(other, s.v4(port));
    }
    assert_tcp_blocked(other, s.v4(8002));
    assert_tcp_blocked(other, s.v4(8080));
}

/// SPEC §2 (5-tuple extras): an ingress rule's `dest_cidr_ip` names the
/// local address it opens: with two addresses on the server, a port opened
/// on one of them stays closed on the other.
#[test]
fn five_tuple_ingress_dest_cidr_ip_selects_the_local_address() {
    let t = Topology::pair("5tdst").unwrap();
    let s = t.server();
    s.ip(&["addr", "add", "192.0.2.100/24", "dev", SERVER_IF])
        .unwrap();
    let _srv = tcp_servers(s, &[sa("0.0.0.0", 8080)]);
    assert_tcp_allowed(t.client(), sa("192.0.2.100", 8080));
    assert_tcp_allowed(t.client(), s.v4(8080));

    let dirs = DaemonDirs::new().unwrap();
    let _sgd = Sgd::start(
        s,
        &dirs.config(
            r#"
[[security_group]]
id = "sg-5t"
  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range = "8080/8080"
  source_cidr_ip = "0.0.0.0/0"
  dest_cidr_ip = "192.0.2.100/32"

[[interface]]
name = "sg0"
security_groups = ["sg-5t"]
"#,
        ),
    )
    .unwrap();
    assert_tcp_allowed(t.client(), sa("192.0.2.100", 8080));
    assert_tcp_blocked(t.client(), s.v4(8080));
}

/// SPEC §2 (5-tuple extras): `source_port_range` admits a client only when
/// it connects from a source port in the range. Every attempt uses its own
/// source port, so no TIME_WAIT gets in the way.
#[test]
fn five_tuple_source_port_range() {
    let t = Topology::pair("5tsport").unwrap();
    let s = t.server();
    let c = t.client();
    let _srv = tcp_servers(s, &[s.v4(8080), s.v6(8080)]);
    let dirs = DaemonDirs::new().unwrap();
    let _sgd = Sgd::start(
        s,
        &dirs.config(
            r#"
[[security_group]]
id = "sg-5t"
  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range = "8080/8080"
  source_port_range = "40000/40099"
  source_cidr_ip = "0.0.0.0/0"
  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range = "8080/8080"
  source_port_range = "40000/40099"
  source_cidr_ip = "::/0"

[[interface]]
name = "sg0"
security_groups = ["sg-5t"]
"#,
        ),
    )
    .unwrap();
    let v4 = |port| Some(SocketAddr::new(c.ipv4().into(), port));
    let v6 = |port| Some(SocketAddr::new(c.ipv6().into(), port));
    assert_tcp_outcome(c, v4(40000), s.v4(8080), Outcome::Connected);
    assert_tcp_outcome(c, v4(40099), s.v4(8080), Outcome::Connected);
    assert_tcp_outcome(c, v6(40001), s.v6(8080), Outcome::Connected);
    assert_tcp_outcome(c, v4(39999), s.v4(8080), Outcome::TimedOut);
    assert_tcp_outcome(c, v4(40100), s.v4(8080), Outcome::TimedOut);
    assert_tcp_outcome(c, v6(41001), s.v6(8080), Outcome::TimedOut);
}

// ---------------------------------------------------------------------------
// §3.7, §3.9: IPv6 and built-ins
// ---------------------------------------------------------------------------

/// SPEC §3.7/§3.9: on a fresh segment with empty neighbour caches, TCP over
/// IPv6 to an opened port works without any ICMPv6 rule (neighbour
/// discovery is built in, both ways), and an unopened IPv6 port is dropped.
/// As a control, the same connection fails once the built-in is switched off
/// (`builtin_neighbor_discovery = false`, README), so it is really the
/// built-in that carries the neighbour discovery.
#[test]
fn ipv6_with_neighbour_discovery_and_no_icmpv6_rule() {
    let t = Topology::pair("v6nd").unwrap();
    let s = t.server();
    let c = t.client();
    let _srv = tcp_servers(s, &[s.v6(80), s.v6(22)]);
    let _remote = tcp_servers(c, &[c.v6(8080)]);
    let config = r#"
[[security_group]]
id = "sg-v6"
  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range = "80/80"
  source_cidr_ip = "::/0"

[[interface]]
name = "sg0"
security_groups = ["sg-v6"]
"#;
    let flush = || {
        for ns in [s as &Netns, c] {
            ns.ip(&["-6", "neigh", "flush", "all"]).unwrap();
        }
    };
    let dirs = DaemonDirs::new().unwrap();
    let mut sgd = Sgd::start(s, &dirs.config(config)).unwrap();
    // Inbound solicitation from the client, outbound advertisement.
    flush();
    tcp_echo(c, s.v6(80), b"over v6").unwrap();
    // Outbound solicitation from the server, inbound advertisement.
    flush();
    tcp_echo(s, c.v6(8080), b"out over v6").unwrap();
    flush();
    assert_tcp_blocked(c, s.v6(22));
    assert_ping(c, s.ipv6().into(), false);

    sgd.stop().unwrap();
    let no_nd = format!("builtin_neighbor_discovery = false\n{config}");
    let _sgd = Sgd::start(s, &dirs.config(&no_nd)).unwrap();
    flush();
    let got = tcp_connect(c, s.v6(80), DEFAULT_TIMEOUT);
    assert!(
        got != Outcome::Connected,
        "IPv6 TCP connected with neighbour discovery neither built in nor allowed by a rule"
    );
}

/// SPEC §3.5 (related ICMP): the server sends UDP to a client port where
/// nothing listens; the client's ICMP port unreachable quotes the tracked
/// session and is delivered (the connected socket sees ECONNREFUSED),
/// although no inbound rule allows ICMP. IPv4 and IPv6.
#[test]
fn related_icmp_error_is_delivered() {
    let t = Topology::pair("relicmp").unwrap();
    let s = t.server();
    let c = t.client();
    // The harness is sound: the error comes back without sgd.
    assert!(
        udp_refused(s, c.v4(9000)),
        "no port unreachable without sgd"
    );
    assert!(
        udp_refused(s, c.v6(9000)),
        "no IPv6 port unreachable without sgd"
    );

    let dirs = DaemonDirs::new().unwrap();
    let _sgd = Sgd::start(
        s,
        &dirs.config(
            r#"
[[security_group]]
id = "sg-web"
  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range = "80/80"
  source_cidr_ip = "0.0.0.0/0"

[[interface]]
name = "sg0"
security_groups = ["sg-web"]
"#,
        ),
    )
    .unwrap();
    // ICMP is not otherwise admitted.
    assert_ping(c, s.ipv4().into(), false);
    assert!(
        udp_refused(s, c.v4(9001)),
        "the ICMP port unreachable for the server's UDP session was dropped"
    );
    assert!(
        udp_refused(s, c.v6(9001)),
        "the ICMPv6 port unreachable for the server's UDP session was dropped"
    );
}

/// The server, a router and a far host:
/// `S sg0 (192.0.2.1, 2001:db8::1) -- R (192.0.2.254 | 198.51.100.254) --
/// F f0 (198.51.100.2, 2001:db8:1::2)`, with MTU 1500 on the server's link
/// and 1280 on the far one. F's route back advertises an MSS for a 1500-byte
/// path, so the server's full-sized segments need PMTUD: the router answers
/// them with ICMP "fragmentation needed" / ICMPv6 "packet too big".
struct NarrowPath {
    server: Netns,
    router: Netns,
    far: Netns,
}

impl NarrowPath {
    fn new(label: &str) -> NarrowPath {
        let server = Netns::new(&format!("{label}-s")).unwrap();
        let router = Netns::new(&format!("{label}-r")).unwrap();
        let far = Netns::new(&format!("{label}-f")).unwrap();
        veth_pair(
            &server,
            SERVER_IF,
            &["192.0.2.1/24", "2001:db8::1/64"],
            &router,
            "r0",
            &["192.0.2.254/24", "2001:db8::fe/64"],
        )
        .unwrap();
        veth_pair(
            &router,
            "r1",
            &["198.51.100.254/24", "2001:db8:1::fe/64"],
            &far,
            "f0",
            &["198.51.100.2/24", "2001:db8:1::2/64"],
        )
        .unwrap();
        router.ip(&["link", "set", "r1", "mtu", "1280"]).unwrap();
        far.ip(&["link", "set", "f0", "mtu", "1280"]).unwrap();
        router
            .exec(&[
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
                "net.ipv6.conf.all.forwarding=1",
            ])
            .unwrap();
        server
            .ip(&["route", "add", "198.51.100.0/24", "via", "192.0.2.254"])
            .unwrap();
        server
            .ip(&[
                "-6",
                "route",
                "add",
                "2001:db8:1::/64",
                "via",
                "2001:db8::fe",
            ])
            .unwrap();
        far.ip(&[
            "route",
            "add",
            "192.0.2.0/24",
            "via",
            "198.51.100.254",
            "advmss",
            "1460",
        ])
        .unwrap();
        far.ip(&[
            "-6",
            "route",
            "add",
            "2001:db8::/64",
            "via",
            "2001:db8:1::fe",
            "advmss",
            "1440",
        ])
        .unwrap();
        NarrowPath {
            server,
            router,
            far,
        }
    }
}

/// SPEC §3.7 (PMTUD built-in): ICMP "fragmentation needed" and ICMPv6
/// "packet too big" from a router that no rule allows reach the server, which
/// lowers its path MTU, so a large TCP transfer across a narrower link
/// succeeds. The rules admit only TCP 8080 from the far host.
#[test]
fn pmtud_from_a_router_no_rule_allows() {
    let p = NarrowPath::new("pmtud");
    let s = &p.server;
    let _srv = tcp_servers(s, &[sa("192.0.2.1", 8080), sa("2001:db8::1", 8080)]);
    let dirs = DaemonDirs::new().unwrap();
    let _sgd = Sgd::start(
        s,
        &dirs.config(
            r#"
[[security_group]]
id = "sg-far"
  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range = "8080/8080"
  source_cidr_ip = "198.51.100.2/32"
  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range = "8080/8080"
  source_cidr_ip = "2001:db8:1::2/128"

[[interface]]
name = "sg0"
security_groups = ["sg-far"]
"#,
        ),
    )
    .unwrap();
    // The router is not admitted by any rule.
    assert_tcp_outcome(&p.router, None, sa("192.0.2.1", 8080), Outcome::TimedOut);
    let payload: Vec<u8> = (0..48 * 1024).map(|i| (i % 253) as u8).collect();
    for (dst, far_addr) in [
        (sa("192.0.2.1", 8080), "198.51.100.2"),
        (sa("2001:db8::1", 8080), "2001:db8:1::2"),
    ] {
        let before = s.ip(&["route", "get", far_addr]).unwrap();
        assert!(!before.contains("mtu 1280"), "{before}");
        let mut conn = TcpConn::open(&p.far, None, dst, Duration::from_secs(5)).unwrap();
        conn.echo(&payload)
            .unwrap_or_else(|e| panic!("large echo from {far_addr} to {dst}: {e:#}"));
        let route = s.ip(&["route", "get", far_addr]).unwrap();
        assert!(
            route.contains("mtu 1280"),
            "the server did not learn the path MTU to {far_addr}: {route}"
        );
    }
}

/// SPEC §3.7 (metadata built-in): with an egress rule dropping everything,
/// the server still reaches the metadata service 100.100.100.200 and gets
/// its replies, but not the same host's ordinary address; an inbound
/// drop-all rule does not stop the metadata replies either.
#[test]
fn metadata_is_reachable_despite_drop_all_egress() {
    let t = Topology::pair("meta").unwrap();
    let s = t.server();
    let c = t.client();
    c.ip(&["addr", "add", "100.100.100.200/32", "dev", CLIENT_IF])
        .unwrap();
    s.ip(&["route", "add", "100.100.100.200/32", "dev", SERVER_IF])
        .unwrap();
    let metadata = sa("100.100.100.200", 80);
    let _srv = tcp_servers(c, &[metadata, c.v4(80)]);
    assert_tcp_allowed(s, metadata);

    let locked = r#"
[[security_group]]
id = "sg-locked"
  [[security_group.egress]]
  policy = "drop"
  priority = 1
  ip_protocol = "all"
  port_range = "-1/-1"
  dest_cidr_ip = "0.0.0.0/0"
"#;
    let binding = "\n[[interface]]\nname = \"sg0\"\nsecurity_groups = [\"sg-locked\"]\n";
    let dirs = DaemonDirs::new().unwrap();
    let mut sgd = Sgd::start(s, &dirs.config(&format!("{locked}{binding}"))).unwrap();
    tcp_echo(s, metadata, b"GET /latest/meta-data/ HTTP/1.0\r\n\r\n").unwrap();
    assert_tcp_outcome(s, None, c.v4(80), Outcome::TimedOut);

    let both = format!(
        r#"{locked}
  [[security_group.ingress]]
  policy = "drop"
  priority = 1
  ip_protocol = "all"
  port_range = "-1/-1"
  source_cidr_ip = "0.0.0.0/0"
{binding}"#
    );
    sgd.write_config(&dirs.config(&both)).unwrap();
    sgd.reload().unwrap();
    tcp_echo(s, metadata, b"GET /latest/meta-data/ HTTP/1.0\r\n\r\n").unwrap();
    assert_tcp_outcome(s, None, c.v4(80), Outcome::TimedOut);
}

/// An egress group that accepts everything, IPv4 and IPv6.
const ACCEPT_ALL_OUT: &str = r#"
[[security_group]]
id = "sg-mail"
  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range = "25/25"
  source_cidr_ip = "0.0.0.0/0"
  [[security_group.egress]]
  policy = "accept"
  ip_protocol = "all"
  port_range = "-1/-1"
  dest_cidr_ip = "0.0.0.0/0"
  [[security_group.egress]]
  policy = "accept"
  ip_protocol = "all"
  port_range = "-1/-1"
  dest_cidr_ip = "::/0"

[[interface]]
name = "sg0"
security_groups = ["sg-mail"]
"#;

/// SPEC §3.8: outbound TCP to port 25 is dropped by default even when an
/// egress rule accepts everything (IPv4 and IPv6); 465 passes; inbound 25 is
/// not restricted.
#[test]
fn smtp_egress_is_blocked_by_default() {
    let t = Topology::pair("smtp").unwrap();
    let s = t.server();
    let c = t.client();
    let _remote = tcp_servers(c, &[c.v4(25), c.v6(25), c.v4(465), c.v6(465)]);
    let _srv = tcp_servers(s, &[s.v4(25)]);
    let dirs = DaemonDirs::new().unwrap();
    let _sgd = Sgd::start(s, &dirs.config(ACCEPT_ALL_OUT)).unwrap();
    assert_tcp_outcome(s, None, c.v4(25), Outcome::TimedOut);
    assert_tcp_outcome(s, None, c.v6(25), Outcome::TimedOut);
    tcp_echo(s, c.v4(465), b"EHLO").unwrap();
    tcp_echo(s, c.v6(465), b"EHLO").unwrap();
    assert_tcp_allowed(c, s.v4(25));
}

/// SPEC §3.8: with `block_smtp_egress = false` outbound TCP to port 25
/// passes like any other (465 as before).
#[test]
fn smtp_egress_allowed_when_switched_off() {
    let t = Topology::pair("smtpoff").unwrap();
    let s = t.server();
    let c = t.client();
    let _remote = tcp_servers(c, &[c.v4(25), c.v6(25), c.v4(465)]);
    let dirs = DaemonDirs::new().unwrap();
    let config = format!("block_smtp_egress = false\n{ACCEPT_ALL_OUT}");
    let _sgd = Sgd::start(s, &dirs.config(&config)).unwrap();
    tcp_echo(s, c.v4(25), b"EHLO").unwrap();
    tcp_echo(s, c.v6(25), b"EHLO").unwrap();
    tcp_echo(s, c.v4(465), b"EHLO").unwrap();
}

// ---------------------------------------------------------------------------
// §3.5, §3.6: sessions
// ---------------------------------------------------------------------------

/// SPEC §3.6: removing the rule that admitted a session leaves the session
/// alone (a new connection is dropped); a drop rule that does not match the
/// session leaves it alone too; an explicit drop rule that matches it ends
/// it at its next packet.
#[test]
fn session_survives_rule_removal_and_ends_on_a_matching_drop() {
    let t = Topology::pair("sess").unwrap();
    let s = t.server();
    let c = t.client();
    let _srv = tcp_servers(s, &[s.v4(8080)]);
    let group = |rules: &str| {
        format!(
            "\n[[security_group]]\nid = \"sg-db\"\n{rules}\n[[interface]]\nname = \"sg0\"\nsecurity_groups = [\"sg-db\"]\n"
        )
    };
    let accept = r#"
  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range = "8080/8080"
  source_cidr_ip = "0.0.0.0/0"
"#;
    let unrelated_drop = r#"
  [[security_group.ingress]]
  policy = "drop"
  ip_protocol = "tcp"
  port_range = "9090/9090"
  source_cidr_ip = "0.0.0.0/0"
"#;
    let matching_drop = r#"
  [[security_group.ingress]]
  policy = "drop"
  ip_protocol = "tcp"
  port_range = "8080/8080"
  source_cidr_ip = "192.0.2.2/32"
"#;
    let dirs = DaemonDirs::new().unwrap();
    let mut sgd = Sgd::start(s, &dirs.config(&group(accept))).unwrap();
    let mut conn = TcpConn::open(c, None, s.v4(8080), DEFAULT_TIMEOUT).unwrap();
    conn.echo(b"admitted by the rule").unwrap();

    sgd.write_config(&dirs.config(&group(""))).unwrap();
    sgd.reload().unwrap();
    conn.echo(b"still there after the rule went")
        .expect("the established session ended when its rule was removed");
    assert_tcp_blocked(c, s.v4(8080));

    sgd.write_config(&dirs.config(&group(unrelated_drop)))
        .unwrap();
    sgd.reload().unwrap();
    conn.echo(b"a drop rule for another port")
        .expect("a drop rule that does not match the session ended it");

    sgd.write_config(&dirs.config(&group(matching_drop)))
        .unwrap();
    sgd.reload().unwrap();
    assert!(
        conn.echo(b"now dropped").is_err(),
        "the session survived an explicit drop rule that matches it"
    );
}

/// SPEC §3.9 (fragments): a 3000-byte UDP datagram over a 1500-byte MTU
/// travels as fragments; the non-first ones carry no ports and follow the
/// first one's verdict, so the datagram (and its fragmented echo) is
/// delivered to an open port, over IPv4 and IPv6, and not to a closed one.
#[test]
fn fragmented_udp_follows_the_first_fragment() {
    let t = Topology::pair("frag").unwrap();
    let s = t.server();
    let c = t.client();
    let _echo: Vec<_> = [s.v4(7000), s.v6(7000), s.v4(7001), s.v6(7001)]
        .into_iter()
        .map(|a| UdpServer::start(s, a).unwrap())
        .collect();
    assert!(
        udp_echo_len(c, s.v4(7001), 3000, DEFAULT_TIMEOUT),
        "no echo of a fragmented datagram without sgd"
    );
    let dirs = DaemonDirs::new().unwrap();
    let _sgd = Sgd::start(
        s,
        &dirs.config(
            r#"
[[security_group]]
id = "sg-udp"
  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "udp"
  port_range = "7000/7000"
  source_cidr_ip = "0.0.0.0/0"
  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "udp"
  port_range = "7000/7000"
  source_cidr_ip = "::/0"

[[interface]]
name = "sg0"
security_groups = ["sg-udp"]
"#,
        ),
    )
    .unwrap();
    // Unfragmented, the rule works.
    assert!(udp_echo_len(c, s.v4(7000), 100, DEFAULT_TIMEOUT));
    assert!(
        udp_echo_len(c, s.v4(7000), 3000, DEFAULT_TIMEOUT),
        "a fragmented IPv4 datagram to an open port was not delivered"
    );
    assert!(
        udp_echo_len(c, s.v6(7000), 3000, DEFAULT_TIMEOUT),
        "a fragmented IPv6 datagram to an open port was not delivered"
    );
    assert!(
        !udp_echo_len(c, s.v4(7001), 3000, DEFAULT_TIMEOUT),
        "a fragmented IPv4 datagram to a closed port was delivered"
    );
    assert!(
        !udp_echo_len(c, s.v6(7001), 3000, DEFAULT_TIMEOUT),
        "a fragmented IPv6 datagram to a closed port was delivered"
    );
}

// ---------------------------------------------------------------------------
// §2 (interface binding), hypervisor mode
// ---------------------------------------------------------------------------

/// A hypervisor: a "host" namespace with a bridge `br0` and, for each
/// instance, a namespace whose `eth0` is joined by a veth to a port `vm-X`
/// of the bridge. `sgd` runs in the host namespace and enforces on the
/// `vm-X` ports (TC ingress there is the instance's outbound).
struct Hypervisor {
    host: Netns,
    vms: Vec<Netns>,
}

impl Hypervisor {
    /// One instance per `(port, address)`, address in CIDR notation.
    fn new(label: &str, vms: &[(&str, &str)]) -> Hypervisor {
        let host = Netns::new(&format!("{label}-h")).unwrap();
        host.ip(&[
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])
        .unwrap();
        host.ip(&["link", "set", "br0", "up"]).unwrap();
        let vms = vms
            .iter()
            .map(|(port, addr)| {
                let vm = Netns::new(&format!("{label}-{port}")).unwrap();
                veth_pair(&vm, "eth0", &[addr], &host, port, &[]).unwrap();
                host.ip(&["link", "set", port, "master", "br0"]).unwrap();
                vm
            })
            .collect();
        host.wait_link_up("br0").unwrap();
        Hypervisor { host, vms }
    }
}

/// The hypervisor config: instances A and B in `sg-app` (basic, intra-group
/// accept, with one more member 192.0.2.99 on another host), instance C in
/// `sg-other`; every port bound in hypervisor mode with its address.
const HYPERVISOR: &str = r#"
[[security_group]]
id = "sg-app"
type = "basic"
inner_access_policy = "accept"
members = ["192.0.2.99"]

[[security_group]]
id = "sg-other"

[[interface]]
name = "vm-a"
mode = "hypervisor"
addresses = ["192.0.2.11"]
security_groups = ["sg-app"]

[[interface]]
name = "vm-b"
mode = "hypervisor"
addresses = ["192.0.2.12"]
security_groups = ["sg-app"]

[[interface]]
name = "vm-c"
mode = "hypervisor"
addresses = ["192.0.2.13"]
security_groups = ["sg-other"]
"#;

/// SPEC §2 (hypervisor mode, anti-spoofing) and §3.4: two instances behind
/// one bridge in one basic group reach each other on any port; a third
/// instance outside the group does not; and an instance sending from an
/// address that is not its own is dropped, even though that address is a
/// member of the group.
#[test]
fn hypervisor_mode_intra_group_and_anti_spoofing() {
    let hv = Hypervisor::new(
        "hv",
        &[
            ("vm-a", "192.0.2.11/24"),
            ("vm-b", "192.0.2.12/24"),
            ("vm-c", "192.0.2.13/24"),
        ],
    );
    let (a, b, c) = (&hv.vms[0], &hv.vms[1], &hv.vms[2]);
    a.ip(&["addr", "add", "192.0.2.99/24", "dev", "eth0"])
        .unwrap();
    let _srv = tcp_servers(b, &[sa("192.0.2.12", 22), sa("192.0.2.12", 5000)]);
    let _srv_a = tcp_servers(a, &[sa("192.0.2.11", 22)]);
    let spoofed = Some(sa("192.0.2.99", 0));
    // The harness is sound: everything passes before enforcement.
    assert_tcp_outcome(a, spoofed, sa("192.0.2.12", 22), Outcome::Connected);
    assert_tcp_allowed(c, sa("192.0.2.12", 22));

    let dirs = DaemonDirs::new().unwrap();
    let _sgd = Sgd::start(&hv.host, &dirs.config(HYPERVISOR)).unwrap();
    assert_tcp_allowed(a, sa("192.0.2.12", 22));
    assert_tcp_allowed(a, sa("192.0.2.12", 5000));
    assert_tcp_allowed(b, sa("192.0.2.11", 22));
    assert_tcp_blocked(c, sa("192.0.2.12", 22));
    assert_tcp_outcome(a, spoofed, sa("192.0.2.12", 22), Outcome::TimedOut);
    // Its own address still works afterwards.
    assert_tcp_outcome(
        a,
        Some(sa("192.0.2.11", 0)),
        sa("192.0.2.12", 5000),
        Outcome::Connected,
    );
}

/// SPEC §2 (anti-spoofing): an instance outside a group cannot pose as one
/// of its members by sending from a member's address.
#[test]
fn hypervisor_instance_cannot_pose_as_a_member() {
    let hv = Hypervisor::new(
        "hvpose",
        &[
            ("vm-a", "192.0.2.11/24"),
            ("vm-b", "192.0.2.12/24"),
            ("vm-c", "192.0.2.13/24"),
        ],
    );
    let (b, c) = (&hv.vms[1], &hv.vms[2]);
    // 192.0.2.99 is a member of sg-app that lives on another host.
    c.ip(&["addr", "add", "192.0.2.99/24", "dev", "eth0"])
        .unwrap();
    let _srv = tcp_servers(b, &[sa("192.0.2.12", 22)]);
    let posing = Some(sa("192.0.2.99", 0));
    assert_tcp_outcome(c, posing, sa("192.0.2.12", 22), Outcome::Connected);

    let dirs = DaemonDirs::new().unwrap();
    let _sgd = Sgd::start(&hv.host, &dirs.config(HYPERVISOR)).unwrap();
    assert_tcp_outcome(c, posing, sa("192.0.2.12", 22), Outcome::TimedOut);
    assert_tcp_blocked(c, sa("192.0.2.12", 22));
}
