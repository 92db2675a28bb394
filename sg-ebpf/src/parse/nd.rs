//! ICMPv6 neighbour discovery (RFC 4861), as far as anti-spoofing reads
//! it: the message types, the target address of a neighbour advertisement
//! and the link-layer address options. The ICMPv6 header itself is parsed
//! with the other transport headers ([`super::l4`]).

use aya_ebpf::programs::TcContext;

use super::load;

pub const ROUTER_SOLICITATION: u8 = 133;
pub const ROUTER_ADVERTISEMENT: u8 = 134;
pub const NEIGHBOR_SOLICITATION: u8 = 135;
pub const NEIGHBOR_ADVERTISEMENT: u8 = 136;
pub const REDIRECT: u8 = 137;

const OPT_SOURCE_LINK_ADDR: u8 = 1;
const OPT_TARGET_LINK_ADDR: u8 = 2;
/// Options walked; a message with more is not one an instance needs to
/// send (a solicitation or advertisement carries one or two).
const MAX_OPTIONS: usize = 4;

/// The target address of a neighbour solicitation or advertisement whose
/// ICMPv6 header starts at `l4`.
#[inline(always)]
pub fn target(ctx: &TcContext, l4: usize) -> Option<[u8; 16]> {
    load::<[u8; 16]>(ctx, l4 + 8)
}

/// Where the options of a message of type `kind` at `l4` start: after the
/// 8-byte header of a router solicitation, after the target address of a
/// neighbour solicitation or advertisement.
#[inline(always)]
pub fn options(kind: u8, l4: usize) -> usize {
    if kind == ROUTER_SOLICITATION {
        l4 + 8
    } else {
        l4 + 24
    }
}

/// Whether every source or target link-layer address option from `off`
/// on is `mac` (so the message cannot point a neighbour cache elsewhere).
/// False when an option of that kind has another address or length, or
/// when more than [`MAX_OPTIONS`] options follow. An option of length 0
/// ends the walk: receivers discard the whole message (RFC 4861 §4.6).
#[inline(always)]
pub fn link_addresses_are(ctx: &TcContext, mut off: usize, mac: &[u8; 6]) -> bool {
    for _ in 0..MAX_OPTIONS {
        let Some([kind, len]) = load::<[u8; 2]>(ctx, off) else {
            return true;
        };
        if len == 0 {
            return true;
        }
        if (kind == OPT_SOURCE_LINK_ADDR || kind == OPT_TARGET_LINK_ADDR)
            && (len != 1 || load::<[u8; 6]>(ctx, off + 2).as_ref() != Some(mac))
        {
            return false;
        }
        off += len as usize * 8;
    }
    load::<u8>(ctx, off).is_none()
}
