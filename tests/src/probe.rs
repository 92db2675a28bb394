//! Connection-level cases as table rows, the way the seeds state their
//! scenarios: what, protocol and port, from where, to where, and whether it
//! passes or is dropped.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use sg_tests::*;
//! let t = Topology::pair("ssh")?;
//! let (s, c) = (t.server(), t.client());
//! let _srv = tcp_servers(s, &[s.v4(22), s.v4(80)]);
//! check(&[
//!     probe("ssh before enforcement", Tcp(22), c, s.ipv4(), PASS),
//!     probe("web", Tcp(80), c, s.ipv4(), PASS),
//! ]);
//! # Ok(()) }
//! ```
//!
//! [`check`] runs every row, in order, and then fails naming each row whose
//! outcome was not the expected one.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::conn::{DEFAULT_TIMEOUT, Outcome, TcpConn, connect, ping};
use crate::crafted::udp6_echo_options_after_fragment;
use crate::netns::{Host, Netns};
use crate::udp::{udp_echo_len, udp_refused_with, udp_request};

/// What a row sends, with the destination port where there is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    /// A TCP handshake. PASS: it completes; DROPPED: no answer at all.
    Tcp(u16),
    /// A TCP handshake and then a few bytes that an echo server sends back.
    /// PASS: both; DROPPED: the handshake gets no answer at all.
    TcpEcho(u16),
    /// One datagram to a UDP echo server. PASS: the echo comes back.
    Udp(u16),
    /// One datagram of this many bytes to a UDP echo server (over a 1500-byte
    /// MTU, 3000 bytes travel as fragments both ways). PASS: the whole echo
    /// comes back.
    UdpBytes(u16, usize),
    /// [`UdpBytes`] over IPv6 as fragments built by hand, with a
    /// destination-options header after the Fragment header (from the
    /// source address the route picks: the row cannot choose one).
    UdpFragmentsOptionsAfter(u16, usize),
    /// One datagram to a UDP port where nothing listens. PASS: the peer's
    /// ICMP port unreachable comes back (an error related to the session the
    /// datagram opened); DROPPED: nothing comes back.
    UdpToClosed(u16),
    /// [`UdpToClosed`] over IPv6 with a destination-options header, which
    /// the ICMPv6 error quotes.
    UdpToClosedDestOpts(u16),
    /// One ICMP or ICMPv6 echo request. PASS: the reply comes back.
    Ping,
}

pub use Traffic::*;

impl fmt::Display for Traffic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tcp(port) => write!(f, "tcp/{port}"),
            TcpEcho(port) => write!(f, "tcp/{port} with data"),
            Udp(port) => write!(f, "udp/{port}"),
            UdpBytes(port, len) => write!(f, "udp/{port} of {len} bytes"),
            UdpFragmentsOptionsAfter(port, len) => write!(
                f,
                "udp/{port} of {len} bytes, fragments with options after the fragment header"
            ),
            UdpToClosed(port) => write!(f, "udp/{port} (closed, ICMP error back)"),
            UdpToClosedDestOpts(port) => write!(
                f,
                "udp/{port} with destination options (closed, ICMP error back)"
            ),
            Ping => f.write_str("ping"),
        }
    }
}

/// The expected outcome of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The traffic gets through and is answered.
    Pass,
    /// The traffic gets no answer at all, as a firewall that drops makes it.
    Dropped,
}

/// The traffic gets through and is answered.
pub const PASS: Expect = Expect::Pass;
/// The traffic gets no answer at all.
pub const DROPPED: Expect = Expect::Dropped;

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Expect::Pass => "PASS",
            Expect::Dropped => "DROPPED",
        })
    }
}

/// Where a row's traffic comes from: a namespace, and optionally the source
/// address and port to send from (port 0: any). Made from a `&Netns` or a
/// `&Host`, alone or paired with a source: `(client, client.v4(40000))`.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    ns: &'a Netns,
    addr: Option<SocketAddr>,
}

impl<'a> From<&'a Netns> for Source<'a> {
    fn from(ns: &'a Netns) -> Self {
        Source { ns, addr: None }
    }
}

impl<'a> From<&'a Host> for Source<'a> {
    fn from(host: &'a Host) -> Self {
        Source {
            ns: host,
            addr: None,
        }
    }
}

impl<'a> From<(&'a Netns, SocketAddr)> for Source<'a> {
    fn from((ns, addr): (&'a Netns, SocketAddr)) -> Self {
        Source {
            ns,
            addr: Some(addr),
        }
    }
}

impl<'a> From<(&'a Host, SocketAddr)> for Source<'a> {
    fn from((host, addr): (&'a Host, SocketAddr)) -> Self {
        Source {
            ns: host,
            addr: Some(addr),
        }
    }
}

impl fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "netns {}", self.ns.name())?;
        if let Some(addr) = self.addr {
            write!(f, " (from {addr})")?;
        }
        Ok(())
    }
}

/// One row of a table: `what` is said when the row fails.
#[derive(Debug, Clone)]
pub struct Probe<'a> {
    what: &'a str,
    traffic: Traffic,
    from: Source<'a>,
    to: IpAddr,
    expect: Expect,
}

/// A row: `what` (said when it fails), the traffic, where it comes from,
/// the destination address, and the expected outcome.
pub fn probe<'a>(
    what: &'a str,
    traffic: Traffic,
    from: impl Into<Source<'a>>,
    to: impl Into<IpAddr>,
    expect: Expect,
) -> Probe<'a> {
    Probe {
        what,
        traffic,
        from: from.into(),
        to: to.into(),
        expect,
    }
}

/// What a probe saw: passed or not, and in detail.
struct Seen {
    /// The outcome, when it was one of the two a row can expect.
    outcome: Option<Expect>,
    detail: String,
}

impl Seen {
    fn answered(yes: bool) -> Seen {
        let (outcome, detail) = if yes {
            (PASS, "answered")
        } else {
            (DROPPED, "no answer")
        };
        Seen {
            outcome: Some(outcome),
            detail: detail.to_owned(),
        }
    }

    fn tcp(outcome: Outcome) -> Seen {
        Seen {
            outcome: match outcome {
                Outcome::Connected => Some(PASS),
                Outcome::TimedOut => Some(DROPPED),
                _ => None,
            },
            detail: format!("{outcome:?}"),
        }
    }

    fn other(detail: String) -> Seen {
        Seen {
            outcome: None,
            detail,
        }
    }
}

impl Probe<'_> {
    /// Sends the row's traffic and says what happened.
    fn run(&self) -> Seen {
        let Source { ns, addr: src } = self.from;
        let dst = |port| SocketAddr::new(self.to, port);
        match self.traffic {
            Tcp(port) => Seen::tcp(match connect(ns, src, dst(port), DEFAULT_TIMEOUT) {
                Ok(_) => Outcome::Connected,
                Err(e) => Outcome::of(&e),
            }),
            TcpEcho(port) => match connect(ns, src, dst(port), DEFAULT_TIMEOUT) {
                Err(e) => Seen::tcp(Outcome::of(&e)),
                Ok(stream) => {
                    match TcpConn::from_stream(stream, DEFAULT_TIMEOUT).echo(b"sg-tests probe") {
                        Ok(()) => Seen::tcp(Outcome::Connected),
                        Err(e) => Seen::other(format!("connected, but no echo: {e:#}")),
                    }
                }
            },
            Udp(port) => Seen::answered(udp_request(ns, src, dst(port), DEFAULT_TIMEOUT)),
            UdpBytes(port, len) => {
                Seen::answered(udp_echo_len(ns, src, dst(port), len, DEFAULT_TIMEOUT))
            }
            UdpFragmentsOptionsAfter(port, len) => {
                assert!(
                    src.is_none(),
                    "crafted fragments cannot choose their source"
                );
                let echoed = udp6_echo_options_after_fragment(ns, dst(port), len, DEFAULT_TIMEOUT);
                Seen::answered(echoed)
            }
            UdpToClosed(port) | UdpToClosedDestOpts(port) => {
                let opts = matches!(self.traffic, UdpToClosedDestOpts(_));
                match udp_refused_with(ns, src, dst(port), DEFAULT_TIMEOUT, opts) {
                    Ok(refused) => Seen::answered(refused),
                    Err(e) => Seen::other(format!("{e:#}")),
                }
            }
            Ping => {
                assert!(src.is_none(), "a ping probe cannot choose its source");
                Seen::answered(ping(ns, self.to, DEFAULT_TIMEOUT))
            }
        }
    }
}

impl fmt::Display for Probe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?}: {} from {} to {}",
            self.what, self.traffic, self.from, self.to
        )
    }
}

/// Runs every row in order, then panics naming each row whose outcome was
/// not the expected one (and what it was instead).
#[track_caller]
pub fn check(rows: &[Probe<'_>]) {
    let failures: Vec<String> = rows
        .iter()
        .filter_map(|row| {
            let seen = row.run();
            (seen.outcome != Some(row.expect)).then(|| {
                let got = seen.outcome.map_or("neither".to_owned(), |o| o.to_string());
                format!(
                    "  {row}: expected {}, got {got} ({})",
                    row.expect, seen.detail
                )
            })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}
