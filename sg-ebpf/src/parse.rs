//! Frame parsing: Ethernet (one optional VLAN tag), IPv4 (options skipped by
//! IHL), IPv6 (extension headers walked, bounded), then TCP, UDP, ICMP and
//! ICMPv6 headers; for ICMP errors also the quoted packet's addresses and
//! ports. Every read goes through `bpf_skb_load_bytes` (`TcContext::load`),
//! which checks bounds against the whole skb, so a truncated header is a
//! failed load and never an out-of-bounds read.

use aya_ebpf::programs::TcContext;
use sg_common::{FAMILY_V4, FAMILY_V6};

pub mod proto {
    pub const HOPOPTS: u8 = 0;
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const AH: u8 = 51;
    pub const ICMPV6: u8 = 58;
    pub const DSTOPTS: u8 = 60;
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

/// IPv6 extension headers walked before giving up (the packet is then
/// dropped as malformed).
const MAX_EXT_HEADERS: usize = 8;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Fragment {
    /// A whole packet.
    No,
    /// The first fragment (offset 0, more to come): carries the ports.
    First,
    /// A later fragment: no transport header.
    Later,
}

/// The fields the decision needs. IPv4 addresses sit in the first four
/// bytes of the 16-byte address fields.
#[derive(Clone, Copy)]
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
    pub fragment: Fragment,
    /// IPv4 identification or IPv6 fragment identification.
    pub frag_id: u32,
    /// Offset of the transport header (ICMP errors: where the quote starts
    /// is 8 bytes further).
    pub l4: usize,
}

/// Field reads for the decision. Each is a fresh load (volatile), so the
/// verifier does not carry what one check learnt about a field into the
/// next stage: the paths of different protocols then merge again, and the
/// program stays far below the verifier's complexity limit.
macro_rules! fresh_getters {
    ($($name:ident: $ty:ty),* $(,)?) => {
        $(
            #[inline(always)]
            pub fn $name(&self) -> $ty {
                // SAFETY: a plain read of our own initialised field.
                unsafe { core::ptr::read_volatile(&self.$name) }
            }
        )*
    };
}

impl Flow {
    fresh_getters!(
        family: u8,
        proto: u8,
        src_port: u16,
        dst_port: u16,
        icmp_type: u8,
        icmp_code: u8,
        fragment: Fragment,
    );

    #[inline(always)]
    pub fn is_v4(&self) -> bool {
        self.family() == FAMILY_V4
    }

    #[inline(always)]
    fn has_ports(&self) -> bool {
        matches!(self.proto(), proto::TCP | proto::UDP)
    }

    /// The destination port rules match: TCP and UDP only, 0 for every
    /// other protocol (rules for those say `-1/-1`).
    #[inline(always)]
    pub fn rule_dst_port(&self) -> u16 {
        if self.has_ports() { self.dst_port() } else { 0 }
    }

    /// The source port 5-tuple rules match (0 without ports).
    #[inline(always)]
    pub fn rule_src_port(&self) -> u16 {
        if self.has_ports() { self.src_port() } else { 0 }
    }

    /// Accepted packets open sessions, except ICMP other than an echo
    /// request (decided packet by packet, or as related traffic) and later
    /// fragments (no ports to key a session on).
    #[inline(always)]
    pub fn opens_session(&self) -> bool {
        if self.fragment() == Fragment::Later {
            return false;
        }
        match self.proto() {
            proto::ICMP => self.icmp_type() == ICMP_ECHO_REQUEST,
            proto::ICMPV6 => self.icmp_type() == ICMPV6_ECHO_REQUEST,
            _ => true,
        }
    }

    /// ICMP errors that quote the packet they are about (SPEC §3.5).
    #[inline(always)]
    pub fn is_icmp_error(&self) -> bool {
        match self.proto() {
            // Destination unreachable, time exceeded, parameter problem.
            proto::ICMP => self.is_v4() && matches!(self.icmp_type(), 3 | 11 | 12),
            // Destination unreachable, packet too big, time exceeded,
            // parameter problem.
            proto::ICMPV6 => !self.is_v4() && matches!(self.icmp_type(), 1..=4),
            _ => false,
        }
    }
}

pub enum Parsed {
    NotIp,
    Malformed,
    Ip,
}

#[inline(always)]
fn load<T>(ctx: &TcContext, offset: usize) -> Option<T> {
    ctx.load::<T>(offset).ok()
}

/// Parses the frame into `out`. A separate BPF function writing into map
/// memory: the verifier then carries no per-protocol knowledge from the
/// parser into the decision, which keeps its state count small.
#[inline(never)]
pub fn parse(ctx: &TcContext, out: &mut Flow) -> Parsed {
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
        Some(flow) => {
            *out = flow;
            Parsed::Ip
        }
        None => Parsed::Malformed,
    }
}

/// A flow with only its family and protocol set.
#[inline(always)]
pub fn empty_flow(family: u8, proto: u8) -> Flow {
    Flow {
        family,
        proto,
        src: [0; 16],
        dst: [0; 16],
        src_port: 0,
        dst_port: 0,
        icmp_type: 0,
        icmp_code: 0,
        fragment: Fragment::No,
        frag_id: 0,
        l4: 0,
    }
}

/// The IPv4 header at `l3`: the flow without its transport fields.
#[inline(always)]
fn ipv4_header(ctx: &TcContext, l3: usize) -> Option<Flow> {
    let ver_ihl = load::<u8>(ctx, l3)?;
    let ihl = (ver_ihl & 0x0f) as usize * 4;
    if ver_ihl >> 4 != 4 || ihl < 20 {
        return None;
    }
    let total_len = u16::from_be(load::<u16>(ctx, l3 + 2)?) as usize;
    if total_len < ihl {
        return None;
    }
    let id = u16::from_be(load::<u16>(ctx, l3 + 4)?);
    let frag = u16::from_be(load::<u16>(ctx, l3 + 6)?);
    let mut flow = empty_flow(FAMILY_V4, load::<u8>(ctx, l3 + 9)?);
    flow.src[..4].copy_from_slice(&load::<[u8; 4]>(ctx, l3 + 12)?);
    flow.dst[..4].copy_from_slice(&load::<[u8; 4]>(ctx, l3 + 16)?);
    flow.frag_id = id as u32;
    flow.fragment = if frag & 0x1fff != 0 {
        Fragment::Later
    } else if frag & 0x2000 != 0 {
        Fragment::First
    } else {
        Fragment::No
    };
    flow.l4 = l3 + ihl;
    Some(flow)
}

#[inline(always)]
fn parse_v4(ctx: &TcContext, l3: usize) -> Option<Flow> {
    let flow = ipv4_header(ctx, l3)?;
    // The options end inside the packet, or the header is truncated.
    load::<u8>(ctx, flow.l4 - 1)?;
    if flow.fragment == Fragment::Later {
        return Some(flow);
    }
    parse_l4(ctx, flow)
}

#[inline(always)]
fn parse_v6(ctx: &TcContext, l3: usize) -> Option<Flow> {
    let ver = load::<u8>(ctx, l3)?;
    if ver >> 4 != 6 {
        return None;
    }
    let mut flow = empty_flow(FAMILY_V6, load::<u8>(ctx, l3 + 6)?);
    flow.src = load::<[u8; 16]>(ctx, l3 + 8)?;
    flow.dst = load::<[u8; 16]>(ctx, l3 + 24)?;
    let mut off = l3 + 40;
    for _ in 0..MAX_EXT_HEADERS {
        match flow.proto {
            proto::HOPOPTS | proto::ROUTING | proto::DSTOPTS => {
                let [next, len] = load::<[u8; 2]>(ctx, off)?;
                flow.proto = next;
                off += (len as usize + 1) * 8;
            }
            proto::AH => {
                let [next, len] = load::<[u8; 2]>(ctx, off)?;
                flow.proto = next;
                off += (len as usize + 2) * 4;
            }
            proto::FRAGMENT => {
                let next = load::<u8>(ctx, off)?;
                let offset_flags = u16::from_be(load::<u16>(ctx, off + 2)?);
                flow.frag_id = u32::from_be(load::<u32>(ctx, off + 4)?);
                flow.proto = next;
                off += 8;
                if offset_flags & 0xfff8 != 0 {
                    flow.fragment = Fragment::Later;
                    flow.l4 = off;
                    return Some(flow);
                }
                if offset_flags & 1 != 0 {
                    flow.fragment = Fragment::First;
                }
            }
            _ => {
                flow.l4 = off;
                return parse_l4(ctx, flow);
            }
        }
    }
    // Still inside extension headers: too many to walk.
    None
}

#[inline(always)]
fn is_echo(icmp: u8, icmp_type: u8) -> bool {
    if icmp == proto::ICMP {
        icmp_type == ICMP_ECHO_REQUEST || icmp_type == ICMP_ECHO_REPLY
    } else {
        icmp_type == ICMPV6_ECHO_REQUEST || icmp_type == ICMPV6_ECHO_REPLY
    }
}

#[inline(always)]
fn icmp_for(family: u8) -> u8 {
    if family == FAMILY_V4 {
        proto::ICMP
    } else {
        proto::ICMPV6
    }
}

#[inline(always)]
fn parse_l4(ctx: &TcContext, mut flow: Flow) -> Option<Flow> {
    let l4 = flow.l4;
    let icmp = icmp_for(flow.family);
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
            if is_echo(icmp, icmp_type) {
                let id = u16::from_be(load::<u16>(ctx, l4 + 4)?);
                flow.src_port = id;
                flow.dst_port = id;
            }
        }
        _ => {}
    }
    Some(flow)
}

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
    let l3 = error.l4 + 8;
    let mut inner = if error.is_v4() {
        let inner = ipv4_header(ctx, l3)?;
        if inner.fragment == Fragment::Later {
            return None;
        }
        inner
    } else {
        let ver = load::<u8>(ctx, l3)?;
        if ver >> 4 != 6 {
            return None;
        }
        let mut inner = empty_flow(FAMILY_V6, load::<u8>(ctx, l3 + 6)?);
        inner.src = load::<[u8; 16]>(ctx, l3 + 8)?;
        inner.dst = load::<[u8; 16]>(ctx, l3 + 24)?;
        inner.l4 = l3 + 40;
        inner
    };
    let icmp = icmp_for(inner.family);
    match inner.proto {
        proto::TCP | proto::UDP => {
            inner.src_port = u16::from_be(load::<u16>(ctx, inner.l4)?);
            inner.dst_port = u16::from_be(load::<u16>(ctx, inner.l4 + 2)?);
        }
        p if p == icmp => {
            let inner_type = load::<u8>(ctx, inner.l4)?;
            if is_echo(icmp, inner_type) {
                let id = u16::from_be(load::<u16>(ctx, inner.l4 + 4)?);
                inner.src_port = id;
                inner.dst_port = id;
            }
        }
        _ => {}
    }
    Some(inner)
}
