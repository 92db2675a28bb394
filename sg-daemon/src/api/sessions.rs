//! The tracked sessions of the kernel's session tables, with their state,
//! their table and how long each has left: listed, or flushed.

use tracing::info;

use super::{
    Reply, SessionInfo,
    names::{bound_name, ifname, protocol_name},
};
use crate::{
    dataplane::Dataplane,
    model::{Config, Direction},
};

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
    let now = crate::clock::boot_time_ns();
    let timeouts = config.daemon.session_timeouts();
    let mut out: Vec<SessionInfo> = dp
        .sessions_by_table()
        .map_err(|e| format!("reading the sessions: {e:#}"))?
        .into_iter()
        .filter(|(k, _, _)| only.is_none_or(|i| i == k.ifindex))
        .map(|(k, v, answered)| {
            let idle = now.saturating_sub(v.last_seen_ns) / 1_000_000_000;
            SessionInfo {
                interface: ifname(k.ifindex),
                protocol: protocol_name(k.proto),
                local: sg_common::addr::from_bytes(k.family, &k.local).to_string(),
                local_port: k.local_port,
                remote: sg_common::addr::from_bytes(k.family, &k.remote).to_string(),
                remote_port: k.remote_port,
                opened: bound_name(Direction::from_raw(v.opened)).into(),
                state: crate::sessions::state_name(&v).into(),
                idle_secs: idle,
                expires_in_secs: crate::sessions::expires_in_secs(&v, &timeouts, now),
                answered,
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
