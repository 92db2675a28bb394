//! From groups to kernel tables, in two steps:
//!
//! 1. [`build_table`]: the effective rule list of one interface and
//!    direction (SPEC §3 steps 1–4): all bound groups' rules, sorted by
//!    priority, drop before accept at equal priority, then binding order of
//!    the groups, then file order of the rules; the hidden intra-group
//!    accept after them; and the direction's default verdict.
//! 2. [`compile`]: one bitmap per value class of each packet field (rule `i`
//!    is bit `i`): per protocol number, per address prefix (longest-prefix
//!    match), per destination-port prefix. The kernel ANDs the three
//!    bitmaps it finds and takes the lowest set bit.

use std::collections::BTreeSet;

use ipnet::IpNet;
use sg_common::{Bitmap, FAMILY_V4, FAMILY_V6, MAX_RULES, PROTO_ANY};

use crate::model::{Config, Direction, GroupType, InterfaceBinding, Policy, PortRange, Protocol};

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

#[derive(Debug, Clone, PartialEq)]
pub struct TableRule {
    pub origin: Origin,
    pub accept: bool,
    pub protocol: Protocol,
    pub ports: Vec<PortRange>,
    pub remote: Vec<IpNet>,
}

impl TableRule {
    /// Whether this rule matches a packet's protocol, destination port
    /// (0 for protocols without ports) and remote address.
    pub fn matches(&self, proto: u8, port: u16, remote: std::net::IpAddr) -> bool {
        self.protocol.matches(proto)
            && self.ports.iter().any(|r| r.contains(port))
            && self.remote.iter().any(|net| net.contains(&remote))
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
    pub fn first_match(&self, proto: u8, port: u16, remote: std::net::IpAddr) -> Option<usize> {
        self.rules
            .iter()
            .position(|r| r.matches(proto, port, remote))
    }
}

/// The effective table of `binding` in `dir` (SPEC §3 steps 1–4).
pub fn build_table(config: &Config, binding: &InterfaceBinding, dir: Direction) -> Table {
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
            remote: r.remote.clone(),
        })
        .collect();

    let enterprise = groups.iter().any(|g| g.kind == GroupType::Enterprise);
    let inbound = dir == Direction::Ingress;
    if inbound && !enterprise {
        // Members of any bound group that grants intra-group access, and
        // this instance's own addresses when it is one of them.
        let mut members: Vec<IpNet> = groups
            .iter()
            .filter(|g| g.inner_access_accept)
            .flat_map(|g| g.members.iter().copied())
            .collect();
        if groups.iter().any(|g| g.inner_access_accept) {
            members.extend(binding.addresses.iter().map(|a| IpNet::from(*a)));
        }
        if !members.is_empty() {
            table.push(TableRule {
                origin: Origin::IntraGroup,
                accept: true,
                protocol: Protocol::All,
                ports: vec![PortRange::ANY],
                remote: members,
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

/// An address-trie entry: family, address bytes (IPv4 in the first four),
/// prefix length, and the rules that match every address under it.
#[derive(Debug, Clone, PartialEq)]
pub struct AddrEntry {
    pub family: u8,
    pub addr: [u8; 16],
    pub prefix_len: u8,
    pub bits: Bitmap,
}

/// A port-trie entry: the ports sharing the top `prefix_len` bits of `port`.
#[derive(Debug, Clone, PartialEq)]
pub struct PortEntry {
    pub port: u16,
    pub prefix_len: u8,
    pub bits: Bitmap,
}

/// A table in the kernel's form.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledTable {
    pub accept: Bitmap,
    pub default_accept: bool,
    pub rule_count: usize,
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
    let mut accept = Bitmap::EMPTY;
    for (i, r) in table.rules.iter().enumerate() {
        if r.accept {
            accept.set(i);
        }
    }
    Ok(CompiledTable {
        accept,
        default_accept: table.default_accept,
        rule_count: table.rules.len(),
        proto: compile_protocols(table),
        addr: compile_addresses(table),
        port: compile_ports(table),
    })
}

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

/// Every prefix any rule names, plus the family's /0; each carries the
/// rules whose prefixes contain it. Prefixes that contain an address are
/// nested, so the longest of them in the trie has exactly the rules that
/// match that address.
fn compile_addresses(table: &Table) -> Vec<AddrEntry> {
    let mut prefixes: BTreeSet<IpNet> = table
        .rules
        .iter()
        .flat_map(|r| r.remote.iter().copied())
        .collect();
    prefixes.insert("0.0.0.0/0".parse().unwrap());
    prefixes.insert("::/0".parse().unwrap());
    prefixes
        .into_iter()
        .map(|p| {
            let bits = rules_where(table, |r| r.remote.iter().any(|q| contains_net(q, &p)));
            let (family, addr) = addr_bytes(&p);
            AddrEntry {
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

pub fn addr_bytes(net: &IpNet) -> (u8, [u8; 16]) {
    let mut bytes = [0u8; 16];
    match net {
        IpNet::V4(n) => {
            bytes[..4].copy_from_slice(&n.network().octets());
            (FAMILY_V4, bytes)
        }
        IpNet::V6(n) => (FAMILY_V6, n.network().octets()),
    }
}

/// Elementary port intervals (between consecutive range boundaries), each
/// split into aligned power-of-two blocks, i.e. prefixes of the 16-bit port.
fn compile_ports(table: &Table) -> Vec<PortEntry> {
    let mut bounds: BTreeSet<u32> = BTreeSet::from([0, 65536]);
    for r in &table.rules {
        for range in &r.ports {
            bounds.insert(range.start as u32);
            bounds.insert(range.end as u32 + 1);
        }
    }
    let bounds: Vec<u32> = bounds.into_iter().collect();
    let mut out = Vec::new();
    let mut pending: Option<(u32, u32, Bitmap)> = None;
    for w in bounds.windows(2) {
        let (lo, hi) = (w[0], w[1] - 1);
        let bits = rules_where(table, |r| r.ports.iter().any(|p| p.contains(lo as u16)));
        // Merge neighbours with equal rule sets: fewer trie entries.
        pending = match pending {
            Some((start, _, prev)) if prev == bits => Some((start, hi, bits)),
            Some((start, end, prev)) => {
                push_port_blocks(&mut out, start, end, prev);
                Some((lo, hi, bits))
            }
            None => Some((lo, hi, bits)),
        };
    }
    if let Some((start, end, bits)) = pending {
        push_port_blocks(&mut out, start, end, bits);
    }
    out
}

fn push_port_blocks(out: &mut Vec<PortEntry>, mut lo: u32, hi: u32, bits: Bitmap) {
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
            port: lo as u16,
            prefix_len: (16 - size.trailing_zeros()) as u8,
            bits,
        });
        lo += size;
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use proptest::prelude::*;

    use super::*;

    /// The kernel's lookups, done in Rust: exact protocol or `PROTO_ANY`,
    /// longest-prefix match on address and port, AND, lowest bit.
    fn lookup(c: &CompiledTable, proto: u8, port: u16, remote: IpAddr) -> Option<usize> {
        let p = c
            .proto
            .iter()
            .find(|(k, _)| *k == proto as u32)
            .or_else(|| c.proto.iter().find(|(k, _)| *k == PROTO_ANY))?
            .1;
        let family = addr_bytes(&IpNet::from(remote)).0;
        let a = c
            .addr
            .iter()
            .filter(|e| e.family == family)
            .filter(|e| {
                let net = match family {
                    FAMILY_V4 => IpNet::new(
                        IpAddr::from(<[u8; 4]>::try_from(&e.addr[..4]).unwrap()),
                        e.prefix_len,
                    ),
                    _ => IpNet::new(IpAddr::from(e.addr), e.prefix_len),
                }
                .unwrap();
                net.contains(&remote)
            })
            .max_by_key(|e| e.prefix_len)?
            .bits;
        let q = c
            .port
            .iter()
            .filter(|e| {
                let shift = 16 - e.prefix_len as u32;
                (port as u32 >> shift) == (e.port as u32 >> shift)
            })
            .max_by_key(|e| e.prefix_len)?
            .bits;
        (0..MAX_RULES).find(|&i| p.get(i) && a.get(i) && q.get(i))
    }

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
            prop::collection::vec(arb_net(), 1..3),
        )
            .prop_map(|(accept, protocol, ports, remote)| TableRule {
                origin: Origin::IntraGroup,
                accept,
                protocol,
                ports,
                remote,
            })
    }

    fn arb_packet() -> impl Strategy<Value = (u8, u16, IpAddr)> {
        (
            prop_oneof![Just(6u8), Just(17), Just(1), any::<u8>()],
            prop_oneof![0u16..120, any::<u16>()],
            prop_oneof![
                any::<[u8; 4]>().prop_map(IpAddr::from),
                (0u8..4, any::<u8>()).prop_map(|(a, b)| IpAddr::from([198, 51, a, b])),
                any::<[u8; 16]>().prop_map(IpAddr::from),
            ],
        )
    }

    proptest! {
        /// The compiled tables decide exactly like a first-match scan of
        /// the ordered rules.
        #[test]
        fn compiled_lookup_equals_first_match(
            rules in prop::collection::vec(arb_rule(), 0..40),
            packets in prop::collection::vec(arb_packet(), 1..40),
        ) {
            let table = Table { rules, default_accept: false };
            let compiled = compile(&table).unwrap();
            for (proto, port, remote) in packets {
                prop_assert_eq!(
                    lookup(&compiled, proto, port, remote),
                    table.first_match(proto, port, remote),
                    "proto {} port {} remote {}", proto, port, remote
                );
            }
        }
    }

    #[test]
    fn port_blocks_cover_a_range_exactly() {
        let mut out = Vec::new();
        push_port_blocks(&mut out, 8000, 9000, Bitmap::EMPTY);
        let covered: u32 = out.iter().map(|e| 1u32 << (16 - e.prefix_len)).sum();
        assert_eq!(covered, 1001);
        assert_eq!(out.first().unwrap().port, 8000);
        let mut all = Vec::new();
        push_port_blocks(&mut all, 0, 65535, Bitmap::EMPTY);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].prefix_len, 0);
    }
}
