//! The sg TC classifier. One program per hook (`sg_tc_ingress`,
//! `sg_tc_egress`), both running [`decide`]:
//!
//! 1. parse the frame ([`parse`]); non-IP passes, malformed IP drops;
//! 2. later fragments follow their first fragment;
//! 3. neighbour discovery and DHCP built-ins; anti-spoofing of
//!    hypervisor-mode instances;
//! 4. a live session in `SG_CONNTRACK` passes without rule evaluation
//!    (re-checked once against new explicit drop rules after a change);
//!    ICMP errors quoting a session pass as related;
//! 5. built-ins: PMTUD, metadata, port 25;
//! 6. the interface's compiled ruleset ([`classify`]), or its default;
//! 7. an accepted packet opens (or refreshes) its session.
//!
//! The decision is counted per reason (`SG_STATS`) and left in `skb->cb`.
#![no_std]
#![no_main]

mod classify;
mod parse;

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, TC_ACT_SHOT, TC_ACT_UNSPEC},
    helpers::bpf_ktime_get_boot_ns,
    macros::{classifier, map},
    maps::{
        Array, HashMap, LpmTrie, LruHashMap, LruPerCpuHashMap, PerCpuArray, RingBuf, lpm_trie::Key,
    },
    programs::TcContext,
};
use aya_log_ebpf::debug;
use sg_common::{
    ADDR_KEY_FIXED_BITS, ADDR_TRIE_ENTRIES, AddrKey, Bitmap, CB_REASON, CB_RULE, CB_TABLE,
    CONNTRACK_ENTRIES, Counter, CtKey, CtValue, DIM_LOCAL, DROP_RECORDS_BURST,
    DROP_RECORDS_PER_SEC, DROP_RING_BYTES, DropRecord, FRAGMENT_ENTRIES, FragKey, FragValue,
    GLOBAL_ALLOW_DHCP, GLOBAL_ALLOW_ND, GLOBAL_BLOCK_SMTP, GlobalConfig, IFACE_COUNTER_ENTRIES,
    IFACE_HYPERVISOR, INBOUND, INSTANCE_ADDR_ENTRIES, IfaceCounterKey, InterfaceConfig,
    MAX_INTERFACES, MAX_TABLES, METADATA_V4, NO_RULE, OUTBOUND, PORT_TRIE_ENTRIES, PROTO_ENTRIES,
    PortKey, ProtoKey, REASON_COUNT, RULE_COUNTER_ENTRIES, Reason, RuleCounterKey, TableInfo,
};

use crate::{
    classify::Outcome,
    parse::{Flow, Fragment, Parsed, proto},
};

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
static SG_FRAGMENTS: LruHashMap<FragKey, FragValue> =
    LruHashMap::with_max_entries(FRAGMENT_ENTRIES, 0);

/// Hypervisor-mode instance addresses: `table` = ifindex, `dim` =
/// `DIM_LOCAL`, full-length prefixes.
#[map]
static SG_INSTANCE_ADDRS: LpmTrie<AddrKey, u8> =
    LpmTrie::with_max_entries(INSTANCE_ADDR_ENTRIES, 0);

#[map]
static SG_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(REASON_COUNT, 0);

/// Packets and bytes per deciding rule (per table), per CPU.
#[map]
static SG_RULE_COUNTERS: LruPerCpuHashMap<RuleCounterKey, Counter> =
    LruPerCpuHashMap::with_max_entries(RULE_COUNTER_ENTRIES, 0);

/// Packets and bytes per interface, direction and verdict, per CPU.
#[map]
static SG_IFACE_COUNTERS: LruPerCpuHashMap<IfaceCounterKey, Counter> =
    LruPerCpuHashMap::with_max_entries(IFACE_COUNTER_ENTRIES, 0);

/// Records of dropped packets for the daemon, rate-limited per CPU.
#[map]
static SG_DROPS: RingBuf = RingBuf::with_byte_size(DROP_RING_BYTES, 0);

/// Per-CPU token bucket for drop records: (tokens, last refill time).
#[map]
static SG_DROP_BUDGET: PerCpuArray<[u64; 2]> = PerCpuArray::with_max_entries(1, 0);

/// TCX: -1 hands the packet on to the next program or the stack.
const PASS: i32 = TC_ACT_UNSPEC;
const DROP: i32 = TC_ACT_SHOT as i32;

const TC_INGRESS: usize = 0;
const TC_EGRESS: usize = 1;

/// One packet's working state: the parsed packet, what the stages share,
/// and the decision once a stage makes it. It lives in a per-CPU map, not
/// on the stack, and each stage is a separate BPF function that writes
/// into it: the verifier then sees every stage's paths end in the same
/// state and merges them, instead of following every combination of
/// protocol, built-in, session and rule outcome to the end.
#[repr(C)]
#[derive(Clone, Copy)]
struct Work {
    packet: Flow,
    quoted: Flow,
    key: CtKey,
    now: u64,
    timeout_ns: u64,
    global_flags: u32,
    ifindex: u32,
    dir: u32,
    /// Set once a stage has decided.
    done: u32,
    reason: u32,
    /// The deciding rule's index in table `table`, or `NO_RULE`.
    rule: u32,
    table: u32,
}

#[map]
static SG_WORK: PerCpuArray<Work> = PerCpuArray::with_max_entries(1, 0);

#[classifier]
pub fn sg_tc_ingress(mut ctx: TcContext) -> i32 {
    verdict(&mut ctx, TC_INGRESS)
}

#[classifier]
pub fn sg_tc_egress(mut ctx: TcContext) -> i32 {
    verdict(&mut ctx, TC_EGRESS)
}

#[inline(always)]
fn verdict(ctx: &mut TcContext, hook: usize) -> i32 {
    let Some(w) = SG_WORK.get_ptr_mut(0) else {
        return PASS;
    };
    // SAFETY: a per-CPU slot; one program run uses it at a time.
    let w = unsafe { &mut *w };
    w.done = 0;
    w.rule = NO_RULE;
    w.table = 0;
    decide(ctx, hook, w);
    let reason = Reason::from_u32(w.reason).unwrap_or(Reason::Malformed);
    if let Some(counter) = SG_STATS.get_ptr_mut(reason as u32) {
        // Per-CPU slot: no other writer.
        unsafe { *counter += 1 };
    }
    let (rule, table) = (w.rule, w.table);
    count(ctx, w, reason, rule, table);
    let cb = ctx.cb_mut();
    cb[CB_REASON] = reason as u32;
    cb[CB_RULE] = rule;
    cb[CB_TABLE] = table;
    if reason.accepts() { PASS } else { DROP }
}

/// Per-interface and per-rule counters, and a (rate-limited) record of
/// each drop.
#[inline(never)]
fn count(ctx: &TcContext, w: &Work, reason: Reason, rule: u32, table: u32) {
    let bytes = ctx.len() as u64;
    if reason != Reason::Unbound {
        let key = IfaceCounterKey {
            ifindex: w.ifindex,
            dir: w.dir as u8,
            accepted: reason.accepts() as u8,
            _pad: [0; 2],
        };
        add(&SG_IFACE_COUNTERS, &key, bytes);
    }
    if rule != NO_RULE {
        add(&SG_RULE_COUNTERS, &RuleCounterKey { table, rule }, bytes);
    }
    // Malformed frames have no parsed packet to report.
    if !reason.accepts() && reason != Reason::Malformed && take_drop_token(w.now) {
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
        let _ = map.insert(key, &Counter { packets: 1, bytes }, 0);
    }
}

#[inline(always)]
fn take_drop_token(now: u64) -> bool {
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
        time_ns: w.now,
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

/// Records the decision; later stages see `done` and do nothing.
#[inline(always)]
fn finish(w: &mut Work, reason: Reason, rule: u32, table: u32) {
    w.reason = reason as u32;
    w.rule = rule;
    w.table = table;
    w.done = 1;
}

#[inline(always)]
fn done(w: &Work) -> bool {
    // A fresh load: what a stage wrote is unknown to the verifier here.
    unsafe { core::ptr::read_volatile(&w.done) != 0 }
}

#[inline(always)]
fn decide(ctx: &TcContext, hook: usize, w: &mut Work) {
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let Some(iface) = (unsafe { SG_INTERFACES.get(&ifindex) }) else {
        return finish(w, Reason::Unbound, NO_RULE, 0);
    };
    let hypervisor = iface.flags & IFACE_HYPERVISOR != 0;
    // Direction seen from the protected instance.
    let dir = if (hook == TC_INGRESS) != hypervisor {
        INBOUND
    } else {
        OUTBOUND
    };
    w.ifindex = ifindex;
    w.dir = dir as u32;
    w.now = unsafe { bpf_ktime_get_boot_ns() };
    match parse::parse(ctx, &mut w.packet) {
        Parsed::NotIp => return finish(w, Reason::NotIp, NO_RULE, 0),
        Parsed::Malformed => {
            debug!(
                ctx,
                "sg: malformed IP packet dropped on ifindex {}", ifindex
            );
            return finish(w, Reason::Malformed, NO_RULE, 0);
        }
        Parsed::Ip => {}
    }
    (w.global_flags, w.timeout_ns) = match SG_GLOBAL.get(0) {
        Some(g) => (g.flags, g.session_timeout_ns),
        None => (0, sg_common::SESSION_TIMEOUT_SECS * 1_000_000_000),
    };
    w.key = session_key(ifindex, &w.packet, dir);

    stage_fragment(w);
    if !done(w) {
        stage_network(w, iface);
    }
    if !done(w) {
        stage_session(w, iface);
    }
    if !done(w) {
        stage_related(ctx, w);
    }
    if !done(w) {
        stage_service(w, iface);
    }
    if !done(w) {
        stage_rules(w, iface);
    }
    if w.packet.fragment() == Fragment::First {
        remember_fragment(w);
    }
}

/// Later fragments follow their first fragment (SPEC §3.9). An unknown
/// first fragment: inbound is dropped; outbound is judged without ports.
#[inline(never)]
fn stage_fragment(w: &mut Work) {
    if w.packet.fragment() != Fragment::Later {
        return;
    }
    match unsafe { SG_FRAGMENTS.get(&fragment_key(w.ifindex, &w.packet)) } {
        Some(first) => {
            let reason = match Reason::from_u32(first.reason) {
                Some(r) if r.accepts() => Reason::FragmentAccept,
                _ => Reason::FragmentDrop,
            };
            let (rule, table) = (first.rule, first.table);
            finish(w, reason, rule, table);
        }
        None if w.dir as usize == INBOUND => finish(w, Reason::FragmentDrop, NO_RULE, 0),
        None => {}
    }
}

/// Anti-spoofing of hypervisor-mode instances, then neighbour discovery
/// and DHCP. An instance sends only from its own addresses; its neighbour
/// discovery and DHCP may also come from the unspecified or a link-local
/// address, which no group grants anything to.
#[inline(never)]
fn stage_network(w: &mut Work, iface: &InterfaceConfig) {
    let dir = w.dir as usize & 1;
    let network = network_builtin(&w.packet, dir, w.global_flags);
    if iface.flags & IFACE_HYPERVISOR != 0
        && dir == OUTBOUND
        && !is_instance_address(w.ifindex, &w.packet)
        && !(network.is_some() && is_unspecified_or_link_local(&w.packet))
    {
        return finish(w, Reason::Spoofed, NO_RULE, 0);
    }
    if let Some(reason) = network {
        finish(w, reason, NO_RULE, 0);
    }
}

/// A live session passes without rule evaluation. One older than the
/// interface's ruleset is checked once against the current rules: if an
/// explicit drop rule matches the packet that opened it, it ends here
/// (SPEC §3.6); otherwise it is stamped with the current epoch.
#[inline(never)]
fn stage_session(w: &mut Work, iface: &InterfaceConfig) {
    let Some(session) = SG_CONNTRACK.get_ptr_mut(&w.key) else {
        return;
    };
    // The kernel checks the idle deadline itself: an expired entry is as
    // good as absent, whatever userspace does.
    let (last_seen, epoch, opened) = unsafe {
        (
            (*session).last_seen_ns,
            (*session).epoch,
            (*session).opened as usize & 1,
        )
    };
    if w.now.wrapping_sub(last_seen) > w.timeout_ns {
        return;
    }
    if epoch != iface.epoch {
        let opening = opening_flow(&w.key, opened);
        let table = iface.tables[opened];
        // Sessions the metadata built-in opened no rule can end.
        let metadata = service_builtin(&opening, opened, w.global_flags) == Some(Reason::Metadata);
        if !metadata
            && let Outcome::Rule {
                accept: false,
                index,
            } = classify::classify(table, &opening, opened)
        {
            let _ = SG_CONNTRACK.remove(&w.key);
            return finish(w, Reason::SessionEnded, index, table);
        }
        unsafe { (*session).epoch = iface.epoch };
    }
    unsafe { (*session).last_seen_ns = w.now };
    finish(w, Reason::Session, NO_RULE, 0);
}

/// ICMP errors that quote a live session pass as related (SPEC §3.5).
#[inline(never)]
fn stage_related(ctx: &TcContext, w: &mut Work) {
    if !w.packet.is_icmp_error() || !parse::quoted(ctx, &w.packet, &mut w.quoted) {
        return;
    }
    // The quoted packet went the other way.
    let inner_dir = if w.dir as usize == INBOUND {
        OUTBOUND
    } else {
        INBOUND
    };
    let key = session_key(w.ifindex, &w.quoted, inner_dir);
    if let Some(session) = SG_CONNTRACK.get_ptr(&key)
        && w.now.wrapping_sub(unsafe { (*session).last_seen_ns }) <= w.timeout_ns
    {
        finish(w, Reason::Related, NO_RULE, 0);
    }
}

/// PMTUD, the metadata service (which opens a session) and port 25.
#[inline(never)]
fn stage_service(w: &mut Work, iface: &InterfaceConfig) {
    let dir = w.dir as usize & 1;
    if let Some(reason) = service_builtin(&w.packet, dir, w.global_flags) {
        if reason == Reason::Metadata {
            open_session(&w.key, w.now, dir, iface.epoch);
        }
        finish(w, reason, NO_RULE, 0);
    }
}

/// The interface's rules, or its default; an accepted packet opens its
/// session.
#[inline(never)]
fn stage_rules(w: &mut Work, iface: &InterfaceConfig) {
    let dir = w.dir as usize & 1;
    let table = iface.tables[dir];
    let (reason, rule) = match classify::classify(table, &w.packet, dir) {
        Outcome::Rule {
            accept: true,
            index,
        } => (Reason::RuleAccept, index),
        Outcome::Rule {
            accept: false,
            index,
        } => (Reason::RuleDrop, index),
        Outcome::Default { accept: true } => (Reason::DefaultAccept, NO_RULE),
        Outcome::Default { accept: false } => (Reason::DefaultDrop, NO_RULE),
    };
    if reason.accepts() && w.packet.opens_session() {
        open_session(&w.key, w.now, dir, iface.epoch);
    }
    finish(w, reason, rule, table);
}

/// The packet that opened a session, rebuilt from its key.
#[inline(always)]
fn opening_flow(key: &CtKey, opened: usize) -> Flow {
    let inbound = opened == INBOUND;
    let (src, dst, src_port, dst_port) = if inbound {
        (key.remote, key.local, key.remote_port, key.local_port)
    } else {
        (key.local, key.remote, key.local_port, key.remote_port)
    };
    let mut flow = parse::empty_flow(key.family, key.proto);
    (flow.src, flow.dst, flow.src_port, flow.dst_port) = (src, dst, src_port, dst_port);
    flow
}

/// What the host needs to stay on the network (SPEC §3.7): IPv6 neighbour
/// and router discovery, DHCP and DHCPv6 client exchanges.
#[inline(always)]
fn network_builtin(flow: &Flow, dir: usize, flags: u32) -> Option<Reason> {
    match flow.proto() {
        // Router solicitation/advertisement, neighbour solicitation/
        // advertisement, redirect.
        proto::ICMPV6
            if flags & GLOBAL_ALLOW_ND != 0
                && !flow.is_v4()
                && (133..=137).contains(&flow.icmp_type()) =>
        {
            Some(Reason::NeighborDiscovery)
        }
        proto::UDP if flags & GLOBAL_ALLOW_DHCP != 0 && is_dhcp_client(flow, dir) => {
            Some(Reason::Dhcp)
        }
        _ => None,
    }
}

/// PMTUD, the metadata service and the port 25 restriction (SPEC §3.7,
/// §3.8).
#[inline(always)]
fn service_builtin(flow: &Flow, dir: usize, flags: u32) -> Option<Reason> {
    match (flow.proto(), dir) {
        (proto::TCP, OUTBOUND) if flags & GLOBAL_BLOCK_SMTP != 0 && flow.rule_dst_port() == 25 => {
            return Some(Reason::SmtpBlocked);
        }
        (proto::ICMP, INBOUND)
            if flow.is_v4() && flow.icmp_type() == 3 && flow.icmp_code() == 4 =>
        {
            return Some(Reason::Pmtud);
        }
        (proto::ICMPV6, INBOUND) if !flow.is_v4() && flow.icmp_type() == 2 => {
            return Some(Reason::Pmtud);
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
        flow.src_port() == client && flow.dst_port() == server
    } else {
        flow.src_port() == server && flow.dst_port() == client
    }
}

#[inline(always)]
fn is_unspecified_or_link_local(flow: &Flow) -> bool {
    if flow.is_v4() {
        flow.src[..4] == [0, 0, 0, 0]
    } else {
        flow.src == [0; 16] || (flow.src[0] == 0xfe && flow.src[1] & 0xc0 == 0x80)
    }
}

#[inline(always)]
fn is_instance_address(ifindex: u32, flow: &Flow) -> bool {
    let len = if flow.is_v4() { 32 } else { 128 };
    let key = Key::new(
        ADDR_KEY_FIXED_BITS + len,
        AddrKey {
            table: ifindex.to_be_bytes(),
            dim: DIM_LOCAL,
            family: flow.family(),
            addr: flow.src,
            _pad: [0; 2],
        },
    );
    SG_INSTANCE_ADDRS.get(&key).is_some()
}

#[inline(always)]
fn session_key(ifindex: u32, flow: &Flow, dir: usize) -> CtKey {
    let (local, remote, local_port, remote_port) = if dir == INBOUND {
        (flow.dst, flow.src, flow.dst_port(), flow.src_port())
    } else {
        (flow.src, flow.dst, flow.src_port(), flow.dst_port())
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

#[inline(always)]
fn open_session(key: &CtKey, now: u64, dir: usize, epoch: u32) {
    let value = CtValue {
        last_seen_ns: now,
        opened: dir as u32,
        epoch,
    };
    // A full table evicts the least recently used session (LRU map).
    let _ = SG_CONNTRACK.insert(key, &value, 0);
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

#[inline(always)]
fn remember_fragment(w: &Work) {
    let value = FragValue {
        reason: w.reason,
        rule: w.rule,
        table: w.table,
    };
    let _ = SG_FRAGMENTS.insert(&fragment_key(w.ifindex, &w.packet), &value, 0);
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
