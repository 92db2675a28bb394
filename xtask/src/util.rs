//! Process helpers shared by the commands: where cargo and the cargo-installed
//! tools live, running children with logging, root checks.

use anyhow::{Context as _, Result, bail};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root (xtask lives one level below it); children run here so
/// `cargo xtask` behaves the same from any subdirectory.
pub fn workspace_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Where `cargo install` and rustup put binaries: `$CARGO_HOME/bin`, else
/// `~/.cargo/bin`.
pub fn cargo_bin_dir() -> PathBuf {
    match std::env::var_os("CARGO_HOME") {
        Some(home) if !home.is_empty() => PathBuf::from(home).join("bin"),
        _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
            .join(".cargo/bin"),
    }
}

/// Prepends [`cargo_bin_dir`] to our own `PATH`, which every child inherits.
///
/// CI may start `cargo` by absolute path with a minimal `PATH`; then neither
/// `rustup` (aya-build runs `rustup run nightly cargo` for the eBPF crate) nor
/// `bpf-linker` (which rustc invokes as the bpf target's linker) would be found.
pub fn init_path() {
    let bin = cargo_bin_dir();
    let old = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&old).filter(|d| *d != bin).collect();
    dirs.insert(0, bin);
    let path: OsString = std::env::join_paths(dirs).expect("PATH entries contain no ':'");
    // SAFETY: called at the start of `main`, before any other thread exists.
    unsafe { std::env::set_var("PATH", path) };
}

/// The cargo that runs us: cargo sets `CARGO` for `cargo run`, so this works
/// even when no cargo is on `PATH`.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

fn describe(cmd: &Command) -> String {
    let prog = Path::new(cmd.get_program());
    let name = prog
        .file_name()
        .unwrap_or(prog.as_os_str())
        .to_string_lossy();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy()).collect();
    format!("{name} {}", args.join(" "))
}

/// Runs `cmd` with inherited stdio, echoing it first for CI logs; a non-zero
/// exit is an error.
pub fn run(cmd: &mut Command) -> Result<()> {
    let what = describe(cmd);
    eprintln!("+ {what}");
    let status = cmd.status().with_context(|| format!("starting `{what}`"))?;
    if !status.success() {
        bail!("`{what}` failed ({status})");
    }
    Ok(())
}

/// Runs `cmd` quietly and returns its output; `Err` only if it cannot start.
pub fn output(cmd: &mut Command) -> Result<Output> {
    cmd.output()
        .with_context(|| format!("starting `{}`", describe(cmd)))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Fails with an explanation unless we run as root.
pub fn require_root(why: &str) -> Result<()> {
    if !is_root() {
        bail!(
            "{why} needs root; run it as root, e.g. `sudo -E env PATH=\"$PATH\" cargo xtask ...`"
        );
    }
    Ok(())
}
