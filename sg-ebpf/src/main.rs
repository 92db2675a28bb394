//! The sg TC classifier. One program per hook (`sg_tc_ingress`,
//! `sg_tc_egress`), both running [`decide`]:
//!
//! 1. parse the frame ([`parse`]); non-IP passes, malformed IP drops;
//! 2. a live session in `SG_CONNTRACK` passes without rule evaluation;
//! 3. built-ins: metadata, PMTUD, neighbour discovery, DHCP, port 25;
//! 4. the interface's compiled ruleset ([`classify`]), or its default;
//! 5. an accepted packet opens (or refreshes) its session.
#![no_std]
#![no_main]

mod classify;
mod parse;

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, TC_ACT_SHOT, TC_ACT_UNSPEC},
    helpers::bpf_ktime_get_boot_ns,
    macros::{classifier, map},
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray},
    programs::TcContext,
};
use aya_log_ebpf::debug;
use sg_common::{
    ADDR_TRIE_ENTRIES, AddrKey, Bitmap, CONNTRACK_ENTRIES, CtKey, CtValue, GLOBAL_ALLOW_DHCP,
    GLOBAL_ALLOW_ND, GLOBAL_BLOCK_SMTP, GlobalConfig, IFACE_HYPERVISOR, INBOUND, InterfaceConfig,
    MAX_INTERFACES, MAX_TABLES, METADATA_V4, OUTBOUND, PORT_TRIE_ENTRIES, PROTO_ENTRIES, PortKey,
    ProtoKey, REASON_COUNT, Reason, TableInfo,
};

use crate::parse::{Flow, Parsed, proto};

#[map]
static SG_GLOBAL: Array<GlobalConfig> = Array::with_max_entries(1, 0);

// NO_PREALLOC: an update swaps in a new element under RCU, so a packet sees
// the whole old or the whole new value (the atomic ruleset switch).
#[map]
static SG_INTERFACES: HashMap<u32, InterfaceConfig> =
    HashMap::with_max_entries(MAX_INTERFACES, BPF_F_NO_PREALLOC);

#[map]
static SG_TABLES: Array<TableInfo> = Array::with_max_entries(MAX_TABLES, 0);

#[map]
static SG_PROTO: HashMap<ProtoKey, Bitmap> =
    HashMap::with_max_entries(PROTO_ENTRIES, BPF_F_NO_PREALLOC);

#[map]
static SG_ADDR: LpmTrie<AddrKey, Bitmap> = LpmTrie::with_max_entries(ADDR_TRIE_ENTRIES, 0);

#[map]
static SG_PORT: LpmTrie<PortKey, Bitmap> = LpmTrie::with_max_entries(PORT_TRIE_ENTRIES, 0);

#[map]
static SG_CONNTRACK: LruHashMap<CtKey, CtValue> =
    LruHashMap::with_max_entries(CONNTRACK_ENTRIES, 0);

#[map]
static SG_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(REASON_COUNT, 0);

/// TCX: -1 hands the packet on to the next program or the stack.
const PASS: i32 = TC_ACT_UNSPEC;
const DROP: i32 = TC_ACT_SHOT as i32;

const TC_INGRESS: usize = 0;
const TC_EGRESS: usize = 1;

#[classifier]
pub fn sg_tc_ingress(ctx: TcContext) -> i32 {
    verdict(&ctx, TC_INGRESS)
}

#[classifier]
pub fn sg_tc_egress(ctx: TcContext) -> i32 {
    verdict(&ctx, TC_EGRESS)
}

#[inline(always)]
fn verdict(ctx: &TcContext, hook: usize) -> i32 {
    let reason = decide(ctx, hook);
    if let Some(counter) = SG_STATS.get_ptr_mut(reason as u32) {
        // Per-CPU slot: no other writer.
        unsafe { *counter += 1 };
    }
    if reason.accepts() { PASS } else { DROP }
}

#[inline(always)]
fn decide(ctx: &TcContext, hook: usize) -> Reason {
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let Some(iface) = (unsafe { SG_INTERFACES.get(&ifindex) }) else {
        return Reason::Unbound;
    };
    let hypervisor = iface.flags & IFACE_HYPERVISOR != 0;
    // Direction seen from the protected instance.
    let dir = if (hook == TC_INGRESS) != hypervisor {
        INBOUND
    } else {
        OUTBOUND
    };
    let table = iface.tables[dir];

    let flow = match parse::parse(ctx) {
        Parsed::NotIp => return Reason::NotIp,
        Parsed::Malformed => {
            debug!(
                ctx,
                "sg: malformed IP packet dropped on ifindex {}", ifindex
            );
            return Reason::Malformed;
        }
        Parsed::Ip(flow) => flow,
    };
    let (global_flags, timeout_ns) = match SG_GLOBAL.get(0) {
        Some(g) => (g.flags, g.session_timeout_ns),
        None => (0, sg_common::SESSION_TIMEOUT_SECS * 1_000_000_000),
    };

    let key = session_key(ifindex, &flow, dir);
    let now = unsafe { bpf_ktime_get_boot_ns() };
    if let Some(session) = SG_CONNTRACK.get_ptr_mut(&key) {
        // The kernel checks the idle deadline itself: an expired entry is
        // as good as absent, whatever userspace does.
        unsafe {
            if now.wrapping_sub((*session).last_seen_ns) <= timeout_ns {
                (*session).last_seen_ns = now;
                return Reason::Session;
            }
        }
    }

    if let Some(builtin) = builtin(&flow, dir, global_flags) {
        if builtin == Reason::Metadata {
            open_session(&key, now, dir);
        }
        return builtin;
    }

    let reason = match classify::classify(table, &flow, dir) {
        classify::Outcome::Rule { accept: true } => Reason::RuleAccept,
        classify::Outcome::Rule { accept: false } => Reason::RuleDrop,
        classify::Outcome::Default { accept: true } => Reason::DefaultAccept,
        classify::Outcome::Default { accept: false } => Reason::DefaultDrop,
    };
    if reason.accepts() && flow.opens_session() {
        open_session(&key, now, dir);
    }
    reason
}

/// Traffic no rule can block (SPEC §3.7, §3.8), or `None` to go on to the
/// rules.
#[inline(always)]
fn builtin(flow: &Flow, dir: usize, flags: u32) -> Option<Reason> {
    match (flow.proto, dir) {
        (proto::TCP, OUTBOUND) if flags & GLOBAL_BLOCK_SMTP != 0 && flow.dst_port == 25 => {
            return Some(Reason::SmtpBlocked);
        }
        (proto::ICMP, INBOUND) if flow.is_v4() && flow.icmp_type == 3 && flow.icmp_code == 4 => {
            return Some(Reason::Pmtud);
        }
        (proto::ICMPV6, INBOUND) if !flow.is_v4() && flow.icmp_type == 2 => {
            return Some(Reason::Pmtud);
        }
        // Router solicitation/advertisement, neighbour solicitation/
        // advertisement, redirect.
        (proto::ICMPV6, _)
            if flags & GLOBAL_ALLOW_ND != 0 && (133..=137).contains(&flow.icmp_type) =>
        {
            return Some(Reason::NeighborDiscovery);
        }
        (proto::UDP, _) if flags & GLOBAL_ALLOW_DHCP != 0 && is_dhcp_client(flow, dir) => {
            return Some(Reason::Dhcp);
        }
        _ => {}
    }
    if dir == OUTBOUND && flow.is_v4() && flow.dst[..4] == METADATA_V4 {
        return Some(Reason::Metadata);
    }
    None
}

/// DHCP (68 <-> 67) and DHCPv6 (546 <-> 547), client side only.
#[inline(always)]
fn is_dhcp_client(flow: &Flow, dir: usize) -> bool {
    let (client, server) = if flow.is_v4() { (68, 67) } else { (546, 547) };
    if dir == OUTBOUND {
        flow.src_port == client && flow.dst_port == server
    } else {
        flow.src_port == server && flow.dst_port == client
    }
}

#[inline(always)]
fn session_key(ifindex: u32, flow: &Flow, dir: usize) -> CtKey {
    let (local, remote, local_port, remote_port) = if dir == INBOUND {
        (flow.dst, flow.src, flow.dst_port, flow.src_port)
    } else {
        (flow.src, flow.dst, flow.src_port, flow.dst_port)
    };
    CtKey {
        ifindex,
        local,
        remote,
        local_port,
        remote_port,
        proto: flow.proto,
        family: flow.family,
        _pad: [0; 2],
    }
}

#[inline(always)]
fn open_session(key: &CtKey, now: u64, dir: usize) {
    let value = CtValue {
        last_seen_ns: now,
        opened: dir as u32,
        _pad: 0,
    };
    // A full table evicts the least recently used session (LRU map).
    let _ = SG_CONNTRACK.insert(key, &value, 0);
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
