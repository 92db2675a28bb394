//! Where the scale benchmark runs: a network namespace of its own holding
//! the dummy interfaces, and a bpffs for the daemon's pins.
//!
//! The namespace is anonymous: a worker thread `unshare`s into a fresh
//! one and runs the whole measurement there (sockets, `ip` and the
//! threads the daemon spawns inherit it). Nothing names the namespace,
//! so it and its interfaces vanish when that thread ends, on a panic or
//! a kill too; the host's own namespace never sees an interface.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use nix::{
    mount::{MntFlags, MsFlags, mount, umount2},
    sched::{CloneFlags, unshare},
};

/// Runs `f` on a fresh thread in a fresh network namespace, which goes
/// with the thread.
pub fn in_new_netns<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| {
        s.spawn(|| {
            unshare(CloneFlags::CLONE_NEWNET).expect("unshare a network namespace");
            f()
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// The name of dummy interface `i`.
pub fn name(i: usize) -> String {
    format!("vm{i}")
}

/// Creates interfaces `vm0`..`vm{n-1}`, up, in the calling thread's
/// namespace (one `ip -batch` for all of them): veths, whose peers
/// `pv0`.. stay in the namespace too (this kernel has no dummy driver).
pub fn add_interfaces(n: usize) {
    let mut ip = Command::new("ip")
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("run ip");
    {
        let mut batch = ip.stdin.take().expect("ip's stdin");
        for i in 0..n {
            let (name, peer) = (name(i), format!("pv{i}"));
            writeln!(batch, "link add {name} type veth peer name {peer}").expect("write to ip");
            writeln!(batch, "link set {name} up").expect("write to ip");
            writeln!(batch, "link set {peer} up").expect("write to ip");
        }
    }
    assert!(
        ip.wait().expect("wait for ip").success(),
        "ip -batch failed"
    );
}

/// A temporary directory with a bpffs mounted on `bpf/`, unmounted and
/// removed when dropped.
pub struct Dirs {
    root: tempfile::TempDir,
}

impl Dirs {
    pub fn new() -> Dirs {
        let root = tempfile::Builder::new()
            .prefix("sg-scale-")
            .tempdir()
            .expect("a temporary directory");
        for sub in ["state", "run", "bpf"] {
            std::fs::create_dir(root.path().join(sub)).expect("create a directory");
        }
        let dirs = Dirs { root };
        mount(
            Some("bpf"),
            &dirs.bpffs(),
            Some("bpf"),
            MsFlags::empty(),
            None::<&str>,
        )
        .expect("mount a bpffs");
        dirs
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.root.path().join(sub)
    }

    pub fn bpffs(&self) -> PathBuf {
        self.path("bpf")
    }

    /// The `[daemon]` table naming these directories.
    pub fn daemon_table(&self) -> String {
        let q = |p: &Path| format!("{:?}", p.display().to_string());
        format!(
            "[daemon]\nstate_dir = {}\nruntime_dir = {}\nbpffs_dir = {}\n",
            q(&self.path("state")),
            q(&self.path("run")),
            q(&self.bpffs())
        )
    }
}

impl Drop for Dirs {
    fn drop(&mut self) {
        let _ = umount2(&self.bpffs(), MntFlags::MNT_DETACH);
    }
}
