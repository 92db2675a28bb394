//! The packet an ICMP error quotes: its IP header (IPv6: with its
//! extension headers, walked as in a packet of its own) and the first 8
//! bytes of its transport header, enough to name the session it belongs
//! to (the related stage).

use aya_ebpf::programs::TcContext;

use super::{
    Flow, Fragment,
    ipv4::ipv4_header,
    ipv6::{extension_headers, ipv6_header},
    l4::{icmp_for, is_echo},
    load_in, proto,
    reader::{Reader, Skb},
};

/// The packet an ICMP error quotes (its IP header and the first 8 bytes of
/// its transport header), or `None` if the quote is cut too short to name
/// a session.
#[inline(never)]
pub fn quoted(ctx: &TcContext, error: &Flow, out: &mut Flow) -> bool {
    match quoted_flow(ctx, error) {
        Some(inner) => {
            *out = inner;
            true
        }
        None => false,
    }
}

#[inline(always)]
fn quoted_flow(ctx: &TcContext, error: &Flow) -> Option<Flow> {
    // A rare path: through `bpf_skb_load_bytes`, whatever the head holds.
    let r = &Skb::new(ctx);
    let l3 = error.l4 + 8;
    // The quote ends where the error does: the quoted packet's own length
    // field names the original, of which only the start is quoted.
    let mut inner = if error.is_v4() {
        let mut inner = ipv4_header(r, l3)?;
        inner.end = error.end;
        inner
    } else {
        let mut inner = ipv6_header(r, l3)?;
        inner.end = error.end;
        extension_headers(r, &mut inner)?;
        inner
    };
    // A later fragment has no transport header to name a session by.
    if inner.fragment == Fragment::Later {
        return None;
    }
    let icmp = icmp_for(inner.family);
    match inner.proto {
        proto::TCP | proto::UDP => {
            inner.src_port = u16::from_be(load_in::<u16, _>(r, inner.end, inner.l4)?);
            inner.dst_port = u16::from_be(load_in::<u16, _>(r, inner.end, inner.l4 + 2)?);
        }
        p if p == icmp => {
            let inner_type = load_in::<u8, _>(r, inner.end, inner.l4)?;
            if is_echo(icmp, inner_type) {
                let id = u16::from_be(load_in::<u16, _>(r, inner.end, inner.l4 + 4)?);
                inner.src_port = id;
                inner.dst_port = id;
            }
        }
        _ => {}
    }
    Some(inner)
}
