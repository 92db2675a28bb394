//! The link header: where the network header starts and which protocol it
//! carries. On Ethernet, the ethertype under at most two VLAN tags (802.1Q,
//! 802.1ad, or both: QinQ); on an L3 device (no link header: TUN,
//! WireGuard, IP tunnels) the network header starts the frame and the
//! protocol is the one the kernel gave the packet (`skb->protocol`).

use aya_ebpf::programs::TcContext;

use super::reader::Reader;

const ETH_HLEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_ARP: u16 = 0x0806;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
/// A VLAN tag's length.
const VLAN_HLEN: usize = 4;

/// A VLAN tag: what the kernel strips before handing a frame on.
#[inline(always)]
pub fn is_tag(ethertype: u16) -> bool {
    ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD
}

/// The ethertype of the frame's payload under at most two VLAN tags, and
/// the offset of the network header; `None` if the frame is too short to
/// say. Still a tag ([`is_tag`]) when there are more tags than that.
#[inline(always)]
pub fn ethertype<R: Reader>(r: &R) -> Option<(u16, usize)> {
    let mut ethertype = r.load::<u16>(12).map(u16::from_be)?;
    let mut l3 = ETH_HLEN;
    if is_tag(ethertype) {
        ethertype = r.load::<u16>(l3 + 2).map(u16::from_be)?;
        l3 += VLAN_HLEN;
    }
    if is_tag(ethertype) {
        ethertype = r.load::<u16>(l3 + 2).map(u16::from_be)?;
        l3 += VLAN_HLEN;
    }
    Some((ethertype, l3))
}

/// An L3 device's packet: the protocol the kernel gave it, at offset 0.
#[inline(always)]
pub fn l3_protocol(ctx: &TcContext) -> (u16, usize) {
    (u16::from_be(ctx.skb.protocol() as u16), 0)
}
