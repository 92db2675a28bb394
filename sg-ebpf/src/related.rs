//! Related ICMP (SPEC §3.5): an ICMP error whose quoted packet belongs to a
//! live session (not expired, not ended) passes without rule evaluation,
//! as it reports on traffic already admitted. The quote is parsed only
//! here ([`parse::quoted`]).

use aya_ebpf::programs::TcContext;
use sg_common::{NO_RULE, Reason};

use crate::{
    conntrack::{live, session_key},
    maps::{SG_CONNTRACK, SG_UNANSWERED},
    parse,
    work::{Work, finish},
};

/// ICMP errors that quote a live session pass as related (SPEC §3.5).
#[inline(never)]
pub fn stage_related(ctx: &TcContext, w: &mut Work) {
    if !w.packet.is_icmp_error() || !parse::quoted(ctx, &w.packet, &mut w.quoted) {
        return;
    }
    // The quoted packet went the other way.
    let key = session_key(w.ifindex, &w.quoted, w.direction().reverse());
    w.now = unsafe { aya_ebpf::helpers::bpf_ktime_get_boot_ns() };
    let session = match SG_CONNTRACK.get_ptr(key) {
        Some(session) => Some(session),
        None => SG_UNANSWERED.get_ptr(key),
    };
    if let Some(session) = session
        && live(w, unsafe { &*session })
    {
        finish(w, Reason::Related, NO_RULE, 0);
    }
}
