//! Keys and values of every map, `#[repr(C)]` plain data that the kernel
//! reads exactly as the daemon writes it, with the flag bits they carry.
//! Their sizes are checked at compile time against `MAP_LAYOUT_VERSION`:
//! a change of layout that forgets to bump the version does not build.

use crate::FAMILY_V4;
use crate::maps::{BITMAP_WORDS, MAP_LAYOUT_VERSION, TEST_LAYOUT_VERSION};

/// Key in the protocol map that holds the rules matching every protocol; a
/// packet whose protocol has no entry of its own uses this one.
pub const PROTO_ANY: u32 = 256;

/// One bit per rule, in decision order.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
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
    pub timeouts: SessionTimeouts,
    /// `GLOBAL_*` bits.
    pub flags: u32,
    pub _pad: u32,
}

/// How long a session lives without a packet, by its state (SPEC §3.5,
/// §3.6), in ns. The kernel checks these deadlines itself; the daemon's
/// sweeper and views use the same function ([`SessionTimeouts::expired`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionTimeouts {
    /// Established TCP, and every other protocol: `session_timeout_secs`.
    pub established_ns: u64,
    /// Half-open TCP (no answer yet): `syn_timeout_secs`.
    pub half_open_ns: u64,
    /// Closed TCP (RST, or FIN both ways): `tcp_closed_timeout_secs`.
    pub closed_ns: u64,
}

impl SessionTimeouts {
    pub const DEFAULT: SessionTimeouts = SessionTimeouts {
        established_ns: crate::SESSION_TIMEOUT_SECS * 1_000_000_000,
        half_open_ns: crate::SYN_TIMEOUT_SECS * 1_000_000_000,
        closed_ns: crate::TCP_CLOSED_TIMEOUT_SECS * 1_000_000_000,
    };

    /// How long a session in `state` (`SESSION_*`) lives idle. (An ended
    /// session does not expire: see `CtValue::ended`.)
    #[inline(always)]
    pub fn idle_ns(&self, state: u8) -> u64 {
        match state {
            SESSION_HALF_OPEN | SESSION_ANSWERED => self.half_open_ns,
            SESSION_CLOSED => self.closed_ns,
            _ => self.established_ns,
        }
    }

    /// Whether a session in `state` last seen at `last_seen_ns` has
    /// expired at `now_ns` (boot time): the kernel then treats it as
    /// absent, and the sweeper frees it. A packet on another CPU may have
    /// stamped it after `now_ns` was read: that is "just seen", not
    /// expired (saturating, not wrapping).
    #[inline(always)]
    pub fn expired(&self, state: u8, last_seen_ns: u64, now_ns: u64) -> bool {
        now_ns.saturating_sub(last_seen_ns) > self.idle_ns(state)
    }
}

/// Drop outbound TCP to port 25 (SPEC §3.8).
pub const GLOBAL_BLOCK_SMTP: u32 = 1 << 0;
/// Let IPv6 neighbour and router discovery through (SPEC §3.7); the
/// file's `builtin_neighbor_discovery`.
pub const GLOBAL_BUILTIN_NEIGHBOR_DISCOVERY: u32 = 1 << 1;
/// Let DHCP and DHCPv6 client exchanges through (SPEC §3.7); the file's
/// `builtin_dhcp_client`.
pub const GLOBAL_BUILTIN_DHCP_CLIENT: u32 = 1 << 2;
/// Let ICMPv6 redirects (type 137) through (SPEC §3.7); the file's
/// `builtin_nd_redirects`.
pub const GLOBAL_BUILTIN_ND_REDIRECTS: u32 = 1 << 3;
/// Let frames that are not IP through (SPEC §3.7; ARP always passes); the
/// file's `builtin_non_ip`.
pub const GLOBAL_BUILTIN_NON_IP: u32 = 1 << 4;

/// Value of `SG_INTERFACES`, keyed by ifindex. Replaced whole (hash map
/// update), which is how a new ruleset is switched in atomically.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct InterfaceConfig {
    /// Table id per semantic direction (`Direction::index`).
    pub tables: [u32; 2],
    /// `IFACE_*` bits.
    pub flags: u32,
    /// Bumped at every ruleset change; a session from an older epoch is
    /// re-checked against the new explicit drop rules once (SPEC §3.6).
    pub epoch: u32,
    /// The interface's counters in `SG_IFACE_COUNTERS`
    /// (`maps::iface_counter_index`), below `IFACE_COUNTER_SLOTS`; the
    /// daemon assigns it and keeps it while the interface is bound.
    pub slot: u32,
    pub _pad: u32,
}

/// The interface is the host side of an instance's link: TC ingress is the
/// instance's outbound traffic.
pub const IFACE_HYPERVISOR: u32 = 1 << 0;
/// The interface has no link header (TUN, WireGuard, IP tunnels): the IP
/// header starts the frame, and `skb->protocol` says which IP it is.
pub const IFACE_L3: u32 = 1 << 1;

/// Value of `SG_INSTANCE_MACS`, keyed by ifindex: the Ethernet source
/// address a hypervisor-mode instance is pinned to (its binding's `mac`).
/// No entry: any source MAC.
pub type InstanceMac = [u8; 6];

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

impl AddrKey {
    /// The key of `addr` (family `FAMILY_V4`, the first 4 bytes, or
    /// `FAMILY_V6`) in table (or interface) `table`, dimension `dim`.
    #[inline(always)]
    pub const fn new(table: u32, dim: u8, family: u8, addr: [u8; 16]) -> AddrKey {
        AddrKey {
            table: table.to_be_bytes(),
            dim,
            family,
            addr,
            _pad: [0; 2],
        }
    }

    /// LPM prefix length of a key whose address has `cidr_len` bits.
    #[inline(always)]
    pub const fn prefix_bits(cidr_len: u32) -> u32 {
        ADDR_KEY_FIXED_BITS + cidr_len
    }

    /// LPM prefix length of a whole address of `family`: a lookup key.
    #[inline(always)]
    pub const fn host_bits(family: u8) -> u32 {
        AddrKey::prefix_bits(if family == FAMILY_V4 { 32 } else { 128 })
    }
}
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

impl PortKey {
    #[inline(always)]
    pub const fn new(table: u32, dim: u8, port: u16) -> PortKey {
        PortKey {
            table: table.to_be_bytes(),
            dim,
            port: port.to_be_bytes(),
        }
    }

    /// LPM prefix length of a key whose port has `port_bits` bits.
    #[inline(always)]
    pub const fn prefix_bits(port_bits: u32) -> u32 {
        PORT_KEY_FIXED_BITS + port_bits
    }
}
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
    /// `Direction` (as u32) of the packet that opened it.
    pub opened: u32,
    /// The interface's ruleset epoch the session was last checked against.
    pub epoch: u32,
    /// `SESSION_*`: where the connection is in its life.
    pub state: u8,
    /// TCP: bit `1 << Direction` for each direction a FIN went in.
    pub fin: u8,
    /// 1: ended by an explicit drop rule (SPEC §3.6). Every packet of it is
    /// dropped, both ways, while a drop rule matches the packet that
    /// opened it; it does not expire. When no drop rule matches it any
    /// more it goes, and the flow is judged afresh. Only the kernel's
    /// session stage sets it, apart from `state`, so that a packet passing
    /// on another CPU at that moment cannot write it back.
    pub ended: u8,
    pub _pad: [u8; CT_VALUE_PAD],
}

/// `CtValue`'s trailing padding: 8 bytes more in the `layout-test` build,
/// whose layout differs from the release's in that alone.
pub const CT_VALUE_PAD: usize = if cfg!(feature = "layout-test") { 13 } else { 5 };

/// A session of a protocol other than TCP (UDP, ICMP echo, ...): lives
/// `session_timeout_secs` idle.
pub const SESSION_OPEN: u8 = 0;
/// TCP, opened, no packet from the other side yet: `syn_timeout_secs`.
pub const SESSION_HALF_OPEN: u8 = 1;
/// TCP, the opener acknowledged the other side's answer (the handshake is
/// complete): `session_timeout_secs`.
pub const SESSION_ESTABLISHED: u8 = 2;
/// TCP, RST seen or FIN seen both ways: `tcp_closed_timeout_secs`. A SYN
/// on its ports is a new connection, judged by the rules.
pub const SESSION_CLOSED: u8 = 3;
/// TCP, the other side answered (a SYN|ACK) but the opener has not
/// acknowledged it yet: `syn_timeout_secs`. A flood of spoofed SYNs that a
/// server answers stays here, never established, and leaves on its own.
pub const SESSION_ANSWERED: u8 = 4;

/// Key of `SG_FRAGMENTS`: one datagram being fragmented, named as the
/// receiver's reassembly names it (IPv4: addresses, protocol and
/// identification, RFC 791; IPv6: addresses and identification, RFC 8200
/// §4.5).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub ifindex: u32,
    /// IPv4 identification (16 bits) or IPv6 fragment identification.
    pub id: u32,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// IPv4: the protocol. IPv6: 0, since only the first fragment says
    /// which upper-layer protocol follows the extension headers.
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}

/// Value of `SG_FRAGMENTS`: how the first fragment was decided.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FragValue {
    /// `bpf_ktime_get_boot_ns` of the first fragment: the entry is ignored
    /// once it is older than `FRAGMENT_TIMEOUT_SECS`.
    pub first_seen_ns: u64,
    /// The `Reason` of the first fragment.
    pub reason: u32,
    pub rule: u32,
    /// The table `rule` indexes.
    pub table: u32,
    pub _pad: u32,
}

/// The decision left in `skb->cb` (for `BPF_PROG_TEST_RUN` and for tools
/// that run after the classifier): `cb[CB_REASON]` is the `Reason`,
/// `cb[CB_RULE]` the index of the deciding rule, or `NO_RULE`, in table
/// `cb[CB_TABLE]`.
pub const CB_REASON: usize = 0;
pub const CB_RULE: usize = 1;
pub const CB_TABLE: usize = 2;
pub const NO_RULE: u32 = u32::MAX;

/// Key of `SG_RULE_COUNTERS`: a rule of a table, on one interface (a
/// table may be shared by interfaces whose counts stay apart).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RuleCounterKey {
    pub table: u32,
    pub rule: u32,
    pub ifindex: u32,
}

/// An interface counter as the daemon reports it (the kernel indexes them
/// by slot, `maps::iface_counter_index`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IfaceCounterKey {
    pub ifindex: u32,
    /// `Direction` (as u8).
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

/// The sizes of the layout `MAP_LAYOUT_VERSION` names. Pinned maps of an
/// older daemon are opened by a newer one only when the version matches,
/// so a key or value that changes size must come with a new version (and
/// new sizes here).
const _: () = {
    use core::mem::size_of;
    // The test layout (`layout-test`) differs only in `CtValue`.
    let ct_value = match MAP_LAYOUT_VERSION {
        TEST_LAYOUT_VERSION => 32,
        _ => 24,
    };
    assert!(
        (MAP_LAYOUT_VERSION == 5 || MAP_LAYOUT_VERSION == TEST_LAYOUT_VERSION)
            && size_of::<Bitmap>() == 128
            && size_of::<GlobalConfig>() == 32
            && size_of::<InterfaceConfig>() == 24
            && size_of::<TableInfo>() == 144
            && size_of::<ProtoKey>() == 8
            && size_of::<AddrKey>() == 24
            && size_of::<PortKey>() == 7
            && size_of::<CtKey>() == 44
            && size_of::<CtValue>() == ct_value
            && size_of::<FragKey>() == 44
            && size_of::<FragValue>() == 24
            && size_of::<RuleCounterKey>() == 12
            && size_of::<IfaceCounterKey>() == 8
            && size_of::<Counter>() == 16
            && size_of::<DropRecord>() == 64,
        "a map key or value changed size: bump MAP_LAYOUT_VERSION and update these sizes"
    );
};

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
