//! Sessions (SPEC §3.5, §3.6, TCP states): what a session is keyed by,
//! how it follows a TCP connection and when it expires, what ends it and
//! keeps it ended, and how an accepted packet opens one.

use super::*;

/// A session is keyed by protocol, local and remote address and port, the
/// same in both directions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct SessionKey {
    pub(super) proto: u8,
    pub(super) local: IpAddr,
    pub(super) remote: IpAddr,
    pub(super) local_port: u16,
    pub(super) remote_port: u16,
}

#[derive(Debug, Clone)]
pub(super) struct Session {
    /// The packet that opened it and its direction.
    pub(super) opening: Packet,
    pub(super) opened: Direction,
    /// The ruleset generation it was last checked against.
    pub(super) generation: u64,
    pub(super) phase: Phase,
    /// TCP: the directions a FIN went in.
    pub(super) fin: Vec<Direction>,
    /// When its last packet passed (or was dropped, once ended), seconds.
    pub(super) last_seen: u64,
}

/// Where a session is in its life (SPEC §3.5, §3.6). A TCP session
/// follows the connection; each phase has its idle timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Not TCP: `session_timeout_secs`.
    Open,
    /// TCP, and the other side has not answered yet: `syn_timeout_secs`.
    HalfOpen,
    /// TCP, the other side answered, and the opener has not acknowledged
    /// the answer yet: `syn_timeout_secs`. (A server answering a flood of
    /// spoofed SYNs establishes nothing.)
    Answered,
    /// TCP, the handshake is complete: `session_timeout_secs`.
    Established,
    /// TCP after a RST, or a FIN each way: `tcp_closed_timeout_secs`.
    Closed,
    /// An explicit drop rule matches its opening packet (SPEC §3.6): no
    /// packet of it passes, either way, while one does. It does not
    /// expire.
    Ended,
}

impl Session {
    /// Whether it went without a packet for longer than its phase allows.
    pub(super) fn expired(&self, d: &DaemonSettings, now: u64) -> bool {
        let limit = match self.phase {
            Phase::Open | Phase::Established => d.session_timeout_secs,
            Phase::HalfOpen | Phase::Answered => d.syn_timeout_secs,
            Phase::Closed => d.tcp_closed_timeout_secs,
            Phase::Ended => return false,
        };
        now - self.last_seen > limit
    }

    /// A packet in `dir` passed: TCP follows the connection. A RST, or a
    /// FIN each way, closes it; a packet of the side that did not open it
    /// answers it, and the opener's acknowledgement (ACK without SYN) of
    /// that answer establishes it.
    pub(super) fn follow(&mut self, dir: Direction, pkt: &Packet, now: u64) {
        self.last_seen = now;
        if pkt.proto != TCP || self.phase == Phase::Closed {
            return;
        }
        if pkt.has_flag(TCP_FIN) && !self.fin.contains(&dir) {
            self.fin.push(dir);
        }
        if pkt.has_flag(TCP_RST) || self.fin.len() == 2 {
            self.phase = Phase::Closed;
        } else if dir != self.opened && self.phase == Phase::HalfOpen {
            self.phase = Phase::Answered;
        } else if dir == self.opened
            && self.phase == Phase::Answered
            && pkt.has_flag(TCP_ACK)
            && !pkt.has_flag(TCP_SYN)
        {
            self.phase = Phase::Established;
        }
    }
}

pub(super) fn session_key(pkt: &Packet, dir: Direction) -> SessionKey {
    let (local, remote) = sides(pkt, dir);
    let (local_port, remote_port) = match dir {
        Direction::Ingress => (pkt.dst_port, pkt.src_port),
        Direction::Egress => (pkt.src_port, pkt.dst_port),
    };
    SessionKey {
        proto: pkt.proto,
        local,
        remote,
        local_port,
        remote_port,
    }
}

/// What ends a session opened in `opened` by `opening`, checked when the
/// rules change and at every packet of an ended session: the SMTP block,
/// switched on since, ends outbound port-25 sessions (SPEC §3.8); an
/// explicit drop rule matching the opening packet ends any other (SPEC
/// §3.6). Sessions of the metadata service outlive any rule.
pub fn ending(iface: &Interface, opened: Direction, opening: &Packet) -> Option<DecidedBy> {
    if smtp_pmtud_metadata_builtin(iface.config, opened, opening) == Some(BuiltIn::SmtpBlocked) {
        return Some(DecidedBy::BuiltIn(BuiltIn::SmtpBlocked));
    }
    ending_rule(iface, opened, opening).map(|(group, id)| DecidedBy::SessionEnded { group, id })
}

/// The explicit drop rule that ends a session opened in `opened` by
/// `opening` (SPEC §3.6), as (group, rule id). Sessions of the metadata
/// service outlive any rule.
pub fn ending_rule(
    iface: &Interface,
    opened: Direction,
    opening: &Packet,
) -> Option<(String, String)> {
    if smtp_pmtud_metadata_builtin(iface.config, opened, opening) == Some(BuiltIn::Metadata) {
        return None;
    }
    match decide_by_rules(iface, opened, opening) {
        Decision {
            accept: false,
            by: DecidedBy::Rule { group, id },
        } => Some((group, id)),
        _ => None,
    }
}

/// SPEC §3.5, §3.6: a live session passes the packet without the rules,
/// unless the rules changed since it was last checked and an explicit drop
/// rule (or the SMTP block, §3.8) now matches the packet that opened it:
/// then it ends, and stays ended (every packet dropped, both ways) while
/// that holds.
/// `None`: no session decides; the packet is judged as a new one (also a
/// SYN on the ports of a closed TCP connection, and the packets of an
/// ended session that no drop rule matches any more).
pub(super) fn decide_by_session(
    iface: &Interface,
    state: &mut State,
    key: &SessionKey,
    dir: Direction,
    pkt: &Packet,
) -> Option<Decision> {
    let (now, generation) = (state.now, state.generation);
    let session = state.sessions.get_mut(key)?;
    if session.phase != Phase::Ended
        && (session.expired(&iface.config.daemon, now)
            || (session.phase == Phase::Closed && pkt.is_connection_attempt())
            || !pkt.fits_icmp_session(dir == session.opened))
    {
        return None;
    }
    if session.phase == Phase::Ended || session.generation != generation {
        if let Some(by) = ending(iface, session.opened, &session.opening) {
            session.phase = Phase::Ended;
            session.generation = generation;
            session.last_seen = now;
            return Some(Decision::new(false, by));
        }
        if session.phase == Phase::Ended {
            state.sessions.remove(key);
            return None;
        }
        session.generation = generation;
    }
    session.follow(dir, pkt, now);
    Some(Decision::new(true, DecidedBy::Session))
}

/// An accepted packet opens its session (replacing an expired or closed
/// one). A TCP session starts half-open, whatever the flags of its first
/// packet: a connection picked up mid-stream is established once the
/// other side answers. A TCP reset ends a connection: it opens nothing.
pub(super) fn open_session(state: &mut State, key: &SessionKey, dir: Direction, pkt: &Packet) {
    if pkt.has_flag(TCP_RST) {
        return;
    }
    let session = Session {
        opening: pkt.clone(),
        opened: dir,
        generation: state.generation,
        phase: if pkt.proto == TCP {
            Phase::HalfOpen
        } else {
            Phase::Open
        },
        fin: if pkt.has_flag(TCP_FIN) {
            vec![dir]
        } else {
            Vec::new()
        },
        last_seen: state.now,
    };
    state.sessions.insert(key.clone(), session);
}
