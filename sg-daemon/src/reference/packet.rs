//! The packet the reference decides: an IP packet as one interface sees
//! it, with what the decision looks at.

use super::*;

/// A parsed packet, as one interface sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    /// TCP and UDP ports. For ICMP echo requests and replies both carry the
    /// identifier (a reply belongs to its request's session); 0 otherwise.
    pub src_port: u16,
    pub dst_port: u16,
    /// ICMP or ICMPv6 type and code.
    pub icmp: Option<(u8, u8)>,
    /// TCP flags (`TCP_SYN`, `TCP_ACK`, `TCP_FIN`, `TCP_RST`); 0 otherwise.
    pub tcp_flags: u8,
    pub fragment: Fragment,
    /// The packet an ICMP error quotes, when the quote names one.
    pub quoted: Option<Box<Packet>>,
    /// The target address of an ICMPv6 neighbour solicitation or
    /// advertisement: the address it asks about or claims.
    pub nd_target: Option<IpAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fragment {
    No,
    /// Offset 0 with more to come; `id` is the datagram's identification.
    First {
        id: u32,
    },
    /// A later fragment: no transport header, so no ports.
    Later {
        id: u32,
    },
}

impl Packet {
    /// A whole, unfragmented packet with these addresses and ports, as a
    /// probe asks about one: a TCP packet is a connection attempt (SYN),
    /// an ICMP one carries no type until `icmp` is set.
    pub fn probe(src: IpAddr, dst: IpAddr, proto: u8, src_port: u16, dst_port: u16) -> Packet {
        Packet {
            src,
            dst,
            proto,
            src_port,
            dst_port,
            icmp: None,
            tcp_flags: if proto == TCP { TCP_SYN } else { 0 },
            fragment: Fragment::No,
            quoted: None,
            nd_target: None,
        }
    }

    /// Later fragments carry no transport header, hence no ports.
    pub(super) fn has_ports(&self) -> bool {
        (self.proto == TCP || self.proto == UDP) && !matches!(self.fragment, Fragment::Later { .. })
    }

    /// The ports rules look at: 0 without TCP/UDP (`-1/-1` rules).
    pub(super) fn rule_ports(&self) -> (u16, u16) {
        if self.has_ports() {
            (self.src_port, self.dst_port)
        } else {
            (0, 0)
        }
    }

    pub(super) fn icmp_type(&self) -> Option<u8> {
        self.icmp.map(|(t, _)| t)
    }

    pub(super) fn is_icmp_error(&self) -> bool {
        match (self.proto, self.icmp_type()) {
            (ICMP, Some(t)) => self.src.is_ipv4() && matches!(t, 3 | 11 | 12),
            (ICMPV6, Some(t)) => self.src.is_ipv6() && (1..=4).contains(&t),
            _ => false,
        }
    }

    /// SPEC §3.5: accepted packets are tracked, except ICMP other than an
    /// echo request, and later fragments (no ports to track them by).
    pub(super) fn opens_session(&self) -> bool {
        if matches!(self.fragment, Fragment::Later { .. }) {
            return false;
        }
        match self.proto {
            ICMP => self.icmp_type() == Some(8),
            ICMPV6 => self.icmp_type() == Some(128),
            _ => true,
        }
    }

    /// ICMP passes through an echo session only as an echo request in the
    /// direction that opened it, or an echo reply in the other.
    pub(super) fn fits_icmp_session(&self, from_opener: bool) -> bool {
        let (request, reply) = match self.proto {
            ICMP => (8, 0),
            ICMPV6 => (128, 129),
            _ => return true,
        };
        if matches!(self.fragment, Fragment::Later { .. }) {
            return false;
        }
        self.icmp_type() == Some(if from_opener { request } else { reply })
    }

    pub(super) fn has_flag(&self, flag: u8) -> bool {
        self.proto == TCP && self.tcp_flags & flag != 0
    }

    /// A TCP connection attempt: SYN without ACK.
    pub(super) fn is_connection_attempt(&self) -> bool {
        self.has_flag(TCP_SYN) && !self.has_flag(TCP_ACK)
    }
}
