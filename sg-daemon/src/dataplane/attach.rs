//! The classifier on interfaces: the two TC hooks ([`Hook`]), the attach
//! mode (`[daemon] attach`: TCX, classic TC, or TCX where the kernel has
//! it), attaching both hooks of an interface in that mode (`tcx`, `tc`),
//! and detaching.
//!
//! Whatever the mode, a daemon takes over the hooks an earlier one left
//! without a gap: in place in the same mode, and across a change of mode by
//! attaching in the new mode first and only then removing what the old
//! mode left (for that moment a packet may meet sg's classifier twice; both
//! share the maps and decide alike).

use anyhow::anyhow;
use aya::programs::{
    ProgramError, SchedClassifier, TcAttachType, TcError, tc::SchedClassifierLinkId,
};
use sg_common::programs;
use tracing::info;

use super::{Dataplane, tc, tcx};
use crate::model::AttachMode;

/// Hooks held under an interface name, between [`Dataplane::take_hooks`]
/// and [`Dataplane::give_hooks`].
pub struct HeldHooks(Option<Vec<(Hook, SchedClassifierLinkId)>>);

/// The two TC hooks of the host's interface, each with its own entry
/// point. Not a [`sg_common::Direction`]: a hook is where a packet meets
/// the host's interface; the direction is the instance's, and in
/// hypervisor mode the ingress hook sees the instance's egress. The kernel
/// maps one to the other from the interface's mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    Ingress,
    Egress,
}

impl Hook {
    pub const BOTH: [Hook; 2] = [Hook::Ingress, Hook::Egress];

    /// The name of the hook's program in the eBPF object.
    pub(super) fn program(self) -> &'static str {
        match self {
            Hook::Ingress => programs::INGRESS,
            Hook::Egress => programs::EGRESS,
        }
    }

    pub(super) fn attach_type(self) -> TcAttachType {
        match self {
            Hook::Ingress => TcAttachType::Ingress,
            Hook::Egress => TcAttachType::Egress,
        }
    }
}

/// The errno behind an aya program error, if it has one.
pub(super) fn errno(e: &ProgramError) -> Option<i32> {
    match e {
        ProgramError::SyscallError(e) => e.io_error.raw_os_error(),
        ProgramError::NetlinkError(e) | ProgramError::TcError(TcError::NetlinkError(e)) => {
            e.raw_os_error()
        }
        ProgramError::TcError(TcError::IoError(e)) | ProgramError::IOError(e) => e.raw_os_error(),
        _ => None,
    }
}

impl Dataplane {
    /// The mode interfaces are attached in: `None` until `auto` has tried
    /// TCX on a first interface.
    pub fn attach_mode(&self) -> Option<AttachMode> {
        self.mode
    }

    /// Attaches both hooks of `ifname` in the attach mode. Call after
    /// `install`, so the first packet already finds its tables.
    ///
    /// With pins, what an earlier daemon left on this interface is taken
    /// over in place (a TCX link's program is updated, a TC filter's
    /// program replaced), so the hooks never run without a program; what it
    /// left in the other mode is removed once this mode's classifier is on.
    pub fn attach(&mut self, ifname: &str, ifindex: u32) -> anyhow::Result<()> {
        if self.links.contains_key(ifname) {
            return Ok(());
        }
        let (mode, held) = match self.mode {
            Some(AttachMode::Tc) => (AttachMode::Tc, self.attach_tc(ifname, ifindex)?),
            Some(_) => (AttachMode::Tcx, self.attach_tcx(ifname, ifindex)?),
            None => self.attach_auto(ifname, ifindex)?,
        };
        if let Some(pins) = &self.pins {
            match mode {
                AttachMode::Tc => self.unpin_links(ifindex),
                // Failures are logged; the old filters then run after TCX.
                _ => {
                    let _ = tc::remove_recorded(&pins.tc, Some(ifindex));
                }
            }
        }
        self.links.insert(ifname.to_owned(), held);
        Ok(())
    }

    /// `auto` on its first interface: TCX if the kernel has it, else
    /// classic TC, for this interface and every later one.
    fn attach_auto(
        &mut self,
        ifname: &str,
        ifindex: u32,
    ) -> anyhow::Result<(AttachMode, Vec<(Hook, SchedClassifierLinkId)>)> {
        let (mode, held, why) = match self.attach_tcx(ifname, ifindex) {
            Ok(held) => (AttachMode::Tcx, held, "the kernel has TCX".to_owned()),
            Err(e) if tcx::unsupported(&e) => {
                let held = self.attach_tc(ifname, ifindex)?;
                (
                    AttachMode::Tc,
                    held,
                    format!("no TCX in this kernel ({e:#})"),
                )
            }
            Err(e) => return Err(e),
        };
        info!("attaching with {mode} (attach = \"auto\": {why})");
        self.mode = Some(mode);
        Ok((mode, held))
    }

    /// Takes the programs off `ifname` for good, whichever mode put them
    /// there (see [`Dataplane::release`]).
    pub fn detach(&mut self, ifname: &str, ifindex: u32) -> anyhow::Result<()> {
        for (hook, link) in self.links.remove(ifname).unwrap_or_default() {
            let _ = self.program_mut(hook)?.detach(link);
        }
        self.release(ifindex);
        Ok(())
    }

    /// Takes the hooks held under `ifname` off the books, leaving them on
    /// their interface: that interface goes by another bound name now
    /// (renames), and [`Dataplane::give_hooks`] hands them to it. Detaching
    /// and attaching again would leave the hooks empty for a moment, and
    /// fail: the kernel frees a link whose pin is removed later, not at
    /// once.
    pub fn take_hooks(&mut self, ifname: &str) -> HeldHooks {
        HeldHooks(self.links.remove(ifname))
    }

    /// Gives the hooks of [`Dataplane::take_hooks`], on `ifindex`, to the
    /// name it goes by now, their pins and records renamed to match (the
    /// next daemon finds them by index and name).
    pub fn give_hooks(&mut self, ifname: &str, ifindex: u32, hooks: HeldHooks) {
        if let Some(pins) = &self.pins {
            for path in super::pins::entries(&pins.links, Some(ifindex)) {
                let file = path.file_name().and_then(|f| f.to_str()).unwrap_or("");
                let hook = Hook::BOTH.into_iter().find(|h| file.ends_with(h.program()));
                if let Some(hook) = hook {
                    let _ = std::fs::rename(&path, pins.link(ifindex, ifname, hook));
                }
            }
            for path in super::pins::entries(&pins.tc, Some(ifindex)) {
                let _ = std::fs::rename(&path, pins.tc_record(ifindex, ifname));
            }
        }
        if let Some(held) = hooks.0 {
            self.links.insert(ifname.to_owned(), held);
        }
    }

    /// The interfaces this dataplane attached to.
    pub fn attached(&self) -> impl Iterator<Item = &str> {
        self.links.keys().map(String::as_str)
    }

    pub(super) fn program_mut(&mut self, hook: Hook) -> anyhow::Result<&mut SchedClassifier> {
        Ok(self
            .ebpf
            .program_mut(hook.program())
            .ok_or_else(|| anyhow!("program {} missing", hook.program()))?
            .try_into()?)
    }

    /// The loaded program of a hook, for `BPF_PROG_TEST_RUN`.
    pub fn program(&self, hook: Hook) -> anyhow::Result<&SchedClassifier> {
        Ok(self
            .ebpf
            .program(hook.program())
            .ok_or_else(|| anyhow!("program {} missing", hook.program()))?
            .try_into()?)
    }
}
