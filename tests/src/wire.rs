//! Hand-made frames on a real link, the attacker's way: a packet socket
//! that sends whole Ethernet frames (VLAN tags and all) out of an
//! interface and watches what comes back, TCP SYNs and neighbour discovery
//! with valid checksums, so that the peer's stack takes them if they reach
//! it, and what a namespace's neighbour cache holds.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::frames::{self, ICMPV6, TCP};
use crate::netns::Netns;

/// A packet socket bound to one interface: every frame in and out of it.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// Opens a packet socket on `ifname` in `ns`.
    pub fn open(ns: &Netns, ifname: &str) -> Result<PacketSocket> {
        let name = std::ffi::CString::new(ifname)?;
        ns.run_in(|| {
            // SAFETY: plain syscalls on values owned here.
            unsafe {
                let all = (libc::ETH_P_ALL as u16).to_be();
                let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, all.into());
                if fd < 0 {
                    return Err(std::io::Error::last_os_error()).context("packet socket");
                }
                let fd = OwnedFd::from_raw_fd(fd);
                let ifindex = libc::if_nametoindex(name.as_ptr());
                if ifindex == 0 {
                    bail!("no interface {ifname} in netns {}", ns.name());
                }
                let mut addr: libc::sockaddr_ll = std::mem::zeroed();
                addr.sll_family = libc::AF_PACKET as u16;
                addr.sll_protocol = all;
                addr.sll_ifindex = ifindex as i32;
                let len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
                if libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), len) < 0 {
                    return Err(std::io::Error::last_os_error()).context("bind packet socket");
                }
                let timeout = libc::timeval {
                    tv_sec: 0,
                    tv_usec: 50_000,
                };
                let size = std::mem::size_of::<libc::timeval>() as u32;
                let opt = (&raw const timeout).cast();
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    opt,
                    size,
                );
                Ok(PacketSocket { fd })
            }
        })
    }

    /// Sends `frame` out of the interface as it is.
    pub fn send(&self, frame: &[u8]) -> Result<()> {
        // SAFETY: `frame` is valid for its length.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error()).context("send a frame");
        }
        Ok(())
    }

    /// Waits up to `timeout` for a frame that `matches`.
    pub fn wait_for(&self, timeout: Duration, matches: impl Fn(&[u8]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            // SAFETY: `buf` is valid for its length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n > 0 && matches(&buf[..n as usize]) {
                return true;
            }
        }
        false
    }
}

/// The MAC address of `ifname` in `ns`.
pub fn mac_of(ns: &Netns, ifname: &str) -> Result<[u8; 6]> {
    let out = ns.ip(&["-o", "link", "show", "dev", ifname])?;
    mac_after(&out, "link/ether").with_context(|| format!("no MAC address in {out}"))
}

/// The MAC address `ns`'s neighbour cache holds for `addr` on `ifname`
/// (`ip neigh`), if it holds one.
pub fn neighbour_mac(ns: &Netns, ifname: &str, addr: IpAddr) -> Result<Option<[u8; 6]>> {
    let out = ns.ip(&["neigh", "show", &addr.to_string(), "dev", ifname])?;
    Ok(mac_after(&out, "lladdr"))
}

/// The MAC address written after the word `label` in `text`.
fn mac_after(text: &str, label: &str) -> Option<[u8; 6]> {
    let mac = text.split_whitespace().skip_while(|w| *w != label).nth(1)?;
    let bytes: Vec<u8> = mac
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    bytes.try_into().ok()
}

/// `mac` as `ip` and the config write it: `02:00:00:00:00:07`.
pub fn mac_text(mac: [u8; 6]) -> String {
    let bytes: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    bytes.join(":")
}

/// Puts `dst` and `src` into the MAC fields of an Ethernet `frame`.
pub fn address(mut frame: Vec<u8>, dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    frame[..6].copy_from_slice(&dst);
    frame[6..12].copy_from_slice(&src);
    frame
}

/// A TCP SYN from `src` to `dst` (one family), IP packet without a link
/// header, its checksums valid.
pub fn tcp_syn(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut tcp = frames::tcp_syn(src.port(), dst.port());
    let pseudo = pseudo_header(src.ip(), dst.ip(), TCP, tcp.len());
    let sum = checksum(&[&pseudo, &tcp]);
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
    let mut packet = frames::ip_packet(src.ip(), dst.ip(), TCP, &tcp);
    if src.is_ipv4() {
        let header = checksum(&[&packet[..20]]);
        packet[10..12].copy_from_slice(&header.to_be_bytes());
    }
    packet
}

/// An ICMPv6 neighbour discovery message `body` from `src` to `dst`, its
/// checksum filled in and with the hop limit of 255 that receivers
/// require: an IPv6 packet without a link header.
pub fn neighbor_discovery(src: Ipv6Addr, dst: Ipv6Addr, mut body: Vec<u8>) -> Vec<u8> {
    let pseudo = pseudo_header(src.into(), dst.into(), ICMPV6, body.len());
    let sum = checksum(&[&pseudo, &body]);
    body[2..4].copy_from_slice(&sum.to_be_bytes());
    let mut packet = frames::ipv6(src, dst, ICMPV6, &body);
    packet[7] = 255;
    packet
}

/// The pseudo-header that the checksum of a `proto` segment of `len` bytes
/// from `src` to `dst` (one family) covers.
fn pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => [
            &s.octets()[..],
            &d.octets(),
            &[0, proto],
            &(len as u16).to_be_bytes(),
        ]
        .concat(),
        (IpAddr::V6(s), IpAddr::V6(d)) => [
            &s.octets()[..],
            &d.octets(),
            &(len as u32).to_be_bytes(),
            &[0, 0, 0, proto],
        ]
        .concat(),
        _ => panic!("mixed address families: {src} -> {dst}"),
    }
}

/// The Internet checksum of `parts` laid end to end (each of even length
/// but the last).
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        for pair in part.chunks(2) {
            sum += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Whether the untagged Ethernet `frame` is a TCP segment from `from` to
/// `to`: an answer to a SYN from `to` (a SYN-ACK or a reset).
pub fn is_tcp(frame: &[u8], from: SocketAddr, to: SocketAddr) -> bool {
    let Some((src, dst, TCP, l4)) = ip_header(frame) else {
        return false;
    };
    let Some(ports) = frame.get(l4..l4 + 4) else {
        return false;
    };
    src == from.ip()
        && dst == to.ip()
        && u16::from_be_bytes([ports[0], ports[1]]) == from.port()
        && u16::from_be_bytes([ports[2], ports[3]]) == to.port()
}

/// The destination address of the untagged Ethernet `frame`, if it is IP.
pub fn ip_destination(frame: &[u8]) -> Option<IpAddr> {
    ip_header(frame).map(|(_, dst, _, _)| dst)
}

/// The source, destination, protocol and transport header offset of the
/// untagged Ethernet `frame`, if it is IP (IPv6 without extension headers).
fn ip_header(frame: &[u8]) -> Option<(IpAddr, IpAddr, u8, usize)> {
    let ethertype = frame.get(12..14).map(|t| u16::from_be_bytes([t[0], t[1]]));
    match ethertype {
        Some(frames::ETH_P_IP) if frame.len() >= 34 => {
            let ihl = usize::from(frame[14] & 0x0f) * 4;
            let ip = |at: usize| IpAddr::from(<[u8; 4]>::try_from(&frame[at..at + 4]).unwrap());
            Some((ip(26), ip(30), frame[23], 14 + ihl))
        }
        Some(frames::ETH_P_IPV6) if frame.len() >= 54 => {
            let ip = |at: usize| IpAddr::from(<[u8; 16]>::try_from(&frame[at..at + 16]).unwrap());
            Some((ip(22), ip(38), frame[20], 54))
        }
        _ => None,
    }
}
