//! Records of dropped packets: read from the kernel's ring buffer (which
//! the kernel fills at most `DROP_RECORDS_PER_SEC` per CPU, so a flood
//! cannot starve the daemon), named (interface, rule), kept in a bounded
//! log and offered to followers.

use std::{collections::VecDeque, net::IpAddr};

use aya::maps::{MapData, RingBuf};
use serde::{Deserialize, Serialize};
use sg_common::{DropRecord, NO_RULE, Reason};
use tokio::{
    io::unix::AsyncFd,
    sync::{broadcast, mpsc},
};

use crate::{compile::Origin, daemon::Daemon, model::Direction};

/// How many recent drops the daemon keeps.
pub const DROP_LOG_CAPACITY: usize = 1024;

/// One dropped packet, named.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drop {
    /// Numbers drops in the order the daemon received them (from 1).
    pub seq: u64,
    /// Seconds since boot (CLOCK_BOOTTIME) when the kernel dropped it.
    pub boot_secs: f64,
    /// The same moment on the wall clock, RFC 3339 in UTC (by the boot-time
    /// to real-time offset when the daemon read it).
    #[serde(default)]
    pub time: String,
    pub interface: String,
    pub direction: String,
    pub protocol: u8,
    /// `protocol`'s name (tcp, udp, icmp, icmpv6, gre), when it has one.
    #[serde(default)]
    pub protocol_name: Option<String>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    /// What decided: a reason name such as `rule-drop` or `default-drop`.
    pub reason: String,
    /// The deciding rule as `group/rule-id`, when a rule decided.
    pub rule: Option<String>,
}

/// Reads the kernel's drop records and sends them on, as they come.
pub fn read_ring(ring: RingBuf<MapData>, tx: mpsc::Sender<DropRecord>) -> anyhow::Result<()> {
    // SAFETY: the ring buffer owns its fd, which stays open and the same
    // for as long as the AsyncFd (which owns the ring) lives.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("watching the drop ring: {e}"))?;
    tokio::spawn(async move {
        while let Ok(mut guard) = fd.readable_mut().await {
            let ring = guard.get_inner_mut();
            while let Some(item) = ring.next() {
                if item.len() < size_of::<DropRecord>() {
                    continue;
                }
                // SAFETY: the kernel wrote a whole DropRecord; read unaligned.
                let record =
                    unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<DropRecord>()) };
                if tx.try_send(record).is_err() {
                    // The daemon is behind: dropping records beats blocking.
                    continue;
                }
            }
            guard.clear_ready();
        }
    });
    Ok(())
}

/// The recent drops, and a channel for those who follow them live.
pub struct DropLog {
    recent: VecDeque<Drop>,
    next_seq: u64,
    live: broadcast::Sender<Drop>,
}

impl Default for DropLog {
    fn default() -> Self {
        DropLog {
            recent: VecDeque::with_capacity(DROP_LOG_CAPACITY),
            next_seq: 1,
            live: broadcast::channel(256).0,
        }
    }
}

impl DropLog {
    /// Names a kernel record and keeps it.
    pub fn push(&mut self, daemon: &Daemon, r: &DropRecord) -> Drop {
        let addr = |bytes: [u8; 16]| -> IpAddr { sg_common::addr::from_bytes(r.family, &bytes) };
        let rule = (r.rule != NO_RULE)
            .then(|| daemon.rule(r.table, r.rule))
            .flatten()
            .map(|(_, origin)| match origin {
                Origin::Rule { group, id } => format!("{group}/{id}"),
                Origin::IntraGroup => "intra-group".to_owned(),
            });
        let direction = Direction::from_raw(r.dir.into());
        let drop = Drop {
            seq: self.next_seq,
            boot_secs: r.time_ns as f64 / 1e9,
            time: crate::clock::rfc3339_utc(crate::clock::boot_to_unix_ns(r.time_ns)),
            interface: daemon
                .interface_name(r.ifindex)
                .unwrap_or_else(|| format!("ifindex {}", r.ifindex)),
            direction: direction.name().to_owned(),
            protocol: r.proto,
            protocol_name: sg_common::proto::name(r.proto).map(str::to_owned),
            src: addr(r.src),
            dst: addr(r.dst),
            src_port: r.src_port,
            dst_port: r.dst_port,
            reason: Reason::from_u32(r.reason)
                .map_or("unknown", Reason::name)
                .to_owned(),
            rule,
        };
        self.next_seq += 1;
        if self.recent.len() == DROP_LOG_CAPACITY {
            self.recent.pop_front();
        }
        self.recent.push_back(drop.clone());
        let _ = self.live.send(drop.clone());
        drop
    }

    /// The most recent drops, oldest first.
    pub fn recent(&self) -> impl Iterator<Item = &Drop> {
        self.recent.iter()
    }

    /// The kept drops numbered after `after` (all kept ones for `None`).
    pub fn since(&self, after: Option<u64>) -> Vec<Drop> {
        let after = after.unwrap_or(0);
        self.recent
            .iter()
            .filter(|d| d.seq > after)
            .cloned()
            .collect()
    }

    /// Drops from now on.
    pub fn follow(&self) -> broadcast::Receiver<Drop> {
        self.live.subscribe()
    }
}
