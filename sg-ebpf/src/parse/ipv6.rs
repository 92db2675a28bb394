//! IPv6: the fixed header, then the extension headers (hop-by-hop,
//! routing, destination options, fragment, AH), at most
//! [`MAX_EXT_HEADERS`] of them, then the transport header unless the
//! packet is a later fragment.

use sg_common::FAMILY_V6;

use super::{Flow, Fragment, empty_flow, l4::parse_l4, load_in, proto, reader::Reader};

/// IPv6 extension headers walked before giving up (the packet is then
/// dropped as malformed).
const MAX_EXT_HEADERS: usize = 8;

/// The fixed IPv6 header at `l3`: the flow without its transport fields;
/// `l4` is where the header after the fixed one starts.
#[inline(always)]
pub fn ipv6_header<R: Reader>(r: &R, l3: usize) -> Option<Flow> {
    let ver = r.load::<u8>(l3)?;
    if ver >> 4 != 6 {
        return None;
    }
    let mut flow = empty_flow(FAMILY_V6, r.load::<u8>(l3 + 6)?);
    flow.src = r.load::<[u8; 16]>(l3 + 8)?;
    flow.dst = r.load::<[u8; 16]>(l3 + 24)?;
    flow.l4 = l3 + 40;
    // A payload length of 0 is a jumbogram's, which no link sg serves
    // carries: nothing after the fixed header is then read.
    flow.end = flow.l4 + u16::from_be(r.load::<u16>(l3 + 4)?) as usize;
    Some(flow)
}

#[inline(always)]
pub fn parse_v6<R: Reader>(r: &R, l3: usize) -> Option<Flow> {
    let mut flow = ipv6_header(r, l3)?;
    extension_headers(r, &mut flow)?;
    if flow.fragment == Fragment::Later {
        return Some(flow);
    }
    parse_l4(r, flow)
}

/// Walks the extension headers from `flow.l4`: `flow.proto` becomes the
/// upper-layer protocol and `flow.l4` where its header starts, or, in a
/// later fragment, the Fragment header's next header and where the
/// fragment's data starts. `None`: a header cut short, or too many.
#[inline(always)]
pub fn extension_headers<R: Reader>(r: &R, flow: &mut Flow) -> Option<()> {
    let mut off = flow.l4;
    let mut frag_seen = false;
    // One turn per extension header, and one to land on what follows.
    for _ in 0..=MAX_EXT_HEADERS {
        match flow.proto {
            proto::HOPOPTS | proto::ROUTING | proto::DSTOPTS => {
                let [next, len] = load_in::<[u8; 2], _>(r, flow.end, off)?;
                flow.proto = next;
                off += (len as usize + 1) * 8;
            }
            proto::AH => {
                let [next, len] = load_in::<[u8; 2], _>(r, flow.end, off)?;
                flow.proto = next;
                off += (len as usize + 2) * 4;
            }
            proto::FRAGMENT => {
                // One Fragment header per packet (RFC 8200 §4.1): a second
                // one would name another datagram than the receiver
                // reassembles this one into.
                if frag_seen {
                    return None;
                }
                frag_seen = true;
                let next = load_in::<u8, _>(r, flow.end, off)?;
                let offset_flags = u16::from_be(load_in::<u16, _>(r, flow.end, off + 2)?);
                flow.frag_id = u32::from_be(load_in::<u32, _>(r, flow.end, off + 4)?);
                flow.proto = next;
                off += 8;
                if offset_flags & 0xfff8 != 0 {
                    flow.fragment = Fragment::Later;
                    flow.l4 = off;
                    return Some(());
                }
                if offset_flags & 1 != 0 {
                    flow.fragment = Fragment::First;
                }
            }
            _ => {
                flow.l4 = off;
                return Some(());
            }
        }
    }
    // Still inside extension headers: too many to walk.
    None
}
