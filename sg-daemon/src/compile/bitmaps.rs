//! An effective table in the kernel's form: bitmaps of rules per protocol,
//! per address prefix and per port block, ready for the maps.

use std::collections::{BTreeSet, HashMap};

use ipnet::IpNet;
use sg_common::{
    Bitmap, DIM_DST_PORT, DIM_LOCAL, DIM_REMOTE, DIM_SRC_PORT, MAX_RULES, PROTO_ANY,
    TABLE_MATCHES_LOCAL, TABLE_MATCHES_SRC_PORT,
};

use super::table::{Origin, Table, TableRule};
use crate::model::{PortRange, Protocol};

/// An address-trie entry: which address (`DIM_REMOTE`, `DIM_LOCAL`),
/// family, address bytes (IPv4 in the first four), prefix length, and the
/// rules that match every address under it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AddrEntry {
    pub dim: u8,
    pub family: u8,
    pub addr: [u8; 16],
    pub prefix_len: u8,
    pub bits: Bitmap,
}

/// A port-trie entry (`DIM_DST_PORT`, `DIM_SRC_PORT`): the ports sharing
/// the top `prefix_len` bits of `port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PortEntry {
    pub dim: u8,
    pub port: u16,
    pub prefix_len: u8,
    pub bits: Bitmap,
}

/// A table in the kernel's form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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

pub(super) const ANY_V4: IpNet = IpNet::V4(ipnet::Ipv4Net::new_assert(
    std::net::Ipv4Addr::UNSPECIFIED,
    0,
));
pub(super) const ANY_V6: IpNet = IpNet::V6(ipnet::Ipv6Net::new_assert(
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
    // The rules naming each prefix, and the prefix lengths named: a
    // prefix's rules are those naming it or one of its ancestors, found by
    // one lookup per length named (not a scan of every rule's prefixes,
    // which is quadratic when rules reference a large group).
    let mut named: HashMap<IpNet, Bitmap> = HashMap::new();
    for (i, rule) in table.rules.iter().enumerate() {
        for net in nets_of(rule) {
            named.entry(net.trunc()).or_insert(Bitmap::EMPTY).set(i);
        }
    }
    let lengths: BTreeSet<(bool, u8)> = named
        .keys()
        .map(|n| (n.addr().is_ipv4(), n.prefix_len()))
        .collect();
    let mut prefixes: BTreeSet<IpNet> = named.keys().copied().collect();
    prefixes.insert(ANY_V4);
    prefixes.insert(ANY_V6);
    prefixes
        .into_iter()
        .map(|p| {
            let mut bits = Bitmap::EMPTY;
            for &(v4, len) in &lengths {
                if v4 != p.addr().is_ipv4() || len > p.prefix_len() {
                    continue;
                }
                let ancestor = IpNet::new(p.addr(), len).expect("a shorter length").trunc();
                if let Some(rules) = named.get(&ancestor) {
                    bits.union_with(rules);
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

pub(super) fn push_port_blocks(
    out: &mut Vec<PortEntry>,
    dim: u8,
    mut lo: u32,
    hi: u32,
    bits: Bitmap,
) {
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
