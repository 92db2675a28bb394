//! The decision of SPEC §3, written to be read beside it. This is the
//! meaning of a ruleset; the compiler and the kernel program are fast ways
//! to compute the same thing, and the tests (and `sgd` itself, before it
//! applies a ruleset) check them against this module.
//!
//! Nothing here is shared with `compile/`: the merge, the order and the
//! matching are written again, plainly, from the SPEC.
//!
//! Packets are IP packets. What a hypervisor-mode instance says on the
//! link below IP (its source MAC, ARP) is not modelled: that check depends
//! on no rule, session or built-in, only on the binding's `addresses` and
//! `mac`, and it is tested on crafted frames (`tests/tests/testrun.rs`)
//! and real traffic (`tests/tests/attacks.rs`). Neighbour discovery is IP
//! and is modelled, down to the target address an advertisement claims.
//!
//! This module holds the decision itself ([`decide`]) and what it returns;
//! `packet` the packet, `rules` the ordered rules and their matching,
//! `builtins` the exceptions no rule changes, `sessions` the session table.

mod builtins;
mod packet;
mod rules;
mod sessions;

use std::{collections::HashMap, net::IpAddr};

use ipnet::IpNet;

use crate::model::{
    Addresses, BindingMode, Config, DaemonSettings, Direction, GroupType, InterfaceBinding, Peer,
    Policy, PortRange, Protocol, Rule,
};

/// Protocol numbers and TCP flags, from the one protocol table.
pub use sg_common::proto::{ICMP, ICMPV6, TCP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, UDP};

pub use builtins::decide_not_ip;
pub use packet::{Fragment, Packet};
pub use rules::{decide_by_ordered_rules, decide_by_rules, ordered_rules};
pub use sessions::{ending, ending_rule};

use builtins::{nd_dhcp_builtin, poses_on_the_link, smtp_pmtud_metadata_builtin};
use rules::sides;
use sessions::{Phase, Session, SessionKey, decide_by_session, open_session, session_key};

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

/// A datagram, as the receiver's reassembly names its fragments: the
/// addresses and the identification, and for IPv4 the protocol (RFC 791).
/// IPv6 leaves the protocol out (RFC 8200 §4.5): only the first fragment
/// says which upper-layer protocol follows the extension headers, and a
/// later one shows only the Fragment header's next header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct DatagramKey {
    pub(super) src: IpAddr,
    pub(super) dst: IpAddr,
    pub(super) proto: Option<u8>,
    pub(super) id: u32,
}

impl DatagramKey {
    pub(super) fn of(pkt: &Packet, id: u32) -> DatagramKey {
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
