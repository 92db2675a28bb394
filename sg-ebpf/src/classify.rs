//! Rule classification by bit vectors: three map lookups (protocol, remote
//! address, destination port), an AND of three bitmaps and a search for
//! the lowest set bit. Bit order is decision order, so the lowest bit is the
//! rule that decides. Nothing here depends on the number of rules.

use aya_ebpf::maps::lpm_trie::Key;
use sg_common::{
    ADDR_KEY_FIXED_BITS, AddrKey, BITMAP_WORDS, Bitmap, INBOUND, PORT_KEY_FIXED_BITS, PROTO_ANY,
    PortKey, ProtoKey,
};

use crate::{SG_ADDR, SG_PORT, SG_PROTO, SG_TABLES, parse::Flow};

pub enum Outcome {
    Rule { accept: bool },
    Default { accept: bool },
}

#[inline(always)]
pub fn classify(table: u32, flow: &Flow, dir: usize) -> Outcome {
    let Some(info) = SG_TABLES.get(table) else {
        return Outcome::Default { accept: false };
    };
    let default = Outcome::Default {
        accept: info.default_accept != 0,
    };

    let proto_bits = match unsafe {
        SG_PROTO.get(&ProtoKey {
            table,
            proto: flow.proto as u32,
        })
    } {
        Some(bits) => bits,
        None => match unsafe {
            SG_PROTO.get(&ProtoKey {
                table,
                proto: PROTO_ANY,
            })
        } {
            Some(bits) => bits,
            None => return default,
        },
    };

    let remote = if dir == INBOUND { flow.src } else { flow.dst };
    let addr_len = if flow.is_v4() { 32 } else { 128 };
    let addr_key = Key::new(
        ADDR_KEY_FIXED_BITS + addr_len,
        AddrKey {
            table: table.to_be_bytes(),
            family: flow.family,
            addr: remote,
            _pad: [0; 3],
        },
    );
    let Some(addr_bits) = SG_ADDR.get(&addr_key) else {
        return default;
    };

    let port_key = Key::new(
        PORT_KEY_FIXED_BITS + 16,
        PortKey {
            table: table.to_be_bytes(),
            port: flow.rule_port().to_be_bytes(),
        },
    );
    let Some(port_bits) = SG_PORT.get(&port_key) else {
        return default;
    };

    match first_common_bit(proto_bits, addr_bits, port_bits) {
        Some((word, bit)) => Outcome::Rule {
            accept: info.accept.words[word] & bit != 0,
        },
        None => default,
    }
}

/// The lowest bit set in all three bitmaps, as (word index, isolated bit).
#[inline(always)]
fn first_common_bit(a: &Bitmap, b: &Bitmap, c: &Bitmap) -> Option<(usize, u64)> {
    for i in 0..BITMAP_WORDS {
        let w = a.words[i] & b.words[i] & c.words[i];
        if w != 0 {
            return Some((i, w & w.wrapping_neg()));
        }
    }
    None
}
