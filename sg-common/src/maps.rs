//! The maps of the kernel program as the daemon knows them: their names,
//! which of them are pinned, their capacities, the names of the two entry
//! points, and the version of the layout (see [`crate::keys`] for the keys
//! and values themselves).

/// Version of the map layout (keys, values, sizes). Pinned maps live in a
/// directory named after it, so a daemon with another layout never reads
/// them; bump it with every layout change (`keys.rs` refuses to compile
/// when a key or value changes size and this is not bumped). A new daemon
/// moves the sessions of the layouts it knows into its own (sg-daemon's
/// `dataplane/migrate.rs`): teach it the old session encoding when a bump
/// changes `CtKey` or `CtValue`.
///
/// 3: the first released layout. 4: `SG_SESSION_STATS` counts the
/// sessions the daemon inserts (`STAT_DAEMON_INSERTED`: migrated ones), and
/// `RuleCounterKey` names the interface (tables are shared by interfaces).
/// 5: `SG_IFACE_COUNTERS` is a per-CPU array indexed by the interface's
/// counter slot (`InterfaceConfig::slot`, [`iface_counter_index`]); the
/// sessions are those of 3 and 4.
#[cfg(not(feature = "layout-test"))]
pub const MAP_LAYOUT_VERSION: u32 = 5;
/// The `layout-test` build's layout: this one with `CtValue` padded by 8
/// bytes, under a number no release uses.
#[cfg(feature = "layout-test")]
pub const MAP_LAYOUT_VERSION: u32 = TEST_LAYOUT_VERSION;

/// The layout of `--features layout-test` builds (tests of upgrades
/// between layouts); every build's migration can read its sessions.
pub const TEST_LAYOUT_VERSION: u32 = 9999;

pub const GLOBAL: &str = "SG_GLOBAL";
pub const INTERFACES: &str = "SG_INTERFACES";
pub const TABLES: &str = "SG_TABLES";
pub const PROTO: &str = "SG_PROTO";
pub const ADDR: &str = "SG_ADDR";
pub const PORT: &str = "SG_PORT";
pub const CONNTRACK: &str = "SG_CONNTRACK";
pub const UNANSWERED: &str = "SG_UNANSWERED";
pub const SESSION_STATS: &str = "SG_SESSION_STATS";
pub const FRAGMENTS: &str = "SG_FRAGMENTS";
pub const INSTANCE_ADDRS: &str = "SG_INSTANCE_ADDRS";
pub const INSTANCE_MACS: &str = "SG_INSTANCE_MACS";
pub const RULE_COUNTERS: &str = "SG_RULE_COUNTERS";
pub const IFACE_COUNTERS: &str = "SG_IFACE_COUNTERS";
pub const DROPS: &str = "SG_DROPS";
pub const STATS: &str = "SG_STATS";

/// The maps that hold state and outlive a daemon (pinned): everything
/// but per-run scratch space.
pub const PINNED: [&str; 15] = [
    RULE_COUNTERS,
    IFACE_COUNTERS,
    GLOBAL,
    INTERFACES,
    TABLES,
    PROTO,
    ADDR,
    PORT,
    CONNTRACK,
    UNANSWERED,
    SESSION_STATS,
    FRAGMENTS,
    INSTANCE_ADDRS,
    INSTANCE_MACS,
    STATS,
];

/// Names of the two entry points: one per TC hook.
pub mod programs {
    pub const INGRESS: &str = "sg_tc_ingress";
    pub const EGRESS: &str = "sg_tc_egress";
    /// A classifier that returns at once: the benchmark's floor. Never
    /// loaded by the daemon.
    pub const FLOOR: &str = "sg_tc_floor";
}

/// Rules per direction of one interface, including hidden ones. SPEC §4
/// allows 1000 per interface for both directions together.
pub const MAX_RULES: usize = 1024;
pub const BITMAP_WORDS: usize = MAX_RULES / 64;

/// Compiled tables that can exist at once: at most one per interface and
/// direction (interfaces with equal tables share one), twice for the
/// double buffer.
pub const MAX_TABLES: u32 = 4096;

/// Sessions across all interfaces, in each of the two session tables
/// (answered and unanswered), as compiled in; the daemon sets the size
/// at load time from `[daemon] session_table_size`.
pub const CONNTRACK_ENTRIES: u32 = 131_072;

/// The session tables: the answered one (`SG_CONNTRACK`: sessions the
/// other side answered, and ended sessions) and the unanswered one
/// (`SG_UNANSWERED`: sessions that have not seen an answer yet). A flood
/// of new flows fills the unanswered table only, so it can evict only
/// other unanswered flows.
pub const SESSION_TABLES: [&str; 2] = [CONNTRACK, UNANSWERED];

/// Slots of `SG_SESSION_STATS` (per CPU, `u64`), by table index `t` (0:
/// answered, 1: unanswered, as in [`SESSION_TABLES`]): entries the kernel
/// inserted (`STAT_INSERTED + t`), entries the kernel removed
/// (`STAT_KERNEL_REMOVED + t`) and entries the daemon removed
/// (`STAT_DAEMON_REMOVED + t`, written by the daemon in CPU 0's slot) and
/// entries the daemon inserted (`STAT_DAEMON_INSERTED + t`: sessions
/// migrated from an earlier layout; CPU 0's slot too).
/// Evictions = inserted (both) - removed (both) - live entries.
pub const STAT_INSERTED: u32 = 0;
pub const STAT_KERNEL_REMOVED: u32 = 2;
pub const STAT_DAEMON_REMOVED: u32 = 4;
pub const STAT_DAEMON_INSERTED: u32 = 6;
pub const SESSION_STAT_SLOTS: u32 = 8;
// The slots are part of the layout: a new one takes a new version.
const _: () = assert!(
    SESSION_STAT_SLOTS == 8
        && (MAP_LAYOUT_VERSION == 5 || MAP_LAYOUT_VERSION == TEST_LAYOUT_VERSION),
    "the session statistics changed: bump MAP_LAYOUT_VERSION and update this check"
);

/// Entries in the address and port tries, all tables together.
pub const ADDR_TRIE_ENTRIES: u32 = 262_144;
pub const PORT_TRIE_ENTRIES: u32 = 262_144;
pub const PROTO_ENTRIES: u32 = 65_536;
pub const MAX_INTERFACES: u32 = 4096;
pub const FRAGMENT_ENTRIES: u32 = 8192;
/// (table, rule, interface) triples with counters; the least recently hit
/// go first.
pub const RULE_COUNTER_ENTRIES: u32 = 65_536;
/// Interface counter slots: one per bound interface, which the daemon
/// assigns (`InterfaceConfig::slot`).
pub const IFACE_COUNTER_SLOTS: u32 = MAX_INTERFACES;
/// (slot, direction, verdict) counters: [`iface_counter_index`].
pub const IFACE_COUNTER_ENTRIES: u32 = IFACE_COUNTER_SLOTS * 4;

/// The index in `SG_IFACE_COUNTERS` of an interface's counter: its slot,
/// the direction (`Direction` as u32) and the verdict (1 accepted).
#[inline(always)]
pub const fn iface_counter_index(slot: u32, dir: u32, accepted: u32) -> u32 {
    slot * 4 + dir * 2 + accepted
}
/// Ring buffer of drop records, bytes (a power of two of pages).
pub const DROP_RING_BYTES: u32 = 256 * 1024;
/// Drop records each CPU may emit per second, and in a burst: a flood of
/// dropped packets cannot flood the daemon.
pub const DROP_RECORDS_PER_SEC: u64 = 200;
pub const DROP_RECORDS_BURST: u64 = 100;
/// Instance addresses of hypervisor-mode interfaces (anti-spoofing).
pub const INSTANCE_ADDR_ENTRIES: u32 = 16_384;
