//! The attacker's view (issue #8): traffic the rules forbid, sent the way
//! that used to slip past the classifier, must not get an answer. Each test
//! shows first that the same traffic is answered without sg (or where a
//! rule allows it), so that "no answer" means "dropped by sg".
//!
//! The server is `sg0` (192.0.2.1, 2001:db8::1), the attacker a client
//! (192.0.2.2, 2001:db8::2); only documentation addresses are used.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use sg_tests::frames::{ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6};
use sg_tests::wire::{self, PacketSocket};
use sg_tests::*;

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
