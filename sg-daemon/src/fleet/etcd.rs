//! The connection to etcd, on a thread of its own with a current-thread
//! tokio runtime, so that neither the daemon's loop nor its API handlers
//! ever wait on the network except for an edit (bounded, ~3 s).
//!
//! One endpoint at a time (the next one after each failure), so that
//! [`FleetEvent::Connected`] names the member in use. A session: the
//! host's lease (the old one while it lives, else a new one), the host's
//! record under it, a full read of the prefix (or, after an outage, a
//! watch resumed where the last one stopped), then the watch, the lease's
//! keep-alives and record changes until an error; then backoff
//! (0.2 s doubling to 2 s) and the next endpoint. The lease is never
//! revoked: a restarting sgd's instances stay members until its new lease
//! takes over or the old one runs out.

use std::{
    sync::{Arc, Condvar, Mutex, mpsc as std_mpsc},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use etcd_client::{
    Certificate, Client, ConnectOptions, EventType, GetOptions, Identity, LeaseKeepAliveStream,
    LeaseKeeper, PutOptions, TlsOptions, WatchOptions, WatchResponse, WatchStream,
};
use tokio::sync::{mpsc, watch};

mod edit;

use self::edit::write;
use super::{
    CommitError, FleetEvent, FleetSettings, FleetStatus, HostRecord, Key, Layout, SharedView, Write,
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Any unary request (a read, a put, a lease grant).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// An edit from the caller's side; the thread gives up a little earlier.
const COMMIT_WAIT: Duration = Duration::from_secs(3);
const COMMIT_DEADLINE: Duration = Duration::from_millis(2800);
/// A keep-alive unanswered this long means a dead server (whatever the
/// HTTP/2 pings say), so an outage is noticed within a few seconds.
const KEEPALIVE_DEADLINE: Duration = Duration::from_secs(3);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
/// The largest answer read (a full read of the prefix, a watch message):
/// gRPC's default of 4 MiB would hold only ~25,000 rules.
const MAX_MESSAGE_BYTES: usize = 256 << 20;
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The handle to the connection thread; dropping it stops the thread (the
/// lease then runs out unless a new sgd takes over).
pub struct Fleet {
    commands: mpsc::UnboundedSender<Edit>,
    record: watch::Sender<Option<HostRecord>>,
    shared: Arc<Shared>,
}

/// What the thread and the handle share.
struct Shared {
    status: Mutex<FleetStatus>,
    /// The latest view sent (for `first_view`).
    view: Mutex<Option<SharedView>>,
    view_ready: Condvar,
}

/// An edit for the thread: `base` None is a push into an empty prefix.
struct Edit {
    base: Option<i64>,
    writes: Vec<Write>,
    reply: std_mpsc::Sender<Result<i64, CommitError>>,
}

impl Fleet {
    /// Starts the connection thread; returns at once.
    pub fn start(
        settings: FleetSettings,
        events: mpsc::UnboundedSender<FleetEvent>,
    ) -> anyhow::Result<Fleet> {
        anyhow::ensure!(!settings.endpoints.is_empty(), "no etcd endpoint");
        let mut options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            // etcd refuses pings more often than every 5 s by default
            // (--grpc-keepalive-min-time): the keep-alive deadline above
            // notices a dead server sooner.
            .with_keep_alive(Duration::from_secs(6), Duration::from_secs(3))
            // A member cut off from the others must not serve a stale
            // watch: without a leader it answers with an error instead.
            .with_require_leader(true);
        if let Some(tls) = &settings.tls {
            let ca = std::fs::read(&tls.ca_file)
                .with_context(|| format!("reading {}", tls.ca_file.display()))?;
            let mut config = TlsOptions::new().ca_certificate(Certificate::from_pem(ca));
            if let Some((cert, key)) = &tls.identity {
                let cert =
                    std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
                let key =
                    std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
                config = config.identity(Identity::from_pem(cert, key));
            }
            options = options.with_tls(config);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("the fleet connection's runtime")?;
        let shared = Arc::new(Shared {
            status: Mutex::new(FleetStatus {
                endpoints: settings.endpoints.clone(),
                prefix: settings.prefix.clone(),
                host_id: settings.host_id.clone(),
                since: unix_now(),
                ..FleetStatus::default()
            }),
            view: Mutex::new(None),
            view_ready: Condvar::new(),
        });
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (record, record_rx) = watch::channel(None);
        let connection = Connection {
            layout: Layout::new(&settings.prefix),
            settings,
            options,
            events,
            shared: shared.clone(),
            record: record_rx,
            record_closed: false,
            view: None,
            next_revision: 0,
            lease: None,
            reported_down: false,
        };
        std::thread::Builder::new()
            .name("sg-fleet".into())
            .spawn(move || runtime.block_on(connection.run(commands_rx)))
            .context("starting the fleet connection thread")?;
        Ok(Fleet {
            commands,
            record,
            shared,
        })
    }

    /// Blocks up to `timeout` for the first full read (None if not
    /// connected by then); the latest view when there is one.
    pub fn first_view(&self, timeout: Duration) -> Option<SharedView> {
        let view = self.shared.view.lock().unwrap();
        let (view, _) = self
            .shared
            .view_ready
            .wait_timeout_while(view, timeout, |v| v.is_none())
            .unwrap();
        view.clone()
    }

    /// One transaction: the writes and the version key, if the version key
    /// is still at `base_version`; the new revision.
    pub fn commit(&self, base_version: i64, writes: Vec<Write>) -> Result<i64, CommitError> {
        self.edit(Some(base_version), writes)
    }

    /// Like `commit`, but only into a prefix without shared objects.
    pub fn push(&self, writes: Vec<Write>) -> Result<i64, CommitError> {
        self.edit(None, writes)
    }

    fn edit(&self, base: Option<i64>, writes: Vec<Write>) -> Result<i64, CommitError> {
        {
            let status = self.shared.status.lock().unwrap();
            if !status.connected {
                let why = status.last_error.as_deref().unwrap_or("not connected yet");
                return Err(CommitError::Unreachable(why.to_owned()));
            }
        }
        let (reply, answer) = std_mpsc::channel();
        let sent = self.commands.send(Edit {
            base,
            writes,
            reply,
        });
        if sent.is_err() {
            return Err(CommitError::Unreachable(
                "the connection has stopped".into(),
            ));
        }
        // Blocking on a std channel works from any thread, async or not.
        answer.recv_timeout(COMMIT_WAIT).unwrap_or_else(|_| {
            Err(CommitError::Unreachable(format!(
                "no answer within {} s",
                COMMIT_WAIT.as_secs()
            )))
        })
    }

    /// This host's record, under its lease: now if connected, and again
    /// after every reconnect or new lease; the latest wins.
    pub fn publish(&self, record: HostRecord) {
        self.record.send_replace(Some(record));
    }

    pub fn status(&self) -> FleetStatus {
        self.shared.status.lock().unwrap().clone()
    }
}

/// The thread's state.
struct Connection {
    settings: FleetSettings,
    layout: Layout,
    options: ConnectOptions,
    events: mpsc::UnboundedSender<FleetEvent>,
    shared: Arc<Shared>,
    record: watch::Receiver<Option<HostRecord>>,
    record_closed: bool,
    /// The view as last sent; kept through outages to resume from.
    view: Option<SharedView>,
    /// Where a resumed watch starts: after the last event applied (not the
    /// header's revision, which can run ahead of a partial batch).
    next_revision: i64,
    /// The host's lease, kept across reconnects while it lives.
    lease: Option<i64>,
    /// A Disconnected event went out for the current outage.
    reported_down: bool,
}

impl Connection {
    /// Sessions and edits until the handle is dropped.
    async fn run(mut self, mut edits: mpsc::UnboundedReceiver<Edit>) {
        // The session's client, for edits; None while disconnected.
        let client = Mutex::new(None);
        let layout = self.layout.clone();
        let host_id = self.settings.host_id.clone();
        let edits_loop = async {
            while let Some(edit) = edits.recv().await {
                let current = client.lock().unwrap().clone();
                let result = match current {
                    None => Err(CommitError::Unreachable("not connected".into())),
                    Some(mut c) => {
                        let write = write(&mut c, &layout, &host_id, edit.base, edit.writes);
                        match tokio::time::timeout(COMMIT_DEADLINE, write).await {
                            Ok(result) => result,
                            // Ambiguous (it may yet be applied): the
                            // view tells, its version moves if it was.
                            Err(_) => Err(CommitError::Unreachable(
                                "no answer from etcd in time (the edit may not be written)".into(),
                            )),
                        }
                    }
                };
                let _ = edit.reply.send(result);
            }
        };
        // Both in this one task: when the handle is gone the edits loop
        // ends, and with it the sessions (the runtime is then dropped).
        tokio::select! {
            _ = edits_loop => {}
            _ = self.sessions(&client) => {}
        }
    }

    async fn sessions(&mut self, client: &Mutex<Option<Client>>) {
        let mut backoff = BACKOFF_MIN;
        let mut index = 0;
        // A member that answered went away: the next one is tried at once,
        // before the host calls it an outage (a cluster that lost one
        // member is no outage).
        let mut failing_over = false;
        loop {
            let endpoint = self.settings.endpoints[index % self.settings.endpoints.len()].clone();
            let mut connected = false;
            let error = self.session(&endpoint, client, &mut connected).await;
            *client.lock().unwrap() = None;
            let error = format!("{endpoint}: {error}");
            if connected && !failing_over && self.settings.endpoints.len() > 1 {
                tracing::info!("fleet: {error}; trying the next member");
                failing_over = true;
                index += 1;
                continue;
            }
            failing_over = false;
            {
                let mut status = self.shared.status.lock().unwrap();
                if status.connected {
                    status.since = unix_now();
                }
                status.connected = false;
                status.last_error = Some(error.clone());
            }
            // One event an outage, not one every failed attempt.
            if connected || !self.reported_down {
                tracing::warn!("fleet: etcd unreachable, the rules in force stay: {error}");
                self.reported_down = true;
                let _ = self.events.send(FleetEvent::Disconnected { error });
            }
            if connected {
                backoff = BACKOFF_MIN;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
            index += 1;
        }
    }

    /// One session on `endpoint`, until it fails.
    async fn session(
        &mut self,
        endpoint: &str,
        slot: &Mutex<Option<Client>>,
        connected: &mut bool,
    ) -> String {
        let connect = Client::connect([endpoint], Some(self.options.clone()));
        let mut client = match within(CONNECT_TIMEOUT, connect).await {
            Ok(client) => client,
            Err(e) => return e,
        };
        // The connection is lazy: the lease is the first answer.
        let (mut keeper, mut keepalives) = match self.lease(&mut client).await {
            Ok(pair) => pair,
            Err(e) => return e,
        };
        *connected = true;
        self.reported_down = false;
        *slot.lock().unwrap() = Some(client.clone());
        {
            let mut status = self.shared.status.lock().unwrap();
            status.connected = true;
            status.since = unix_now();
            status.last_error = None;
        }
        tracing::info!("fleet: connected to etcd at {endpoint}");
        let _ = self.events.send(FleetEvent::Connected {
            endpoint: endpoint.to_owned(),
        });
        match self
            .session_loop(&mut client, &mut keeper, &mut keepalives)
            .await
        {
            Ok(never) => match never {},
            Err(e) => e,
        }
    }

    async fn session_loop(
        &mut self,
        client: &mut Client,
        keeper: &mut LeaseKeeper,
        keepalives: &mut LeaseKeepAliveStream,
    ) -> Result<std::convert::Infallible, String> {
        self.put_record(client).await?;
        let mut stream = self.watch(client).await?;
        // ttl/3, but at least every 2 s: the keep-alives are also how a
        // dead server is noticed.
        let period = Duration::from_millis(self.settings.lease_ttl_secs.max(1) * 1000 / 3)
            .clamp(Duration::from_millis(200), Duration::from_secs(2));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut unanswered: Option<Instant> = None;
        loop {
            tokio::select! {
                message = stream.message() => {
                    let response = message.map_err(|e| e.to_string())?.ok_or("the watch ended")?;
                    if self.on_watch(response)? {
                        tracing::info!("fleet: the history to resume from was compacted: a full read");
                        self.view = None;
                        stream = self.watch(client).await?;
                    }
                }
                _ = tick.tick() => {
                    if unanswered.is_some_and(|t| t.elapsed() > KEEPALIVE_DEADLINE) {
                        return Err("no answer to the lease keep-alive".into());
                    }
                    keeper.keep_alive().await.map_err(|e| e.to_string())?;
                    unanswered.get_or_insert_with(Instant::now);
                }
                answer = keepalives.message() => {
                    let answer = answer.map_err(|e| e.to_string())?.ok_or("the lease keep-alive ended")?;
                    unanswered = None;
                    self.heard(answer.header().map(|h| h.revision()));
                    if answer.ttl() <= 0 {
                        // Expired (a long outage): a new lease, the record again.
                        self.lease = None;
                        (*keeper, *keepalives) = self.lease(client).await?;
                        self.put_record(client).await?;
                    }
                }
                changed = self.record.changed(), if !self.record_closed => {
                    match changed {
                        Ok(()) => self.put_record(client).await?,
                        Err(_) => self.record_closed = true,
                    }
                }
            }
        }
    }

    /// Keep-alives for the host's lease: the old one if it still lives,
    /// else a new one.
    async fn lease(
        &mut self,
        client: &mut Client,
    ) -> Result<(LeaseKeeper, LeaseKeepAliveStream), String> {
        if let Some(id) = self.lease {
            match tokio::time::timeout(REQUEST_TIMEOUT, client.lease_keep_alive(id)).await {
                Err(_) => return Err("no answer in time".into()),
                Ok(Ok(pair)) => return Ok(pair),
                // "lease not found": it ran out meanwhile.
                Ok(Err(etcd_client::Error::LeaseKeepAliveError(_))) => self.lease = None,
                Ok(Err(e)) => return Err(e.to_string()),
            }
        }
        let ttl = self.settings.lease_ttl_secs.max(1) as i64;
        let grant = within(REQUEST_TIMEOUT, client.lease_grant(ttl, None)).await?;
        self.heard(grant.header().map(|h| h.revision()));
        tracing::info!(
            "fleet: lease {:x} ({ttl} s) for host {}",
            grant.id(),
            self.settings.host_id
        );
        self.lease = Some(grant.id());
        within(REQUEST_TIMEOUT, client.lease_keep_alive(grant.id())).await
    }

    async fn put_record(&mut self, client: &mut Client) -> Result<(), String> {
        let (Some(record), Some(lease)) = (self.record.borrow_and_update().clone(), self.lease)
        else {
            return Ok(());
        };
        let key = self.layout.key(&Key::Host(self.settings.host_id.clone()));
        let value = serde_json::to_string(&record).expect("records serialise");
        let options = PutOptions::new().with_lease(lease);
        let put = within(REQUEST_TIMEOUT, client.put(key, value, Some(options))).await?;
        self.heard(put.header().map(|h| h.revision()));
        Ok(())
    }

    /// A watch of the prefix: resumed after the last event applied, or
    /// from a full read (sent as a view) when there is no view.
    async fn watch(&mut self, client: &mut Client) -> Result<WatchStream, String> {
        if self.view.is_some() && self.store_replaced(client).await? {
            self.view = None;
        }
        if self.view.is_none() {
            self.full_read(client).await?;
        }
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(self.next_revision);
        let mut watcher = client
            .watch_client()
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
        within(
            REQUEST_TIMEOUT,
            watcher.watch(self.layout.root(), Some(options)),
        )
        .await
    }

    /// Whether the store is another than the view's: a new cluster (etcd
    /// restored from a backup, or rebuilt), or one whose revision went
    /// back. Resuming the watch there would wait for revisions it may
    /// never reach: a full read instead.
    async fn store_replaced(&mut self, client: &mut Client) -> Result<bool, String> {
        let options = GetOptions::new().with_keys_only().with_limit(1);
        let read = within(
            REQUEST_TIMEOUT,
            client.get(self.layout.key(&crate::fleet::Key::Version), Some(options)),
        )
        .await?;
        let Some(header) = read.header() else {
            return Ok(false);
        };
        let view = self.view.as_ref().map_or(0, |v| v.cluster_id);
        let replaced = header.cluster_id() != view || header.revision() + 1 < self.next_revision;
        if replaced {
            tracing::warn!(
                "fleet: etcd is another store than the one last read (cluster {:x} at revision {}, was {view:x} past {}): reading it whole",
                header.cluster_id(),
                header.revision(),
                self.next_revision - 1
            );
        }
        Ok(replaced)
    }

    async fn full_read(&mut self, client: &mut Client) -> Result<(), String> {
        let options = GetOptions::new().with_prefix();
        let mut kv = client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
        let read = within(REQUEST_TIMEOUT, kv.get(self.layout.root(), Some(options))).await?;
        let revision = read.header().map_or(0, |h| h.revision());
        self.heard(Some(revision));
        let pairs = read
            .kvs()
            .iter()
            .map(|kv| (kv.key(), kv.value(), kv.mod_revision()));
        self.next_revision = revision + 1;
        let mut view = SharedView::from_pairs(&self.layout, revision, pairs);
        view.cluster_id = read.header().map_or(0, |h| h.cluster_id());
        self.send_view(view);
        Ok(())
    }

    /// A watch message applied; true when the watch must start over from
    /// a full read (its start revision was compacted).
    fn on_watch(&mut self, response: WatchResponse) -> Result<bool, String> {
        let revision = response.header().map(|h| h.revision());
        self.heard(revision);
        if response.compact_revision() > 0 {
            return Ok(true);
        }
        if response.canceled() {
            return Err(format!(
                "the watch was canceled: {}",
                response.cancel_reason()
            ));
        }
        if response.events().is_empty() {
            return Ok(false); // created, or progress
        }
        let Some(mut view) = self.view.take() else {
            return Ok(true);
        };
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            match event.event_type() {
                EventType::Put => view.put(&self.layout, kv.key(), kv.value(), kv.mod_revision()),
                EventType::Delete => view.delete(&self.layout, kv.key()),
            }
            self.next_revision = self.next_revision.max(kv.mod_revision() + 1);
        }
        view.revision = revision.unwrap_or(self.next_revision - 1);
        self.send_view(view);
        Ok(false)
    }

    fn send_view(&mut self, view: SharedView) {
        self.shared.status.lock().unwrap().revision = view.revision;
        *self.shared.view.lock().unwrap() = Some(view.clone());
        self.shared.view_ready.notify_all();
        let _ = self.events.send(FleetEvent::View(view.clone()));
        self.view = Some(view);
    }

    /// The store's revision as an answer told it.
    fn heard(&self, revision: Option<i64>) {
        if let Some(revision) = revision {
            let mut status = self.shared.status.lock().unwrap();
            status.store_revision = status.store_revision.max(revision);
        }
    }
}

/// A request with a deadline, its error as text.
async fn within<T>(
    limit: Duration,
    request: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, request).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
