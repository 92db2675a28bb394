//! Which link header an interface's packets carry at the TC hooks, from
//! its link type (`ARPHRD_*`, the `link/...` word of `ip link`): Ethernet,
//! or none at all (L3 devices: TUN, WireGuard, IP tunnels, where the IP
//! header starts the packet). Any other link type is refused with the
//! reason, never left open (SPEC §3.10): the classifier would read its
//! header as Ethernet and pass nearly everything as "not IP".

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::net::if_::InterfaceFlags;
use sg_common::IFACE_L3;

/// The link header of an interface sg can enforce on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkHeader {
    /// An Ethernet header (veth, bridges and their ports, VLAN devices,
    /// TAP, VXLAN, loopback).
    Ethernet,
    /// None: the packet starts with its IP header, and the kernel's
    /// `skb->protocol` says which IP.
    None,
}

impl LinkHeader {
    /// The `IFACE_*` bits that tell the classifier.
    pub fn iface_flags(self) -> u32 {
        match self {
            LinkHeader::Ethernet => 0,
            LinkHeader::None => IFACE_L3,
        }
    }
}

// Link types (include/uapi/linux/if_arp.h).
const ARPHRD_ETHER: u16 = 1;
const ARPHRD_INFINIBAND: u16 = 32;
const ARPHRD_CAN: u16 = 280;
const ARPHRD_PPP: u16 = 512;
const ARPHRD_RAWIP: u16 = 519;
const ARPHRD_TUNNEL: u16 = 768;
const ARPHRD_TUNNEL6: u16 = 769;
const ARPHRD_LOOPBACK: u16 = 772;
const ARPHRD_SIT: u16 = 776;
const ARPHRD_IPGRE: u16 = 778;
const ARPHRD_IEEE80211_RADIOTAP: u16 = 803;
const ARPHRD_IEEE802154: u16 = 804;
const ARPHRD_IP6GRE: u16 = 823;
const ARPHRD_NETLINK: u16 = 824;
const ARPHRD_6LOWPAN: u16 = 825;
const ARPHRD_NONE: u16 = 0xfffe;

/// The link header of interface `name`, or why sg cannot enforce on it.
pub fn link_header(name: &str) -> Result<LinkHeader, String> {
    let (hatype, flags) = link_type(name).map_err(|e| format!("cannot read the link type: {e}"))?;
    classify(
        hatype,
        InterfaceFlags::from_bits_truncate(flags as u16 as libc::c_int),
    )
}

/// The link type (`ARPHRD_*`) and flags (`IFF_*`) of interface `name`,
/// asked of the kernel in this network namespace (SIOCGIFHWADDR answers
/// with the type also for devices without an address, such as TUN).
fn link_type(name: &str) -> std::io::Result<(u16, libc::c_short)> {
    if name.len() >= libc::IFNAMSIZ {
        return Err(std::io::Error::from_raw_os_error(libc::ENODEV));
    }
    // SAFETY: plain syscalls on a socket owned here and a zeroed ifreq
    // with a NUL-terminated name, as both ioctls expect.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let mut req: libc::ifreq = std::mem::zeroed();
        for (to, from) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *to = from as libc::c_char;
        }
        if libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, &mut req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let hatype = req.ifr_ifru.ifru_hwaddr.sa_family;
        if libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok((hatype, req.ifr_ifru.ifru_flags))
    }
}

/// The link header of link type `hatype` with interface `flags`.
fn classify(hatype: u16, flags: InterfaceFlags) -> Result<LinkHeader, String> {
    match hatype {
        ARPHRD_ETHER | ARPHRD_LOOPBACK => Ok(LinkHeader::Ethernet),
        ARPHRD_NONE | ARPHRD_TUNNEL | ARPHRD_TUNNEL6 | ARPHRD_SIT | ARPHRD_RAWIP | ARPHRD_PPP => {
            Ok(LinkHeader::None)
        }
        // A GRE device without one fixed remote (NBMA, multicast) builds
        // the outer IP and GRE headers as its link header: the classifier
        // would read those.
        ARPHRD_IPGRE | ARPHRD_IP6GRE
            if flags.contains(InterfaceFlags::IFF_POINTOPOINT)
                && !flags.contains(InterfaceFlags::IFF_BROADCAST) =>
        {
            Ok(LinkHeader::None)
        }
        ARPHRD_IPGRE | ARPHRD_IP6GRE => Err(
            "a GRE device without a fixed remote carries the outer headers as its link header; \
             sg enforces point-to-point GRE only"
                .into(),
        ),
        other => Err(format!(
            "link type {other}{} is not supported: sg parses Ethernet and IP-only (L3) devices",
            type_name(other)
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        )),
    }
}

/// The name `ip link` gives a link type sg refuses, where it is a common one.
fn type_name(hatype: u16) -> Option<&'static str> {
    Some(match hatype {
        ARPHRD_INFINIBAND => "infiniband",
        ARPHRD_CAN => "can",
        ARPHRD_IEEE80211_RADIOTAP => "ieee802.11/radiotap",
        ARPHRD_IEEE802154 => "ieee802.15.4",
        ARPHRD_NETLINK => "netlink",
        ARPHRD_6LOWPAN => "6lowpan",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_types_map_to_their_header_or_a_reason() {
        let p2p = InterfaceFlags::IFF_POINTOPOINT | InterfaceFlags::IFF_NOARP;
        let nbma = InterfaceFlags::IFF_NOARP;
        let multicast = InterfaceFlags::IFF_POINTOPOINT | InterfaceFlags::IFF_BROADCAST;
        #[rustfmt::skip]
        let cases = [
            ("veth",               ARPHRD_ETHER,      nbma,      Ok(LinkHeader::Ethernet)),
            ("lo",                 ARPHRD_LOOPBACK,   nbma,      Ok(LinkHeader::Ethernet)),
            ("tun, wireguard",     ARPHRD_NONE,       p2p,       Ok(LinkHeader::None)),
            ("ipip",               ARPHRD_TUNNEL,     p2p,       Ok(LinkHeader::None)),
            ("ip6tnl",             ARPHRD_TUNNEL6,    p2p,       Ok(LinkHeader::None)),
            ("sit",                ARPHRD_SIT,        nbma,      Ok(LinkHeader::None)),
            ("raw-ip modem",       ARPHRD_RAWIP,      nbma,      Ok(LinkHeader::None)),
            ("ppp",                ARPHRD_PPP,        p2p,       Ok(LinkHeader::None)),
            ("gre to one remote",  ARPHRD_IPGRE,      p2p,       Ok(LinkHeader::None)),
            ("ip6gre, one remote", ARPHRD_IP6GRE,     p2p,       Ok(LinkHeader::None)),
            ("gre, no remote",     ARPHRD_IPGRE,      nbma,      Err("point-to-point GRE only")),
            ("gre, multicast",     ARPHRD_IPGRE,      multicast, Err("point-to-point GRE only")),
            ("infiniband",         ARPHRD_INFINIBAND, nbma,      Err("link type 32 (infiniband) is not supported")),
            ("unknown",            0x1234,            nbma,      Err("link type 4660 is not supported")),
        ];
        for (what, hatype, flags, expected) in cases {
            let got = classify(hatype, flags);
            match expected {
                Ok(header) => assert_eq!(got, Ok(header), "{what}"),
                Err(why) => {
                    let err = got.expect_err(what);
                    assert!(err.contains(why), "{what}: {err}");
                }
            }
        }
    }
}
