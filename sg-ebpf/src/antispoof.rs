//! Anti-spoofing of hypervisor-mode instances (outbound only). An instance
//! may say only who it is:
//!
//! - on the link ([`stage_link`], right after parsing, for every frame):
//!   from its pinned source MAC, if its binding has one
//!   (`SG_INSTANCE_MACS`); ARP only as the sender of one of its addresses
//!   (or 0.0.0.0: an RFC 5227 probe, which no cache learns from) and,
//!   with a pinned MAC, only with that MAC as sender hardware address; no
//!   router advertisements or redirects (RA guard); neighbour
//!   advertisements only for its own addresses or a link-local one, and,
//!   with a pinned MAC, neighbour discovery link-layer address options
//!   only with that MAC;
//! - in IP ([`spoofed`], applied by
//!   [`crate::builtins::stage_antispoof_nd_dhcp`]): only from its own
//!   addresses, which the daemon lists in `SG_INSTANCE_ADDRS`; its
//!   neighbour discovery and DHCP may also come from the unspecified or a
//!   link-local address, which no group grants anything to.

use aya_ebpf::programs::TcContext;
use sg_common::{
    DIM_LOCAL, Direction, FAMILY_V4, IFACE_HYPERVISOR, IFACE_L3, InterfaceConfig, NO_RULE, Reason,
};

use crate::{
    maps::{SG_INSTANCE_ADDRS, SG_INSTANCE_MACS, addr_key},
    parse::{self, Flow, Fragment, Parsed, arp, ethernet, nd, proto},
    work::{Work, finish},
};

/// Whether `flow`, going in direction `dir` on `iface`, is a
/// hypervisor-mode instance sending from an address not its own. `nd_dhcp`:
/// the packet is one of the neighbour discovery or DHCP built-ins.
#[inline(always)]
pub fn spoofed(
    iface: &InterfaceConfig,
    ifindex: u32,
    flow: &Flow,
    dir: Direction,
    nd_dhcp: bool,
) -> bool {
    iface.flags & IFACE_HYPERVISOR != 0
        && dir == Direction::Egress
        && !is_instance_address(ifindex, flow, &flow.src)
        && !(nd_dhcp && is_unspecified_or_link_local(flow))
}

/// What a hypervisor-mode instance says about itself on the link: its
/// source MAC, its ARP and its neighbour discovery (see the module
/// comment). Called for the instance's outbound frames of every `kind`
/// but malformed ones; drops with `Reason::Spoofed`, or `Reason::Malformed`
/// for ARP that is not IPv4 over Ethernet.
///
/// `kind` comes as a plain number ([`link_kind`]): an enum with a payload
/// would pass undefined payload bytes in a register, which the verifier
/// refuses to read.
#[inline(never)]
pub fn stage_link(ctx: &TcContext, w: &mut Work, iface: &InterfaceConfig, kind: u32) {
    // The pinned MAC, all zeroes when none is: an `Option` would leave
    // its payload undefined when `None`, and the compiler moves that
    // register around, which the verifier refuses.
    let pinned = if iface.flags & IFACE_L3 == 0 {
        unsafe { SG_INSTANCE_MACS.get(w.ifindex) }
    } else {
        None
    };
    let (has_mac, mac) = match pinned {
        Some(m) => (true, *m),
        None => (false, [0u8; 6]),
    };
    // The source MAC, whatever the frame carries (VLAN tags included).
    let source_ok = (!has_mac || ctx.load::<[u8; 6]>(6).ok() == Some(mac)) && !tagged(ctx, iface);
    let spoofed = match kind {
        LINK_ARP => {
            let mut a = arp::Arp::default();
            if !arp::arp(ctx, w.packet.l4, &mut a) {
                return finish(w, Reason::Malformed, NO_RULE, 0);
            }
            // The drop record shows the sender and target addresses.
            w.packet.src[..4].copy_from_slice(&a.spa);
            w.packet.dst[..4].copy_from_slice(&a.tpa);
            !source_ok || (has_mac && a.sha != mac) || !arp_sender_ok(w)
        }
        LINK_IP => {
            !source_ok
                || nd_spoofed(ctx, &w.packet, w.ifindex, has_mac.then_some(&mac))
                || dhcp_server(&w.packet)
        }
        _ => {
            if !source_ok {
                // Not IP: no addresses to record.
                parse::clear(&mut w.packet);
                w.packet.family = FAMILY_V4;
            }
            !source_ok
        }
    };
    if spoofed {
        finish(w, Reason::Spoofed, NO_RULE, 0);
    }
}

const LINK_OTHER: u32 = 0;
const LINK_ARP: u32 = 1;
const LINK_IP: u32 = 2;

/// What [`stage_link`] is told of a parsed frame.
#[inline(always)]
pub fn link_kind(kind: Parsed) -> u32 {
    match kind {
        Parsed::Arp => LINK_ARP,
        Parsed::Ip => LINK_IP,
        _ => LINK_OTHER,
    }
}

/// A VLAN tag on a frame an instance sends: an instance sits on an access
/// port, and a tag would put its frame on another VLAN of the bridge.
#[inline(always)]
fn tagged(ctx: &TcContext, iface: &InterfaceConfig) -> bool {
    iface.flags & IFACE_L3 == 0
        && ctx
            .load::<u16>(12)
            .is_ok_and(|t| ethernet::is_tag(u16::from_be(t)))
}

/// A DHCP or DHCPv6 server's answer (UDP 67→68, 547→546) from an
/// instance: a rogue server would hand the others its own gateway and
/// resolvers. The DHCP built-in lets the instance's client through, not a
/// server.
#[inline(always)]
fn dhcp_server(flow: &Flow) -> bool {
    let (server, client) = if flow.is_v4() { (67, 68) } else { (547, 546) };
    flow.proto() == proto::UDP
        && flow.fragment() != Fragment::Later
        && flow.src_port() == server
        && flow.dst_port() == client
}

/// An ARP sender address may be the instance's own, or 0.0.0.0 (an RFC
/// 5227 probe: duplicate address detection, DHCP's check of an offered
/// address; no neighbour cache learns from it).
#[inline(always)]
fn arp_sender_ok(w: &Work) -> bool {
    let flow = &w.packet;
    flow.src[..4] == [0, 0, 0, 0] || is_instance_address(w.ifindex, flow, &flow.src)
}

/// Router advertisements and redirects (RA guard), neighbour
/// advertisements for an address that is neither one of the instance's nor
/// link-local, and, with a pinned `mac`, neighbour discovery whose
/// link-layer address options name another MAC. A later fragment carries
/// no ICMPv6 header; receivers ignore fragmented neighbour discovery (RFC
/// 6980), and a first fragment is checked like a whole message.
#[inline(always)]
fn nd_spoofed(ctx: &TcContext, flow: &Flow, ifindex: u32, mac: Option<&[u8; 6]>) -> bool {
    if flow.proto() != proto::ICMPV6 || flow.is_v4() || flow.fragment() == Fragment::Later {
        return false;
    }
    let kind = flow.icmp_type();
    let l4 = flow.l4;
    let options_ok =
        |kind| mac.is_none_or(|m| nd::link_addresses_are(ctx, nd::options(kind, l4), m));
    match kind {
        nd::ROUTER_ADVERTISEMENT | nd::REDIRECT => true,
        nd::NEIGHBOR_ADVERTISEMENT => {
            let target_ok = match nd::target(ctx, l4) {
                Some(t) => is_link_local(&t) || is_instance_address(ifindex, flow, &t),
                None => false,
            };
            !target_ok || !options_ok(kind)
        }
        nd::ROUTER_SOLICITATION | nd::NEIGHBOR_SOLICITATION => !options_ok(kind),
        _ => false,
    }
}

#[inline(always)]
fn is_link_local(addr: &[u8; 16]) -> bool {
    addr[0] == 0xfe && addr[1] & 0xc0 == 0x80
}

#[inline(always)]
fn is_unspecified_or_link_local(flow: &Flow) -> bool {
    if flow.is_v4() {
        flow.src[..4] == [0, 0, 0, 0]
    } else {
        flow.src == [0; 16] || is_link_local(&flow.src)
    }
}

/// Whether `addr` (of `flow`'s family) is one of the instance's addresses.
#[inline(always)]
fn is_instance_address(ifindex: u32, flow: &Flow, addr: &[u8; 16]) -> bool {
    SG_INSTANCE_ADDRS
        .get(addr_key(ifindex, DIM_LOCAL, flow, addr))
        .is_some()
}
