//! Counters and drop records, read by the daemon: packets per reason
//! (`SG_STATS`), packets and bytes per deciding rule and interface (`SG_RULE_COUNTERS`:
//! a table shared by interfaces counts for each apart)
//! and per interface slot, direction and verdict (`SG_IFACE_COUNTERS`, an
//! array indexed by the slot the daemon gave the interface), and a
//! record of each drop in the `SG_DROPS` ring, rate-limited per CPU by a
//! token bucket (`SG_DROP_BUDGET`) so that a flood of dropped packets
//! cannot flood the daemon. All per CPU: no atomic adds.

use aya_ebpf::{
    helpers::{bpf_ktime_get_boot_ns, bpf_ktime_get_coarse_ns},
    maps::LruPerCpuHashMap,
    programs::TcContext,
};
use sg_common::{
    Counter, DROP_RECORDS_BURST, DROP_RECORDS_PER_SEC, DropRecord, NO_RULE, Reason, RuleCounterKey,
    maps::iface_counter_index,
};

use crate::{
    maps::{SG_DROP_BUDGET, SG_DROPS, SG_IFACE_COUNTERS, SG_RULE_COUNTERS, SG_STATS},
    work::Work,
};

/// Counts the packet under its reason.
#[inline(always)]
pub fn count_reason(reason: Reason) {
    if let Some(counter) = SG_STATS.get_ptr_mut(reason as u32) {
        // Per-CPU slot: no other writer.
        unsafe { *counter += 1 };
    }
}

/// Per-interface and per-rule counters, and a (rate-limited) record of
/// each drop.
#[inline(never)]
pub fn count(ctx: &TcContext, w: &Work, reason: Reason, rule: u32, table: u32) {
    let bytes = ctx.len() as u64;
    if reason != Reason::Unbound {
        let index = iface_counter_index(w.slot, w.dir, reason.accepts() as u32);
        if let Some(c) = SG_IFACE_COUNTERS.get_ptr_mut(index) {
            // Per-CPU value: no other writer.
            unsafe {
                (*c).packets += 1;
                (*c).bytes += bytes;
            }
        }
    }
    if rule != NO_RULE {
        let key = RuleCounterKey {
            table,
            rule,
            ifindex: w.ifindex,
        };
        add(&SG_RULE_COUNTERS, &key, bytes);
    }
    // Malformed frames have no parsed packet to report.
    if !reason.accepts() && reason != Reason::Malformed && take_drop_token() {
        record_drop(w, reason, rule, table);
    }
}

#[inline(always)]
fn add<K>(map: &LruPerCpuHashMap<K, Counter>, key: &K, bytes: u64) {
    if let Some(c) = map.get_ptr_mut(key) {
        // Per-CPU value: no other writer.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes;
        }
    } else {
        let _ = map.insert(key, Counter { packets: 1, bytes }, 0);
    }
}

#[inline(always)]
fn take_drop_token() -> bool {
    // The coarse clock (a tick's resolution, no clock-source read): the
    // bucket is this program's own per-CPU state, never compared with the
    // boot time of sessions or records.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let Some(bucket) = SG_DROP_BUDGET.get_ptr_mut(0) else {
        return false;
    };
    let [tokens, last] = unsafe { *bucket };
    let refill = now.wrapping_sub(last) / (1_000_000_000 / DROP_RECORDS_PER_SEC);
    let tokens = (tokens + refill).min(DROP_RECORDS_BURST);
    let last = if refill > 0 { now } else { last };
    let (tokens, granted) = if tokens > 0 {
        (tokens - 1, true)
    } else {
        (0, false)
    };
    unsafe { *bucket = [tokens, last] };
    granted
}

#[inline(always)]
fn record_drop(w: &Work, reason: Reason, rule: u32, table: u32) {
    let Some(mut entry) = SG_DROPS.reserve::<DropRecord>(0) else {
        return;
    };
    let p = &w.packet;
    entry.write(DropRecord {
        // The decision's boot time if a stage read it, else now.
        time_ns: if w.now != 0 {
            w.now
        } else {
            unsafe { bpf_ktime_get_boot_ns() }
        },
        ifindex: w.ifindex,
        reason: reason as u32,
        rule,
        table,
        src: p.src,
        dst: p.dst,
        src_port: p.src_port(),
        dst_port: p.dst_port(),
        dir: w.dir as u8,
        proto: p.proto(),
        family: p.family(),
        _pad: 0,
    });
    entry.submit(0);
}
