//! The loaded classifier on crafted frames, through `BPF_PROG_TEST_RUN`:
//! header parsing (truncation, IPv4 options, IPv6 extension headers,
//! non-IP), the built-ins, the rule order, sessions, related ICMP,
//! fragments, anti-spoofing. Nothing is attached anywhere: each test loads
//! its own copy of the program and maps.
//!
//! Each test is a table of cases run in order (`Kernel::check` of
//! `common`): a frame, the hook it goes through, and the reason that must
//! decide it.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::{DROP, Kernel, PASS, case, parse};
use sg_common::{Reason::*, SessionTimeouts};
use sg_daemon::{
    compile::Origin,
    dataplane::Hook::{self, Egress, Ingress},
};
use sg_tests::frames::{self, ETH_P_ARP, ICMP, ICMPV6, TCP, UDP};
use sg_tests::{Group, accept_in, accept_out, drop_in, drop_out, groups_on, interface};

/// `groups`, bound to `lo` (what a test run's skb carries).
fn on_lo(groups: &[Group]) -> String {
    groups_on("lo", groups)
}

/// HTTP from anywhere (IPv4), DNS over UDP from 2001:db8::/32.
fn web() -> Group {
    web_opening("80/80")
}

/// [`web`] with its HTTP rule opening `ports` instead.
fn web_opening(ports: &str) -> Group {
    Group::new("sg-web").rules([
        accept_in("tcp", ports, "0.0.0.0/0"),
        accept_in("udp", "53/53", "2001:db8::/32"),
    ])
}

/// Every outbound packet dropped by a rule, IPv4 and IPv6.
fn locked_down() -> String {
    on_lo(&[Group::new("sg-locked").rules([
        drop_out("all", "-1/-1", "0.0.0.0/0").priority(1),
        drop_out("all", "-1/-1", "::/0").priority(1),
    ])])
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}
fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}
fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A TCP SYN from `src:sport` to `dst:dport`.
fn syn(src: &str, dst: &str, sport: u16, dport: u16) -> Vec<u8> {
    frames::ip_frame(ip(src), ip(dst), TCP, &frames::tcp_syn(sport, dport))
}

/// A TCP segment with `flags` from `src:sport` to `dst:dport`.
fn tcp(src: &str, dst: &str, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    frames::ip_frame(ip(src), ip(dst), TCP, &frames::tcp(sport, dport, flags))
}

/// A UDP datagram from `src:sport` to `dst:dport`.
fn udp(src: &str, dst: &str, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    frames::ip_frame(ip(src), ip(dst), UDP, &frames::udp(sport, dport, payload))
}

/// An ICMP message (ICMPv6 between IPv6 addresses) of `kind` and `code`.
fn icmp(src: &str, dst: &str, kind: u8, code: u8, rest: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let proto = if ip(src).is_ipv4() { ICMP } else { ICMPV6 };
    frames::ip_frame(
        ip(src),
        ip(dst),
        proto,
        &frames::icmp(kind, code, rest, payload),
    )
}

const CLIENT: &str = "198.51.100.7";
const SERVER: &str = "192.0.2.1";
const CLIENT6: &str = "2001:db8::9";
const SERVER6: &str = "2001:db8::1";

#[test]
fn non_ip_frames_pass_unless_switched_off_and_arp_always() {
    let arp = frames::arp_request(v4(CLIENT), v4(SERVER));
    let tagged_arp = frames::vlan(frames::ETH_P_ARP, &arp[14..]);
    let lldp = frames::ethernet(0x88cc, &[0; 46]);
    // An unknown ethertype (local experimental), bare and behind a tag.
    let unknown = frames::ethernet(0x88b5, &[0; 46]);
    let tagged_unknown = frames::vlan(0x88b5, &[0; 46]);
    let http = syn(CLIENT, SERVER, 40000, 80);
    // (what, frame, decided by default, decided with builtin_non_ip off)
    #[rustfmt::skip]
    let rows = [
        ("ARP",                      arp,            NotIp,      NotIp),
        ("ARP behind a VLAN tag",    tagged_arp,     NotIp,      NotIp),
        ("LLDP",                     lldp,           NotIp,      NotIpDropped),
        ("unknown ethertype",        unknown,        NotIp,      NotIpDropped),
        ("unknown ethertype, VLAN",  tagged_unknown, NotIp,      NotIpDropped),
        // IP is decided by the rules either way.
        ("http",                     http,           RuleAccept, RuleAccept),
    ];
    let on = Kernel::new(&on_lo(&[web()]));
    let off = Kernel::new(&format!(
        "[daemon]\nbuiltin_non_ip = false\n{}",
        on_lo(&[web()])
    ));
    for (k, off) in [(on, false), (off, true)] {
        let cases: Vec<_> = rows
            .iter()
            .flat_map(|(what, frame, default, switched_off)| {
                let reason = if off { *switched_off } else { *default };
                // Inbound only for IP: the rule opens port 80 inbound.
                let hooks: &[Hook] = if reason == RuleAccept {
                    &[Ingress]
                } else {
                    &[Ingress, Egress]
                };
                hooks
                    .iter()
                    .map(move |hook| case(what, *hook, frame.clone(), reason))
            })
            .collect();
        k.check(&cases);
    }
}

#[test]
fn rules_decide_inbound_and_default_drops() {
    let k = Kernel::new(&on_lo(&[web()]));
    let dns_from = |src| udp(src, SERVER6, 5353, 53, b"q");
    #[rustfmt::skip]
    k.check(&[
        case("http",               Ingress, syn(CLIENT, SERVER, 40000, 80),         RuleAccept),
        case("ssh",                Ingress, syn(CLIENT, SERVER, 40000, 22),         DefaultDrop),
        case("dns6",               Ingress, dns_from(CLIENT6),                      RuleAccept),
        case("dns6, other prefix", Ingress, dns_from("2001:db9::9"),                DefaultDrop),
        // Outbound: basic groups accept by default.
        case("outbound",           Egress,  udp(SERVER, CLIENT, 40000, 9999, b"x"), DefaultAccept),
    ]);
}

#[test]
fn ipv4_options_are_skipped_by_ihl() {
    let k = Kernel::new(&on_lo(&[web()]));
    // Eight bytes of options whose bytes 2..4 read as port 80 if the
    // transport header were looked for at a fixed offset of 20.
    let options = [0x01, 0x01, 0x00, 0x50, 0x01, 0x01, 0x01, 0x00];
    let with_options = |options: &[u8], sport, dport| {
        frames::ethernet(
            frames::ETH_P_IP,
            &frames::ipv4(
                v4(CLIENT),
                v4(SERVER),
                TCP,
                options,
                &frames::tcp_syn(sport, dport),
            ),
        )
    };
    #[rustfmt::skip]
    k.check(&[
        case("http",        Ingress, with_options(&options, 40000, 80), RuleAccept),
        case("ssh",         Ingress, with_options(&options, 40000, 22), DefaultDrop),
        // The maximum IHL (15 words, 40 bytes of options).
        case("maximum IHL", Ingress, with_options(&[1; 40], 40001, 80), RuleAccept),
    ]);
}

#[test]
fn truncated_and_invalid_headers_are_dropped() {
    let k = Kernel::new(&on_lo(&[web()]));
    let good = frames::ipv4(
        v4(CLIENT),
        v4(SERVER),
        TCP,
        &[],
        &frames::tcp_syn(40000, 80),
    );
    let six = frames::ipv6(v6(CLIENT6), v6(SERVER6), UDP, &frames::udp(1, 53, b""));
    let short_icmp = frames::ipv4(v4(CLIENT), v4(SERVER), ICMP, &[], &[8, 0, 0, 0]);
    let ip4 = |packet: &[u8]| frames::ethernet(frames::ETH_P_IP, packet);
    let ip6 = |packet: &[u8]| frames::ethernet(frames::ETH_P_IPV6, packet);
    // The kernel's test run refuses an IP ethertype with less than a fixed
    // IP header, so cut-short IP headers travel behind an 802.1Q tag.
    let tagged4 = |packet: &[u8]| frames::vlan(frames::ETH_P_IP, packet);
    let tagged6 = |packet: &[u8]| frames::vlan(frames::ETH_P_IPV6, packet);
    let first_byte = |packet: &[u8], byte| {
        let mut p = packet.to_vec();
        p[0] = byte;
        ip4(&p)
    };
    #[rustfmt::skip]
    k.check(&[
        case("IPv4 header of 12 bytes", Ingress, tagged4(&good[..12]),          Malformed),
        case("IPv4 header of 19 bytes", Ingress, tagged4(&good[..19]),          Malformed),
        // Behind the tag, a whole packet is classified as usual.
        case("whole packet, tagged",    Ingress, tagged4(&good),                RuleAccept),
        case("TCP header of 10 bytes",  Ingress, ip4(&good[..30]),              Malformed),
        case("IHL below 5",             Ingress, first_byte(&good, 0x44),       Malformed),
        case("IHL past the end",        Ingress, first_byte(&good[..24], 0x4f), Malformed),
        case("version 6 in IPv4",       Ingress, first_byte(&good, 0x65),       Malformed),
        case("IPv6 header cut short",   Ingress, tagged6(&six[..30]),           Malformed),
        case("UDP header cut short",    Ingress, ip6(&six[..44]),               Malformed),
        case("ICMP under 8 bytes",      Ingress, ip4(&short_icmp),              Malformed),
        // Malformed outbound IP is dropped too.
        case("TCP header of 10, out",   Egress,  ip4(&good[..30]),              Malformed),
    ]);
}

#[test]
fn vlan_and_qinq_tags_are_walked_and_more_are_malformed() {
    let k = Kernel::new(&on_lo(&[web()]));
    let (q, ad) = (frames::ETH_P_8021Q, frames::ETH_P_8021AD);
    let (ip4, ip6) = (frames::ETH_P_IP, frames::ETH_P_IPV6);
    // A SYN to `dport`, inbound (from a source port of its own: each opens
    // a session of its own) or outbound.
    let inbound = |sport, dport| {
        frames::ipv4(
            v4(CLIENT),
            v4(SERVER),
            TCP,
            &[],
            &frames::tcp_syn(sport, dport),
        )
    };
    let outbound = frames::ipv4(
        v4(SERVER),
        v4(CLIENT),
        TCP,
        &[],
        &frames::tcp_syn(40000, 22),
    );
    let ssh6 = frames::ipv6(v6(CLIENT6), v6(SERVER6), TCP, &frames::tcp_syn(40000, 22));
    let dns6 = frames::ipv6(v6(CLIENT6), v6(SERVER6), UDP, &frames::udp(5353, 53, b"q"));
    let arp = frames::arp_request(v4(CLIENT), v4(SERVER))[14..].to_vec();
    let tagged =
        |tags: &[u16], ethertype, packet: &[u8]| frames::tagged(tags, 7, ethertype, packet);
    #[rustfmt::skip]
    k.check(&[
        case("one tag, http",           Ingress, tagged(&[q], ip4, &inbound(40001, 80)),        RuleAccept),
        case("one tag, ssh",            Ingress, tagged(&[q], ip4, &inbound(40001, 22)),        DefaultDrop),
        case("802.1ad + 802.1Q, http",  Ingress, tagged(&[ad, q], ip4, &inbound(40002, 80)),    RuleAccept),
        case("802.1ad + 802.1Q, ssh",   Ingress, tagged(&[ad, q], ip4, &inbound(40002, 22)),    DefaultDrop),
        case("802.1Q + 802.1Q, http",   Ingress, tagged(&[q, q], ip4, &inbound(40003, 80)),     RuleAccept),
        case("802.1Q + 802.1Q, ssh",    Ingress, tagged(&[q, q], ip4, &inbound(40003, 22)),     DefaultDrop),
        case("QinQ, IPv6 dns",          Ingress, tagged(&[ad, q], ip6, &dns6),                  RuleAccept),
        case("QinQ, IPv6 ssh",          Ingress, tagged(&[ad, q], ip6, &ssh6),                  DefaultDrop),
        case("QinQ, outbound",          Egress,  tagged(&[ad, q], ip4, &outbound),              DefaultAccept),
        // More tags than the parser walks: dropped, whatever they carry.
        case("three tags, http",        Ingress, tagged(&[ad, q, q], ip4, &inbound(40004, 80)), Malformed),
        case("three tags, IPv6",        Ingress, tagged(&[q, q, q], ip6, &dns6),                Malformed),
        case("a third tag, 802.1ad",    Ingress, tagged(&[q, q, ad], ip4, &inbound(40005, 80)), Malformed),
        case("three tags, outbound",    Egress,  tagged(&[ad, q, q], ip4, &outbound),           Malformed),
        // Behind the tags, what is not IP is still not IP.
        case("ARP behind a tag",        Ingress, tagged(&[q], frames::ETH_P_ARP, &arp),         NotIp),
        case("ARP behind QinQ",         Ingress, tagged(&[ad, q], frames::ETH_P_ARP, &arp),     NotIp),
        case("other type behind QinQ",  Ingress, tagged(&[ad, q], 0x88b5, &[0; 46]),            NotIp),
    ]);
}

/// An IPv6 source whose address bytes 4..6 are 0x86dd. The test run takes
/// `skb->protocol` from bytes 12..14 of the data, an Ethernet header's
/// ethertype; in an IPv6 header those are bytes 4..6 of the source address.
/// From this source an IP-only (L3) packet is IPv6 to the kernel, as a TUN
/// device would say.
const L3_CLIENT6: &str = "2001:db8:86dd::7";
const L3_SERVER6: &str = "2001:db8:86dd::1";

#[test]
fn l3_devices_have_the_ip_header_at_offset_0() {
    let web6 = Group::new("sg-web6").rules([accept_in("tcp", "80/80", "::/0")]);
    let k = Kernel::new_l3(&on_lo(&[web6]));
    let raw = |src, dst, dport| frames::ipv6(v6(src), v6(dst), TCP, &frames::tcp_syn(40000, dport));
    let mut version_4 = raw(L3_CLIENT6, SERVER6, 80);
    version_4[0] = 0x45;
    #[rustfmt::skip]
    k.check(&[
        case("http",                          Ingress, raw(L3_CLIENT6, SERVER6, 80),        RuleAccept),
        case("ssh",                           Ingress, raw(L3_CLIENT6, SERVER6, 22),        DefaultDrop),
        case("outbound",                      Egress,  raw(L3_SERVER6, CLIENT6, 22),        DefaultAccept),
        // The kernel says IPv6, the header says otherwise.
        case("IPv6 by protocol, version 4",   Ingress, version_4,                           Malformed),
        // What the kernel does not take for IP never reaches its IP stack.
        case("not IP by protocol",            Ingress, raw(CLIENT6, SERVER6, 22),           NotIp),
        // An Ethernet header where the IP header should be.
        case("an Ethernet frame",             Ingress, syn(L3_CLIENT6, SERVER6, 40000, 80), Malformed),
    ]);
}

#[test]
fn metadata_is_reachable_despite_a_drop_all_egress_rule() {
    let k = Kernel::new(&locked_down());
    let (metadata, next) = ("100.100.100.200", "100.100.100.201");
    #[rustfmt::skip]
    k.check(&[
        case("request to metadata",  Egress,  syn(SERVER, metadata, 40000, 80), Metadata),
        // Its reply comes back through the session the request opened.
        case("its reply",            Ingress, syn(metadata, SERVER, 80, 40000), Session),
        // Anything else outbound is dropped by the rule.
        case("next address",         Egress,  syn(SERVER, next, 40000, 80),     RuleDrop),
        // Unsolicited traffic from the metadata address is not special.
        case("unsolicited metadata", Ingress, syn(metadata, SERVER, 80, 40001), DefaultDrop),
    ]);
}

#[test]
fn only_tcp_udp_and_echo_to_metadata_open_sessions() {
    let k = Kernel::new(&locked_down());
    let metadata = "100.100.100.200";
    let echo = |src, dst, kind| icmp(src, dst, kind, 0, [0x12, 0x34, 0, 1], b"ping");
    let gre = |src, dst| frames::ip_frame(ip(src), ip(dst), 47, &[0; 8]);
    #[rustfmt::skip]
    k.check(&[
        case("udp to metadata",        Egress,  udp(SERVER, metadata, 40000, 53, b"q"), Metadata),
        case("its reply",              Ingress, udp(metadata, SERVER, 53, 40000, b"a"), Session),
        case("echo request",           Egress,  echo(SERVER, metadata, 8),              Metadata),
        case("its reply",              Ingress, echo(metadata, SERVER, 0),              Session),
        // Other protocols pass packet by packet: nothing comes back in.
        case("gre to metadata",        Egress,  gre(SERVER, metadata),                  Metadata),
        case("gre from metadata",      Ingress, gre(metadata, SERVER),                  DefaultDrop),
        case("timestamp request",      Egress,  icmp(SERVER, metadata, 13, 0, [0; 4], &[0; 12]), Metadata),
        case("timestamp reply",        Ingress, icmp(metadata, SERVER, 14, 0, [0; 4], &[0; 12]), DefaultDrop),
    ]);
}

#[test]
fn pmtud_messages_pass_inbound_from_anywhere() {
    let k = Kernel::new(&on_lo(&[web()]));
    // From addresses no rule allows.
    let from_router = |kind, code, rest| icmp("203.0.113.1", SERVER, kind, code, rest, &[0; 28]);
    let from_router6 =
        |kind, code, rest| icmp("2001:db8:ff::1", SERVER6, kind, code, rest, &[0; 48]);
    #[rustfmt::skip]
    k.check(&[
        // Fragmentation needed (type 3 code 4).
        case("fragmentation needed", Ingress, from_router(3, 4, [0, 0, 5, 0xdc]), Pmtud),
        // Port unreachable (type 3 code 3) is not PMTUD.
        case("port unreachable",     Ingress, from_router(3, 3, [0; 4]),          DefaultDrop),
        // ICMPv6 packet too big (type 2); destination unreachable (1) is not.
        case("packet too big",       Ingress, from_router6(2, 0, [0, 0, 5, 0]),   Pmtud),
        case("unreachable, v6",      Ingress, from_router6(1, 4, [0; 4]),         DefaultDrop),
    ]);
}

#[test]
fn neighbor_discovery_and_mld_pass_both_ways_and_redirects_only_when_switched_on() {
    /// Passes in the column's kernel.
    const ND: bool = true;
    /// Dropped: by default inbound, by the drop-all rule outbound.
    const NO: bool = false;
    // (what, ICMPv6 type, passes by default, with builtin_neighbor_discovery
    // off, with builtin_nd_redirects on)
    #[rustfmt::skip]
    let rows = [
        ("MLD query",               130, ND, NO, ND),
        ("MLD report",              131, ND, NO, ND),
        ("MLD done",                132, ND, NO, ND),
        ("router solicitation",     133, ND, NO, ND),
        ("router advertisement",    134, ND, NO, ND),
        ("neighbour solicitation",  135, ND, NO, ND),
        ("neighbour advertisement", 136, ND, NO, ND),
        ("redirect",                137, NO, NO, ND),
        ("MLDv2 report",            143, ND, NO, ND),
        ("node information query",  139, NO, NO, NO),
        ("echo request",            128, NO, NO, NO),
    ];
    let with = |daemon: &str| Kernel::new(&format!("[daemon]\n{daemon}\n{}", locked_down()));
    let kernels = [
        with(""),
        with("builtin_neighbor_discovery = false"),
        with("builtin_nd_redirects = true"),
    ];
    for (column, k) in kernels.iter().enumerate() {
        let cases: Vec<_> = rows
            .iter()
            .flat_map(|&(what, kind, default, nd_off, redirects_on)| {
                let passes = [default, nd_off, redirects_on][column];
                let message = icmp("fe80::2", "ff02::1", kind, 0, [0; 4], &[0; 16]);
                [(Ingress, DefaultDrop), (Egress, RuleDrop)].map(|(hook, dropped)| {
                    let reason = if passes { NeighborDiscovery } else { dropped };
                    case(what, hook, message.clone(), reason)
                })
            })
            .collect();
        k.check(&cases);
    }
}

#[test]
fn outbound_smtp_is_blocked_unless_switched_off() {
    let open = on_lo(&[Group::new("sg-open").rules([accept_out("tcp", "1/65535", "0.0.0.0/0")])]);
    let smtp = syn(SERVER, "203.0.113.25", 40000, 25);
    let k = Kernel::new(&open);
    #[rustfmt::skip]
    k.check(&[
        case("smtp",       Egress, smtp.clone(),                            SmtpBlocked),
        case("submission", Egress, syn(SERVER, "203.0.113.25", 40000, 465), RuleAccept),
    ]);

    let k = Kernel::new(&format!("[daemon]\nblock_smtp_egress = false\n{open}"));
    #[rustfmt::skip]
    k.check(&[case("smtp, block switched off", Egress, smtp, RuleAccept)]);
}

#[test]
fn switching_the_smtp_block_on_ends_port_25_sessions() {
    let open = on_lo(&[Group::new("sg-open").rules([accept_out("tcp", "1/65535", "0.0.0.0/0")])]);
    let mut k = Kernel::new(&format!("[daemon]\nblock_smtp_egress = false\n{open}"));
    let mx = "203.0.113.25";
    let out = |sport, dport| syn(SERVER, mx, sport, dport);
    let back = |sport, dport| syn(mx, SERVER, dport, sport);
    #[rustfmt::skip]
    k.check(&[
        case("smtp, block off",       Egress, out(40000, 25),  RuleAccept),
        case("smtp, block off, 2",    Egress, out(40001, 25),  RuleAccept),
        case("submission, block off", Egress, out(40002, 465), RuleAccept),
    ]);
    // A reload switches the block on: the port-25 sessions end at their
    // next packet, whichever way it goes, and stay ended both ways.
    k.install(&parse(&open));
    #[rustfmt::skip]
    k.check(&[
        case("smtp answer",        Ingress, back(40000, 25),  SmtpBlocked),
        case("smtp answer again",  Ingress, back(40000, 25),  SmtpBlocked),
        case("smtp 2, outbound",   Egress,  out(40001, 25),   SmtpBlocked),
        case("smtp 2, again",      Egress,  out(40001, 25),   SmtpBlocked),
        case("submission goes on", Ingress, back(40002, 465), Session),
    ]);
}

#[test]
fn sessions_let_replies_in_and_nothing_else() {
    let k = Kernel::new(&on_lo(&[web()]));
    let dns = "203.0.113.53";
    let reply = udp(dns, SERVER, 53, 40000, b"answer");
    #[rustfmt::skip]
    k.check(&[
        case("reply, no query yet", Ingress, reply.clone(),                         DefaultDrop),
        case("query",               Egress,  udp(SERVER, dns, 40000, 53, b"query"), DefaultAccept),
        case("reply",               Ingress, reply,                                 Session),
        case("reply, other port",   Ingress, udp(dns, SERVER, 53, 40001, b"x"),     DefaultDrop),
        // An inbound connection the rules accept opens a session too, so the
        // server's answer is not re-evaluated.
        case("inbound http",        Ingress, syn(CLIENT, SERVER, 40000, 80),        RuleAccept),
        case("its answer",          Egress,  syn(SERVER, CLIENT, 80, 40000),        Session),
    ]);
}

#[test]
fn ping_replies_follow_the_echo_identifier() {
    let k = Kernel::new(&on_lo(&[web()]));
    // An echo request (type 8) or reply (0) with identifier `id`, sequence 1.
    let echo = |src, dst, kind, id: [u8; 2]| icmp(src, dst, kind, 0, [id[0], id[1], 0, 1], b"ping");
    #[rustfmt::skip]
    k.check(&[
        case("echo request",       Egress,  echo(SERVER, CLIENT, 8, [0x12, 0x34]), DefaultAccept),
        case("its reply",          Ingress, echo(CLIENT, SERVER, 0, [0x12, 0x34]), Session),
        case("another identifier", Ingress, echo(CLIENT, SERVER, 0, [0x43, 0x21]), DefaultDrop),
    ]);
}

#[test]
fn priority_then_drop_before_accept() {
    let k = Kernel::new(&on_lo(&[Group::new("sg-a").rules([
        accept_in("tcp", "22/22", "198.51.100.0/24").priority(5),
        drop_in("all", "-1/-1", "198.51.100.7/32").priority(5),
        accept_in("tcp", "22/22", "198.51.100.8").priority(4),
    ])]));
    let ssh_from = |src| syn(src, SERVER, 40000, 22);
    #[rustfmt::skip]
    k.check(&[
        // Equal priority 5: the drop of .7 wins over the /24 accept.
        case("drop and accept at 5",   Ingress, ssh_from("198.51.100.7"), RuleDrop),
        // Priority 4 beats priority 5.
        case("accept at 4, drop at 5", Ingress, ssh_from("198.51.100.8"), RuleAccept),
        case("accept at 5",            Ingress, ssh_from("198.51.100.9"), RuleAccept),
        case("no rule",                Ingress, ssh_from("203.0.113.9"),  DefaultDrop),
    ]);
}

/// The ids `sgd` gives [`web`]'s rules (derived from their content).
const WEB_HTTP: &str = "sg-web/ingress/a9921e34";
const WEB_DNS: &str = "sg-web/ingress/b252b486";

fn rule(group: &str, id: &str) -> Option<Origin> {
    Some(Origin::Rule {
        group: group.into(),
        id: id.into(),
    })
}

#[test]
fn the_deciding_rule_is_reported() {
    let k = Kernel::new(&on_lo(&[web()]));
    #[rustfmt::skip]
    let cases = [
        (syn(CLIENT, SERVER, 40000, 80), rule("sg-web", WEB_HTTP)),
        (udp(CLIENT6, SERVER6, 5353, 53, b"q"), rule("sg-web", WEB_DNS)),
        (syn(CLIENT, SERVER, 40000, 22), None),
    ];
    for (frame, origin) in cases {
        assert_eq!(k.run(Ingress, &frame).origin, origin);
    }
}

#[test]
fn ipv6_extension_headers_are_walked_to_the_transport_header() {
    let k = Kernel::new(&on_lo(&[web()]));
    let ip6 = |next, payload: &[u8]| {
        frames::ethernet(
            frames::ETH_P_IPV6,
            &frames::ipv6(v6(CLIENT6), v6(SERVER6), next, payload),
        )
    };
    let dns = frames::udp(5353, 53, b"q");
    let hbh = frames::ipv6_hop_by_hop(UDP, &dns);
    // Two option headers in a row, then a port no rule opens.
    let other = frames::udp(5353, 54, b"q");
    let two = frames::ipv6_hop_by_hop(60, &frames::ipv6_hop_by_hop(UDP, &other));
    #[rustfmt::skip]
    k.check(&[
        case("hop-by-hop, then dns",       Ingress, ip6(0, &hbh),         RuleAccept),
        case("two headers, closed port",   Ingress, ip6(0, &two),         DefaultDrop),
        // An extension header cut short is malformed.
        case("extension header cut short", Ingress, ip6(0, &[UDP, 0, 1]), Malformed),
    ]);
}

#[test]
fn later_fragments_follow_their_first_fragment() {
    let k = Kernel::new(&on_lo(&[web()]));
    let (c, s) = (v4(CLIENT), v4(SERVER));
    let first = |dport, id| {
        frames::ethernet(
            frames::ETH_P_IP,
            &frames::ipv4_fragment(
                c,
                s,
                UDP,
                id,
                frames::IPV4_MF,
                &frames::udp(40000, dport, &[0; 64]),
            ),
        )
    };
    let later = |id| {
        frames::ethernet(
            frames::ETH_P_IP,
            &frames::ipv4_fragment(c, s, UDP, id, 9, &[0; 64]),
        )
    };
    let ip6_fragment = |header: &[u8]| {
        frames::ethernet(
            frames::ETH_P_IPV6,
            &frames::ipv6(v6(CLIENT6), v6(SERVER6), 44, header),
        )
    };
    let dns = frames::udp(40000, 53, &[0; 64]);
    let first6 = ip6_fragment(&frames::ipv6_fragment_header(UDP, 99, 0, true, &dns));
    let later6 = ip6_fragment(&frames::ipv6_fragment_header(UDP, 99, 9, false, &[0; 64]));
    #[rustfmt::skip]
    k.check(&[
        // v4 53 is closed for IPv4 (the rule is IPv6-only): first dropped,
        // the rest follows.
        case("first fragment, closed port", Ingress, first(53, 7), DefaultDrop),
        case("its later fragment",          Ingress, later(7),     FragmentDrop),
        // A later fragment whose first was never seen is dropped inbound.
        case("later fragment, no first",    Ingress, later(8),     FragmentDrop),
        case("first fragment, v6",          Ingress, first6,       RuleAccept),
    ]);
    let v = k.run(Ingress, &later6);
    assert_eq!((v.reason, v.code), (FragmentAccept, PASS));
    assert_eq!(v.origin, rule("sg-web", WEB_DNS));
}

/// An IPv6 frame from `CLIENT6` to `SERVER6` whose fixed header names
/// `next`.
fn ip6(next: u8, payload: &[u8]) -> Vec<u8> {
    frames::ethernet(
        frames::ETH_P_IPV6,
        &frames::ipv6(v6(CLIENT6), v6(SERVER6), next, payload),
    )
}

/// A fragment of IPv6 datagram `id` (`offset` in 8-byte units) whose
/// Fragment header names `next`.
fn ip6_fragment(next: u8, id: u32, offset: u16, more: bool, payload: &[u8]) -> Vec<u8> {
    let header = frames::ipv6_fragment_header(next, id, offset, more, payload);
    ip6(frames::IPV6_FRAGMENT, &header)
}

#[test]
fn ipv6_fragments_follow_a_first_fragment_with_headers_after_its_fragment_header() {
    use frames::{IPV6_DEST_OPTIONS as DSTOPTS, ipv6_dest_options};
    let k = Kernel::new(&on_lo(&[web()]));
    // The first fragment: Fragment header, destination options, UDP. The
    // later ones name destination options (60) as their next header.
    let first = |id, dport| {
        let dns = frames::udp(40000, dport, &[0; 64]);
        ip6_fragment(DSTOPTS, id, 0, true, &ipv6_dest_options(UDP, &dns))
    };
    let later = |next, id| ip6_fragment(next, id, 10, false, &[0; 64]);
    #[rustfmt::skip]
    k.check(&[
        case("first fragment, dns",          Ingress, first(1, 53),      RuleAccept),
        case("its later fragment",           Ingress, later(DSTOPTS, 1), FragmentAccept),
        // The receiver reassembles by addresses and identification alone.
        case("its later fragment, next UDP", Ingress, later(UDP, 1),     FragmentAccept),
        case("first fragment, closed port",  Ingress, first(2, 54),      DefaultDrop),
        case("its later fragment",           Ingress, later(DSTOPTS, 2), FragmentDrop),
        case("no first fragment",            Ingress, later(DSTOPTS, 3), FragmentDrop),
    ]);
    let v = k.run(Ingress, &later(DSTOPTS, 1));
    assert_eq!(v.origin, rule("sg-web", WEB_DNS));
}

#[test]
fn fragment_entries_expire() {
    let k = Kernel::new(&on_lo(&[web()]));
    let dns = frames::udp(40000, 53, &[0; 64]);
    let first = ip6_fragment(UDP, 5, 0, true, &dns);
    let later = ip6_fragment(UDP, 5, 10, false, &[0; 64]);
    let (c, s) = (v4(CLIENT), v4(SERVER));
    let http = frames::tcp_syn(40000, 80);
    let first4 = frames::ipv4_fragment(c, s, TCP, 6, frames::IPV4_MF, &http);
    let later4 = frames::ipv4_fragment(c, s, TCP, 6, 10, &[0; 64]);
    let (first4, later4) = (
        frames::ethernet(frames::ETH_P_IP, &first4),
        frames::ethernet(frames::ETH_P_IP, &later4),
    );
    #[rustfmt::skip]
    k.check(&[
        case("first fragment",     Ingress, first,          RuleAccept),
        case("later fragment",     Ingress, later.clone(),  FragmentAccept),
        case("first fragment, v4", Ingress, first4,         RuleAccept),
        case("later fragment, v4", Ingress, later4.clone(), FragmentAccept),
    ]);
    std::thread::sleep(std::time::Duration::from_millis(
        sg_common::FRAGMENT_TIMEOUT_SECS * 1000 + 300,
    ));
    // A later datagram reusing the identification, whose first fragment
    // was not seen, does not inherit the old decision.
    #[rustfmt::skip]
    k.check(&[
        case("later fragment, expired",     Ingress, later,  FragmentDrop),
        case("later fragment, v4, expired", Ingress, later4, FragmentDrop),
    ]);
}

#[test]
fn icmpv6_errors_quoting_extension_headers_are_related() {
    use frames::{
        IPV6_DEST_OPTIONS as DSTOPTS, IPV6_FRAGMENT as FRAGMENT, IPV6_HOP_BY_HOP as HOP_BY_HOP,
        ipv6_dest_options, ipv6_fragment_header, ipv6_hop_by_hop,
    };
    let k = Kernel::new(&on_lo(&[web()]));
    let remote6 = "2001:db8:ff::53";
    let query = frames::udp(40000, 53, b"query");
    let udp8 = &query[..8];
    let never_sent = &frames::udp(40001, 53, b"query")[..8];
    // Port unreachable quoting our datagram: the fixed header names `next`,
    // then `headers` (extension headers and the first 8 bytes of UDP).
    let unreachable = |next, headers: Vec<u8>| {
        let quote = frames::ipv6(v6(SERVER6), v6(remote6), next, &headers);
        icmp(remote6, SERVER6, 1, 4, [0; 4], &quote)
    };
    let two = ipv6_hop_by_hop(DSTOPTS, &ipv6_dest_options(UDP, udp8));
    let fragment = ipv6_fragment_header(DSTOPTS, 9, 0, true, &ipv6_dest_options(UDP, udp8));
    let later = ipv6_fragment_header(UDP, 9, 10, false, &[0; 8]);
    #[rustfmt::skip]
    k.check(&[
        case("query",                          Egress,  udp(SERVER6, remote6, 40000, 53, b"query"),     DefaultAccept),
        case("quoting UDP",                    Ingress, unreachable(UDP, udp8.to_vec()),                Related),
        case("quoting hop-by-hop",             Ingress, unreachable(HOP_BY_HOP, ipv6_hop_by_hop(UDP, udp8)), Related),
        case("quoting destination options",    Ingress, unreachable(DSTOPTS, ipv6_dest_options(UDP, udp8)),  Related),
        case("quoting two headers",            Ingress, unreachable(HOP_BY_HOP, two),                   Related),
        case("quoting a first fragment",       Ingress, unreachable(FRAGMENT, fragment),                Related),
        // A datagram never sent, and a later fragment (no ports), are not.
        case("quoting a datagram never sent",  Ingress, unreachable(HOP_BY_HOP, ipv6_hop_by_hop(UDP, never_sent)), DefaultDrop),
        case("quoting a later fragment",       Ingress, unreachable(FRAGMENT, later),                   DefaultDrop),
    ]);
}

#[test]
fn icmp_errors_about_a_session_are_related() {
    let k = Kernel::new(&on_lo(&[web()]));
    let remote = "203.0.113.53";
    let query = frames::udp(40000, 53, b"query");
    let query_frame = frames::ip_frame(ip(SERVER), ip(remote), UDP, &query);
    let never_sent = frames::udp(40001, 53, b"query");
    // Port unreachable quoting a datagram (IP header + 8 bytes).
    let unreachable_about = |datagram: &[u8]| {
        let quote = frames::ipv4(v4(SERVER), v4(remote), UDP, &[], &datagram[..8]);
        icmp(remote, SERVER, 3, 3, [0; 4], &quote)
    };
    // ICMPv6: time exceeded about an outbound TCP connection.
    let (remote6, router6) = ("2001:db8:ff::1", "2001:db8::fe");
    let https = frames::tcp_syn(40000, 443);
    let quote = frames::ipv6(v6(SERVER6), v6(remote6), TCP, &https[..8]);
    let exceeded = icmp(router6, SERVER6, 3, 0, [0; 4], &quote);
    #[rustfmt::skip]
    k.check(&[
        case("query",                   Egress,  query_frame,                       DefaultAccept),
        case("unreachable about it",    Ingress, unreachable_about(&query),         Related),
        // The same error about a datagram never sent is dropped.
        case("unreachable, never sent", Ingress, unreachable_about(&never_sent),    DefaultDrop),
        case("https, v6",               Egress,  syn(SERVER6, remote6, 40000, 443), DefaultAccept),
        case("time exceeded about it",  Ingress, exceeded,                          Related),
    ]);
}

#[test]
fn a_new_drop_rule_ends_a_matching_session_and_nothing_else() {
    let mut k = Kernel::new(&on_lo(&[web()]));
    let http_from = |sport| syn(CLIENT, SERVER, sport, 80);
    let reply = || syn(SERVER, CLIENT, 80, 40000);
    let dns = "203.0.113.53";
    #[rustfmt::skip]
    k.check(&[
        case("http",      Ingress, http_from(40000),                  RuleAccept),
        case("dns query", Egress,  udp(SERVER, dns, 40000, 53, b"q"), DefaultAccept),
    ]);

    // The accept rule is removed: the session goes on, new ones are refused.
    let without = on_lo(&[web_opening("8080/8080")]);
    k.install(&sg_daemon::config::parse(std::path::Path::new("t.toml"), &without).unwrap());
    #[rustfmt::skip]
    k.check(&[
        case("http reply, rule gone", Egress,  reply(),          Session),
        case("new http, rule gone",   Ingress, http_from(40001), DefaultDrop),
    ]);

    // An explicit drop rule matching the session's opening packet ends it
    // at its next packet, whichever way that packet goes.
    let block = Group::new("sg-block").rules([drop_in("tcp", "80/80", CLIENT).id("no-web")]);
    let with_drop = on_lo(&[web_opening("8080/8080"), block]);
    k.install(&sg_daemon::config::parse(std::path::Path::new("t.toml"), &with_drop).unwrap());
    let v = k.run(Egress, &reply());
    assert_eq!((v.reason, v.code), (SessionEnded, DROP));
    assert_eq!(v.origin, rule("sg-block", "no-web"));
    #[rustfmt::skip]
    k.check(&[
        // It stays ended, both ways (the egress default does not open it
        // again).
        case("reply, session ended",  Egress,  reply(),                           SessionEnded),
        case("client, session ended", Ingress, http_from(40000),                  SessionEnded),
        // The UDP session matches no drop rule and survives both changes.
        case("dns answer",            Ingress, udp(dns, SERVER, 53, 40000, b"a"), Session),
    ]);
}

/// SPEC §3.6: a server pushing data to a client whose session a drop rule
/// ended: every later segment is dropped both ways, also after another
/// ruleset change that keeps the drop rule, and ICMP errors about it are
/// not related; the sweeper keeps the ended entry while the rule stays.
/// Once the drop rule is gone the flow is judged afresh.
#[test]
fn an_ended_session_stays_ended_both_ways_while_its_drop_rule_stays() {
    use frames::{ACK, SYN};
    let push = || tcp(SERVER, CLIENT, 80, 40000, ACK | 0x08);
    let client_ack = || tcp(CLIENT, SERVER, 40000, 80, ACK);
    let mut k = Kernel::new(&on_lo(&[web()]));
    #[rustfmt::skip]
    k.check(&[
        case("connect",     Ingress, tcp(CLIENT, SERVER, 40000, 80, SYN),       RuleAccept),
        case("accept",      Egress,  tcp(SERVER, CLIENT, 80, 40000, SYN | ACK), Session),
        case("push",        Egress,  push(),                                    Session),
        case("client acks", Ingress, client_ack(),                              Session),
    ]);
    let install = |k: &mut Kernel, groups: &[Group]| {
        let toml = on_lo(groups);
        k.install(&sg_daemon::config::parse(std::path::Path::new("t.toml"), &toml).unwrap());
    };
    let block = || Group::new("sg-block").rules([drop_in("all", "-1/-1", CLIENT).id("client")]);
    install(&mut k, &[web(), block()]);
    // The server's port unreachable about the client's segment (a quote of
    // the IP header and 8 bytes).
    let quote = frames::ipv4(
        v4(CLIENT),
        v4(SERVER),
        TCP,
        &[],
        &frames::tcp(40000, 80, ACK)[..8],
    );
    let unreachable = icmp(SERVER, CLIENT, 3, 3, [0; 4], &quote);
    #[rustfmt::skip]
    let ended = [
        case("push, ended",        Egress,  push(),       SessionEnded),
        case("push again",         Egress,  push(),       SessionEnded),
        case("client acks, ended", Ingress, client_ack(), SessionEnded),
        // Not related to a live session: the basic egress default.
        case("unreachable about it", Egress, unreachable, DefaultAccept),
    ];
    k.check(&ended);
    let state = |k: &Kernel| {
        let sessions = k.dataplane.sessions().unwrap();
        let (_, v) = sessions
            .iter()
            .find(|(key, _)| key.remote_port == 40000)
            .unwrap();
        (v.ended, v.state)
    };
    assert_eq!(state(&k), (1, sg_common::SESSION_ESTABLISHED));
    let timeouts = SessionTimeouts::DEFAULT;
    let swept = k.dataplane.sweep_sessions(&timeouts, |_, _| true).unwrap();
    assert_eq!(swept, 0, "an ended session was swept while its rule stays");

    // Another change that keeps the drop rule keeps it ended.
    let other = Group::new("sg-other").rules([accept_in("udp", "53/53", "0.0.0.0/0")]);
    install(&mut k, &[web(), block(), other]);
    k.check(&ended[..3]);

    // Without the drop rule the flow is new: the egress default opens a
    // session that the client's answer answers (the server, its opener,
    // has not acknowledged that answer yet).
    install(&mut k, &[web()]);
    #[rustfmt::skip]
    k.check(&[
        case("push, rule gone",        Egress,  push(),       DefaultAccept),
        case("client acks, rule gone", Ingress, client_ack(), Session),
    ]);
    assert_eq!(state(&k), (0, sg_common::SESSION_ANSWERED));
}

/// An ended session the sweeper is told no drop rule ends any more is
/// freed; one it is told is still ended stays.
#[test]
fn the_sweeper_frees_ended_sessions_only_when_their_rule_is_gone() {
    let mut k = Kernel::new(&on_lo(&[web()]));
    #[rustfmt::skip]
    k.check(&[case("connect", Ingress, syn(CLIENT, SERVER, 40000, 80), RuleAccept)]);
    let blocked = on_lo(&[
        web(),
        Group::new("sg-block").rules([drop_in("all", "-1/-1", CLIENT)]),
    ]);
    k.install(&sg_daemon::config::parse(std::path::Path::new("t.toml"), &blocked).unwrap());
    #[rustfmt::skip]
    k.check(&[case("ended", Egress, syn(SERVER, CLIENT, 80, 40000), SessionEnded)]);
    let timeouts = SessionTimeouts::DEFAULT;
    assert_eq!(
        k.dataplane.sweep_sessions(&timeouts, |_, _| true).unwrap(),
        0
    );
    assert_eq!(
        k.dataplane.sweep_sessions(&timeouts, |_, _| false).unwrap(),
        1
    );
    assert!(k.dataplane.sessions().unwrap().is_empty());
}

/// SPEC §3.6: TCP sessions follow the connection, each state with its
/// idle timeout, which the kernel checks itself. With `syn_timeout_secs`
/// and `tcp_closed_timeout_secs` at 1 s: after 1.5 s idle a half-open
/// session (no answer), and one closed by a RST or by a FIN each way, are
/// gone, while established ones (`session_timeout_secs`, 910 s) are not.
/// A RST opens nothing; a connection picked up mid-stream (an ACK) starts
/// half-open; a SYN on a closed connection's ports is judged by the rules.
#[test]
fn tcp_sessions_follow_the_connection_with_a_timeout_per_state() {
    use frames::{ACK, FIN, RST, SYN};
    use sg_common::{SESSION_CLOSED, SESSION_ESTABLISHED, SESSION_HALF_OPEN};
    let config = format!(
        "[daemon]\nsyn_timeout_secs = 1\ntcp_closed_timeout_secs = 1\n{}",
        on_lo(&[web()])
    );
    let mut k = Kernel::new(&config);
    let remote = "203.0.113.80";
    let out = |port, flags| tcp(SERVER, remote, port, 443, flags);
    let reply = |port, flags| tcp(remote, SERVER, 443, port, flags);
    #[rustfmt::skip]
    k.check(&[
        case("half-open: SYN",            Egress,  out(40001, SYN),             DefaultAccept),
        case("established: SYN",         Egress,  out(40002, SYN),             DefaultAccept),
        case("established: SYN+ACK",      Ingress, reply(40002, SYN | ACK),     Session),
        case("established: ACK",          Egress,  out(40002, ACK),             Session),
        case("RST: SYN",                  Egress,  out(40003, SYN),             DefaultAccept),
        case("RST: SYN+ACK",              Ingress, reply(40003, SYN | ACK),     Session),
        case("RST: RST",                  Egress,  out(40003, RST),             Session),
        case("RST: last ACK",             Ingress, reply(40003, ACK),           Session),
        case("FINs: SYN",                 Egress,  out(40004, SYN),             DefaultAccept),
        case("FINs: SYN+ACK",             Ingress, reply(40004, SYN | ACK),     Session),
        case("FINs: FIN out",             Egress,  out(40004, FIN | ACK),       Session),
        case("FINs: FIN in",              Ingress, reply(40004, FIN | ACK),     Session),
        case("one FIN: SYN",              Egress,  out(40005, SYN),             DefaultAccept),
        case("one FIN: SYN+ACK",          Ingress, reply(40005, SYN | ACK),     Session),
        case("one FIN: FIN out",          Egress,  out(40005, FIN | ACK),       Session),
        case("mid-stream ACK",            Egress,  out(40006, ACK),             DefaultAccept),
        case("RST alone",                 Egress,  out(40007, RST),             DefaultAccept),
        case("RST alone: answer",         Ingress, reply(40007, ACK),           DefaultDrop),
        case("reused: SYN",               Egress,  out(40008, SYN),             DefaultAccept),
        case("reused: SYN+ACK",           Ingress, reply(40008, SYN | ACK),     Session),
        case("reused: RST in",            Ingress, reply(40008, RST),           Session),
        case("reused: new SYN in",        Ingress, reply(40008, SYN),           DefaultDrop),
        case("reused: ACK in",            Ingress, reply(40008, ACK),           Session),
    ]);
    let states: Vec<(u16, u8)> = {
        let mut s: Vec<_> = k
            .dataplane
            .sessions()
            .unwrap()
            .into_iter()
            .map(|(key, v)| (key.local_port, v.state))
            .collect();
        s.sort();
        s
    };
    #[rustfmt::skip]
    assert_eq!(states, [
        (40001, SESSION_HALF_OPEN), (40002, SESSION_ESTABLISHED), (40003, SESSION_CLOSED),
        (40004, SESSION_CLOSED), (40005, SESSION_ESTABLISHED), (40006, SESSION_HALF_OPEN),
        (40008, SESSION_CLOSED),
    ]);

    std::thread::sleep(std::time::Duration::from_millis(1500));
    // The sweeper frees what the kernel no longer uses, by the same
    // timeouts.
    let timeouts = SessionTimeouts {
        half_open_ns: 1_000_000_000,
        closed_ns: 1_000_000_000,
        ..SessionTimeouts::DEFAULT
    };
    assert_eq!(
        k.dataplane.sweep_sessions(&timeouts, |_, _| true).unwrap(),
        5
    );
    #[rustfmt::skip]
    k.check(&[
        case("half-open, expired",      Ingress, reply(40001, SYN | ACK), DefaultDrop),
        case("established, idle 1.5 s", Ingress, reply(40002, ACK),       Session),
        case("closed by RST, expired",  Ingress, reply(40003, ACK),       DefaultDrop),
        case("closed by FINs, expired", Ingress, reply(40004, ACK),       DefaultDrop),
        case("one FIN, idle 1.5 s",     Ingress, reply(40005, ACK),       Session),
        case("mid-stream, unanswered",  Ingress, reply(40006, ACK),       DefaultDrop),
    ]);
}

#[test]
fn five_tuple_rules_match_local_address_and_source_port() {
    let ssh = accept_in("tcp", "22/22", "0.0.0.0/0")
        .id("ssh-from-high-ports-to-one-address")
        .source_ports("1024/65535")
        .local("192.0.2.100");
    let k = Kernel::new(&on_lo(&[Group::new("sg-5t").rules([ssh])]));
    let ssh = |sport, dst| syn(CLIENT, dst, sport, 22);
    #[rustfmt::skip]
    k.check(&[
        case("high port to the address", Ingress, ssh(40000, "192.0.2.100"), RuleAccept),
        case("low port to the address",  Ingress, ssh(1000, "192.0.2.100"),  DefaultDrop),
        case("high port, other address", Ingress, ssh(40001, "192.0.2.1"),   DefaultDrop),
    ]);
}

#[test]
fn hypervisor_mode_swaps_directions_and_drops_spoofed_sources() {
    let vm = Group::new("sg-vm").rules([accept_in("tcp", "22/22", "0.0.0.0/0")]);
    let port = interface("lo", &["sg-vm"]).hypervisor(&["192.0.2.11", "2001:db8::11"]);
    let k = Kernel::new(&format!("{vm}{port}"));
    let to_vm = |port| syn(CLIENT, "192.0.2.11", 40000, port);
    let from_vm = |src| syn(src, CLIENT, 40000, 443);
    let v6_out = udp("2001:db8::11", "2001:db8::2", 1, 2, b"");
    let solicitation = icmp("fe80::11", "ff02::1:ff00:2", 135, 0, [0; 4], &[0; 16]);
    #[rustfmt::skip]
    k.check(&[
        // TC egress of the host-side interface is the instance's inbound.
        case("ssh to the instance",      Egress,  to_vm(22),             RuleAccept),
        case("http to the instance",     Egress,  to_vm(80),             DefaultDrop),
        // TC ingress is the instance's outbound: only from its own addresses.
        case("out from its address",     Ingress, from_vm("192.0.2.11"), DefaultAccept),
        case("out from another address", Ingress, from_vm("192.0.2.99"), Spoofed),
        case("out from its v6 address",  Ingress, v6_out,                DefaultAccept),
        // Neighbour discovery from the instance's link-local address passes.
        case("solicitation, link-local", Ingress, solicitation,          NeighborDiscovery),
    ]);
}

/// An instance behind `lo` in hypervisor mode, 192.0.2.11 and
/// 2001:db8::11, in a group that admits SSH; `extra` goes into its
/// `[[interface]]` table (a `mac`), `daemon` before everything.
fn instance(daemon: &str, mac: Option<&str>) -> Kernel {
    let vm = Group::new("sg-vm").rules([accept_in("tcp", "22/22", "0.0.0.0/0")]);
    let mut port = interface("lo", &["sg-vm"]).hypervisor(&["192.0.2.11", "2001:db8::11"]);
    if let Some(mac) = mac {
        port = port.mac(mac);
    }
    Kernel::new(&format!("{daemon}{vm}{port}"))
}

/// Another instance's MAC, and the broadcast address.
const OTHER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x12];
const BROADCAST: [u8; 6] = [0xff; 6];

/// An ARP frame from [`frames::SOURCE_MAC`]: `op`, sender address `spa`
/// (sender MAC `sha`), target address `tpa`.
fn arp(op: u16, sha: [u8; 6], spa: &str, tpa: &str) -> Vec<u8> {
    frames::ethernet(ETH_P_ARP, &frames::arp(op, sha, v4(spa), [0; 6], v4(tpa)))
}

/// `frame` with `mac` as its Ethernet source.
fn from_mac(frame: Vec<u8>, mac: [u8; 6]) -> Vec<u8> {
    sg_tests::wire::address(frame, BROADCAST, mac)
}

/// An ICMPv6 neighbour discovery message `body` from `src` to `dst`.
fn nd(src: &str, dst: &str, body: Vec<u8>) -> Vec<u8> {
    frames::ip_frame(ip(src), ip(dst), ICMPV6, &body)
}

/// Issue #8: an instance answers ARP, or announces itself, only for its own
/// addresses: ARP (replies, requests, gratuitous ARP, behind VLAN tags
/// too) whose sender address is another's would move that address's
/// traffic to it. A probe from 0.0.0.0 (RFC 5227: duplicate address
/// detection, DHCP checking an offer) claims nothing and passes. ARP to the
/// instance, and on instance-mode interfaces, is not checked.
#[test]
fn hypervisor_instances_arp_only_for_their_own_addresses() {
    use frames::{ARP_REPLY, ARP_REQUEST, SOURCE_MAC as MAC};
    let k = instance("", None);
    let claim = |spa| arp(ARP_REPLY, MAC, spa, "192.0.2.1");
    let gratuitous = |spa| arp(ARP_REQUEST, MAC, spa, spa);
    let tagged = |tags: &[u16], spa| {
        let payload = frames::arp(ARP_REPLY, MAC, v4(spa), [0; 6], v4("192.0.2.1"));
        frames::tagged(tags, 7, ETH_P_ARP, &payload)
    };
    let mut ipv6_arp = frames::arp(ARP_REQUEST, MAC, v4("192.0.2.11"), [0; 6], v4("192.0.2.1"));
    ipv6_arp[2..4].copy_from_slice(&0x86ddu16.to_be_bytes());
    let truncated = frames::ethernet(ETH_P_ARP, &claim("192.0.2.11")[14..14 + 20]);
    #[rustfmt::skip]
    k.check(&[
        case("request from its address",       Ingress, arp(ARP_REQUEST, MAC, "192.0.2.11", "192.0.2.1"), NotIp),
        case("reply from its address",         Ingress, claim("192.0.2.11"),        NotIp),
        case("gratuitous, its address",        Ingress, gratuitous("192.0.2.11"),   NotIp),
        case("probe from 0.0.0.0",             Ingress, arp(ARP_REQUEST, MAC, "0.0.0.0", "192.0.2.12"), NotIp),
        case("reply for another instance",     Ingress, claim("192.0.2.12"),        Spoofed),
        case("gratuitous, another's address",  Ingress, gratuitous("192.0.2.12"),   Spoofed),
        case("request from another address",  Ingress, arp(ARP_REQUEST, MAC, "192.0.2.12", "192.0.2.1"), Spoofed),
        case("reply for another, VLAN tag",    Ingress, tagged(&[frames::ETH_P_8021Q], "192.0.2.12"), Spoofed),
        case("reply for another, QinQ",        Ingress, tagged(&[frames::ETH_P_8021AD, frames::ETH_P_8021Q], "192.0.2.12"), Spoofed),
        // Any tag from an instance is dropped: it sits on an access port.
        case("reply for itself, QinQ",         Ingress, tagged(&[frames::ETH_P_8021AD, frames::ETH_P_8021Q], "192.0.2.11"), Spoofed),
        // Not IPv4 over Ethernet, or cut short: nothing an instance needs.
        case("ARP for another protocol",       Ingress, frames::ethernet(ETH_P_ARP, &ipv6_arp), Malformed),
        case("ARP cut short",                  Ingress, truncated,                  Malformed),
        // To the instance: not its claim.
        case("reply for another, inbound",     Egress,  claim("192.0.2.12"),        NotIp),
    ]);
    let host = Kernel::new(&on_lo(&[web()]));
    #[rustfmt::skip]
    host.check(&[
        case("instance mode, any sender",      Ingress, claim("192.0.2.12"),        NotIp),
        case("instance mode, outbound",        Egress,  claim("192.0.2.12"),        NotIp),
    ]);
}

/// Issue #8: an instance advertises only its own addresses (or a
/// link-local one: its link-local addresses are not configured, and DHCPv6
/// and the router reach it there) and is no router: router advertisements
/// and redirects from it are dropped (RA guard), whatever
/// `builtin_neighbor_discovery` says. The router's reach the instance.
#[test]
fn hypervisor_instances_advertise_only_their_own_addresses_and_are_no_routers() {
    let na = |src, target| {
        nd(
            src,
            "ff02::1",
            frames::neighbor_advertisement(v6(target), None),
        )
    };
    let ra = |src| {
        nd(
            src,
            "ff02::1",
            frames::icmp(134, 0, [64, 0, 0x07, 0x08], &[0; 8]),
        )
    };
    let redirect = |src| {
        let body = [v6("2001:db8::1").octets(), v6("2001:db8::12").octets()].concat();
        nd(src, "2001:db8::11", frames::icmp(137, 0, [0; 4], &body))
    };
    let ns = |target| {
        let body = frames::neighbor_message(135, [0; 4], v6(target), &[]);
        nd("2001:db8::11", "ff02::1:ff00:12", body)
    };
    let cut_short = nd(
        "2001:db8::11",
        "ff02::1",
        frames::icmp(136, 0, [0x20, 0, 0, 0], &[0; 8]),
    );
    // With the built-in off, the rules decide what anti-spoofing lets by
    // (and link-local sources are left to the built-in alone).
    let cases = |builtin: bool| {
        let (out, link_local, inbound) = if builtin {
            (NeighborDiscovery, NeighborDiscovery, NeighborDiscovery)
        } else {
            (DefaultAccept, Spoofed, DefaultDrop)
        };
        #[rustfmt::skip]
        let cases = vec![
            case("NA, its address",                Ingress, na("2001:db8::11", "2001:db8::11"), out),
            case("NA, its link-local address",     Ingress, na("fe80::11", "fe80::11"),         link_local),
            case("NA, another's address",          Ingress, na("2001:db8::11", "2001:db8::12"), Spoofed),
            case("NA, another's, from link-local", Ingress, na("fe80::11", "2001:db8::12"),     Spoofed),
            case("NA without a target",            Ingress, cut_short.clone(),                  Spoofed),
            case("router advertisement",           Ingress, ra("fe80::11"),                     Spoofed),
            case("redirect",                       Ingress, redirect("fe80::11"),               Spoofed),
            case("solicitation for another",       Ingress, ns("2001:db8::12"),                 out),
            case("RA from the router",             Egress,  ra("fe80::1"),                      inbound),
            // Redirects are off unless `builtin_nd_redirects` says so.
            case("redirect from the router",       Egress,  redirect("fe80::1"),                DefaultDrop),
        ];
        cases
    };
    instance("", None).check(&cases(true));
    instance("[daemon]\nbuiltin_neighbor_discovery = false\n", None).check(&cases(false));
}

/// Issue #8: with `mac` set, the instance's frames (IP, ARP or any other)
/// come from that MAC, its ARP names it as sender, and its neighbour
/// discovery names no other link-layer address; otherwise they are
/// dropped. Frames to the instance come from any MAC.
#[test]
fn a_pinned_mac_is_the_only_one_an_instance_may_use() {
    use frames::{
        ARP_REPLY, ND_OPT_SOURCE_MAC as SLLA, ND_OPT_TARGET_MAC as TLLA, SOURCE_MAC as MAC,
    };
    let k = instance("", Some("02:00:00:00:00:02"));
    let out = syn("192.0.2.11", CLIENT, 40000, 443);
    let arp_own = arp(ARP_REPLY, MAC, "192.0.2.11", "192.0.2.1");
    let other_ethertype = frames::ethernet(0x88b5, &[0; 46]);
    let na = |options: &[(u8, [u8; 6])]| {
        let body = frames::neighbor_message(136, [0x20, 0, 0, 0], v6("2001:db8::11"), options);
        nd("2001:db8::11", "ff02::1", body)
    };
    let ns = |options: &[(u8, [u8; 6])]| {
        let body = frames::neighbor_message(135, [0; 4], v6("2001:db8::12"), options);
        nd("2001:db8::11", "ff02::1:ff00:12", body)
    };
    let rs = |mac: [u8; 6]| {
        let option = [&[SLLA, 1][..], &mac].concat();
        nd("fe80::11", "ff02::2", frames::icmp(133, 0, [0; 4], &option))
    };
    #[rustfmt::skip]
    k.check(&[
        case("IP from its MAC",                Ingress, out.clone(),                               DefaultAccept),
        case("IP from another MAC",            Ingress, from_mac(out.clone(), OTHER_MAC),          Spoofed),
        case("ARP from its MAC",               Ingress, arp_own.clone(),                           NotIp),
        case("ARP from another MAC",           Ingress, from_mac(arp_own, OTHER_MAC),              Spoofed),
        case("ARP naming another MAC",         Ingress, arp(ARP_REPLY, OTHER_MAC, "192.0.2.11", "192.0.2.1"), Spoofed),
        case("other frame from its MAC",       Ingress, other_ethertype.clone(),                   NotIp),
        case("other frame from another MAC",   Ingress, from_mac(other_ethertype, OTHER_MAC),      Spoofed),
        case("NA naming its MAC",              Ingress, na(&[(TLLA, MAC)]),                        NeighborDiscovery),
        case("NA naming no MAC",               Ingress, na(&[]),                                   NeighborDiscovery),
        case("NA naming another MAC",          Ingress, na(&[(TLLA, OTHER_MAC)]),                  Spoofed),
        case("NA naming it second",            Ingress, na(&[(TLLA, MAC), (SLLA, OTHER_MAC)]),     Spoofed),
        case("NA with five options",           Ingress, na(&[(TLLA, MAC); 5]),                     Spoofed),
        case("NS naming its MAC",              Ingress, ns(&[(SLLA, MAC)]),                        NeighborDiscovery),
        case("NS naming another MAC",          Ingress, ns(&[(SLLA, OTHER_MAC)]),                  Spoofed),
        case("RS naming its MAC",              Ingress, rs(MAC),                                   NeighborDiscovery),
        case("RS naming another MAC",          Ingress, rs(OTHER_MAC),                             Spoofed),
        // To the instance: from the router's MAC, or anyone's.
        case("ssh to the instance",            Egress,  from_mac(syn(CLIENT, "192.0.2.11", 40000, 22), OTHER_MAC), RuleAccept),
    ]);
    // Without a pinned MAC, any source MAC.
    #[rustfmt::skip]
    instance("", None).check(&[
        case("IP from another MAC, no pin",    Ingress, from_mac(out, OTHER_MAC),                  DefaultAccept),
        case("NA naming another MAC, no pin",  Ingress, na(&[(TLLA, OTHER_MAC)]),                  NeighborDiscovery),
    ]);
}

#[test]
fn the_sweeper_frees_only_idle_sessions() {
    let mut k = Kernel::new(&on_lo(&[web()]));
    let out = |port| udp(SERVER, "203.0.113.53", port, 53, b"q");
    #[rustfmt::skip]
    k.check(&[
        case("query from 40000", Egress, out(40000), DefaultAccept),
        case("query from 40001", Egress, out(40001), DefaultAccept),
    ]);
    assert_eq!(k.dataplane.sessions().unwrap().len(), 2);
    let idle_for = |ns| SessionTimeouts {
        established_ns: ns,
        ..SessionTimeouts::DEFAULT
    };
    // Nothing is idle for an hour yet.
    let sweep = |k: &mut Kernel, ns| k.dataplane.sweep_sessions(&idle_for(ns), |_, _| true);
    assert_eq!(sweep(&mut k, 3_600_000_000_000).unwrap(), 0);
    // The kernel refreshes a session's `last_seen_ns` once it is more than
    // a second old (timeouts are whole seconds): wait past that.
    std::thread::sleep(std::time::Duration::from_millis(1200));
    #[rustfmt::skip]
    k.check(&[case("query from 40001 again", Egress, out(40001), Session)]);
    // Idle for more than a second: only the one not touched since.
    assert_eq!(sweep(&mut k, 1_000_000_000).unwrap(), 1);
    let left = k.dataplane.sessions().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].0.local_port, 40001);
}

/// At most 8 IPv6 extension headers are walked (README): a chain of 8 is
/// decided by the rules, one of 9 is malformed.
#[test]
fn eight_extension_headers_are_walked_and_nine_are_too_many() {
    let k = Kernel::new(&on_lo(&[web()]));
    let chain = |n: usize| {
        // DNS, which `web` opens to 2001:db8::/32.
        let mut payload = frames::udp(40000, 53, b"q");
        let mut next = UDP;
        for _ in 0..n {
            let mut header = vec![next, 0, 1, 4, 0, 0, 0, 0];
            header.extend(payload);
            payload = header;
            next = frames::IPV6_DEST_OPTIONS;
        }
        let (src, dst) = (
            "2001:db8:1::7".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
        );
        frames::ethernet(frames::ETH_P_IPV6, &frames::ipv6(src, dst, next, &payload))
    };
    #[rustfmt::skip]
    k.check(&[
        case("8 destination-options headers", Ingress, chain(8), RuleAccept),
        case("9 destination-options headers", Ingress, chain(9), Malformed),
    ]);
}

/// A new session waits in the unanswered table and moves to the answered
/// one at the first packet the other way; the session statistics add up:
/// moves, sweeps and flushes are no evictions.
#[test]
fn an_answer_moves_a_session_to_the_answered_table() {
    let mut k = Kernel::new(&on_lo(&[web()]));
    let out = |port| udp(SERVER, "203.0.113.53", port, 53, b"q");
    let answer = |port| udp("203.0.113.53", SERVER, 53, port, b"a");
    let tables = |k: &Kernel| -> Vec<(u64, u64)> {
        let t = k.dataplane.session_tables().unwrap();
        assert_eq!(
            t.iter().map(|t| t.table).collect::<Vec<_>>(),
            ["answered", "unanswered"]
        );
        // The unanswered table holds a quarter of `session_table_size`.
        let capacities: Vec<u64> = t.iter().map(|t| t.capacity).collect();
        assert_eq!(capacities, [131_072, 32_768], "{t:?}");
        t.iter().map(|t| (t.entries, t.evictions)).collect()
    };
    k.check(&[
        case("query from 40000", Egress, out(40000), DefaultAccept),
        case("query from 40001", Egress, out(40001), DefaultAccept),
    ]);
    k.check(&[case("again", Egress, out(40001), Session)]);
    assert_eq!(tables(&k), [(0, 0), (2, 0)]);
    #[rustfmt::skip]
    k.check(&[
        case("answer to 40001",       Ingress, answer(40001), Session),
        case("answer to 40001 again", Ingress, answer(40001), Session),
        case("query from 40001",      Egress,  out(40001),    Session),
    ]);
    assert_eq!(tables(&k), [(1, 0), (1, 0)]);
    let expired = SessionTimeouts {
        established_ns: 1,
        ..SessionTimeouts::DEFAULT
    };
    assert_eq!(
        k.dataplane.sweep_sessions(&expired, |_, _| true).unwrap(),
        2
    );
    assert_eq!(tables(&k), [(0, 0), (0, 0)]);
    // One session of each table.
    for (port, answered) in [(40002, true), (40003, false)] {
        k.check(&[case("query", Egress, out(port), DefaultAccept)]);
        if answered {
            k.check(&[case("answer", Ingress, answer(port), Session)]);
        }
    }
    assert_eq!(tables(&k), [(1, 0), (1, 0)]);
    k.dataplane.flush_sessions().unwrap();

    // A RST is no answer: the dead session stays unanswered.
    use frames::{RST, SYN};
    let to_closed_port = tcp(SERVER, "203.0.113.53", 40005, 8080, SYN);
    let reset = tcp("203.0.113.53", SERVER, 8080, 40005, RST);
    #[rustfmt::skip]
    k.check(&[
        case("SYN to a closed port", Egress,  to_closed_port, DefaultAccept),
        case("its RST",              Ingress, reset,          Session),
    ]);
    assert_eq!(tables(&k), [(0, 0), (1, 0)]);
    k.dataplane.flush_sessions().unwrap();
    assert_eq!(tables(&k), [(0, 0), (0, 0)]);

    // An ended session is kept with the answered ones: a flood of new
    // flows must not evict it either.
    #[rustfmt::skip]
    k.check(&[case("query from 40004", Egress, out(40004), DefaultAccept)]);
    let block = Group::new("sg-block").rules([drop_out("udp", "53/53", "203.0.113.53/32")]);
    let toml = on_lo(&[web(), block]);
    k.install(&sg_daemon::config::parse(std::path::Path::new("t.toml"), &toml).unwrap());
    #[rustfmt::skip]
    k.check(&[case("query from 40004, ended", Egress, out(40004), SessionEnded)]);
    assert_eq!(tables(&k), [(1, 0), (0, 0)]);
}
