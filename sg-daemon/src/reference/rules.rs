//! SPEC §3 steps 1–4: the rules of all bound groups in decision order,
//! what a rule matches, and the first match (or the default).

use super::*;

/// SPEC §3 steps 1 and 2: the rules of `dir` from all bound groups, by
/// priority, drop before accept at equal priority, then binding order of
/// the groups, then file order.
pub fn ordered_rules<'a>(iface: &Interface<'a>, dir: Direction) -> Vec<(&'a str, &'a Rule)> {
    let mut rules = Vec::new();
    for group_id in &iface.binding.security_groups {
        if let Some(group) = iface.config.group(group_id) {
            for rule in group.rules(dir) {
                rules.push((group.id.as_str(), rule));
            }
        }
    }
    rules.sort_by_key(|(_, rule)| {
        let drop_first = match rule.policy {
            Policy::Drop => 0,
            Policy::Accept => 1,
        };
        (rule.priority, drop_first)
    });
    rules
}

/// Local and remote address of a packet in a direction.
pub(super) fn sides(pkt: &Packet, dir: Direction) -> (IpAddr, IpAddr) {
    match dir {
        Direction::Ingress => (pkt.dst, pkt.src),
        Direction::Egress => (pkt.src, pkt.dst),
    }
}

/// SPEC §2 and §3 step 3: protocol, ports and addresses.
pub(super) fn rule_matches(iface: &Interface, rule: &Rule, dir: Direction, pkt: &Packet) -> bool {
    let (local, remote) = sides(pkt, dir);
    let (src_port, dst_port) = pkt.rule_ports();
    let protocol = match rule.protocol {
        Protocol::All => true,
        Protocol::Number(n) => n == pkt.proto,
    };
    let in_ranges = |ranges: &[PortRange], port: u16| ranges.iter().any(|r| r.contains(port));
    let remote_ok = match &rule.peer {
        Peer::Cidrs(nets) => nets.iter().any(|n| n.contains(&remote)),
        Peer::Group(id) => iface
            .addresses
            .members(id)
            .iter()
            .any(|n| n.contains(&remote)),
    };
    protocol
        && in_ranges(&rule.ports, dst_port)
        && rule.source_ports.contains(src_port)
        && remote_ok
        && rule.local.is_none_or(|n| n.contains(&local))
}

/// SPEC §3 steps 3 and 4 for one packet: the first matching rule, or the
/// hidden defaults.
pub fn decide_by_rules(iface: &Interface, dir: Direction, pkt: &Packet) -> Decision {
    decide_by_ordered_rules(iface, dir, &ordered_rules(iface, dir), pkt)
}

/// [`decide_by_rules`] with the ordered rules computed once by the caller.
pub fn decide_by_ordered_rules(
    iface: &Interface,
    dir: Direction,
    ordered: &[(&str, &Rule)],
    pkt: &Packet,
) -> Decision {
    for &(group, rule) in ordered {
        if rule_matches(iface, rule, dir, pkt) {
            let by = DecidedBy::Rule {
                group: group.to_owned(),
                id: rule.id.clone(),
            };
            return Decision::new(rule.policy == Policy::Accept, by);
        }
    }
    let groups: Vec<_> = iface
        .binding
        .security_groups
        .iter()
        .filter_map(|id| iface.config.group(id))
        .collect();
    let enterprise = groups.iter().any(|g| g.kind == GroupType::Enterprise);
    if enterprise {
        // Everything not accepted by a rule is dropped, both ways.
        return Decision::new(false, DecidedBy::Default);
    }
    match dir {
        Direction::Egress => Decision::new(true, DecidedBy::Default),
        Direction::Ingress => {
            let (_, remote) = sides(pkt, dir);
            let from_member = groups.iter().filter(|g| g.inner_access_accept).any(|g| {
                iface
                    .addresses
                    .members(&g.id)
                    .iter()
                    .any(|n: &IpNet| n.contains(&remote))
            });
            if from_member {
                Decision::new(true, DecidedBy::IntraGroup)
            } else {
                Decision::new(false, DecidedBy::Default)
            }
        }
    }
}
