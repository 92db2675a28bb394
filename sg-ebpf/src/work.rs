//! The per-CPU work area one packet is decided in, and how a stage records
//! its decision. It lives in a map (`SG_WORK`), not on the stack, so that
//! the parser and every stage can be separate BPF functions that read the
//! packet from it and write the decision into it.

use sg_common::{CtKey, Direction, Reason, SessionTimeouts};

use crate::parse::Flow;

/// One packet's working state: the parsed packet, what the stages share,
/// and the decision once a stage makes it. It lives in a per-CPU map, not
/// on the stack, and each stage is a separate BPF function that writes
/// into it: the verifier then sees every stage's paths end in the same
/// state and merges them, instead of following every combination of
/// protocol, built-in, session and rule outcome to the end.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Work {
    /// The packet, as parsed.
    pub packet: Flow,
    /// The packet an ICMP error quotes (the related stage).
    pub quoted: Flow,
    /// The packet's session key.
    pub key: CtKey,
    /// Boot time of the decision, ns: 0 until a stage that needs the time
    /// reads the clock (a session found or opened, a fragment, related
    /// ICMP). A packet that needs none (a new flow a rule drops, a frame
    /// that is not IP) does not pay for the clock; the drop-record budget
    /// uses the coarse clock, and a drop record reads the time itself.
    pub now: u64,
    /// How long sessions live idle, by state.
    pub timeouts: SessionTimeouts,
    /// `GLOBAL_*` bits.
    pub global_flags: u32,
    pub ifindex: u32,
    /// The interface's counter slot (`InterfaceConfig::slot`).
    pub slot: u32,
    /// The packet's `Direction` (as u32), seen from the instance.
    pub dir: u32,
    /// Set once a stage has decided.
    pub done: u32,
    pub reason: u32,
    /// The deciding rule's index in table `table`, or `NO_RULE`.
    pub rule: u32,
    pub table: u32,
}

impl Work {
    /// The packet's direction, seen from the instance.
    #[inline(always)]
    pub fn direction(&self) -> Direction {
        Direction::from_raw(self.dir)
    }
}

/// Records the decision; later stages see `done` and do nothing.
#[inline(always)]
pub fn finish(w: &mut Work, reason: Reason, rule: u32, table: u32) {
    w.reason = reason as u32;
    w.rule = rule;
    w.table = table;
    w.done = 1;
}

#[inline(always)]
pub fn done(w: &Work) -> bool {
    // A fresh load: what a stage wrote is unknown to the verifier here.
    unsafe { core::ptr::read_volatile(&w.done) != 0 }
}
