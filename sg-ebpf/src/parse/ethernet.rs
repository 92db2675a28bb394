//! Ethernet: the ethertype, under at most one 802.1Q or 802.1ad tag, and
//! where the network header starts.

use aya_ebpf::programs::TcContext;

use super::load;

const ETH_HLEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_ARP: u16 = 0x0806;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

/// The ethertype of the frame's payload (the inner one under a VLAN tag)
/// and the offset of the network header; `None` if the frame is too short
/// to say.
#[inline(always)]
pub fn ethertype(ctx: &TcContext) -> Option<(u16, usize)> {
    let mut ethertype = load::<u16>(ctx, 12).map(u16::from_be)?;
    let mut l3 = ETH_HLEN;
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        ethertype = load::<u16>(ctx, 16).map(u16::from_be)?;
        l3 += 4;
    }
    Some((ethertype, l3))
}
