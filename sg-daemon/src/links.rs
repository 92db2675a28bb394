//! Interface and address changes from the kernel (rtnetlink multicast),
//! so that an interface that appears, is renamed or gets addresses is
//! enforced at once, without polling.

use futures::StreamExt;
use rtnetlink::{
    new_connection,
    sys::{AsyncSocket, SocketAddr},
};
use tokio::sync::mpsc;

/// rtnetlink multicast groups: links, IPv4 and IPv6 addresses.
const RTMGRP_LINK: u32 = 0x1;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV6_IFADDR: u32 = 0x100;

/// Sends `()` on `changed` whenever a link or an address changes in this
/// network namespace. The receiver decides what to do (re-check and apply).
pub fn watch(changed: mpsc::Sender<()>) -> anyhow::Result<()> {
    let (mut connection, _handle, mut messages) = new_connection()?;
    let groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR;
    connection
        .socket_mut()
        .socket_mut()
        .bind(&SocketAddr::new(0, groups))?;
    tokio::spawn(connection);
    tokio::spawn(async move {
        while messages.next().await.is_some() {
            // A full channel already holds a pending change: that is enough.
            let _ = changed.try_send(());
        }
    });
    Ok(())
}
