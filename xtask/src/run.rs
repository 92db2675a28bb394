//! The build, test, demo, bench (and its veth comparison) and lint commands, plus the clean-up of
//! network namespaces that crashed test runs leave behind.

use crate::util::{self, cargo, output, run};
use anyhow::{Context as _, Result, bail};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::Command;

/// Selects every workspace package but sg-ebpf. `--workspace` ignores
/// `default-members`, and sg-ebpf only builds for the bpf target (`no_std`, no
/// `main`; its host "test" bin fails to link); sg-daemon's build.rs builds it.
const WORKSPACE: &[&str] = &["--workspace", "--exclude", "sg-ebpf"];

/// Builds everything the tests and the demo use, including the `sgd` binary
/// (sg-daemon's build.rs builds the eBPF program on the way).
pub fn build() -> Result<()> {
    run(cargo().arg("build").args(WORKSPACE).arg("--all-targets"))
}

/// Builds `sgd` with the test-only map layout (`--features layout-test`)
/// as `<target>/debug/sgd-layout-test`, for the tests of upgrades between
/// layouts. Before [`build`]: both write `debug/sgd`, and the normal one
/// must be the one left there. Cargo keeps both builds' artifacts, so a
/// second run is cached. The same package selection as [`build`] gives
/// the dependencies the same features, so that only sg-common, sg-daemon
/// and the eBPF program are built twice (about 45 s on a fresh clone with
/// 2 CPUs, 30 of them the eBPF program).
fn build_layout_test_sgd() -> Result<PathBuf> {
    run(cargo().arg("build").args(WORKSPACE).args([
        "--bin",
        "sgd",
        "--features",
        "sg-daemon/layout-test",
    ]))?;
    let sgd = sgd_bin()?;
    let copy = sgd.with_file_name("sgd-layout-test");
    std::fs::copy(&sgd, &copy)
        .with_context(|| format!("copying {} to {}", sgd.display(), copy.display()))?;
    Ok(copy)
}

/// Runs the whole test suite. The integration tests start the freshly built
/// `sgd` (found through `SGD_BIN`, and the test-layout one through
/// `SGD_LAYOUT_TEST_BIN`) inside network namespaces, hence root.
pub fn test(args: &[String]) -> Result<()> {
    util::require_root("`cargo xtask test`")?;
    let layout_test = build_layout_test_sgd()?;
    build()?;
    clean_stale_netns()?;
    run(cargo()
        .arg("test")
        .args(WORKSPACE)
        .arg("--no-fail-fast")
        .args(args)
        .env("SGD_BIN", sgd_bin()?)
        .env("SGD_LAYOUT_TEST_BIN", layout_test))
}

/// Replaces this process with `sg-demo`, so its exit code and signals reach
/// the caller unchanged.
pub fn demo(args: &[String]) -> Result<()> {
    util::require_root("`cargo xtask demo`")?;
    build()?;
    clean_stale_netns()?;
    let mut cmd = cargo();
    cmd.args(["run", "--quiet", "-p", "sg-tests", "--bin", "sg-demo", "--"])
        .args(args)
        .env("SGD_BIN", sgd_bin()?);
    Err(cmd.exec()).context("starting `cargo run -p sg-tests --bin sg-demo`")
}

/// Runs the dataplane benchmark (`sg-daemon/benches/dataplane.rs`): it
/// loads the eBPF program and runs it through `BPF_PROG_TEST_RUN`, hence
/// root. It prints figures; nothing is attached anywhere. With `scale`,
/// the scale benchmark (`sg-daemon/benches/scale/`) instead.
pub fn bench(scale: bool, fleet: bool, args: &[String]) -> Result<()> {
    util::require_root("`cargo xtask bench`")?;
    build()?;
    let bench = match (scale, fleet) {
        (true, _) => "scale",
        (_, true) => {
            // Namespaces and etcd members left by a killed run.
            clean_stale_netns()?;
            "fleet"
        }
        _ => "dataplane",
    };
    let mut cmd = cargo();
    cmd.args(["bench", "-p", "sg-daemon", "--bench", bench]);
    // The fleet bench's own arguments (host counts, `--rounds R`).
    if fleet && !args.is_empty() {
        cmd.arg("--");
    }
    run(cmd.args(args))
}

/// Runs `sg-compare` (`tests/src/bin/compare/`): trafgen through a veth
/// into a namespace holding no filter, sg, iptables-nft or nftables with the
/// same rules. Root: it creates namespaces and starts `sgd`. Replaces this
/// process, like [`demo`], so that Ctrl-C reaches it and it cleans up.
pub fn compare(args: &[String]) -> Result<()> {
    util::require_root("`cargo xtask bench --compare`")?;
    build()?;
    clean_stale_netns()?;
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--quiet",
        "-p",
        "sg-tests",
        "--bin",
        "sg-compare",
        "--",
    ])
    .args(args)
    .env("SGD_BIN", sgd_bin()?);
    Err(cmd.exec()).context("starting `cargo run -p sg-tests --bin sg-compare`")
}

/// `sg-compare --help`: builds that binary alone (no eBPF, no root).
pub fn compare_help() -> Result<()> {
    run(cargo().args([
        "run",
        "--quiet",
        "-p",
        "sg-tests",
        "--bin",
        "sg-compare",
        "--",
        "--help",
    ]))
}

pub fn fmt_check() -> Result<()> {
    run(cargo().args(["fmt", "--all", "--", "--check"]))
}

pub fn lint() -> Result<()> {
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
}

/// `<target dir>/debug/sgd`. Honours `CARGO_TARGET_DIR` and `build.target-dir`
/// by asking cargo instead of assuming `./target`.
fn sgd_bin() -> Result<PathBuf> {
    let out = output(cargo().args(["metadata", "--format-version", "1", "--no-deps"]))?;
    if !out.status.success() {
        bail!(
            "`cargo metadata` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing `cargo metadata` output")?;
    let dir = meta["target_directory"]
        .as_str()
        .context("`cargo metadata` has no target_directory")?;
    Ok(PathBuf::from(dir).join("debug/sgd"))
}

/// Name prefixes of the namespaces made by the test harness (`sgt-<pid>-…`)
/// and the demo (`sg-demo-<pid>-…`); `<pid>` is the creating process.
const NETNS_PREFIXES: &[&str] = &["sgt-", "sg-demo-"];

/// Deletes namespaces left by runs whose process is gone (a crash or a
/// SIGKILL skips their clean-up); stale ones would keep interfaces, addresses
/// and BPF programs around and could collide with new tests. Namespaces of
/// live processes, e.g. a concurrent run, are left alone.
fn clean_stale_netns() -> Result<()> {
    let out = output(Command::new("ip").args(["netns", "list"]))?;
    if !out.status.success() {
        bail!(
            "`ip netns list` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Lines look like `sgt-1234-foo (id: 3)` or just `sgt-1234-foo`.
    for name in String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
    {
        let Some(rest) = NETNS_PREFIXES.iter().find_map(|p| name.strip_prefix(p)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            eprintln!("netns: {name}: no pid in the name, leaving it");
            continue;
        };
        if PathBuf::from(format!("/proc/{pid}")).exists() {
            continue;
        }
        eprintln!("netns: deleting stale {name} (process {pid} is gone)");
        if let Err(e) = run(Command::new("ip").args(["netns", "delete", name])) {
            eprintln!("netns: warning: {e:#}");
        }
    }
    Ok(())
}
