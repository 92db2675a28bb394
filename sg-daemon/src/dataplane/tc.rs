//! Classic TC, for kernels without TCX (before 6.6) or by choice
//! (`[daemon] attach = "tc"`): a clsact qdisc on the interface and, on each
//! of its two hooks, one direct-action `bpf` filter running sg's classifier
//! at sg's own priority and handle ([`PRIORITY`], [`HANDLE`]).
//!
//! A filter holds its program itself, so it outlives the daemon without a
//! pin. The next daemon replaces the program of that same filter in place
//! (`RTM_NEWTFILTER` on the same priority and handle, without
//! `NLM_F_EXCL`), so the hook never runs without sg's classifier. A record
//! on the bpffs (a directory under [`super::Pins::tc`]) says which
//! interfaces have sg's filters, and whether sg added their clsact qdisc.
//! Releasing an interface deletes sg's two filters only, and the qdisc
//! only if sg added it and nobody else's filter is on it.

use std::{future::Future, path::Path};

use anyhow::{Context as _, anyhow};
use aya::programs::{
    Link as _, ProgramError, SchedClassifier, TcError,
    tc::{self, NlOptions, SchedClassifierLink, SchedClassifierLinkId, TcAttachOptions},
};
use futures::TryStreamExt as _;
use rtnetlink::packet_route::tc::TcHandle;

use super::{Dataplane, Hook, attach::errno, pins};

/// sg's filter priority on both hooks, "SG" in ASCII: distinctive, so that
/// it meets no other tool's filters. Lower runs first: sg runs after
/// filters given a lower number and before those the kernel numbers itself
/// (from 49152 down).
pub const PRIORITY: u16 = 0x5347;

/// sg's filter handle within [`PRIORITY`].
pub const HANDLE: u32 = 0x5347;

/// In an interface's record: sg added its clsact qdisc.
const ADDED_QDISC: &str = "qdisc";

impl Dataplane {
    /// Attaches both hooks of `ifname` with classic TC: adds the clsact
    /// qdisc if there is none, then replaces the program of sg's filter in
    /// place, or creates the filter. With pins, the interface is recorded
    /// and the filters outlive this process; without, they go with it
    /// (their ids are returned).
    pub(super) fn attach_tc(
        &mut self,
        ifname: &str,
        ifindex: u32,
    ) -> anyhow::Result<Vec<(Hook, SchedClassifierLinkId)>> {
        let record = self.pins.as_ref().map(|p| p.tc_record(ifindex, ifname));
        let added = add_clsact(ifname)?;
        if let Some(record) = &record {
            // Before the filters: a crash in between leaves none unrecorded.
            let dir = if added {
                record.join(ADDED_QDISC)
            } else {
                record.clone()
            };
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut held = Vec::new();
        for hook in Hook::BOTH {
            let prog = self.program_mut(hook)?;
            let id = replace_or_create(prog, ifname, hook)
                .with_context(|| format!("attaching to {ifname} {hook:?} (classic TC)"))?;
            if record.is_some() {
                // Dropping the link would delete the filter: it must stay
                // when this process exits.
                std::mem::forget(prog.take_link(id)?);
            } else {
                held.push((hook, id));
            }
        }
        Ok(held)
    }
}

/// Adds a clsact qdisc to `ifname`: true if added, false if it had one.
fn add_clsact(ifname: &str) -> anyhow::Result<bool> {
    match tc::qdisc_add_clsact(ifname) {
        Ok(()) => Ok(true),
        Err(TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
        Err(e) => Err(e).with_context(|| format!("adding a clsact qdisc to {ifname}")),
    }
}

/// sg's filter on a hook of `ifname`, as a link aya can replace or delete.
fn ours(ifname: &str, hook: Hook) -> Result<SchedClassifierLink, ProgramError> {
    SchedClassifierLink::attached(ifname, hook.attach_type(), PRIORITY, HANDLE.into(), None)
        .map_err(|e| TcError::IoError(e).into())
}

/// Puts `prog` in sg's filter on `hook` of `ifname`: in place if the
/// filter exists (the kernel swaps the program atomically), else a new
/// filter.
fn replace_or_create(
    prog: &mut SchedClassifier,
    ifname: &str,
    hook: Hook,
) -> Result<SchedClassifierLinkId, ProgramError> {
    match prog.attach_to_link(ours(ifname, hook)?) {
        Err(e) if errno(&e) == Some(libc::ENOENT) => prog.attach_with_options(
            ifname,
            hook.attach_type(),
            TcAttachOptions::Netlink(NlOptions {
                priority: PRIORITY,
                handle: HANDLE.into(),
                classid: None,
            }),
        ),
        replaced => replaced,
    }
}

/// Deletes sg's filters on the interfaces recorded in `dir` (all of them,
/// or those of `ifindex`), and the clsact qdisc where sg added it and no
/// other filter is on it; then the records. Goes on past a failure, which
/// it logs, and returns the last one.
pub(super) fn remove_recorded(dir: &Path, ifindex: Option<u32>) -> anyhow::Result<()> {
    let mut result = Ok(());
    for record in pins::entries(dir, ifindex) {
        match remove(&record) {
            Ok(()) => {
                let _ = std::fs::remove_dir_all(&record);
            }
            Err(e) => {
                tracing::warn!(record = %record.display(), "removing sg's TC filters: {e:#}");
                result = Err(e);
            }
        }
    }
    result
}

/// Deletes what one record says sg put on its interface.
fn remove(record: &Path) -> anyhow::Result<()> {
    let Some(ifindex) = pins::ifindex_of(record) else {
        return Ok(());
    };
    // An interface that is gone took its filters and qdisc with it.
    let Ok(name) = nix::net::if_::if_indextoname(ifindex) else {
        return Ok(());
    };
    let ifname = name.to_str()?;
    for hook in Hook::BOTH {
        match ours(ifname, hook)?.detach() {
            // Not there (any more), nor its qdisc, nor the interface.
            Err(e) if matches!(errno(&e), Some(libc::ENOENT | libc::EINVAL | libc::ENODEV)) => {}
            done => done.with_context(|| format!("deleting sg's filter on {ifname} {hook:?}"))?,
        }
    }
    if record.join(ADDED_QDISC).exists() && remove_clsact_if_unused(ifindex)? {
        tracing::info!(interface = ifname, "removed the clsact qdisc sg had added");
    }
    Ok(())
}

/// Deletes the clsact qdisc of `ifindex` if no filter (anyone's) is left on
/// either of its hooks; returns whether it did.
fn remove_clsact_if_unused(ifindex: u32) -> anyhow::Result<bool> {
    with_rtnetlink(move |handle| async move {
        let index = ifindex as i32;
        let ingress: Vec<_> = handle
            .traffic_filter(index)
            .get()
            .ingress()
            .execute()
            .try_collect()
            .await?;
        let egress: Vec<_> = handle
            .traffic_filter(index)
            .get()
            .egress()
            .execute()
            .try_collect()
            .await?;
        if !ingress.is_empty() || !egress.is_empty() {
            return Ok(false);
        }
        let mut del = handle.qdisc().del(index);
        del.message_mut().header.parent = TcHandle::CLSACT;
        del.message_mut().header.handle = TcHandle {
            major: 0xffff,
            minor: 0,
        };
        del.execute().await?;
        Ok(true)
    })
}

/// Runs an rtnetlink exchange to completion from synchronous code, on a
/// thread and runtime of its own (the daemon's runtime is busy calling
/// this). Only for the rare removals.
fn with_rtnetlink<T, F, Fut>(exchange: F) -> anyhow::Result<T>
where
    T: Send,
    F: FnOnce(rtnetlink::Handle) -> Fut + Send,
    Fut: Future<Output = anyhow::Result<T>>,
{
    std::thread::scope(|s| {
        s.spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()?;
            runtime.block_on(async move {
                let (connection, handle, _) = rtnetlink::new_connection()?;
                tokio::spawn(connection);
                exchange(handle).await
            })
        })
        .join()
        .map_err(|_| anyhow!("the netlink thread panicked"))?
    })
}
