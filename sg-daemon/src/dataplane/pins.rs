//! Pins on the bpffs: mounting a bpffs where there is none, where a
//! daemon's maps and links are pinned ([`Pins`]), and removing them (one
//! interface's links, this daemon's pins, or every layout's).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sg_common::MAP_LAYOUT_VERSION;

use super::{Dataplane, Hook};

/// Where a daemon's pins live under its `bpffs_dir`: the maps (versioned
/// by layout) and one link per interface and hook. A pinned link keeps its
/// program attached, and pinned maps keep their state, after the daemon
/// exits; the next daemon adopts both.
#[derive(Debug, Clone)]
pub struct Pins {
    pub maps: PathBuf,
    pub links: PathBuf,
}

impl Pins {
    pub fn under(bpffs_dir: &Path) -> Pins {
        Pins {
            maps: bpffs_dir.join(format!("maps-v{MAP_LAYOUT_VERSION}")),
            links: bpffs_dir.join("links"),
        }
    }

    pub(super) fn link(&self, ifindex: u32, ifname: &str, hook: Hook) -> PathBuf {
        self.links
            .join(format!("{ifindex}-{ifname}-{}", hook.program()))
    }

    /// Pinned links of an interface index, whatever its name was.
    fn links_of(&self, ifindex: u32) -> Vec<PathBuf> {
        let prefix = format!("{ifindex}-");
        std::fs::read_dir(&self.links)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
            .collect()
    }

    /// Every pinned link's interface index.
    pub(super) fn linked_ifindexes(&self) -> Vec<u32> {
        let mut out: Vec<u32> = std::fs::read_dir(&self.links)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_string_lossy()
                    .split('-')
                    .next()?
                    .parse()
                    .ok()
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

impl Dataplane {
    /// Removes the pinned links of an interface index (the kernel detaches
    /// a link once no pin or handle holds it).
    pub fn unpin_links(&self, ifindex: u32) {
        if let Some(pins) = &self.pins {
            for path in pins.links_of(ifindex) {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// Removes everything this dataplane pinned (links, then maps), so
    /// that the programs leave every interface when the process exits.
    pub fn unpin_all(&mut self) -> anyhow::Result<()> {
        let Some(pins) = self.pins.clone() else {
            return Ok(());
        };
        for dir in [&pins.links, &pins.maps] {
            if dir.exists() {
                std::fs::remove_dir_all(dir)
                    .with_context(|| format!("removing {}", dir.display()))?;
            }
        }
        Ok(())
    }
}

/// Removes sg's pins under `bpffs_dir` (links and maps of every layout
/// version): once no daemon holds them, the programs leave every interface.
pub fn remove_pins(bpffs_dir: &Path) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(bpffs_dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "links" || name.starts_with("maps-v") {
            std::fs::remove_dir_all(entry.path())
                .with_context(|| format!("removing {}", entry.path().display()))?;
        }
    }
    Ok(())
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
