//! The built-ins no rule changes (SPEC §3.7, §3.8): non-IP frames,
//! neighbour discovery and DHCP, PMTUD, the metadata service, the SMTP
//! block; and the neighbour discovery by which a hypervisor-mode instance
//! would pose as a router or as another instance.

use super::*;

/// SPEC §3.7: a frame that is not IP passes while `builtin_non_ip` is on
/// (the default). ARP (ethertype 0x0806) passes either way: IPv4 on
/// Ethernet does not work without it, as IPv6 does not without neighbour
/// discovery.
pub fn decide_not_ip(config: &Config, ethertype: u16) -> Decision {
    const ARP: u16 = 0x0806;
    Decision::new(
        ethertype == ARP || config.daemon.builtin_non_ip,
        DecidedBy::BuiltIn(BuiltIn::NotIp),
    )
}

/// Built-ins the host needs to stay on the network (SPEC §3.7): neighbour
/// and router discovery with MLD, redirects if switched on, DHCP client
/// exchanges.
pub(super) fn nd_dhcp_builtin(config: &Config, dir: Direction, pkt: &Packet) -> Option<BuiltIn> {
    let d = &config.daemon;
    let neighbor_discovery = match (pkt.proto, pkt.icmp_type()) {
        // MLD query, report and done (130–132), router solicitation and
        // advertisement, neighbour solicitation and advertisement
        // (133–136), MLDv2 report (143): IPv6 needs them on every link,
        // MLD also behind switches that snoop it.
        (ICMPV6, Some(130..=136 | 143)) => d.builtin_neighbor_discovery,
        // Redirects: only if switched on (off by default).
        (ICMPV6, Some(137)) => d.builtin_nd_redirects,
        _ => false,
    };
    if neighbor_discovery && pkt.src.is_ipv6() {
        return Some(BuiltIn::NeighborDiscovery);
    }
    if d.builtin_dhcp_client && pkt.proto == UDP {
        let (client, server) = if pkt.src.is_ipv4() {
            (68, 67)
        } else {
            (546, 547)
        };
        let exchange = match dir {
            Direction::Egress => (pkt.src_port, pkt.dst_port) == (client, server),
            Direction::Ingress => (pkt.src_port, pkt.dst_port) == (server, client),
        };
        if exchange {
            return Some(BuiltIn::DhcpClient);
        }
    }
    None
}

/// The port 25 restriction, PMTUD and the metadata service (SPEC §3.7,
/// §3.8).
pub(super) fn smtp_pmtud_metadata_builtin(
    config: &Config,
    dir: Direction,
    pkt: &Packet,
) -> Option<BuiltIn> {
    let outbound = dir == Direction::Egress;
    if outbound && config.daemon.block_smtp_egress && pkt.proto == TCP && pkt.rule_ports().1 == 25 {
        return Some(BuiltIn::SmtpBlocked);
    }
    if !outbound {
        let pmtud = match (pkt.proto, pkt.icmp) {
            (ICMP, Some((3, 4))) => pkt.src.is_ipv4(),
            (ICMPV6, Some((2, _))) => pkt.src.is_ipv6(),
            _ => false,
        };
        if pmtud {
            return Some(BuiltIn::Pmtud);
        }
    }
    let metadata: IpAddr = [100, 100, 100, 200].into();
    if outbound && pkt.dst == metadata {
        return Some(BuiltIn::Metadata);
    }
    None
}

/// What a hypervisor-mode instance would pose as a router, a DHCP server
/// or another instance by, whatever the built-ins and rules say: router
/// advertisements and redirects (RA guard), DHCP and DHCPv6 server answers
/// (UDP 67→68, 547→546), and neighbour advertisements whose target is
/// neither one of its addresses nor link-local (its link-local addresses
/// are not configured; no group grants them anything). A later fragment
/// carries no transport header.
pub(super) fn poses_on_the_link(iface: &Interface, pkt: &Packet) -> bool {
    if matches!(pkt.fragment, Fragment::Later { .. }) {
        return false;
    }
    let dhcp_server = if pkt.src.is_ipv4() {
        (67, 68)
    } else {
        (547, 546)
    };
    if pkt.proto == UDP && (pkt.src_port, pkt.dst_port) == dhcp_server {
        return true;
    }
    if pkt.proto != ICMPV6 || !pkt.src.is_ipv6() || matches!(pkt.fragment, Fragment::Later { .. }) {
        return false;
    }
    let own = |target: &IpAddr| {
        matches!(target, IpAddr::V6(t) if t.is_unicast_link_local())
            || iface
                .addresses
                .instance(&iface.binding.name)
                .contains(target)
    };
    match pkt.icmp_type() {
        Some(134 | 137) => true,
        Some(136) => !pkt.nd_target.as_ref().is_some_and(own),
        _ => false,
    }
}
