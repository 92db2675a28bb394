//! The compiler against a first-match scan of the ordered rules.

use std::net::IpAddr;

use proptest::prelude::*;

use super::bitmaps::{ANY_V4, push_port_blocks};
use super::*;
use crate::model::{PortRange, Protocol};
use ipnet::IpNet;
use sg_common::{Bitmap, DIM_DST_PORT, DIM_REMOTE, TABLE_MATCHES_LOCAL, TABLE_MATCHES_SRC_PORT};

fn arb_net() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        (any::<[u8; 4]>(), 0u8..=32)
            .prop_map(|(a, l)| IpNet::new(IpAddr::from(a), l).unwrap().trunc()),
        // Few distinct v4 roots so that prefixes nest and overlap.
        (0u8..4, 0u8..=32).prop_map(|(a, l)| IpNet::new(IpAddr::from([198, 51, a, 7]), l)
            .unwrap()
            .trunc()),
        (any::<[u8; 16]>(), 0u8..=128)
            .prop_map(|(a, l)| IpNet::new(IpAddr::from(a), l).unwrap().trunc()),
    ]
}

fn arb_ports() -> impl Strategy<Value = PortRange> {
    prop_oneof![
        Just(PortRange::ANY),
        (1u16..100, 0u16..50).prop_map(|(s, n)| PortRange {
            start: s,
            end: s.saturating_add(n)
        }),
        (1u16..=u16::MAX).prop_map(|s| PortRange { start: s, end: s }),
    ]
}

fn arb_rule() -> impl Strategy<Value = TableRule> {
    (
        any::<bool>(),
        prop_oneof![
            Just(Protocol::All),
            Just(Protocol::Number(6)),
            Just(Protocol::Number(17)),
            Just(Protocol::Number(1)),
            any::<u8>().prop_map(Protocol::Number)
        ],
        prop::collection::vec(arb_ports(), 1..3),
        prop_oneof![3 => Just(PortRange::ANY), 1 => arb_ports()],
        prop::collection::vec(arb_net(), 1..3),
        prop_oneof![3 => Just(None), 1 => arb_net().prop_map(Some)],
    )
        .prop_map(
            |(accept, protocol, ports, source_ports, remote, local)| TableRule {
                origin: Origin::IntraGroup,
                accept,
                protocol,
                ports,
                source_ports,
                remote,
                local,
            },
        )
}

fn arb_fields() -> impl Strategy<Value = Fields> {
    let addr = || {
        prop_oneof![
            any::<[u8; 4]>().prop_map(IpAddr::from),
            (0u8..4, any::<u8>()).prop_map(|(a, b)| IpAddr::from([198, 51, a, b])),
            any::<[u8; 16]>().prop_map(IpAddr::from),
        ]
    };
    (
        prop_oneof![Just(6u8), Just(17), Just(1), any::<u8>()],
        prop_oneof![0u16..120, any::<u16>()],
        prop_oneof![0u16..120, any::<u16>()],
        addr(),
        addr(),
    )
        .prop_map(|(proto, src_port, dst_port, remote, local)| Fields {
            proto,
            src_port,
            dst_port,
            remote,
            local,
        })
}

proptest! {
    /// The compiled tables decide exactly like a first-match scan of
    /// the ordered rules.
    #[test]
    fn compiled_lookup_equals_first_match(
        rules in prop::collection::vec(arb_rule(), 0..40),
        packets in prop::collection::vec(arb_fields(), 1..40),
    ) {
        let table = Table { rules, default_accept: false };
        let compiled = compile(&table).unwrap();
        for f in packets {
            prop_assert_eq!(lookup(&compiled, &f), table.first_match(&f), "{:?}", f);
        }
    }
}

#[test]
fn port_blocks_cover_a_range_exactly() {
    let mut out = Vec::new();
    push_port_blocks(&mut out, DIM_DST_PORT, 8000, 9000, Bitmap::EMPTY);
    let covered: u32 = out.iter().map(|e| 1u32 << (16 - e.prefix_len)).sum();
    assert_eq!(covered, 1001);
    assert_eq!(out.first().unwrap().port, 8000);
    let mut all = Vec::new();
    push_port_blocks(&mut all, DIM_DST_PORT, 0, 65535, Bitmap::EMPTY);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].prefix_len, 0);
}

#[test]
fn optional_dimensions_are_compiled_only_when_used() {
    let rule = TableRule {
        origin: Origin::IntraGroup,
        accept: true,
        protocol: Protocol::Number(6),
        ports: vec![PortRange { start: 22, end: 22 }],
        source_ports: PortRange::ANY,
        remote: vec![ANY_V4],
        local: None,
    };
    let plain = compile(&Table {
        rules: vec![rule.clone()],
        default_accept: false,
    })
    .unwrap();
    assert_eq!(plain.flags, 0);
    assert!(plain.addr.iter().all(|e| e.dim == DIM_REMOTE));
    let five_tuple = TableRule {
        source_ports: PortRange {
            start: 1024,
            end: 2047,
        },
        local: Some("192.0.2.100/32".parse().unwrap()),
        ..rule
    };
    let c = compile(&Table {
        rules: vec![five_tuple],
        default_accept: false,
    })
    .unwrap();
    assert_eq!(c.flags, TABLE_MATCHES_LOCAL | TABLE_MATCHES_SRC_PORT);
}
