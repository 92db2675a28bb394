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
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, lpm_trie::Key},
    programs::TcContext,
};
use aya_log_ebpf::debug;
use sg_common::{
    ADDR_KEY_FIXED_BITS, ADDR_TRIE_ENTRIES, AddrKey, Bitmap, CB_REASON, CB_RULE, CB_RULE_DIR,
    CONNTRACK_ENTRIES, CtKey, CtValue, DIM_LOCAL, FRAGMENT_ENTRIES, FragKey, FragValue,
    GLOBAL_ALLOW_DHCP, GLOBAL_ALLOW_ND, GLOBAL_BLOCK_SMTP, GlobalConfig, IFACE_HYPERVISOR, INBOUND,
    INSTANCE_ADDR_ENTRIES, InterfaceConfig, MAX_INTERFACES, MAX_TABLES, METADATA_V4, NO_RULE,
    OUTBOUND, PORT_TRIE_ENTRIES, PROTO_ENTRIES, PortKey, ProtoKey, REASON_COUNT, Reason, TableInfo,
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

/// Per-CPU scratch space for the parsed packet (`SCRATCH_PACKET`) and an
/// ICMP error's quoted packet (`SCRATCH_QUOTED`). Kept out of the stack on
/// purpose: see `parse::parse`.
#[map]
static SG_SCRATCH: PerCpuArray<Flow> = PerCpuArray::with_max_entries(2, 0);
const SCRATCH_PACKET: u32 = 0;
const SCRATCH_QUOTED: u32 = 1;

/// TCX: -1 hands the packet on to the next program or the stack.
const PASS: i32 = TC_ACT_UNSPEC;
const DROP: i32 = TC_ACT_SHOT as i32;

const TC_INGRESS: usize = 0;
const TC_EGRESS: usize = 1;

#[classifier]
pub fn sg_tc_ingress(mut ctx: TcContext) -> i32 {
    verdict(&mut ctx, TC_INGRESS)
}

#[classifier]
pub fn sg_tc_egress(mut ctx: TcContext) -> i32 {
    verdict(&mut ctx, TC_EGRESS)
}

/// What decided, and the deciding rule's index in its table (`NO_RULE`
/// when no rule did).
#[derive(Clone, Copy)]
struct Decision {
    reason: Reason,
    rule: u32,
    /// Direction of the table `rule` indexes.
    rule_dir: u32,
}

impl Decision {
    #[inline(always)]
    const fn by(reason: Reason) -> Decision {
        Decision {
            reason,
            rule: NO_RULE,
            rule_dir: 0,
        }
    }
}

#[inline(always)]
fn verdict(ctx: &mut TcContext, hook: usize) -> i32 {
    let d = decide(ctx, hook);
    if let Some(counter) = SG_STATS.get_ptr_mut(d.reason as u32) {
        // Per-CPU slot: no other writer.
        unsafe { *counter += 1 };
    }
    let cb = ctx.cb_mut();
    cb[CB_REASON] = d.reason as u32;
    cb[CB_RULE] = d.rule;
    cb[CB_RULE_DIR] = d.rule_dir;
    if d.reason.accepts() { PASS } else { DROP }
}

#[inline(always)]
fn decide(ctx: &TcContext, hook: usize) -> Decision {
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let Some(iface) = (unsafe { SG_INTERFACES.get(&ifindex) }) else {
        return Decision::by(Reason::Unbound);
    };
    let hypervisor = iface.flags & IFACE_HYPERVISOR != 0;
    // Direction seen from the protected instance.
    let dir = if (hook == TC_INGRESS) != hypervisor {
        INBOUND
    } else {
        OUTBOUND
    };

    let Some(flow) = SG_SCRATCH.get_ptr_mut(SCRATCH_PACKET) else {
        return Decision::by(Reason::Malformed);
    };
    // SAFETY: a per-CPU slot, used by this program run only.
    let flow = unsafe { &mut *flow };
    match parse::parse(ctx, flow) {
        Parsed::NotIp => return Decision::by(Reason::NotIp),
        Parsed::Malformed => {
            debug!(
                ctx,
                "sg: malformed IP packet dropped on ifindex {}", ifindex
            );
            return Decision::by(Reason::Malformed);
        }
        Parsed::Ip => {}
    }
    let d = decide_ip(ctx, ifindex, iface, dir, flow);
    if flow.fragment() == Fragment::First {
        remember_fragment(ifindex, &flow, d);
    }
    d
}

#[inline(always)]
fn decide_ip(
    ctx: &TcContext,
    ifindex: u32,
    iface: &InterfaceConfig,
    dir: usize,
    flow: &Flow,
) -> Decision {
    if flow.fragment() == Fragment::Later {
        match unsafe { SG_FRAGMENTS.get(&fragment_key(ifindex, flow)) } {
            Some(first) => {
                let reason = match Reason::from_u32(first.reason) {
                    Some(r) if r.accepts() => Reason::FragmentAccept,
                    _ => Reason::FragmentDrop,
                };
                return Decision {
                    reason,
                    rule: first.rule,
                    rule_dir: first.rule_dir,
                };
            }
            // Unknown first fragment: inbound is dropped; outbound is
            // classified as a packet without ports.
            None if dir == INBOUND => return Decision::by(Reason::FragmentDrop),
            None => {}
        }
    }
    let (global_flags, timeout_ns) = match SG_GLOBAL.get(0) {
        Some(g) => (g.flags, g.session_timeout_ns),
        None => (0, sg_common::SESSION_TIMEOUT_SECS * 1_000_000_000),
    };

    if let Some(reason) = network_builtin(flow, dir, global_flags) {
        return Decision::by(reason);
    }
    if iface.flags & IFACE_HYPERVISOR != 0 && dir == OUTBOUND && !is_instance_address(ifindex, flow)
    {
        return Decision::by(Reason::Spoofed);
    }

    let key = session_key(ifindex, flow, dir);
    let now = unsafe { bpf_ktime_get_boot_ns() };
    if let Some(d) = existing_session(&key, iface, now, timeout_ns, global_flags) {
        return d;
    }
    if flow.is_icmp_error()
        && let Some(inner) = SG_SCRATCH.get_ptr_mut(SCRATCH_QUOTED)
        // SAFETY: a per-CPU slot, used by this program run only.
        && let inner = unsafe { &mut *inner }
        && parse::quoted(ctx, flow, inner)
    {
        // The quoted packet went the other way.
        let inner_dir = if dir == INBOUND { OUTBOUND } else { INBOUND };
        if let Some(session) = SG_CONNTRACK.get_ptr(&session_key(ifindex, inner, inner_dir))
            && now.wrapping_sub(unsafe { (*session).last_seen_ns }) <= timeout_ns
        {
            return Decision::by(Reason::Related);
        }
    }

    if let Some(reason) = service_builtin(flow, dir, global_flags) {
        if reason == Reason::Metadata {
            open_session(&key, now, dir, iface.epoch);
        }
        return Decision::by(reason);
    }

    let d = match classify::classify(iface.tables[dir], flow, dir) {
        Outcome::Rule { accept, index } => Decision {
            reason: if accept {
                Reason::RuleAccept
            } else {
                Reason::RuleDrop
            },
            rule: index,
            rule_dir: dir as u32,
        },
        Outcome::Default { accept: true } => Decision::by(Reason::DefaultAccept),
        Outcome::Default { accept: false } => Decision::by(Reason::DefaultDrop),
    };
    if d.reason.accepts() && flow.opens_session() {
        open_session(&key, now, dir, iface.epoch);
    }
    d
}

/// A live session of this packet, if any. A session older than the
/// interface's ruleset is checked once against the current rules: if an
/// explicit drop rule matches the packet that opened it, it ends here
/// (SPEC §3.6); otherwise it is stamped with the current epoch.
#[inline(always)]
fn existing_session(
    key: &CtKey,
    iface: &InterfaceConfig,
    now: u64,
    timeout_ns: u64,
    global_flags: u32,
) -> Option<Decision> {
    let session = SG_CONNTRACK.get_ptr_mut(key)?;
    // The kernel checks the idle deadline itself: an expired entry is as
    // good as absent, whatever userspace does.
    let (last_seen, epoch, opened) = unsafe {
        (
            (*session).last_seen_ns,
            (*session).epoch,
            (*session).opened as usize,
        )
    };
    if now.wrapping_sub(last_seen) > timeout_ns {
        return None;
    }
    if epoch != iface.epoch {
        let opening = opening_flow(key, opened);
        let table = iface.tables[opened & 1];
        // Sessions the built-ins opened (metadata) no rule can end.
        let builtin = service_builtin(&opening, opened & 1, global_flags).is_some();
        if !builtin
            && let Outcome::Rule {
                accept: false,
                index,
            } = classify::classify(table, &opening, opened & 1)
        {
            let _ = SG_CONNTRACK.remove(key);
            return Some(Decision {
                reason: Reason::SessionEnded,
                rule: index,
                rule_dir: (opened & 1) as u32,
            });
        }
        unsafe { (*session).epoch = iface.epoch };
    }
    unsafe { (*session).last_seen_ns = now };
    Some(Decision::by(Reason::Session))
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
    Flow {
        family: key.family,
        proto: key.proto,
        src,
        dst,
        src_port,
        dst_port,
        icmp_type: 0,
        icmp_code: 0,
        fragment: Fragment::No,
        frag_id: 0,
        l4: 0,
    }
}

/// What the host needs to stay on the network (SPEC §3.7): IPv6 neighbour
/// and router discovery, DHCP and DHCPv6 client exchanges. Checked before
/// anti-spoofing: an instance solicits from link-local or unspecified
/// addresses.
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
fn remember_fragment(ifindex: u32, flow: &Flow, d: Decision) {
    let value = FragValue {
        reason: d.reason as u32,
        rule: d.rule,
        rule_dir: d.rule_dir,
    };
    let _ = SG_FRAGMENTS.insert(&fragment_key(ifindex, flow), &value, 0);
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
