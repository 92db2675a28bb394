//! `sgd --config FILE [--check]`: the security-group daemon (SPEC §7).

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use sd_notify::NotifyState;
use sg_daemon::{api, config, daemon::Daemon, fleet::FleetEvent, store::Store};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{error, info};

/// Cloud security groups for this host, enforced by eBPF.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// The TOML config file (SPEC §7).
    #[arg(long, default_value = "/etc/sg/sg.toml")]
    config: PathBuf,
    /// Validate the file, print every problem, and exit (non-zero if any).
    #[arg(long)]
    check: bool,
    /// Take sg off every interface for good and exit: delete sg's classic
    /// TC filters (and the clsact qdiscs sg added, if no other filter uses
    /// them), and remove the pinned links and maps under the file's
    /// `bpffs_dir`. (A plain stop leaves the last ruleset enforced, so
    /// that a restart opens no gap.)
    #[arg(long, conflicts_with = "check")]
    detach: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let config = match config::load(&args.config) {
        Ok(config) => config,
        Err(errors) => {
            eprint!("{errors}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        print!("{}", check_report(&args.config, &config));
        return ExitCode::SUCCESS;
    }
    if args.detach {
        return match sg_daemon::dataplane::remove_pins(&config.daemon.bpffs_dir) {
            Ok(()) => {
                println!(
                    "sg detached: TC filters and pins under {} removed",
                    config.daemon.bpffs_dir.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sgd: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sgd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args, config: sg_daemon::model::Config) -> anyhow::Result<()> {
    let mut hangup = signal(SignalKind::hangup())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;

    // Link and address changes, so that hot-plugged and renamed interfaces
    // are enforced at once. Subscribed before the first apply: nothing that
    // happens in between is missed.
    let (links_tx, mut links_rx) = tokio::sync::mpsc::channel(1);
    sg_daemon::links::watch(links_tx)?;

    // The desired state: the file, or what the API made of it (see store);
    // on a fleet host, the shared objects from etcd with this host's
    // bindings (see sg_daemon::fleet).
    let (fleet_tx, mut fleet_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut store = match config.datastore.clone() {
        None => Store::open(&config.daemon.state_dir, &args.config)?,
        Some(settings) => {
            info!(endpoints = ?settings.endpoints, prefix = %settings.prefix, host_id = %settings.host_id, "shared state from etcd");
            let fleet = sg_daemon::fleet::Fleet::start(settings, fleet_tx.clone())?;
            Store::open_fleet(&config.daemon.state_dir, &args.config, fleet)?
        }
    };
    let (mut daemon, report) = Daemon::start(store.config())?;
    store.publish_bindings(daemon.addresses());
    forward_kernel_log(&mut daemon);
    let (drops_tx, mut drops_rx) = tokio::sync::mpsc::channel(1024);
    sg_daemon::drops::read_ring(daemon.dataplane_mut().take_drop_ring()?, drops_tx)?;
    let mut drop_log = sg_daemon::drops::DropLog::default();
    let (scrape_tx, mut scrape_rx) = tokio::sync::mpsc::channel::<sg_daemon::metrics::Scrape>(8);
    if let Some(addr) = config.daemon.metrics_address {
        sg_daemon::metrics::serve(addr, scrape_tx).await?;
    }
    // The control socket exists before READY=1, so sgctl works at once.
    let listener = api::bind(&api::socket_path(&config.daemon.runtime_dir))?;
    let (api_tx, mut api_rx) = tokio::sync::mpsc::channel::<api::Call>(16);
    tokio::spawn(async move {
        if let Err(e) = listener.serve(api_tx).await {
            error!("control API: {e:#}");
        }
    });
    info!(
        enforced = ?report.enforced,
        missing = ?report.missing,
        unsupported = ?report.unsupported,
        "sgd ready"
    );
    notify(&[NotifyState::Ready]);

    // Expired sessions are absent to the kernel already; freeing their
    // memory now and then keeps the table from filling with them.
    let mut sweep = tokio::time::interval(std::time::Duration::from_secs(30));
    loop {
        // Tables an apply switched away from are freed a grace period
        // after their own switch, whatever happens in between.
        let collect_at = daemon.dataplane().next_collection();
        // The next scheduled snapshot (the wall clock: they outlive boots).
        let snapshot_at = store.snapshots().next_due().map(|due| {
            let wait = due.saturating_sub(sg_daemon::snapshots::unix_now());
            tokio::time::Instant::now() + std::time::Duration::from_secs(wait)
        });
        // Whether this turn may have changed the bindings or addresses in
        // force (what a fleet host publishes): not a drop record or a scrape.
        let mut applied = true;
        tokio::select! {
            _ = hangup.recv() => {
                reload(&mut store, &mut daemon, &drop_log);
            }
            Some(call) = api_rx.recv() => {
                let response = api::handle(&mut store, &mut daemon, &drop_log, call.request);
                let _ = call.reply.send(response);
            }
            Some(()) = links_rx.recv() => {
                // Events come in bursts (a veth pair is several messages):
                // settle briefly, then apply once if anything we bind moved.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                while links_rx.try_recv().is_ok() {}
                if !daemon.in_sync(store.config()) {
                    match daemon.apply(store.config()) {
                        Ok(report) => info!(enforced = ?report.enforced, missing = ?report.missing, unsupported = ?report.unsupported, released = ?report.released, "interfaces changed"),
                        Err(e) => error!("applying after an interface change: {e:#}"),
                    }
                }
            }
            _ = tokio::time::sleep_until(collect_at.map_or_else(tokio::time::Instant::now, Into::into)), if collect_at.is_some() => {
                if let Err(e) = daemon.collect_garbage() {
                    tracing::warn!("freeing old tables: {e:#}");
                }
            }
            _ = tokio::time::sleep_until(snapshot_at.unwrap_or_else(tokio::time::Instant::now)), if snapshot_at.is_some() => {
                store.snapshot_tick();
            }
            Some(event) = fleet_rx.recv() => {
                // Only the newest view matters: take what is queued.
                let mut newest = None;
                let mut next = Some(event);
                while let Some(event) = next {
                    match event {
                        FleetEvent::View(view) => newest = Some(view),
                        FleetEvent::Connected { endpoint } => info!(%endpoint, "etcd answers"),
                        FleetEvent::Disconnected { error } => tracing::warn!("etcd cannot be reached: {error}; the rules in force stay enforced, edits are refused"),
                    }
                    next = fleet_rx.try_recv().ok();
                }
                let applied = newest.and_then(|view| store.fleet_view(view, &mut |c| daemon.apply(c)));
                match applied {
                    Some(Ok(report)) => info!(enforced = ?report.enforced, missing = ?report.missing, "applied the shared state"),
                    Some(Err(why)) => error!("{why}"),
                    None => {}
                }
            }
            Some(record) = drops_rx.recv() => {
                applied = false;
                let drop = drop_log.push(&daemon, &record);
                tracing::debug!(?drop, "dropped");
            }
            Some(scrape) = scrape_rx.recv() => {
                applied = false;
                let fleet = store.fleet_status();
                let fleet = fleet.as_ref().map(|(status, view, _)| (status, view.revision));
                let text = sg_daemon::metrics::render(&daemon, fleet).unwrap_or_else(|e| {
                    tracing::warn!("metrics: {e:#}");
                    String::new()
                });
                let _ = scrape.send(text);
            }
            _ = sweep.tick() => {
                // Snapshots past their retention go too.
                store.snapshot_tick();
                // A shared state refused (an apply that failed) is tried again.
                if let Some(Err(why)) = store.retry_fleet_view(&mut |c| daemon.apply(c)) {
                    tracing::warn!("{why}");
                }
                match daemon.sweep_sessions(store.config()) {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(freed = n, "expired sessions swept"),
                    Err(e) => tracing::warn!("sweeping sessions: {e:#}"),
                }
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
        // A fleet host publishes its bindings as applied (no-op unless
        // they changed).
        if applied {
            store.publish_bindings(daemon.addresses());
        }
    }
    notify(&[NotifyState::Stopping]);
    info!("sgd stopping; the pinned programs keep enforcing the last rules");
    Ok(())
}

/// SIGHUP: the file becomes the desired state again (as `sgctl reload`,
/// without `--discard-api-changes`: refused, and the log says why, when
/// changes made through the API would be lost); a bad file changes nothing.
fn reload(store: &mut Store, daemon: &mut Daemon, drops: &sg_daemon::drops::DropLog) {
    let stamp = NotifyState::monotonic_usec_now().ok();
    let mut states = vec![NotifyState::Reloading];
    states.extend(stamp);
    notify(&states);
    match api::handle(
        store,
        daemon,
        drops,
        api::Request::Reload {
            discard_api_changes: false,
        },
    ) {
        api::Response::Ok(_) => info!("reloaded"),
        api::Response::Error(e) => error!("reload refused, keeping the current rules: {e}"),
    }
    notify(&[NotifyState::Ready]);
}

/// Kernel records (aya-log) go to the same log as ours, through `log`.
fn forward_kernel_log(daemon: &mut Daemon) {
    let logger = match daemon.dataplane_mut().kernel_logger() {
        Ok(logger) => logger,
        Err(e) => {
            tracing::warn!("kernel log records will not be shown: {e:#}");
            return;
        }
    };
    // SAFETY: the logger owns its ring-buffer fd, which stays open and the
    // same for as long as the AsyncFd (which owns the logger) lives.
    let registered = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE)
    };
    let mut logger = match registered {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!("kernel log records will not be shown: {e}");
            return;
        }
    };
    tokio::spawn(async move {
        while let Ok(mut guard) = logger.readable_mut().await {
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
}

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!("systemd notify failed: {e}");
    }
}

/// What `--check` says of a valid file, and whether the API's state
/// (`<state_dir>/state.toml`) overrides the file's objects at start.
fn check_report(file: &std::path::Path, config: &sg_daemon::model::Config) -> String {
    let mut out = match &config.datastore {
        None => format!(
            "{}: ok ({} security groups, {} interfaces)\n",
            file.display(),
            config.groups.len(),
            config.interfaces.len()
        ),
        Some(fleet) => format!(
            "{}: ok ({} interfaces; groups, lists and snapshot policies from etcd {} under {} as host {}: \
             the bindings are checked against them at start)\n",
            file.display(),
            config.interfaces.len(),
            fleet.endpoints.join(", "),
            fleet.prefix,
            fleet.host_id
        ),
    };
    let state = config.daemon.state_dir.join(sg_daemon::store::STATE_FILE);
    if state.exists() {
        out.push_str(&format!(
            "note: {} exists: the state changed through the API wins over this file's \
             groups, rules, lists and interfaces until `sgctl reload --discard-api-changes`\n",
            state.display()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_says_when_the_api_state_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sg.toml");
        let text = format!("[daemon]\nstate_dir = {:?}\n", dir.path());
        let config = sg_daemon::config::parse(&file, &text).unwrap();
        for state in [false, true] {
            if state {
                std::fs::write(dir.path().join("state.toml"), "").unwrap();
            }
            let report = check_report(&file, &config);
            assert!(report.contains(": ok ("), "{report}");
            assert_eq!(report.contains("sgctl reload"), state, "{report}");
        }
    }
}
