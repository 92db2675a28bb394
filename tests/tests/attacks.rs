//! The attacker's view (issue #8): traffic built to get past the rules,
//! and what each attempt must get.
//!
//! - With real traffic between namespaces: traffic the rules forbid, sent
//!   the way that used to slip past the classifier, must not get an
//!   answer. Each such test shows first that the same traffic is answered
//!   without sg (or where a rule allows it), so that "no answer" means
//!   "dropped by sg". The server is `sg0` (192.0.2.1, 2001:db8::1), the
//!   attacker a client (192.0.2.2, 2001:db8::2); on a hypervisor, the
//!   attacker is instance A (192.0.2.11, 2001:db8::11), its victim B (.12,
//!   ::12) and the others C (.13, ::13).
//! - With crafted frames through the loaded program (`BPF_PROG_TEST_RUN`,
//!   `common`): each test a table of cases run in order.
//!
//! Only documentation addresses are used.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use common::{Kernel, case};
use sg_common::Reason::*;
use sg_daemon::dataplane::Hook::{Egress, Ingress};
use sg_tests::frames::{
    self, ARP_REPLY, ARP_REQUEST, ETH_P_8021AD, ETH_P_8021Q, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6,
    IPV6_DEST_OPTIONS as DSTOPTS, TCP, UDP,
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
        // carries; a TCP fragment at offset 1 (8 bytes) would rewrite the
        // flags the first fragment was judged by: dropped (RFC 1858).
        case("overlap at offset 1, allowed datagram",  Ingress, later_tcp(ATTACKER, 100, 1),      Malformed),
        // A second first fragment rewriting the allowed datagram's port is
        // judged by its own port, and the datagram's later fragments
        // follow that verdict from then on.
        case("second first fragment, to 22",           Ingress, first_tcp(100, 22),               DefaultDrop),
        case("later fragment after the rewrite",       Ingress, later_tcp(ATTACKER, 100, 9),      FragmentDrop),
        // Tiny first fragments (RFC 1858): the whole TCP header must be in
        // the first fragment, or it is malformed and remembered for no one.
        case("first fragment with 4 bytes of TCP",     Ingress, fragment4(ATTACKER, TCP, 400, 0, true, &tcp4(&[])),     Malformed),
        case("first fragment with 12 bytes of TCP",    Ingress, fragment4(ATTACKER, TCP, 401, 0, true, &tcp4(&[0; 8])), Malformed),
        case("the rest of the tiny one",               Ingress, later_tcp(ATTACKER, 400, 1),      Malformed),
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

/// The parser reads only inside the IP packet, by its length field: what
/// follows in the frame (link padding, or bytes an attacker on the segment
/// appends) is not part of the packet the receiving stack reassembles. A
/// first fragment whose headers run past its length is malformed, so the
/// later fragments that carry the real headers find no accepted datagram
/// to follow. (Found by reviewing the kernel as an attacker.)
#[test]
fn headers_past_the_ip_length_are_not_read() {
    let k = Kernel::new(&web_only());
    let dst_opts = |next: u8| vec![next, 0, 1, 4, 0, 0, 0, 0];
    // IPv6: the chain the receiver sees ends after two destination-options
    // headers; the trailing bytes say TCP to port 80, the later fragment
    // carries the real TCP header, to port 22.
    let mut first = frames::ipv6_fragment_header(DSTOPTS, 0xabcd, 0, true, &dst_opts(DSTOPTS));
    let visible = first.len() as u16;
    first.extend(dst_opts(TCP));
    first.extend(frames::tcp_syn(40000, 80));
    let mut packet = frames::ipv6(ATTACKER6, SERVER6, frames::IPV6_FRAGMENT, &first);
    packet[4..6].copy_from_slice(&visible.to_be_bytes());
    let first6 = frames::ethernet(frames::ETH_P_IPV6, &packet);
    let mut rest = dst_opts(TCP);
    rest.extend(frames::tcp_syn(40000, 22));
    let later6 = fragment6(DSTOPTS, 0xabcd, 1, false, &rest);
    // IPv4: a first fragment of 8 bytes of TCP (ports and sequence), which
    // the link pads to the minimum frame: the flags would be read from the
    // padding.
    let mut tiny = frames::tcp_syn(40000, 80)[..8].to_vec();
    tiny.resize(26, 0);
    let mut packet = frames::ipv4_fragment(ATTACKER, SERVER, TCP, 77, frames::IPV4_MF, &tiny);
    packet[2..4].copy_from_slice(&28u16.to_be_bytes());
    let tiny4 = frames::ethernet(frames::ETH_P_IP, &packet);
    #[rustfmt::skip]
    k.check(&[
        case("v6 first fragment, headers past its length", Ingress, first6, Malformed),
        case("v6 later fragment with the real header",      Ingress, later6, FragmentDrop),
        case("v4 first fragment of 8 bytes, padded",        Ingress, tiny4,  Malformed),
    ]);
}

// ---------------------------------------------------------------------------
// Hypervisor mode: one instance posing as another on the link
// ---------------------------------------------------------------------------

/// Instances A (the attacker), B (its victim) and C (the others, whose
/// neighbour cache A would poison) behind one bridge, each on `eth0` with
/// 192.0.2.1X/24 and 2001:db8::1X/64, on bridge ports `vm-a`, `vm-b`,
/// `vm-c`.
fn instances(label: &str) -> Hypervisor {
    let hv = Hypervisor::new(
        label,
        &[
            ("vm-a", "192.0.2.11/24"),
            ("vm-b", "192.0.2.12/24"),
            ("vm-c", "192.0.2.13/24"),
        ],
    )
    .unwrap();
    for (vm, addr) in hv
        .vms()
        .iter()
        .zip(["2001:db8::11", "2001:db8::12", "2001:db8::13"])
    {
        vm.ip(&["addr", "add", &format!("{addr}/64"), "dev", "eth0", "nodad"])
            .unwrap();
    }
    hv
}

/// The three instances in one group, so that they reach each other, each
/// port in hypervisor mode with its instance's addresses, and with its
/// instance's MAC pinned when `macs` are given (A, B, C).
fn instances_config(macs: Option<[[u8; 6]; 3]>) -> String {
    let mut toml = Group::basic("sg-app").inner_access("accept").to_string();
    for (n, port) in ["vm-a", "vm-b", "vm-c"].into_iter().enumerate() {
        let (v4, v6) = (
            format!("192.0.2.1{}", n + 1),
            format!("2001:db8::1{}", n + 1),
        );
        let mut binding = interface(port, &["sg-app"]).hypervisor(&[&v4, &v6]);
        if let Some(macs) = macs {
            binding = binding.mac(&wire::mac_text(macs[n]));
        }
        toml += &binding.to_string();
    }
    toml
}

/// Each instance's MAC (A, B, C).
fn macs_of(hv: &Hypervisor) -> [[u8; 6]; 3] {
    let mac = |vm| wire::mac_of(vm, "eth0").unwrap();
    let [a, b, c] = hv.vms() else { unreachable!() };
    [mac(a), mac(b), mac(c)]
}

/// What A's attempt to take B's traffic did: whether the others' view of
/// where B is moved to A (C's neighbour cache entry for B's address, or the
/// bridge's forwarding entry for B's MAC), and whether C's next packet to B
/// reached A.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Effect {
    moved_to_a: bool,
    traffic_to_a: bool,
}

const TAKEN: Effect = Effect {
    moved_to_a: true,
    traffic_to_a: true,
};
const NOTHING: Effect = Effect {
    moved_to_a: false,
    traffic_to_a: false,
};

/// One attempt of A on B's traffic: what it is, B's address that C then
/// sends to, the frame A sends (given the three MACs), and whether the
/// bridge's view (B's MAC) or C's neighbour cache (B's address) is the
/// target.
struct Attempt {
    what: &'static str,
    b: IpAddr,
    frame: fn([[u8; 6]; 3]) -> Vec<u8>,
    target: Target,
}

#[derive(Clone, Copy)]
enum Target {
    NeighbourCache,
    BridgeFdb,
}

/// Makes `attempt` after C has just talked to B, and says what it did.
fn attempt(hv: &Hypervisor, attempt: &Attempt) -> Effect {
    let [a, _, c] = hv.vms() else { unreachable!() };
    let macs = macs_of(hv);
    let [a_mac, b_mac, _] = macs;
    c.ip(&["neigh", "flush", "dev", "eth0"]).unwrap();
    assert!(
        ping(c, attempt.b, Duration::from_secs(2)),
        "{}: C reaches B first",
        attempt.what
    );
    assert_eq!(
        wire::neighbour_mac(c, "eth0", attempt.b).unwrap(),
        Some(b_mac),
        "{}: C has learnt B's MAC",
        attempt.what
    );
    // ARP ignores a second answer within a second (its locktime).
    std::thread::sleep(Duration::from_millis(1100));
    let socket = PacketSocket::open(a, "eth0").unwrap();
    let moved = || match attempt.target {
        Target::NeighbourCache => wire::neighbour_mac(c, "eth0", attempt.b).unwrap() == Some(a_mac),
        Target::BridgeFdb => fdb_port(hv, b_mac).as_deref() == Some("vm-a"),
    };
    // Looked at after each frame: B's own chatter (IPv6 router
    // solicitations, MLD reports) moves a bridge entry back within moments.
    let mut moved_to_a = false;
    for _ in 0..5 {
        socket.send(&(attempt.frame)(macs)).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        moved_to_a |= moved();
    }
    // C's traffic to B, with the claim made again just before each try:
    // B's own chatter can win the bridge or the cache back in between.
    let mut traffic_to_a = false;
    for _ in 0..5 {
        socket.send(&(attempt.frame)(macs)).unwrap();
        let _ = ping(c, attempt.b, Duration::from_millis(300));
        traffic_to_a = socket.wait_for(Duration::from_millis(200), |f| {
            wire::ip_destination(f) == Some(attempt.b)
        });
        if traffic_to_a {
            break;
        }
    }
    Effect {
        moved_to_a,
        traffic_to_a,
    }
}

/// The bridge port behind which the host's bridge forwards to `mac`.
fn fdb_port(hv: &Hypervisor, mac: [u8; 6]) -> Option<String> {
    let fdb = hv
        .host()
        .exec(&["bridge", "fdb", "show", "br", "br0"])
        .unwrap();
    let mac = wire::mac_text(mac);
    let line = fdb
        .lines()
        .find(|l| l.starts_with(&mac) && !l.contains("permanent"))?;
    let port = line.split_whitespace().skip_while(|w| *w != "dev").nth(1)?;
    Some(port.to_owned())
}

/// Makes every attempt and panics naming each whose effect was not
/// `expected`.
#[track_caller]
fn check_attempts(hv: &Hypervisor, when: &str, attempts: &[Attempt], expected: Effect) {
    let failures: Vec<String> = attempts
        .iter()
        .filter_map(|a| {
            let got = attempt(hv, a);
            (got != expected).then(|| format!("  {}: expected {expected:?}, got {got:?}", a.what))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{when}: {} of {} attempts failed:\n{}",
        failures.len(),
        attempts.len(),
        failures.join("\n")
    );
}

const B_V4: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 12));
const B_V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x12));
const BROADCAST: [u8; 6] = [0xff; 6];
/// The Ethernet address of ff02::1, all IPv6 nodes.
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];

/// A gratuitous ARP from A, announcing B's address at A's MAC.
fn gratuitous_arp_for_b([a_mac, _, _]: [[u8; 6]; 3]) -> Vec<u8> {
    let b = std::net::Ipv4Addr::new(192, 0, 2, 12);
    let arp = frames::arp(ARP_REQUEST, a_mac, b, [0; 6], b);
    wire::address(frames::ethernet(ETH_P_ARP, &arp), BROADCAST, a_mac)
}

/// An unsolicited neighbour advertisement from A's own address, with the
/// override flag, announcing B's address at A's MAC.
fn advertisement_for_b([a_mac, _, _]: [[u8; 6]; 3]) -> Vec<u8> {
    let IpAddr::V6(b) = B_V6 else { unreachable!() };
    let na = frames::neighbor_advertisement(b, Some(a_mac));
    let a = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x11);
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let packet = wire::neighbor_discovery(a, all_nodes, na);
    wire::address(frames::ethernet(ETH_P_IPV6, &packet), ALL_NODES_MAC, a_mac)
}

/// An ARP reply for A's own address, sent from B's MAC: the bridge learns
/// that B's MAC is behind A's port.
fn frame_from_b_mac([a_mac, b_mac, _]: [[u8; 6]; 3]) -> Vec<u8> {
    let a = std::net::Ipv4Addr::new(192, 0, 2, 11);
    let arp = frames::arp(ARP_REPLY, a_mac, a, [0; 6], a);
    wire::address(frames::ethernet(ETH_P_ARP, &arp), BROADCAST, b_mac)
}

/// Issue #8: instance A announces B's addresses, by gratuitous ARP and by
/// an unsolicited neighbour advertisement (from its own address, which IP
/// anti-spoofing lets by). Without sg, C's neighbour cache takes A's MAC
/// for B and C's traffic to B goes to A. With sg, A's claims are dropped
/// at its port: C's cache keeps B's MAC and its traffic reaches B.
#[test]
fn an_instance_cannot_claim_another_instances_address() {
    let hv = instances("claim");
    let attempts = [
        Attempt {
            what: "gratuitous ARP for B's address",
            b: B_V4,
            frame: gratuitous_arp_for_b,
            target: Target::NeighbourCache,
        },
        Attempt {
            what: "neighbour advertisement for B's address",
            b: B_V6,
            frame: advertisement_for_b,
            target: Target::NeighbourCache,
        },
    ];
    check_attempts(&hv, "without sg", &attempts, TAKEN);
    let _sgd = Daemon::start(hv.host(), &instances_config(None)).unwrap();
    check_attempts(&hv, "with sg", &attempts, NOTHING);
}

/// Issue #8: instance A sends a frame from B's MAC (an ARP reply for its
/// own address, which address anti-spoofing lets by): the bridge then
/// forwards B's frames to A. With each instance's `mac` pinned, the frame
/// is dropped at A's port and B's traffic stays B's; A's own traffic, from
/// its own MAC, still passes.
#[test]
fn a_pinned_mac_keeps_an_instance_from_taking_anothers_frames() {
    let hv = instances("mac");
    let attempts = [Attempt {
        what: "a frame from B's MAC",
        b: B_V4,
        frame: frame_from_b_mac,
        target: Target::BridgeFdb,
    }];
    let mut sgd = Daemon::start(hv.host(), &instances_config(None)).unwrap();
    check_attempts(&hv, "sg without mac", &attempts, TAKEN);
    sgd.reload_with(&instances_config(Some(macs_of(&hv))))
        .unwrap();
    check_attempts(&hv, "sg with mac", &attempts, NOTHING);
    let [a, _, _] = hv.vms() else { unreachable!() };
    #[rustfmt::skip]
    check(&[
        probe("A to B, from its own MAC", Ping, a, B_V4, PASS),
        probe("A to B v6",                Ping, a, B_V6, PASS),
    ]);
}

/// A hypervisor-mode instance may not answer as a DHCP server (a rogue one
/// would hand the others its own gateway and resolvers), nor tag its
/// frames onto another VLAN of the bridge: it sits on an access port.
/// (Found by reviewing the kernel as an attacker.)
#[test]
fn an_instance_is_no_dhcp_server_and_sends_no_vlan_tags() {
    let toml = format!(
        "{}{}",
        Group::new("sg-web").rules([accept_in("tcp", "80/80", "0.0.0.0/0")]),
        interface("lo", &["sg-web"]).hypervisor(&["192.0.2.11", "2001:db8::11"])
    );
    let k = Kernel::new(&toml);
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    let udp = |src: &str, dst: &str, sport, dport| {
        frames::ip_frame(ip(src), ip(dst), UDP, &frames::udp(sport, dport, b"x"))
    };
    let packet = frames::ip_packet(
        ip("192.0.2.11"),
        ip("198.51.100.7"),
        UDP,
        &frames::udp(1, 2, b"x"),
    );
    // The instance's own traffic leaves on the TC ingress hook.
    #[rustfmt::skip]
    k.check(&[
        case("DHCP offer, broadcast",         Ingress, udp("192.0.2.11", "255.255.255.255", 67, 68), Spoofed),
        case("DHCP offer to another instance", Ingress, udp("192.0.2.11", "192.0.2.12", 67, 68),     Spoofed),
        case("DHCPv6 reply",                  Ingress, udp("2001:db8::11", "2001:db8::12", 547, 546), Spoofed),
        case("its own DHCP request",          Ingress, udp("192.0.2.11", "255.255.255.255", 68, 67), Dhcp),
        case("802.1Q-tagged IP",              Ingress, frames::tagged(&[ETH_P_8021Q], 100, ETH_P_IP, &packet), Spoofed),
        case("QinQ-tagged IP",                Ingress, frames::tagged(&[ETH_P_8021AD, ETH_P_8021Q], 100, ETH_P_IP, &packet), Spoofed),
        case("tagged non-IP",                 Ingress, frames::tagged(&[ETH_P_8021Q], 100, 0x88b5, b"other vlan, please"), Spoofed),
        case("untagged IP",                   Ingress, frames::ethernet(ETH_P_IP, &packet), DefaultAccept),
    ]);
}

// ---------------------------------------------------------------------------
// A flood of new flows against established sessions
// ---------------------------------------------------------------------------

/// `session_table_size` in the flood test (the unanswered table holds a
/// quarter of it), and new flows per flood (several times the table).
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
    // The unanswered table holds a quarter of `session_table_size`.
    for (table, capacity) in [("answered", FLOOD_TABLE), ("unanswered", FLOOD_TABLE / 4)] {
        assert_eq!(
            value("sg_session_capacity", table),
            u64::from(capacity),
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

/// A flood of spoofed SYNs to an open port, which the server answers, must
/// not fill the answered session table (where it would evict established
/// sessions and ended ones): the answer alone leaves a session answered,
/// not established, in the unanswered table, where it expires after
/// `syn_timeout_secs`. Only the opener's acknowledgement of the answer,
/// which a spoofed source never sends, establishes it. (Found by reviewing
/// the kernel as an attacker.)
#[test]
fn a_server_answering_spoofed_syns_establishes_nothing() {
    let k = Kernel::new(&format!("[daemon]\nsyn_timeout_secs = 1\n{}", web_only()));
    let spoofed = Ipv4Addr::new(203, 0, 113, 66);
    let tcp = |src: Ipv4Addr, dst: Ipv4Addr, sport, dport, flags| {
        frames::ip_frame(
            src.into(),
            dst.into(),
            TCP,
            &frames::tcp(sport, dport, flags),
        )
    };
    let entries = |k: &Kernel| -> Vec<u64> {
        let tables = k.dataplane.session_tables().unwrap();
        tables.iter().map(|t| t.entries).collect()
    };
    #[rustfmt::skip]
    k.check(&[
        case("spoofed SYN",        Ingress, tcp(spoofed, SERVER, 5555, 80, frames::SYN),               RuleAccept),
        case("the server answers", Egress,  tcp(SERVER, spoofed, 80, 5555, frames::SYN | frames::ACK), Session),
    ]);
    assert_eq!(entries(&k), [0, 1], "answered, unanswered");
    std::thread::sleep(Duration::from_millis(1500));
    #[rustfmt::skip]
    k.check(&[case("the answer again, 1.5 s later", Egress, tcp(SERVER, spoofed, 80, 5555, frames::SYN | frames::ACK), RuleAccept)]);
    // A real client completes the handshake and is established.
    let client = Ipv4Addr::new(198, 51, 100, 7);
    #[rustfmt::skip]
    k.check(&[
        case("client SYN",      Ingress, tcp(client, SERVER, 40000, 80, frames::SYN),               RuleAccept),
        case("server SYN+ACK",  Egress,  tcp(SERVER, client, 80, 40000, frames::SYN | frames::ACK), Session),
        case("client ACK",      Ingress, tcp(client, SERVER, 40000, 80, frames::ACK),               Session),
    ]);
    assert_eq!(entries(&k)[0], 1, "the completed handshake is answered");
}

/// An echo session is keyed by the identifier alone: after the protected
/// host pings a peer, the peer may answer, but neither send its own echo
/// requests nor any other ICMP type through that session (with
/// identifier 0 every ICMP type from the peer would otherwise share the
/// key of a session). (Found by reviewing the kernel as an attacker.)
#[test]
fn icmp_does_not_borrow_an_echo_session() {
    let k = Kernel::new(&web_only());
    let peer = ATTACKER;
    let peer6 = ATTACKER6;
    let icmp = |src: IpAddr, dst: IpAddr, kind, rest| {
        let proto = if src.is_ipv4() {
            frames::ICMP
        } else {
            frames::ICMPV6
        };
        frames::ip_frame(src, dst, proto, &frames::icmp(kind, 0, rest, b"payload!"))
    };
    let (me, them, me6, them6) = (SERVER.into(), peer.into(), SERVER6.into(), peer6.into());
    #[rustfmt::skip]
    k.check(&[
        case("ping the peer, id 0x1234", Egress,  icmp(me, them, 8, [0x12, 0x34, 0, 1]),   RuleAccept),
        case("its reply",                Ingress, icmp(them, me, 0, [0x12, 0x34, 0, 1]),   Session),
        case("its own request, same id", Ingress, icmp(them, me, 8, [0x12, 0x34, 0, 9]),   DefaultDrop),
        case("ping the peer, id 0",      Egress,  icmp(me, them, 8, [0, 0, 0, 1]),         RuleAccept),
        case("timestamp request",        Ingress, icmp(them, me, 13, [0, 0, 0, 1]),        DefaultDrop),
        case("redirect",                 Ingress, icmp(them, me, 5, [192, 0, 2, 99]),      DefaultDrop),
        case("ping v6, id 0",            Egress,  icmp(me6, them6, 128, [0, 0, 0, 1]),     DefaultAccept),
        case("node information query",   Ingress, icmp(them6, me6, 139, [0, 0, 0, 0]),     DefaultDrop),
        case("redirect v6",              Ingress, icmp(them6, me6, 137, [0, 0, 0, 0]),     DefaultDrop),
        case("the v6 reply",             Ingress, icmp(them6, me6, 129, [0, 0, 0, 1]),     Session),
    ]);
}

/// Two Fragment headers in one IPv6 packet (a first fragment of one
/// datagram that claims, deeper in its chain, to be an atomic fragment of
/// another) would have the classifier remember the verdict under the
/// second identification while the receiver reassembles by the first:
/// dropped as malformed. (Found by reviewing the kernel as an attacker.)
#[test]
fn a_packet_with_two_fragment_headers_is_malformed() {
    let k = Kernel::new(&web_only());
    let inner = frames::ipv6_fragment_header(TCP, 0xbbbb, 0, false, &frames::tcp_syn(40000, 80));
    let outer = frames::ipv6_fragment_header(frames::IPV6_FRAGMENT, 0xaaaa, 0, true, &inner);
    let frame = frames::ethernet(
        frames::ETH_P_IPV6,
        &frames::ipv6(ATTACKER6, SERVER6, frames::IPV6_FRAGMENT, &outer),
    );
    k.check(&[case("two Fragment headers", Ingress, frame, Malformed)]);
}
