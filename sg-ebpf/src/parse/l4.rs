//! Transport headers: TCP and UDP ports, TCP flags, ICMP and ICMPv6 type
//! and code, and the identifier of an ICMP echo, which stands in for both
//! ports.

use sg_common::FAMILY_V4;

use super::{Flow, load_in, proto, reader::Reader};

pub const ICMP_ECHO_REQUEST: u8 = 8;
pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMPV6_ECHO_REQUEST: u8 = 128;
pub const ICMPV6_ECHO_REPLY: u8 = 129;

#[inline(always)]
pub fn is_echo(icmp: u8, icmp_type: u8) -> bool {
    if icmp == proto::ICMP {
        icmp_type == ICMP_ECHO_REQUEST || icmp_type == ICMP_ECHO_REPLY
    } else {
        icmp_type == ICMPV6_ECHO_REQUEST || icmp_type == ICMPV6_ECHO_REPLY
    }
}

/// The ICMP protocol of an address family (ICMP or ICMPv6).
#[inline(always)]
pub fn icmp_for(family: u8) -> u8 {
    if family == FAMILY_V4 {
        proto::ICMP
    } else {
        proto::ICMPV6
    }
}

/// The transport header at `flow.l4`, into `flow`.
#[inline(always)]
pub fn parse_l4<R: Reader>(r: &R, mut flow: Flow) -> Option<Flow> {
    let l4 = flow.l4;
    let icmp = icmp_for(flow.family);
    match flow.proto {
        proto::TCP | proto::UDP => {
            // The whole fixed header must be there: 20 bytes TCP, 8 UDP.
            let header = if flow.proto == proto::TCP { 20 } else { 8 };
            load_in::<u8, _>(r, flow.end, l4 + header - 1)?;
            flow.src_port = u16::from_be(r.load::<u16>(l4)?);
            flow.dst_port = u16::from_be(r.load::<u16>(l4 + 2)?);
            if flow.proto == proto::TCP {
                flow.tcp_flags = r.load::<u8>(l4 + 13)?;
            }
        }
        p if p == icmp => {
            let [icmp_type, icmp_code] = r.load::<[u8; 2]>(l4)?;
            // Type, code, checksum and the 4-byte rest of header.
            load_in::<u8, _>(r, flow.end, l4 + 7)?;
            flow.icmp_type = icmp_type;
            flow.icmp_code = icmp_code;
            if is_echo(icmp, icmp_type) {
                let id = u16::from_be(r.load::<u16>(l4 + 4)?);
                flow.src_port = id;
                flow.dst_port = id;
            }
        }
        _ => {}
    }
    Some(flow)
}
