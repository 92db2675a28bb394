//! Traffic the kernel would not build itself, sent through raw sockets
//! from inside a namespace: frames that are not IP ([`send_frame`]), and
//! IPv6 fragments with an extension header after the Fragment header
//! ([`udp6_echo_options_after_fragment`]; Linux puts destination options
//! before it unless a routing header comes first, other senders need not).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::frames::{self, IPV6_DEST_OPTIONS, IPV6_FRAGMENT, UDP};
use crate::netns::Netns;
use crate::udp::{echo_came_back, echo_payload, udp_client};

/// Bytes of the fragmentable part per fragment (a multiple of 8).
const FRAGMENT_DATA: usize = 1232;

/// Sends one raw Ethernet `frame` (destination MAC first) out of `ifname`
/// in `ns`, through an `AF_PACKET` socket: for frames that are not IP.
pub fn send_frame(ns: &Netns, ifname: &str, frame: &[u8]) -> Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let send = || -> io::Result<()> {
        let name = std::ffi::CString::new(ifname)?;
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: plain socket(2); protocol 0: send only.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor we just opened and own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_ll is plain data; all zeroes is valid.
        let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_ifindex = ifindex as i32;
        to.sll_halen = 6;
        to.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: the buffer and the address with their lengths.
        let sent = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&to as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    };
    ns.run_in(send)
        .with_context(|| format!("sending a raw frame out of {ifname} in netns {}", ns.name()))
}

/// Sends a UDP datagram of `len` bytes from `ns` to an IPv6 echo server at
/// `dst`, as fragments built by hand with a destination-options header
/// after the Fragment header (so the later fragments name destination
/// options, not UDP, as their next header), and says whether the whole
/// echo came back within `timeout`.
pub fn udp6_echo_options_after_fragment(
    ns: &Netns,
    dst: SocketAddr,
    len: usize,
    timeout: Duration,
) -> bool {
    let Ok(socket) = udp_client(ns, None, dst, false) else {
        return false;
    };
    // Connecting picks the source address and port the echo comes back to.
    let Ok(src) = socket.connect(dst).and_then(|()| socket.local_addr()) else {
        return false;
    };
    let (IpAddr::V6(src_ip), IpAddr::V6(dst_ip)) = (src.ip(), dst.ip()) else {
        return false;
    };
    let payload = echo_payload(len);
    let mut datagram = frames::udp(src.port(), dst.port(), &payload);
    let sum = frames::udp6_checksum(src_ip, dst_ip, &datagram);
    datagram[6..8].copy_from_slice(&sum.to_be_bytes());
    let fragmentable = frames::ipv6_dest_options(UDP, &datagram);
    static ID: AtomicU32 = AtomicU32::new(0);
    let id = std::process::id() << 12 | ID.fetch_add(1, Ordering::Relaxed);
    let chunks = fragmentable.chunks(FRAGMENT_DATA);
    let last = chunks.len() - 1;
    let packets: Vec<Vec<u8>> = chunks
        .enumerate()
        .map(|(n, chunk)| {
            let offset = (n * FRAGMENT_DATA / 8) as u16;
            let header =
                frames::ipv6_fragment_header(IPV6_DEST_OPTIONS, id, offset, n < last, chunk);
            frames::ipv6(src_ip, dst_ip, IPV6_FRAGMENT, &header)
        })
        .collect();
    let sent = ns.run_in(|| -> io::Result<()> {
        // IPPROTO_RAW: the packets carry their own IPv6 header.
        let raw = Socket::new(
            Domain::IPV6,
            Type::RAW,
            Some(Protocol::from(libc::IPPROTO_RAW)),
        )?;
        let to = SockAddr::from(SocketAddr::new(dst.ip(), 0));
        for packet in &packets {
            raw.send_to(packet, &to)?;
        }
        Ok(())
    });
    sent.is_ok() && echo_came_back(&socket, dst, &payload, timeout)
}
