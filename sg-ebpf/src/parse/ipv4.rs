//! IPv4: the header (options skipped by IHL, fragment offset and flags),
//! then the transport header unless the packet is a later fragment.

use sg_common::FAMILY_V4;

use super::{Flow, Fragment, empty_flow, l4::parse_l4, proto, reader::Reader};

/// The IPv4 header at `l3`: the flow without its transport fields.
#[inline(always)]
pub fn ipv4_header<R: Reader>(r: &R, l3: usize) -> Option<Flow> {
    let ver_ihl = r.load::<u8>(l3)?;
    let ihl = (ver_ihl & 0x0f) as usize * 4;
    if ver_ihl >> 4 != 4 || ihl < 20 {
        return None;
    }
    let total_len = u16::from_be(r.load::<u16>(l3 + 2)?) as usize;
    if total_len < ihl {
        return None;
    }
    let id = u16::from_be(r.load::<u16>(l3 + 4)?);
    let frag = u16::from_be(r.load::<u16>(l3 + 6)?);
    let mut flow = empty_flow(FAMILY_V4, r.load::<u8>(l3 + 9)?);
    flow.src = v4_addr(r.load::<u32>(l3 + 12)?);
    flow.dst = v4_addr(r.load::<u32>(l3 + 16)?);
    flow.frag_id = id as u32;
    flow.fragment = if frag & 0x1fff != 0 {
        Fragment::Later
    } else if frag & 0x2000 != 0 {
        Fragment::First
    } else {
        Fragment::No
    };
    flow.l4 = l3 + ihl;
    flow.end = l3 + total_len;
    Some(flow)
}

#[inline(always)]
pub fn parse_v4<R: Reader>(r: &R, l3: usize) -> Option<Flow> {
    let flow = ipv4_header(r, l3)?;
    // The options end inside the packet, or the header is truncated.
    r.load::<u8>(flow.l4 - 1)?;
    if flow.fragment == Fragment::Later {
        // RFC 1858: a TCP fragment at offset 8 would rewrite the flags the
        // first fragment was judged by.
        let offset = u16::from_be(r.load::<u16>(l3 + 6)?) & 0x1fff;
        if flow.proto == proto::TCP && offset == 1 {
            return None;
        }
        return Some(flow);
    }
    parse_l4(r, flow)
}

/// An IPv4 address read as a native `u32` (its bytes in wire order), in
/// the first four bytes of a zeroed 16-byte field: whole-word stores, not
/// a byte-wise copy and `memset`.
#[inline(always)]
fn v4_addr(addr: u32) -> [u8; 16] {
    (addr as u128).to_ne_bytes()
}
