//! Sessions across a change of map layout. A daemon whose layout differs
//! from the previous one's pins its maps in a new `maps-v<n>` directory;
//! the session tables of the earlier layouts it can read are moved into
//! its own, so that connections carry on through an upgrade:
//!
//! 1. at load, before any interface is switched to the new program, every
//!    session of the earlier tables is copied in ([`Dataplane::find_earlier_layouts`]);
//! 2. once every interface runs the new program ([`Dataplane::finish_migration`]),
//!    what the old program opened or refreshed meanwhile is copied again
//!    (the entry seen last wins), and the earlier directories are removed.
//!
//! A directory of a layout this daemon cannot read (older than any it
//! knows, or a newer daemon's after a downgrade) is removed with a
//! warning: its sessions are lost, and a later upgrade must not adopt its
//! stale maps. Nothing here stops enforcement: a failure is logged, and
//! the daemon goes on with the sessions it moved.

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use aya::{
    Pod,
    maps::{HashMap as BpfHashMap, Map, MapData},
};
use sg_common::{
    CT_VALUE_PAD, CtKey, CtValue, MAP_LAYOUT_VERSION, SessionTimeouts,
    maps::{SESSION_TABLES, STAT_DAEMON_INSERTED, STAT_DAEMON_REMOVED, TEST_LAYOUT_VERSION},
};
use tracing::{info, warn};

use super::{Dataplane, sessions::map_capacity};
use crate::clock::boot_time_ns;

/// A session value as the released layouts store it, with `PAD` bytes of
/// padding at the end: 5 in layouts 3 to 5 (the releases so far), 13 in
/// the test layout (`TEST_LAYOUT_VERSION`, sg-common's `layout-test`).
/// `CtKey` has not changed since layout 3.
#[repr(C)]
#[derive(Clone, Copy)]
struct EarlierValue<const PAD: usize> {
    last_seen_ns: u64,
    opened: u32,
    epoch: u32,
    state: u8,
    fin: u8,
    ended: u8,
    _pad: [u8; PAD],
}

type ReleaseValue = EarlierValue<5>;
type PaddedValue = EarlierValue<13>;

// SAFETY: repr(C) plain data, read from maps whose value size matches
// (aya checks it).
unsafe impl<const PAD: usize> Pod for EarlierValue<PAD> {}

const _: () = assert!(
    size_of::<CtKey>() == 44 && size_of::<ReleaseValue>() == 24 && size_of::<PaddedValue>() == 32,
    "an earlier layout's session encoding changed: it is a fact of released maps, fix it back"
);

impl<const PAD: usize> EarlierValue<PAD> {
    /// The session value in this layout's terms.
    fn current(&self) -> CtValue {
        CtValue {
            last_seen_ns: self.last_seen_ns,
            opened: self.opened,
            epoch: self.epoch,
            state: self.state,
            fin: self.fin,
            ended: self.ended,
            _pad: [0; CT_VALUE_PAD],
        }
    }
}

/// How a layout stores its sessions, for the layouts this daemon can
/// read (`None`: it cannot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Release,
    Padded,
}

fn encoding(version: u32) -> Option<Encoding> {
    match version {
        3..=5 => Some(Encoding::Release),
        TEST_LAYOUT_VERSION => Some(Encoding::Padded),
        _ => None,
    }
}

/// The map directory of a layout other than this daemon's.
#[derive(Debug)]
pub(super) struct EarlierLayout {
    version: u32,
    dir: PathBuf,
    encoding: Option<Encoding>,
}

/// One session of either table.
#[derive(Clone, Copy)]
struct Session {
    key: CtKey,
    value: CtValue,
    /// Index in `SESSION_TABLES` (0: answered, 1: unanswered).
    table: usize,
}

/// What a pass did, for the log.
#[derive(Debug, Default)]
struct Moved {
    /// Copied in, per table.
    copied: [u64; 2],
    /// Expired by the timeouts in force: left behind.
    expired: u64,
    /// This layout's table already has the flow's entry, as recent or
    /// more (the new program refreshed it, or an earlier pass copied it).
    current_here: u64,
    /// No room in the new table (the oldest are left behind).
    no_room: u64,
}

/// The `maps-v<n>` directories under `bpffs_dir` of layouts other than
/// `MAP_LAYOUT_VERSION`.
fn earlier_layouts(bpffs_dir: &Path) -> Vec<EarlierLayout> {
    let mut out: Vec<EarlierLayout> = std::fs::read_dir(bpffs_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let version: u32 = name.to_str()?.strip_prefix("maps-v")?.parse().ok()?;
            (version != MAP_LAYOUT_VERSION).then(|| EarlierLayout {
                version,
                dir: entry.path(),
                encoding: encoding(version),
            })
        })
        .collect();
    out.sort_by_key(|l| l.version);
    out
}

/// Every session pinned in `dir`, stored as `EarlierValue<PAD>`s.
fn read_as<const PAD: usize>(dir: &Path) -> anyhow::Result<Vec<Session>> {
    let mut out = Vec::new();
    for (table, name) in SESSION_TABLES.into_iter().enumerate() {
        let path = dir.join(name);
        let data =
            MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))?;
        let map: BpfHashMap<MapData, CtKey, EarlierValue<PAD>> =
            BpfHashMap::try_from(Map::from_map_data(data)?)
                .with_context(|| format!("reading {}", path.display()))?;
        out.extend(map.iter().filter_map(Result::ok).map(|(key, v)| Session {
            key,
            value: v.current(),
            table,
        }));
    }
    Ok(out)
}

fn read_sessions(layout: &EarlierLayout) -> anyhow::Result<Vec<Session>> {
    match layout.encoding {
        Some(Encoding::Release) => read_as::<5>(&layout.dir),
        Some(Encoding::Padded) => read_as::<13>(&layout.dir),
        None => Ok(Vec::new()),
    }
}

impl Dataplane {
    /// Finds the map directories of other layouts next to this one's and
    /// copies in the sessions of those it can read (first pass; the
    /// earlier program still runs). Called at load, before any attach.
    pub(super) fn find_earlier_layouts(&mut self, timeouts: &SessionTimeouts) {
        let Some(bpffs_dir) = self.pins.as_ref().and_then(|p| p.maps.parent()) else {
            return;
        };
        self.earlier_layouts = earlier_layouts(bpffs_dir);
        // Older than every ruleset this daemon installs: each moved session
        // is checked once against the new drop rules at its next packet.
        self.migration_epoch = self.epoch;
        self.migrate_pass(timeouts, "copied before the switch");
    }

    /// Once every interface runs this daemon's program: copies what the
    /// earlier program opened or refreshed since the first pass, then
    /// removes the earlier directories (and those of layouts it cannot
    /// read, with a warning).
    pub fn finish_migration(&mut self, timeouts: &SessionTimeouts) {
        if self.earlier_layouts.is_empty() {
            return;
        }
        self.migrate_pass(timeouts, "copied after the switch");
        for layout in std::mem::take(&mut self.earlier_layouts) {
            if layout.encoding.is_none() {
                warn!(
                    dir = %layout.dir.display(),
                    layout = layout.version,
                    this_layout = MAP_LAYOUT_VERSION,
                    "pinned maps of a layout this sgd cannot read (a newer sgd's, after a downgrade?): their sessions are dropped and the directory removed"
                );
            }
            match std::fs::remove_dir_all(&layout.dir) {
                Ok(()) => {
                    info!(dir = %layout.dir.display(), "removed the maps of layout {}", layout.version)
                }
                Err(e) => {
                    warn!(dir = %layout.dir.display(), "could not remove the maps of layout {}: {e}", layout.version)
                }
            }
        }
    }

    /// Copies the sessions of every readable earlier layout into this
    /// layout's tables, logging what it moved; failures are logged.
    fn migrate_pass(&mut self, timeouts: &SessionTimeouts, pass: &str) {
        let mut sessions = Vec::new();
        let mut from = Vec::new();
        for layout in self.earlier_layouts.iter().filter(|l| l.encoding.is_some()) {
            match read_sessions(layout) {
                Ok(found) => {
                    from.push(layout.version);
                    sessions.extend(found);
                }
                Err(e) => warn!(
                    dir = %layout.dir.display(),
                    "the sessions of map layout {} could not be read, they are dropped: {e:#}",
                    layout.version
                ),
            }
        }
        if from.is_empty() {
            return;
        }
        let found = sessions.len();
        match self.merge_sessions(sessions, timeouts) {
            Ok(moved) => {
                info!(
                    from_layouts = ?from,
                    to_layout = MAP_LAYOUT_VERSION,
                    found,
                    answered = moved.copied[0],
                    unanswered = moved.copied[1],
                    expired = moved.expired,
                    current_here = moved.current_here,
                    "sessions migrated ({pass})"
                );
                if moved.no_room > 0 {
                    warn!(
                        left_behind = moved.no_room,
                        "the session tables (session_table_size) cannot hold every migrated session: the most recent were kept"
                    );
                }
            }
            Err(e) => {
                warn!("migrating sessions ({pass}) failed part way; enforcement goes on: {e:#}")
            }
        }
    }

    /// Writes `sessions` into this layout's tables: live ones only, each
    /// unless the table already has a fresher entry of the flow (the one
    /// seen last wins), the most recent first when they do not all fit.
    /// A key stays in one table only.
    fn merge_sessions(
        &mut self,
        sessions: Vec<Session>,
        timeouts: &SessionTimeouts,
    ) -> anyhow::Result<Moved> {
        let now = boot_time_ns();
        let mut moved = Moved::default();
        let here: HashMap<CtKey, Session> = self
            .sessions_by_table()?
            .into_iter()
            .map(|(key, value, answered)| {
                let table = usize::from(!answered);
                (key, Session { key, value, table })
            })
            .collect();
        // The newest entry of each flow among the earlier tables.
        let mut newest: HashMap<CtKey, Session> = HashMap::new();
        for s in sessions {
            if s.value.ended == 0 && timeouts.expired(s.value.state, s.value.last_seen_ns, now) {
                moved.expired += 1;
                continue;
            }
            let e = newest.entry(s.key).or_insert(s);
            if s.value.last_seen_ns > e.value.last_seen_ns {
                *e = s;
            }
        }
        let mut by_table: [Vec<Session>; 2] = [Vec::new(), Vec::new()];
        for s in newest.into_values() {
            match here.get(&s.key) {
                Some(h) if h.value.last_seen_ns >= s.value.last_seen_ns => moved.current_here += 1,
                _ => by_table[s.table].push(s),
            }
        }
        let mut inserted = [0u64; 2];
        let mut removed = [0u64; 2];
        for (t, mut wanted) in by_table.into_iter().enumerate() {
            let capacity = map_capacity(self.map_ref(SESSION_TABLES[t])?)? as usize;
            let replaced: HashSet<CtKey> = wanted.iter().map(|w| w.key).collect();
            let occupied = here
                .values()
                .filter(|h| h.table == t && !replaced.contains(&h.key))
                .count();
            let room = capacity.saturating_sub(occupied);
            // Oldest first: if the LRU evicts, it evicts the oldest.
            wanted.sort_by_key(|s| s.value.last_seen_ns);
            let skip = wanted.len().saturating_sub(room);
            moved.no_room += skip as u64;
            for s in &wanted[skip..] {
                let value = CtValue {
                    epoch: self.migration_epoch,
                    ..s.value
                };
                let previous = here.get(&s.key);
                let mut table: BpfHashMap<_, CtKey, CtValue> =
                    BpfHashMap::try_from(self.map(SESSION_TABLES[t])?)?;
                // Touched by the new program since it was read: it is
                // fresher than anything the earlier one saw.
                if let Some(p) = previous.filter(|p| p.table == t)
                    && table.get(&s.key, 0).map(|v| v.last_seen_ns).ok()
                        != Some(p.value.last_seen_ns)
                {
                    moved.current_here += 1;
                    continue;
                }
                // A full table (the new program opens flows meanwhile)
                // refuses this one; the others may still fit.
                if table.insert(s.key, value, 0).is_err() {
                    moved.no_room += 1;
                    continue;
                }
                moved.copied[t] += 1;
                match previous {
                    Some(p) if p.table == t => {}
                    Some(p) => {
                        inserted[t] += 1;
                        let mut other: BpfHashMap<_, CtKey, CtValue> =
                            BpfHashMap::try_from(self.map(SESSION_TABLES[p.table])?)?;
                        if other.remove(&s.key).is_ok() {
                            removed[p.table] += 1;
                        }
                    }
                    None => inserted[t] += 1,
                }
            }
        }
        self.count_daemon_stat(STAT_DAEMON_INSERTED, inserted)?;
        self.count_daemon_stat(STAT_DAEMON_REMOVED, removed)?;
        Ok(moved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_layout_but_this_one_is_earlier_and_only_known_ones_are_readable() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["maps-v3", "maps-v7777", "links", "maps-vx", "tc"] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
        }
        std::fs::create_dir(dir.path().join(format!("maps-v{MAP_LAYOUT_VERSION}"))).unwrap();
        let found: Vec<(u32, Option<Encoding>)> = earlier_layouts(dir.path())
            .into_iter()
            .map(|l| (l.version, l.encoding))
            .collect();
        assert_eq!(
            found,
            [(3, Some(Encoding::Release)), (7777, None)],
            "{found:?}"
        );
        assert_eq!(encoding(TEST_LAYOUT_VERSION), Some(Encoding::Padded));
    }
}
