//! `cargo xtask`: the one entry point for setting up a machine and building,
//! testing, demoing and benchmarking sg (alias in `.cargo/config.toml`).
//!
//! Every command except `fmt-check` first runs the idempotent [`setup`] check,
//! so a fresh CI machine needs nothing but rustup and `cargo xtask test`.

mod install;
mod run;
mod setup;
mod util;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(about = "Setup, build, test, demo and bench helpers for sg")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install whatever is missing: Debian packages, nightly rust-src, bpf-linker.
    Setup,
    /// Setup, then build every workspace target (daemon, eBPF program, tests).
    Build,
    /// Setup, build, then run all tests (as root; they create network namespaces).
    Test {
        /// Extra arguments for `cargo test`, e.g. `-- --test seeds`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Setup, build, then run the `sg-demo` binary (as root).
    Demo {
        /// Extra arguments for `sg-demo`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Setup, build, then run the dataplane benchmark (as root; it loads eBPF).
    Bench {
        /// The scale benchmark instead: 1000 hypervisor-mode interfaces in
        /// a namespace of its own (`sg-daemon/benches/scale/`).
        #[arg(long)]
        scale: bool,
        /// Extra arguments for `cargo bench`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Check formatting (needs no setup).
    FmtCheck,
    /// Setup, then clippy on every target with warnings denied.
    Lint,
    /// Setup, build sgd (and sgctl) in release, install them with the systemd
    /// unit and, if absent, an example /etc/sg/sg.toml.
    Install {
        /// Where the binaries go: PREFIX/bin.
        #[arg(long, default_value = "/usr/local")]
        prefix: PathBuf,
        /// Install under this directory instead of / (packaging, trying it
        /// out); then no systemctl is run.
        #[arg(long)]
        destdir: Option<PathBuf>,
    },
}

/// Prints errors as one `error: a: b: c` line rather than anyhow's `Debug`
/// form, which adds a backtrace whenever `RUST_BACKTRACE` is set (as in CI).
fn main() -> ExitCode {
    match try_main(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn try_main(cli: Cli) -> Result<()> {
    util::init_path();
    if !matches!(cli.command, Command::FmtCheck) {
        setup::ensure()?;
    }
    match cli.command {
        Command::Setup => Ok(()),
        Command::Build => run::build(),
        Command::Test { args } => run::test(&args),
        Command::Demo { args } => run::demo(&args),
        Command::Bench { scale, args } => run::bench(scale, &args),
        Command::FmtCheck => run::fmt_check(),
        Command::Lint => run::lint(),
        Command::Install { prefix, destdir } => install::install(&prefix, destdir.as_deref()),
    }
}
