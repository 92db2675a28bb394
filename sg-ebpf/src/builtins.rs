//! The built-ins: fixed decisions that no rule can change (SPEC §3.7,
//! §3.8). This is the one list of them; `GLOBAL_*` are the switches in
//! `SG_GLOBAL`.
//!
//! Before sessions, after anti-spoofing ([`stage_antispoof_nd_dhcp`],
//! [`nd_dhcp`]):
//! - **neighbour discovery**: ICMPv6 types 133–137 (router and neighbour
//!   solicitation and advertisement, redirect) pass both ways
//!   (`GLOBAL_BUILTIN_NEIGHBOR_DISCOVERY`; `Reason::NeighborDiscovery`);
//! - **DHCP client**: UDP 68→67 out and 67→68 in, DHCPv6 546→547 out and
//!   547→546 in (`GLOBAL_BUILTIN_DHCP_CLIENT`; `Reason::Dhcp`).
//!
//! Anti-spoofing lets these two, and nothing else, come from the
//! unspecified or a link-local address ([`crate::antispoof`]).
//!
//! After related ICMP, in this order ([`stage_smtp_pmtud_metadata`],
//! [`smtp_pmtud_metadata`]):
//! - **SMTP block**: outbound TCP to port 25 is dropped
//!   (`GLOBAL_BLOCK_SMTP`; `Reason::SmtpBlocked`);
//! - **PMTUD**: inbound ICMPv4 type 3 code 4 and ICMPv6 type 2 pass
//!   (`Reason::Pmtud`);
//! - **metadata**: outbound IPv4 to `METADATA_V4` (100.100.100.200) passes
//!   and opens a session, which no drop rule ends ([`crate::conntrack`])
//!   (`Reason::Metadata`).

use sg_common::{
    Direction, GLOBAL_BLOCK_SMTP, GLOBAL_BUILTIN_DHCP_CLIENT, GLOBAL_BUILTIN_NEIGHBOR_DISCOVERY,
    InterfaceConfig, METADATA_V4, NO_RULE, Reason,
};

use crate::{
    antispoof,
    conntrack::open_session,
    parse::{Flow, proto},
    work::{Work, finish},
};

/// Anti-spoofing of hypervisor-mode instances, then the neighbour
/// discovery and DHCP built-ins.
#[inline(never)]
pub fn stage_antispoof_nd_dhcp(w: &mut Work, iface: &InterfaceConfig) {
    let dir = w.direction();
    let builtin = nd_dhcp(&w.packet, dir, w.global_flags);
    if antispoof::spoofed(iface, w.ifindex, &w.packet, dir, builtin.is_some()) {
        return finish(w, Reason::Spoofed, NO_RULE, 0);
    }
    if let Some(reason) = builtin {
        finish(w, reason, NO_RULE, 0);
    }
}

/// The SMTP block, PMTUD and the metadata service (which opens a session).
#[inline(never)]
pub fn stage_smtp_pmtud_metadata(w: &mut Work, iface: &InterfaceConfig) {
    let dir = w.direction();
    if let Some(reason) = smtp_pmtud_metadata(&w.packet, dir, w.global_flags) {
        if reason == Reason::Metadata {
            open_session(w, iface.epoch);
        }
        finish(w, reason, NO_RULE, 0);
    }
}

/// What the host needs to stay on the network (SPEC §3.7): IPv6 neighbour
/// and router discovery, DHCP and DHCPv6 client exchanges.
#[inline(always)]
fn nd_dhcp(flow: &Flow, dir: Direction, flags: u32) -> Option<Reason> {
    match flow.proto() {
        // Router solicitation/advertisement, neighbour solicitation/
        // advertisement, redirect.
        proto::ICMPV6
            if flags & GLOBAL_BUILTIN_NEIGHBOR_DISCOVERY != 0
                && !flow.is_v4()
                && (133..=137).contains(&flow.icmp_type()) =>
        {
            Some(Reason::NeighborDiscovery)
        }
        proto::UDP if flags & GLOBAL_BUILTIN_DHCP_CLIENT != 0 && is_dhcp_client(flow, dir) => {
            Some(Reason::Dhcp)
        }
        _ => None,
    }
}

/// The port 25 restriction, PMTUD and the metadata service (SPEC §3.7,
/// §3.8).
#[inline(always)]
pub fn smtp_pmtud_metadata(flow: &Flow, dir: Direction, flags: u32) -> Option<Reason> {
    match (flow.proto(), dir) {
        (proto::TCP, Direction::Egress)
            if flags & GLOBAL_BLOCK_SMTP != 0 && flow.rule_dst_port() == 25 =>
        {
            return Some(Reason::SmtpBlocked);
        }
        (proto::ICMP, Direction::Ingress)
            if flow.is_v4() && flow.icmp_type() == 3 && flow.icmp_code() == 4 =>
        {
            return Some(Reason::Pmtud);
        }
        (proto::ICMPV6, Direction::Ingress) if !flow.is_v4() && flow.icmp_type() == 2 => {
            return Some(Reason::Pmtud);
        }
        _ => {}
    }
    if dir == Direction::Egress && flow.is_v4() && flow.dst[..4] == METADATA_V4 {
        return Some(Reason::Metadata);
    }
    None
}

/// DHCP (68 <-> 67) and DHCPv6 (546 <-> 547), client side only.
#[inline(always)]
fn is_dhcp_client(flow: &Flow, dir: Direction) -> bool {
    let (client, server) = if flow.is_v4() { (68, 67) } else { (546, 547) };
    match dir {
        Direction::Egress => flow.src_port() == client && flow.dst_port() == server,
        Direction::Ingress => flow.src_port() == server && flow.dst_port() == client,
    }
}
