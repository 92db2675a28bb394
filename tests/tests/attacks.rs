//! The attacker's view (issue #8): traffic built to get past the rules,
//! and what each attempt must get.
//!
//! - With real traffic between namespaces: traffic the rules forbid, sent
//!   the way that used to slip past the classifier, must not get an
//!   answer. Each such test shows first that the same traffic is answered
//!   without sg (or where a rule allows it), so that "no answer" means
//!   "dropped by sg". The server is `sg0` (192.0.2.1, 2001:db8::1), the
//!   attacker a client (192.0.2.2, 2001:db8::2).
//! - With crafted frames through the loaded program (`BPF_PROG_TEST_RUN`,
//!   `common`): each test a table of cases run in order.
//!
//! Only documentation addresses are used.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use common::{Kernel, case};
use sg_common::Reason::*;
use sg_daemon::dataplane::Hook::{Egress, Ingress};
use sg_tests::frames::{
    self, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, IPV6_DEST_OPTIONS as DSTOPTS, TCP, UDP,
};
use sg_tests::wire::{self, PacketSocket};
use sg_tests::*;

// ---------------------------------------------------------------------------
// Link layers: L3 devices, link types, VLAN stacks
// ---------------------------------------------------------------------------

/// SSH is not open: only HTTP is, from anywhere, IPv4 and IPv6.
fn web() -> Group {
    Group::new("sg-web").rules([
        accept_in("tcp", "80/80", "0.0.0.0/0"),
        accept_in("tcp", "80/80", "::/0"),
    ])
}

/// An L3 device (TUN: no link header, like WireGuard or an IP tunnel) is
/// enforced like any other: a SYN to a port without a rule gets no answer,
/// one to an open port does, IPv4 and IPv6. The classifier used to read
/// the IP header as Ethernet there, and let nearly everything pass as "not
/// IP".
#[test]
fn an_l3_device_is_enforced() {
    let t = TunPair::new("l3").unwrap();
    let (s, c) = (t.server(), t.client());
    let _srv = tcp_servers(s, &[s.v4(22), s.v6(22), s.v4(80), s.v6(80)]);
    #[rustfmt::skip]
    check(&[
        probe("ssh over the TUN link, no sg", Tcp(22), c, s.ipv4(), PASS),
        probe("ssh v6 over the TUN link",     Tcp(22), c, s.ipv6(), PASS),
    ]);
    let _sgd = enforce(s, &[web()]);
    #[rustfmt::skip]
    check(&[
        probe("ssh, no rule",    Tcp(22), c, s.ipv4(), DROPPED),
        probe("ssh v6, no rule", Tcp(22), c, s.ipv6(), DROPPED),
        probe("ping, no rule",   Ping,    c, s.ipv4(), DROPPED),
        probe("http",            Tcp(80), c, s.ipv4(), PASS),
        probe("http v6",         Tcp(80), c, s.ipv6(), PASS),
    ]);
}

/// `ARPHRD_INFINIBAND`: a link type sg does not parse.
const ARPHRD_INFINIBAND: u16 = 32;

/// A bound interface of a link type sg cannot parse is not enforced and
/// not attached (never enforced wrongly), and the daemon says why: in its
/// log, in the reload's answer and in `sgctl interface list`.
#[test]
fn a_link_type_sg_cannot_parse_is_refused_with_the_reason() {
    let ns = Netns::new("l3-odd").unwrap();
    let tun = Tun::open(&ns, SERVER_IF).unwrap();
    tun.set_link_type(ARPHRD_INFINIBAND).unwrap();
    ns.ip(&["link", "set", tun.name(), "up"]).unwrap();
    let sgd = enforce(&ns, &[web()]);
    let why = "sg0 not enforced: link type 32 (infiniband) is not supported";
    let reload = sgd.ctl().ok(&["reload"]);
    assert!(reload.contains(why), "reload answer: {reload}");
    let interfaces = sgd.ctl().ok(&["interface", "list"]);
    assert!(
        interfaces.contains("yes, not enforced: link type 32 (infiniband)"),
        "sgctl interface list: {interfaces}"
    );
    let log = sgd.log();
    assert!(
        log.contains("not enforced: link type 32 (infiniband) is not supported"),
        "sgd log: {log}"
    );
    let links = std::fs::read_dir(sgd.dirs().bpffs_dir().join("links"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(links, 0, "nothing may be attached");
}

/// One crafted SYN: the VLAN tags it carries on the wire (all VLAN 0,
/// priority tags, which the receiving kernel strips and then treats the
/// packet as untagged), its destination, and whether it must be answered.
struct Tagged {
    what: &'static str,
    tags: &'static [u16],
    to: SocketAddr,
    answered: bool,
}

/// Sends each crafted SYN from the client's interface to the server and
/// panics naming every one whose answer (a SYN-ACK or a reset) was not as
/// expected.
fn check_tagged(t: &Topology, cases: &[Tagged]) {
    let (s, c) = (t.server(), t.client());
    let socket = PacketSocket::open(c, c.ifname()).unwrap();
    let (server_mac, client_mac) = (
        wire::mac_of(s, s.ifname()).unwrap(),
        wire::mac_of(c, c.ifname()).unwrap(),
    );
    // Each SYN from a source port of its own: no answer is mistaken for
    // another's.
    static NEXT_PORT: AtomicU16 = AtomicU16::new(41000);
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            let from = SocketAddr::new(
                if case.to.is_ipv4() {
                    c.ipv4().into()
                } else {
                    c.ipv6().into()
                },
                NEXT_PORT.fetch_add(1, Ordering::Relaxed),
            );
            let ethertype = if case.to.is_ipv4() {
                ETH_P_IP
            } else {
                ETH_P_IPV6
            };
            let frame = frames::tagged(case.tags, 0, ethertype, &wire::tcp_syn(from, case.to));
            socket
                .send(&wire::address(frame, server_mac, client_mac))
                .unwrap();
            let answered =
                socket.wait_for(Duration::from_secs(1), |f| wire::is_tcp(f, case.to, from));
            (answered != case.answered).then(|| {
                format!(
                    "  {}: expected {}, got {}",
                    case.what,
                    answer(case.answered),
                    answer(answered)
                )
            })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} crafted SYNs failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn answer(yes: bool) -> &'static str {
    if yes { "an answer" } else { "no answer" }
}

/// A row of [`check_tagged`].
fn tagged(what: &'static str, tags: &'static [u16], to: SocketAddr, answered: bool) -> Tagged {
    Tagged {
        what,
        tags,
        to,
        answered,
    }
}

/// QinQ and deeper VLAN stacks to a blocked port get no answer. The
/// receiving kernel takes the outer tag off before TC sees the frame, so
/// three tags on the wire are two in front of the classifier, which used
/// to walk one and pass the rest as "not IP"; the kernel then stripped the
/// priority tags and its TCP stack answered. Now two tags are walked and
/// the rules decide; behind more, the packet is dropped as malformed.
#[test]
fn vlan_stacks_do_not_get_past_the_rules() {
    let t = Topology::pair("qinq").unwrap();
    let s = t.server();
    let _srv = tcp_servers(s, &[s.v4(22), s.v6(22), s.v4(80), s.v6(80)]);
    const QINQ: &[u16] = &[ETH_P_8021AD, ETH_P_8021Q];
    const THREE: &[u16] = &[ETH_P_8021AD, ETH_P_8021Q, ETH_P_8021Q];
    const FOUR: &[u16] = &[ETH_P_8021Q; 4];
    #[rustfmt::skip]
    check_tagged(&t, &[
        tagged("no sg: ssh, three tags",  THREE, s.v4(22), true),
        tagged("no sg: ssh v6, three tags", THREE, s.v6(22), true),
        tagged("no sg: ssh, four tags",   FOUR,  s.v4(22), true),
    ]);
    let _sgd = enforce(s, &[web()]);
    #[rustfmt::skip]
    check_tagged(&t, &[
        tagged("ssh, QinQ",               QINQ,  s.v4(22), false),
        tagged("ssh v6, QinQ",            QINQ,  s.v6(22), false),
        tagged("ssh, three tags",         THREE, s.v4(22), false),
        tagged("ssh v6, three tags",      THREE, s.v6(22), false),
        tagged("ssh, four tags",          FOUR,  s.v4(22), false),
        tagged("http, QinQ",              QINQ,  s.v4(80), true),
        tagged("http v6, three tags",     THREE, s.v6(80), true),
        // Behind more tags than the classifier walks: dropped, whatever
        // the rules say.
        tagged("http, four tags",         FOUR,  s.v4(80), false),
    ]);
}

// ---------------------------------------------------------------------------
// Fragments that try to slip past a port rule
// ---------------------------------------------------------------------------

const ATTACKER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 66);
const ACCOMPLICE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 67);
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const ATTACKER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x66, 0, 0, 0, 0, 0x66);
const SERVER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

/// An IPv4 fragment of datagram `id` from `src` to the server: `offset` in
/// 8-byte units, `more` for the MF flag.
fn fragment4(src: Ipv4Addr, proto: u8, id: u16, offset: u16, more: bool, data: &[u8]) -> Vec<u8> {
    let field = offset | if more { frames::IPV4_MF } else { 0 };
    let packet = frames::ipv4_fragment(src, SERVER, proto, id, field, data);
    frames::ethernet(frames::ETH_P_IP, &packet)
}

/// The first fragment of TCP datagram `id` from the attacker to `dport`.
fn first_tcp(id: u16, dport: u16) -> Vec<u8> {
    let mut data = frames::tcp_syn(40000, dport);
    data.extend_from_slice(&[0; 64]);
    fragment4(ATTACKER, TCP, id, 0, true, &data)
}

/// A later TCP fragment of datagram `id` from `src`, at `offset`.
fn later_tcp(src: Ipv4Addr, id: u16, offset: u16) -> Vec<u8> {
    fragment4(src, TCP, id, offset, false, &[0x41; 64])
}

/// An IPv6 fragment of datagram `id` from the attacker to the server; its
/// Fragment header names `next`.
fn fragment6(next: u8, id: u32, offset: u16, more: bool, data: &[u8]) -> Vec<u8> {
    let body = frames::ipv6_fragment_header(next, id, offset, more, data);
    let packet = frames::ipv6(ATTACKER6, SERVER6, frames::IPV6_FRAGMENT, &body);
    frames::ethernet(frames::ETH_P_IPV6, &packet)
}

/// HTTP open to everyone, v4 and v6; everything else inbound dropped.
fn web_only() -> String {
    groups_on(
        "lo",
        &[Group::new("sg-web").rules([
            accept_in("tcp", "80/80", "0.0.0.0/0"),
            accept_in("tcp", "80/80", "::/0"),
            accept_out("all", "-1/-1", "0.0.0.0/0"),
        ])],
    )
}

/// Only the first fragment carries the ports, so later fragments follow
/// the decision remembered for their datagram (addresses, protocol and
/// identification for IPv4; addresses and identification for IPv6, as
/// the receiver reassembles). An attacker tries to get later fragments of
/// a datagram to a closed port through by borrowing an allowed
/// datagram's decision, to rewrite an allowed first fragment's port, to
/// hide the ports from the first fragment, or to have no first fragment
/// at all.
#[test]
fn fragments_that_try_to_slip_past_a_port_rule() {
    let k = Kernel::new(&web_only());
    let tcp4 = |more: &[u8]| {
        let mut data = frames::tcp_syn(40000, 22)[..4].to_vec();
        data.extend_from_slice(more);
        data
    };
    #[rustfmt::skip]
    k.check(&[
        // The allowed datagram, and the one to a closed port.
        case("first fragment to 80",                   Ingress, first_tcp(100, 80),               RuleAccept),
        case("its later fragment",                     Ingress, later_tcp(ATTACKER, 100, 9),      FragmentAccept),
        case("first fragment to 22",                   Ingress, first_tcp(200, 22),               DefaultDrop),
        case("its later fragments",                    Ingress, later_tcp(ATTACKER, 200, 9),      FragmentDrop),
        // Borrowing the allowed datagram's identification from another
        // source, or for another protocol, names another datagram.
        case("id of the allowed one, another source",  Ingress, later_tcp(ACCOMPLICE, 100, 9),    FragmentDrop),
        case("id of the allowed one, UDP",             Ingress, fragment4(ATTACKER, UDP, 100, 9, false, &[0; 64]), FragmentDrop),
        // No first fragment at all.
        case("later fragment, no first",               Ingress, later_tcp(ATTACKER, 300, 9),      FragmentDrop),
        // Ports sit in the first 8 bytes, which only an offset-0 fragment
        // carries; an overlapping fragment at offset 1 reaches the TCP
        // flags at most (and the receiver drops overlaps, RFC 5722).
        case("overlap at offset 1, allowed datagram",  Ingress, later_tcp(ATTACKER, 100, 1),      FragmentAccept),
        // A second first fragment rewriting the allowed datagram's port is
        // judged by its own port, and the datagram's later fragments
        // follow that verdict from then on.
        case("second first fragment, to 22",           Ingress, first_tcp(100, 22),               DefaultDrop),
        case("later fragment after the rewrite",       Ingress, later_tcp(ATTACKER, 100, 9),      FragmentDrop),
        // Tiny first fragments (RFC 1858): the whole TCP header must be in
        // the first fragment, or it is malformed and remembered for no one.
        case("first fragment with 4 bytes of TCP",     Ingress, fragment4(ATTACKER, TCP, 400, 0, true, &tcp4(&[])),     Malformed),
        case("first fragment with 12 bytes of TCP",    Ingress, fragment4(ATTACKER, TCP, 401, 0, true, &tcp4(&[0; 8])), Malformed),
        case("the rest of the tiny one",               Ingress, later_tcp(ATTACKER, 400, 1),      FragmentDrop),
    ]);
}

/// The same attempts over IPv6, where the first fragment may carry
/// extension headers after its Fragment header.
#[test]
fn ipv6_fragments_that_try_to_slip_past_a_port_rule() {
    let k = Kernel::new(&web_only());
    let tcp = |dport| {
        let mut data = frames::tcp_syn(40000, dport);
        data.extend_from_slice(&[0; 64]);
        data
    };
    // Destination options between the Fragment header and TCP.
    let first = |id, dport| {
        fragment6(
            DSTOPTS,
            id,
            0,
            true,
            &frames::ipv6_dest_options(TCP, &tcp(dport)),
        )
    };
    let later = |next, id| fragment6(next, id, 10, false, &[0x41; 64]);
    // The header chain ends in the first fragment without the TCP header
    // (RFC 7112 forbids it): nothing to judge, so it is malformed.
    let chain_cut = fragment6(DSTOPTS, 30, 0, true, &frames::ipv6_dest_options(TCP, &[]));
    // An atomic fragment (offset 0, no more): a whole packet, judged by
    // its own port.
    let atomic = fragment6(TCP, 40, 0, false, &tcp(22));
    #[rustfmt::skip]
    k.check(&[
        case("first fragment to 80",              Ingress, first(10, 80),      RuleAccept),
        case("its later fragment",                Ingress, later(DSTOPTS, 10), FragmentAccept),
        case("first fragment to 22",              Ingress, first(20, 22),      DefaultDrop),
        case("its later fragment",                Ingress, later(DSTOPTS, 20), FragmentDrop),
        case("its later fragment, next TCP",      Ingress, later(TCP, 20),     FragmentDrop),
        case("later fragment, no first",          Ingress, later(DSTOPTS, 21), FragmentDrop),
        case("header chain cut before TCP",       Ingress, chain_cut,          Malformed),
        case("the rest of it",                    Ingress, later(DSTOPTS, 30), FragmentDrop),
        case("atomic fragment to 22",             Ingress, atomic,             DefaultDrop),
    ]);
}

/// Fragmenting outbound SMTP does not get around the port 25 block: the
/// first fragment carries port 25 and is blocked, and the later ones
/// follow it.
#[test]
fn fragmented_smtp_does_not_slip_past_the_block() {
    let k = Kernel::new(&web_only());
    let mx = Ipv4Addr::new(203, 0, 113, 25);
    let out = |more: bool, offset, data: &[u8]| {
        let field = offset | if more { frames::IPV4_MF } else { 0 };
        let packet = frames::ipv4_fragment(SERVER, mx, TCP, 77, field, data);
        frames::ethernet(frames::ETH_P_IP, &packet)
    };
    let mut smtp = frames::tcp_syn(40000, 25);
    smtp.extend_from_slice(b"MAIL FROM:<spam@example.com>");
    #[rustfmt::skip]
    k.check(&[
        case("first fragment to 25", Egress, out(true, 0, &smtp),       SmtpBlocked),
        case("its later fragment",   Egress, out(false, 6, &[0x41; 64]), FragmentDrop),
    ]);
}

// ---------------------------------------------------------------------------
// Session resurrection
// ---------------------------------------------------------------------------

/// Session resurrection: a client the operator cuts off (a priority-1 drop
/// rule for its address, added through the API) keeps its connection busy
/// both ways to bring its session back: it goes on sending, and the server
/// goes on pushing lines to it, which the basic egress default accepts.
/// Nothing of the connection gets through either way, and a new
/// connection is refused by the rule. The ended session used to be
/// forgotten, and the server's next push opened it again.
#[test]
fn session_resurrection() {
    let t = Topology::pair("resurrect").unwrap();
    let (s, attacker) = (t.server(), t.client());
    let pusher = Pusher::start(s, s.v4(7000), Duration::from_millis(100)).unwrap();
    let sgd = enforce(
        s,
        &[Group::new("sg-push").rules([accept_in("tcp", "7000/7000", "0.0.0.0/0").priority(2)])],
    );
    let conn = PushClient::connect(attacker, pusher.addr()).unwrap();
    conn.send(b"hello\n").unwrap();
    assert!(
        conn.wait_for(3, Duration::from_secs(3)),
        "no lines before the rule"
    );

    let attacker_ip = format!("{}/32", attacker.ipv4());
    #[rustfmt::skip]
    sgd.ctl().ok(&[
        "rule", "add", "sg-push", "ingress", "--id", "cut-off", "--policy", "drop",
        "--priority", "1", "--ip-protocol", "all", "--port-range", "-1/-1",
        "--source-cidr-ip", &attacker_ip,
    ]);
    let cut = Instant::now();
    let heard = pusher.heard();
    let later = std::thread::scope(|scope| {
        let talking = scope.spawn(|| {
            for _ in 0..30 {
                let _ = conn.send(b"let me back in\n");
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let later = conn.lines_later_than(cut, Duration::from_millis(300), Duration::from_secs(3));
        talking.join().unwrap();
        later
    });
    assert_eq!(later, 0, "the server's lines reached the attacker again");
    assert_eq!(
        pusher.heard(),
        heard,
        "the attacker's bytes reached the server"
    );
    #[rustfmt::skip]
    check(&[probe("a new connection", Tcp(7000), attacker, s.ipv4(), DROPPED)]);
    let sessions = sgd.ctl().ok(&["sessions", "--interface", SERVER_IF]);
    let port = conn.local_addr().port().to_string();
    assert!(
        sessions
            .lines()
            .filter(|l| l.contains(&port))
            .all(|l| l.contains("ended")),
        "{sessions}"
    );
}

// ---------------------------------------------------------------------------
// A flood of new flows against established sessions
// ---------------------------------------------------------------------------

/// Entries of each session table in the flood test, and new flows per
/// flood (several times the table).
const FLOOD_TABLE: u16 = 4096;
const FLOOD_FLOWS: u16 = 20_000;

/// A flood of new UDP flows to ports a rule opens, more than the session
/// table holds, single-packet and two-packet, evicts other unanswered
/// flows only: an idle established TCP connection whose admitting rule
/// was removed before the flood (so nothing but its session lets it
/// through) still carries data afterwards, and the metrics count the
/// evictions, all of them in the unanswered table. The two-packet flood
/// used to evict the connection (the second packet of each flow made it
/// as recently used as the connection's last one).
#[test]
fn a_flood_of_new_flows_does_not_evict_an_established_connection() {
    let t = Topology::pair("flood").unwrap();
    let (s, c) = (t.server(), t.client());
    let pusher = Pusher::start(s, s.v4(7000), Duration::from_secs(3600)).unwrap();
    let connection = accept_in("tcp", "7000/7000", "0.0.0.0/0");
    let flood_ports = accept_in("udp", "10000/59999", "0.0.0.0/0");
    let config = |rules: Vec<Rule>| {
        format!(
            "session_table_size = {FLOOD_TABLE}\nmetrics_address = \"127.0.0.1:9630\"\n{}",
            groups_on(SERVER_IF, &[Group::new("sg-flood").rules(rules)])
        )
    };
    let mut sgd = Daemon::start(s, &config(vec![connection, flood_ports.clone()])).unwrap();
    let client = PushClient::connect(c, pusher.addr()).unwrap();
    assert!(client.wait_for(1, Duration::from_secs(3)), "no first line");
    let heard_after = |sent: u64| {
        let deadline = Instant::now() + Duration::from_secs(3);
        while pusher.heard() < sent && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        pusher.heard() >= sent
    };
    client.send(b"before\n").unwrap();
    assert!(
        heard_after(7),
        "the connection carried nothing before the flood"
    );

    // Only the session lets the connection through now.
    sgd.reload_with(&config(vec![flood_ports])).unwrap();
    client.send(b"reload\n").unwrap();
    assert!(heard_after(14), "the connection died with the reload");

    let started = Instant::now();
    let ports = 10_000..10_000 + FLOOD_FLOWS;
    let one = udp_flood(c, s.ipv4().into(), ports.clone(), 1).unwrap();
    let two = udp_flood(c, s.ipv4().into(), ports, 2).unwrap();
    assert!(
        one + two >= 3 * u64::from(FLOOD_FLOWS) * 9 / 10,
        "the flood did not get out: {one} + {two} datagrams"
    );
    eprintln!(
        "flood of {one} + {two} datagrams in {:?}",
        started.elapsed()
    );

    client.send(b"after\n").unwrap();
    assert!(
        heard_after(20),
        "the established connection died in the flood (server heard {} bytes)",
        pusher.heard()
    );

    let text = metrics(s, "127.0.0.1:9630").unwrap();
    let value = |name: &str, table: &str| -> u64 {
        let prefix = format!("{name}{{table=\"{table}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in:\n{text}"))
    };
    for table in ["answered", "unanswered"] {
        assert_eq!(
            value("sg_session_capacity", table),
            u64::from(FLOOD_TABLE),
            "{text}"
        );
    }
    assert_eq!(value("sg_session_evictions_total", "answered"), 0, "{text}");
    assert!(
        value("sg_session_evictions_total", "unanswered") >= u64::from(FLOOD_FLOWS),
        "{text}"
    );
    assert!(value("sg_sessions", "answered") >= 1, "{text}");
}
