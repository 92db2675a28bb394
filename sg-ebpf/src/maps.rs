//! Every map of the program, in one place, with why each has its kind and
//! flags. The symbol names are the map names the daemon opens: do not
//! rename them. Layouts and capacities come from `sg-common`.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{
        Array, HashMap, LpmTrie, LruHashMap, LruPerCpuHashMap, PerCpuArray, RingBuf, lpm_trie::Key,
    },
};
use sg_common::{
    ADDR_TRIE_ENTRIES, AddrKey, Bitmap, CONNTRACK_ENTRIES, Counter, CtKey, CtValue,
    DROP_RING_BYTES, FRAGMENT_ENTRIES, FragKey, FragValue, GlobalConfig, IFACE_COUNTER_ENTRIES,
    INSTANCE_ADDR_ENTRIES, InstanceMac, InterfaceConfig, MAX_INTERFACES, MAX_TABLES,
    PORT_TRIE_ENTRIES, PROTO_ENTRIES, PortKey, ProtoKey, REASON_COUNT, RULE_COUNTER_ENTRIES,
    RuleCounterKey, TableInfo, maps::SESSION_STAT_SLOTS,
};

use crate::{parse::Flow, work::Work};

// --- Configuration, written by the daemon ---------------------------------

/// The global switches (built-ins, session timeout): one entry.
#[map]
pub static SG_GLOBAL: Array<GlobalConfig> = Array::with_max_entries(1, 0);

/// Each bound interface's flags, epoch and table ids, by ifindex.
///
/// NO_PREALLOC: an update swaps in a new element under RCU, so a packet sees
/// the whole old or the whole new value (the atomic ruleset switch).
#[map]
pub static SG_INTERFACES: HashMap<u32, InterfaceConfig> =
    HashMap::with_max_entries(MAX_INTERFACES, BPF_F_NO_PREALLOC);

/// Each compiled table's default, accept bits and flags: an array, since
/// table ids are small numbers below `MAX_TABLES`.
#[map]
pub static SG_TABLES: Array<TableInfo> = Array::with_max_entries(MAX_TABLES, 0);

/// The rules matching each protocol, per table (`PROTO_ANY` for the rest).
///
/// NO_PREALLOC: a removed element (old tables are cleared at the next
/// change) is freed only after an RCU grace period, so it is never reused
/// under a packet still reading it.
#[map]
pub static SG_PROTO: HashMap<ProtoKey, Bitmap> =
    HashMap::with_max_entries(PROTO_ENTRIES, BPF_F_NO_PREALLOC);

/// The rules matching each remote and local address prefix, per table: a
/// longest-prefix-match trie (the kernel requires, and aya adds,
/// NO_PREALLOC for tries).
#[map]
pub static SG_ADDR: LpmTrie<AddrKey, Bitmap> = LpmTrie::with_max_entries(ADDR_TRIE_ENTRIES, 0);

/// The rules matching each aligned block of destination and source ports,
/// per table: a longest-prefix-match trie over the 16-bit port.
#[map]
pub static SG_PORT: LpmTrie<PortKey, Bitmap> = LpmTrie::with_max_entries(PORT_TRIE_ENTRIES, 0);

/// Hypervisor-mode instance addresses: `table` = ifindex, `dim` =
/// `DIM_LOCAL`, full-length prefixes.
#[map]
pub static SG_INSTANCE_ADDRS: LpmTrie<AddrKey, u8> =
    LpmTrie::with_max_entries(INSTANCE_ADDR_ENTRIES, 0);

/// Hypervisor-mode instances' pinned source MACs, by ifindex (no entry:
/// not pinned). NO_PREALLOC: an update swaps the whole value.
#[map]
pub static SG_INSTANCE_MACS: HashMap<u32, InstanceMac> =
    HashMap::with_max_entries(MAX_INTERFACES, BPF_F_NO_PREALLOC);

// --- State, written by the program -----------------------------------------

/// Answered sessions (the other side has sent a packet) and ended ones.
/// LRU: a full table evicts the least recently used session instead of
/// refusing a new one; only answers fill it, so a flood of new flows
/// cannot evict these. The daemon sets the size at load time.
#[map]
pub static SG_CONNTRACK: LruHashMap<CtKey, CtValue> =
    LruHashMap::with_max_entries(CONNTRACK_ENTRIES, 0);

/// Sessions that have not seen an answer yet: every new session starts
/// here and moves to `SG_CONNTRACK` at the first packet the other way.
/// LRU: a flood of new flows evicts only other unanswered flows.
#[map]
pub static SG_UNANSWERED: LruHashMap<CtKey, CtValue> =
    LruHashMap::with_max_entries(CONNTRACK_ENTRIES, 0);

/// Insertions into and removals from the two session tables, per CPU
/// (slots: `sg_common::maps::STAT_*`), for the daemon's eviction count.
#[map]
pub static SG_SESSION_STATS: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(SESSION_STAT_SLOTS, 0);

/// The decisions of first fragments, for the later ones. LRU: the
/// fragments of datagrams long gone age out by themselves.
#[map]
pub static SG_FRAGMENTS: LruHashMap<FragKey, FragValue> =
    LruHashMap::with_max_entries(FRAGMENT_ENTRIES, 0);

/// One packet's work area, shared by the parser and the stages (see
/// [`Work`]). Per-CPU: one program run uses a slot at a time.
#[map]
pub static SG_WORK: PerCpuArray<Work> = PerCpuArray::with_max_entries(1, 0);

// --- Counters and drop records, read by the daemon --------------------------

/// Packets per reason (`Reason` is the index). Per-CPU: no atomic adds.
#[map]
pub static SG_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(REASON_COUNT, 0);

/// Packets and bytes per deciding rule (per table), per CPU.
#[map]
pub static SG_RULE_COUNTERS: LruPerCpuHashMap<RuleCounterKey, Counter> =
    LruPerCpuHashMap::with_max_entries(RULE_COUNTER_ENTRIES, 0);

/// Packets and bytes per interface slot (`InterfaceConfig::slot`),
/// direction and verdict, per CPU: an array, one access a packet.
#[map]
pub static SG_IFACE_COUNTERS: PerCpuArray<Counter> =
    PerCpuArray::with_max_entries(IFACE_COUNTER_ENTRIES, 0);

/// Records of dropped packets for the daemon, rate-limited per CPU.
#[map]
pub static SG_DROPS: RingBuf = RingBuf::with_byte_size(DROP_RING_BYTES, 0);

/// Per-CPU token bucket for drop records: (tokens, last refill time).
#[map]
pub static SG_DROP_BUDGET: PerCpuArray<[u64; 2]> = PerCpuArray::with_max_entries(1, 0);

/// The key of `flow`'s address `addr` in an address trie (`SG_ADDR`,
/// `SG_INSTANCE_ADDRS`): table `table`, dimension `dim`, a full-length
/// prefix.
#[inline(always)]
pub fn addr_key(table: u32, dim: u8, flow: &Flow, addr: &[u8; 16]) -> Key<AddrKey> {
    let family = flow.family();
    Key::new(
        AddrKey::host_bits(family),
        AddrKey::new(table, dim, family, *addr),
    )
}
