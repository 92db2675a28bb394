//! The UDP side of the connection tester: echo servers, sinks that record
//! what arrives, and requests that report whether an answer (or an ICMP
//! "port unreachable") came back. See `conn.rs` for what "blocked" means.

use std::io::{self, ErrorKind};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use socket2::Type;

use crate::conn::{POLL, Worker, bind, is_timeout, unspecified};
use crate::netns::Netns;

/// Sends `packets` datagrams from one new socket in `ns` to each port of
/// `ports` at `dst`: a flood of new flows, one per port, that nobody
/// answers. Returns how many datagrams the kernel took (a send the stack
/// refuses, say for lack of buffers, is not retried).
pub fn udp_flood(ns: &Netns, dst: IpAddr, ports: Range<u16>, packets: usize) -> Result<u64> {
    let socket = udp_socket(ns, unspecified(SocketAddr::new(dst, 0)))?;
    let mut sent = 0;
    for port in ports {
        for _ in 0..packets {
            sent += u64::from(socket.send_to(b"flood", SocketAddr::new(dst, port)).is_ok());
        }
    }
    Ok(sent)
}

/// A UDP echo server in a namespace: answers each datagram with its payload,
/// from the address it was sent to. Stops when dropped.
#[derive(Debug)]
pub struct UdpServer {
    addr: SocketAddr,
    _worker: Worker,
}

impl UdpServer {
    /// Binds `addr` in `ns` (port 0 picks a free port) and starts echoing.
    pub fn start(ns: &Netns, addr: SocketAddr) -> Result<UdpServer> {
        let socket = udp_socket(ns, addr)?;
        let addr = socket.local_addr()?;
        let worker = Worker::spawn(format!("udp-echo {addr}"), move |stop| {
            let mut buf = [0u8; 64 * 1024];
            while !stop.load(Ordering::Relaxed) {
                // An error is the read timeout that lets the loop look at
                // `stop`: the socket is unconnected, so it reports no ICMP.
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(&buf[..n], from);
                }
            }
        });
        Ok(UdpServer {
            addr,
            _worker: worker,
        })
    }

    /// The address the server is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Starts a UDP echo server on each of `addrs` in `ns`; panics if one
/// cannot bind. The servers stop when the vector is dropped.
#[track_caller]
pub fn udp_servers(ns: &Netns, addrs: &[SocketAddr]) -> Vec<UdpServer> {
    addrs
        .iter()
        .map(|a| UdpServer::start(ns, *a).unwrap_or_else(|e| panic!("{e:#}")))
        .collect()
}

/// Datagrams a [`UdpSink`] has received, with their sources.
pub type Datagrams = Vec<(SocketAddr, Vec<u8>)>;

/// A UDP socket in a namespace that records every datagram it receives and
/// answers none, so a test can check that something was (not) delivered.
/// Its socket can also send ([`UdpSink::send_to`]), which makes it one end of
/// a UDP session whose replies it then records.
#[derive(Debug)]
pub struct UdpSink {
    socket: Arc<UdpSocket>,
    received: Arc<(Mutex<Datagrams>, Condvar)>,
    _worker: Worker,
}

impl UdpSink {
    /// Binds `addr` in `ns` (port 0 picks a free port) and starts recording.
    pub fn start(ns: &Netns, addr: SocketAddr) -> Result<UdpSink> {
        let socket = Arc::new(udp_socket(ns, addr)?);
        let received = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let worker = {
            let (socket, received) = (Arc::clone(&socket), Arc::clone(&received));
            Worker::spawn(format!("udp-sink {addr}"), move |stop| {
                let mut buf = [0u8; 64 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = socket.recv_from(&mut buf) {
                        let (list, arrived) = &*received;
                        list.lock().unwrap().push((from, buf[..n].to_vec()));
                        arrived.notify_all();
                    }
                }
            })
        };
        Ok(UdpSink {
            socket,
            received,
            _worker: worker,
        })
    }

    /// The address the sink is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.socket
            .local_addr()
            .expect("a bound socket has a local address")
    }

    /// Everything received so far.
    pub fn received(&self) -> Datagrams {
        self.received.0.lock().unwrap().clone()
    }

    /// Waits until at least `n` datagrams have arrived or `timeout` passed,
    /// and returns what has arrived. To check that nothing arrives, wait for
    /// one and expect none: `assert!(sink.wait_for(1, t).is_empty())`.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Datagrams {
        let (list, arrived) = &*self.received;
        let list = arrived
            .wait_timeout_while(list.lock().unwrap(), timeout, |l| l.len() < n)
            .unwrap()
            .0;
        list.clone()
    }

    /// Sends `payload` to `dst` from the sink's own address.
    pub fn send_to(&self, dst: SocketAddr, payload: &[u8]) -> Result<()> {
        self.socket
            .send_to(payload, dst)
            .with_context(|| format!("UDP send from {} to {dst}", self.addr()))?;
        Ok(())
    }
}

/// Sends one datagram from `ns` (from `src` if given) to an echo server at
/// `dst`, and says whether the echo came back within `timeout`.
pub fn udp_request(
    ns: &Netns,
    src: Option<SocketAddr>,
    dst: SocketAddr,
    timeout: Duration,
) -> bool {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let payload = format!(
        "sg-tests {} {}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    udp_echoed(ns, src, dst, payload.as_bytes(), timeout)
}

/// Sends one datagram from `ns` (from `src` if given) to `dst`.
pub fn udp_send(
    ns: &Netns,
    src: Option<SocketAddr>,
    dst: SocketAddr,
    payload: &[u8],
) -> Result<()> {
    let socket = udp_socket(ns, src.unwrap_or_else(|| unspecified(dst)))?;
    socket
        .send_to(payload, dst)
        .with_context(|| format!("UDP send from netns {} to {dst}", ns.name()))?;
    Ok(())
}

/// Sends a datagram of `len` bytes from `ns` (from `src` if given) to a UDP
/// echo server at `dst` and says whether the whole datagram came back within
/// `timeout`. Over a 1500-byte MTU a `len` of 3000 travels as fragments,
/// both ways.
pub fn udp_echo_len(
    ns: &Netns,
    src: Option<SocketAddr>,
    dst: SocketAddr,
    len: usize,
    timeout: Duration,
) -> bool {
    udp_echoed(ns, src, dst, &echo_payload(len), timeout)
}

/// The payload of `len` bytes an echo probe sends.
pub(crate) fn echo_payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Sends `payload` from `ns` (from `src` if given) to `dst` and says whether
/// `dst` sent it back within `timeout`.
fn udp_echoed(
    ns: &Netns,
    src: Option<SocketAddr>,
    dst: SocketAddr,
    payload: &[u8],
    timeout: Duration,
) -> bool {
    let Ok(socket) = udp_client(ns, src, dst, false) else {
        return false;
    };
    socket.send_to(payload, dst).is_ok() && echo_came_back(&socket, dst, payload, timeout)
}

/// Whether `dst` sent `payload` back to `socket` within `timeout`.
pub(crate) fn echo_came_back(
    socket: &UdpSocket,
    dst: SocketAddr,
    payload: &[u8],
    timeout: Duration,
) -> bool {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || socket.set_read_timeout(Some(left)).is_err() {
            return false;
        }
        match socket.recv_from(&mut buf) {
            Ok((n, from)) if from == dst && buf[..n] == *payload => return true,
            // Not the echo of this datagram: keep waiting for it.
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// Sends one datagram from a connected UDP socket in `ns` (bound to `src` if
/// given) to `dst`, where nothing listens, and waits up to `timeout` for the
/// peer's ICMP port unreachable: `Ok(true)` when it came back (the socket's
/// next `recv` fails with ECONNREFUSED), `Ok(false)` when nothing came, an
/// error when something else happened (a datagram came back, another error).
pub fn udp_refused(
    ns: &Netns,
    src: Option<SocketAddr>,
    dst: SocketAddr,
    timeout: Duration,
) -> Result<bool> {
    udp_refused_with(ns, src, dst, timeout, false)
}

/// [`udp_refused`], with an IPv6 destination-options header in the
/// datagram (which the error then quotes) if `dest_options`.
pub(crate) fn udp_refused_with(
    ns: &Netns,
    src: Option<SocketAddr>,
    dst: SocketAddr,
    timeout: Duration,
    dest_options: bool,
) -> Result<bool> {
    let socket = udp_client(ns, src, dst, dest_options)?;
    socket.connect(dst)?;
    socket.set_read_timeout(Some(timeout))?;
    socket.send(b"is anybody there?")?;
    let mut buf = [0u8; 64];
    match socket.recv(&mut buf) {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Ok(true),
        Err(e) if is_timeout(&e) => Ok(false),
        Err(e) => Err(e).with_context(|| format!("UDP receive from {dst}")),
        Ok(_) => bail!("a datagram came back from {dst}, where nothing should listen"),
    }
}

/// A UDP socket in `ns` bound to `addr`, with a read timeout of [`POLL`] so
/// that server loops can notice their stop flag.
fn udp_socket(ns: &Netns, addr: SocketAddr) -> Result<UdpSocket> {
    let socket = bind(ns, addr, Type::DGRAM)
        .and_then(|s| {
            s.set_read_timeout(Some(POLL))?;
            Ok(s)
        })
        .with_context(|| format!("UDP bind {addr} in netns {}", ns.name()))?;
    Ok(socket.into())
}

/// A UDP socket in `ns` to send to `dst` from `src` (any address if
/// `None`), with an IPv6 destination-options header if `dest_options`.
pub(crate) fn udp_client(
    ns: &Netns,
    src: Option<SocketAddr>,
    dst: SocketAddr,
    dest_options: bool,
) -> Result<UdpSocket> {
    let socket = udp_socket(ns, src.unwrap_or_else(|| unspecified(dst)))?;
    if dest_options {
        set_dest_options(&socket).context("setting IPV6_DSTOPTS")?;
    }
    Ok(socket)
}

/// Makes every datagram `socket` sends carry an IPv6 destination-options
/// header (8 bytes of padding, `IPV6_DSTOPTS`) right after the IPv6 header
/// (Linux keeps it before the Fragment header when it fragments), which an
/// ICMPv6 error about the datagram quotes.
fn set_dest_options(socket: &UdpSocket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // Next header (the kernel fills it in), length 0 (8 bytes), PadN of 4.
    let header: [u8; 8] = [0, 0, 1, 4, 0, 0, 0, 0];
    // SAFETY: a valid socket and a buffer of the length given.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_DSTOPTS,
            header.as_ptr().cast(),
            header.len() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
