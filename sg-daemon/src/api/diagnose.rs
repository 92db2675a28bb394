//! `Diagnose`: what the rules (or a live session, or a built-in) decide for
//! a described packet, and why.

use std::net::IpAddr;

use sg_common::{CtKey, CtValue};

use super::{
    Diagnosis, Direction, Probe, Reply,
    names::{binding, bound_name, policy_name, ports_text},
};
use crate::{
    model::{self, Addresses, Config},
    reference::{self, BuiltIn, DecidedBy, Fragment, Interface, Packet},
};

pub(super) fn diagnose(
    config: &Config,
    probe: &Probe,
    live_sessions: Option<&[(CtKey, CtValue)]>,
) -> Result<Reply, String> {
    let b = binding(config, &probe.interface)?;
    let proto = sg_common::proto::number(&probe.protocol).ok_or_else(|| {
        format!(
            "{:?} is not a protocol; allowed: tcp, udp, icmp, icmpv6, gre or a number 0..=255",
            probe.protocol
        )
    })?;
    if probe.src.is_ipv4() != probe.dst.is_ipv4() {
        return Err("src and dst must both be IPv4 or both IPv6".into());
    }
    let icmp = match (proto, probe.icmp_type) {
        (reference::ICMP | reference::ICMPV6, Some(t)) => Some((t, probe.icmp_code.unwrap_or(0))),
        (reference::ICMP, None) => Some((8, 0)),
        (reference::ICMPV6, None) => Some((128, 0)),
        (_, Some(_)) => return Err("icmp_type is for icmp and icmpv6 only".into()),
        (_, None) => None,
    };
    let pkt = Packet {
        src: probe.src,
        dst: probe.dst,
        proto,
        src_port: probe.src_port,
        dst_port: probe.dst_port,
        icmp,
        fragment: Fragment::No,
        quoted: None,
        nd_target: None,
    };
    let addresses = Addresses::resolve(config, |b| crate::daemon::interface_addresses(&b.name));
    let iface = Interface {
        config,
        binding: b,
        addresses: &addresses,
    };
    let dir = probe.direction;
    let fresh = reference::decide(&iface, &mut reference::State::default(), dir, &pkt);

    // The kernel's order: anti-spoofing and the network built-ins come
    // before sessions; everything else after them.
    let before_sessions = matches!(
        fresh.by,
        DecidedBy::Spoofed | DecidedBy::BuiltIn(BuiltIn::NeighborDiscovery | BuiltIn::DhcpClient)
    );
    if !before_sessions
        && let Some(live) = live_sessions
        && let Ok(ifindex) = nix::net::if_::if_nametoindex(b.name.as_str())
        && let Some(found) = find_session(live, ifindex, &pkt, probe.direction, config)
    {
        return Ok(Reply::Diagnosis(session_diagnosis(&iface, found)));
    }
    Ok(Reply::Diagnosis(explain_decision(config, &fresh, dir)))
}

struct FoundSession {
    opened: Direction,
    idle_secs: u64,
    opening: Packet,
}

fn find_session(
    live: &[(CtKey, CtValue)],
    ifindex: u32,
    pkt: &Packet,
    dir: Direction,
    config: &Config,
) -> Option<FoundSession> {
    let (local, remote, local_port, remote_port) = match dir {
        Direction::Ingress => (pkt.dst, pkt.src, pkt.dst_port, pkt.src_port),
        Direction::Egress => (pkt.src, pkt.dst, pkt.src_port, pkt.dst_port),
    };
    let (family, local_bytes) = sg_common::addr::to_bytes(local);
    let (_, remote_bytes) = sg_common::addr::to_bytes(remote);
    let now = crate::clock::boot_time_ns();
    let timeout_ns = config
        .daemon
        .session_timeout_secs
        .saturating_mul(1_000_000_000);
    let (_, value) = live.iter().find(|(k, v)| {
        k.ifindex == ifindex
            && k.proto == pkt.proto
            && k.family == family
            && k.local == local_bytes
            && k.remote == remote_bytes
            && k.local_port == local_port
            && k.remote_port == remote_port
            && now.wrapping_sub(v.last_seen_ns) <= timeout_ns
    })?;
    let opened = Direction::from_raw(value.opened);
    let (src, dst, src_port, dst_port) = match opened {
        Direction::Ingress => (remote, local, remote_port, local_port),
        Direction::Egress => (local, remote, local_port, remote_port),
    };
    let icmp = match pkt.proto {
        reference::ICMP => Some((8, 0)),
        reference::ICMPV6 => Some((128, 0)),
        _ => None,
    };
    Some(FoundSession {
        opened,
        idle_secs: now.wrapping_sub(value.last_seen_ns) / 1_000_000_000,
        opening: Packet {
            src,
            dst,
            proto: pkt.proto,
            src_port,
            dst_port,
            icmp,
            fragment: Fragment::No,
            quoted: None,
            nd_target: None,
        },
    })
}

/// A live session passes the packet, unless an explicit drop rule now
/// matches the packet that opened it (SPEC §3.6): then it ends.
fn session_diagnosis(iface: &Interface, s: FoundSession) -> Diagnosis {
    let opened = s.opened;
    let metadata = IpAddr::from(sg_common::METADATA_V4);
    let is_metadata = opened == model::Direction::Egress && s.opening.dst == metadata;
    let recheck = reference::decide_by_rules(iface, opened, &s.opening);
    let way = bound_name(opened);
    if !is_metadata
        && !recheck.accept
        && let DecidedBy::Rule { group, id } = recheck.by
    {
        return Diagnosis {
            verdict: "drop".into(),
            decided_by: "session-ended".into(),
            explanation: format!(
                "a tracked session (opened {way}) exists, but drop rule {id} of group {group} matches the packet that opened it: the session ends at this packet"
            ),
            group: Some(group),
            rule: Some(id),
        };
    }
    Diagnosis {
        verdict: "accept".into(),
        decided_by: "session".into(),
        group: None,
        rule: None,
        explanation: format!(
            "a tracked session (opened {way}, idle {} s) passes it without rule evaluation",
            s.idle_secs
        ),
    }
}

fn explain_decision(config: &Config, d: &reference::Decision, dir: model::Direction) -> Diagnosis {
    let verdict = policy_name(d.accept).to_owned();
    let (decided_by, group, rule, explanation) = match &d.by {
        DecidedBy::Rule { group, id } => {
            let r = config
                .group(group)
                .and_then(|g| g.rules(dir).iter().find(|r| &r.id == id));
            let what = r.map_or(String::new(), |r| {
                format!(
                    " ({} {} ports {}, priority {}{})",
                    policy_name(r.policy == model::Policy::Accept),
                    r.protocol,
                    ports_text(&r.ports),
                    r.priority,
                    if r.description.is_empty() {
                        String::new()
                    } else {
                        format!(", {:?}", r.description)
                    }
                )
            });
            (
                "rule",
                Some(group.clone()),
                Some(id.clone()),
                format!("{} rule {id} of group {group} is the first that matches{what}", dir.name()),
            )
        }
        DecidedBy::IntraGroup => (
            "intra-group",
            None,
            None,
            "no rule matches; the remote address is a member of a bound group whose inner_access_policy is accept".to_owned(),
        ),
        DecidedBy::Default => {
            let text = match (d.accept, dir) {
                (true, _) => "no rule matches; basic groups accept outbound traffic by default",
                (false, model::Direction::Ingress) => {
                    "no rule matches; inbound traffic is dropped by default"
                }
                (false, model::Direction::Egress) => {
                    "no rule matches; enterprise groups drop everything no rule accepts"
                }
            };
            ("default", None, None, text.to_owned())
        }
        DecidedBy::BuiltIn(b) => {
            let text = match b {
                BuiltIn::Metadata => "built-in: outbound traffic to the metadata service 100.100.100.200 always passes",
                BuiltIn::Pmtud => "built-in: inbound path-MTU discovery (ICMP fragmentation needed, ICMPv6 packet too big) always passes",
                BuiltIn::NeighborDiscovery => "built-in: IPv6 neighbour and router discovery passes (daemon.builtin_neighbor_discovery)",
                BuiltIn::DhcpClient => "built-in: DHCP client exchanges pass (daemon.builtin_dhcp_client)",
                BuiltIn::SmtpBlocked => "built-in: outbound TCP to port 25 is blocked (daemon.block_smtp_egress; use 465)",
            };
            ("builtin", None, None, text.to_owned())
        }
        DecidedBy::Spoofed => (
            "spoofed",
            None,
            None,
            "the source is not one of the instance's addresses, or the packet advertises another's address or a route (hypervisor mode anti-spoofing)"
                .to_owned(),
        ),
        other => ("other", None, None, format!("{other:?}")),
    };
    Diagnosis {
        verdict,
        decided_by: decided_by.into(),
        group,
        rule,
        explanation,
    }
}
