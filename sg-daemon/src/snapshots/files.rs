//! Where snapshots are kept: `schedule.json` and one JSON file per
//! snapshot under a directory per group, each written atomically (see
//! [`crate::store::write_atomic`]); ids from the time they were taken.

use std::{fs, io, path::Path};

use super::{Schedule, Snapshot};
use crate::store::{remove_durably, write_atomic};

const SCHEDULE: &str = "schedule.json";

pub(super) fn read_schedule(dir: &Path) -> Result<Schedule, String> {
    let path = dir.join(SCHEDULE);
    match fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Schedule::default()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

pub(super) fn write_schedule(dir: &Path, schedule: &Schedule) -> io::Result<()> {
    let text = serde_json::to_string_pretty(schedule).map_err(io::Error::other)?;
    write_atomic(&dir.join(SCHEDULE), text.as_bytes())
}

/// A snapshot id for `group` at `unix`, `ssnap-20261201T201500Z` (a
/// suffix when one of that second exists): sortable, and safe in a file
/// name.
pub(super) fn free_id(dir: &Path, group: &str, unix: u64) -> String {
    let stamp: String = super::rfc3339(unix)
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    let base = format!("ssnap-{stamp}");
    let taken = |id: &str| dir.join(group).join(format!("{id}.json")).exists();
    if !taken(&base) {
        return base;
    }
    (2..)
        .map(|n| format!("{base}-{n}"))
        .find(|id| !taken(id))
        .expect("some suffix is free")
}

pub(super) fn write(dir: &Path, snapshot: &Snapshot) -> io::Result<()> {
    let text = serde_json::to_string_pretty(snapshot).map_err(io::Error::other)?;
    let path = dir
        .join(&snapshot.group)
        .join(format!("{}.json", snapshot.id));
    write_atomic(&path, text.as_bytes())
}

pub(super) fn remove(dir: &Path, snapshot: &Snapshot) -> io::Result<()> {
    let group_dir = dir.join(&snapshot.group);
    remove_durably(&group_dir.join(format!("{}.json", snapshot.id)))?;
    // The group's directory goes with its last snapshot.
    let _ = fs::remove_dir(&group_dir);
    Ok(())
}

/// A group's snapshots, in no order; a file that does not read as one is
/// skipped with a warning (it is never deleted: it may be an operator's).
pub(super) fn read_group(dir: &Path, group: &str) -> io::Result<Vec<Snapshot>> {
    let group_dir = dir.join(group);
    let entries = match fs::read_dir(&group_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("{}: {e}", group_dir.display()),
            ));
        }
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let is_snapshot = path.extension().is_some_and(|e| e == "json")
            && path
                .file_name()
                .is_some_and(|n| !n.to_string_lossy().starts_with('.'));
        if !is_snapshot {
            continue;
        }
        let read = fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str::<Snapshot>(&t).map_err(|e| e.to_string()));
        match read {
            Ok(s) if s.group == group && path.file_stem().is_some_and(|n| *n == *s.id) => {
                out.push(s)
            }
            Ok(_) => tracing::warn!(
                "snapshots: {} names another group or id; skipped",
                path.display()
            ),
            Err(e) => tracing::warn!(
                "snapshots: {} is not a snapshot ({e}); skipped",
                path.display()
            ),
        }
    }
    Ok(out)
}

/// Every group's snapshots.
pub(super) fn read_all(dir: &Path) -> io::Result<Vec<Snapshot>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            let name = entry.file_name().to_string_lossy().into_owned();
            out.extend(read_group(dir, &name)?);
        }
    }
    Ok(out)
}
