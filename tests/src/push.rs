//! A server that pushes a line to each connected client at a fixed pace,
//! unprompted, and a client that counts the lines it receives (and can
//! talk back): for tests of traffic the protected side sends on its own,
//! such as a session that a drop rule must keep ended.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::conn::{POLL, Worker, connect, is_timeout, listen};
use crate::netns::Netns;

/// A TCP server in a namespace that writes `line <n>\n` to every client
/// each `every`, and counts what it writes and what clients send it.
/// Stops when dropped.
#[derive(Debug)]
pub struct Pusher {
    addr: SocketAddr,
    written: Arc<AtomicU64>,
    heard: Arc<AtomicU64>,
    _worker: Worker,
}

impl Pusher {
    /// Listens on `addr` in `ns` and pushes to every client each `every`.
    pub fn start(ns: &Netns, addr: SocketAddr, every: Duration) -> Result<Pusher> {
        let listener = listen(ns, addr)?;
        let addr = listener.local_addr()?;
        let (written, heard) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let counters = (Arc::clone(&written), Arc::clone(&heard));
        let worker = Worker::spawn(format!("pusher {addr}"), move |stop| {
            let mut conns = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (stop, written, heard) = (
                            Arc::clone(&stop),
                            Arc::clone(&counters.0),
                            Arc::clone(&counters.1),
                        );
                        conns.push(thread::spawn(move || {
                            push(stream, every, &stop, &written, &heard)
                        }));
                    }
                    Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        Ok(Pusher {
            addr,
            written,
            heard,
            _worker: worker,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Lines handed to the kernel so far (whether or not they got out).
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Bytes received from clients so far.
    pub fn heard(&self) -> u64 {
        self.heard.load(Ordering::Relaxed)
    }
}

/// Writes a line each `every` (reading what the client sends in between)
/// until `stop`, or the connection fails.
fn push(
    mut stream: TcpStream,
    every: Duration,
    stop: &AtomicBool,
    written: &AtomicU64,
    heard: &AtomicU64,
) {
    if stream.set_write_timeout(Some(POLL)).is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let next = Instant::now() + every;
        match stream.write_all(format!("line {n}\n").as_bytes()) {
            Ok(()) => {
                n += 1;
                written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) if is_timeout(&e) => {}
            Err(_) => return,
        }
        // Read until the next line is due.
        while let Some(left) = next.checked_duration_since(Instant::now()) {
            if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
                break;
            }
            match stream.read(&mut buf) {
                Ok(0) => return,
                Ok(got) => {
                    heard.fetch_add(got as u64, Ordering::Relaxed);
                }
                Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }
}

/// What a [`PushClient`] has received.
#[derive(Debug, Default)]
struct Received {
    lines: u64,
    last: Option<Instant>,
}

/// A client of a [`Pusher`]: counts the lines that arrive, when the last
/// one did, and can send bytes back. Stops when dropped.
#[derive(Debug)]
pub struct PushClient {
    stream: TcpStream,
    received: Arc<Mutex<Received>>,
    _worker: Worker,
}

impl PushClient {
    /// Connects from `ns` to the pusher at `dst`.
    pub fn connect(ns: &Netns, dst: SocketAddr) -> Result<PushClient> {
        let stream = connect(ns, None, dst, Duration::from_secs(2))
            .with_context(|| format!("TCP connect from netns {} to {dst}", ns.name()))?;
        stream.set_read_timeout(Some(POLL))?;
        let mut reader = stream.try_clone()?;
        let received = Arc::new(Mutex::new(Received::default()));
        let into = Arc::clone(&received);
        let worker = Worker::spawn(format!("push client {dst}"), move |stop| {
            let mut buf = [0u8; 4096];
            while !stop.load(Ordering::Relaxed) {
                match reader.read(&mut buf) {
                    Ok(0) => return,
                    Ok(got) => {
                        let lines = buf[..got].iter().filter(|b| **b == b'\n').count();
                        let mut r = into.lock().unwrap();
                        r.lines += lines as u64;
                        r.last = Some(Instant::now());
                    }
                    Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return,
                }
            }
        });
        Ok(PushClient {
            stream,
            received,
            _worker: worker,
        })
    }

    /// Lines received so far.
    pub fn lines(&self) -> u64 {
        self.received.lock().unwrap().lines
    }

    /// When the last line arrived.
    pub fn last_line_at(&self) -> Option<Instant> {
        self.received.lock().unwrap().last
    }

    /// Waits until `n` lines have arrived in all; false after `timeout`.
    pub fn wait_for(&self, n: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.lines() < n {
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(POLL);
        }
        true
    }

    /// The lines that arrive later than `grace` after `since`, watched for
    /// `watch` after that: 0 for a connection cut off at `since`.
    pub fn lines_later_than(&self, since: Instant, grace: Duration, watch: Duration) -> u64 {
        thread::sleep((since + grace).saturating_duration_since(Instant::now()));
        let before = self.lines();
        thread::sleep(watch);
        self.lines() - before
    }

    /// Sends `bytes` to the pusher (they stay queued if the path drops
    /// them).
    pub fn send(&self, bytes: &[u8]) -> Result<()> {
        (&self.stream).write_all(bytes)?;
        Ok(())
    }

    /// The connection's local address (the source of its packets).
    pub fn local_addr(&self) -> SocketAddr {
        self.stream
            .local_addr()
            .expect("a connected socket has a local address")
    }
}
