//! Hand-made Ethernet frames for `BPF_PROG_TEST_RUN`: well-formed ones and
//! deliberately broken ones (truncated headers, bad IHL). Checksums are left
//! zero, as the classifier never reads them, except where a real stack
//! receives the packet ([`udp6_checksum`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_ARP: u16 = 0x0806;

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
pub const ICMPV6: u8 = 58;

/// An Ethernet header followed by `payload`.
pub fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]); // destination MAC
    f.extend_from_slice(&SOURCE_MAC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An Ethernet frame with one 802.1Q tag (VLAN 7) before `ethertype`.
pub fn vlan(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    tagged(&[ETH_P_8021Q], 7, ethertype, payload)
}

/// 802.1Q, the VLAN tag (also the inner tag of QinQ).
pub const ETH_P_8021Q: u16 = 0x8100;
/// 802.1ad, the service tag (the outer tag of QinQ).
pub const ETH_P_8021AD: u16 = 0x88a8;

/// An Ethernet frame with a tag of VLAN `vid` of each type in `tags`,
/// outermost first, before `ethertype`. VLAN 0 is a priority tag, which
/// the kernel strips and then handles the frame as untagged.
pub fn tagged(tags: &[u16], vid: u16, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let Some((outer, inner)) = tags.split_first() else {
        return ethernet(ethertype, payload);
    };
    let mut rest = Vec::with_capacity(4 * tags.len() + payload.len());
    for tag in inner.iter().chain([&ethertype]) {
        rest.extend_from_slice(&vid.to_be_bytes());
        rest.extend_from_slice(&tag.to_be_bytes());
    }
    rest.extend_from_slice(payload);
    ethernet(*outer, &rest)
}

/// An IPv4 packet; `options` (a multiple of 4 bytes, at most 40) go
/// between the fixed header and the payload, and IHL counts them.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
    assert!(options.len().is_multiple_of(4) && options.len() <= 40);
    let ihl = 5 + options.len() / 4;
    let total = ihl * 4 + payload.len();
    let mut p = vec![
        0x40 | ihl as u8,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1, // identification
        0x40,
        0, // don't fragment, offset 0
        64,
        proto,
        0,
        0, // checksum
    ];
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(options);
    p.extend_from_slice(payload);
    p
}

/// An IPv4 packet with a chosen identification and fragment field (flags
/// in the top three bits, offset in 8-byte units below).
pub fn ipv4_fragment(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    id: u16,
    frag_field: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut p = ipv4(src, dst, proto, &[], payload);
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[6..8].copy_from_slice(&frag_field.to_be_bytes());
    p
}

/// IPv4 "more fragments" flag, for `ipv4_fragment`.
pub const IPV4_MF: u16 = 0x2000;

/// An IPv6 fragment header (8 bytes) in front of `payload`: `offset` in
/// 8-byte units, `more` for the M flag.
pub fn ipv6_fragment_header(next: u8, id: u32, offset: u16, more: bool, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![next, 0];
    h.extend_from_slice(&((offset << 3) | more as u16).to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// An IPv6 hop-by-hop options header (8 bytes, PadN) in front of `payload`.
pub fn ipv6_hop_by_hop(next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![next, 0, 1, 4, 0, 0, 0, 0];
    h.extend_from_slice(payload);
    h
}

/// An IPv6 destination-options header (8 bytes, PadN) in front of
/// `payload`: the layout of hop-by-hop, told apart by the header before it
/// (next header 60 instead of 0).
pub fn ipv6_dest_options(next: u8, payload: &[u8]) -> Vec<u8> {
    ipv6_hop_by_hop(next, payload)
}

/// IPv6 next-header values of the extension headers.
pub const IPV6_HOP_BY_HOP: u8 = 0;
pub const IPV6_FRAGMENT: u8 = 44;
pub const IPV6_DEST_OPTIONS: u8 = 60;

/// An IPv6 packet with the fixed header only.
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u16;
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&len.to_be_bytes());
    p.push(next);
    p.push(64);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    p
}

/// The UDP checksum of `udp` (header with a zero checksum, and payload)
/// between two IPv6 addresses: for datagrams a real stack must accept.
pub fn udp6_checksum(src: Ipv6Addr, dst: Ipv6Addr, udp: &[u8]) -> u16 {
    let mut pseudo = Vec::with_capacity(40 + udp.len() + 1);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&(udp.len() as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, UDP]);
    pseudo.extend_from_slice(udp);
    if pseudo.len() % 2 == 1 {
        pseudo.push(0);
    }
    let mut sum: u32 = pseudo
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    match !(sum as u16) {
        // Zero means "no checksum"; it is sent as all ones.
        0 => 0xffff,
        sum => sum,
    }
}

/// TCP header flags, for [`tcp`].
pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const ACK: u8 = 0x10;

/// A 20-byte TCP header with SYN set.
pub fn tcp_syn(sport: u16, dport: u16) -> Vec<u8> {
    tcp(sport, dport, SYN)
}

/// A 20-byte TCP header with `flags` (`SYN | ACK`, ...).
pub fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut h = Vec::with_capacity(20);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]); // seq, ack
    h.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]); // offset 5
    h
}

/// A UDP header and payload.
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = (8 + payload.len()) as u16;
    let mut h = Vec::with_capacity(len as usize);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(payload);
    h
}

/// An ICMP or ICMPv6 message: type, code, checksum, 4 bytes of "rest of
/// header" (identifier and sequence for echo), then `payload`.
pub fn icmp(kind: u8, code: u8, rest: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut h = vec![kind, code, 0, 0];
    h.extend_from_slice(&rest);
    h.extend_from_slice(payload);
    h
}

/// A whole frame for a transport payload between two addresses of the
/// same family.
pub fn ip_frame(src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8]) -> Vec<u8> {
    let ethertype = if src.is_ipv4() { ETH_P_IP } else { ETH_P_IPV6 };
    ethernet(ethertype, &ip_packet(src, dst, proto, l4))
}

/// An IP packet (no link header) for a transport payload between two
/// addresses of the same family.
pub fn ip_packet(src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8]) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ipv4(s, d, proto, &[], l4),
        (IpAddr::V6(s), IpAddr::V6(d)) => ipv6(s, d, proto, l4),
        _ => panic!("mixed address families: {src} -> {dst}"),
    }
}

/// The source MAC of [`ethernet`] frames.
pub const SOURCE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// An ARP request frame (not IP) from [`SOURCE_MAC`].
pub fn arp_request(sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    ethernet(
        ETH_P_ARP,
        &arp(ARP_REQUEST, SOURCE_MAC, sender, [0; 6], target),
    )
}

pub const ARP_REQUEST: u16 = 1;
pub const ARP_REPLY: u16 = 2;

/// An ARP packet for IPv4 over Ethernet (no link header): operation `op`,
/// sender MAC and address, target MAC and address. A gratuitous one has
/// the same sender and target address.
pub fn arp(op: u16, sha: [u8; 6], spa: Ipv4Addr, tha: [u8; 6], tpa: Ipv4Addr) -> Vec<u8> {
    let mut p = vec![0, 1, 0x08, 0, 6, 4];
    p.extend_from_slice(&op.to_be_bytes());
    p.extend_from_slice(&sha);
    p.extend_from_slice(&spa.octets());
    p.extend_from_slice(&tha);
    p.extend_from_slice(&tpa.octets());
    p
}

pub const ND_ROUTER_SOLICITATION: u8 = 133;
pub const ND_ROUTER_ADVERTISEMENT: u8 = 134;
pub const ND_NEIGHBOR_SOLICITATION: u8 = 135;
pub const ND_NEIGHBOR_ADVERTISEMENT: u8 = 136;
pub const ND_REDIRECT: u8 = 137;
/// Neighbour discovery options: source and target link-layer address.
pub const ND_OPT_SOURCE_MAC: u8 = 1;
pub const ND_OPT_TARGET_MAC: u8 = 2;

/// An ICMPv6 neighbour advertisement (no IP header) claiming `target`,
/// with the override flag and, when given, a target link-layer address
/// option.
pub fn neighbor_advertisement(target: Ipv6Addr, mac: Option<[u8; 6]>) -> Vec<u8> {
    let options: Vec<(u8, [u8; 6])> = mac.map(|m| (ND_OPT_TARGET_MAC, m)).into_iter().collect();
    neighbor_message(ND_NEIGHBOR_ADVERTISEMENT, [0x20, 0, 0, 0], target, &options)
}

/// An ICMPv6 neighbour solicitation or advertisement (no IP header):
/// `kind`, the 4 bytes of flags, `target`, then link-layer address
/// options (kind, MAC).
pub fn neighbor_message(
    kind: u8,
    flags: [u8; 4],
    target: Ipv6Addr,
    options: &[(u8, [u8; 6])],
) -> Vec<u8> {
    let mut body = target.octets().to_vec();
    for (option, mac) in options {
        body.extend_from_slice(&[*option, 1]);
        body.extend_from_slice(mac);
    }
    icmp(kind, 0, flags, &body)
}
