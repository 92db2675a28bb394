//! The effective rule list of one interface and direction: the bound
//! groups' rules in decision order, group references resolved, the hidden
//! intra-group accept, the default; and first-match evaluation of it.

use ipnet::IpNet;
use std::net::IpAddr;

use crate::model::{
    Addresses, Config, Direction, GroupType, InterfaceBinding, Peer, Policy, PortRange, Protocol,
};

/// What a table entry stands for, for diagnostics and counters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Origin {
    Rule {
        group: String,
        id: String,
    },
    /// Basic groups' hidden accept of inbound traffic from members.
    IntraGroup,
}

/// The packet fields rules look at. Ports are 0 for protocols without
/// ports (rules for those say `-1/-1`, which matches 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields {
    pub proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
    pub remote: IpAddr,
    pub local: IpAddr,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableRule {
    pub origin: Origin,
    pub accept: bool,
    pub protocol: Protocol,
    pub ports: Vec<PortRange>,
    pub source_ports: PortRange,
    /// Resolved remote addresses.
    pub remote: Vec<IpNet>,
    pub local: Option<IpNet>,
}

impl TableRule {
    pub fn matches(&self, f: &Fields) -> bool {
        self.protocol.matches(f.proto)
            && self.ports.iter().any(|r| r.contains(f.dst_port))
            && self.source_ports.contains(f.src_port)
            && self.remote.iter().any(|net| net.contains(&f.remote))
            && self.local.is_none_or(|net| net.contains(&f.local))
    }
}

/// The ordered rules of one interface and direction. Equal tables compile
/// to equal kernel tables: the daemon compiles each distinct one once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Table {
    pub rules: Vec<TableRule>,
    pub default_accept: bool,
}

impl Table {
    /// First-match evaluation of the ordered list: the index of the deciding
    /// rule, or `None` for the default.
    pub fn first_match(&self, f: &Fields) -> Option<usize> {
        self.rules.iter().position(|r| r.matches(f))
    }
}

/// The effective table of `binding` in `dir` (SPEC §3 steps 1–4).
pub fn build_table(
    config: &Config,
    binding: &InterfaceBinding,
    addresses: &Addresses,
    dir: Direction,
) -> Table {
    let groups: Vec<_> = binding
        .security_groups
        .iter()
        .filter_map(|id| config.group(id))
        .collect();
    let mut rules: Vec<_> = groups
        .iter()
        .flat_map(|g| g.rules(dir).iter().map(move |r| (g, r)))
        .collect();
    // Stable sort: equal keys keep binding order, then file order.
    rules.sort_by_key(|(_, r)| (r.priority, r.policy));
    let mut table: Vec<TableRule> = rules
        .into_iter()
        .map(|(g, r)| TableRule {
            origin: Origin::Rule {
                group: g.id.clone(),
                id: r.id.clone(),
            },
            accept: r.policy == Policy::Accept,
            protocol: r.protocol,
            ports: r.ports.clone(),
            source_ports: r.source_ports,
            remote: match &r.peer {
                Peer::Cidrs(nets) => nets.clone(),
                Peer::Group(id) => addresses.members(id).to_vec(),
            },
            local: r.local,
        })
        .collect();

    let enterprise = groups.iter().any(|g| g.kind == GroupType::Enterprise);
    let inbound = dir == Direction::Ingress;
    if inbound && !enterprise {
        // Members of every bound group that grants intra-group access.
        let mut members: Vec<IpNet> = groups
            .iter()
            .filter(|g| g.inner_access_accept)
            .flat_map(|g| addresses.members(&g.id).iter().copied())
            .collect();
        members.sort();
        members.dedup();
        if !members.is_empty() {
            table.push(TableRule {
                origin: Origin::IntraGroup,
                accept: true,
                protocol: Protocol::All,
                ports: vec![PortRange::ANY],
                source_ports: PortRange::ANY,
                remote: members,
                local: None,
            });
        }
    }
    // Basic: inbound drop, outbound accept. Enterprise: drop both ways.
    let default_accept = !inbound && !enterprise;
    Table {
        rules: table,
        default_accept,
    }
}
