//! Builds the eBPF program (`sg-ebpf`) for the bpf target with the nightly
//! toolchain and bpf-linker; `dataplane` embeds the object with
//! `include_bytes_aligned!`.
use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("reading the workspace metadata")?;
    let ebpf = metadata
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "sg-ebpf")
        .ok_or_else(|| anyhow!("package sg-ebpf not found in the workspace"))?;
    let root = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    // `--features layout-test` of sg-daemon builds the program with the
    // test-only map layout too.
    let features: &[&str] = if std::env::var_os("CARGO_FEATURE_LAYOUT_TEST").is_some() {
        &["layout-test"]
    } else {
        &[]
    };
    let package = aya_build::Package {
        name: ebpf.name.as_str(),
        root_dir: root.as_str(),
        features,
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::default())
}
