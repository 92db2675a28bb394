//! Map layouts and constants shared by the kernel program (`sg-ebpf`) and the
//! daemon (`sg-daemon`). Everything here is `#[repr(C)]` plain data: the
//! kernel reads exactly the bytes the daemon writes.
//!
//! How a packet is classified (see the README's architecture section):
//! every rule of one interface and direction gets a bit, in decision order
//! (priority, then drop before accept, then file order). For each packet
//! field the daemon stores, per possible value class, the bitmap of rules
//! that accept that value. The kernel looks up one bitmap per field, ANDs
//! them, and the lowest set bit is the deciding rule. The cost is a fixed
//! number of map lookups whatever the number of rules.
#![no_std]

/// Idle timeout of a tracked session (SPEC §3.5); the config may override it.
pub const SESSION_TIMEOUT_SECS: u64 = 910;

/// The metadata service, always reachable outbound (SPEC §3.7).
pub const METADATA_V4: [u8; 4] = [100, 100, 100, 200];

/// Rules per direction of one interface, including hidden ones. SPEC §4
/// allows 1000 per interface for both directions together.
pub const MAX_RULES: usize = 1024;
pub const BITMAP_WORDS: usize = MAX_RULES / 64;

/// Compiled tables (one per interface and direction, twice for the
/// double buffer) that can exist at once.
pub const MAX_TABLES: u32 = 4096;

/// Tracked sessions across all interfaces.
pub const CONNTRACK_ENTRIES: u32 = 131_072;

/// Entries in the address and port tries, all tables together.
pub const ADDR_TRIE_ENTRIES: u32 = 262_144;
pub const PORT_TRIE_ENTRIES: u32 = 262_144;
pub const PROTO_ENTRIES: u32 = 65_536;
pub const MAX_INTERFACES: u32 = 4096;
pub const FRAGMENT_ENTRIES: u32 = 8192;
/// (table, rule) pairs with counters; the least recently hit go first.
pub const RULE_COUNTER_ENTRIES: u32 = 65_536;
/// (interface, direction, verdict) counters.
pub const IFACE_COUNTER_ENTRIES: u32 = 16_384;
/// Ring buffer of drop records, bytes (a power of two of pages).
pub const DROP_RING_BYTES: u32 = 256 * 1024;
/// Drop records each CPU may emit per second, and in a burst: a flood of
/// dropped packets cannot flood the daemon.
pub const DROP_RECORDS_PER_SEC: u64 = 200;
pub const DROP_RECORDS_BURST: u64 = 100;
/// Instance addresses of hypervisor-mode interfaces (anti-spoofing).
pub const INSTANCE_ADDR_ENTRIES: u32 = 16_384;

/// Semantic direction, seen from the protected instance.
pub const INBOUND: usize = 0;
pub const OUTBOUND: usize = 1;

/// Key in the protocol map that holds the rules matching every protocol; a
/// packet whose protocol has no entry of its own uses this one.
pub const PROTO_ANY: u32 = 256;

pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// Version of the map layout (keys, values, sizes). Pinned maps live in a
/// directory named after it, so a daemon with another layout never reads
/// them; bump it with every layout change.
pub const MAP_LAYOUT_VERSION: u32 = 1;

/// Names of the maps, as declared in the kernel program.
pub mod maps {
    pub const GLOBAL: &str = "SG_GLOBAL";
    pub const INTERFACES: &str = "SG_INTERFACES";
    pub const TABLES: &str = "SG_TABLES";
    pub const PROTO: &str = "SG_PROTO";
    pub const ADDR: &str = "SG_ADDR";
    pub const PORT: &str = "SG_PORT";
    pub const CONNTRACK: &str = "SG_CONNTRACK";
    pub const FRAGMENTS: &str = "SG_FRAGMENTS";
    pub const INSTANCE_ADDRS: &str = "SG_INSTANCE_ADDRS";
    pub const RULE_COUNTERS: &str = "SG_RULE_COUNTERS";
    pub const IFACE_COUNTERS: &str = "SG_IFACE_COUNTERS";
    pub const DROPS: &str = "SG_DROPS";

    /// The maps that hold state and outlive a daemon (pinned): everything
    /// but per-run scratch space.
    pub const PINNED: [&str; 12] = [
        RULE_COUNTERS,
        IFACE_COUNTERS,
        GLOBAL,
        INTERFACES,
        TABLES,
        PROTO,
        ADDR,
        PORT,
        CONNTRACK,
        FRAGMENTS,
        INSTANCE_ADDRS,
        STATS,
    ];
    pub const STATS: &str = "SG_STATS";
}

/// Names of the two entry points: one per TC hook.
pub mod programs {
    pub const INGRESS: &str = "sg_tc_ingress";
    pub const EGRESS: &str = "sg_tc_egress";
}

/// One bit per rule, in decision order.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Bitmap {
    pub words: [u64; BITMAP_WORDS],
}

impl Bitmap {
    pub const EMPTY: Bitmap = Bitmap {
        words: [0; BITMAP_WORDS],
    };

    pub fn set(&mut self, bit: usize) {
        self.words[bit / 64] |= 1u64 << (bit % 64);
    }

    pub fn get(&self, bit: usize) -> bool {
        self.words[bit / 64] & (1u64 << (bit % 64)) != 0
    }

    pub fn union_with(&mut self, other: &Bitmap) {
        for (w, o) in self.words.iter_mut().zip(other.words.iter()) {
            *w |= *o;
        }
    }
}

/// Global switches, one entry in `SG_GLOBAL`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct GlobalConfig {
    pub session_timeout_ns: u64,
    /// `GLOBAL_*` bits.
    pub flags: u32,
    pub _pad: u32,
}

/// Drop outbound TCP to port 25 (SPEC §3.8).
pub const GLOBAL_BLOCK_SMTP: u32 = 1 << 0;
/// Let IPv6 neighbour and router discovery through (SPEC §3.7).
pub const GLOBAL_ALLOW_ND: u32 = 1 << 1;
/// Let DHCP and DHCPv6 client exchanges through (SPEC §3.7).
pub const GLOBAL_ALLOW_DHCP: u32 = 1 << 2;

/// Value of `SG_INTERFACES`, keyed by ifindex. Replaced whole (hash map
/// update), which is how a new ruleset is switched in atomically.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct InterfaceConfig {
    /// Table id per semantic direction (`INBOUND`, `OUTBOUND`).
    pub tables: [u32; 2],
    /// `IFACE_*` bits.
    pub flags: u32,
    /// Bumped at every ruleset change; a session from an older epoch is
    /// re-checked against the new explicit drop rules once (SPEC §3.6).
    pub epoch: u32,
}

/// The interface is the host side of an instance's link: TC ingress is the
/// instance's outbound traffic.
pub const IFACE_HYPERVISOR: u32 = 1 << 0;

/// Value of `SG_TABLES`, indexed by table id.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TableInfo {
    /// Bit set where the rule of that index accepts.
    pub accept: Bitmap,
    /// Verdict when no rule matches: 1 accept, 0 drop.
    pub default_accept: u32,
    pub rule_count: u32,
    /// `TABLE_*` bits: which optional lookups this table needs.
    pub flags: u32,
    pub _pad: u32,
}

/// Some rule names a local address: look up `DIM_LOCAL`.
pub const TABLE_MATCHES_LOCAL: u32 = 1 << 0;
/// Some rule names a source port: look up `DIM_SRC_PORT`.
pub const TABLE_MATCHES_SRC_PORT: u32 = 1 << 1;

/// Key of `SG_PROTO`: (table, protocol number or `PROTO_ANY`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProtoKey {
    pub table: u32,
    pub proto: u32,
}

/// Data part of an `SG_ADDR` LPM key. Prefix length = 48 + CIDR length:
/// the table, the dimension and the family always match in full.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddrKey {
    /// Table id, big-endian (or ifindex in `SG_INSTANCE_ADDRS`).
    pub table: [u8; 4],
    /// `DIM_REMOTE` or `DIM_LOCAL`.
    pub dim: u8,
    pub family: u8,
    pub addr: [u8; 16],
    pub _pad: [u8; 2],
}
pub const ADDR_KEY_FIXED_BITS: u32 = 48;
/// The remote address: source of inbound, destination of outbound packets.
pub const DIM_REMOTE: u8 = 0;
/// The local address (5-tuple rules; anti-spoofing).
pub const DIM_LOCAL: u8 = 1;

/// Data part of an `SG_PORT` LPM key. Prefix length = 40 + port prefix.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortKey {
    pub table: [u8; 4],
    /// `DIM_DST_PORT` or `DIM_SRC_PORT`.
    pub dim: u8,
    pub port: [u8; 2],
}
pub const PORT_KEY_FIXED_BITS: u32 = 40;
pub const DIM_DST_PORT: u8 = 0;
/// Source port (5-tuple rules).
pub const DIM_SRC_PORT: u8 = 1;

/// Key of `SG_CONNTRACK`: one entry per session and interface, oriented
/// local/remote so that both directions of a session find the same entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CtKey {
    pub ifindex: u32,
    pub local: [u8; 16],
    pub remote: [u8; 16],
    pub local_port: u16,
    pub remote_port: u16,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CtValue {
    /// `bpf_ktime_get_boot_ns` of the last packet.
    pub last_seen_ns: u64,
    /// Direction (`INBOUND`/`OUTBOUND`) of the packet that opened it.
    pub opened: u32,
    /// The interface's ruleset epoch the session was last checked against.
    pub epoch: u32,
}

/// Key of `SG_FRAGMENTS`: one datagram being fragmented.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub ifindex: u32,
    /// IPv4 identification (16 bits) or IPv6 fragment identification.
    pub id: u32,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}

/// Value of `SG_FRAGMENTS`: how the first fragment was decided.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FragValue {
    /// The `Reason` of the first fragment.
    pub reason: u32,
    pub rule: u32,
    /// The table `rule` indexes.
    pub table: u32,
}

/// The decision left in `skb->cb` (for `BPF_PROG_TEST_RUN` and for tools
/// that run after the classifier): `cb[CB_REASON]` is the `Reason`,
/// `cb[CB_RULE]` the index of the deciding rule, or `NO_RULE`, in table
/// `cb[CB_TABLE]`.
pub const CB_REASON: usize = 0;
pub const CB_RULE: usize = 1;
pub const CB_TABLE: usize = 2;
pub const NO_RULE: u32 = u32::MAX;

/// Key of `SG_RULE_COUNTERS`: a rule of a table.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RuleCounterKey {
    pub table: u32,
    pub rule: u32,
}

/// Key of `SG_IFACE_COUNTERS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IfaceCounterKey {
    pub ifindex: u32,
    /// `INBOUND` / `OUTBOUND`.
    pub dir: u8,
    /// 1 accepted, 0 dropped.
    pub accepted: u8,
    pub _pad: [u8; 2],
}

/// Packets and bytes (per CPU in the kernel).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// One dropped packet, as the kernel reports it through `SG_DROPS`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DropRecord {
    /// `bpf_ktime_get_boot_ns`.
    pub time_ns: u64,
    pub ifindex: u32,
    pub reason: u32,
    pub rule: u32,
    pub table: u32,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    pub dir: u8,
    pub proto: u8,
    pub family: u8,
    pub _pad: u8,
}

/// What decided a packet; index into the per-CPU `SG_STATS` counters.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    NotIp = 0,
    Session = 1,
    RuleAccept = 2,
    RuleDrop = 3,
    DefaultAccept = 4,
    DefaultDrop = 5,
    Metadata = 6,
    Pmtud = 7,
    NeighborDiscovery = 8,
    Dhcp = 9,
    SmtpBlocked = 10,
    Malformed = 11,
    Unbound = 12,
    /// An ICMP error quoting a tracked session (SPEC §3.5).
    Related = 13,
    /// A session that a new explicit drop rule matches (SPEC §3.6).
    SessionEnded = 14,
    /// A hypervisor-mode instance sending from an address not its own.
    Spoofed = 15,
    /// A non-first fragment whose first fragment was accepted.
    FragmentAccept = 16,
    /// A non-first fragment whose first fragment was dropped, or unknown
    /// inbound.
    FragmentDrop = 17,
}
pub const REASON_COUNT: u32 = 18;

impl Reason {
    pub const ALL: [Reason; REASON_COUNT as usize] = [
        Reason::NotIp,
        Reason::Session,
        Reason::RuleAccept,
        Reason::RuleDrop,
        Reason::DefaultAccept,
        Reason::DefaultDrop,
        Reason::Metadata,
        Reason::Pmtud,
        Reason::NeighborDiscovery,
        Reason::Dhcp,
        Reason::SmtpBlocked,
        Reason::Malformed,
        Reason::Unbound,
        Reason::Related,
        Reason::SessionEnded,
        Reason::Spoofed,
        Reason::FragmentAccept,
        Reason::FragmentDrop,
    ];

    pub fn from_u32(v: u32) -> Option<Reason> {
        Reason::ALL.get(v as usize).copied()
    }

    pub fn accepts(self) -> bool {
        !matches!(
            self,
            Reason::RuleDrop
                | Reason::DefaultDrop
                | Reason::SmtpBlocked
                | Reason::Malformed
                | Reason::SessionEnded
                | Reason::Spoofed
                | Reason::FragmentDrop
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Reason::NotIp => "not-ip",
            Reason::Session => "session",
            Reason::RuleAccept => "rule-accept",
            Reason::RuleDrop => "rule-drop",
            Reason::DefaultAccept => "default-accept",
            Reason::DefaultDrop => "default-drop",
            Reason::Metadata => "builtin-metadata",
            Reason::Pmtud => "builtin-pmtud",
            Reason::NeighborDiscovery => "builtin-neighbor-discovery",
            Reason::Dhcp => "builtin-dhcp",
            Reason::SmtpBlocked => "builtin-smtp-blocked",
            Reason::Malformed => "malformed",
            Reason::Unbound => "unbound",
            Reason::Related => "related-icmp",
            Reason::SessionEnded => "session-ended-by-drop-rule",
            Reason::Spoofed => "spoofed-source",
            Reason::FragmentAccept => "fragment-accept",
            Reason::FragmentDrop => "fragment-drop",
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all are repr(C) plain data without padding the kernel reads.
    unsafe impl aya::Pod for Bitmap {}
    unsafe impl aya::Pod for GlobalConfig {}
    unsafe impl aya::Pod for InterfaceConfig {}
    unsafe impl aya::Pod for TableInfo {}
    unsafe impl aya::Pod for ProtoKey {}
    unsafe impl aya::Pod for AddrKey {}
    unsafe impl aya::Pod for PortKey {}
    unsafe impl aya::Pod for CtKey {}
    unsafe impl aya::Pod for CtValue {}
    unsafe impl aya::Pod for FragKey {}
    unsafe impl aya::Pod for RuleCounterKey {}
    unsafe impl aya::Pod for IfaceCounterKey {}
    unsafe impl aya::Pod for Counter {}
    unsafe impl aya::Pod for DropRecord {}
    unsafe impl aya::Pod for FragValue {}
}
