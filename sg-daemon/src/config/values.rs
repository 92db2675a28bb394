//! The file's value syntaxes: addresses and CIDRs, port ranges, protocols,
//! MAC addresses.

use std::net::IpAddr;

use ipnet::IpNet;

use super::schema::ProtocolValue;
use crate::model::{PortRange, Protocol};

/// An address or CIDR, normalised to its network (`10.0.0.5/8` is
/// `10.0.0.0/8`, `2408:180:0000::1` is `2408:180::1/128`).
pub fn parse_cidr(s: &str) -> Option<IpNet> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        return Some(net.trunc());
    }
    s.parse::<IpAddr>().ok().map(IpNet::from)
}

/// A MAC address: six hexadecimal bytes separated by colons
/// (`02:00:00:00:00:07`, either case).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.trim().split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// `"start/end"` with 1 <= start <= end <= 65535.
pub fn parse_port_range(s: &str) -> Option<PortRange> {
    let (a, b) = s.trim().split_once('/')?;
    let start: u16 = a.trim().parse().ok()?;
    let end: u16 = b.trim().parse().ok()?;
    (start >= 1 && start <= end).then_some(PortRange { start, end })
}

/// `ip_protocol`: a name of the protocol table, `all` (or `-1`), or a
/// number 0..=255.
pub fn parse_protocol(p: &ProtocolValue) -> Option<Protocol> {
    match p {
        ProtocolValue::Number(n) => u8::try_from(*n).ok().map(Protocol::Number),
        ProtocolValue::Name(name) if name.eq_ignore_ascii_case("all") || name == "-1" => {
            Some(Protocol::All)
        }
        ProtocolValue::Name(name) => sg_common::proto::number(name).map(Protocol::Number),
    }
}

/// What `ip_protocol` allows, for messages.
pub const PROTOCOLS_ALLOWED: &str =
    "\"tcp\", \"udp\", \"icmp\", \"icmpv6\", \"gre\", \"all\", or a number 0..=255";
