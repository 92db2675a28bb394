//! The loaded classifier on crafted frames, through `BPF_PROG_TEST_RUN`:
//! header parsing (truncation, IPv4 options, non-IP), the built-ins, the
//! rule order and sessions. Nothing is attached anywhere: each test loads
//! its own copy of the program and maps and installs one ruleset for
//! ifindex 1 (`lo`, which is what a test run's skb carries).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use aya::programs::{TestRun, TestRunOptions};
use sg_common::Reason;
use sg_daemon::{
    compile::{build_table, compile},
    config,
    dataplane::{Dataplane, Hook},
    model::{Addresses, Direction},
};
use sg_tests::frames::{self, ICMP, ICMPV6, TCP, UDP};

const LOOPBACK_IFINDEX: u32 = 1;
const PASS: u32 = -1i32 as u32;
const DROP: u32 = 2;

/// One loaded program with the first binding of `toml` installed on lo.
struct Kernel {
    dataplane: Dataplane,
}

impl Kernel {
    fn new(toml: &str) -> Kernel {
        let config =
            config::parse(Path::new("testrun.toml"), toml).unwrap_or_else(|e| panic!("{e}"));
        let mut dataplane = Dataplane::load(&config.daemon).expect("load the eBPF program");
        let binding = &config.interfaces[0];
        let addresses = Addresses::resolve(&config, |_| Vec::new());
        let [inbound, outbound] = Direction::BOTH
            .map(|dir| compile(&build_table(&config, binding, &addresses, dir)).expect("compile"));
        dataplane
            .install(LOOPBACK_IFINDEX, 0, [&inbound, &outbound])
            .expect("install tables");
        Kernel { dataplane }
    }

    /// Runs one frame through a hook: the return code and what decided.
    fn run(&self, hook: Hook, frame: &[u8]) -> (u32, Reason) {
        let before = self.dataplane.stats().unwrap();
        let result = self
            .dataplane
            .program(hook)
            .unwrap()
            .test_run(TestRunOptions {
                data_in: Some(frame),
                ..TestRunOptions::default()
            })
            .expect("BPF_PROG_TEST_RUN");
        let after = self.dataplane.stats().unwrap();
        let changed: Vec<Reason> = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| a.1 != b.1)
            .map(|(_, a)| a.0)
            .collect();
        assert_eq!(
            changed.len(),
            1,
            "exactly one reason counted, got {changed:?}"
        );
        (result.return_value, changed[0])
    }

    fn expect(&self, hook: Hook, frame: &[u8], reason: Reason) {
        let (code, got) = self.run(hook, frame);
        assert_eq!(got, reason, "decided by");
        let want = if reason.accepts() { PASS } else { DROP };
        assert_eq!(code, want, "TC return code for {reason:?}");
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
