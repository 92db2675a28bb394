//! IP fragments (SPEC §3.9). Only a datagram's first fragment carries the
//! ports, so a later fragment cannot be judged on its own: it gets the
//! decision remembered for its first fragment in `SG_FRAGMENTS`, for
//! `FRAGMENT_TIMEOUT_SECS`. A datagram is named as the receiver's
//! reassembly names it: interface, addresses and identification, and for
//! IPv4 the protocol (an IPv6 later fragment cannot say which protocol
//! follows the extension headers of its first fragment).

use sg_common::{Direction, FRAGMENT_TIMEOUT_SECS, FragKey, FragValue, NO_RULE, Reason};

use crate::{
    maps::SG_FRAGMENTS,
    parse::{Flow, Fragment},
    work::{Work, finish},
};

const FRAGMENT_TIMEOUT_NS: u64 = FRAGMENT_TIMEOUT_SECS * 1_000_000_000;

/// Later fragments follow their first fragment (SPEC §3.9). An unknown
/// (or expired) first fragment: inbound is dropped; outbound is judged
/// without ports.
#[inline(never)]
pub fn stage_fragment(w: &mut Work) {
    if w.packet.fragment() != Fragment::Later {
        return;
    }
    w.now = unsafe { aya_ebpf::helpers::bpf_ktime_get_boot_ns() };
    let now = w.now;
    match unsafe { SG_FRAGMENTS.get(fragment_key(w.ifindex, &w.packet)) } {
        Some(first) if now.wrapping_sub(first.first_seen_ns) <= FRAGMENT_TIMEOUT_NS => {
            let reason = match Reason::from_u32(first.reason) {
                Some(r) if r.accepts() => Reason::FragmentAccept,
                _ => Reason::FragmentDrop,
            };
            let (rule, table) = (first.rule, first.table);
            finish(w, reason, rule, table);
        }
        _ if w.direction() == Direction::Ingress => finish(w, Reason::FragmentDrop, NO_RULE, 0),
        _ => {}
    }
}

/// Remembers a first fragment's decision for the later fragments.
#[inline(always)]
pub fn remember_fragment(w: &mut Work) {
    let value = FragValue {
        first_seen_ns: unsafe { aya_ebpf::helpers::bpf_ktime_get_boot_ns() },
        reason: w.reason,
        rule: w.rule,
        table: w.table,
        _pad: 0,
    };
    let _ = SG_FRAGMENTS.insert(fragment_key(w.ifindex, &w.packet), value, 0);
}

#[inline(always)]
fn fragment_key(ifindex: u32, flow: &Flow) -> FragKey {
    FragKey {
        ifindex,
        id: flow.frag_id,
        src: flow.src,
        dst: flow.dst,
        proto: if flow.is_v4() { flow.proto() } else { 0 },
        family: flow.family(),
        _pad: [0; 2],
    }
}
