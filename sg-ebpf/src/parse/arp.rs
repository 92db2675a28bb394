//! ARP for IPv4 over Ethernet (RFC 826), as far as anti-spoofing reads it:
//! who the sender says it is. Parsed only where it is checked (the
//! outbound traffic of hypervisor-mode instances); everywhere else ARP is
//! a frame that is not IP.

use aya_ebpf::programs::TcContext;

use super::load;

/// Hardware types Linux accepts for ARP on an Ethernet device: Ethernet
/// and IEEE 802.
const ARPHRD_ETHER: u16 = 1;
const ARPHRD_IEEE802: u16 = 6;
const PTYPE_IPV4: u16 = 0x0800;

/// The sender of an ARP packet (request or reply alike) and its target.
#[derive(Default)]
pub struct Arp {
    /// Sender hardware address.
    pub sha: [u8; 6],
    /// Sender protocol address: 0.0.0.0 in an RFC 5227 probe.
    pub spa: [u8; 4],
    /// Target protocol address.
    pub tpa: [u8; 4],
}

/// The ARP packet at `off`, if it is IPv4 over Ethernet (hardware type
/// Ethernet or IEEE 802, protocol type IPv4, hardware address length 6,
/// protocol address length 4) and whole; `None` otherwise.
///
/// A BPF function of its own: inlined, the compiler assembled the
/// addresses from words with undefined bytes, which the verifier refuses.
#[inline(never)]
pub fn arp(ctx: &TcContext, off: usize, out: &mut Arp) -> bool {
    match read(ctx, off) {
        Some(arp) => {
            *out = arp;
            true
        }
        None => false,
    }
}

#[inline(always)]
fn read(ctx: &TcContext, off: usize) -> Option<Arp> {
    let [htype_hi, htype_lo, ptype_hi, ptype_lo, hlen, plen] = load::<[u8; 6]>(ctx, off)?;
    let htype = u16::from_be_bytes([htype_hi, htype_lo]);
    let ptype = u16::from_be_bytes([ptype_hi, ptype_lo]);
    if (htype != ARPHRD_ETHER && htype != ARPHRD_IEEE802)
        || ptype != PTYPE_IPV4
        || hlen != 6
        || plen != 4
    {
        return None;
    }
    // Operation (2 bytes) at 6, then sender MAC and IP, target MAC and IP.
    let sender = load::<[u8; 10]>(ctx, off + 8)?;
    let tpa = load::<[u8; 4]>(ctx, off + 24)?;
    let mut sha = [0u8; 6];
    sha.copy_from_slice(&sender[..6]);
    let mut spa = [0u8; 4];
    spa.copy_from_slice(&sender[6..]);
    Some(Arp { sha, spa, tpa })
}
