//! TCX (kernel 6.6 and later): one link per interface and hook, pinned so
//! that it outlives the daemon, and taken over in place by the next one
//! (`bpf_link_update`), so that the hook never runs without a program.

use anyhow::Context as _;
use aya::programs::{
    LinkOrder, ProgramError,
    links::{FdLink, PinnedLink},
    tc::{SchedClassifierLink, SchedClassifierLinkId, TcAttachOptions},
};

use super::{Dataplane, Hook, attach::errno};

/// What a kernel without TCX answers a TCX attach: the attach type is
/// unknown to it (`EINVAL`), or the operation is not supported.
const UNSUPPORTED: [i32; 3] = [libc::EINVAL, libc::EOPNOTSUPP, 524 /* ENOTSUPP */];

/// Whether `e`, from [`Dataplane::attach_tcx`], says the kernel has no TCX
/// (rather than that this interface could not take it).
pub(super) fn unsupported(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ProgramError>()
        .and_then(errno)
        .is_some_and(|n| UNSUPPORTED.contains(&n))
}

impl Dataplane {
    /// Attaches both hooks of `ifname` as TCX links. With pins, a link an
    /// earlier daemon pinned for this interface is taken over in place; a
    /// new link is pinned, so that it outlives this process.
    pub(super) fn attach_tcx(
        &mut self,
        ifname: &str,
        ifindex: u32,
    ) -> anyhow::Result<Vec<(Hook, SchedClassifierLinkId)>> {
        let mut links = Vec::new();
        for hook in Hook::BOTH {
            match self.attach_tcx_hook(ifname, ifindex, hook) {
                Ok(link) => links.push((hook, link)),
                Err(e) => {
                    for (hook, link) in links {
                        let _ = self.program_mut(hook)?.detach(link);
                    }
                    return Err(e.context(format!("attaching to {ifname} {hook:?} (TCX)")));
                }
            }
        }
        Ok(links)
    }

    fn attach_tcx_hook(
        &mut self,
        ifname: &str,
        ifindex: u32,
        hook: Hook,
    ) -> anyhow::Result<SchedClassifierLinkId> {
        let pin = self.pins.as_ref().map(|p| p.link(ifindex, ifname, hook));
        // A link pinned for this index and hook under another name (the
        // interface was renamed) is the same hook's: taken over, its pin
        // renamed, rather than a second program attached beside it.
        if let (Some(pins), Some(pin)) = (&self.pins, &pin)
            && !pin.exists()
        {
            let program = hook.program();
            let other = super::pins::entries(&pins.links, Some(ifindex))
                .into_iter()
                .find(|p| {
                    p.file_name()
                        .and_then(|f| f.to_str())
                        .is_some_and(|f| f.ends_with(program))
                });
            if let Some(other) = other {
                std::fs::rename(&other, pin).with_context(|| {
                    format!("renaming {} to {}", other.display(), pin.display())
                })?;
            }
        }
        if let Some(pin) = &pin
            && pin.exists()
        {
            let pinned = PinnedLink::from_pin(pin)?;
            let link = SchedClassifierLink::try_from(FdLink::from(pinned))?;
            return Ok(self.program_mut(hook)?.attach_to_link(link)?);
        }
        let prog = self.program_mut(hook)?;
        // TCX explicitly: `attach` would pick netlink on kernels it thinks
        // are older than 6.6.
        let id = prog.attach_with_options(
            ifname,
            hook.attach_type(),
            TcAttachOptions::TcxOrder(LinkOrder::default()),
        )?;
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
}

#[cfg(test)]
mod tests {
    use aya::sys::SyscallError;

    use super::*;

    /// `auto` falls back to classic TC on what an old kernel answers, and
    /// only on that (this machine's kernel has TCX, so the namespace tests
    /// cannot show the fallback itself).
    #[test]
    fn only_an_unknown_attach_type_means_no_tcx() {
        let attach_failed = |n: i32| {
            anyhow::Error::from(ProgramError::SyscallError(SyscallError {
                call: "bpf_mprog_attach",
                io_error: std::io::Error::from_raw_os_error(n),
            }))
            .context("attaching to eth0 Ingress (TCX)")
        };
        for (errno, no_tcx) in [
            (libc::EINVAL, true),
            (libc::EOPNOTSUPP, true),
            (524, true),
            (libc::ENODEV, false),
            (libc::EPERM, false),
            (libc::EEXIST, false),
        ] {
            assert_eq!(unsupported(&attach_failed(errno)), no_tcx, "errno {errno}");
        }
        assert!(!unsupported(&anyhow::anyhow!("pinning failed")));
    }
}
