//! Anti-spoofing of hypervisor-mode instances (outbound only): an instance
//! sends only from its own addresses, which the daemon lists in
//! `SG_INSTANCE_ADDRS`; its neighbour discovery and DHCP may also come from
//! the unspecified or a link-local address, which no group grants anything
//! to. Applied, before those built-ins, by
//! [`crate::builtins::stage_antispoof_nd_dhcp`].

use sg_common::{DIM_LOCAL, Direction, IFACE_HYPERVISOR, InterfaceConfig};

use crate::{
    maps::{SG_INSTANCE_ADDRS, addr_key},
    parse::Flow,
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
        && !is_instance_address(ifindex, flow)
        && !(nd_dhcp && is_unspecified_or_link_local(flow))
}

#[inline(always)]
fn is_unspecified_or_link_local(flow: &Flow) -> bool {
    if flow.is_v4() {
        flow.src[..4] == [0, 0, 0, 0]
    } else {
        flow.src == [0; 16] || (flow.src[0] == 0xfe && flow.src[1] & 0xc0 == 0x80)
    }
}

#[inline(always)]
fn is_instance_address(ifindex: u32, flow: &Flow) -> bool {
    SG_INSTANCE_ADDRS
        .get(addr_key(ifindex, DIM_LOCAL, flow, &flow.src))
        .is_some()
}
