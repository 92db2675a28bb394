//! The file's value syntaxes: addresses and CIDRs, port ranges, protocols,
//! MAC addresses.

use std::net::IpAddr;

use ipnet::IpNet;

use super::schema::ProtocolValue;
use crate::model::{PortRange, Protocol};

/// An address or CIDR in its one canonical form (`2001:0db8::0001` is
/// `2001:db8::1/128`), or why it is not one: surrounding spaces and host
/// bits (`192.0.2.5/24`, which would silently mean `192.0.2.0/24`) are
/// refused.
pub fn cidr(s: &str) -> Result<IpNet, String> {
    if s.trim() != s {
        return Err("has surrounding spaces".into());
    }
    if let Ok(net) = s.parse::<IpNet>() {
        return if net.trunc() == net {
            Ok(net)
        } else {
            Err(format!(
                "has host bits set (the network is \"{}\")",
                net.trunc()
            ))
        };
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| "is not an address or CIDR".into())
}

/// [`cidr`], without the reason.
pub fn parse_cidr(s: &str) -> Option<IpNet> {
    cidr(s).ok()
}

/// An address or CIDR as [`cidr`] reads it, written back canonically:
/// an address stays an address (`2001:db8::1`), a CIDR a CIDR.
pub fn canonical_cidr(s: &str) -> Option<String> {
    let net = cidr(s).ok()?;
    Some(if s.contains('/') {
        net.to_string()
    } else {
        net.addr().to_string()
    })
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
