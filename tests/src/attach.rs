//! The ways `sgd` hooks its classifier to an interface (`[daemon]
//! attach`): tests that run once per mode ([`in_each_attach_mode!`]),
//! daemons started in a mode, and what a mode leaves in the kernel.

use std::{fmt, fs};

use anyhow::{Result, bail, ensure};

use crate::config::{Group, groups_on};
use crate::daemon::Daemon;
use crate::netns::{Netns, SERVER_IF};

/// A value of `[daemon] attach`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// TCX where the kernel has it, else classic TC.
    Auto,
    /// TCX links (kernel 6.6 and later).
    Tcx,
    /// A clsact qdisc and a direct-action filter.
    Tc,
}

impl Attach {
    /// The modes the namespace tests run in; `auto` picks TCX on kernels
    /// that have it, so it adds nothing here but a test of its choice.
    pub const BOTH: [Attach; 2] = [Attach::Tcx, Attach::Tc];

    /// The name in the config file.
    pub fn name(self) -> &'static str {
        match self {
            Attach::Auto => "auto",
            Attach::Tcx => "tcx",
            Attach::Tc => "tc",
        }
    }

    /// A config: `attach = "<mode>"` followed by `rest`, whose keys before
    /// its first table header land in `[daemon]` too (see
    /// [`crate::DaemonDirs::config`]).
    pub fn config(self, rest: &str) -> String {
        format!("attach = \"{self}\"\n{rest}")
    }

    /// Starts sgd in `ns` on `rest` in this mode (see [`Attach::config`]),
    /// and checks that it says it attaches in it (`auto`: with TCX, as on
    /// any kernel from 6.6).
    pub fn start(self, ns: &Netns, rest: &str) -> Result<Daemon> {
        let sgd = Daemon::start(ns, &self.config(rest))?;
        self.check_log(&sgd)?;
        Ok(sgd)
    }

    /// [`Attach::start`] with `groups` bound to [`SERVER_IF`]; panics if it
    /// does not start.
    #[track_caller]
    pub fn enforce(self, ns: &Netns, groups: &[Group]) -> Daemon {
        self.start(ns, &groups_on(SERVER_IF, groups))
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Fails unless `sgd`'s log says it attached in this mode.
    pub fn check_log(self, sgd: &Daemon) -> Result<()> {
        let (mode, why) = match self {
            Attach::Auto => (Attach::Tcx, "attach = \"auto\": the kernel has TCX"),
            mode => (mode, ""),
        };
        let line = format!("attaching with {mode} (");
        let log = sgd.log();
        match log.lines().rev().find(|l| l.contains(&line)) {
            Some(l) if l.contains(why) => Ok(()),
            _ => bail!("sgd did not say `{line}…{why}`; its log:\n{log}"),
        }
    }
}

impl Attach {
    /// Fails unless `dev` in `ns` has what this mode attaches, and nothing
    /// of the other mode: classic TC, sg's direct-action filter on each
    /// hook and no pinned TCX link; TCX (`auto` too, on this kernel), two
    /// pinned links and no sg filter.
    pub fn check_kernel(self, sgd: &Daemon, ns: &Netns, dev: &str) -> Result<()> {
        let state = TcState::of(ns, dev)?;
        let filters = state.sg_filters();
        let links = fs::read_dir(sgd.dirs().bpffs_dir().join("links"))?
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .contains(&format!("-{dev}-"))
            })
            .count();
        let (want_filters, want_links) = match self {
            Attach::Tc => (2, 0),
            Attach::Tcx | Attach::Auto => (0, 2),
        };
        ensure!(
            filters.len() == want_filters
                && filters.iter().all(|l| l.contains("direct-action"))
                && links == want_links,
            "{self}: {want_filters} sg filters and {want_links} pinned links expected on {dev}, \
             found {links} links and {state:#?}"
        );
        Ok(())
    }
}

impl fmt::Display for Attach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Runs each named scenario, a function of an [`Attach`], as one test per
/// mode of [`Attach::BOTH`]: `tcx::<scenario>` and `tc::<scenario>`.
///
/// ```ignore
/// fn blocks_ssh(mode: Attach) { let _sgd = mode.enforce(s, &[web]); /* … */ }
/// in_each_attach_mode!(blocks_ssh);
/// ```
#[macro_export]
macro_rules! in_each_attach_mode {
    ($($scenario:ident),+ $(,)?) => {
        mod tcx {
            $(#[test]
            fn $scenario() {
                super::$scenario($crate::Attach::Tcx)
            })+
        }
        mod tc {
            $(#[test]
            fn $scenario() {
                super::$scenario($crate::Attach::Tc)
            })+
        }
    };
}

/// What classic TC holds on an interface: whether it has a clsact qdisc,
/// and `tc filter show` of its ingress and egress hooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcState {
    pub clsact: bool,
    pub ingress: String,
    pub egress: String,
}

impl TcState {
    /// The classic TC state of `dev` in `ns`.
    pub fn of(ns: &Netns, dev: &str) -> Result<TcState> {
        let qdiscs = ns.exec(&["tc", "qdisc", "show", "dev", dev])?;
        let filters = |hook| ns.exec(&["tc", "filter", "show", "dev", dev, hook]);
        Ok(TcState {
            clsact: qdiscs.contains("clsact"),
            ingress: filters("ingress")?,
            egress: filters("egress")?,
        })
    }

    /// The lines of sg's filters (its programs' names), ingress then
    /// egress.
    pub fn sg_filters(&self) -> Vec<&str> {
        [&self.ingress, &self.egress]
            .into_iter()
            .flat_map(|text| text.lines())
            .filter(|l| l.contains("name sg_tc_"))
            .collect()
    }
}
