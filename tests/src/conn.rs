//! The connection tester: small servers and probes that run in a namespace
//! and report what the network between them let through.
//!
//! A firewall that drops a packet produces no answer at all, so "blocked"
//! means a probe that times out; the timeouts are short ([`DEFAULT_TIMEOUT`])
//! because on a veth or bridge an answer that comes at all comes within
//! microseconds.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::netns::Netns;
use crate::udp::udp_request;

/// How long a probe waits for an answer before calling the packet dropped.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// How often the servers' threads look at their stop flag; bounds how long
/// dropping a server takes.
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// How a TCP connection attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The handshake completed.
    Connected,
    /// The peer answered with a RST: the SYN got through, nobody listens.
    Refused,
    /// No answer within the timeout: the SYN or its answer was dropped.
    TimedOut,
    /// An ICMP error or the local routing table said the peer is unreachable.
    Unreachable,
    /// The probe itself failed (for example the source address is not local).
    Failed(String),
}

/// A TCP echo server listening in a namespace; stops when dropped.
#[derive(Debug)]
pub struct TcpServer {
    addr: SocketAddr,
    _worker: Worker,
}

impl TcpServer {
    /// Listens on `addr` in `ns` (port 0 picks a free port, see
    /// [`TcpServer::addr`]) and echoes whatever each connection sends, each
    /// connection on its own thread so that open connections do not block
    /// new ones.
    pub fn start(ns: &Netns, addr: SocketAddr) -> Result<TcpServer> {
        let listener = listen(ns, addr)?;
        let addr = listener.local_addr()?;
        let worker = Worker::spawn(format!("tcp-echo {addr}"), move |stop| {
            let mut conns: Vec<JoinHandle<()>> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let stop = Arc::clone(&stop);
                        conns.retain(|c| !c.is_finished());
                        conns.push(thread::spawn(move || echo_stream(stream, &stop)));
                    }
                    Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => {
                        eprintln!("sg-tests: TCP server {addr}: accept: {e}");
                        break;
                    }
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        Ok(TcpServer {
            addr,
            _worker: worker,
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// A TCP listener on `addr` in `ns` whose `accept` returns every
/// [`POLL`], so that an accept loop notices its stop flag.
pub(crate) fn listen(ns: &Netns, addr: SocketAddr) -> Result<TcpListener> {
    bind(ns, addr, Type::STREAM)
        .and_then(|s| {
            s.listen(128)?;
            // On Linux SO_RCVTIMEO also bounds accept().
            s.set_read_timeout(Some(POLL))?;
            Ok(s.into())
        })
        .with_context(|| format!("TCP listen on {addr} in netns {}", ns.name()))
}

/// Starts a TCP echo server on each of `addrs` in `ns`; panics if one
/// cannot listen. The servers stop when the vector is dropped.
#[track_caller]
pub fn tcp_servers(ns: &Netns, addrs: &[SocketAddr]) -> Vec<TcpServer> {
    addrs
        .iter()
        .map(|a| TcpServer::start(ns, *a).unwrap_or_else(|e| panic!("{e:#}")))
        .collect()
}

/// Echoes one connection until the peer closes it, an error, or `stop`.
fn echo_stream(mut stream: TcpStream, stop: &AtomicBool) {
    // The write timeout keeps a peer that stopped reading (or a path that
    // started dropping) from holding up the server's drop for long.
    let timeouts = stream
        .set_read_timeout(Some(POLL))
        .and_then(|()| stream.set_write_timeout(Some(DEFAULT_TIMEOUT)));
    if timeouts.is_err() {
        return;
    }
    let mut buf = [0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// An established TCP connection, for tests that need a session to outlive
/// something (a rule change, a daemon restart).
#[derive(Debug)]
pub struct TcpConn {
    stream: TcpStream,
    timeout: Duration,
}

impl TcpConn {
    /// Connects from `ns` to `dst`, from `src` if given (an address of `ns`;
    /// port 0 lets the kernel choose). `timeout` bounds the handshake and
    /// every later [`TcpConn::echo`].
    pub fn open(
        ns: &Netns,
        src: Option<SocketAddr>,
        dst: SocketAddr,
        timeout: Duration,
    ) -> Result<TcpConn> {
        let stream = connect(ns, src, dst, timeout)
            .with_context(|| format!("TCP connect from netns {} to {dst}", ns.name()))?;
        Ok(TcpConn::from_stream(stream, timeout))
    }

    /// A connection on an already connected stream.
    pub(crate) fn from_stream(stream: TcpStream, timeout: Duration) -> TcpConn {
        TcpConn { stream, timeout }
    }

    /// Sends `payload` and waits for an echo server to send it back.
    pub fn echo(&mut self, payload: &[u8]) -> Result<()> {
        let peer = self.stream.peer_addr()?;
        self.stream.set_read_timeout(Some(self.timeout))?;
        self.stream.set_write_timeout(Some(self.timeout))?;
        self.stream
            .write_all(payload)
            .with_context(|| format!("TCP send to {peer}"))?;
        let mut back = vec![0u8; payload.len()];
        self.stream
            .read_exact(&mut back)
            .with_context(|| format!("TCP echo of {} bytes from {peer}", payload.len()))?;
        if back != payload {
            bail!("TCP echo from {peer} differs from what was sent");
        }
        Ok(())
    }

    /// The connection's local address (the source of its packets).
    pub fn local_addr(&self) -> SocketAddr {
        self.stream
            .local_addr()
            .expect("a connected socket has a local address")
    }
}

/// Tries a TCP handshake from `ns` to `dst`.
pub fn tcp_connect(ns: &Netns, dst: SocketAddr, timeout: Duration) -> Outcome {
    tcp_connect_from(ns, None, dst, timeout)
}

/// Tries a TCP handshake from `ns` to `dst`, from source address and port
/// `src` if given.
pub fn tcp_connect_from(
    ns: &Netns,
    src: Option<SocketAddr>,
    dst: SocketAddr,
    timeout: Duration,
) -> Outcome {
    match connect(ns, src, dst, timeout) {
        Ok(_) => Outcome::Connected,
        Err(e) => Outcome::of(&e),
    }
}

impl Outcome {
    /// How a failed connection attempt ended.
    pub(crate) fn of(e: &io::Error) -> Outcome {
        match e.kind() {
            ErrorKind::ConnectionRefused => Outcome::Refused,
            ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => Outcome::Unreachable,
            _ if is_timeout(e) => Outcome::TimedOut,
            _ => Outcome::Failed(e.to_string()),
        }
    }
}

/// Connects from `ns` to an echo server at `dst`, sends `payload` and checks
/// that it comes back.
pub fn tcp_echo(ns: &Netns, dst: SocketAddr, payload: &[u8]) -> Result<()> {
    TcpConn::open(ns, None, dst, DEFAULT_TIMEOUT)?.echo(payload)
}

/// Pings `dst` once from `ns` with iputils `ping` and says whether the echo
/// reply came back within `timeout`.
pub fn ping(ns: &Netns, dst: IpAddr, timeout: Duration) -> bool {
    let family = if dst.is_ipv4() { "-4" } else { "-6" };
    let wait = format!("{:.3}", timeout.as_secs_f64());
    let dst = dst.to_string();
    Command::new("ip")
        .args([
            "netns",
            "exec",
            ns.name(),
            "ping",
            family,
            "-c",
            "1",
            "-W",
            &wait,
            "-n",
            "-q",
            &dst,
        ])
        .output()
        .is_ok_and(|out| out.status.success())
}

/// Asserts that a TCP handshake from `ns` to `dst` completes.
#[track_caller]
pub fn assert_tcp_allowed(ns: &Netns, dst: SocketAddr) {
    assert_tcp(ns, dst, Outcome::Connected, "allowed");
}

/// Asserts that a TCP handshake from `ns` to `dst` gets no answer at all,
/// which is what a firewall that drops looks like from the client.
#[track_caller]
pub fn assert_tcp_blocked(ns: &Netns, dst: SocketAddr) {
    assert_tcp(ns, dst, Outcome::TimedOut, "blocked");
}

#[track_caller]
fn assert_tcp(ns: &Netns, dst: SocketAddr, expected: Outcome, meaning: &str) {
    let got = tcp_connect(ns, dst, DEFAULT_TIMEOUT);
    assert!(
        got == expected,
        "TCP from netns {} to {dst}: expected {meaning} ({expected:?}), got {got:?}",
        ns.name()
    );
}

/// Asserts whether a UDP echo server at `dst` answers a datagram from `ns`.
#[track_caller]
pub fn assert_udp(ns: &Netns, dst: SocketAddr, expected: bool) {
    let got = udp_request(ns, None, dst, DEFAULT_TIMEOUT);
    assert!(
        got == expected,
        "UDP from netns {} to {dst}: expected {}, got {}",
        ns.name(),
        answered(expected),
        answered(got)
    );
}

/// Asserts whether `dst` answers a ping from `ns`.
#[track_caller]
pub fn assert_ping(ns: &Netns, dst: IpAddr, expected: bool) {
    let got = ping(ns, dst, DEFAULT_TIMEOUT);
    assert!(
        got == expected,
        "ping from netns {} to {dst}: expected {}, got {}",
        ns.name(),
        answered(expected),
        answered(got)
    );
}

fn answered(yes: bool) -> &'static str {
    if yes { "an answer" } else { "no answer" }
}

/// A background thread with a stop flag, stopped and joined on drop.
#[derive(Debug)]
pub(crate) struct Worker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    pub(crate) fn spawn(name: String, f: impl FnOnce(Arc<AtomicBool>) + Send + 'static) -> Worker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name(name)
            .spawn(move || f(flag))
            .expect("spawn a server thread");
        Worker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Creates a socket of `ty` in `ns` and binds it to `addr`. IPv6 sockets are
/// IPv6-only, so that a test can run an IPv4 and an IPv6 server on one port;
/// address reuse lets a test bind a port that an earlier one left in
/// TIME_WAIT.
pub(crate) fn bind(ns: &Netns, addr: SocketAddr, ty: Type) -> io::Result<Socket> {
    ns.run_in(|| {
        let protocol = if ty == Type::STREAM {
            Protocol::TCP
        } else {
            Protocol::UDP
        };
        let socket = Socket::new(Domain::for_address(addr), ty, Some(protocol))?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.set_reuse_address(true)?;
        socket.bind(&SockAddr::from(addr))?;
        Ok(socket)
    })
}

/// Connects a TCP socket created in `ns` to `dst`, bound to `src` if given.
pub(crate) fn connect(
    ns: &Netns,
    src: Option<SocketAddr>,
    dst: SocketAddr,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let socket = match src {
        Some(src) => bind(ns, src, Type::STREAM)?,
        None => {
            ns.run_in(|| Socket::new(Domain::for_address(dst), Type::STREAM, Some(Protocol::TCP)))?
        }
    };
    socket.connect_timeout(&SockAddr::from(dst), timeout)?;
    Ok(socket.into())
}

/// The wildcard address of `dst`'s family, port 0.
pub(crate) fn unspecified(dst: SocketAddr) -> SocketAddr {
    let ip: IpAddr = if dst.is_ipv4() {
        std::net::Ipv4Addr::UNSPECIFIED.into()
    } else {
        std::net::Ipv6Addr::UNSPECIFIED.into()
    };
    SocketAddr::new(ip, 0)
}

/// Whether `e` is what a socket timeout looks like (EAGAIN or ETIMEDOUT).
pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}
