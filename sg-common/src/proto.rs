//! The one protocol table: IANA numbers the kernel and the daemon test for,
//! and the names the file, the API and `sgctl` accept and show for them.

pub const ICMP: u8 = 1;
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const GRE: u8 = 47;
pub const ICMPV6: u8 = 58;

/// TCP header flags (byte 13 of the header) that sessions follow.
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// IPv6 extension headers the kernel walks (next-header values).
pub const HOPOPTS: u8 = 0;
pub const ROUTING: u8 = 43;
pub const FRAGMENT: u8 = 44;
pub const AH: u8 = 51;
pub const DSTOPTS: u8 = 60;

/// The protocols known by name (SPEC §2 `ip_protocol`), lower case.
/// `all` is not a protocol of a packet; the rule model adds it.
pub const NAMED: [(&str, u8); 5] = [
    ("tcp", TCP),
    ("udp", UDP),
    ("icmp", ICMP),
    ("icmpv6", ICMPV6),
    ("gre", GRE),
];

/// The number of a protocol given by name (any letter case) or as a
/// decimal number 0..=255.
pub fn number(name_or_number: &str) -> Option<u8> {
    NAMED
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(name_or_number))
        .map(|&(_, n)| n)
        .or_else(|| name_or_number.parse().ok())
}

/// The name of a protocol number, if it has one.
pub fn name(number: u8) -> Option<&'static str> {
    NAMED
        .iter()
        .find(|&&(_, n)| n == number)
        .map(|&(name, _)| name)
}

/// TCP and UDP carry ports that rules match.
#[inline(always)]
pub const fn has_ports(number: u8) -> bool {
    number == TCP || number == UDP
}
