//! The built-ins: fixed decisions that no rule can change (SPEC §3.7,
//! §3.8). This is the one list of them; `GLOBAL_*` are the switches in
//! `SG_GLOBAL`.
//!
//! Right after parsing ([`non_ip`]):
//! - **non-IP frames** pass (`GLOBAL_BUILTIN_NON_IP`; `Reason::NotIp`);
//!   switched off, they are dropped (`Reason::NotIpDropped`), except ARP,
//!   without which IPv4 does not work on Ethernet.
//!
//! Before sessions, after anti-spoofing ([`stage_antispoof_nd_dhcp`],
//! [`nd_dhcp`]):
//! - **neighbour discovery**: ICMPv6 types 130–136 and 143 (MLD query,
//!   report and done, router and neighbour solicitation and advertisement,
//!   MLDv2 report) pass both ways (`GLOBAL_BUILTIN_NEIGHBOR_DISCOVERY`);
//!   redirects (137) only while `GLOBAL_BUILTIN_ND_REDIRECTS` is set
//!   (`Reason::NeighborDiscovery`);
//! - **DHCP client**: UDP 68→67 out and 67→68 in, DHCPv6 546→547 out and
//!   547→546 in (`GLOBAL_BUILTIN_DHCP_CLIENT`; `Reason::Dhcp`).
//!
//! Anti-spoofing lets these two, and nothing else, come from the
//! unspecified or a link-local address ([`crate::antispoof`]).
//!
//! After related ICMP, in this order ([`stage_smtp_pmtud_metadata`],
//! [`smtp_pmtud_metadata`]):
//! - **SMTP block**: outbound TCP to port 25 is dropped
//!   (`GLOBAL_BLOCK_SMTP`; `Reason::SmtpBlocked`); switched on by a reload,
//!   it also ends the port-25 sessions opened while it was off, at their
//!   next packet ([`crate::conntrack`]);
//! - **PMTUD**: inbound ICMPv4 type 3 code 4 and ICMPv6 type 2 pass
//!   (`Reason::Pmtud`);
//! - **metadata**: outbound IPv4 to `METADATA_V4` (100.100.100.200) passes
//!   (`Reason::Metadata`); TCP, UDP and ICMP echo requests open a session,
//!   which no drop rule ends ([`crate::conntrack`]); other protocols pass
//!   packet by packet.

use sg_common::{
    Direction, GLOBAL_BLOCK_SMTP, GLOBAL_BUILTIN_DHCP_CLIENT, GLOBAL_BUILTIN_ND_REDIRECTS,
    GLOBAL_BUILTIN_NEIGHBOR_DISCOVERY, GLOBAL_BUILTIN_NON_IP, InterfaceConfig, METADATA_V4,
    NO_RULE, Reason,
};

use crate::{
    antispoof,
    conntrack::open_session,
    maps::SG_GLOBAL,
    parse::{ETH_P_ARP, Flow, proto},
    work::{Work, finish},
};

/// A frame that is not IP, of `ethertype` (0 if too short to say): it
/// passes while `GLOBAL_BUILTIN_NON_IP` is set; ARP always does.
#[inline(always)]
pub fn non_ip(w: &mut Work, ethertype: u16) {
    let flags = SG_GLOBAL.get(0).map_or(0, |g| g.flags);
    let reason = if ethertype == ETH_P_ARP || flags & GLOBAL_BUILTIN_NON_IP != 0 {
        Reason::NotIp
    } else {
        Reason::NotIpDropped
    };
    finish(w, reason, NO_RULE, 0);
}

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
        if reason == Reason::Metadata && opens_metadata_session(&w.packet) {
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
        proto::ICMPV6 if !flow.is_v4() && is_neighbor_discovery(flow.icmp_type(), flags) => {
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

/// The ICMPv6 types of the neighbour discovery built-in that are switched
/// on in `flags`.
#[inline(always)]
fn is_neighbor_discovery(icmp_type: u8, flags: u32) -> bool {
    match icmp_type {
        // MLD query, report and done; router solicitation and
        // advertisement, neighbour solicitation and advertisement; MLDv2
        // report.
        130..=136 | 143 => flags & GLOBAL_BUILTIN_NEIGHBOR_DISCOVERY != 0,
        // Redirect.
        137 => flags & GLOBAL_BUILTIN_ND_REDIRECTS != 0,
        _ => false,
    }
}

/// The metadata service's traffic that opens a session: TCP, UDP and ICMP
/// echo requests (not later fragments, which have no ports).
#[inline(always)]
fn opens_metadata_session(flow: &Flow) -> bool {
    matches!(flow.proto(), proto::TCP | proto::UDP | proto::ICMP) && flow.opens_session()
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
