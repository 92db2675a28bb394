//! Sessions (SPEC §3.5, §3.6): the key of a packet's session, opening and
//! refreshing a session, and the session stage. A session is keyed by
//! interface, protocol, family, local and remote address and port (ICMP
//! echo: the identifier in both ports), so both directions share it.
//!
//! A TCP session follows the connection: half-open until the other side
//! answers, answered until the opener acknowledges that (the handshake's
//! last step), established, closed after a RST or a FIN each way; each state
//! has its idle timeout (`SessionTimeouts`), which the kernel checks
//! itself. A session lives in the unanswered table (`SG_UNANSWERED`)
//! until the other side answers, then in the answered one
//! (`SG_CONNTRACK`): a flood of new flows can evict only unanswered ones. After a ruleset change a session is checked once against the
//! new explicit drop rules; one that a drop rule matches is ended: it
//! stays as an ended entry that drops every packet of the flow, both ways,
//! while a drop rule still matches it, so neither side can open it again.

use aya_ebpf::{bindings::BPF_NOEXIST, helpers::bpf_ktime_get_boot_ns, maps::LruHashMap};
use sg_common::{
    CtKey, CtValue, Direction, InterfaceConfig, NO_RULE, Reason, SESSION_ANSWERED, SESSION_CLOSED,
    SESSION_ESTABLISHED, SESSION_HALF_OPEN, SESSION_OPEN,
    maps::{STAT_INSERTED, STAT_KERNEL_REMOVED},
    proto::{TCP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
};

use crate::{
    builtins,
    maps::{SG_CONNTRACK, SG_SESSION_STATS, SG_UNANSWERED},
    parse::{self, Flow},
    policy::{self, Outcome},
    work::{Work, finish},
};

/// The session of the packet, in the answered table or else in the
/// unanswered one (see `judge`). An unanswered session moves to the
/// answered table at the first packet the other way, and when a drop
/// rule ends it: a flood of new flows fills the unanswered table only, so
/// it can evict neither an answered session nor an ended one.
#[inline(never)]
#[allow(
    clippy::needless_borrows_for_generic_args,
    reason = "`w.key` is in map memory: by value it would be copied to the stack first"
)]
pub fn stage_session(w: &mut Work, iface: &InterfaceConfig) {
    if let Some(session) = SG_CONNTRACK.get_ptr_mut(&w.key) {
        // SAFETY: the entry stays valid under RCU while the program runs.
        if judge(w, iface, unsafe { &mut *session }) == Seen::Gone {
            remove(&SG_CONNTRACK, ANSWERED, &w.key);
        }
        return;
    }
    let Some(session) = SG_UNANSWERED.get_ptr_mut(&w.key) else {
        return;
    };
    // SAFETY: as above.
    let session = unsafe { &mut *session };
    let seen = judge(w, iface, session);
    if seen == Seen::Gone {
        remove(&SG_UNANSWERED, UNANSWERED, &w.key);
    } else if seen == Seen::Ended || (seen == Seen::Passed && answered(w, session)) {
        promote(w, session);
    }
}

/// Whether the packet, which passed through `session`, answers it: it
/// goes the other way, and does not close it (a RST answering a SYN, say
/// to an outbound scan of closed ports, leaves a dead session that has no
/// claim to the answered table).
#[inline(always)]
fn answered(w: &Work, session: &CtValue) -> bool {
    // TCP: once the handshake is complete (see `follow`), so that the
    // answers a server gives a flood of spoofed SYNs promote nothing.
    if w.packet.proto() == TCP {
        return fresh(&session.state) == SESSION_ESTABLISHED;
    }
    w.direction() as u32 != fresh(&session.opened) && fresh(&session.state) != SESSION_CLOSED
}

/// What `judge` made of a session entry.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Expired, or closed and a SYN opens a new one: as good as absent.
    Absent,
    /// The packet passed through the session.
    Passed,
    /// The session is ended: the packet was dropped.
    Ended,
    /// An ended session nothing ends any more: it goes.
    Gone,
}

/// Table indices of the session statistics (`sg_common::SESSION_TABLES`).
const ANSWERED: u32 = 0;
const UNANSWERED: u32 = 1;

/// A live session passes without rule evaluation. One older than the
/// interface's ruleset, or ended, is checked against the current rules: if
/// an explicit drop rule matches the packet that opened it (or, for an
/// outbound port-25 session, the SMTP block is on), the packet is dropped
/// and the session stays ended (SPEC §3.6, §3.8); an ended session that
/// nothing ends any more goes, and the packet is judged afresh.
///
/// Every field of the entry is read afresh where it is tested, so that
/// the verifier does not carry what one test learnt into the rule check,
/// which it would then walk once for every state an entry can be in.
#[inline(never)]
fn judge(w: &mut Work, iface: &InterfaceConfig, session: &mut CtValue) -> Seen {
    // A session was found: its deadline needs the time.
    w.now = unsafe { bpf_ktime_get_boot_ns() };
    // The kernel checks the idle deadline itself: an expired entry is as
    // good as absent, whatever userspace does. A SYN on the ports of a
    // closed connection opens a new one: the rules judge it. An ended
    // session does not expire.
    // ICMP other than the echo that opened it does not use the session.
    if fresh(&session.ended) == 0
        && (expired(w, session)
            || (fresh(&session.state) == SESSION_CLOSED && is_syn(w.packet.tcp_flags()))
            || !w
                .packet
                .fits_icmp_session(w.direction() as u32 == fresh(&session.opened)))
    {
        return Seen::Absent;
    }
    if fresh(&session.ended) != 0 || fresh(&session.epoch) != iface.epoch {
        let opened = Direction::from_raw(fresh(&session.opened));
        if let Some((reason, rule)) = ending(w, iface, opened) {
            session.ended = 1;
            session.epoch = iface.epoch;
            session.last_seen_ns = w.now;
            finish(w, reason, rule, iface.tables[opened.index()]);
            return Seen::Ended;
        }
        if fresh(&session.ended) != 0 {
            return Seen::Gone;
        }
        session.epoch = iface.epoch;
    }
    follow(session, w);
    finish(w, Reason::Session, NO_RULE, 0);
    Seen::Passed
}

/// Moves an unanswered session to the answered table.
#[inline(never)]
#[allow(
    clippy::needless_borrows_for_generic_args,
    reason = "`w.key` is in map memory: by value it would be copied to the stack first"
)]
fn promote(w: &Work, session: &CtValue) {
    // SAFETY: a plain read of an initialised map value.
    let value = unsafe { core::ptr::read_volatile(session) };
    if SG_CONNTRACK.insert(&w.key, value, 0).is_ok() {
        count_stat(STAT_INSERTED + ANSWERED);
        remove(&SG_UNANSWERED, UNANSWERED, &w.key);
    }
}

/// Removes `key` from session table `table` (index `index`), counting it.
#[inline(always)]
fn remove(table: &LruHashMap<CtKey, CtValue>, index: u32, key: &CtKey) {
    if table.remove(key).is_ok() {
        count_stat(STAT_KERNEL_REMOVED + index);
    }
}

/// Adds one to this CPU's session statistic `slot`.
#[inline(always)]
fn count_stat(slot: u32) {
    if let Some(n) = SG_SESSION_STATS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot: no other writer.
        unsafe { *n += 1 };
    }
}

/// A fresh load of a field of a session entry.
#[inline(always)]
fn fresh<T: Copy>(field: &T) -> T {
    // SAFETY: a plain read of an initialised field of a map value.
    unsafe { core::ptr::read_volatile(field) }
}

/// Whether the session has been idle for longer than its state allows.
#[inline(never)]
fn expired(w: &Work, session: &CtValue) -> bool {
    w.timeouts
        .expired(fresh(&session.state), fresh(&session.last_seen_ns), w.now)
}

/// What ends the session, as the reason and the deciding rule: the SMTP
/// block for an outbound port-25 session, or the explicit drop rule of the
/// current ruleset that matches the packet that opened it.
#[inline(always)]
fn ending(w: &Work, iface: &InterfaceConfig, opened: Direction) -> Option<(Reason, u32)> {
    let opening = opening_flow(&w.key, opened);
    match builtins::smtp_pmtud_metadata(&opening, opened, w.global_flags) {
        // The SMTP block, switched on since, ends port-25 sessions.
        Some(Reason::SmtpBlocked) => return Some((Reason::SmtpBlocked, NO_RULE)),
        // Sessions the metadata built-in opened no rule can end.
        Some(Reason::Metadata) => return None,
        _ => {}
    }
    match policy::classify(iface.tables[opened.index()], &opening, opened) {
        Outcome::Rule {
            accept: false,
            index,
        } => Some((Reason::SessionEnded, index)),
        _ => None,
    }
}

/// A packet passed through the session: it refreshes it, and a TCP
/// session follows the connection. The entry is shared by the CPUs that
/// carry the flow, so it is written only when something moved: the state
/// or the FIN bits changed (then `last_seen_ns` too), or `last_seen_ns`
/// is more than [`REFRESH_NS`] old. Idle timeouts are whole seconds, so a
/// session may expire up to that much earlier than its last packet plus
/// its timeout, never later.
#[inline(never)]
fn follow(session: &mut CtValue, w: &Work) {
    let stale = w.now.saturating_sub(fresh(&session.last_seen_ns)) > REFRESH_NS;
    if w.packet.proto() != TCP || fresh(&session.state) == SESSION_CLOSED {
        if stale {
            session.last_seen_ns = w.now;
        }
        return;
    }
    let flags = w.packet.tcp_flags();
    let dir = w.direction() as u8;
    // The FIN flag is bit 0: it becomes the bit of the direction.
    let fin = fresh(&session.fin) | ((flags & TCP_FIN) << dir);
    let from_opener = dir as u32 == fresh(&session.opened);
    let state = fresh(&session.state);
    let next = if flags & TCP_RST != 0 || fin == 0b11 {
        SESSION_CLOSED
    } else if !from_opener && state == SESSION_HALF_OPEN {
        SESSION_ANSWERED
    } else if from_opener && state == SESSION_ANSWERED && flags & (TCP_SYN | TCP_ACK) == TCP_ACK {
        SESSION_ESTABLISHED
    } else {
        state
    };
    let moved = fin != fresh(&session.fin) || next != state;
    if moved {
        session.fin = fin;
        session.state = next;
    }
    if moved || stale {
        session.last_seen_ns = w.now;
    }
}

/// How old `last_seen_ns` may get before a passing packet rewrites it.
const REFRESH_NS: u64 = 1_000_000_000;

/// A TCP connection attempt: SYN without ACK.
#[inline(always)]
fn is_syn(flags: u8) -> bool {
    flags & (TCP_SYN | TCP_ACK) == TCP_SYN
}

/// Whether the session in `session` is live at `w.now`: not expired and
/// not ended (related ICMP).
#[inline(always)]
pub fn live(w: &Work, session: &CtValue) -> bool {
    fresh(&session.ended) == 0 && !expired(w, session)
}

/// The session key of `flow` going in direction `dir` on `ifindex`.
#[inline(always)]
pub fn session_key(ifindex: u32, flow: &Flow, dir: Direction) -> CtKey {
    let (local, remote, local_port, remote_port) = match dir {
        Direction::Ingress => (flow.dst, flow.src, flow.dst_port(), flow.src_port()),
        Direction::Egress => (flow.src, flow.dst, flow.src_port(), flow.dst_port()),
    };
    CtKey {
        ifindex,
        local,
        remote,
        local_port,
        remote_port,
        proto: flow.proto(),
        family: flow.family(),
        _pad: [0; 2],
    }
}

/// Opens the session of the packet in `w` (replacing an expired or closed
/// entry), under ruleset `epoch`. TCP starts half-open, whatever the
/// flags of the first packet (a connection picked up mid-stream is
/// established once the other side answers too); a RST opens nothing.
#[inline(always)]
#[allow(
    clippy::needless_borrows_for_generic_args,
    reason = "`w.key` is in map memory: by value it would be copied to the stack first"
)]
pub fn open_session(w: &mut Work, epoch: u32) {
    w.now = unsafe { bpf_ktime_get_boot_ns() };
    let flags = w.packet.tcp_flags();
    if flags & TCP_RST != 0 {
        return;
    }
    let dir = w.direction() as u8;
    // Zeroed whole (word stores), then filled: built field by field, its
    // byte padding would be a call to a byte-wise `memset`.
    // SAFETY: `CtValue` is plain data; all zeroes is a valid value.
    let mut value: CtValue = unsafe { core::mem::zeroed() };
    value.last_seen_ns = w.now;
    value.opened = dir as u32;
    value.epoch = epoch;
    value.state = if w.packet.proto() == TCP {
        SESSION_HALF_OPEN
    } else {
        SESSION_OPEN
    };
    value.fin = (flags & TCP_FIN) << dir;
    // A stale entry of the flow (expired, or closed) goes: the new
    // session starts unanswered. A full table evicts the least recently
    // used unanswered session (LRU map); NOEXIST: a session another CPU
    // opened meanwhile stays, and is not counted twice.
    remove(&SG_CONNTRACK, ANSWERED, &w.key);
    remove(&SG_UNANSWERED, UNANSWERED, &w.key);
    if SG_UNANSWERED
        .insert(&w.key, value, BPF_NOEXIST.into())
        .is_ok()
    {
        count_stat(STAT_INSERTED + UNANSWERED);
    }
}

/// The packet that opened a session, rebuilt from its key.
#[inline(always)]
fn opening_flow(key: &CtKey, opened: Direction) -> Flow {
    let (src, dst, src_port, dst_port) = match opened {
        Direction::Ingress => (key.remote, key.local, key.remote_port, key.local_port),
        Direction::Egress => (key.local, key.remote, key.local_port, key.remote_port),
    };
    let mut flow = parse::empty_flow(key.family, key.proto);
    (flow.src, flow.dst, flow.src_port, flow.dst_port) = (src, dst, src_port, dst_port);
    flow
}
