//! Addresses as the maps hold them: a family and 16 bytes, an IPv4
//! address in the first four. The one conversion between them and
//! `IpAddr`, for every key the daemon writes or reads.

use core::net::IpAddr;

pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// The family and map bytes of `ip`.
pub fn to_bytes(ip: IpAddr) -> (u8, [u8; 16]) {
    match ip {
        IpAddr::V4(v4) => {
            let mut bytes = [0u8; 16];
            bytes[..4].copy_from_slice(&v4.octets());
            (FAMILY_V4, bytes)
        }
        IpAddr::V6(v6) => (FAMILY_V6, v6.octets()),
    }
}

/// The address map bytes of `family` stand for.
pub fn from_bytes(family: u8, bytes: &[u8; 16]) -> IpAddr {
    if family == FAMILY_V4 {
        IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]])
    } else {
        IpAddr::from(*bytes)
    }
}
