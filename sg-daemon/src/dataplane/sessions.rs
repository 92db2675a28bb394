//! The kernel's session tables (and remembered first fragments), seen
//! from userspace: listing sessions, sweeping the expired ones (and ended
//! ones no drop rule ends any more) out to make room, forgetting them
//! all, and the tables' fill level and evictions.
//!
//! There are two tables (`sg_common::maps::SESSION_TABLES`): the answered
//! one and the unanswered one, where a session waits for its first answer
//! (see `sg-ebpf/src/conntrack.rs`). A key is in at most one of them.

use anyhow::anyhow;
use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, PerCpuValues};
use sg_common::{
    CtKey, CtValue, FragKey, FragValue, SessionTimeouts,
    maps::{
        self, SESSION_TABLES, STAT_DAEMON_INSERTED, STAT_DAEMON_REMOVED, STAT_INSERTED,
        STAT_KERNEL_REMOVED,
    },
};

use super::Dataplane;
use crate::clock::boot_time_ns;

/// One session table's fill level and evictions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableUse {
    /// "answered" or "unanswered".
    pub table: &'static str,
    /// Entries in the table (live, or expired and not yet swept).
    pub entries: u64,
    /// Entries the table holds (`max_entries` of the loaded map).
    pub capacity: u64,
    /// Entries the LRU evicted to make room since the table was created:
    /// insertions minus removals (by the kernel and by the daemon) minus
    /// the entries still in it.
    pub evictions: u64,
}

/// The names of the tables in metrics, by index.
pub const TABLE_NAMES: [&str; 2] = ["answered", "unanswered"];

/// The unanswered table holds this fraction of `session_table_size`.
pub const UNANSWERED_SHARE: u32 = 4;

/// The capacity of each table (as in [`SESSION_TABLES`]) for
/// `session_table_size`: the answered table holds `session_table_size`,
/// the unanswered one a quarter of it, and never less than the smallest
/// `session_table_size` (1024). A session stays unanswered one round trip
/// when it is answered; only flows that are never answered (one-way UDP,
/// scans, floods) stay there longer, and evicting one of them costs its
/// next packet a lookup of the rules, not a connection. The kernel
/// allocates both tables whole (some 136 bytes an entry), so this saves
/// three eighths of the session memory: 25.5 MiB on a hypervisor's
/// default, 12.8 MiB on a single host's.
pub fn table_capacities(session_table_size: u32) -> [u32; 2] {
    let unanswered = (session_table_size / UNANSWERED_SHARE).max(1024);
    [session_table_size, unanswered.min(session_table_size)]
}

impl Dataplane {
    /// Tracked sessions (live or expired but not yet evicted), of both
    /// tables.
    pub fn sessions(&self) -> anyhow::Result<Vec<(CtKey, CtValue)>> {
        Ok(self
            .sessions_by_table()?
            .into_iter()
            .map(|(k, v, _)| (k, v))
            .collect())
    }

    /// Tracked sessions of both tables, each with whether it is in the
    /// answered one.
    pub fn sessions_by_table(&self) -> anyhow::Result<Vec<(CtKey, CtValue, bool)>> {
        let mut out = Vec::new();
        for (t, name) in SESSION_TABLES.into_iter().enumerate() {
            let ct: BpfHashMap<&MapData, CtKey, CtValue> =
                BpfHashMap::try_from(self.map_ref(name)?)?;
            out.extend(
                ct.iter()
                    .filter_map(Result::ok)
                    .map(|(k, v)| (k, v, t == 0)),
            );
        }
        Ok(out)
    }

    /// Frees the memory of sessions that expired (by the idle timeout of
    /// their state), and of ended sessions that `still_ended` says no drop
    /// rule ends any more. The kernel already treats both as absent (an
    /// ended one at its next packet); this only makes room. An entry is
    /// re-read just before it is deleted and kept if a packet touched it
    /// since it was found. Returns how many were freed.
    pub fn sweep_sessions(
        &mut self,
        timeouts: &SessionTimeouts,
        still_ended: impl Fn(&CtKey, &CtValue) -> bool,
    ) -> anyhow::Result<usize> {
        let now = boot_time_ns();
        let mut freed = [0u64; 2];
        for (t, name) in SESSION_TABLES.into_iter().enumerate() {
            let mut ct: BpfHashMap<_, CtKey, CtValue> = BpfHashMap::try_from(self.map(name)?)?;
            let done: Vec<(CtKey, CtValue)> = ct
                .iter()
                .filter_map(Result::ok)
                .filter(|(k, v)| match v.ended {
                    0 => timeouts.expired(v.state, v.last_seen_ns, now),
                    _ => !still_ended(k, v),
                })
                .collect();
            for (key, seen) in done {
                // Touched (or gone) since it was found: keep it.
                let untouched = ct.get(&key, 0).is_ok_and(|v| {
                    (v.last_seen_ns, v.state, v.ended)
                        == (seen.last_seen_ns, seen.state, seen.ended)
                });
                if untouched && ct.remove(&key).is_ok() {
                    freed[t] += 1;
                }
            }
        }
        self.count_daemon_removals(freed)?;
        Ok(freed.iter().sum::<u64>() as usize)
    }

    /// Forgets every tracked session and remembered first fragment.
    pub fn flush_sessions(&mut self) -> anyhow::Result<()> {
        let mut removed = [0u64; 2];
        for (t, name) in SESSION_TABLES.into_iter().enumerate() {
            let mut ct: BpfHashMap<_, CtKey, CtValue> = BpfHashMap::try_from(self.map(name)?)?;
            let keys: Vec<CtKey> = ct.keys().filter_map(Result::ok).collect();
            removed[t] = keys.iter().filter(|k| ct.remove(k).is_ok()).count() as u64;
        }
        self.count_daemon_removals(removed)?;
        let mut frags: BpfHashMap<_, FragKey, FragValue> =
            BpfHashMap::try_from(self.map(maps::FRAGMENTS)?)?;
        let keys: Vec<FragKey> = frags.keys().filter_map(Result::ok).collect();
        for k in &keys {
            let _ = frags.remove(k);
        }
        Ok(())
    }

    /// Each session table's fill level, capacity and evictions.
    pub fn session_tables(&self) -> anyhow::Result<Vec<TableUse>> {
        let stats: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(self.map_ref(maps::SESSION_STATS)?)?;
        let sum = |slot: u32| -> anyhow::Result<u64> {
            Ok(stats
                .get(&slot, 0)?
                .iter()
                .copied()
                .fold(0, u64::wrapping_add))
        };
        let mut out = Vec::with_capacity(2);
        for (t, name) in SESSION_TABLES.into_iter().enumerate() {
            let map = self.map_ref(name)?;
            let capacity = map_capacity(map)?;
            let ct: BpfHashMap<&MapData, CtKey, CtValue> = BpfHashMap::try_from(map)?;
            let entries = ct.keys().filter(Result::is_ok).count() as u64;
            let t32 = t as u32;
            let gone =
                sum(STAT_KERNEL_REMOVED + t32)?.wrapping_add(sum(STAT_DAEMON_REMOVED + t32)?);
            let inserted = sum(STAT_INSERTED + t32)?.wrapping_add(sum(STAT_DAEMON_INSERTED + t32)?);
            let evictions = inserted.saturating_sub(gone).saturating_sub(entries);
            out.push(TableUse {
                table: TABLE_NAMES[t],
                entries,
                capacity,
                evictions,
            });
        }
        Ok(out)
    }

    /// Adds the daemon's removals from each table to its statistics slot
    /// (CPU 0's; the kernel never writes those slots).
    fn count_daemon_removals(&mut self, removed: [u64; 2]) -> anyhow::Result<()> {
        self.count_daemon_stat(STAT_DAEMON_REMOVED, removed)
    }

    /// Adds `counts` (per table) to the daemon's statistic `base`
    /// (`STAT_DAEMON_REMOVED` or `STAT_DAEMON_INSERTED`), in CPU 0's slot.
    pub(super) fn count_daemon_stat(&mut self, base: u32, counts: [u64; 2]) -> anyhow::Result<()> {
        let mut stats: PerCpuArray<_, u64> = PerCpuArray::try_from(self.map(maps::SESSION_STATS)?)?;
        for (t, n) in counts.into_iter().enumerate() {
            if n == 0 {
                continue;
            }
            let slot = base + t as u32;
            let mut values: Vec<u64> = stats.get(&slot, 0)?.to_vec();
            values[0] = values[0].wrapping_add(n);
            stats.set(slot, PerCpuValues::try_from(values)?, 0)?;
        }
        Ok(())
    }
}

/// The `max_entries` of a loaded map.
pub(super) fn map_capacity(map: &aya::maps::Map) -> anyhow::Result<u64> {
    let data = match map {
        aya::maps::Map::LruHashMap(data) => data,
        _ => return Err(anyhow!("a session table is not an LRU hash map")),
    };
    Ok(data.info()?.max_entries().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The unanswered table is a quarter of the answered one, never below
    /// the smallest size, never above the answered one.
    #[test]
    fn the_unanswered_table_holds_a_quarter() {
        assert_eq!(table_capacities(262_144), [262_144, 65_536]);
        assert_eq!(table_capacities(131_072), [131_072, 32_768]);
        assert_eq!(table_capacities(4096), [4096, 1024]);
        assert_eq!(table_capacities(2048), [2048, 1024]);
        assert_eq!(table_capacities(1024), [1024, 1024]);
    }
}
