//! The file's value syntaxes: addresses and CIDRs, port ranges, protocols.

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
