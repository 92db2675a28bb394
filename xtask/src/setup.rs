//! `cargo xtask setup`: idempotently installs what building and testing sg
//! needs beyond a stock rustup install. Each requirement is checked first and
//! installed only if missing, so the second run is a quick no-op.

use crate::util::{self, cargo, output, run};
use anyhow::{Result, bail};
use std::path::Path;
use std::process::Command;

/// Debian packages: LLVM for bpf-linker to link against, `ip` and `ping` for
/// the integration tests, `systemd-analyze` (package `systemd`) for the
/// unit's check; for `cargo xtask bench --compare`, trafgen (`netsniff-ng`),
/// `nft`, `iptables-nft`, `conntrack` and the plot's font; `protoc`
/// (`protobuf-compiler`) for the `etcd-client` crate's build script, and
/// etcd itself (`etcd-server`, and `etcd-client` for `etcdctl`) and
/// `openssl` (their TLS certificates) for the fleet tests. (`llvm-22-dev` comes from bookworm-security here.)
const DEB_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "iproute2",
    "iputils-ping",
    "systemd",
    "netsniff-ng",
    "nftables",
    "iptables",
    "conntrack",
    "fonts-dejavu-core",
    "protobuf-compiler",
    "etcd-server",
    "etcd-client",
    "openssl",
];
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
const BPF_LINKER_VERSION: &str = "0.13.0";

/// Checks every requirement, printing one line each, and installs the missing
/// ones. Order matters: bpf-linker is compiled against the LLVM from apt.
pub fn ensure() -> Result<()> {
    debian_packages()?;
    nightly_rust_src()?;
    bpf_linker()
}

fn report(what: &str, present: bool) {
    let state = if present {
        "already present"
    } else {
        "installing"
    };
    eprintln!("setup: {what}: {state}");
}

fn deb_installed(pkg: &str) -> Result<bool> {
    let out = output(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]))
        .map_err(|e| e.context("dpkg-query is required: setup supports Debian/Ubuntu only"))?;
    // Status is e.g. "install ok installed"; a removed package keeps an entry
    // such as "deinstall ok config-files", and an unknown one exits non-zero.
    Ok(out.status.success() && String::from_utf8_lossy(&out.stdout).ends_with(" installed"))
}

fn debian_packages() -> Result<()> {
    let mut missing = Vec::new();
    for &pkg in DEB_PACKAGES {
        let present = deb_installed(pkg)?;
        report(&format!("Debian package {pkg}"), present);
        if !present {
            missing.push(pkg);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    if !util::is_root() {
        bail!(
            "missing Debian packages {}; run `cargo xtask setup` as root or `apt-get install {}`",
            missing.join(", "),
            missing.join(" ")
        );
    }
    // One `update` for all packages, and only when something is installed.
    let apt = || {
        let mut cmd = Command::new("apt-get");
        cmd.env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    run(apt().arg("update"))?;
    run(apt().args(["install", "-y"]).args(&missing))?;
    // etcd-server's package enables a service on the host's own network;
    // the fleet tests start etcd in namespaces only, so it is stopped and
    // disabled again (where systemd runs; elsewhere nothing started it).
    if missing.contains(&"etcd-server") && Path::new("/run/systemd/system").exists() {
        let _ = Command::new("systemctl")
            .args(["disable", "--now", "etcd"])
            .status();
    }
    Ok(())
}

/// aya-build compiles sg-ebpf with `-Z build-std`, which needs nightly's source.
fn nightly_rust_src() -> Result<()> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))?;
    let has_nightly = String::from_utf8_lossy(&toolchains.stdout)
        .lines()
        .any(|l| l.starts_with("nightly-"));
    if !has_nightly {
        report("nightly toolchain with rust-src", false);
        return run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]));
    }
    let components = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    let present = String::from_utf8_lossy(&components.stdout)
        .lines()
        .any(|l| l.trim() == "rust-src");
    report("nightly rust-src component", present);
    if present {
        return Ok(());
    }
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

/// Whether the `bpf-linker` on our `PATH` (cargo's bin dir first, see
/// [`util::init_path`]) runs and is the pinned version. A binary that no
/// longer starts, e.g. after an LLVM upgrade, counts as missing.
fn bpf_linker_ok() -> bool {
    Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION)
        })
}

fn bpf_linker() -> Result<()> {
    let present = bpf_linker_ok();
    report(&format!("bpf-linker {BPF_LINKER_VERSION}"), present);
    if present {
        return Ok(());
    }
    // bpf-linker's default LLVM feature does not link here; build against apt's
    // LLVM 22 instead. `--force` replaces a same-version binary that broke.
    run(cargo().env("LLVM_PREFIX", LLVM_PREFIX).args([
        "install",
        "bpf-linker",
        "--version",
        BPF_LINKER_VERSION,
        "--locked",
        "--force",
        "--no-default-features",
        "--features",
        "llvm-22",
    ]))?;
    if !bpf_linker_ok() {
        bail!(
            "bpf-linker {BPF_LINKER_VERSION} was installed but `bpf-linker --version` \
             still fails; is {} the cargo install directory?",
            util::cargo_bin_dir().display()
        );
    }
    Ok(())
}
