//! `Diagnose`: what the rules (or a live session, or a built-in) decide for
//! a described packet, and why.

use sg_common::{CtKey, CtValue, SESSION_CLOSED};

use super::{
    Diagnosis, Direction, Probe, Reply,
    names::{binding, bound_name, policy_name, ports_text},
};
use crate::{
    model::{self, Config},
    reference::{self, BuiltIn, DecidedBy, Interface, Packet},
    sessions,
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
        icmp,
        ..Packet::probe(probe.src, probe.dst, proto, probe.src_port, probe.dst_port)
    };
    let addresses = crate::daemon::resolve_addresses(config);
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
        && let Some((key, value)) = find_session(live, ifindex, &pkt, dir)
        && let Some(diagnosis) = session_diagnosis(&iface, key, value, proto)
    {
        return Ok(Reply::Diagnosis(diagnosis));
    }
    Ok(Reply::Diagnosis(explain_decision(config, &fresh, dir)))
}

/// The kernel's entry for `pkt`'s session, live or not.
fn find_session<'a>(
    live: &'a [(CtKey, CtValue)],
    ifindex: u32,
    pkt: &Packet,
    dir: Direction,
) -> Option<&'a (CtKey, CtValue)> {
    let (local, remote, local_port, remote_port) = match dir {
        Direction::Ingress => (pkt.dst, pkt.src, pkt.dst_port, pkt.src_port),
        Direction::Egress => (pkt.src, pkt.dst, pkt.src_port, pkt.dst_port),
    };
    let (family, local_bytes) = sg_common::addr::to_bytes(local);
    let (_, remote_bytes) = sg_common::addr::to_bytes(remote);
    live.iter().find(|(k, _)| {
        k.ifindex == ifindex
            && k.proto == pkt.proto
            && k.family == family
            && k.local == local_bytes
            && k.remote == remote_bytes
            && k.local_port == local_port
            && k.remote_port == remote_port
    })
}

/// What the session decides (SPEC §3.5, §3.6): a live one passes the
/// packet, unless an explicit drop rule now matches the packet that opened
/// it (then it ends); an ended one drops it while such a rule stays.
/// `None`: the session does not decide (expired, closed under a new TCP
/// connection attempt, or ended by a rule that is gone).
fn session_diagnosis(
    iface: &Interface,
    key: &CtKey,
    value: &CtValue,
    proto: u8,
) -> Option<Diagnosis> {
    let now = crate::clock::boot_time_ns();
    let ended = value.ended != 0;
    if !ended && !sessions::is_live(value, &iface.config.daemon.session_timeouts(), now) {
        return None;
    }
    // The probe of a TCP port is a SYN: on a closed connection's ports it
    // opens a new one.
    if value.state == SESSION_CLOSED && proto == reference::TCP {
        return None;
    }
    let way = bound_name(Direction::from_raw(value.opened));
    let state = sessions::state_name(value);
    match (sessions::ended_by(iface, key, value), ended) {
        (Some((group, id)), _) => {
            let what = if ended {
                "was ended by"
            } else {
                "ends at this packet: it matches"
            };
            Some(Diagnosis {
                verdict: "drop".into(),
                decided_by: "session-ended".into(),
                explanation: format!(
                    "a tracked session (opened {way}) {what} drop rule {id} of group {group}, which matches the packet that opened it; no packet of it passes either way while the rule stays"
                ),
                group: Some(group),
                rule: Some(id),
            })
        }
        (None, true) => None,
        (None, false) => Some(Diagnosis {
            verdict: "accept".into(),
            decided_by: "session".into(),
            group: None,
            rule: None,
            explanation: format!(
                "a tracked session (opened {way}, {state}, idle {} s) passes it without rule evaluation",
                now.saturating_sub(value.last_seen_ns) / 1_000_000_000
            ),
        }),
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
                BuiltIn::NotIp => "built-in: frames that are not IP pass (daemon.builtin_non_ip; ARP always)",
                BuiltIn::NeighborDiscovery => "built-in: IPv6 neighbour and router discovery and MLD pass (daemon.builtin_neighbor_discovery; redirects: daemon.builtin_nd_redirects)",
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
