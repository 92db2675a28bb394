//! The loaded classifier on crafted frames, through `BPF_PROG_TEST_RUN`:
//! header parsing (truncation, IPv4 options, IPv6 extension headers,
//! non-IP), the built-ins, the rule order, sessions, related ICMP,
//! fragments, anti-spoofing. Nothing is attached anywhere: each test loads
//! its own copy of the program and maps.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::{DROP, Kernel, PASS};
use sg_common::Reason;
use sg_daemon::{compile::Origin, dataplane::Hook};
use sg_tests::frames::{self, ICMP, ICMPV6, TCP, UDP};

impl Kernel {
    fn expect(&self, hook: Hook, frame: &[u8], reason: Reason) {
        let v = self.run(hook, frame);
        assert_eq!(v.reason, reason, "decided by");
        let want = if reason.accepts() { PASS } else { DROP };
        assert_eq!(v.code, want, "TC return code for {reason:?}");
    }
}

const WEB: &str = r#"
[[security_group]]
id = "sg-web"
  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range = "80/80"
  source_cidr_ip = "0.0.0.0/0"
  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "udp"
  port_range = "53/53"
  source_cidr_ip = "2001:db8::/32"
[[interface]]
name = "lo"
security_groups = ["sg-web"]
"#;

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}
fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}
fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const CLIENT: &str = "198.51.100.7";
const SERVER: &str = "192.0.2.1";

#[test]
fn non_ip_frames_pass() {
    let k = Kernel::new(WEB);
    let arp = frames::arp_request(v4(CLIENT), v4(SERVER));
    k.expect(Hook::Ingress, &arp, Reason::NotIp);
    k.expect(Hook::Egress, &arp, Reason::NotIp);
    // An unknown ethertype is not IP either.
    k.expect(
        Hook::Ingress,
        &frames::ethernet(0x88b5, &[0; 46]),
        Reason::NotIp,
    );
}

#[test]
fn rules_decide_inbound_and_default_drops() {
    let k = Kernel::new(WEB);
    let syn = |port| frames::ip_frame(ip(CLIENT), ip(SERVER), TCP, &frames::tcp_syn(40000, port));
    k.expect(Hook::Ingress, &syn(80), Reason::RuleAccept);
    k.expect(Hook::Ingress, &syn(22), Reason::DefaultDrop);
    let dns6 = frames::ip_frame(
        ip("2001:db8::9"),
        ip("2001:db8::1"),
        UDP,
        &frames::udp(5353, 53, b"q"),
    );
    k.expect(Hook::Ingress, &dns6, Reason::RuleAccept);
    let dns6_outside = frames::ip_frame(
        ip("2001:db9::9"),
        ip("2001:db8::1"),
        UDP,
        &frames::udp(5353, 53, b"q"),
    );
    k.expect(Hook::Ingress, &dns6_outside, Reason::DefaultDrop);
    // Outbound: basic groups accept by default.
    let out = frames::ip_frame(ip(SERVER), ip(CLIENT), UDP, &frames::udp(40000, 9999, b"x"));
    k.expect(Hook::Egress, &out, Reason::DefaultAccept);
}

#[test]
fn ipv4_options_are_skipped_by_ihl() {
    let k = Kernel::new(WEB);
    // Eight bytes of options whose bytes 2..4 read as port 80 if the
    // transport header were looked for at a fixed offset of 20.
    let options = [0x01, 0x01, 0x00, 0x50, 0x01, 0x01, 0x01, 0x00];
    let to_port = |port| {
        frames::ethernet(
            frames::ETH_P_IP,
            &frames::ipv4(
                v4(CLIENT),
                v4(SERVER),
                TCP,
                &options,
                &frames::tcp_syn(40000, port),
            ),
        )
    };
    k.expect(Hook::Ingress, &to_port(80), Reason::RuleAccept);
    k.expect(Hook::Ingress, &to_port(22), Reason::DefaultDrop);
    // The maximum IHL (15 words, 40 bytes of options).
    let max = frames::ethernet(
        frames::ETH_P_IP,
        &frames::ipv4(
            v4(CLIENT),
            v4(SERVER),
            TCP,
            &[1; 40],
            &frames::tcp_syn(40001, 80),
        ),
    );
    k.expect(Hook::Ingress, &max, Reason::RuleAccept);
}

#[test]
fn truncated_and_invalid_headers_are_dropped() {
    let k = Kernel::new(WEB);
    let good = frames::ipv4(
        v4(CLIENT),
        v4(SERVER),
        TCP,
        &[],
        &frames::tcp_syn(40000, 80),
    );
    // The kernel's test run refuses an IP ethertype with less than a fixed
    // IP header, so cut-short IP headers travel behind an 802.1Q tag.
    k.expect(
        Hook::Ingress,
        &frames::vlan(frames::ETH_P_IP, &good[..12]),
        Reason::Malformed,
    );
    k.expect(
        Hook::Ingress,
        &frames::vlan(frames::ETH_P_IP, &good[..19]),
        Reason::Malformed,
    );
    // Behind the tag, a whole packet is classified as usual.
    k.expect(
        Hook::Ingress,
        &frames::vlan(frames::ETH_P_IP, &good),
        Reason::RuleAccept,
    );
    // TCP header cut short (10 of 20 bytes).
    k.expect(
        Hook::Ingress,
        &frames::ethernet(frames::ETH_P_IP, &good[..30]),
        Reason::Malformed,
    );
    // IHL below 5.
    let mut bad_ihl = good.clone();
    bad_ihl[0] = 0x44;
    k.expect(
        Hook::Ingress,
        &frames::ethernet(frames::ETH_P_IP, &bad_ihl),
        Reason::Malformed,
    );
    // IHL pointing past the end of the packet.
    let mut long_ihl = good[..24].to_vec();
    long_ihl[0] = 0x4f;
    k.expect(
        Hook::Ingress,
        &frames::ethernet(frames::ETH_P_IP, &long_ihl),
        Reason::Malformed,
    );
    // Version field says 6 under an IPv4 ethertype.
    let mut wrong_version = good.clone();
    wrong_version[0] = 0x65;
    k.expect(
        Hook::Ingress,
        &frames::ethernet(frames::ETH_P_IP, &wrong_version),
        Reason::Malformed,
    );
    // IPv6 fixed header cut short; UDP header cut short.
    let six = frames::ipv6(
        v6("2001:db8::9"),
        v6("2001:db8::1"),
        UDP,
        &frames::udp(1, 53, b""),
    );
    k.expect(
        Hook::Ingress,
        &frames::vlan(frames::ETH_P_IPV6, &six[..30]),
        Reason::Malformed,
    );
    k.expect(
        Hook::Ingress,
        &frames::ethernet(frames::ETH_P_IPV6, &six[..44]),
        Reason::Malformed,
    );
    // ICMP shorter than its 8-byte header.
    let icmp = frames::ipv4(v4(CLIENT), v4(SERVER), ICMP, &[], &[8, 0, 0, 0]);
    k.expect(
        Hook::Ingress,
        &frames::ethernet(frames::ETH_P_IP, &icmp),
        Reason::Malformed,
    );
    // Malformed outbound IP is dropped too.
    k.expect(
        Hook::Egress,
        &frames::ethernet(frames::ETH_P_IP, &good[..30]),
        Reason::Malformed,
    );
}

const LOCKED_DOWN: &str = r#"
[[security_group]]
id = "sg-locked"
  [[security_group.egress]]
  policy = "drop"
  priority = 1
  ip_protocol = "all"
  port_range = "-1/-1"
  dest_cidr_ip = "0.0.0.0/0"
  [[security_group.egress]]
  policy = "drop"
  priority = 1
  ip_protocol = "all"
  port_range = "-1/-1"
  dest_cidr_ip = "::/0"
[[interface]]
name = "lo"
security_groups = ["sg-locked"]
"#;

#[test]
fn metadata_is_reachable_despite_a_drop_all_egress_rule() {
    let k = Kernel::new(LOCKED_DOWN);
    let metadata = ip("100.100.100.200");
    let request = frames::ip_frame(ip(SERVER), metadata, TCP, &frames::tcp_syn(40000, 80));
    k.expect(Hook::Egress, &request, Reason::Metadata);
    // Its reply comes back through the session the request opened.
    let reply = frames::ip_frame(metadata, ip(SERVER), TCP, &frames::tcp_syn(80, 40000));
    k.expect(Hook::Ingress, &reply, Reason::Session);
    // Anything else outbound is dropped by the rule.
    let other = frames::ip_frame(
        ip(SERVER),
        ip("100.100.100.201"),
        TCP,
        &frames::tcp_syn(40000, 80),
    );
    k.expect(Hook::Egress, &other, Reason::RuleDrop);
    // Unsolicited traffic from the metadata address is not special.
    let unsolicited = frames::ip_frame(metadata, ip(SERVER), TCP, &frames::tcp_syn(80, 40001));
    k.expect(Hook::Ingress, &unsolicited, Reason::DefaultDrop);
}

#[test]
fn pmtud_messages_pass_inbound_from_anywhere() {
    let k = Kernel::new(WEB);
    // Fragmentation needed (type 3 code 4), from an address no rule allows.
    let frag_needed = frames::ip_frame(
        ip("203.0.113.1"),
        ip(SERVER),
        ICMP,
        &frames::icmp(3, 4, [0, 0, 5, 0xdc], &[0; 28]),
    );
    k.expect(Hook::Ingress, &frag_needed, Reason::Pmtud);
    // Port unreachable (type 3 code 3) is not PMTUD.
    let port_unreach = frames::ip_frame(
        ip("203.0.113.1"),
        ip(SERVER),
        ICMP,
        &frames::icmp(3, 3, [0; 4], &[0; 28]),
    );
    k.expect(Hook::Ingress, &port_unreach, Reason::DefaultDrop);
    // ICMPv6 packet too big (type 2); destination unreachable (1) is not.
    let too_big = frames::ip_frame(
        ip("2001:db8:ff::1"),
        ip("2001:db8::1"),
        ICMPV6,
        &frames::icmp(2, 0, [0, 0, 5, 0], &[0; 48]),
    );
    k.expect(Hook::Ingress, &too_big, Reason::Pmtud);
    let unreach6 = frames::ip_frame(
        ip("2001:db8:ff::1"),
        ip("2001:db8::1"),
        ICMPV6,
        &frames::icmp(1, 4, [0; 4], &[0; 48]),
    );
    k.expect(Hook::Ingress, &unreach6, Reason::DefaultDrop);
}

#[test]
fn neighbor_discovery_passes_both_ways_and_can_be_turned_off() {
    let k = Kernel::new(LOCKED_DOWN);
    let ns = frames::ip_frame(
        ip("fe80::2"),
        ip("ff02::1:ff00:1"),
        ICMPV6,
        &frames::icmp(135, 0, [0; 4], &[0; 16]),
    );
    k.expect(Hook::Ingress, &ns, Reason::NeighborDiscovery);
    k.expect(Hook::Egress, &ns, Reason::NeighborDiscovery);

    let off = LOCKED_DOWN.replace(
        "[[security_group]]",
        "[daemon]\nbuiltin_neighbor_discovery = false\n\n[[security_group]]",
    );
    let k = Kernel::new(&off);
    k.expect(Hook::Ingress, &ns, Reason::DefaultDrop);
    k.expect(Hook::Egress, &ns, Reason::RuleDrop);
}

#[test]
fn outbound_smtp_is_blocked_unless_switched_off() {
    let open = r#"
[[security_group]]
id = "sg-open"
  [[security_group.egress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range = "1/65535"
  dest_cidr_ip = "0.0.0.0/0"
[[interface]]
name = "lo"
security_groups = ["sg-open"]
"#;
    let smtp = frames::ip_frame(
        ip(SERVER),
        ip("203.0.113.25"),
        TCP,
        &frames::tcp_syn(40000, 25),
    );
    let submission = frames::ip_frame(
        ip(SERVER),
        ip("203.0.113.25"),
        TCP,
        &frames::tcp_syn(40000, 465),
    );
    let k = Kernel::new(open);
    k.expect(Hook::Egress, &smtp, Reason::SmtpBlocked);
    k.expect(Hook::Egress, &submission, Reason::RuleAccept);

    let k = Kernel::new(&format!("[daemon]\nblock_smtp_egress = false\n{open}"));
    k.expect(Hook::Egress, &smtp, Reason::RuleAccept);
}

#[test]
fn sessions_let_replies_in_and_nothing_else() {
    let k = Kernel::new(WEB);
    let out = frames::ip_frame(
        ip(SERVER),
        ip("203.0.113.53"),
        UDP,
        &frames::udp(40000, 53, b"query"),
    );
    let reply = frames::ip_frame(
        ip("203.0.113.53"),
        ip(SERVER),
        UDP,
        &frames::udp(53, 40000, b"answer"),
    );
    let other_port = frames::ip_frame(
        ip("203.0.113.53"),
        ip(SERVER),
        UDP,
        &frames::udp(53, 40001, b"x"),
    );
    k.expect(Hook::Ingress, &reply, Reason::DefaultDrop);
    k.expect(Hook::Egress, &out, Reason::DefaultAccept);
    k.expect(Hook::Ingress, &reply, Reason::Session);
    k.expect(Hook::Ingress, &other_port, Reason::DefaultDrop);
    // An inbound connection the rules accept opens a session too, so the
    // server's answer is not re-evaluated.
    let syn = frames::ip_frame(ip(CLIENT), ip(SERVER), TCP, &frames::tcp_syn(40000, 80));
    let syn_ack = frames::ip_frame(ip(SERVER), ip(CLIENT), TCP, &frames::tcp_syn(80, 40000));
    k.expect(Hook::Ingress, &syn, Reason::RuleAccept);
    k.expect(Hook::Egress, &syn_ack, Reason::Session);
}

#[test]
fn ping_replies_follow_the_echo_identifier() {
    let k = Kernel::new(WEB);
    let request = frames::ip_frame(
        ip(SERVER),
        ip(CLIENT),
        ICMP,
        &frames::icmp(8, 0, [0x12, 0x34, 0, 1], b"ping"),
    );
    let reply = frames::ip_frame(
        ip(CLIENT),
        ip(SERVER),
        ICMP,
        &frames::icmp(0, 0, [0x12, 0x34, 0, 1], b"ping"),
    );
    let other_reply = frames::ip_frame(
        ip(CLIENT),
        ip(SERVER),
        ICMP,
        &frames::icmp(0, 0, [0x43, 0x21, 0, 1], b"ping"),
    );
    k.expect(Hook::Egress, &request, Reason::DefaultAccept);
    k.expect(Hook::Ingress, &reply, Reason::Session);
    k.expect(Hook::Ingress, &other_reply, Reason::DefaultDrop);
}

#[test]
fn priority_then_drop_before_accept() {
    let toml = r#"
[[security_group]]
id = "sg-a"
  [[security_group.ingress]]
  policy = "accept"
  priority = 5
  ip_protocol = "tcp"
  port_range = "22/22"
  source_cidr_ip = "198.51.100.0/24"
  [[security_group.ingress]]
  policy = "drop"
  priority = 5
  ip_protocol = "all"
  port_range = "-1/-1"
  source_cidr_ip = "198.51.100.7/32"
  [[security_group.ingress]]
  policy = "accept"
  priority = 4
  ip_protocol = "tcp"
  port_range = "22/22"
  source_cidr_ip = "198.51.100.8"
[[interface]]
name = "lo"
security_groups = ["sg-a"]
"#;
    let k = Kernel::new(toml);
    let ssh_from = |src| frames::ip_frame(ip(src), ip(SERVER), TCP, &frames::tcp_syn(40000, 22));
    // Equal priority 5: the drop of .7 wins over the /24 accept.
    k.expect(Hook::Ingress, &ssh_from("198.51.100.7"), Reason::RuleDrop);
    // Priority 4 beats priority 5.
    k.expect(Hook::Ingress, &ssh_from("198.51.100.8"), Reason::RuleAccept);
    k.expect(Hook::Ingress, &ssh_from("198.51.100.9"), Reason::RuleAccept);
    k.expect(Hook::Ingress, &ssh_from("203.0.113.9"), Reason::DefaultDrop);
}

fn rule(group: &str, id: &str) -> Option<Origin> {
    Some(Origin::Rule {
        group: group.into(),
        id: id.into(),
    })
}

#[test]
fn the_deciding_rule_is_reported() {
    let k = Kernel::new(WEB);
    let syn = frames::ip_frame(ip(CLIENT), ip(SERVER), TCP, &frames::tcp_syn(40000, 80));
    let v = k.run(Hook::Ingress, &syn);
    assert_eq!(v.origin, rule("sg-web", "sg-web/ingress/1"));
    let dns6 = frames::ip_frame(
        ip("2001:db8::9"),
        ip("2001:db8::1"),
        UDP,
        &frames::udp(5353, 53, b"q"),
    );
    assert_eq!(
        k.run(Hook::Ingress, &dns6).origin,
        rule("sg-web", "sg-web/ingress/2")
    );
    let closed = frames::ip_frame(ip(CLIENT), ip(SERVER), TCP, &frames::tcp_syn(40000, 22));
    assert_eq!(k.run(Hook::Ingress, &closed).origin, None);
}

#[test]
fn ipv6_extension_headers_are_walked_to_the_transport_header() {
    let k = Kernel::new(WEB);
    let (src, dst) = (v6("2001:db8::9"), v6("2001:db8::1"));
    let dns = frames::udp(5353, 53, b"q");
    let hbh = frames::ipv6(src, dst, 0, &frames::ipv6_hop_by_hop(UDP, &dns));
    k.expect(
        Hook::Ingress,
        &frames::ethernet(frames::ETH_P_IPV6, &hbh),
        Reason::RuleAccept,
    );
    // Two option headers in a row, then a port no rule opens.
    let other = frames::udp(5353, 54, b"q");
    let two = frames::ipv6(
        src,
        dst,
        0,
        &frames::ipv6_hop_by_hop(60, &frames::ipv6_hop_by_hop(UDP, &other)),
    );
    k.expect(
        Hook::Ingress,
        &frames::ethernet(frames::ETH_P_IPV6, &two),
        Reason::DefaultDrop,
    );
    // An extension header cut short is malformed.
    let cut = frames::ipv6(src, dst, 0, &[UDP, 0, 1]);
    k.expect(
        Hook::Ingress,
        &frames::ethernet(frames::ETH_P_IPV6, &cut),
        Reason::Malformed,
    );
}

#[test]
fn later_fragments_follow_their_first_fragment() {
    let k = Kernel::new(WEB);
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
    // v4 53 is closed for IPv4 (the rule is IPv6-only): first dropped, the
    // rest follows.
    k.expect(Hook::Ingress, &first(53, 7), Reason::DefaultDrop);
    k.expect(Hook::Ingress, &later(7), Reason::FragmentDrop);
    // A later fragment whose first was never seen is dropped inbound.
    k.expect(Hook::Ingress, &later(8), Reason::FragmentDrop);

    let (c6, s6) = (v6("2001:db8::9"), v6("2001:db8::1"));
    let first6 = frames::ipv6(
        c6,
        s6,
        44,
        &frames::ipv6_fragment_header(UDP, 99, 0, true, &frames::udp(40000, 53, &[0; 64])),
    );
    let later6 = frames::ipv6(
        c6,
        s6,
        44,
        &frames::ipv6_fragment_header(UDP, 99, 9, false, &[0; 64]),
    );
    k.expect(
        Hook::Ingress,
        &frames::ethernet(frames::ETH_P_IPV6, &first6),
        Reason::RuleAccept,
    );
    let v = k.run(
        Hook::Ingress,
        &frames::ethernet(frames::ETH_P_IPV6, &later6),
    );
    assert_eq!((v.reason, v.code), (Reason::FragmentAccept, PASS));
    assert_eq!(v.origin, rule("sg-web", "sg-web/ingress/2"));
}

#[test]
fn icmp_errors_about_a_session_are_related() {
    let k = Kernel::new(WEB);
    let remote = "203.0.113.53";
    let out = frames::udp(40000, 53, b"query");
    k.expect(
        Hook::Egress,
        &frames::ip_frame(ip(SERVER), ip(remote), UDP, &out),
        Reason::DefaultAccept,
    );
    // Port unreachable quoting that datagram (IP header + 8 bytes).
    let quote = frames::ipv4(v4(SERVER), v4(remote), UDP, &[], &out[..8]);
    let unreachable = frames::icmp(3, 3, [0; 4], &quote);
    k.expect(
        Hook::Ingress,
        &frames::ip_frame(ip(remote), ip(SERVER), ICMP, &unreachable),
        Reason::Related,
    );
    // The same error about a datagram never sent is dropped.
    let stranger = frames::udp(40001, 53, b"query");
    let quote = frames::ipv4(v4(SERVER), v4(remote), UDP, &[], &stranger[..8]);
    let unrelated = frames::icmp(3, 3, [0; 4], &quote);
    k.expect(
        Hook::Ingress,
        &frames::ip_frame(ip(remote), ip(SERVER), ICMP, &unrelated),
        Reason::DefaultDrop,
    );
    // ICMPv6: time exceeded about an outbound TCP connection.
    let syn = frames::tcp_syn(40000, 443);
    k.expect(
        Hook::Egress,
        &frames::ip_frame(ip("2001:db8::1"), ip("2001:db8:ff::1"), TCP, &syn),
        Reason::DefaultAccept,
    );
    let quote = frames::ipv6(v6("2001:db8::1"), v6("2001:db8:ff::1"), TCP, &syn[..8]);
    let exceeded = frames::icmp(3, 0, [0; 4], &quote);
    k.expect(
        Hook::Ingress,
        &frames::ip_frame(ip("2001:db8::fe"), ip("2001:db8::1"), ICMPV6, &exceeded),
        Reason::Related,
    );
}

#[test]
fn a_new_drop_rule_ends_a_matching_session_and_nothing_else() {
    let mut k = Kernel::new(WEB);
    let syn = |sport| frames::ip_frame(ip(CLIENT), ip(SERVER), TCP, &frames::tcp_syn(sport, 80));
    let reply = |dport| frames::ip_frame(ip(SERVER), ip(CLIENT), TCP, &frames::tcp_syn(80, dport));
    k.expect(Hook::Ingress, &syn(40000), Reason::RuleAccept);
    let udp_out = frames::ip_frame(
        ip(SERVER),
        ip("203.0.113.53"),
        UDP,
        &frames::udp(40000, 53, b"q"),
    );
    k.expect(Hook::Egress, &udp_out, Reason::DefaultAccept);

    // The accept rule is removed: the session goes on, new ones are refused.
    let without = WEB.replacen("port_range = \"80/80\"", "port_range = \"8080/8080\"", 1);
    k.install(&sg_daemon::config::parse(std::path::Path::new("t.toml"), &without).unwrap());
    k.expect(Hook::Egress, &reply(40000), Reason::Session);
    k.expect(Hook::Ingress, &syn(40001), Reason::DefaultDrop);

    // An explicit drop rule matching the session's opening packet ends it
    // at its next packet, whichever way that packet goes.
    let with_drop = format!(
        "{without}\n[[security_group]]\nid = \"sg-block\"\n  [[security_group.ingress]]\n  id = \"no-web\"\n  policy = \"drop\"\n  ip_protocol = \"tcp\"\n  port_range = \"80/80\"\n  source_cidr_ip = \"{CLIENT}\"\n"
    )
    .replace("security_groups = [\"sg-web\"]", "security_groups = [\"sg-web\", \"sg-block\"]");
    k.install(&sg_daemon::config::parse(std::path::Path::new("t.toml"), &with_drop).unwrap());
    let v = k.run(Hook::Egress, &reply(40000));
    assert_eq!((v.reason, v.code), (Reason::SessionEnded, DROP));
    assert_eq!(v.origin, rule("sg-block", "no-web"));
    k.expect(Hook::Egress, &reply(40000), Reason::DefaultAccept);
    // The UDP session matches no drop rule and survives both changes.
    let udp_back = frames::ip_frame(
        ip("203.0.113.53"),
        ip(SERVER),
        UDP,
        &frames::udp(53, 40000, b"a"),
    );
    k.expect(Hook::Ingress, &udp_back, Reason::Session);
}

#[test]
fn five_tuple_rules_match_local_address_and_source_port() {
    let toml = r#"
[[security_group]]
id = "sg-5t"
  [[security_group.ingress]]
  id = "ssh-from-high-ports-to-one-address"
  policy = "accept"
  ip_protocol = "tcp"
  port_range = "22/22"
  source_port_range = "1024/65535"
  source_cidr_ip = "0.0.0.0/0"
  dest_cidr_ip = "192.0.2.100"
[[interface]]
name = "lo"
security_groups = ["sg-5t"]
"#;
    let k = Kernel::new(toml);
    let ssh = |sport, dst| frames::ip_frame(ip(CLIENT), ip(dst), TCP, &frames::tcp_syn(sport, 22));
    k.expect(
        Hook::Ingress,
        &ssh(40000, "192.0.2.100"),
        Reason::RuleAccept,
    );
    k.expect(
        Hook::Ingress,
        &ssh(1000, "192.0.2.100"),
        Reason::DefaultDrop,
    );
    k.expect(Hook::Ingress, &ssh(40001, "192.0.2.1"), Reason::DefaultDrop);
}

#[test]
fn hypervisor_mode_swaps_directions_and_drops_spoofed_sources() {
    let toml = r#"
[[security_group]]
id = "sg-vm"
  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range = "22/22"
  source_cidr_ip = "0.0.0.0/0"
[[interface]]
name = "lo"
mode = "hypervisor"
addresses = ["192.0.2.11", "2001:db8::11"]
security_groups = ["sg-vm"]
"#;
    let k = Kernel::new(toml);
    // TC egress of the host-side interface is the instance's inbound.
    let to_vm = |port| {
        frames::ip_frame(
            ip(CLIENT),
            ip("192.0.2.11"),
            TCP,
            &frames::tcp_syn(40000, port),
        )
    };
    k.expect(Hook::Egress, &to_vm(22), Reason::RuleAccept);
    k.expect(Hook::Egress, &to_vm(80), Reason::DefaultDrop);
    // TC ingress is the instance's outbound: only from its own addresses.
    let from_vm = |src| frames::ip_frame(ip(src), ip(CLIENT), TCP, &frames::tcp_syn(40000, 443));
    k.expect(Hook::Ingress, &from_vm("192.0.2.11"), Reason::DefaultAccept);
    k.expect(Hook::Ingress, &from_vm("192.0.2.99"), Reason::Spoofed);
    let v6_out = frames::ip_frame(
        ip("2001:db8::11"),
        ip("2001:db8::2"),
        UDP,
        &frames::udp(1, 2, b""),
    );
    k.expect(Hook::Ingress, &v6_out, Reason::DefaultAccept);
    // Neighbour discovery from the instance's link-local address passes.
    let ns = frames::ip_frame(
        ip("fe80::11"),
        ip("ff02::1:ff00:2"),
        ICMPV6,
        &frames::icmp(135, 0, [0; 4], &[0; 16]),
    );
    k.expect(Hook::Ingress, &ns, Reason::NeighborDiscovery);
}

#[test]
fn the_sweeper_frees_only_idle_sessions() {
    let mut k = Kernel::new(WEB);
    let out = |port| {
        frames::ip_frame(
            ip(SERVER),
            ip("203.0.113.53"),
            UDP,
            &frames::udp(port, 53, b"q"),
        )
    };
    k.expect(Hook::Egress, &out(40000), Reason::DefaultAccept);
    k.expect(Hook::Egress, &out(40001), Reason::DefaultAccept);
    assert_eq!(k.dataplane.sessions().unwrap().len(), 2);
    // Nothing is idle for an hour yet.
    assert_eq!(k.dataplane.sweep_sessions(3_600_000_000_000).unwrap(), 0);
    std::thread::sleep(std::time::Duration::from_millis(20));
    k.expect(Hook::Egress, &out(40001), Reason::Session);
    // Idle for more than 10 ms: only the one not touched since.
    assert_eq!(k.dataplane.sweep_sessions(10_000_000).unwrap(), 1);
    let left = k.dataplane.sessions().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].0.local_port, 40001);
}
