//! The tracked sessions of the kernel's session table: listed, or flushed.

use sg_common::INBOUND;
use tracing::info;

use super::{
    Reply, SessionInfo,
    names::{boot_time_ns, ifname, key_addr, protocol_name},
};
use crate::{dataplane::Dataplane, model::Config};

pub(super) fn sessions(
    dp: &Dataplane,
    config: &Config,
    interface: Option<&str>,
) -> Result<Reply, String> {
    let only = match interface {
        Some(name) => Some(
            nix::net::if_::if_nametoindex(name)
                .map_err(|_| format!("no interface {name} on this host"))?,
        ),
        None => None,
    };
    let now = boot_time_ns();
    let timeout = config.daemon.session_timeout_secs;
    let mut out: Vec<SessionInfo> = dp
        .sessions()
        .map_err(|e| format!("reading the sessions: {e:#}"))?
        .into_iter()
        .filter(|(k, _)| only.is_none_or(|i| i == k.ifindex))
        .map(|(k, v)| {
            let idle = now.saturating_sub(v.last_seen_ns) / 1_000_000_000;
            SessionInfo {
                interface: ifname(k.ifindex),
                protocol: protocol_name(k.proto),
                local: key_addr(k.family, &k.local).to_string(),
                local_port: k.local_port,
                remote: key_addr(k.family, &k.remote).to_string(),
                remote_port: k.remote_port,
                opened: if v.opened as usize == INBOUND {
                    "inbound"
                } else {
                    "outbound"
                }
                .into(),
                idle_secs: idle,
                expires_in_secs: timeout.saturating_sub(idle),
            }
        })
        .collect();
    out.sort_by(|a, b| {
        (
            &a.interface,
            &a.remote,
            a.remote_port,
            &a.local,
            a.local_port,
        )
            .cmp(&(
                &b.interface,
                &b.remote,
                b.remote_port,
                &b.local,
                b.local_port,
            ))
    });
    Ok(Reply::Sessions(out))
}

pub(super) fn flush_sessions(dp: &mut Dataplane) -> Result<Reply, String> {
    let n = dp.sessions().map(|s| s.len()).unwrap_or(0);
    dp.flush_sessions()
        .map_err(|e| format!("flushing the sessions: {e:#}"))?;
    info!(sessions = n, "api: flushed the tracked sessions");
    Ok(Reply::Done {
        message: format!("flushed {n} tracked sessions"),
        id: None,
    })
}
