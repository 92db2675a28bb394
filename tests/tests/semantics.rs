//! Exact security-group semantics (SPEC §2, §3) with real traffic, one
//! focused test per rule of the spec, in the style of Neutron's fullstack
//! security-group tests: every test builds its own namespaces and config,
//! starts `sgd` where the protected interface lives and judges connections
//! only by what gets through, in a table of probes ([`check`]). Blocked
//! means dropped, so a DROPPED probe gets no answer within
//! [`DEFAULT_TIMEOUT`] (one second).
//!
//! The server's interface is `sg0` (192.0.2.1, 2001:db8::1); clients are
//! 192.0.2.2.. and 2001:db8::2.. Only documentation addresses are used, plus
//! the metadata address 100.100.100.200 inside a client namespace.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use sg_daemon::api::{Counters, serde_json};
use sg_tests::*;

/// `ip` as an address.
fn ip(ip: &str) -> IpAddr {
    ip.parse().expect("an IP address")
}

/// `ip:port` as a socket address (IPv6 without brackets is fine: `"2001:db8::1"`).
fn sa(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(self::ip(ip), port)
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
    let (s, c) = (t.server(), t.client());
    let _srv = tcp_servers(s, &[s.v4(8000), s.v4(8001)]);
    // In each pair the weaker rule comes first in the file.
    let _sgd = enforce(
        s,
        &[Group::new("sg-prio").rules([
            accept_in("tcp", "8000/8000", "0.0.0.0/0").priority(2),
            drop_in("tcp", "8000/8000", "192.0.2.0/24").priority(1),
            drop_in("all", "-1/-1", "0.0.0.0/0").priority(2),
            accept_in("tcp", "8001/8001", "192.0.2.2").priority(1),
        ])],
    );
    #[rustfmt::skip]
    check(&[
        probe("drop at 1 beats accept at 2", Tcp(8000), c, s.ipv4(), DROPPED),
        probe("accept at 1 beats drop at 2", Tcp(8001), c, s.ipv4(), PASS),
    ]);
}

/// SPEC §3.2: at equal priority a drop comes before an accept, also when
/// the accept is first in the file.
#[test]
fn drop_wins_at_equal_priority() {
    let t = Topology::pair("tie").unwrap();
    let (s, c) = (t.server(), t.client());
    let _srv = tcp_servers(s, &[s.v4(8000), s.v4(8001), s.v6(8000)]);
    let _sgd = enforce(
        s,
        &[Group::new("sg-tie").rules([
            accept_in("tcp", "8000/8001", "0.0.0.0/0").priority(5),
            accept_in("tcp", "8000/8001", "::/0").priority(5),
            drop_in("tcp", "8000/8000", "192.0.2.2/32").priority(5),
            drop_in("tcp", "8000/8000", "2001:db8::/64").priority(5),
        ])],
    );
    #[rustfmt::skip]
    check(&[
        probe("drop and accept at 5",     Tcp(8000), c, s.ipv4(), DROPPED),
        probe("drop and accept at 5, v6", Tcp(8000), c, s.ipv6(), DROPPED),
        // The accept itself works where no drop of its priority matches.
        probe("accept at 5 alone",        Tcp(8001), c, s.ipv4(), PASS),
    ]);
}

/// SPEC §3.1/§3.2: the groups bound to one interface are merged into one
/// list: a rule of the second group opens a port, and a drop in one group
/// beats an accept of equal priority in another, in either group order.
#[test]
fn groups_bound_to_one_interface_are_merged() {
    let t = Topology::pair("merge").unwrap();
    let (s, c) = (t.server(), t.client());
    let _srv = tcp_servers(s, &[s.v4(80), s.v4(8080), s.v4(9000), s.v4(9001), s.v4(22)]);
    let _sgd = enforce(
        s,
        &[
            Group::new("sg-a").rules([
                accept_in("tcp", "80/80", "0.0.0.0/0"),
                accept_in("tcp", "9000/9000", "0.0.0.0/0").priority(10),
                drop_in("tcp", "9001/9001", "0.0.0.0/0").priority(10),
            ]),
            Group::new("sg-b").rules([
                accept_in("tcp", "8080/8080", "0.0.0.0/0"),
                drop_in("tcp", "9000/9000", "0.0.0.0/0").priority(10),
                accept_in("tcp", "9001/9001", "0.0.0.0/0").priority(10),
            ]),
        ],
    );
    #[rustfmt::skip]
    check(&[
        probe("accept of the first group",  Tcp(80),   c, s.ipv4(), PASS),
        probe("accept of the second group", Tcp(8080), c, s.ipv4(), PASS),
        probe("accept first, drop second",  Tcp(9000), c, s.ipv4(), DROPPED),
        probe("drop first, accept second",  Tcp(9001), c, s.ipv4(), DROPPED),
        probe("no rule",                    Tcp(22),   c, s.ipv4(), DROPPED),
    ]);
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
    let app = Group::new("sg-app").members([member.ipv4().to_string(), member.ipv6().to_string()]);
    let db = Group::new("sg-db").rules([accept_in("tcp", "5432/5432", "sg-app")]);
    let _sgd = Daemon::start(s, &format!("{app}{db}{}", interface(SERVER_IF, &["sg-db"]))).unwrap();
    #[rustfmt::skip]
    check(&[
        probe("member",               Tcp(5432), member,   s.ipv4(), PASS),
        probe("member, v6",           Tcp(5432), member,   s.ipv6(), PASS),
        // The member of sg-app is not a member of sg-db: only 5432 is open.
        probe("member, another port", Tcp(22),   member,   s.ipv4(), DROPPED),
        probe("stranger",             Tcp(5432), stranger, s.ipv4(), DROPPED),
        probe("stranger, v6",         Tcp(5432), stranger, s.ipv6(), DROPPED),
    ]);
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
    let _sgd = enforce(
        s,
        &[Group::basic("sg-app")
            .inner_access("accept")
            .members([member.ipv4().to_string(), member.ipv6().to_string()])],
    );
    #[rustfmt::skip]
    check(&[
        probe("member",               Tcp(22),   member,   s.ipv4(), PASS),
        probe("member, another port", Tcp(5000), member,   s.ipv4(), PASS),
        probe("member, v6",           Tcp(22),   member,   s.ipv6(), PASS),
        probe("member",               Ping,      member,   s.ipv4(), PASS),
        probe("stranger",             Tcp(22),   stranger, s.ipv4(), DROPPED),
        probe("stranger, v6",         Tcp(22),   stranger, s.ipv6(), DROPPED),
        probe("stranger",             Ping,      stranger, s.ipv4(), DROPPED),
    ]);
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
    let _sgd = enforce(
        s,
        &[Group::new("sg-iso")
            .inner_access("drop")
            .members([member.ipv4()])
            .rules([accept_in("tcp", "80/80", "sg-iso")])],
    );
    #[rustfmt::skip]
    check(&[
        probe("member, no rule",           Tcp(22), member,   s.ipv4(), DROPPED),
        probe("member, no rule",           Ping,    member,   s.ipv4(), DROPPED),
        probe("member, by the group rule", Tcp(80), member,   s.ipv4(), PASS),
        probe("stranger",                  Tcp(80), stranger, s.ipv4(), DROPPED),
    ]);
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
    let _sgd = enforce(
        s,
        &[
            Group::new("sg-iso")
                .inner_access("drop")
                .members([isolated.ipv4(), both.ipv4()]),
            Group::new("sg-open")
                .inner_access("accept")
                .members([open.ipv4(), both.ipv4()]),
        ],
    );
    #[rustfmt::skip]
    check(&[
        probe("member of the open group",     Tcp(22), open,     s.ipv4(), PASS),
        probe("member of both groups",        Tcp(22), both,     s.ipv4(), PASS),
        probe("member of the isolated group", Tcp(22), isolated, s.ipv4(), DROPPED),
    ]);
}

// ---------------------------------------------------------------------------
// §3.4: enterprise groups
// ---------------------------------------------------------------------------

/// SPEC §3.4 (enterprise): a group without rules drops inbound and outbound
/// alike, and has no intra-group default: a listed member is dropped too.
#[test]
fn enterprise_without_rules_drops_both_ways() {
    let t = Topology::pair("entdef").unwrap();
    let (s, c) = (t.server(), t.client());
    let _srv = tcp_servers(s, &[s.v4(22), s.v6(22)]);
    let _remote = tcp_servers(c, &[c.v4(8080), c.v6(8080)]);
    // The harness is sound: everything passes before enforcement.
    #[rustfmt::skip]
    check(&[
        probe("in, without sgd",  Tcp(22),   c, s.ipv4(), PASS),
        probe("out, without sgd", Tcp(8080), s, c.ipv4(), PASS),
    ]);

    let _sgd = enforce(s, &[Group::enterprise("sg-ent").members([c.ipv4()])]);
    #[rustfmt::skip]
    check(&[
        probe("in from a member",     Tcp(22),   c, s.ipv4(), DROPPED),
        probe("in from a member, v6", Tcp(22),   c, s.ipv6(), DROPPED),
        probe("out",                  Tcp(8080), s, c.ipv4(), DROPPED),
        probe("out, v6",              Tcp(8080), s, c.ipv6(), DROPPED),
        probe("out",                  Ping,      s, c.ipv4(), DROPPED),
        probe("out",                  Udp(8080), s, c.ipv4(), DROPPED),
    ]);
}

/// SPEC §3.4 (enterprise): an egress accept rule opens exactly what it
/// names; the replies of that traffic pass by the session, and other
/// outbound traffic stays dropped.
#[test]
fn enterprise_egress_rule_opens_outbound() {
    let t = Topology::pair("entout").unwrap();
    let (s, c) = (t.server(), t.client());
    let _remote = tcp_servers(c, &[c.v4(8080), c.v4(8081), c.v6(8080)]);
    let _sgd = enforce(
        s,
        &[Group::enterprise("sg-ent").rules([
            accept_out("tcp", "8080/8080", "192.0.2.0/24"),
            accept_out("tcp", "8080/8080", "2001:db8::/64"),
        ])],
    );
    #[rustfmt::skip]
    check(&[
        probe("out through the rule",     TcpEcho(8080), s, c.ipv4(), PASS),
        probe("out through the rule, v6", TcpEcho(8080), s, c.ipv6(), PASS),
        probe("out, another port",        Tcp(8081),     s, c.ipv4(), DROPPED),
        probe("out",                      Ping,          s, c.ipv4(), DROPPED),
    ]);
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
    let admins = prefix_list(
        "pl-admin",
        4,
        [
            format!("{}/32", trusted.ipv4()),
            format!("{}/128", trusted.ipv6()),
            "203.0.113.0/24".to_owned(),
        ],
    );
    let web = port_list("prl-web", 4, &["80/80", "8000/8001"]);
    let rules = groups_on(
        SERVER_IF,
        &[Group::new("sg-lists").rules([
            accept_in("tcp", "22/22", "pl-admin"),
            accept_in("tcp", "prl-web", "0.0.0.0/0"),
        ])],
    );
    let _sgd = Daemon::start(s, &format!("{admins}{web}{rules}")).unwrap();
    #[rustfmt::skip]
    check(&[
        probe("in the prefix list",          Tcp(22),   trusted, s.ipv4(), PASS),
        probe("in the prefix list, v6",      Tcp(22),   trusted, s.ipv6(), PASS),
        probe("outside the prefix list",     Tcp(22),   other,   s.ipv4(), DROPPED),
        probe("outside the prefix list, v6", Tcp(22),   other,   s.ipv6(), DROPPED),
        probe("in the port list",            Tcp(80),   other,   s.ipv4(), PASS),
        probe("in the port list",            Tcp(8000), other,   s.ipv4(), PASS),
        probe("in the port list",            Tcp(8001), other,   s.ipv4(), PASS),
        probe("outside the port list",       Tcp(8002), other,   s.ipv4(), DROPPED),
        probe("outside the port list",       Tcp(8080), other,   s.ipv4(), DROPPED),
    ]);
}

/// SPEC §2 (5-tuple extras): an ingress rule's `dest_cidr_ip` names the
/// local address it opens: with two addresses on the server, a port opened
/// on one of them stays closed on the other.
#[test]
fn five_tuple_ingress_dest_cidr_ip_selects_the_local_address() {
    let t = Topology::pair("5tdst").unwrap();
    let (s, c) = (t.server(), t.client());
    s.ip(&["addr", "add", "192.0.2.100/24", "dev", SERVER_IF])
        .unwrap();
    let _srv = tcp_servers(s, &[sa("0.0.0.0", 8080)]);
    #[rustfmt::skip]
    check(&[
        probe("second address, without sgd", Tcp(8080), c, ip("192.0.2.100"), PASS),
        probe("first address, without sgd",  Tcp(8080), c, s.ipv4(),          PASS),
    ]);

    let _sgd = enforce(
        s,
        &[Group::new("sg-5t")
            .rules([accept_in("tcp", "8080/8080", "0.0.0.0/0").local("192.0.2.100/32")])],
    );
    #[rustfmt::skip]
    check(&[
        probe("the rule's local address", Tcp(8080), c, ip("192.0.2.100"), PASS),
        probe("another local address",    Tcp(8080), c, s.ipv4(),          DROPPED),
    ]);
}

/// SPEC §2 (5-tuple extras): `source_port_range` admits a client only when
/// it connects from a source port in the range. Every attempt uses its own
/// source port, so no TIME_WAIT gets in the way.
#[test]
fn five_tuple_source_port_range() {
    let t = Topology::pair("5tsport").unwrap();
    let (s, c) = (t.server(), t.client());
    let _srv = tcp_servers(s, &[s.v4(8080), s.v6(8080)]);
    let _sgd = enforce(
        s,
        &[Group::new("sg-5t").rules([
            accept_in("tcp", "8080/8080", "0.0.0.0/0").source_ports("40000/40099"),
            accept_in("tcp", "8080/8080", "::/0").source_ports("40000/40099"),
        ])],
    );
    #[rustfmt::skip]
    check(&[
        probe("lowest source port",       Tcp(8080), (c, c.v4(40000)), s.ipv4(), PASS),
        probe("highest source port",      Tcp(8080), (c, c.v4(40099)), s.ipv4(), PASS),
        probe("source port in range, v6", Tcp(8080), (c, c.v6(40001)), s.ipv6(), PASS),
        probe("just below the range",     Tcp(8080), (c, c.v4(39999)), s.ipv4(), DROPPED),
        probe("just above the range",     Tcp(8080), (c, c.v4(40100)), s.ipv4(), DROPPED),
        probe("above the range, v6",      Tcp(8080), (c, c.v6(41001)), s.ipv6(), DROPPED),
    ]);
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
    let (s, c) = (t.server(), t.client());
    let _srv = tcp_servers(s, &[s.v6(80), s.v6(22)]);
    let _remote = tcp_servers(c, &[c.v6(8080)]);
    let config = groups_on(
        SERVER_IF,
        &[Group::new("sg-v6").rules([accept_in("tcp", "80/80", "::/0")])],
    );
    let flush = || {
        for ns in [s as &Netns, c] {
            ns.ip(&["-6", "neigh", "flush", "all"]).unwrap();
        }
    };
    let mut sgd = Daemon::start(s, &config).unwrap();
    // Inbound solicitation from the client, outbound advertisement.
    flush();
    check(&[probe("in over v6", TcpEcho(80), c, s.ipv6(), PASS)]);
    // Outbound solicitation from the server, inbound advertisement.
    flush();
    check(&[probe("out over v6", TcpEcho(8080), s, c.ipv6(), PASS)]);
    flush();
    #[rustfmt::skip]
    check(&[
        probe("in over v6, no rule", Tcp(22), c, s.ipv6(), DROPPED),
        probe("in over v6, no rule", Ping,    c, s.ipv6(), DROPPED),
    ]);

    let no_nd = format!("builtin_neighbor_discovery = false\n{config}");
    sgd.restart(s, &no_nd).unwrap();
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
/// although no inbound rule allows ICMP. IPv4 and IPv6, also when the
/// quoted IPv6 datagram has a destination-options header (SPEC §3.9: the
/// quote's extension headers are walked too).
#[test]
fn related_icmp_error_is_delivered() {
    let t = Topology::pair("relicmp").unwrap();
    let (s, c) = (t.server(), t.client());
    // The harness is sound: the error comes back without sgd.
    #[rustfmt::skip]
    check(&[
        probe("port unreachable, without sgd",     UdpToClosed(9000), s, c.ipv4(), PASS),
        probe("port unreachable, without sgd, v6", UdpToClosed(9000), s, c.ipv6(), PASS),
        probe("with options, without sgd",  UdpToClosedDestOpts(9000), s, c.ipv6(), PASS),
    ]);

    let _sgd = enforce(
        s,
        &[Group::new("sg-web").rules([accept_in("tcp", "80/80", "0.0.0.0/0")])],
    );
    #[rustfmt::skip]
    check(&[
        // ICMP is not otherwise admitted.
        probe("unrelated ICMP",               Ping,              c, s.ipv4(), DROPPED),
        probe("related port unreachable",     UdpToClosed(9001), s, c.ipv4(), PASS),
        probe("related port unreachable, v6", UdpToClosed(9001), s, c.ipv6(), PASS),
        probe("quoting destination options",  UdpToClosedDestOpts(9002), s, c.ipv6(), PASS),
    ]);
}

/// SPEC §3.7 (PMTUD built-in): ICMP "fragmentation needed" and ICMPv6
/// "packet too big" from a router that no rule allows reach the server, which
/// lowers its path MTU, so a large TCP transfer across a narrower link
/// succeeds. The rules admit only TCP 8080 from the far host.
#[test]
fn pmtud_from_a_router_no_rule_allows() {
    let p = NarrowPath::new("pmtud").unwrap();
    let s = &p.server;
    let _srv = tcp_servers(s, &[sa("192.0.2.1", 8080), sa("2001:db8::1", 8080)]);
    let _sgd = enforce(
        s,
        &[Group::new("sg-far").rules([
            accept_in("tcp", "8080/8080", "198.51.100.2/32"),
            accept_in("tcp", "8080/8080", "2001:db8:1::2/128"),
        ])],
    );
    #[rustfmt::skip]
    check(&[
        probe("the router, which no rule admits", Tcp(8080), &p.router, ip("192.0.2.1"), DROPPED),
    ]);
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
    let (s, c) = (t.server(), t.client());
    c.ip(&["addr", "add", "100.100.100.200/32", "dev", CLIENT_IF])
        .unwrap();
    s.ip(&["route", "add", "100.100.100.200/32", "dev", SERVER_IF])
        .unwrap();
    let metadata = ip("100.100.100.200");
    let _srv = tcp_servers(c, &[SocketAddr::new(metadata, 80), c.v4(80)]);
    #[rustfmt::skip]
    check(&[probe("metadata, without sgd", Tcp(80), s, metadata, PASS)]);

    let drop_all_out = drop_out("all", "-1/-1", "0.0.0.0/0").priority(1);
    let drop_all_in = drop_in("all", "-1/-1", "0.0.0.0/0").priority(1);
    let locked = |rules: Vec<Rule>| groups_on(SERVER_IF, &[Group::new("sg-locked").rules(rules)]);
    #[rustfmt::skip]
    let rows = [
        probe("metadata",                    TcpEcho(80), s, metadata, PASS),
        probe("the same host's own address", Tcp(80),     s, c.ipv4(), DROPPED),
    ];
    let mut sgd = Daemon::start(s, &locked(vec![drop_all_out.clone()])).unwrap();
    check(&rows);
    sgd.reload_with(&locked(vec![drop_all_out, drop_all_in]))
        .unwrap();
    check(&rows);
}

/// An egress group that accepts everything, IPv4 and IPv6, and inbound 25.
fn accept_all_out() -> String {
    groups_on(
        SERVER_IF,
        &[Group::new("sg-mail").rules([
            accept_in("tcp", "25/25", "0.0.0.0/0"),
            accept_out("all", "-1/-1", "0.0.0.0/0"),
            accept_out("all", "-1/-1", "::/0"),
        ])],
    )
}

/// SPEC §3.8: outbound TCP to port 25 is dropped by default even when an
/// egress rule accepts everything (IPv4 and IPv6); 465 passes; inbound 25 is
/// not restricted.
#[test]
fn smtp_egress_is_blocked_by_default() {
    let t = Topology::pair("smtp").unwrap();
    let (s, c) = (t.server(), t.client());
    let _remote = tcp_servers(c, &[c.v4(25), c.v6(25), c.v4(465), c.v6(465)]);
    let _srv = tcp_servers(s, &[s.v4(25)]);
    let _sgd = Daemon::start(s, &accept_all_out()).unwrap();
    #[rustfmt::skip]
    check(&[
        probe("smtp out",           Tcp(25),      s, c.ipv4(), DROPPED),
        probe("smtp out, v6",       Tcp(25),      s, c.ipv6(), DROPPED),
        probe("submission out",     TcpEcho(465), s, c.ipv4(), PASS),
        probe("submission out, v6", TcpEcho(465), s, c.ipv6(), PASS),
        probe("smtp in",            Tcp(25),      c, s.ipv4(), PASS),
    ]);
}

/// SPEC §3.8: with `block_smtp_egress = false` outbound TCP to port 25
/// passes like any other (465 as before).
#[test]
fn smtp_egress_allowed_when_switched_off() {
    let t = Topology::pair("smtpoff").unwrap();
    let (s, c) = (t.server(), t.client());
    let _remote = tcp_servers(c, &[c.v4(25), c.v6(25), c.v4(465)]);
    let config = format!("block_smtp_egress = false\n{}", accept_all_out());
    let _sgd = Daemon::start(s, &config).unwrap();
    #[rustfmt::skip]
    check(&[
        probe("smtp out",       TcpEcho(25),  s, c.ipv4(), PASS),
        probe("smtp out, v6",   TcpEcho(25),  s, c.ipv6(), PASS),
        probe("submission out", TcpEcho(465), s, c.ipv4(), PASS),
    ]);
}

/// SPEC §3.8: switching `block_smtp_egress` on (a reload) ends the SMTP
/// connections opened while it was off, IPv4 and IPv6; a connection to 465
/// goes on.
#[test]
fn smtp_block_switched_on_ends_live_smtp_connections() {
    let t = Topology::pair("smtpon").unwrap();
    let (s, c) = (t.server(), t.client());
    let _remote = tcp_servers(c, &[c.v4(25), c.v6(25), c.v4(465)]);
    let mut sgd = Daemon::start(
        s,
        &format!("block_smtp_egress = false\n{}", accept_all_out()),
    )
    .unwrap();
    let open = |dst| TcpConn::open(s, None, dst, DEFAULT_TIMEOUT).unwrap();
    let mut conns = [
        ("smtp", open(c.v4(25)), false),
        ("smtp, v6", open(c.v6(25)), false),
        ("submission", open(c.v4(465)), true),
    ];
    for (what, conn, _) in &mut conns {
        conn.echo(b"EHLO")
            .unwrap_or_else(|e| panic!("{what}, block off: {e:#}"));
    }
    sgd.reload_with(&accept_all_out()).unwrap();
    let wrong: Vec<String> = conns
        .iter_mut()
        .filter_map(|(what, conn, survives)| {
            let got = conn.echo(b"MAIL FROM:<a@example.com>");
            (got.is_ok() != *survives).then(|| format!("{what}: {got:?}"))
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "after the block was switched on, these did not end (smtp) or go on (submission): {wrong:?}"
    );
}

/// SPEC §3.7 (`builtin_non_ip = false`): frames that are not IP are
/// dropped (counted as `not-ip-dropped`), but ARP passes, so IPv4 still
/// works on a segment with empty neighbour caches; IPv6 neighbour
/// discovery is its own built-in.
#[test]
fn non_ip_switched_off_drops_other_frames_but_keeps_arp() {
    let t = Topology::pair("nonip").unwrap();
    let (s, c) = (t.server(), t.client());
    let _srv = tcp_servers(s, &[s.v4(80), s.v6(80)]);
    let _remote = tcp_servers(c, &[c.v4(8080)]);
    let web = groups_on(
        SERVER_IF,
        &[Group::new("sg-web").rules([
            accept_in("tcp", "80/80", "0.0.0.0/0"),
            accept_in("tcp", "80/80", "::/0"),
        ])],
    );
    let sgd = Daemon::start(s, &format!("builtin_non_ip = false\n{web}")).unwrap();
    for ns in [s as &Netns, c] {
        ns.ip(&["neigh", "flush", "all"]).unwrap();
    }
    #[rustfmt::skip]
    check(&[
        probe("in over v4, after ARP",  TcpEcho(80),   c, s.ipv4(), PASS),
        probe("out over v4",            TcpEcho(8080), s, c.ipv4(), PASS),
        probe("in over v6, after ND",   TcpEcho(80),   c, s.ipv6(), PASS),
    ]);
    // Frames of an experimental ethertype from the client.
    let frame = sg_tests::frames::ethernet(0x88b5, &[0x55; 46]);
    for _ in 0..3 {
        send_frame(c, CLIENT_IF, &frame).unwrap();
    }
    let counters: Counters = {
        let text = sgd.ctl().ok(&["--output", "json", "counters"]);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    };
    let count = |reason: &str| {
        let found = counters.reasons.iter().find(|r| r.reason == reason);
        found.map_or(0, |r| r.packets)
    };
    assert!(count("not-ip-dropped") >= 3, "{counters:?}");
    assert!(count("not-ip") > 0, "ARP was not counted: {counters:?}");
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
    let (s, c) = (t.server(), t.client());
    let _srv = tcp_servers(s, &[s.v4(8080)]);
    let db = |rules: Vec<Rule>| groups_on(SERVER_IF, &[Group::new("sg-db").rules(rules)]);
    let accept = accept_in("tcp", "8080/8080", "0.0.0.0/0");
    let unrelated_drop = drop_in("tcp", "9090/9090", "0.0.0.0/0");
    let matching_drop = drop_in("tcp", "8080/8080", "192.0.2.2/32");

    let mut sgd = Daemon::start(s, &db(vec![accept])).unwrap();
    let mut conn = TcpConn::open(c, None, s.v4(8080), DEFAULT_TIMEOUT).unwrap();
    conn.echo(b"admitted by the rule").unwrap();

    sgd.reload_with(&db(vec![])).unwrap();
    conn.echo(b"still there after the rule went")
        .expect("the established session ended when its rule was removed");
    #[rustfmt::skip]
    check(&[probe("a new connection", Tcp(8080), c, s.ipv4(), DROPPED)]);

    sgd.reload_with(&db(vec![unrelated_drop])).unwrap();
    conn.echo(b"a drop rule for another port")
        .expect("a drop rule that does not match the session ended it");

    sgd.reload_with(&db(vec![matching_drop])).unwrap();
    assert!(
        conn.echo(b"now dropped").is_err(),
        "the session survived an explicit drop rule that matches it"
    );
}

/// SPEC §3.6 「no packet of it passes either way while that rule stays
/// (neither side can reopen it)」: a server pushes a line every 100 ms to
/// a connected client; a reload brings a priority-1 drop rule for the
/// client's address. The client stops receiving at once and for good:
/// the server's pushes (which the basic egress default would accept) do
/// not open the session again, and `sgctl sessions` shows it ended.
#[test]
fn a_drop_rule_cuts_off_a_pushing_server_for_good() {
    let t = Topology::pair("push").unwrap();
    let (s, c) = (t.server(), t.client());
    let pusher = Pusher::start(s, s.v4(7000), Duration::from_millis(100)).unwrap();
    let open = accept_in("tcp", "7000/7000", "0.0.0.0/0").priority(2);
    let block = drop_in("all", "-1/-1", c.ipv4()).priority(1);
    let push = |rules: Vec<Rule>| groups_on(SERVER_IF, &[Group::new("sg-push").rules(rules)]);
    let mut sgd = Daemon::start(s, &push(vec![open.clone()])).unwrap();
    let client = PushClient::connect(c, pusher.addr()).unwrap();
    assert!(
        client.wait_for(5, Duration::from_secs(3)),
        "the client got {} lines before the drop rule",
        client.lines()
    );

    sgd.reload_with(&push(vec![open, block])).unwrap();
    let written = pusher.written();
    let later = client.lines_later_than(
        Instant::now(),
        Duration::from_millis(300),
        Duration::from_secs(3),
    );
    assert_eq!(
        later, 0,
        "lines arrived after the drop rule: the session came back"
    );
    assert!(
        pusher.written() >= written + 20,
        "the server stopped writing ({} lines before the rule, {} now)",
        written,
        pusher.written()
    );
    let port = client.local_addr().port().to_string();
    let sessions = sgd.ctl().ok(&["sessions", "--interface", SERVER_IF]);
    let flow: Vec<&str> = sessions.lines().filter(|l| l.contains(&port)).collect();
    assert!(
        flow.len() == 1 && flow[0].contains("ended"),
        "the session is not (only) ended:\n{sessions}"
    );
    let (server, client_ip) = (s.ipv4().to_string(), c.ipv4().to_string());
    #[rustfmt::skip]
    let diagnosis = sgd.ctl().ok(&[
        "diagnose", SERVER_IF, "--direction", "egress", "--protocol", "tcp",
        "--src", &server, "--src-port", "7000", "--dst", &client_ip, "--dst-port", &port,
    ]);
    assert!(diagnosis.starts_with("drop (session-ended"), "{diagnosis}");
}

/// SPEC §3.9 (fragments): a 3000-byte UDP datagram over a 1500-byte MTU
/// travels as fragments; the non-first ones carry no ports and follow the
/// first one's verdict, so the datagram (and its fragmented echo) is
/// delivered to an open port, over IPv4 and IPv6, and not to a closed one;
/// also when an IPv6 destination-options header sits after the Fragment
/// header (the later fragments then name it, not UDP, as next header;
/// those are built by hand, as Linux puts it before the Fragment header).
#[test]
fn fragmented_udp_follows_the_first_fragment() {
    let t = Topology::pair("frag").unwrap();
    let (s, c) = (t.server(), t.client());
    let _echo = udp_servers(s, &[s.v4(7000), s.v6(7000), s.v4(7001), s.v6(7001)]);
    #[rustfmt::skip]
    #[rustfmt::skip]
    check(&[
        probe("fragmented, without sgd",              UdpBytes(7001, 3000),         c, s.ipv4(), PASS),
        probe("fragmented, options, without sgd, v6", UdpFragmentsOptionsAfter(7001, 3000), c, s.ipv6(), PASS),
    ]);
    let _sgd = enforce(
        s,
        &[Group::new("sg-udp").rules([
            accept_in("udp", "7000/7000", "0.0.0.0/0"),
            accept_in("udp", "7000/7000", "::/0"),
        ])],
    );
    #[rustfmt::skip]
    check(&[
        probe("unfragmented, open port",     UdpBytes(7000, 100),  c, s.ipv4(), PASS),
        probe("fragmented, open port",       UdpBytes(7000, 3000), c, s.ipv4(), PASS),
        probe("fragmented, open port, v6",   UdpBytes(7000, 3000), c, s.ipv6(), PASS),
        probe("fragmented, closed port",     UdpBytes(7001, 3000), c, s.ipv4(), DROPPED),
        probe("fragmented, closed port, v6", UdpBytes(7001, 3000), c, s.ipv6(), DROPPED),
        probe("fragmented, options, v6",     UdpFragmentsOptionsAfter(7000, 3000), c, s.ipv6(), PASS),
        probe("fragmented, options, closed", UdpFragmentsOptionsAfter(7001, 3000), c, s.ipv6(), DROPPED),
    ]);
}

// ---------------------------------------------------------------------------
// §2 (interface binding), hypervisor mode
// ---------------------------------------------------------------------------

/// Instances A, B and C behind one bridge, on ports `vm-a`, `vm-b`, `vm-c`.
fn hypervisor(label: &str) -> Hypervisor {
    Hypervisor::new(
        label,
        &[
            ("vm-a", "192.0.2.11/24"),
            ("vm-b", "192.0.2.12/24"),
            ("vm-c", "192.0.2.13/24"),
        ],
    )
    .unwrap()
}

/// The hypervisor config: instances A and B in `sg-app` (basic, intra-group
/// accept, with one more member 192.0.2.99 on another host), instance C in
/// `sg-other`; every port bound in hypervisor mode with its address.
fn hypervisor_config() -> String {
    let app = Group::basic("sg-app")
        .inner_access("accept")
        .members(["192.0.2.99"]);
    let other = Group::new("sg-other");
    let a = interface("vm-a", &["sg-app"]).hypervisor(&["192.0.2.11"]);
    let b = interface("vm-b", &["sg-app"]).hypervisor(&["192.0.2.12"]);
    let c = interface("vm-c", &["sg-other"]).hypervisor(&["192.0.2.13"]);
    format!("{app}{other}{a}{b}{c}")
}

/// SPEC §2 (hypervisor mode, anti-spoofing) and §3.4: two instances behind
/// one bridge in one basic group reach each other on any port; a third
/// instance outside the group does not; and an instance sending from an
/// address that is not its own is dropped, even though that address is a
/// member of the group.
#[test]
fn hypervisor_mode_intra_group_and_anti_spoofing() {
    let hv = hypervisor("hv");
    let [a, b, c] = hv.vms() else { unreachable!() };
    a.ip(&["addr", "add", "192.0.2.99/24", "dev", "eth0"])
        .unwrap();
    let _srv = tcp_servers(b, &[sa("192.0.2.12", 22), sa("192.0.2.12", 5000)]);
    let _srv_a = tcp_servers(a, &[sa("192.0.2.11", 22)]);
    let (a_ip, b_ip) = (ip("192.0.2.11"), ip("192.0.2.12"));
    let spoofed = (a, sa("192.0.2.99", 0));
    // The harness is sound: everything passes before enforcement.
    #[rustfmt::skip]
    check(&[
        probe("A as a member elsewhere, without sgd", Tcp(22), spoofed, b_ip, PASS),
        probe("C, without sgd",                       Tcp(22), c,       b_ip, PASS),
    ]);

    let _sgd = Daemon::start(hv.host(), &hypervisor_config()).unwrap();
    #[rustfmt::skip]
    check(&[
        probe("A to B, same group",        Tcp(22),   a,                        b_ip, PASS),
        probe("A to B, any port",          Tcp(5000), a,                        b_ip, PASS),
        probe("B to A, same group",        Tcp(22),   b,                        a_ip, PASS),
        probe("C to B, another group",     Tcp(22),   c,                        b_ip, DROPPED),
        probe("A from a member's address", Tcp(22),   spoofed,                  b_ip, DROPPED),
        // Its own address still works afterwards.
        probe("A from its own address",    Tcp(5000), (a, sa("192.0.2.11", 0)), b_ip, PASS),
    ]);
}

/// SPEC §2 (anti-spoofing): an instance outside a group cannot pose as one
/// of its members by sending from a member's address.
#[test]
fn hypervisor_instance_cannot_pose_as_a_member() {
    let hv = hypervisor("hvpose");
    let [_, b, c] = hv.vms() else { unreachable!() };
    // 192.0.2.99 is a member of sg-app that lives on another host.
    c.ip(&["addr", "add", "192.0.2.99/24", "dev", "eth0"])
        .unwrap();
    let _srv = tcp_servers(b, &[sa("192.0.2.12", 22)]);
    let b_ip = ip("192.0.2.12");
    let posing = (c, sa("192.0.2.99", 0));
    #[rustfmt::skip]
    check(&[probe("C as a member, without sgd", Tcp(22), posing, b_ip, PASS)]);

    let _sgd = Daemon::start(hv.host(), &hypervisor_config()).unwrap();
    #[rustfmt::skip]
    check(&[
        probe("C as a member", Tcp(22), posing, b_ip, DROPPED),
        probe("C as itself",   Tcp(22), c,      b_ip, DROPPED),
    ]);
}
