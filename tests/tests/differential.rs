//! The kernel against the reference decision, on generated rulesets and
//! packets: every packet's verdict and what decided it (rule, default,
//! built-in, session, …) must be the same. Rulesets cover all field kinds
//! (protocols, port ranges and lists, CIDRs and prefix lists v4 and v6,
//! group references and members, 5-tuple fields, priorities with ties,
//! basic and enterprise, instance and hypervisor mode, the built-ins'
//! switches) up to 1000 rules; packets include sessions in both
//! directions, TCP with every mix of SYN, ACK, FIN and RST (half-open,
//! established and closed sessions), ICMP echo and errors (quoting IPv4
//! options and IPv6 extension headers), fragments (IPv6 ones with
//! extension headers after the Fragment header), neighbour discovery
//! (advertisements claiming an instance's address or another's), MLD and
//! redirects, the metadata service, non-IP frames, and malformed and
//! truncated frames. Halfway through a case the ruleset changes, the SMTP
//! block flips, and a drop rule for one flow comes in: its sessions end,
//! and their later packets, both ways, must be dropped. A failure shrinks
//! to a small case; past failures are kept in
//! `proptest-regressions/`.

mod common;

use std::{cell::RefCell, collections::HashMap, net::IpAddr};

use common::{DROP, Kernel, PASS};
use ipnet::IpNet;
use proptest::{prelude::*, test_runner::Config as ProptestConfig};
use sg_common::Reason;
use sg_daemon::{
    compile::Origin,
    model::{
        Addresses, BindingMode, Config, DaemonSettings, Direction, GroupType, InterfaceBinding,
        Peer, Policy, PortRange, Protocol, Rule, SecurityGroup,
    },
    reference::{self, DecidedBy, Fragment, Interface, Packet},
};
use sg_tests::frames;

/// Rulesets per run and packets per ruleset.
const RULESETS: u32 = 200;
const PACKETS: usize = 500;

// ---------------------------------------------------------------- rulesets

/// A small pool of addresses, so that rules and packets meet often.
fn pool_v4() -> Vec<IpAddr> {
    [
        "192.0.2.1",
        "192.0.2.2",
        "192.0.2.77",
        "198.51.100.7",
        "198.51.100.200",
        "203.0.113.9",
        "100.100.100.200",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect()
}

fn pool_v6() -> Vec<IpAddr> {
    [
        "2001:db8::1",
        "2001:db8::2",
        "2001:db8:1::77",
        "2001:db8:ff::9",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect()
}

fn arb_addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        3 => prop::sample::select(pool_v4()),
        2 => prop::sample::select(pool_v6()),
        1 => any::<[u8; 4]>().prop_map(IpAddr::from),
    ]
}

fn arb_net() -> impl Strategy<Value = IpNet> {
    (arb_addr(), any::<u8>()).prop_map(|(a, l)| {
        let max = if a.is_ipv4() { 32 } else { 128 };
        // Mostly long prefixes (they select few addresses), some short.
        let len = match l % 8 {
            0 => 0,
            1 => max / 4,
            2 => max / 2,
            3 => max - 8,
            _ => max,
        };
        IpNet::new(a, len).unwrap().trunc()
    })
}

fn arb_range() -> impl Strategy<Value = PortRange> {
    prop_oneof![
        prop::sample::select(vec![22u16, 25, 53, 80, 443, 3306, 8080])
            .prop_map(|p| PortRange { start: p, end: p }),
        (1u16..100, 0u16..500).prop_map(|(s, n)| PortRange {
            start: s,
            end: s + n
        }),
        (1024u16..=65535).prop_map(|s| PortRange {
            start: s,
            end: 65535
        }),
    ]
}

fn arb_protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![
        3 => Just(Protocol::Number(6)),
        2 => Just(Protocol::Number(17)),
        1 => Just(Protocol::Number(1)),
        1 => Just(Protocol::Number(58)),
        1 => Just(Protocol::Number(47)),
        2 => Just(Protocol::All),
        1 => any::<u8>().prop_map(Protocol::Number),
    ]
}

/// A rule; `group_refs` are the ids it may reference (none in enterprise).
fn arb_rule(group_refs: Vec<String>) -> impl Strategy<Value = Rule> {
    let peer = if group_refs.is_empty() {
        prop::collection::vec(arb_net(), 1..4)
            .prop_map(Peer::Cidrs)
            .boxed()
    } else {
        prop_oneof![
            4 => prop::collection::vec(arb_net(), 1..4).prop_map(Peer::Cidrs),
            1 => prop::sample::select(group_refs).prop_map(Peer::Group),
        ]
        .boxed()
    };
    (
        any::<bool>(),
        prop_oneof![3 => 1u8..=3, 1 => 1u8..=100],
        arb_protocol(),
        prop::collection::vec(arb_range(), 1..3),
        prop_oneof![4 => Just(None), 1 => arb_range().prop_map(Some)],
        peer,
        prop_oneof![5 => Just(None), 1 => arb_net().prop_map(Some)],
    )
        .prop_map(|(accept, priority, protocol, ports, sport, peer, local)| {
            let ports_apply = protocol.has_ports();
            Rule {
                id: String::new(),
                policy: if accept { Policy::Accept } else { Policy::Drop },
                priority,
                protocol,
                ports: if ports_apply {
                    ports
                } else {
                    vec![PortRange::ANY]
                },
                source_ports: sport.filter(|_| ports_apply).unwrap_or(PortRange::ANY),
                peer,
                local,
                description: String::new(),
            }
        })
}

fn arb_config() -> impl Strategy<Value = Config> {
    // Most rulesets are small (readable failures); some are large.
    let size = prop_oneof![8 => 0usize..24, 1 => 100usize..400, 1 => 800usize..=1000];
    (any::<bool>(), any::<bool>(), 1usize..=3, size).prop_flat_map(
        |(enterprise, hypervisor, n_groups, n_rules)| {
            let ids: Vec<String> = (0..n_groups).map(|i| format!("sg-{i}")).collect();
            let refs = if enterprise { Vec::new() } else { ids.clone() };
            let group = (
                prop::collection::vec(arb_rule(refs.clone()), n_rules / n_groups / 2 + 1),
                prop::collection::vec(arb_rule(refs), n_rules / n_groups / 2 + 1),
                any::<bool>(),
                prop::collection::vec(arb_addr().prop_map(IpNet::from), 0..3),
            );
            (
                prop::collection::vec(group, n_groups),
                prop::collection::vec(arb_addr(), 1..3),
                any::<[bool; 5]>(),
            )
                .prop_map(move |(groups, instance, switches)| {
                    let kind = if enterprise {
                        GroupType::Enterprise
                    } else {
                        GroupType::Basic
                    };
                    let groups: Vec<SecurityGroup> = groups
                        .into_iter()
                        .enumerate()
                        .map(|(i, (ingress, egress, inner, members))| {
                            let id = format!("sg-{i}");
                            let name = |dir: &str, mut rules: Vec<Rule>| {
                                for (n, r) in rules.iter_mut().enumerate() {
                                    r.id = format!("{id}/{dir}/{n}");
                                }
                                rules
                            };
                            SecurityGroup {
                                ingress: name("in", ingress),
                                egress: name("out", egress),
                                id: id.clone(),
                                name: id.clone(),
                                description: String::new(),
                                kind,
                                inner_access_accept: inner && !enterprise,
                                members,
                                deletion_protection: false,
                            }
                        })
                        .collect();
                    let binding = InterfaceBinding {
                        name: "lo".into(),
                        mode: if hypervisor {
                            BindingMode::Hypervisor
                        } else {
                            BindingMode::Instance
                        },
                        security_groups: groups.iter().map(|g| g.id.clone()).collect(),
                        addresses: instance.clone(),
                        mac: None,
                    };
                    Config {
                        daemon: DaemonSettings {
                            block_smtp_egress: switches[0],
                            builtin_neighbor_discovery: switches[1],
                            builtin_dhcp_client: switches[2],
                            builtin_nd_redirects: switches[3],
                            builtin_non_ip: switches[4],
                            // No session expires during a case (the
                            // reference's clock stands still).
                            syn_timeout_secs: 3600,
                            tcp_closed_timeout_secs: 3600,
                            ..DaemonSettings::default()
                        },
                        groups,
                        interfaces: vec![binding],
                        snapshot_policies: Vec::new(),
                        datastore: None,
                        fleet_members: Default::default(),
                    }
                })
        },
    )
}

// ----------------------------------------------------------------- packets

/// One generated packet: a direction and either a parsed packet (rendered
/// to a frame) or a frame the parser must refuse or pass untouched.
#[derive(Debug, Clone)]
enum Probe {
    Ip(Direction, Packet, Shape),
    /// Must be dropped as malformed whatever the rules say.
    Malformed(Direction, Vec<u8>),
    /// A frame of this ethertype, behind a VLAN tag if `tagged`.
    NotIp {
        dir: Direction,
        ethertype: u16,
        tagged: bool,
    },
}

/// How to render an IP packet.
#[derive(Debug, Clone, Copy)]
enum Shape {
    Plain,
    /// IPv4 with 8 bytes of options, IPv6 with a hop-by-hop header.
    WithOptions,
    /// An IPv6 first fragment with a destination-options header after its
    /// Fragment header (later fragments then name it as next header).
    OptionsAfterFragment,
}

/// A flow: the endpoints and ports packets are drawn from, so that
/// replies, errors and fragments meet earlier packets.
#[derive(Debug, Clone)]
struct Flow {
    a: IpAddr,
    b: IpAddr,
    proto: u8,
    pa: u16,
    pb: u16,
}

fn arb_flow() -> impl Strategy<Value = Flow> {
    (
        any::<bool>(),
        prop::sample::select(pool_v4()),
        prop::sample::select(pool_v4()),
        prop::sample::select(pool_v6()),
        prop::sample::select(pool_v6()),
        prop_oneof![4 => Just(6u8), 3 => Just(17u8), 2 => Just(1u8), 1 => Just(47u8)],
        prop_oneof![
            prop::sample::select(vec![22u16, 25, 53, 67, 68, 80, 443, 546, 547]),
            any::<u16>()
        ],
        prop_oneof![
            prop::sample::select(vec![22u16, 25, 53, 67, 68, 80, 443, 546, 547]),
            any::<u16>()
        ],
    )
        .prop_map(|(v6, a4, b4, a6, b6, proto, pa, pb)| {
            let (a, b) = if v6 { (a6, b6) } else { (a4, b4) };
            let proto = match (proto, v6) {
                (1, true) => 58,
                (p, _) => p,
            };
            Flow {
                a,
                b,
                proto,
                pa,
                pb,
            }
        })
}

fn icmp_of(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { 1 } else { 58 }
}

/// TCP flags of generated packets: connection attempts and answers, data,
/// FINs and resets, so that sessions go through every state.
fn arb_tcp_flags() -> impl Strategy<Value = u8> {
    use reference::{TCP_ACK as A, TCP_FIN as F, TCP_RST as R, TCP_SYN as S};
    prop_oneof![
        4 => Just(S),
        2 => Just(S | A),
        4 => Just(A),
        2 => Just(F | A),
        1 => Just(F),
        1 => Just(R),
        1 => Just(R | A),
    ]
}

/// The packet of `flow` from side a (or b when `reverse`); TCP packets
/// are SYNs.
fn packet_of(flow: &Flow, reverse: bool, icmp_type: u8) -> Packet {
    let (src, dst, sp, dp) = if reverse {
        (flow.b, flow.a, flow.pb, flow.pa)
    } else {
        (flow.a, flow.b, flow.pa, flow.pb)
    };
    let mut pkt = Packet {
        src,
        dst,
        proto: flow.proto,
        src_port: 0,
        dst_port: 0,
        icmp: None,
        tcp_flags: 0,
        fragment: Fragment::No,
        quoted: None,
        nd_target: None,
    };
    match flow.proto {
        6 | 17 => {
            pkt.src_port = sp;
            pkt.dst_port = dp;
            if flow.proto == 6 {
                pkt.tcp_flags = reference::TCP_SYN;
            }
        }
        1 | 58 => {
            pkt.icmp = Some((icmp_type, 0));
            let echo = matches!(icmp_type, 0 | 8 | 128 | 129);
            if echo {
                // Both sides carry the identifier.
                pkt.src_port = flow.pa;
                pkt.dst_port = flow.pa;
            }
        }
        _ => {}
    }
    pkt
}

fn arb_probe(flows: Vec<Flow>) -> impl Strategy<Value = Probe> {
    let dir = prop_oneof![Just(Direction::Ingress), Just(Direction::Egress)];
    (
        prop::sample::select(flows),
        dir,
        any::<bool>(),
        0u8..14,
        any::<u16>(),
        any::<bool>(),
        arb_tcp_flags(),
    )
        .prop_map(|(flow, dir, reverse, variant, id, options, flags)| {
            let shape = if options {
                Shape::WithOptions
            } else {
                Shape::Plain
            };
            let v4 = flow.a.is_ipv4();
            let echo_req = if v4 { 8 } else { 128 };
            let echo_rep = if v4 { 0 } else { 129 };
            match variant {
                // Mostly plain packets of the flow, both ways.
                0..=5 => {
                    let mut pkt = packet_of(&flow, reverse, echo_req);
                    if pkt.proto == 6 {
                        pkt.tcp_flags = flags;
                    }
                    Probe::Ip(dir, pkt, shape)
                }
                6 => {
                    let flow = Flow {
                        proto: icmp_of(flow.a),
                        ..flow
                    };
                    Probe::Ip(
                        dir,
                        packet_of(&flow, reverse, if reverse { echo_rep } else { echo_req }),
                        shape,
                    )
                }
                7 => {
                    // An ICMP error about the flow, sent by the other side.
                    let quoted = packet_of(&flow, !reverse, echo_req);
                    let kind = if v4 {
                        *[3u8, 11, 12].get(id as usize % 3).unwrap()
                    } else {
                        1 + (id % 4) as u8
                    };
                    let code = if v4 && kind == 3 {
                        [3u8, 4][id as usize % 2]
                    } else {
                        0
                    };
                    let mut pkt = packet_of(
                        &Flow {
                            proto: icmp_of(flow.a),
                            ..flow.clone()
                        },
                        reverse,
                        kind,
                    );
                    pkt.icmp = Some((kind, code));
                    pkt.src_port = 0;
                    pkt.dst_port = 0;
                    pkt.quoted = Some(Box::new(quoted));
                    // The quote has the options or extension headers.
                    Probe::Ip(dir, pkt, shape)
                }
                8 => {
                    // First fragment, or a later one (its id shared with
                    // earlier first fragments of the same flow). IPv6 first
                    // fragments may have destination options after the
                    // Fragment header, which later ones then name as their
                    // next header.
                    let mut pkt = packet_of(&flow, reverse, echo_req);
                    let after = !v4 && id & 4 != 0;
                    let id = (id % 4) as u32;
                    let mut shape = Shape::Plain;
                    if options {
                        pkt.fragment = Fragment::First { id };
                        if after {
                            shape = Shape::OptionsAfterFragment;
                        }
                    } else {
                        pkt.fragment = Fragment::Later { id };
                        pkt.src_port = 0;
                        pkt.dst_port = 0;
                        pkt.icmp = None;
                        if after {
                            pkt.proto = frames::IPV6_DEST_OPTIONS;
                        }
                    }
                    Probe::Ip(dir, pkt, shape)
                }
                9 => {
                    // Neighbour discovery, MLD, redirects (and ICMPv6 types
                    // next to them), or DHCP.
                    let mut pkt = packet_of(&flow, reverse, 135);
                    if !v4 && id % 2 == 0 {
                        let kinds = [129u8, 130, 131, 132, 133, 134, 135, 136, 137, 138, 143];
                        let kind = kinds[(id / 2) as usize % kinds.len()];
                        pkt.proto = 58;
                        pkt.icmp = Some((kind, 0));
                        pkt.src_port = 0;
                        pkt.dst_port = 0;
                        // Solicitations and advertisements name a target:
                        // one of the flow's addresses (sometimes an
                        // instance's), a link-local one, or none (cut
                        // short).
                        if matches!(kind, 135 | 136) {
                            pkt.nd_target = [Some(flow.a), Some(flow.b), Some(LINK_LOCAL), None]
                                [(id / 5 % 4) as usize];
                        }
                    } else {
                        let (c, s) = if v4 { (68, 67) } else { (546, 547) };
                        pkt.proto = 17;
                        pkt.icmp = None;
                        (pkt.src_port, pkt.dst_port) = if id % 3 == 0 { (s, c) } else { (c, s) };
                    }
                    Probe::Ip(dir, pkt, shape)
                }
                10 => {
                    // To the metadata service, or back from it: TCP, UDP,
                    // GRE, ICMP echo and timestamp.
                    let kinds = [echo_req, echo_rep, 13, 14];
                    let mut pkt = packet_of(&flow, false, kinds[id as usize % 4]);
                    if v4 {
                        pkt.dst = [100, 100, 100, 200].into();
                        if reverse {
                            std::mem::swap(&mut pkt.src, &mut pkt.dst);
                            std::mem::swap(&mut pkt.src_port, &mut pkt.dst_port);
                        }
                    }
                    Probe::Ip(dir, pkt, shape)
                }
                11 | 12 => Probe::Malformed(dir, malformed(&flow, id)),
                _ => {
                    // ARP, LLDP, an unknown ethertype; some behind a tag.
                    let ethertypes = [frames::ETH_P_ARP, 0x88cc, 0x88b5];
                    Probe::NotIp {
                        dir,
                        ethertype: ethertypes[id as usize % 3],
                        tagged: options,
                    }
                }
            }
        })
}

/// A link-local address, as neighbour discovery uses.
const LINK_LOCAL: IpAddr = IpAddr::V6(std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x11));

/// A ruleset, the change made halfway, and the packets.
fn arb_case() -> impl Strategy<Value = (Config, Config, Vec<Probe>)> {
    (
        arb_config(),
        prop::collection::vec(arb_flow(), 1..12),
        prop_oneof![Just(Direction::Ingress), Just(Direction::Egress)],
    )
        .prop_flat_map(|(config, flows, ending)| {
            let second = changed(&config, &flows[0], ending);
            (
                Just(config),
                Just(second),
                prop::collection::vec(arb_probe(flows), PACKETS),
            )
        })
}

// --------------------------------------------------------------- rendering

/// The transport header and payload of `pkt`. An ICMP error quotes its
/// packet: the IP headers, rendered in `quote_shape`, and the 8 bytes after
/// them.
fn l4_bytes(pkt: &Packet, quote_shape: Shape) -> Vec<u8> {
    match (pkt.proto, pkt.icmp) {
        (6, _) => frames::tcp(pkt.src_port, pkt.dst_port, pkt.tcp_flags),
        (17, _) => frames::udp(pkt.src_port, pkt.dst_port, b"payload"),
        (1 | 58, Some((kind, code))) => {
            let echo = matches!(kind, 0 | 8 | 128 | 129);
            let rest = if echo {
                let id = pkt.src_port.to_be_bytes();
                [id[0], id[1], 0, 1]
            } else {
                [0; 4]
            };
            let quote = match (&pkt.quoted, pkt.nd_target) {
                (Some(q), _) => {
                    let quoted_l4 = l4_bytes(q, Shape::Plain);
                    let mut inner = ip_bytes(q, &quoted_l4, quote_shape);
                    inner.truncate(inner.len() - quoted_l4.len() + 8);
                    inner
                }
                (None, Some(IpAddr::V6(target))) => target.octets().to_vec(),
                _ => vec![0; 8],
            };
            frames::icmp(kind, code, rest, &quote)
        }
        _ => vec![0; 8],
    }
}

fn ip_bytes(pkt: &Packet, l4: &[u8], shape: Shape) -> Vec<u8> {
    match (pkt.src, pkt.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => match pkt.fragment {
            Fragment::No => {
                let options: &[u8] = match shape {
                    Shape::WithOptions => &[1, 1, 1, 0, 1, 1, 1, 0],
                    _ => &[],
                };
                frames::ipv4(s, d, pkt.proto, options, l4)
            }
            Fragment::First { id } => {
                frames::ipv4_fragment(s, d, pkt.proto, id as u16, frames::IPV4_MF, l4)
            }
            Fragment::Later { id } => {
                frames::ipv4_fragment(s, d, pkt.proto, id as u16, 20, &[0; 24])
            }
        },
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let body = match (pkt.fragment, shape) {
                (Fragment::No, _) => l4.to_vec(),
                (Fragment::First { id }, Shape::OptionsAfterFragment) => {
                    let options = frames::ipv6_dest_options(pkt.proto, l4);
                    frames::ipv6_fragment_header(frames::IPV6_DEST_OPTIONS, id, 0, true, &options)
                }
                (Fragment::First { id }, _) => {
                    frames::ipv6_fragment_header(pkt.proto, id, 0, true, l4)
                }
                (Fragment::Later { id }, _) => {
                    frames::ipv6_fragment_header(pkt.proto, id, 20, false, &[0; 24])
                }
            };
            let next = if matches!(pkt.fragment, Fragment::No) {
                pkt.proto
            } else {
                frames::IPV6_FRAGMENT
            };
            match shape {
                Shape::WithOptions => frames::ipv6(s, d, 0, &frames::ipv6_hop_by_hop(next, &body)),
                _ => frames::ipv6(s, d, next, &body),
            }
        }
        _ => unreachable!("flows have one family"),
    }
}

fn frame(pkt: &Packet, shape: Shape) -> Vec<u8> {
    let ethertype = if pkt.src.is_ipv4() {
        frames::ETH_P_IP
    } else {
        frames::ETH_P_IPV6
    };
    // An ICMP error is plain; the packet it quotes has the shape.
    let (shape, quote_shape) = match pkt.quoted {
        Some(_) => (Shape::Plain, shape),
        None => (shape, Shape::Plain),
    };
    frames::ethernet(
        ethertype,
        &ip_bytes(pkt, &l4_bytes(pkt, quote_shape), shape),
    )
}

/// A frame whose IP or transport header is broken.
fn malformed(flow: &Flow, how: u16) -> Vec<u8> {
    let pkt = packet_of(
        &Flow {
            proto: 6,
            ..flow.clone()
        },
        false,
        8,
    );
    let ip = ip_bytes(
        &pkt,
        &frames::tcp_syn(pkt.src_port, pkt.dst_port),
        Shape::Plain,
    );
    let header = if pkt.src.is_ipv4() { 20 } else { 40 };
    let ethertype = if pkt.src.is_ipv4() {
        frames::ETH_P_IP
    } else {
        frames::ETH_P_IPV6
    };
    match how % 3 {
        // TCP header cut short.
        0 => frames::ethernet(ethertype, &ip[..header + 10]),
        // IP header cut short, behind a VLAN tag (the kernel's test run
        // refuses a bare IP ethertype shorter than an IP header).
        1 => frames::vlan(ethertype, &ip[..header - 4]),
        // Wrong IP version.
        _ => {
            let mut bad = ip.clone();
            bad[0] = if pkt.src.is_ipv4() { 0x65 } else { 0x45 };
            frames::ethernet(ethertype, &bad)
        }
    }
}

// -------------------------------------------------------------- comparison

/// What decided, in terms both sides can name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    reason: Reason,
    origin: Option<Origin>,
}

fn rule_origin(by: &DecidedBy) -> Option<Origin> {
    match by {
        DecidedBy::Rule { group, id } | DecidedBy::SessionEnded { group, id } => {
            Some(Origin::Rule {
                group: group.clone(),
                id: id.clone(),
            })
        }
        DecidedBy::IntraGroup => Some(Origin::IntraGroup),
        _ => None,
    }
}

fn expected(d: &reference::Decision) -> Outcome {
    use reference::BuiltIn as B;
    let reason = match &d.by {
        DecidedBy::BuiltIn(B::NotIp) if d.accept => Reason::NotIp,
        DecidedBy::BuiltIn(B::NotIp) => Reason::NotIpDropped,
        DecidedBy::Rule { .. } | DecidedBy::IntraGroup if d.accept => Reason::RuleAccept,
        DecidedBy::Rule { .. } | DecidedBy::IntraGroup => Reason::RuleDrop,
        DecidedBy::Default if d.accept => Reason::DefaultAccept,
        DecidedBy::Default => Reason::DefaultDrop,
        DecidedBy::BuiltIn(B::Metadata) => Reason::Metadata,
        DecidedBy::BuiltIn(B::Pmtud) => Reason::Pmtud,
        DecidedBy::BuiltIn(B::NeighborDiscovery) => Reason::NeighborDiscovery,
        DecidedBy::BuiltIn(B::DhcpClient) => Reason::Dhcp,
        DecidedBy::BuiltIn(B::SmtpBlocked) => Reason::SmtpBlocked,
        DecidedBy::Session => Reason::Session,
        DecidedBy::SessionEnded { .. } => Reason::SessionEnded,
        DecidedBy::Related => Reason::Related,
        DecidedBy::Spoofed => Reason::Spoofed,
        DecidedBy::Fragment(_) if d.accept => Reason::FragmentAccept,
        DecidedBy::Fragment(_) => Reason::FragmentDrop,
    };
    let origin = match &d.by {
        DecidedBy::Fragment(Some(first)) => rule_origin(&first.by),
        by => rule_origin(by),
    };
    Outcome { reason, origin }
}

/// The same ruleset with every third rule's policy flipped, the SMTP block
/// flipped, and a priority-1 drop rule in direction `ending` for the
/// addresses of `flow`: the change made halfway through a case (SPEC §3.6:
/// sessions survive it unless a drop rule now matches them; the sessions
/// of `flow` opened in `ending` end, and stay ended both ways; §3.8: so do
/// outbound port-25 sessions once the block is on).
fn changed(config: &Config, flow: &Flow, ending: Direction) -> Config {
    let mut config = config.clone();
    config.daemon.block_smtp_egress = !config.daemon.block_smtp_egress;
    let block = Rule {
        id: "sg-0/block-flow".into(),
        policy: Policy::Drop,
        priority: 1,
        protocol: Protocol::All,
        ports: vec![PortRange::ANY],
        source_ports: PortRange::ANY,
        peer: Peer::Cidrs(vec![IpNet::from(flow.a), IpNet::from(flow.b)]),
        local: None,
        description: String::new(),
    };
    for group in &mut config.groups {
        for (n, rule) in group
            .ingress
            .iter_mut()
            .chain(group.egress.iter_mut())
            .enumerate()
        {
            if n % 3 == 0 {
                rule.policy = match rule.policy {
                    Policy::Accept => Policy::Drop,
                    Policy::Drop => Policy::Accept,
                };
            }
        }
    }
    let first = &mut config.groups[0];
    match ending {
        Direction::Ingress => first.ingress.push(block),
        Direction::Egress => first.egress.push(block),
    }
    config
}

/// A session, whichever way its packets go.
fn flow_of(pkt: &Packet) -> (u8, [(IpAddr, u16); 2]) {
    let mut ends = [(pkt.src, pkt.src_port), (pkt.dst, pkt.dst_port)];
    ends.sort();
    (pkt.proto, ends)
}

/// What the generator reached: decisions by reason, and how many ended
/// sessions had packets dropped both ways after the change.
#[derive(Default)]
struct Seen {
    reasons: HashMap<Reason, usize>,
    ended_both_ways: usize,
}

fn check_case(
    kernel: &mut Kernel,
    config: &Config,
    second: &Config,
    probes: &[Probe],
    seen: &mut Seen,
) -> Result<(), TestCaseError> {
    kernel.dataplane.flush_sessions().unwrap();
    kernel.install(config);
    let addresses = Addresses::resolve(config, |_| Vec::new());
    // Per ended session, the directions its packets were dropped in.
    let mut ended: HashMap<_, Vec<Direction>> = HashMap::new();
    let mut iface = Interface {
        config,
        binding: &config.interfaces[0],
        addresses: &addresses,
    };
    let mut state = reference::State::default();
    for (n, probe) in probes.iter().enumerate() {
        if n == probes.len() / 2 {
            kernel.install(second);
            state.ruleset_changed();
            iface = Interface {
                config: second,
                binding: &second.interfaces[0],
                addresses: &addresses,
            };
        }
        let (dir, bytes, want) = match probe {
            Probe::Ip(dir, pkt, shape) => {
                let d = reference::decide(&iface, &mut state, *dir, pkt);
                if let DecidedBy::SessionEnded { .. } = d.by {
                    let ways = ended.entry(flow_of(pkt)).or_default();
                    if !ways.contains(dir) {
                        ways.push(*dir);
                    }
                }
                (*dir, frame(pkt, *shape), expected(&d))
            }
            Probe::Malformed(dir, bytes) => (
                *dir,
                bytes.clone(),
                Outcome {
                    reason: Reason::Malformed,
                    origin: None,
                },
            ),
            Probe::NotIp {
                dir,
                ethertype,
                tagged,
            } => {
                // An ARP probe (sender 0.0.0.0) is not IP everywhere. ARP
                // with a sender address is checked on hypervisor
                // interfaces, below what the reference models (see
                // testrun.rs, attacks.rs).
                let arp = frames::arp_request([0, 0, 0, 0].into(), [192, 0, 2, 1].into());
                let payload = if *ethertype == frames::ETH_P_ARP {
                    arp[14..].to_vec()
                } else {
                    vec![0; 46]
                };
                let bytes = if *tagged {
                    frames::vlan(*ethertype, &payload)
                } else {
                    frames::ethernet(*ethertype, &payload)
                };
                // A hypervisor-mode instance sits on an access port: a tagged
                // frame from it is dropped whatever it carries.
                let from_instance =
                    iface.binding.mode == BindingMode::Hypervisor && *dir == Direction::Egress;
                let want = if *tagged && from_instance {
                    Outcome {
                        reason: Reason::Spoofed,
                        origin: None,
                    }
                } else {
                    expected(&reference::decide_not_ip(iface.config, *ethertype))
                };
                (*dir, bytes, want)
            }
        };
        let got = kernel.run(kernel.hook(dir), &bytes);
        *seen.reasons.entry(got.reason).or_default() += 1;
        let code = if want.reason.accepts() { PASS } else { DROP };
        prop_assert_eq!(
            (
                Outcome {
                    reason: got.reason,
                    origin: got.origin
                },
                got.code
            ),
            (want, code),
            "packet #{} {:?}",
            n,
            probe
        );
    }
    seen.ended_both_ways += ended.values().filter(|ways| ways.len() == 2).count();
    Ok(())
}

#[test]
fn kernel_decides_like_the_reference() {
    // One loaded program for every case: each case installs its ruleset
    // and starts without sessions.
    let first = Config {
        daemon: DaemonSettings::default(),
        groups: Vec::new(),
        interfaces: Vec::new(),
        snapshot_policies: Vec::new(),
        datastore: None,
        fleet_members: Default::default(),
    };
    let kernel = RefCell::new(Kernel::load(&first));
    let seen = RefCell::new(Seen::default());
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: RULESETS,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        source_file: Some(file!()),
        ..ProptestConfig::default()
    });
    let result = runner.run(&arb_case(), |(config, second, probes)| {
        check_case(
            &mut kernel.borrow_mut(),
            &config,
            &second,
            &probes,
            &mut seen.borrow_mut(),
        )
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // The generator must reach every kind of decision, or the agreement
    // above proves less than it seems.
    let seen = seen.into_inner();
    eprintln!("decisions compared, by reason: {:?}", seen.reasons);
    for reason in Reason::ALL {
        if reason != Reason::Unbound {
            assert!(
                seen.reasons.contains_key(&reason),
                "no generated packet was decided by {reason:?}"
            );
        }
    }
    eprintln!("ended sessions dropped both ways: {}", seen.ended_both_ways);
    assert!(
        seen.ended_both_ways > 0,
        "no ended session had packets both ways after the change"
    );
}
