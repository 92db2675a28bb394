//! Sessions (SPEC §3.6): the key of a packet's session, opening and
//! refreshing a session, and the session stage. A session is keyed by
//! interface, protocol, family, local and remote address and port (ICMP
//! echo: the identifier in both ports), so both directions share it. The
//! kernel checks the idle deadline itself; after a ruleset change a session
//! is checked once against the new explicit drop rules.

use sg_common::{CtKey, CtValue, Direction, InterfaceConfig, NO_RULE, Reason};

use crate::{
    builtins,
    maps::SG_CONNTRACK,
    parse::{self, Flow},
    policy::{self, Outcome},
    work::{Work, finish},
};

/// A live session passes without rule evaluation. One older than the
/// interface's ruleset is checked once against the current rules: if an
/// explicit drop rule matches the packet that opened it, it ends here
/// (SPEC §3.6), and so does an outbound port-25 session once the SMTP
/// block is on (SPEC §3.8); otherwise it is stamped with the current epoch.
#[inline(never)]
#[allow(
    clippy::needless_borrows_for_generic_args,
    reason = "`w.key` is in map memory: by value it would be copied to the stack first"
)]
pub fn stage_session(w: &mut Work, iface: &InterfaceConfig) {
    let Some(session) = SG_CONNTRACK.get_ptr_mut(&w.key) else {
        return;
    };
    // The kernel checks the idle deadline itself: an expired entry is as
    // good as absent, whatever userspace does.
    let (last_seen, epoch, opened) = unsafe {
        (
            (*session).last_seen_ns,
            (*session).epoch,
            Direction::from_raw((*session).opened),
        )
    };
    if w.now.wrapping_sub(last_seen) > w.timeout_ns {
        return;
    }
    if epoch != iface.epoch {
        let opening = opening_flow(&w.key, opened);
        let table = iface.tables[opened.index()];
        let builtin = builtins::smtp_pmtud_metadata(&opening, opened, w.global_flags);
        // The SMTP block, switched on since, ends port-25 sessions.
        if builtin == Some(Reason::SmtpBlocked) {
            let _ = SG_CONNTRACK.remove(&w.key);
            return finish(w, Reason::SmtpBlocked, NO_RULE, 0);
        }
        // Sessions the metadata built-in opened no rule can end.
        let metadata = builtin == Some(Reason::Metadata);
        if !metadata
            && let Outcome::Rule {
                accept: false,
                index,
            } = policy::classify(table, &opening, opened)
        {
            let _ = SG_CONNTRACK.remove(&w.key);
            return finish(w, Reason::SessionEnded, index, table);
        }
        unsafe { (*session).epoch = iface.epoch };
    }
    unsafe { (*session).last_seen_ns = w.now };
    finish(w, Reason::Session, NO_RULE, 0);
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

/// Opens (or refreshes) the session `key`, opened in direction `dir`
/// under ruleset `epoch`.
#[inline(always)]
pub fn open_session(key: &CtKey, now: u64, dir: Direction, epoch: u32) {
    let value = CtValue {
        last_seen_ns: now,
        opened: dir as u32,
        epoch,
    };
    // A full table evicts the least recently used session (LRU map).
    let _ = SG_CONNTRACK.insert(key, value, 0);
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
