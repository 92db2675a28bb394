//! Pins on the bpffs: mounting a bpffs where there is none, where a
//! daemon's maps, TCX links and classic TC records live ([`Pins`]), and
//! removing them (one interface's, this daemon's, or every layout's).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sg_common::MAP_LAYOUT_VERSION;

use super::{Dataplane, Hook};

/// Where a daemon's pins live under its `bpffs_dir`: the maps (versioned
/// by layout), one TCX link per interface and hook, and one record per
/// interface that has sg's classic TC filters. A pinned link keeps its
/// program attached, a TC filter holds its program by itself, and pinned
/// maps keep their state, after the daemon exits; the next daemon adopts
/// all of them.
#[derive(Debug, Clone)]
pub struct Pins {
    pub maps: PathBuf,
    pub links: PathBuf,
    /// Classic TC records: a directory `<ifindex>-<ifname>` per interface
    /// that has sg's filters (see `tc`); the bpffs holds no plain files.
    pub tc: PathBuf,
}

impl Pins {
    pub fn under(bpffs_dir: &Path) -> Pins {
        Pins {
            maps: bpffs_dir.join(format!("maps-v{MAP_LAYOUT_VERSION}")),
            links: bpffs_dir.join("links"),
            tc: bpffs_dir.join("tc"),
        }
    }

    pub(super) fn link(&self, ifindex: u32, ifname: &str, hook: Hook) -> PathBuf {
        self.links
            .join(format!("{ifindex}-{ifname}-{}", hook.program()))
    }

    /// The record of sg's classic TC filters on an interface.
    pub(super) fn tc_record(&self, ifindex: u32, ifname: &str) -> PathBuf {
        self.tc.join(format!("{ifindex}-{ifname}"))
    }

    /// Every pinned link's and TC record's interface index.
    pub(super) fn linked_ifindexes(&self) -> Vec<u32> {
        let mut out: Vec<u32> = [&self.links, &self.tc]
            .into_iter()
            .flat_map(|dir| entries(dir, None))
            .filter_map(|path| ifindex_of(&path))
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// The entries of `dir`, or those of interface index `ifindex` (named
/// `<ifindex>-…`, whatever the interface's name was).
pub(super) fn entries(dir: &Path, ifindex: Option<u32>) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|path| ifindex.is_none() || ifindex_of(path) == ifindex)
        .collect()
}

/// The interface index a pin or record is named after.
pub(super) fn ifindex_of(path: &Path) -> Option<u32> {
    path.file_name()?.to_str()?.split('-').next()?.parse().ok()
}

impl Dataplane {
    /// Removes the pinned TCX links of an interface index (the kernel
    /// detaches a link once no pin or handle holds it).
    pub(super) fn unpin_links(&self, ifindex: u32) {
        if let Some(pins) = &self.pins {
            for path in entries(&pins.links, Some(ifindex)) {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// Takes sg off an interface index for good, in both modes: its pinned
    /// TCX links and its classic TC filters (see `tc`).
    pub fn release(&self, ifindex: u32) {
        self.unpin_links(ifindex);
        if let Some(pins) = &self.pins {
            // Failures are logged.
            let _ = super::tc::remove_recorded(&pins.tc, Some(ifindex));
        }
    }

    /// Removes everything this dataplane pinned (TC filters, links, then
    /// maps), so that the programs leave every interface when the process
    /// exits.
    pub fn unpin_all(&mut self) -> anyhow::Result<()> {
        let Some(pins) = self.pins.clone() else {
            return Ok(());
        };
        let filters = remove_tc_records(&pins.tc);
        for dir in [&pins.links, &pins.maps] {
            if dir.exists() {
                std::fs::remove_dir_all(dir)
                    .with_context(|| format!("removing {}", dir.display()))?;
            }
        }
        filters
    }
}

/// Takes sg off every interface for good (`sgd --detach`): removes its
/// classic TC filters, then its pins under `bpffs_dir` (links and maps of
/// every layout version): once no daemon holds them, the programs leave
/// every interface.
pub fn remove_pins(bpffs_dir: &Path) -> anyhow::Result<()> {
    let filters = remove_tc_records(&Pins::under(bpffs_dir).tc);
    let Ok(entries) = std::fs::read_dir(bpffs_dir) else {
        return filters;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "links" || name.starts_with("maps-v") {
            std::fs::remove_dir_all(entry.path())
                .with_context(|| format!("removing {}", entry.path().display()))?;
        }
    }
    filters
}

/// Removes sg's classic TC filters on every recorded interface, and the
/// records. The records of filters that could not be removed stay, so
/// that a next try knows of them.
fn remove_tc_records(dir: &Path) -> anyhow::Result<()> {
    let removed = super::tc::remove_recorded(dir, None);
    // Empty unless a removal failed.
    let _ = std::fs::remove_dir(dir);
    removed
}

/// Makes sure `dir` is on a bpffs, mounting one there if it is not (e.g.
/// `/sys/fs/bpf` not mounted, or a private `/sys`).
pub(super) fn ensure_bpffs(dir: &Path) -> anyhow::Result<()> {
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let on_bpffs = nix::sys::statfs::statfs(dir)
        .map(|s| s.filesystem_type().0 == BPF_FS_MAGIC)
        .unwrap_or(false);
    if !on_bpffs {
        nix::mount::mount(
            Some("bpf"),
            dir,
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .with_context(|| format!("mounting a bpffs on {}", dir.display()))?;
        tracing::info!(dir = %dir.display(), "mounted a bpffs for sg's pins");
    }
    Ok(())
}
