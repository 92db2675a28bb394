//! The classifier on interfaces: the two TC hooks ([`Hook`]), attaching
//! both to an interface as TCX links, pinning a new link, taking over a
//! pinned one in place, and detaching.

use anyhow::{Context as _, anyhow};
use aya::programs::{
    SchedClassifier, TcAttachType,
    links::{FdLink, PinnedLink},
    tc::{SchedClassifierLink, SchedClassifierLinkId},
};
use sg_common::programs;

use super::Dataplane;

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

    fn attach_type(self) -> TcAttachType {
        match self {
            Hook::Ingress => TcAttachType::Ingress,
            Hook::Egress => TcAttachType::Egress,
        }
    }
}

impl Dataplane {
    /// Attaches both hooks of `ifname` (TCX on kernels >= 6.6). Call after
    /// `install`, so the first packet already finds its tables.
    ///
    /// With pins, a link an earlier daemon pinned for this interface is
    /// taken over in place (`bpf_link_update`): the hook never runs without
    /// a program. A new link is pinned, so it outlives this process.
    pub fn attach(&mut self, ifname: &str, ifindex: u32) -> anyhow::Result<()> {
        if self.links.contains_key(ifname) {
            return Ok(());
        }
        let mut links = Vec::new();
        for hook in Hook::BOTH {
            match self.attach_hook(ifname, ifindex, hook) {
                Ok(link) => links.push((hook, link)),
                Err(e) => {
                    for (hook, link) in links {
                        let _ = self.program_mut(hook)?.detach(link);
                    }
                    return Err(e).with_context(|| format!("attaching to {ifname} {hook:?}"));
                }
            }
        }
        self.links.insert(ifname.to_owned(), links);
        Ok(())
    }

    fn attach_hook(
        &mut self,
        ifname: &str,
        ifindex: u32,
        hook: Hook,
    ) -> anyhow::Result<SchedClassifierLinkId> {
        let pin = self.pins.as_ref().map(|p| p.link(ifindex, ifname, hook));
        if let Some(pin) = &pin
            && pin.exists()
        {
            let pinned = PinnedLink::from_pin(pin)?;
            let link = SchedClassifierLink::try_from(FdLink::from(pinned))?;
            return Ok(self.program_mut(hook)?.attach_to_link(link)?);
        }
        let prog = self.program_mut(hook)?;
        let id = prog.attach(ifname, hook.attach_type())?;
        if let Some(pin) = pin {
            // The program keeps a handle; the pin keeps the link alive.
            let link: FdLink = prog.take_link(id)?.try_into()?;
            let pinned = link
                .pin(&pin)
                .with_context(|| format!("pinning {}", pin.display()))?;
            let link = SchedClassifierLink::try_from(FdLink::from(pinned))?;
            return Ok(self.program_mut(hook)?.attach_to_link(link)?);
        }
        Ok(id)
    }

    /// Takes the programs off `ifname` for good: its pinned links are
    /// removed too.
    pub fn detach(&mut self, ifname: &str, ifindex: u32) -> anyhow::Result<()> {
        for (hook, link) in self.links.remove(ifname).unwrap_or_default() {
            let _ = self.program_mut(hook)?.detach(link);
        }
        self.unpin_links(ifindex);
        Ok(())
    }

    /// The interfaces this dataplane attached to.
    pub fn attached(&self) -> impl Iterator<Item = &str> {
        self.links.keys().map(String::as_str)
    }

    fn program_mut(&mut self, hook: Hook) -> anyhow::Result<&mut SchedClassifier> {
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
