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

/// Semantic direction, seen from the protected instance.
pub const INBOUND: usize = 0;
pub const OUTBOUND: usize = 1;

/// Key in the protocol map that holds the rules matching every protocol; a
/// packet whose protocol has no entry of its own uses this one.
pub const PROTO_ANY: u32 = 256;

pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// Names of the maps, as declared in the kernel program.
pub mod maps {
    pub const GLOBAL: &str = "SG_GLOBAL";
    pub const INTERFACES: &str = "SG_INTERFACES";
    pub const TABLES: &str = "SG_TABLES";
    pub const PROTO: &str = "SG_PROTO";
    pub const ADDR: &str = "SG_ADDR";
    pub const PORT: &str = "SG_PORT";
    pub const CONNTRACK: &str = "SG_CONNTRACK";
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
    pub _pad: u32,
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
}

/// Key of `SG_PROTO`: (table, protocol number or `PROTO_ANY`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ProtoKey {
    pub table: u32,
    pub proto: u32,
}

/// Data part of an `SG_ADDR` LPM key. Prefix length = 40 + CIDR length:
/// the table and the family always match in full.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddrKey {
    pub table: [u8; 4],
    pub family: u8,
    pub addr: [u8; 16],
    pub _pad: [u8; 3],
}
pub const ADDR_KEY_FIXED_BITS: u32 = 40;

/// Data part of an `SG_PORT` LPM key. Prefix length = 32 + port prefix.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortKey {
    pub table: [u8; 4],
    pub port: [u8; 2],
}
pub const PORT_KEY_FIXED_BITS: u32 = 32;

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
    /// Direction of the packet that opened the session.
    pub opened: u32,
    pub _pad: u32,
}

/// What decided a packet; index into the per-CPU `SG_STATS` counters.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
}
pub const REASON_COUNT: u32 = 13;

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
    ];

    pub fn accepts(self) -> bool {
        !matches!(
            self,
            Reason::RuleDrop | Reason::DefaultDrop | Reason::SmtpBlocked | Reason::Malformed
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
}
