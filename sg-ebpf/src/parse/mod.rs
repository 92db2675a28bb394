//! Frame parsing into a [`Flow`]: the link header ([`ethernet`]: Ethernet
//! under at most two VLAN tags, or none on an L3 device), IPv4 with options skipped by IHL ([`ipv4`]), IPv6 with
//! its extension headers walked, bounded ([`ipv6`]), then TCP, UDP, ICMP
//! and ICMPv6 headers ([`l4`]); for ICMP errors also the quoted packet's
//! addresses and ports ([`mod@quoted`]). Every read is bounds-checked: a
//! truncated header is a failed read, never an out-of-bounds one. The
//! parser reads the skb's linear head directly, and goes through
//! `bpf_skb_load_bytes` only when the head does not hold the headers
//! ([`reader`]).
//!
//! ARP ([`mod@arp`]) and neighbour discovery ([`nd`]) are read further only
//! by anti-spoofing, on what hypervisor-mode instances send, through
//! `bpf_skb_load_bytes`.

pub mod arp;
pub mod ethernet;
mod ipv4;
mod ipv6;
mod l4;
pub mod nd;
mod quoted;
pub mod reader;

use aya_ebpf::programs::TcContext;
use sg_common::{FAMILY_V4, IFACE_L3};

use self::reader::{Linear, Reader, Skb};
pub use self::{ethernet::ETH_P_ARP, quoted::quoted};

/// Protocol numbers: the one table, shared with the daemon.
pub use sg_common::proto;

#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Fragment {
    /// A whole packet.
    No = 0,
    /// The first fragment (offset 0, more to come): carries the ports.
    First,
    /// A later fragment: no transport header.
    Later,
}

/// The fields the decision needs. IPv4 addresses sit in the first four
/// bytes of the 16-byte address fields. `repr(C)` and 8-byte aligned, the
/// addresses first: zeroing or copying them is then two 8-byte stores
/// each, not a call to a byte-wise `memset`.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub struct Flow {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// Offset of the transport header (ICMP errors: where the quote starts
    /// is 8 bytes further; ARP: of the ARP header).
    pub l4: usize,
    /// Where the IP packet ends, by its length field: what follows in the
    /// frame (link padding, or bytes an attacker appends) is not part of
    /// the packet the receiving stack sees, and is never read.
    pub end: usize,
    /// IPv4 identification or IPv6 fragment identification.
    pub frag_id: u32,
    /// TCP/UDP ports; for ICMP echo both carry the identifier, so a request
    /// and its reply share one session key; 0 otherwise.
    pub src_port: u16,
    pub dst_port: u16,
    pub family: u8,
    pub proto: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// TCP flags (`proto::TCP_*`); 0 for other protocols.
    pub tcp_flags: u8,
    pub fragment: Fragment,
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
        tcp_flags: u8,
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
            proto::ICMP => self.icmp_type() == l4::ICMP_ECHO_REQUEST,
            proto::ICMPV6 => self.icmp_type() == l4::ICMPV6_ECHO_REQUEST,
            _ => true,
        }
    }

    /// ICMP passes through an echo session only as an echo request in the
    /// direction that opened it or an echo reply in the other: no other
    /// ICMP type, nor a request the other way, borrows the session (its
    /// key, the identifier, says nothing of the type).
    #[inline(always)]
    pub fn fits_icmp_session(&self, from_opener: bool) -> bool {
        let (request, reply) = match self.proto() {
            proto::ICMP => (l4::ICMP_ECHO_REQUEST, l4::ICMP_ECHO_REPLY),
            proto::ICMPV6 => (l4::ICMPV6_ECHO_REQUEST, l4::ICMPV6_ECHO_REPLY),
            _ => return true,
        };
        if self.fragment() == Fragment::Later {
            return false;
        }
        let t = self.icmp_type();
        if from_opener {
            t == request
        } else {
            t == reply
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

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// Not IP: the ethertype (0 if the frame is too short to say).
    NotIp(u16),
    /// ARP on an Ethernet link: not IP, but anti-spoofing reads it; the
    /// flow holds only where its header starts (`l4`).
    Arp,
    Malformed,
    Ip,
}

/// A read through `bpf_skb_load_bytes` (anti-spoofing's ARP and
/// neighbour discovery reads).
#[inline(always)]
fn load<T>(ctx: &TcContext, offset: usize) -> Option<T> {
    ctx.load::<T>(offset).ok()
}

/// A read from inside the IP packet that ends at `end`; `None` past it.
#[inline(always)]
fn load_in<T: Copy, R: Reader>(r: &R, end: usize, offset: usize) -> Option<T> {
    if offset + core::mem::size_of::<T>() > end {
        return None;
    }
    r.load(offset)
}

/// Parses the frame into `out`; `iface_flags` say whether the interface
/// has a link header (`IFACE_L3`). Over the linear head first; again
/// through `bpf_skb_load_bytes` when that failed and the head does not
/// hold the whole packet (see [`reader`]), so the outcome is the same
/// whichever way the bytes are read.
///
/// More VLAN tags than the parser walks make the frame malformed, never
/// "not IP": the kernel strips priority tags (VLAN 0) and would hand an IP
/// packet behind them to the stack.
#[inline(always)]
pub fn parse(ctx: &TcContext, out: &mut Flow, iface_flags: u32) -> Parsed {
    pull_headers(ctx);
    let kind = parse_linear(ctx, out, iface_flags);
    if matches!(kind, Parsed::Malformed | Parsed::NotIp(0)) && !Linear::whole(ctx) {
        return parse_skb(ctx, out, iface_flags);
    }
    kind
}

/// How much of a packet is pulled into the skb's linear head when the
/// head holds less: the link, IP and transport headers (and an ICMP
/// error's quote) of nearly every packet.
const PULL_BYTES: u32 = 128;

/// Makes the first [`PULL_BYTES`] of the packet readable directly. A
/// packet whose headers are in paged fragments (AF_PACKET's zero-copy
/// transmit, GRO, some drivers) would otherwise fail the direct parse and
/// be parsed a second time through `bpf_skb_load_bytes`, a helper call a
/// field. The stack pulls the same headers into the head right after
/// (`pskb_may_pull`), so the copy moves, it is not added. A pull that
/// fails leaves the packet as it was (the parse then falls back).
#[inline(never)]
fn pull_headers(ctx: &TcContext) {
    let want = ctx.len().min(PULL_BYTES);
    if ctx.data_end() - ctx.data() < want as usize {
        let _ = ctx.pull_data(want);
    }
}

/// The parser over the linear head. A separate BPF function writing into
/// map memory: the verifier then carries no per-protocol knowledge from
/// the parser into the decision, which keeps its state count small.
#[inline(never)]
fn parse_linear(ctx: &TcContext, out: &mut Flow, iface_flags: u32) -> Parsed {
    parse_with(ctx, &Linear::new(ctx), out, iface_flags)
}

/// The parser through `bpf_skb_load_bytes`.
#[inline(never)]
fn parse_skb(ctx: &TcContext, out: &mut Flow, iface_flags: u32) -> Parsed {
    parse_with(ctx, &Skb::new(ctx), out, iface_flags)
}

#[inline(always)]
fn parse_with<R: Reader>(ctx: &TcContext, r: &R, out: &mut Flow, iface_flags: u32) -> Parsed {
    let (ethertype, l3) = if iface_flags & IFACE_L3 != 0 {
        ethernet::l3_protocol(ctx)
    } else {
        match ethernet::ethertype(r) {
            Some(header) => header,
            None => return Parsed::NotIp(0),
        }
    };
    let flow = match ethertype {
        ethernet::ETH_P_IP => ipv4::parse_v4(r, l3),
        ethernet::ETH_P_IPV6 => ipv6::parse_v6(r, l3),
        t if ethernet::is_tag(t) => None,
        ethernet::ETH_P_ARP if iface_flags & IFACE_L3 == 0 => {
            clear(out);
            out.family = FAMILY_V4;
            out.l4 = l3;
            return Parsed::Arp;
        }
        _ => return Parsed::NotIp(ethertype),
    };
    match flow {
        Some(flow) => {
            *out = flow;
            Parsed::Ip
        }
        None => Parsed::Malformed,
    }
}

/// Zeroes `out` word by word (`Fragment::No` is 0): the compiler would
/// otherwise call a byte-wise `memset` for it.
#[inline(always)]
pub fn clear(out: &mut Flow) {
    const WORDS: usize = core::mem::size_of::<Flow>() / 8;
    let words = out as *mut Flow as *mut u64;
    for i in 0..WORDS {
        // SAFETY: `Flow` is 8-byte aligned plain data, `WORDS` words long.
        unsafe { core::ptr::write_volatile(words.add(i), 0) };
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
        tcp_flags: 0,
        fragment: Fragment::No,
        frag_id: 0,
        l4: 0,
        end: 0,
    }
}
