//! The kernel's classification done in Rust on compiled entries, to check
//! them against the reference before they are applied.

use std::{collections::HashMap, net::IpAddr};

use ipnet::IpNet;
use sg_common::{
    Bitmap, DIM_DST_PORT, DIM_LOCAL, DIM_REMOTE, DIM_SRC_PORT, PROTO_ANY, TABLE_MATCHES_LOCAL,
    TABLE_MATCHES_SRC_PORT,
};

use super::{
    bitmaps::{CompiledTable, addr_bytes},
    table::Fields,
};

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
