//! Before a ruleset is switched in, its compiled tables are checked against
//! the reference decision on packets drawn from the rules themselves: the
//! edges of every address prefix and port range, every named protocol, and
//! a few outsiders. A disagreement means a compiler bug; the daemon then
//! keeps the ruleset in force and reports the first packet that differs.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::{
    compile::{CompiledTable, Fields, Lookup, Origin, Table},
    model::{Direction, Peer, PortRange, Protocol},
    reference::{self, DecidedBy, Fragment, Interface, Packet},
};

/// At most this many packets per table: the check must stay well inside
/// the time budget of an apply.
const MAX_SAMPLES: usize = 1024;

#[derive(Debug, thiserror::Error)]
#[error(
    "compiled {dir:?} tables disagree with the reference decision for {packet:?}: \
     reference {expected:?}, compiled {got:?}"
)]
pub struct Mismatch {
    pub dir: Direction,
    pub packet: Packet,
    pub expected: (bool, DecidedBy),
    pub got: (bool, DecidedBy),
}

/// Checks one direction's compiled table against the reference.
pub fn verify(
    iface: &Interface,
    dir: Direction,
    table: &Table,
    compiled: &CompiledTable,
) -> Result<(), Box<Mismatch>> {
    let ordered = reference::ordered_rules(iface, dir);
    let kernel = Lookup::new(compiled);
    for packet in samples(iface, dir) {
        let expected = reference::decide_by_ordered_rules(iface, dir, &ordered, &packet);
        let (local, remote) = match dir {
            Direction::Ingress => (packet.dst, packet.src),
            Direction::Egress => (packet.src, packet.dst),
        };
        let ports = packet.proto == reference::TCP || packet.proto == reference::UDP;
        let fields = Fields {
            proto: packet.proto,
            src_port: if ports { packet.src_port } else { 0 },
            dst_port: if ports { packet.dst_port } else { 0 },
            remote,
            local,
        };
        let got = match kernel.lookup(&fields) {
            Some(i) => {
                let rule = &table.rules[i];
                let by = match &rule.origin {
                    Origin::Rule { group, id } => DecidedBy::Rule {
                        group: group.clone(),
                        id: id.clone(),
                    },
                    Origin::IntraGroup => DecidedBy::IntraGroup,
                };
                (compiled.accept.get(i), by)
            }
            None => (compiled.default_accept, DecidedBy::Default),
        };
        if got != (expected.accept, expected.by.clone()) {
            return Err(Box::new(Mismatch {
                dir,
                packet,
                expected: (expected.accept, expected.by),
                got,
            }));
        }
    }
    Ok(())
}

/// Packets on the edges of what the rules name.
fn samples(iface: &Interface, dir: Direction) -> Vec<Packet> {
    let rules = reference::ordered_rules(iface, dir);
    let mut nets: Vec<IpNet> = vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()];
    let mut ports = vec![0u16, 1, 65535];
    let mut protos = vec![
        0u8,
        reference::ICMP,
        reference::TCP,
        reference::UDP,
        reference::ICMPV6,
        255,
    ];
    for (_, rule) in &rules {
        match &rule.peer {
            Peer::Cidrs(list) => nets.extend(list),
            Peer::Group(id) => nets.extend(iface.addresses.members(id)),
        }
        nets.extend(rule.local);
        for r in rule.ports.iter().chain([&rule.source_ports]) {
            if *r != PortRange::ANY {
                ports.extend([
                    r.start,
                    r.end,
                    r.start.wrapping_sub(1),
                    r.end.wrapping_add(1),
                ]);
            }
        }
        if let Protocol::Number(n) = rule.protocol {
            protos.push(n);
        }
    }
    for g in &iface.binding.security_groups {
        nets.extend(iface.addresses.members(g));
    }
    let mut addrs: Vec<IpAddr> = nets.iter().flat_map(edges).collect();
    addrs.extend(iface.addresses.instance(&iface.binding.name));
    addrs.sort();
    addrs.dedup();
    ports.sort();
    ports.dedup();
    protos.sort();
    protos.dedup();

    let mut out = Vec::new();
    // Walk the product with co-prime strides so that a capped sample still
    // mixes every address with many ports and protocols.
    let total = addrs.len() * ports.len() * protos.len();
    for n in 0..total.min(MAX_SAMPLES) {
        let remote = addrs[n % addrs.len()];
        let local = addrs[(n / addrs.len() + n) % addrs.len()];
        if remote.is_ipv4() != local.is_ipv4() {
            continue;
        }
        let (src, dst) = match dir {
            Direction::Ingress => (remote, local),
            Direction::Egress => (local, remote),
        };
        out.push(Packet {
            src,
            dst,
            proto: protos[(n / 7) % protos.len()],
            src_port: ports[(n / 3) % ports.len()],
            dst_port: ports[n % ports.len()],
            icmp: None,
            tcp_flags: 0,
            fragment: Fragment::No,
            quoted: None,
            nd_target: None,
        });
    }
    out
}

/// The first and last address of a prefix, and the addresses just outside.
fn edges(net: &IpNet) -> Vec<IpAddr> {
    let first = net.network();
    let last = net.broadcast();
    let mut out = vec![first, last];
    match (first, last) {
        (IpAddr::V4(f), IpAddr::V4(l)) => {
            out.push(u32::from(f).wrapping_sub(1).to_be_bytes().into());
            out.push(u32::from(l).wrapping_add(1).to_be_bytes().into());
        }
        (IpAddr::V6(f), IpAddr::V6(l)) => {
            out.push(u128::from(f).wrapping_sub(1).to_be_bytes().into());
            out.push(u128::from(l).wrapping_add(1).to_be_bytes().into());
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::{
        compile::{build_table, compile},
        config,
        model::Addresses,
    };

    const CONFIG: &str = r#"
[[security_group]]
id = "sg-a"
  [[security_group.ingress]]
  policy = "accept"
  ip_protocol = "tcp"
  port_range = "22/22"
  source_cidr_ip = "198.51.100.0/24"
  [[security_group.ingress]]
  policy = "drop"
  ip_protocol = "all"
  source_cidr_ip = "198.51.100.7"
[[interface]]
name = "eth0"
security_groups = ["sg-a"]
"#;

    #[test]
    fn a_faithful_compilation_passes_and_a_corrupted_one_is_caught() {
        let config = config::parse(Path::new("t.toml"), CONFIG).unwrap();
        let binding = &config.interfaces[0];
        let addresses = Addresses::resolve(&config, |_| Vec::new());
        let iface = Interface {
            config: &config,
            binding,
            addresses: &addresses,
        };
        let table = build_table(&config, binding, &addresses, Direction::Ingress);
        let compiled = compile(&table).unwrap();
        verify(&iface, Direction::Ingress, &table, &compiled).unwrap();

        // A compiler that forgot drop-before-accept: the accept bit set on
        // the drop rule.
        let mut wrong = compiled.clone();
        wrong.accept.set(0);
        wrong.accept.set(1);
        let mismatch = verify(&iface, Direction::Ingress, &table, &wrong).unwrap_err();
        assert!(!mismatch.expected.0 && mismatch.got.0, "{mismatch}");

        // A compiler that lost a port range.
        let mut lost = compiled;
        lost.port.retain(|e| e.port != 22);
        assert!(verify(&iface, Direction::Ingress, &table, &lost).is_err());
    }
}
