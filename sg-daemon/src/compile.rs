//! From groups to kernel tables, in two steps:
//!
//! 1. [`build_table`]: the effective rule list of one interface and
//!    direction (SPEC §3 steps 1–4): all bound groups' rules, sorted by
//!    priority, drop before accept at equal priority, then binding order of
//!    the groups, then file order of the rules; the hidden intra-group
//!    accept after them; and the direction's default verdict. Group
//!    references are resolved to member addresses here.
//! 2. [`compile`]: one bitmap per value class of each packet field (rule `i`
//!    is bit `i`): per protocol number, per remote- and local-address
//!    prefix (longest-prefix match), per destination- and source-port
//!    prefix. The kernel ANDs the bitmaps it finds and takes the lowest set
//!    bit. [`lookup`] does the same in Rust, for checks before applying.

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
};

use ipnet::IpNet;
use sg_common::{
    Bitmap, DIM_DST_PORT, DIM_LOCAL, DIM_REMOTE, DIM_SRC_PORT, MAX_RULES, PROTO_ANY,
    TABLE_MATCHES_LOCAL, TABLE_MATCHES_SRC_PORT,
};

use crate::model::{
    Addresses, Config, Direction, GroupType, InterfaceBinding, Peer, Policy, PortRange, Protocol,
};

/// What a table entry stands for, for diagnostics and counters.
#[derive(Debug, Clone, PartialEq, Eq)]
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

#[derive(Debug, Clone, PartialEq)]
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

/// The ordered rules of one interface and direction.
#[derive(Debug, Clone, PartialEq)]
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

/// An address-trie entry: which address (`DIM_REMOTE`, `DIM_LOCAL`),
/// family, address bytes (IPv4 in the first four), prefix length, and the
/// rules that match every address under it.
#[derive(Debug, Clone, PartialEq)]
pub struct AddrEntry {
    pub dim: u8,
    pub family: u8,
    pub addr: [u8; 16],
    pub prefix_len: u8,
    pub bits: Bitmap,
}

/// A port-trie entry (`DIM_DST_PORT`, `DIM_SRC_PORT`): the ports sharing
/// the top `prefix_len` bits of `port`.
#[derive(Debug, Clone, PartialEq)]
pub struct PortEntry {
    pub dim: u8,
    pub port: u16,
    pub prefix_len: u8,
    pub bits: Bitmap,
}

/// A table in the kernel's form.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledTable {
    /// What each bit stands for, in bit order (for counters and records).
    pub origins: Vec<Origin>,
    pub accept: Bitmap,
    pub default_accept: bool,
    pub rule_count: usize,
    /// `TABLE_MATCHES_*`: the optional lookups this table needs.
    pub flags: u32,
    /// (protocol number or `PROTO_ANY`, rules matching it).
    pub proto: Vec<(u32, Bitmap)>,
    pub addr: Vec<AddrEntry>,
    pub port: Vec<PortEntry>,
}

#[derive(Debug, thiserror::Error)]
#[error("{count} rules in one direction; the kernel tables hold at most {MAX_RULES}")]
pub struct TooManyRules {
    pub count: usize,
}

pub fn compile(table: &Table) -> Result<CompiledTable, TooManyRules> {
    if table.rules.len() > MAX_RULES {
        return Err(TooManyRules {
            count: table.rules.len(),
        });
    }
    let accept = rules_where(table, |r| r.accept);
    let uses_local = table.rules.iter().any(|r| r.local.is_some());
    let uses_src_port = table.rules.iter().any(|r| r.source_ports != PortRange::ANY);
    let mut addr = compile_prefixes(table, DIM_REMOTE, |r| r.remote.clone());
    if uses_local {
        addr.extend(compile_prefixes(table, DIM_LOCAL, |r| match r.local {
            Some(net) => vec![net],
            None => vec![ANY_V4, ANY_V6],
        }));
    }
    let mut port = compile_ports(table, DIM_DST_PORT, |r| r.ports.clone());
    if uses_src_port {
        port.extend(compile_ports(table, DIM_SRC_PORT, |r| vec![r.source_ports]));
    }
    let flags = if uses_local { TABLE_MATCHES_LOCAL } else { 0 }
        | if uses_src_port {
            TABLE_MATCHES_SRC_PORT
        } else {
            0
        };
    Ok(CompiledTable {
        origins: table.rules.iter().map(|r| r.origin.clone()).collect(),
        accept,
        default_accept: table.default_accept,
        rule_count: table.rules.len(),
        flags,
        proto: compile_protocols(table),
        addr,
        port,
    })
}

const ANY_V4: IpNet = IpNet::V4(ipnet::Ipv4Net::new_assert(
    std::net::Ipv4Addr::UNSPECIFIED,
    0,
));
const ANY_V6: IpNet = IpNet::V6(ipnet::Ipv6Net::new_assert(
    std::net::Ipv6Addr::UNSPECIFIED,
    0,
));

fn rules_where(table: &Table, pred: impl Fn(&TableRule) -> bool) -> Bitmap {
    let mut bits = Bitmap::EMPTY;
    for (i, r) in table.rules.iter().enumerate() {
        if pred(r) {
            bits.set(i);
        }
    }
    bits
}

/// One entry per protocol some rule names (with the `all` rules added),
/// plus `PROTO_ANY` for every other protocol.
fn compile_protocols(table: &Table) -> Vec<(u32, Bitmap)> {
    let named: BTreeSet<u8> = table
        .rules
        .iter()
        .filter_map(|r| match r.protocol {
            Protocol::Number(n) => Some(n),
            Protocol::All => None,
        })
        .collect();
    let mut out: Vec<_> = named
        .into_iter()
        .map(|p| (p as u32, rules_where(table, |r| r.protocol.matches(p))))
        .collect();
    out.push((
        PROTO_ANY,
        rules_where(table, |r| r.protocol == Protocol::All),
    ));
    out
}

/// Every prefix any rule names in this dimension, plus each family's /0;
/// each carries the rules whose prefixes contain it. Prefixes that contain
/// an address are nested, so the longest of them in the trie has exactly
/// the rules that match that address.
fn compile_prefixes(
    table: &Table,
    dim: u8,
    nets_of: impl Fn(&TableRule) -> Vec<IpNet>,
) -> Vec<AddrEntry> {
    let per_rule: Vec<Vec<IpNet>> = table.rules.iter().map(&nets_of).collect();
    let mut prefixes: BTreeSet<IpNet> = per_rule.iter().flatten().copied().collect();
    prefixes.insert(ANY_V4);
    prefixes.insert(ANY_V6);
    prefixes
        .into_iter()
        .map(|p| {
            let mut bits = Bitmap::EMPTY;
            for (i, nets) in per_rule.iter().enumerate() {
                if nets.iter().any(|q| contains_net(q, &p)) {
                    bits.set(i);
                }
            }
            let (family, addr) = addr_bytes(&p);
            AddrEntry {
                dim,
                family,
                addr,
                prefix_len: p.prefix_len(),
                bits,
            }
        })
        .collect()
}

fn contains_net(outer: &IpNet, inner: &IpNet) -> bool {
    outer.prefix_len() <= inner.prefix_len() && outer.contains(&inner.network())
}

/// The family and map bytes of a prefix's network address.
pub fn addr_bytes(net: &IpNet) -> (u8, [u8; 16]) {
    sg_common::addr::to_bytes(net.network())
}

/// Elementary port intervals (between consecutive range boundaries), each
/// split into aligned power-of-two blocks, i.e. prefixes of the 16-bit port.
fn compile_ports(
    table: &Table,
    dim: u8,
    ranges_of: impl Fn(&TableRule) -> Vec<PortRange>,
) -> Vec<PortEntry> {
    let per_rule: Vec<Vec<PortRange>> = table.rules.iter().map(&ranges_of).collect();
    let mut bounds: BTreeSet<u32> = BTreeSet::from([0, 65536]);
    for range in per_rule.iter().flatten() {
        bounds.insert(range.start as u32);
        bounds.insert(range.end as u32 + 1);
    }
    let bounds: Vec<u32> = bounds.into_iter().collect();
    let mut out = Vec::new();
    let mut pending: Option<(u32, u32, Bitmap)> = None;
    for w in bounds.windows(2) {
        let (lo, hi) = (w[0], w[1] - 1);
        let mut bits = Bitmap::EMPTY;
        for (i, ranges) in per_rule.iter().enumerate() {
            if ranges.iter().any(|p| p.contains(lo as u16)) {
                bits.set(i);
            }
        }
        // Merge neighbours with equal rule sets: fewer trie entries.
        pending = match pending {
            Some((start, _, prev)) if prev == bits => Some((start, hi, bits)),
            Some((start, end, prev)) => {
                push_port_blocks(&mut out, dim, start, end, prev);
                Some((lo, hi, bits))
            }
            None => Some((lo, hi, bits)),
        };
    }
    if let Some((start, end, bits)) = pending {
        push_port_blocks(&mut out, dim, start, end, bits);
    }
    out
}

fn push_port_blocks(out: &mut Vec<PortEntry>, dim: u8, mut lo: u32, hi: u32, bits: Bitmap) {
    while lo <= hi {
        // The largest aligned block starting at `lo` that fits in [lo, hi].
        let mut size = if lo == 0 {
            1 << 16
        } else {
            1 << lo.trailing_zeros().min(16)
        };
        while lo + size - 1 > hi {
            size >>= 1;
        }
        out.push(PortEntry {
            dim,
            port: lo as u16,
            prefix_len: (16 - size.trailing_zeros()) as u8,
            bits,
        });
        lo += size;
    }
}

/// The kernel's classification, done in Rust on the compiled entries:
/// exact protocol or `PROTO_ANY`, longest-prefix match per address and
/// port dimension, AND, lowest bit. `None` means the default decides.
pub fn lookup(c: &CompiledTable, f: &Fields) -> Option<usize> {
    Lookup::new(c).lookup(f)
}

/// [`lookup`] for many packets: the entries indexed by exact prefix, as
/// the kernel's tries are, so each lookup probes prefix lengths from the
/// longest down instead of scanning every entry.
pub struct Lookup<'a> {
    table: &'a CompiledTable,
    addr: HashMap<(u8, u8, u8, [u8; 16]), Bitmap>,
    port: HashMap<(u8, u8, u16), Bitmap>,
}

impl<'a> Lookup<'a> {
    pub fn new(table: &'a CompiledTable) -> Lookup<'a> {
        let addr = table
            .addr
            .iter()
            .map(|e| ((e.dim, e.family, e.prefix_len, e.addr), e.bits))
            .collect();
        let port = table
            .port
            .iter()
            .map(|e| ((e.dim, e.prefix_len, e.port), e.bits))
            .collect();
        Lookup { table, addr, port }
    }

    pub fn lookup(&self, f: &Fields) -> Option<usize> {
        let c = self.table;
        let proto = c
            .proto
            .iter()
            .find(|(k, _)| *k == f.proto as u32)
            .or_else(|| c.proto.iter().find(|(k, _)| *k == PROTO_ANY))?
            .1;
        let mut all = vec![
            proto,
            self.addr_bits(DIM_REMOTE, f.remote)?,
            self.port_bits(DIM_DST_PORT, f.dst_port)?,
        ];
        if c.flags & TABLE_MATCHES_LOCAL != 0 {
            all.push(self.addr_bits(DIM_LOCAL, f.local)?);
        }
        if c.flags & TABLE_MATCHES_SRC_PORT != 0 {
            all.push(self.port_bits(DIM_SRC_PORT, f.src_port)?);
        }
        (0..c.rule_count).find(|&i| all.iter().all(|b| b.get(i)))
    }

    fn addr_bits(&self, dim: u8, ip: IpAddr) -> Option<Bitmap> {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        (0..=max).rev().find_map(|len| {
            let net = IpNet::new(ip, len).expect("a valid prefix length").trunc();
            let (family, bytes) = addr_bytes(&net);
            self.addr.get(&(dim, family, len, bytes)).copied()
        })
    }

    fn port_bits(&self, dim: u8, port: u16) -> Option<Bitmap> {
        (0..=16u8).rev().find_map(|len| {
            let masked = if len == 0 {
                0
            } else {
                port & (u16::MAX << (16 - len))
            };
            self.port.get(&(dim, len, masked)).copied()
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use proptest::prelude::*;

    use super::*;

    fn arb_net() -> impl Strategy<Value = IpNet> {
        prop_oneof![
            (any::<[u8; 4]>(), 0u8..=32)
                .prop_map(|(a, l)| IpNet::new(IpAddr::from(a), l).unwrap().trunc()),
            // Few distinct v4 roots so that prefixes nest and overlap.
            (0u8..4, 0u8..=32).prop_map(|(a, l)| IpNet::new(IpAddr::from([198, 51, a, 7]), l)
                .unwrap()
                .trunc()),
            (any::<[u8; 16]>(), 0u8..=128)
                .prop_map(|(a, l)| IpNet::new(IpAddr::from(a), l).unwrap().trunc()),
        ]
    }

    fn arb_ports() -> impl Strategy<Value = PortRange> {
        prop_oneof![
            Just(PortRange::ANY),
            (1u16..100, 0u16..50).prop_map(|(s, n)| PortRange {
                start: s,
                end: s.saturating_add(n)
            }),
            (1u16..=u16::MAX).prop_map(|s| PortRange { start: s, end: s }),
        ]
    }

    fn arb_rule() -> impl Strategy<Value = TableRule> {
        (
            any::<bool>(),
            prop_oneof![
                Just(Protocol::All),
                Just(Protocol::Number(6)),
                Just(Protocol::Number(17)),
                Just(Protocol::Number(1)),
                any::<u8>().prop_map(Protocol::Number)
            ],
            prop::collection::vec(arb_ports(), 1..3),
            prop_oneof![3 => Just(PortRange::ANY), 1 => arb_ports()],
            prop::collection::vec(arb_net(), 1..3),
            prop_oneof![3 => Just(None), 1 => arb_net().prop_map(Some)],
        )
            .prop_map(
                |(accept, protocol, ports, source_ports, remote, local)| TableRule {
                    origin: Origin::IntraGroup,
                    accept,
                    protocol,
                    ports,
                    source_ports,
                    remote,
                    local,
                },
            )
    }

    fn arb_fields() -> impl Strategy<Value = Fields> {
        let addr = || {
            prop_oneof![
                any::<[u8; 4]>().prop_map(IpAddr::from),
                (0u8..4, any::<u8>()).prop_map(|(a, b)| IpAddr::from([198, 51, a, b])),
                any::<[u8; 16]>().prop_map(IpAddr::from),
            ]
        };
        (
            prop_oneof![Just(6u8), Just(17), Just(1), any::<u8>()],
            prop_oneof![0u16..120, any::<u16>()],
            prop_oneof![0u16..120, any::<u16>()],
            addr(),
            addr(),
        )
            .prop_map(|(proto, src_port, dst_port, remote, local)| Fields {
                proto,
                src_port,
                dst_port,
                remote,
                local,
            })
    }

    proptest! {
        /// The compiled tables decide exactly like a first-match scan of
        /// the ordered rules.
        #[test]
        fn compiled_lookup_equals_first_match(
            rules in prop::collection::vec(arb_rule(), 0..40),
            packets in prop::collection::vec(arb_fields(), 1..40),
        ) {
            let table = Table { rules, default_accept: false };
            let compiled = compile(&table).unwrap();
            for f in packets {
                prop_assert_eq!(lookup(&compiled, &f), table.first_match(&f), "{:?}", f);
            }
        }
    }

    #[test]
    fn port_blocks_cover_a_range_exactly() {
        let mut out = Vec::new();
        push_port_blocks(&mut out, DIM_DST_PORT, 8000, 9000, Bitmap::EMPTY);
        let covered: u32 = out.iter().map(|e| 1u32 << (16 - e.prefix_len)).sum();
        assert_eq!(covered, 1001);
        assert_eq!(out.first().unwrap().port, 8000);
        let mut all = Vec::new();
        push_port_blocks(&mut all, DIM_DST_PORT, 0, 65535, Bitmap::EMPTY);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].prefix_len, 0);
    }

    #[test]
    fn optional_dimensions_are_compiled_only_when_used() {
        let rule = TableRule {
            origin: Origin::IntraGroup,
            accept: true,
            protocol: Protocol::Number(6),
            ports: vec![PortRange { start: 22, end: 22 }],
            source_ports: PortRange::ANY,
            remote: vec![ANY_V4],
            local: None,
        };
        let plain = compile(&Table {
            rules: vec![rule.clone()],
            default_accept: false,
        })
        .unwrap();
        assert_eq!(plain.flags, 0);
        assert!(plain.addr.iter().all(|e| e.dim == DIM_REMOTE));
        let five_tuple = TableRule {
            source_ports: PortRange {
                start: 1024,
                end: 2047,
            },
            local: Some("192.0.2.100/32".parse().unwrap()),
            ..rule
        };
        let c = compile(&Table {
            rules: vec![five_tuple],
            default_accept: false,
        })
        .unwrap();
        assert_eq!(c.flags, TABLE_MATCHES_LOCAL | TABLE_MATCHES_SRC_PORT);
    }
}
