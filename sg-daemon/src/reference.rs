//! The decision of SPEC §3, written to be read beside it. This is the
//! meaning of a ruleset; the compiler and the kernel program are fast ways
//! to compute the same thing, and the tests (and `sgd` itself, before it
//! applies a ruleset) check them against this module.
//!
//! Nothing here is shared with `compile.rs`: the merge, the order and the
//! matching are written again, plainly, from the SPEC.
//!
//! Packets are IP packets. What a hypervisor-mode instance says on the
//! link below IP (its source MAC, ARP) is not modelled: that check depends
//! on no rule, session or built-in, only on the binding's `addresses` and
//! `mac`, and it is tested on crafted frames (`tests/tests/testrun.rs`)
//! and real traffic (`tests/tests/attacks.rs`). Neighbour discovery is IP
//! and is modelled, down to the target address an advertisement claims.

use std::{collections::HashMap, net::IpAddr};

use ipnet::IpNet;

use crate::model::{
    Addresses, BindingMode, Config, DaemonSettings, Direction, GroupType, InterfaceBinding, Peer,
    Policy, PortRange, Protocol, Rule,
};

/// Protocol numbers and TCP flags, from the one protocol table.
pub use sg_common::proto::{ICMP, ICMPV6, TCP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, UDP};

/// A parsed packet, as one interface sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    /// TCP and UDP ports. For ICMP echo requests and replies both carry the
    /// identifier (a reply belongs to its request's session); 0 otherwise.
    pub src_port: u16,
    pub dst_port: u16,
    /// ICMP or ICMPv6 type and code.
    pub icmp: Option<(u8, u8)>,
    /// TCP flags (`TCP_SYN`, `TCP_ACK`, `TCP_FIN`, `TCP_RST`); 0 otherwise.
    pub tcp_flags: u8,
    pub fragment: Fragment,
    /// The packet an ICMP error quotes, when the quote names one.
    pub quoted: Option<Box<Packet>>,
    /// The target address of an ICMPv6 neighbour solicitation or
    /// advertisement: the address it asks about or claims.
    pub nd_target: Option<IpAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fragment {
    No,
    /// Offset 0 with more to come; `id` is the datagram's identification.
    First {
        id: u32,
    },
    /// A later fragment: no transport header, so no ports.
    Later {
        id: u32,
    },
}

impl Packet {
    /// Later fragments carry no transport header, hence no ports.
    fn has_ports(&self) -> bool {
        (self.proto == TCP || self.proto == UDP) && !matches!(self.fragment, Fragment::Later { .. })
    }

    /// The ports rules look at: 0 without TCP/UDP (`-1/-1` rules).
    fn rule_ports(&self) -> (u16, u16) {
        if self.has_ports() {
            (self.src_port, self.dst_port)
        } else {
            (0, 0)
        }
    }

    fn icmp_type(&self) -> Option<u8> {
        self.icmp.map(|(t, _)| t)
    }

    fn is_icmp_error(&self) -> bool {
        match (self.proto, self.icmp_type()) {
            (ICMP, Some(t)) => self.src.is_ipv4() && matches!(t, 3 | 11 | 12),
            (ICMPV6, Some(t)) => self.src.is_ipv6() && (1..=4).contains(&t),
            _ => false,
        }
    }

    /// SPEC §3.5: accepted packets are tracked, except ICMP other than an
    /// echo request, and later fragments (no ports to track them by).
    fn opens_session(&self) -> bool {
        if matches!(self.fragment, Fragment::Later { .. }) {
            return false;
        }
        match self.proto {
            ICMP => self.icmp_type() == Some(8),
            ICMPV6 => self.icmp_type() == Some(128),
            _ => true,
        }
    }

    fn has_flag(&self, flag: u8) -> bool {
        self.proto == TCP && self.tcp_flags & flag != 0
    }

    /// A TCP connection attempt: SYN without ACK.
    fn is_connection_attempt(&self) -> bool {
        self.has_flag(TCP_SYN) && !self.has_flag(TCP_ACK)
    }
}

/// Which built-in exception decided (SPEC §3.7, §3.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltIn {
    /// A frame that is not IP ([`decide_not_ip`]).
    NotIp,
    Metadata,
    Pmtud,
    NeighborDiscovery,
    DhcpClient,
    SmtpBlocked,
}

/// What decided a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecidedBy {
    /// An explicit rule of a group.
    Rule {
        group: String,
        id: String,
    },
    /// The hidden intra-group accept of basic groups.
    IntraGroup,
    /// The hidden default of the direction.
    Default,
    BuiltIn(BuiltIn),
    /// A tracked session.
    Session,
    /// A tracked session that an explicit drop rule of a newer ruleset
    /// matches: it ends (SPEC §3.6).
    SessionEnded {
        group: String,
        id: String,
    },
    /// An ICMP error about a tracked session.
    Related,
    /// A later fragment, decided like its first fragment; `None` when the
    /// first fragment was not seen.
    Fragment(Option<Box<Decision>>),
    /// A hypervisor-mode instance sending from an address not its own.
    Spoofed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub accept: bool,
    pub by: DecidedBy,
}

impl Decision {
    fn new(accept: bool, by: DecidedBy) -> Decision {
        Decision { accept, by }
    }
}

/// One bound interface and everything its decision depends on.
pub struct Interface<'a> {
    pub config: &'a Config,
    pub binding: &'a InterfaceBinding,
    pub addresses: &'a Addresses,
}

/// A session is keyed by protocol, local and remote address and port, the
/// same in both directions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SessionKey {
    proto: u8,
    local: IpAddr,
    remote: IpAddr,
    local_port: u16,
    remote_port: u16,
}

#[derive(Debug, Clone)]
struct Session {
    /// The packet that opened it and its direction.
    opening: Packet,
    opened: Direction,
    /// The ruleset generation it was last checked against.
    generation: u64,
    phase: Phase,
    /// TCP: the directions a FIN went in.
    fin: Vec<Direction>,
    /// When its last packet passed (or was dropped, once ended), seconds.
    last_seen: u64,
}

/// Where a session is in its life (SPEC §3.5, §3.6). A TCP session
/// follows the connection; each phase has its idle timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not TCP: `session_timeout_secs`.
    Open,
    /// TCP, and the other side has not answered yet: `syn_timeout_secs`.
    HalfOpen,
    /// TCP, both sides have sent: `session_timeout_secs`.
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
    fn expired(&self, d: &DaemonSettings, now: u64) -> bool {
        let limit = match self.phase {
            Phase::Open | Phase::Established => d.session_timeout_secs,
            Phase::HalfOpen => d.syn_timeout_secs,
            Phase::Closed => d.tcp_closed_timeout_secs,
            Phase::Ended => return false,
        };
        now - self.last_seen > limit
    }

    /// A packet in `dir` passed: TCP follows the connection. A RST, or a
    /// FIN each way, closes it; any packet of the side that did not open
    /// it establishes it.
    fn follow(&mut self, dir: Direction, pkt: &Packet, now: u64) {
        self.last_seen = now;
        if pkt.proto != TCP || self.phase == Phase::Closed {
            return;
        }
        if pkt.has_flag(TCP_FIN) && !self.fin.contains(&dir) {
            self.fin.push(dir);
        }
        if pkt.has_flag(TCP_RST) || self.fin.len() == 2 {
            self.phase = Phase::Closed;
        } else if dir != self.opened {
            self.phase = Phase::Established;
        }
    }
}

/// A datagram, as the receiver's reassembly names its fragments: the
/// addresses and the identification, and for IPv4 the protocol (RFC 791).
/// IPv6 leaves the protocol out (RFC 8200 §4.5): only the first fragment
/// says which upper-layer protocol follows the extension headers, and a
/// later one shows only the Fragment header's next header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct DatagramKey {
    src: IpAddr,
    dst: IpAddr,
    proto: Option<u8>,
    id: u32,
}

impl DatagramKey {
    fn of(pkt: &Packet, id: u32) -> DatagramKey {
        DatagramKey {
            src: pkt.src,
            dst: pkt.dst,
            proto: pkt.src.is_ipv4().then_some(pkt.proto),
            id,
        }
    }
}

/// What the decision remembers between packets of one interface. Time is
/// not modelled: sessions are live (within their idle timeout) and first
/// fragments remembered (within `sg_common::FRAGMENT_TIMEOUT_SECS`) for as long
/// as a state is used.
#[derive(Debug, Default)]
pub struct State {
    sessions: HashMap<SessionKey, Session>,
    first_fragments: HashMap<DatagramKey, Decision>,
    generation: u64,
    /// The clock sessions expire by, seconds.
    now: u64,
}

impl State {
    /// The interface's rules or bindings changed (SPEC §3.6).
    pub fn ruleset_changed(&mut self) {
        self.generation += 1;
    }

    /// `secs` seconds pass without a packet.
    pub fn wait(&mut self, secs: u64) {
        self.now += secs;
    }
}

/// SPEC §3 steps 1 and 2: the rules of `dir` from all bound groups, by
/// priority, drop before accept at equal priority, then binding order of
/// the groups, then file order.
pub fn ordered_rules<'a>(iface: &Interface<'a>, dir: Direction) -> Vec<(&'a str, &'a Rule)> {
    let mut rules = Vec::new();
    for group_id in &iface.binding.security_groups {
        if let Some(group) = iface.config.group(group_id) {
            for rule in group.rules(dir) {
                rules.push((group.id.as_str(), rule));
            }
        }
    }
    rules.sort_by_key(|(_, rule)| {
        let drop_first = match rule.policy {
            Policy::Drop => 0,
            Policy::Accept => 1,
        };
        (rule.priority, drop_first)
    });
    rules
}

/// Local and remote address of a packet in a direction.
fn sides(pkt: &Packet, dir: Direction) -> (IpAddr, IpAddr) {
    match dir {
        Direction::Ingress => (pkt.dst, pkt.src),
        Direction::Egress => (pkt.src, pkt.dst),
    }
}

/// SPEC §2 and §3 step 3: protocol, ports and addresses.
fn rule_matches(iface: &Interface, rule: &Rule, dir: Direction, pkt: &Packet) -> bool {
    let (local, remote) = sides(pkt, dir);
    let (src_port, dst_port) = pkt.rule_ports();
    let protocol = match rule.protocol {
        Protocol::All => true,
        Protocol::Number(n) => n == pkt.proto,
    };
    let in_ranges = |ranges: &[PortRange], port: u16| ranges.iter().any(|r| r.contains(port));
    let remote_ok = match &rule.peer {
        Peer::Cidrs(nets) => nets.iter().any(|n| n.contains(&remote)),
        Peer::Group(id) => iface
            .addresses
            .members(id)
            .iter()
            .any(|n| n.contains(&remote)),
    };
    protocol
        && in_ranges(&rule.ports, dst_port)
        && rule.source_ports.contains(src_port)
        && remote_ok
        && rule.local.is_none_or(|n| n.contains(&local))
}

/// SPEC §3 steps 3 and 4 for one packet: the first matching rule, or the
/// hidden defaults.
pub fn decide_by_rules(iface: &Interface, dir: Direction, pkt: &Packet) -> Decision {
    decide_by_ordered_rules(iface, dir, &ordered_rules(iface, dir), pkt)
}

/// [`decide_by_rules`] with the ordered rules computed once by the caller.
pub fn decide_by_ordered_rules(
    iface: &Interface,
    dir: Direction,
    ordered: &[(&str, &Rule)],
    pkt: &Packet,
) -> Decision {
    for &(group, rule) in ordered {
        if rule_matches(iface, rule, dir, pkt) {
            let by = DecidedBy::Rule {
                group: group.to_owned(),
                id: rule.id.clone(),
            };
            return Decision::new(rule.policy == Policy::Accept, by);
        }
    }
    let groups: Vec<_> = iface
        .binding
        .security_groups
        .iter()
        .filter_map(|id| iface.config.group(id))
        .collect();
    let enterprise = groups.iter().any(|g| g.kind == GroupType::Enterprise);
    if enterprise {
        // Everything not accepted by a rule is dropped, both ways.
        return Decision::new(false, DecidedBy::Default);
    }
    match dir {
        Direction::Egress => Decision::new(true, DecidedBy::Default),
        Direction::Ingress => {
            let (_, remote) = sides(pkt, dir);
            let from_member = groups.iter().filter(|g| g.inner_access_accept).any(|g| {
                iface
                    .addresses
                    .members(&g.id)
                    .iter()
                    .any(|n: &IpNet| n.contains(&remote))
            });
            if from_member {
                Decision::new(true, DecidedBy::IntraGroup)
            } else {
                Decision::new(false, DecidedBy::Default)
            }
        }
    }
}

/// SPEC §3.7: a frame that is not IP passes while `builtin_non_ip` is on
/// (the default). ARP (ethertype 0x0806) passes either way: IPv4 on
/// Ethernet does not work without it, as IPv6 does not without neighbour
/// discovery.
pub fn decide_not_ip(config: &Config, ethertype: u16) -> Decision {
    const ARP: u16 = 0x0806;
    Decision::new(
        ethertype == ARP || config.daemon.builtin_non_ip,
        DecidedBy::BuiltIn(BuiltIn::NotIp),
    )
}

/// Built-ins the host needs to stay on the network (SPEC §3.7): neighbour
/// and router discovery with MLD, redirects if switched on, DHCP client
/// exchanges.
fn nd_dhcp_builtin(config: &Config, dir: Direction, pkt: &Packet) -> Option<BuiltIn> {
    let d = &config.daemon;
    let neighbor_discovery = match (pkt.proto, pkt.icmp_type()) {
        // MLD query, report and done (130–132), router solicitation and
        // advertisement, neighbour solicitation and advertisement
        // (133–136), MLDv2 report (143): IPv6 needs them on every link,
        // MLD also behind switches that snoop it.
        (ICMPV6, Some(130..=136 | 143)) => d.builtin_neighbor_discovery,
        // Redirects: only if switched on (off by default).
        (ICMPV6, Some(137)) => d.builtin_nd_redirects,
        _ => false,
    };
    if neighbor_discovery && pkt.src.is_ipv6() {
        return Some(BuiltIn::NeighborDiscovery);
    }
    if d.builtin_dhcp_client && pkt.proto == UDP {
        let (client, server) = if pkt.src.is_ipv4() {
            (68, 67)
        } else {
            (546, 547)
        };
        let exchange = match dir {
            Direction::Egress => (pkt.src_port, pkt.dst_port) == (client, server),
            Direction::Ingress => (pkt.src_port, pkt.dst_port) == (server, client),
        };
        if exchange {
            return Some(BuiltIn::DhcpClient);
        }
    }
    None
}

/// The port 25 restriction, PMTUD and the metadata service (SPEC §3.7,
/// §3.8).
fn smtp_pmtud_metadata_builtin(config: &Config, dir: Direction, pkt: &Packet) -> Option<BuiltIn> {
    let outbound = dir == Direction::Egress;
    if outbound && config.daemon.block_smtp_egress && pkt.proto == TCP && pkt.rule_ports().1 == 25 {
        return Some(BuiltIn::SmtpBlocked);
    }
    if !outbound {
        let pmtud = match (pkt.proto, pkt.icmp) {
            (ICMP, Some((3, 4))) => pkt.src.is_ipv4(),
            (ICMPV6, Some((2, _))) => pkt.src.is_ipv6(),
            _ => false,
        };
        if pmtud {
            return Some(BuiltIn::Pmtud);
        }
    }
    let metadata: IpAddr = [100, 100, 100, 200].into();
    if outbound && pkt.dst == metadata {
        return Some(BuiltIn::Metadata);
    }
    None
}

fn session_key(pkt: &Packet, dir: Direction) -> SessionKey {
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

/// The whole decision for one packet in `dir` (as seen from the
/// instance), updating `state` the way the kernel does.
pub fn decide(iface: &Interface, state: &mut State, dir: Direction, pkt: &Packet) -> Decision {
    let d = decide_packet(iface, state, dir, pkt);
    if let Fragment::First { id } = pkt.fragment {
        state
            .first_fragments
            .insert(DatagramKey::of(pkt, id), d.clone());
    }
    d
}

fn decide_packet(iface: &Interface, state: &mut State, dir: Direction, pkt: &Packet) -> Decision {
    // SPEC §3.9: later fragments follow their first fragment; unknown ones
    // are dropped inbound and judged without ports outbound.
    if let Fragment::Later { id } = pkt.fragment {
        match state.first_fragments.get(&DatagramKey::of(pkt, id)) {
            Some(first) => {
                return Decision::new(
                    first.accept,
                    DecidedBy::Fragment(Some(Box::new(first.clone()))),
                );
            }
            None if dir == Direction::Ingress => {
                return Decision::new(false, DecidedBy::Fragment(None));
            }
            None => {}
        }
    }
    // SPEC §2: a hypervisor-mode instance may only send from its addresses;
    // its neighbour discovery and DHCP may also use the unspecified or a
    // link-local address (SPEC §3.7), which no group grants anything to.
    let nd_dhcp = nd_dhcp_builtin(iface.config, dir, pkt);
    let unspecified_or_link_local = match pkt.src {
        IpAddr::V4(a) => a.is_unspecified(),
        IpAddr::V6(a) => a.is_unspecified() || a.is_unicast_link_local(),
    };
    if iface.binding.mode == BindingMode::Hypervisor
        && dir == Direction::Egress
        && !iface
            .addresses
            .instance(&iface.binding.name)
            .contains(&pkt.src)
        && !(nd_dhcp.is_some() && unspecified_or_link_local)
    {
        return Decision::new(false, DecidedBy::Spoofed);
    }
    if iface.binding.mode == BindingMode::Hypervisor
        && dir == Direction::Egress
        && poses_on_the_link(iface, pkt)
    {
        return Decision::new(false, DecidedBy::Spoofed);
    }
    if let Some(b) = nd_dhcp {
        return Decision::new(true, DecidedBy::BuiltIn(b));
    }

    // SPEC §3.5 and §3.6: sessions.
    let key = session_key(pkt, dir);
    if let Some(d) = decide_by_session(iface, state, &key, dir, pkt) {
        return d;
    }
    // SPEC §3.5: errors quoting a live session (not expired, not ended).
    if pkt.is_icmp_error()
        && let Some(quoted) = &pkt.quoted
        && let Some(s) = state.sessions.get(&session_key(quoted, dir.reverse()))
        && s.phase != Phase::Ended
        && !s.expired(&iface.config.daemon, state.now)
    {
        return Decision::new(true, DecidedBy::Related);
    }

    if let Some(b) = smtp_pmtud_metadata_builtin(iface.config, dir, pkt) {
        // SPEC §3.7: the metadata service's TCP, UDP and echo requests
        // open sessions (for their replies); other protocols pass packet
        // by packet.
        if b == BuiltIn::Metadata && matches!(pkt.proto, TCP | UDP | ICMP) && pkt.opens_session() {
            open_session(state, &key, dir, pkt);
        }
        return Decision::new(b != BuiltIn::SmtpBlocked, DecidedBy::BuiltIn(b));
    }
    let d = decide_by_rules(iface, dir, pkt);
    if d.accept && pkt.opens_session() {
        open_session(state, &key, dir, pkt);
    }
    d
}

/// Neighbour discovery by which a hypervisor-mode instance would pose as
/// a router or as another instance, whatever the built-ins and rules say:
/// router advertisements and redirects (RA guard), and neighbour
/// advertisements whose target is neither one of its addresses nor
/// link-local (its link-local addresses are not configured; no group
/// grants them anything). A later fragment carries no ICMPv6 header.
fn poses_on_the_link(iface: &Interface, pkt: &Packet) -> bool {
    if pkt.proto != ICMPV6 || !pkt.src.is_ipv6() || matches!(pkt.fragment, Fragment::Later { .. }) {
        return false;
    }
    let own = |target: &IpAddr| {
        matches!(target, IpAddr::V6(t) if t.is_unicast_link_local())
            || iface
                .addresses
                .instance(&iface.binding.name)
                .contains(target)
    };
    match pkt.icmp_type() {
        Some(134 | 137) => true,
        Some(136) => !pkt.nd_target.as_ref().is_some_and(own),
        _ => false,
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
fn decide_by_session(
    iface: &Interface,
    state: &mut State,
    key: &SessionKey,
    dir: Direction,
    pkt: &Packet,
) -> Option<Decision> {
    let (now, generation) = (state.now, state.generation);
    let session = state.sessions.get_mut(key)?;
    if session.expired(&iface.config.daemon, now)
        || (session.phase == Phase::Closed && pkt.is_connection_attempt())
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
fn open_session(state: &mut State, key: &SessionKey, dir: Direction, pkt: &Packet) {
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
