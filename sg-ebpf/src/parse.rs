//! Frame parsing: Ethernet (one optional VLAN tag), IPv4 (options skipped by
//! IHL), IPv6 (fixed header), then TCP, UDP, ICMP and ICMPv6 headers.
//! Every read goes through `bpf_skb_load_bytes` (`TcContext::load`), which
//! checks bounds against the whole skb, so a truncated header is a failed
//! load and never an out-of-bounds read.

use aya_ebpf::programs::TcContext;
use sg_common::{FAMILY_V4, FAMILY_V6};

pub mod proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
}

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

const ICMP_ECHO_REQUEST: u8 = 8;
const ICMP_ECHO_REPLY: u8 = 0;
const ICMPV6_ECHO_REQUEST: u8 = 128;
const ICMPV6_ECHO_REPLY: u8 = 129;

/// The fields the decision needs. IPv4 addresses sit in the first four
/// bytes of the 16-byte address fields.
pub struct Flow {
    pub family: u8,
    pub proto: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// TCP/UDP ports; for ICMP echo both carry the identifier, so a request
    /// and its reply share one session key; 0 otherwise.
    pub src_port: u16,
    pub dst_port: u16,
    pub icmp_type: u8,
    pub icmp_code: u8,
}

impl Flow {
    #[inline(always)]
    pub fn is_v4(&self) -> bool {
        self.family == FAMILY_V4
    }

    /// The port rules match: the destination port of TCP and UDP, 0 for
    /// every protocol without ports (rules for those say `-1/-1`).
    #[inline(always)]
    pub fn rule_port(&self) -> u16 {
        match self.proto {
            proto::TCP | proto::UDP => self.dst_port,
            _ => 0,
        }
    }

    /// ICMP is tracked only for echo (the request opens, the reply
    /// follows); other ICMP is decided packet by packet.
    #[inline(always)]
    pub fn opens_session(&self) -> bool {
        match self.proto {
            proto::ICMP => self.icmp_type == ICMP_ECHO_REQUEST,
            proto::ICMPV6 => self.icmp_type == ICMPV6_ECHO_REQUEST,
            _ => true,
        }
    }
}

pub enum Parsed {
    NotIp,
    Malformed,
    Ip(Flow),
}

#[inline(always)]
fn load<T>(ctx: &TcContext, offset: usize) -> Option<T> {
    ctx.load::<T>(offset).ok()
}

#[inline(always)]
pub fn parse(ctx: &TcContext) -> Parsed {
    let Some(mut ethertype) = load::<u16>(ctx, 12).map(u16::from_be) else {
        return Parsed::NotIp;
    };
    let mut l3 = ETH_HLEN;
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        let Some(inner) = load::<u16>(ctx, 16).map(u16::from_be) else {
            return Parsed::NotIp;
        };
        ethertype = inner;
        l3 += 4;
    }
    let flow = match ethertype {
        ETH_P_IP => parse_v4(ctx, l3),
        ETH_P_IPV6 => parse_v6(ctx, l3),
        _ => return Parsed::NotIp,
    };
    match flow {
        Some(flow) => Parsed::Ip(flow),
        None => Parsed::Malformed,
    }
}

#[inline(always)]
fn parse_v4(ctx: &TcContext, l3: usize) -> Option<Flow> {
    let ver_ihl = load::<u8>(ctx, l3)?;
    let ihl = (ver_ihl & 0x0f) as usize * 4;
    if ver_ihl >> 4 != 4 || ihl < 20 {
        return None;
    }
    let total_len = u16::from_be(load::<u16>(ctx, l3 + 2)?) as usize;
    if total_len < ihl {
        return None;
    }
    let frag = u16::from_be(load::<u16>(ctx, l3 + 6)?);
    let proto = load::<u8>(ctx, l3 + 9)?;
    let src4 = load::<[u8; 4]>(ctx, l3 + 12)?;
    let dst4 = load::<[u8; 4]>(ctx, l3 + 16)?;
    // The options end inside the packet, or the header is truncated.
    load::<u8>(ctx, l3 + ihl - 1)?;
    let mut flow = Flow {
        family: FAMILY_V4,
        proto,
        src: [0; 16],
        dst: [0; 16],
        src_port: 0,
        dst_port: 0,
        icmp_type: 0,
        icmp_code: 0,
    };
    flow.src[..4].copy_from_slice(&src4);
    flow.dst[..4].copy_from_slice(&dst4);
    // A non-first fragment carries no transport header.
    if frag & 0x1fff != 0 {
        return Some(flow);
    }
    parse_l4(ctx, l3 + ihl, flow, proto::ICMP)
}

#[inline(always)]
fn parse_v6(ctx: &TcContext, l3: usize) -> Option<Flow> {
    let ver = load::<u8>(ctx, l3)?;
    if ver >> 4 != 6 {
        return None;
    }
    let next = load::<u8>(ctx, l3 + 6)?;
    let flow = Flow {
        family: FAMILY_V6,
        proto: next,
        src: load::<[u8; 16]>(ctx, l3 + 8)?,
        dst: load::<[u8; 16]>(ctx, l3 + 24)?,
        src_port: 0,
        dst_port: 0,
        icmp_type: 0,
        icmp_code: 0,
    };
    parse_l4(ctx, l3 + 40, flow, proto::ICMPV6)
}

#[inline(always)]
fn parse_l4(ctx: &TcContext, l4: usize, mut flow: Flow, icmp: u8) -> Option<Flow> {
    match flow.proto {
        proto::TCP | proto::UDP => {
            // The whole fixed header must be there: 20 bytes TCP, 8 UDP.
            let header = if flow.proto == proto::TCP { 20 } else { 8 };
            load::<u8>(ctx, l4 + header - 1)?;
            flow.src_port = u16::from_be(load::<u16>(ctx, l4)?);
            flow.dst_port = u16::from_be(load::<u16>(ctx, l4 + 2)?);
        }
        p if p == icmp => {
            let [icmp_type, icmp_code] = load::<[u8; 2]>(ctx, l4)?;
            // Type, code, checksum and the 4-byte rest of header.
            load::<u8>(ctx, l4 + 7)?;
            flow.icmp_type = icmp_type;
            flow.icmp_code = icmp_code;
            let echo = if icmp == proto::ICMP {
                icmp_type == ICMP_ECHO_REQUEST || icmp_type == ICMP_ECHO_REPLY
            } else {
                icmp_type == ICMPV6_ECHO_REQUEST || icmp_type == ICMPV6_ECHO_REPLY
            };
            if echo {
                let id = u16::from_be(load::<u16>(ctx, l4 + 4)?);
                flow.src_port = id;
                flow.dst_port = id;
            }
        }
        _ => {}
    }
    Some(flow)
}
