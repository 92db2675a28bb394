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
use clap::{CommandFactory as _, Parser, Subcommand};
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
    /// Setup, build, then run the dataplane benchmark (as root; it loads eBPF),
    /// with --scale the scale benchmark, with --fleet the fleet's
    /// propagation through etcd, or with --compare the veth comparison with
    /// iptables-nft and nftables.
    #[command(
        after_help = "Examples:\n  \
        cargo xtask bench                            # BPF_PROG_TEST_RUN: ns per packet, compile time, map memory\n  \
        cargo xtask bench --scale                    # 1000 hypervisor-mode interfaces: apply, one change, memory\n  \
        cargo xtask bench --fleet                    # one shared-rule edit through etcd to 10 and 100 hosts: p50/p99\n  \
        cargo xtask bench --fleet -- 10 --rounds 50  # its own arguments: host counts, rounds, --fixed-table\n  \
        cargo xtask bench --compare                  # veth: no filter, sg, iptables-nft, nftables; table + docs/compare.png\n  \
        cargo xtask bench --compare --rounds 5 --rules 10,1000\n  \
        cargo xtask bench --compare --help           # the comparison's own options",
        disable_help_flag = true
    )]
    Bench {
        /// Print help (with --compare: sg-compare's options).
        #[arg(short, long)]
        help: bool,
        /// The scale benchmark instead: 1000 hypervisor-mode interfaces in
        /// a namespace of its own (`sg-daemon/benches/scale/`).
        #[arg(long, conflicts_with_all = ["compare", "fleet"])]
        scale: bool,
        /// The fleet benchmark instead: etcd (one member) in a namespace,
        /// 10 then 100 simulated hosts (each its own etcd connection, store
        /// and compile, as sgd without attaching), one shared-rule edit per
        /// round; propagation p50/p99 and the per-host cost
        /// (`sg-daemon/benches/fleet.rs`).
        #[arg(long, conflicts_with = "compare")]
        fleet: bool,
        /// Run `sg-compare` instead: trafgen blasting UDP through a veth into a
        /// namespace holding no filter, sg (sgd), iptables-nft or nftables with
        /// the same rules; the median ratios to no filter as a table and a plot.
        #[arg(long)]
        compare: bool,
        /// Extra arguments: with --compare, sg-compare's options (`--rounds N`,
        /// `--rules 10,100,1000`, `--seconds S`, `--help`, ...); with --fleet,
        /// after `--`, the bench's (host counts, `--rounds R`,
        /// `--fixed-table`, `--serial`); otherwise
        /// `cargo bench`'s, after `--`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
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
    // Help needs neither setup nor root; `--help` after other options of
    // the comparison lands in `args`.
    if let Command::Bench {
        help,
        compare,
        args,
        ..
    } = &cli.command
    {
        let asked = *help || (*compare && args.iter().any(|a| a == "--help" || a == "-h"));
        if asked && *compare {
            return run::compare_help();
        }
        if asked {
            let mut cmd = Cli::command();
            cmd.build();
            let bench = cmd
                .find_subcommand_mut("bench")
                .expect("bench is a subcommand");
            return Ok(bench.print_long_help()?);
        }
        // `cargo bench`'s own arguments come after `--`, as before
        // --compare existed: a mistyped option is an error, not something
        // handed on to cargo.
        let separated = std::env::args().any(|a| a == "--");
        if let (false, false, Some(first)) = (*compare, separated, args.first()) {
            anyhow::bail!(
                "unexpected argument {first:?} for `cargo xtask bench`: `cargo bench`'s own \
                 arguments go after `--` (`cargo xtask bench -- --help`), the comparison's \
                 after `--compare` (`cargo xtask bench --compare --help`)"
            );
        }
    }
    if !matches!(cli.command, Command::FmtCheck) {
        setup::ensure()?;
    }
    match cli.command {
        Command::Setup => Ok(()),
        Command::Build => run::build(),
        Command::Test { args } => run::test(&args),
        Command::Demo { args } => run::demo(&args),
        Command::Bench {
            compare: false,
            scale,
            fleet,
            args,
            ..
        } => run::bench(scale, fleet, &args),
        Command::Bench {
            compare: true,
            args,
            ..
        } => run::compare(&args),
        Command::FmtCheck => run::fmt_check(),
        Command::Lint => run::lint(),
        Command::Install { prefix, destdir } => install::install(&prefix, destdir.as_deref()),
    }
}
