//! Map layouts and constants shared by the kernel program (`sg-ebpf`) and the
//! daemon (`sg-daemon`). Everything here is `#[repr(C)]` plain data: the
//! kernel reads exactly the bytes the daemon writes.
//!
//! - [`addr`]: addresses as map bytes (family and 16 bytes);
//! - [`maps`]: map names, program names, capacities and the layout version;
//! - [`keys`]: the keys and values of every map, with their flag bits and a
//!   compile-time check of their sizes against the layout version;
//! - [`reason`]: what decided a packet (the counters' index);
//! - [`direction`]: the one `Direction` (ingress, egress) of the project;
//! - [`proto`]: the one protocol table (numbers and names).
//!
//! How a packet is classified (see the README's architecture section):
//! every rule of one interface and direction gets a bit, in decision order
//! (priority, then drop before accept, then file order). For each packet
//! field the daemon stores, per possible value class, the bitmap of rules
//! that accept that value. The kernel looks up one bitmap per field, ANDs
//! them, and the lowest set bit is the deciding rule. The cost is a fixed
//! number of map lookups whatever the number of rules.
#![no_std]

pub mod addr;
pub mod direction;
pub mod keys;
pub mod maps;
pub mod proto;
pub mod reason;

pub use addr::{FAMILY_V4, FAMILY_V6};
pub use direction::Direction;
pub use keys::*;
pub use maps::{
    ADDR_TRIE_ENTRIES, BITMAP_WORDS, CONNTRACK_ENTRIES, DROP_RECORDS_BURST, DROP_RECORDS_PER_SEC,
    DROP_RING_BYTES, FRAGMENT_ENTRIES, IFACE_COUNTER_ENTRIES, INSTANCE_ADDR_ENTRIES,
    MAP_LAYOUT_VERSION, MAX_INTERFACES, MAX_RULES, MAX_TABLES, PORT_TRIE_ENTRIES, PROTO_ENTRIES,
    RULE_COUNTER_ENTRIES, programs,
};
pub use reason::{REASON_COUNT, Reason};

/// Idle timeout of a tracked session (SPEC §3.5), and of an established
/// TCP connection; the config may override it (`session_timeout_secs`).
pub const SESSION_TIMEOUT_SECS: u64 = 910;
/// Idle timeout of a half-open TCP session, opened and not answered
/// (SPEC §3.6); `syn_timeout_secs`.
pub const SYN_TIMEOUT_SECS: u64 = 60;
/// Idle timeout of a closed TCP session (RST, or FIN both ways), long
/// enough for the last ACK and retransmitted FINs; `tcp_closed_timeout_secs`.
pub const TCP_CLOSED_TIMEOUT_SECS: u64 = 10;

/// How long a first fragment's decision is kept for its later fragments.
/// The fragments of one datagram travel together (the kernel's own
/// reassembly gives up after 30 s, `net.ipv4.ipfrag_time`); a short life
/// keeps a later datagram that reuses the identification (16 bits in
/// IPv4) from meeting an old entry.
pub const FRAGMENT_TIMEOUT_SECS: u64 = 5;

/// The metadata service, always reachable outbound (SPEC §3.7).
pub const METADATA_V4: [u8; 4] = [100, 100, 100, 200];
