//! The rules: classification by bit vectors, and the rules stage. One map
//! lookup per packet field (protocol, remote address, destination port,
//! and — only for tables whose rules use them — local address and source
//! port), an AND of the bitmaps and a search for the lowest set bit. Bit
//! order is decision order, so the lowest bit is the rule that decides.
//! Nothing here depends on the number of rules.

use aya_ebpf::maps::lpm_trie::Key;
use sg_common::{
    BITMAP_WORDS, Bitmap, DIM_DST_PORT, DIM_LOCAL, DIM_REMOTE, DIM_SRC_PORT, Direction,
    InterfaceConfig, NO_RULE, PROTO_ANY, PortKey, ProtoKey, Reason, TABLE_MATCHES_LOCAL,
    TABLE_MATCHES_SRC_PORT,
};

use crate::{
    conntrack::open_session,
    maps::{SG_ADDR, SG_PORT, SG_PROTO, SG_TABLES, addr_key},
    parse::Flow,
    work::{Work, finish},
};

/// The interface's rules, or its default; an accepted packet opens its
/// session.
#[inline(never)]
pub fn stage_rules(w: &mut Work, iface: &InterfaceConfig) {
    let dir = w.direction();
    let table = iface.tables[dir.index()];
    let (reason, rule) = match classify(table, &w.packet, dir) {
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
    finish(w, reason, rule, table);
    open_if_accepted(w, iface.epoch);
}

/// An accepted packet opens (or refreshes) its session. The decision is
/// read back from the work area: the verifier then walks this once, not
/// once for every way [`classify`] can end (which tripled the program's
/// verification cost).
#[inline(never)]
fn open_if_accepted(w: &mut Work, epoch: u32) {
    // SAFETY: a plain read of the work area's own field.
    let reason = unsafe { core::ptr::read_volatile(&w.reason) };
    let accepted = reason == Reason::RuleAccept as u32 || reason == Reason::DefaultAccept as u32;
    if accepted && w.packet.opens_session() {
        open_session(w, epoch);
    }
}

pub enum Outcome {
    /// Rule `index` of the table decided.
    Rule { accept: bool, index: u32 },
    /// No rule matched: the direction's default.
    Default { accept: bool },
}

/// Which rule of table `table` decides `flow` going in direction `dir`.
#[inline(never)]
pub fn classify(table: u32, flow: &Flow, dir: Direction) -> Outcome {
    let Some(info) = SG_TABLES.get(table) else {
        return Outcome::Default { accept: false };
    };
    let default = Outcome::Default {
        accept: info.default_accept != 0,
    };
    let (remote, local) = match dir {
        Direction::Ingress => (&flow.src, &flow.dst),
        Direction::Egress => (&flow.dst, &flow.src),
    };

    let Some(proto_bits) = proto_bitmap(table, flow.proto()) else {
        return default;
    };
    let Some(remote_bits) = addr_bitmap(table, DIM_REMOTE, flow, remote) else {
        return default;
    };
    let Some(port_bits) = port_bitmap(table, DIM_DST_PORT, flow.rule_dst_port()) else {
        return default;
    };
    // Tables without 5-tuple rules skip these lookups; an all-ones bitmap
    // stands in.
    let local_bits = if info.flags & TABLE_MATCHES_LOCAL != 0 {
        match addr_bitmap(table, DIM_LOCAL, flow, local) {
            Some(bits) => bits,
            None => return default,
        }
    } else {
        &ALL_RULES
    };
    let sport_bits = if info.flags & TABLE_MATCHES_SRC_PORT != 0 {
        match port_bitmap(table, DIM_SRC_PORT, flow.rule_src_port()) {
            Some(bits) => bits,
            None => return default,
        }
    } else {
        &ALL_RULES
    };

    for i in 0..BITMAP_WORDS {
        let w = proto_bits.words[i]
            & remote_bits.words[i]
            & port_bits.words[i]
            & local_bits.words[i]
            & sport_bits.words[i];
        if w != 0 {
            let bit = w & w.wrapping_neg();
            return Outcome::Rule {
                accept: info.accept.words[i] & bit != 0,
                index: i as u32 * 64 + bit_index(bit),
            };
        }
    }
    default
}

static ALL_RULES: Bitmap = Bitmap {
    words: [u64::MAX; BITMAP_WORDS],
};

#[inline(always)]
fn proto_bitmap(table: u32, proto: u8) -> Option<&'static Bitmap> {
    let exact = ProtoKey {
        table,
        proto: proto as u32,
    };
    match unsafe { SG_PROTO.get(exact) } {
        Some(bits) => Some(bits),
        None => unsafe {
            SG_PROTO.get(ProtoKey {
                table,
                proto: PROTO_ANY,
            })
        },
    }
}

#[inline(always)]
fn addr_bitmap(table: u32, dim: u8, flow: &Flow, addr: &[u8; 16]) -> Option<&'static Bitmap> {
    SG_ADDR.get(addr_key(table, dim, flow, addr))
}

#[inline(always)]
fn port_bitmap(table: u32, dim: u8, port: u16) -> Option<&'static Bitmap> {
    let key = Key::new(PortKey::prefix_bits(16), PortKey::new(table, dim, port));
    SG_PORT.get(&key)
}

/// Index of the single set bit of `bit` (BPF has no count-trailing-zeros
/// instruction): a de Bruijn sequence times `bit` puts a distinct 6-bit
/// pattern in the top bits for each position. Branch-free on purpose: a
/// binary search would hand the verifier one path per bit position.
#[inline(always)]
fn bit_index(bit: u64) -> u32 {
    let slot = (bit.wrapping_mul(DE_BRUIJN) >> 58) as usize;
    BIT_POSITIONS[slot & 63] as u32
}

const DE_BRUIJN: u64 = 0x022f_dd63_cc95_386d;

/// `BIT_POSITIONS[(1 << i) * DE_BRUIJN >> 58] == i`.
static BIT_POSITIONS: [u8; 64] = {
    let mut table = [0u8; 64];
    let mut filled = 0u64;
    let mut i = 0;
    while i < 64 {
        let slot = ((1u64 << i).wrapping_mul(DE_BRUIJN) >> 58) as usize;
        assert!(
            filled & (1 << slot) == 0,
            "DE_BRUIJN is not a de Bruijn sequence"
        );
        filled |= 1 << slot;
        table[slot] = i as u8;
        i += 1;
    }
    table
};
