//! The health check of a group (SPEC §5, issue 11): rules that never
//! change a verdict, and rules that open sensitive ports to everyone.
//!
//! Rule A *covers* rule B's packets when every packet B matches is also
//! matched by A, decided exactly on the geometry: protocol, destination
//! and source port ranges (ports are 0 for protocols without ports, as the
//! classifier sees them), remote addresses (prefix lists expanded; a group
//! reference as its member set: covered only by the same reference or by
//! CIDRs holding all of its members, and covering nothing but itself) and
//! the local address of 5-tuple rules. Findings, each of its own kind:
//!
//! - `redundant`: A is covered by a rule B of the same group, direction and
//!   policy whose priority is at least as strong. Of two rules that cover
//!   each other at equal priority only the later one is reported, and each
//!   finding names a B that is not itself reported, so removing every
//!   redundant rule (`--remove`) changes no verdict.
//! - `shadowed`: A is covered by a rule of the opposite policy that comes
//!   first in the decision order (stronger priority, or equal priority and
//!   a drop over an accept: SPEC §3 step 2), so A can never decide.
//! - `exposed`: an ingress accept that opens one of [`SENSITIVE_PORTS`]
//!   to `0.0.0.0/0` or `::/0`.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::model::{Config, Direction, Peer, Policy, PortRange, Protocol, Rule};

/// SSH, RDP and databases that should not be open to the internet.
pub const SENSITIVE_PORTS: &[(u16, &str)] = &[
    (22, "SSH"),
    (3389, "RDP"),
    (3306, "MySQL"),
    (5432, "PostgreSQL"),
    (1433, "SQL Server"),
    (1521, "Oracle"),
    (6379, "Redis"),
    (27017, "MongoDB"),
];

/// A health check's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    pub group: String,
    pub findings: Vec<Finding>,
    /// Rules deleted (`--remove`): the redundant ones.
    #[serde(default)]
    pub removed: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// `redundant`, `shadowed` or `exposed`.
    pub kind: String,
    pub direction: Direction,
    pub rule: String,
    /// The rule that covers it (none for `exposed`).
    #[serde(default)]
    pub by: Option<String>,
    pub why: String,
}

/// The findings of group `id`, or why it cannot be checked.
pub fn check(config: &Config, id: &str) -> Result<Vec<Finding>, String> {
    let group = config.group(id).ok_or_else(|| format!("no group {id}"))?;
    let mut out = Vec::new();
    for dir in Direction::BOTH {
        let rules = group.rules(dir);
        let covers: Vec<Vec<bool>> = rules
            .iter()
            .map(|a| rules.iter().map(|b| covered(config, a, b)).collect())
            .collect();
        // covers[a][b]: b's packets are all a's.
        let mut redundant: Vec<bool> = (0..rules.len())
            .map(|a| (0..rules.len()).any(|b| b != a && redundant_by(rules, &covers, a, b)))
            .collect();
        // Each redundant rule must keep a cover that is not itself removed
        // (covers chain to one; this only guards the guarantee).
        while let Some(a) = (0..rules.len()).find(|&a| {
            redundant[a]
                && !(0..rules.len())
                    .any(|b| b != a && !redundant[b] && redundant_by(rules, &covers, a, b))
        }) {
            redundant[a] = false;
        }
        for (a, rule) in rules.iter().enumerate() {
            if redundant[a] {
                let b = (0..rules.len())
                    .find(|&b| b != a && !redundant[b] && redundant_by(rules, &covers, a, b))
                    .unwrap_or(a);
                out.push(Finding {
                    kind: "redundant".into(),
                    direction: dir,
                    rule: rule.id.clone(),
                    by: Some(rules[b].id.clone()),
                    why: format!(
                        "every packet it matches is matched by {} ({}, priority {} {} {}): {}",
                        rules[b].id,
                        policy(rules[b].policy),
                        rules[b].priority,
                        if rules[b].priority == rule.priority {
                            "="
                        } else {
                            "<"
                        },
                        rule.priority,
                        describe(&rules[b], dir)
                    ),
                });
            }
            if let Some(b) =
                (0..rules.len()).find(|&b| b != a && covers[b][a] && precedes(&rules[b], rule))
            {
                out.push(Finding {
                    kind: "shadowed".into(),
                    direction: dir,
                    rule: rule.id.clone(),
                    by: Some(rules[b].id.clone()),
                    why: format!(
                        "it can never decide: {} ({}, priority {}) matches every packet it matches and comes first: {}",
                        rules[b].id,
                        policy(rules[b].policy),
                        rules[b].priority,
                        describe(&rules[b], dir)
                    ),
                });
            }
            if dir == Direction::Ingress
                && let Some(why) = exposed(rule)
            {
                out.push(Finding {
                    kind: "exposed".into(),
                    direction: dir,
                    rule: rule.id.clone(),
                    by: None,
                    why,
                });
            }
        }
    }
    Ok(out)
}

/// Whether rule `a` is redundant because of rule `b` (same policy, `b`
/// covers it, at least as strong; at equal priority and equal geometry
/// only the later is).
fn redundant_by(rules: &[Rule], covers: &[Vec<bool>], a: usize, b: usize) -> bool {
    let (ra, rb) = (&rules[a], &rules[b]);
    ra.policy == rb.policy
        && covers[b][a]
        && rb.priority <= ra.priority
        && (rb.priority < ra.priority || !covers[a][b] || b < a)
}

/// Whether `b` comes before `a` in every decision order (SPEC §3: priority,
/// then drop before accept).
fn precedes(b: &Rule, a: &Rule) -> bool {
    b.policy != a.policy && (b.priority, b.policy) < (a.priority, a.policy)
}

fn policy(p: Policy) -> &'static str {
    match p {
        Policy::Accept => "accept",
        Policy::Drop => "drop",
    }
}

fn describe(r: &Rule, dir: Direction) -> String {
    let ports: Vec<String> = r.ports.iter().map(ToString::to_string).collect();
    let remote = match &r.peer {
        Peer::Cidrs(nets) => nets
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
        Peer::Group(g) => format!("group {g}"),
    };
    let side = match dir {
        Direction::Ingress => "from",
        Direction::Egress => "to",
    };
    let mut s = format!("{} {} {side} {remote}", r.protocol, ports.join(","));
    if r.source_ports != PortRange::ANY {
        s.push_str(&format!(" source ports {}", r.source_ports));
    }
    if let Some(l) = r.local {
        s.push_str(&format!(" local {l}"));
    }
    s
}

/// Why an ingress accept is open to the world on a sensitive port.
fn exposed(r: &Rule) -> Option<String> {
    if r.policy != Policy::Accept || r.local.is_some() {
        return None;
    }
    let Peer::Cidrs(nets) = &r.peer else {
        return None;
    };
    let world: Vec<String> = nets
        .iter()
        .filter(|n| n.prefix_len() == 0)
        .map(ToString::to_string)
        .collect();
    let tcp_udp = match r.protocol {
        Protocol::All => true,
        Protocol::Number(n) => n == Protocol::TCP || n == Protocol::UDP,
    };
    if world.is_empty() || !tcp_udp || r.source_ports != PortRange::ANY {
        return None;
    }
    let open: Vec<String> = SENSITIVE_PORTS
        .iter()
        .filter(|(p, _)| r.ports.iter().any(|range| range.contains(*p)))
        .map(|(p, name)| format!("{p} ({name})"))
        .collect();
    (!open.is_empty()).then(|| {
        format!(
            "opens {} to {}; allow only the addresses that need it",
            open.join(", "),
            world.join(" and ")
        )
    })
}

/// Whether every packet `inner` matches is matched by `outer` (in the same
/// group and direction).
pub fn covered(config: &Config, outer: &Rule, inner: &Rule) -> bool {
    // Protocol.
    let proto_ok = match (outer.protocol, inner.protocol) {
        (Protocol::All, _) => true,
        (Protocol::Number(o), Protocol::Number(i)) => o == i,
        (Protocol::Number(_), Protocol::All) => false,
    };
    if !proto_ok {
        return false;
    }
    // Ports: the packets' ports are 0 for protocols without ports.
    let portless = matches!(inner.protocol, Protocol::Number(_)) && !inner.protocol.has_ports();
    let zero = PortRange { start: 0, end: 0 };
    let (dst, src): (Vec<PortRange>, Vec<PortRange>) = if portless {
        (
            inner
                .ports
                .iter()
                .filter(|r| r.contains(0))
                .map(|_| zero)
                .collect(),
            if inner.source_ports.contains(0) {
                vec![zero]
            } else {
                vec![]
            },
        )
    } else {
        (inner.ports.clone(), vec![inner.source_ports])
    };
    if dst.is_empty() || src.is_empty() {
        return true; // matches nothing
    }
    if !ranges_covered(&dst, &outer.ports) || !ranges_covered(&src, &[outer.source_ports]) {
        return false;
    }
    // Remote addresses: a group reference is covered only by itself or by
    // CIDRs holding all its members, and covers nothing but itself. Only
    // those of the local side's family meet it (one family per packet).
    let nets: Vec<IpNet> = match &inner.peer {
        Peer::Group(g) => members(config, g),
        Peer::Cidrs(nets) => nets.clone(),
    };
    let nets: Vec<IpNet> = match inner.local {
        Some(l) => nets.into_iter().filter(|n| same_family(n, &l)).collect(),
        None => nets,
    };
    if nets.is_empty() {
        return true; // matches nothing
    }
    let mut families: Vec<bool> = nets.iter().map(|n| matches!(n, IpNet::V4(_))).collect();
    families.sort();
    families.dedup();
    let same_reference = matches!(inner.peer, Peer::Group(_)) && outer.peer == inner.peer;
    let inner_remote = (!same_reference).then_some(nets);
    if let Some(nets) = &inner_remote {
        let Peer::Cidrs(outer_nets) = &outer.peer else {
            return false;
        };
        if !nets.iter().all(|n| net_covered(*n, outer_nets)) {
            return false;
        }
    }
    match (outer.local, inner.local) {
        (None, _) => true,
        (Some(o), Some(i)) => o.contains(&i),
        (Some(o), None) => {
            // Every local address of the families the remote side has.
            let v4 = matches!(o, IpNet::V4(_));
            o.prefix_len() == 0 && families.iter().all(|&f| f == v4)
        }
    }
}

/// The members of a group a reference stands for (listed members and the
/// listed addresses of interfaces bound to it); `0.0.0.0/0` and `::/0` when
/// a bound interface's addresses are its own (not known here), so that
/// only the whole address space covers it.
fn members(config: &Config, group: &str) -> Vec<IpNet> {
    let mut out: Vec<IpNet> = config
        .group(group)
        .map(|g| g.members.clone())
        .unwrap_or_default();
    for b in &config.interfaces {
        if b.security_groups.iter().any(|g| g == group) {
            if b.addresses.is_empty() {
                return vec![
                    "0.0.0.0/0".parse().expect("a CIDR"),
                    "::/0".parse().expect("a CIDR"),
                ];
            }
            out.extend(b.addresses.iter().map(|a| IpNet::from(*a)));
        }
    }
    out
}

fn same_family(a: &IpNet, b: &IpNet) -> bool {
    matches!(
        (a, b),
        (IpNet::V4(_), IpNet::V4(_)) | (IpNet::V6(_), IpNet::V6(_))
    )
}

/// Whether the union of `ranges` contains every port of `inner`.
fn ranges_covered(inner: &[PortRange], ranges: &[PortRange]) -> bool {
    let mut sorted = ranges.to_vec();
    sorted.sort();
    inner.iter().all(|r| {
        let mut next = u32::from(r.start);
        for o in &sorted {
            if u32::from(o.start) <= next && u32::from(o.end) >= next {
                next = u32::from(o.end) + 1;
            }
            if next > u32::from(r.end) {
                return true;
            }
        }
        next > u32::from(r.end)
    })
}

/// Whether the union of `nets` contains every address of `net`.
fn net_covered(net: IpNet, nets: &[IpNet]) -> bool {
    if nets.iter().any(|o| o.contains(&net)) {
        return true;
    }
    // Only nets inside `net` can help: split it in halves and check each.
    if !nets.iter().any(|o| net.contains(o)) {
        return false;
    }
    match net.subnets(net.prefix_len() + 1) {
        Ok(halves) => halves.into_iter().all(|h| net_covered(h, nets)),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests;
