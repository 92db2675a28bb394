//! The Prometheus text endpoint (off unless `[daemon] metrics_address` is
//! set; bind it to a local address). Every scrape asks the main loop for a
//! fresh snapshot of the kernel's counters.

use std::net::SocketAddr;

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    sync::{mpsc, oneshot},
};

use crate::{compile::Origin, daemon::Daemon};

type Labels = Vec<(String, String)>;

/// The metrics in the Prometheus text format.
/// `fleet`: on a fleet host, the connection to etcd and the revision in
/// force.
pub fn render(
    daemon: &Daemon,
    fleet: Option<(&crate::fleet::FleetStatus, i64)>,
) -> anyhow::Result<String> {
    let mut registry = Registry::with_prefix("sg");
    let decisions = Family::<Labels, Counter>::default();
    registry.register(
        "decisions",
        "Packets decided, by what decided them",
        decisions.clone(),
    );
    for (reason, n) in daemon.dataplane().stats()? {
        decisions
            .get_or_create(&vec![("reason".into(), reason.name().into())])
            .inc_by(n);
    }

    let if_packets = Family::<Labels, Counter>::default();
    let if_bytes = Family::<Labels, Counter>::default();
    registry.register(
        "interface_packets",
        "Packets per interface, direction and verdict",
        if_packets.clone(),
    );
    registry.register(
        "interface_bytes",
        "Bytes per interface, direction and verdict",
        if_bytes.clone(),
    );
    for (key, c) in daemon.dataplane().interface_counters()? {
        let name = daemon
            .interface_name(key.ifindex)
            .unwrap_or_else(|| format!("ifindex-{}", key.ifindex));
        let labels: Labels = vec![
            ("interface".into(), name),
            (
                "direction".into(),
                sg_common::Direction::from_raw(key.dir.into()).name().into(),
            ),
            (
                "verdict".into(),
                if key.accepted != 0 { "accept" } else { "drop" }.into(),
            ),
        ];
        if_packets.get_or_create(&labels).inc_by(c.packets);
        if_bytes.get_or_create(&labels).inc_by(c.bytes);
    }

    let rule_packets = Family::<Labels, Counter>::default();
    let rule_bytes = Family::<Labels, Counter>::default();
    registry.register(
        "rule_packets",
        "Packets each rule decided",
        rule_packets.clone(),
    );
    registry.register(
        "rule_bytes",
        "Bytes of the packets each rule decided",
        rule_bytes.clone(),
    );
    for r in daemon.rule_counts()? {
        let (group, rule) = match &r.origin {
            Origin::Rule { group, id } => (group.clone(), id.clone()),
            Origin::IntraGroup => (String::new(), "intra-group".into()),
        };
        let labels: Labels = vec![
            ("interface".into(), r.interface.clone()),
            ("direction".into(), r.direction.name().into()),
            ("group".into(), group),
            ("rule".into(), rule),
        ];
        rule_packets.get_or_create(&labels).inc_by(r.packets);
        rule_bytes.get_or_create(&labels).inc_by(r.bytes);
    }

    let sessions = Family::<Labels, Gauge<i64>>::default();
    let capacity = Family::<Labels, Gauge<i64>>::default();
    let evictions = Family::<Labels, Counter>::default();
    registry.register(
        "sessions",
        "Tracked sessions per session table (including expired ones not yet swept)",
        sessions.clone(),
    );
    registry.register(
        "session_capacity",
        "Entries each session table holds",
        capacity.clone(),
    );
    registry.register(
        "session_evictions",
        "Sessions each session table evicted to make room for new ones (least recently used first)",
        evictions.clone(),
    );
    for t in daemon.dataplane().session_tables()? {
        let labels: Labels = vec![("table".into(), t.table.into())];
        sessions.get_or_create(&labels).set(t.entries as i64);
        capacity.get_or_create(&labels).set(t.capacity as i64);
        evictions.get_or_create(&labels).inc_by(t.evictions);
    }

    let mut out = String::new();
    if let Some((status, applied)) = fleet {
        let connected = Gauge::<i64>::default();
        registry.register(
            "datastore_connected",
            "1 while etcd answers; 0 during an outage (the rules in force stay, edits are refused)",
            connected.clone(),
        );
        connected.set(i64::from(status.connected));
        let revision = Gauge::<i64>::default();
        registry.register(
            "datastore_revision",
            "The etcd revision of the shared state in force",
            revision.clone(),
        );
        revision.set(applied);
        let lag = Gauge::<i64>::default();
        registry.register(
            "datastore_lag_revisions",
            "Revisions etcd is ahead of the shared state in force",
            lag.clone(),
        );
        lag.set((status.store_revision - applied).max(0));
    }
    encode(&mut out, &registry)?;
    Ok(out)
}

/// A scrape waiting for its snapshot.
pub type Scrape = oneshot::Sender<String>;

/// Serves `GET /metrics` on `addr`; each scrape is sent to the main loop,
/// which answers with [`render`].
pub async fn serve(addr: SocketAddr, scrapes: mpsc::Sender<Scrape>) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics endpoint listening");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let scrapes = scrapes.clone();
            tokio::spawn(async move {
                let mut request = vec![0u8; 4096];
                let n = match stream.read(&mut request).await {
                    Ok(n) => n,
                    Err(_) => return,
                };
                let head = String::from_utf8_lossy(&request[..n]);
                let (status, body) = if head.starts_with("GET /metrics") {
                    let (tx, rx) = oneshot::channel();
                    let body = match scrapes.send(tx).await {
                        Ok(()) => rx.await.unwrap_or_default(),
                        Err(_) => String::new(),
                    };
                    ("200 OK", body)
                } else {
                    ("404 Not Found", "try /metrics\n".to_owned())
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    Ok(())
}
