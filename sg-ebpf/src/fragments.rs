//! IP fragments (SPEC §3.9). Only a datagram's first fragment carries the
//! ports, so a later fragment cannot be judged on its own: it gets the
//! decision remembered for its first fragment (same interface, addresses,
//! protocol and identification) in `SG_FRAGMENTS`.

use sg_common::{Direction, FragKey, FragValue, NO_RULE, Reason};

use crate::{
    maps::SG_FRAGMENTS,
    parse::{Flow, Fragment},
    work::{Work, finish},
};

/// Later fragments follow their first fragment (SPEC §3.9). An unknown
/// first fragment: inbound is dropped; outbound is judged without ports.
#[inline(never)]
pub fn stage_fragment(w: &mut Work) {
    if w.packet.fragment() != Fragment::Later {
        return;
    }
    match unsafe { SG_FRAGMENTS.get(fragment_key(w.ifindex, &w.packet)) } {
        Some(first) => {
            let reason = match Reason::from_u32(first.reason) {
                Some(r) if r.accepts() => Reason::FragmentAccept,
                _ => Reason::FragmentDrop,
            };
            let (rule, table) = (first.rule, first.table);
            finish(w, reason, rule, table);
        }
        None if w.direction() == Direction::Ingress => finish(w, Reason::FragmentDrop, NO_RULE, 0),
        None => {}
    }
}

/// Remembers a first fragment's decision for the later fragments.
#[inline(always)]
pub fn remember_fragment(w: &Work) {
    let value = FragValue {
        reason: w.reason,
        rule: w.rule,
        table: w.table,
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
        proto: flow.proto(),
        family: flow.family(),
        _pad: [0; 2],
    }
}
