//! The daemon's end of the socket: binding it, checking each peer's
//! credentials, reading request lines and writing the answers of the main
//! loop back; at most `MAX_CLIENTS` connections at once, each closed when
//! idle for `IDLE_TIMEOUT`.

use std::{
    io,
    os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, bail};
use tokio::{
    io::{AsyncBufRead, AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream},
    sync::{Semaphore, mpsc, oneshot},
};
use tracing::{debug, info, warn};

use super::{MAX_REQUEST_BYTES, Request, Response, ResponseLine, VERSION, parse_request};

/// A connection with no request for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections served at once; more are refused with an error line.
pub const MAX_CLIENTS: usize = 64;

/// Who is served, and for how long and how many (tests shorten them).
#[derive(Debug, Clone, Copy)]
struct Limits {
    uid: u32,
    idle: Duration,
    clients: usize,
}

/// A request on its way to the main loop, and where its answer goes.
#[derive(Debug)]
pub struct Call {
    pub request: Request,
    pub reply: oneshot::Sender<Response>,
}

/// A bound control socket; the socket file is removed when it is dropped
/// (if it is still this socket's, not a successor's).
#[derive(Debug)]
pub struct Listener {
    listener: std::os::unix::net::UnixListener,
    path: PathBuf,
    /// Device and inode of the socket file we created.
    id: (u64, u64),
}

/// Binds the control socket at `path`: creates its directory (mode 0755),
/// removes a stale socket left by a daemon that is gone, refuses to take
/// over one another daemon still answers on, and makes the socket mode
/// 0600. Needs no runtime, so `sgd` can bind before it says `READY=1`.
pub fn bind(path: &Path) -> anyhow::Result<Listener> {
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => bail!(
            "another sgd answers on {}; give each sgd its own runtime_dir",
            path.display()
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(_) => match std::fs::remove_file(path) {
            Ok(()) => info!(socket = %path.display(), "removed a stale control socket"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        },
    }
    let listener = std::os::unix::net::UnixListener::bind(path)
        .with_context(|| format!("binding the control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 0600 {}", path.display()))?;
    listener.set_nonblocking(true)?;
    let meta = std::fs::metadata(path)?;
    Ok(Listener {
        listener,
        path: path.to_owned(),
        id: (meta.dev(), meta.ino()),
    })
}

/// Binds `socket` and serves it (see [`bind`] and [`Listener::serve`]).
pub async fn serve(socket: PathBuf, tx: mpsc::Sender<Call>) -> anyhow::Result<()> {
    bind(&socket)?.serve(tx).await
}

impl Listener {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts connections for ever, each on its own task: only root's
    /// (SO_PEERCRED) are served, every request is sent to `tx` as a
    /// [`Call`] and its reply written back.
    pub async fn serve(self, tx: mpsc::Sender<Call>) -> anyhow::Result<()> {
        let limits = Limits {
            uid: 0,
            idle: IDLE_TIMEOUT,
            clients: MAX_CLIENTS,
        };
        self.serve_with(tx, limits).await
    }

    /// [`Listener::serve`] for peers of uid `allowed` (tests).
    #[cfg(test)]
    async fn serve_uid(self, tx: mpsc::Sender<Call>, allowed: u32) -> anyhow::Result<()> {
        let limits = Limits {
            uid: allowed,
            idle: IDLE_TIMEOUT,
            clients: MAX_CLIENTS,
        };
        self.serve_with(tx, limits).await
    }

    /// Serves peers of `limits.uid`, at most `limits.clients` at once,
    /// each until it is idle for `limits.idle`.
    async fn serve_with(self, tx: mpsc::Sender<Call>, limits: Limits) -> anyhow::Result<()> {
        let listener = UnixListener::from_std(self.listener.try_clone()?)?;
        info!(socket = %self.path.display(), "control API listening");
        let slots = Arc::new(Semaphore::new(limits.clients));
        loop {
            match listener.accept().await {
                Ok((stream, _)) => match slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        let tx = tx.clone();
                        tokio::spawn(async move {
                            connection(stream, tx, limits).await;
                            drop(slot);
                        });
                    }
                    Err(_) => {
                        warn!(
                            max = limits.clients,
                            "control socket: refused a client over the limit"
                        );
                        let refusal = Response::Error(format!(
                            "sgd serves at most {} control connections at once; close one (an idle one is closed after {:?}) and try again",
                            limits.clients, limits.idle
                        ));
                        tokio::spawn(async move {
                            let (_, mut write) = stream.into_split();
                            let _ = tokio::time::timeout(
                                Duration::from_secs(1),
                                write_response(&mut write, refusal),
                            )
                            .await;
                        });
                    }
                },
                Err(e) => {
                    // Out of file descriptors and the like: wait, go on.
                    warn!("control socket accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::metadata(&self.path)
            && (meta.dev(), meta.ino()) == self.id
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

async fn connection(stream: UnixStream, tx: mpsc::Sender<Call>, limits: Limits) {
    let allowed = limits.uid;
    let cred = match stream.peer_cred() {
        Ok(c) => c,
        Err(e) => {
            warn!("control socket: cannot read the peer's credentials: {e}");
            return;
        }
    };
    let (read, mut write) = stream.into_split();
    if cred.uid() != allowed {
        warn!(uid = cred.uid(), pid = ?cred.pid(), "control socket: refused a non-root peer");
        let refusal = Response::Error(format!(
            "the sgd control API is for root only (your uid is {})",
            cred.uid()
        ));
        let _ = write_response(&mut write, refusal).await;
        return;
    }
    let mut reader = BufReader::new(read);
    loop {
        let read = tokio::time::timeout(
            limits.idle,
            read_line_limited(&mut reader, MAX_REQUEST_BYTES),
        );
        let line = match read.await {
            Err(_) => {
                debug!(pid = ?cred.pid(), "control socket: closed an idle connection");
                let idle = Response::Error(format!(
                    "no request for {:?}: sgd closed the connection",
                    limits.idle
                ));
                let _ = write_response(&mut write, idle).await;
                return;
            }
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                let _ = write_response(&mut write, Response::Error(e.to_string())).await;
                return;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let response = match parse_request(&line) {
            Err(e) => Response::Error(e),
            Ok(request) => {
                debug!(pid = ?cred.pid(), verb = request.verb(), "control request");
                let (reply, answer) = oneshot::channel();
                if tx.send(Call { request, reply }).await.is_err() {
                    Response::Error("sgd is stopping".into())
                } else {
                    answer
                        .await
                        .unwrap_or_else(|_| Response::Error("sgd dropped the request".into()))
                }
            }
        };
        if write_response(&mut write, response).await.is_err() {
            return;
        }
    }
}

/// One line, without its newline; `None` at the end of the stream.
async fn read_line_limited<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = (&mut *reader)
        .take(max as u64 + 1)
        .read_until(b'\n', &mut buf)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if buf.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("request longer than {max} bytes"),
        ));
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "request is not UTF-8"))
}

async fn write_response<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    response: Response,
) -> io::Result<()> {
    let mut text = serde_json::to_string(&ResponseLine {
        v: VERSION,
        response,
    })
    .map_err(io::Error::other)?;
    text.push('\n');
    w.write_all(text.as_bytes()).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::call;

    #[tokio::test]
    async fn the_socket_serves_its_uid_and_refuses_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/sgd.sock");
        let me = nix::unistd::geteuid().as_raw();
        for (allowed, served) in [(me, true), (me.wrapping_add(1), false)] {
            let listener = bind(&path).unwrap();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            let (tx, mut rx) = mpsc::channel::<Call>(4);
            let server = tokio::spawn(listener.serve_uid(tx, allowed));
            tokio::spawn(async move {
                while let Some(call) = rx.recv().await {
                    let _ = call
                        .reply
                        .send(Response::Error(format!("echo {}", call.request.verb())));
                }
            });
            let p = path.clone();
            let answer = tokio::task::spawn_blocking(move || {
                call(&p, &Request::Counters, Duration::from_secs(5))
            })
            .await
            .unwrap()
            .unwrap();
            let Response::Error(text) = answer else {
                panic!()
            };
            if served {
                assert_eq!(text, "echo Counters");
            } else {
                assert!(text.contains("root only"), "{text}");
            }
            server.abort();
            let _ = server.await;
            // The listener is gone with its task, and so is the socket file.
            assert!(!path.exists());
        }
        // A stale socket (no one listening) is replaced.
        let stale = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(stale);
        let _listener = bind(&path).unwrap();
        // A live one is not taken over.
        let e = bind(&path).unwrap_err().to_string();
        assert!(e.contains("another sgd"), "{e}");
    }

    /// An idle connection is closed with a word, and clients over the
    /// limit are refused with one, while the others are still served.
    #[tokio::test]
    async fn idle_connections_are_closed_and_clients_are_capped() {
        use std::io::{BufRead as _, BufReader as StdReader, Write as _};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sgd.sock");
        let listener = bind(&path).unwrap();
        let (tx, mut rx) = mpsc::channel::<Call>(4);
        let limits = Limits {
            uid: nix::unistd::geteuid().as_raw(),
            idle: Duration::from_millis(300),
            clients: 2,
        };
        let server = tokio::spawn(listener.serve_with(tx, limits));
        tokio::spawn(async move {
            while let Some(call) = rx.recv().await {
                let _ = call.reply.send(Response::Error("echo".into()));
            }
        });
        let p = path.clone();
        tokio::task::spawn_blocking(move || {
            let connect = || {
                let s = std::os::unix::net::UnixStream::connect(&p).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                s
            };
            let line = |s: &std::os::unix::net::UnixStream| {
                let mut text = String::new();
                StdReader::new(s).read_line(&mut text).unwrap();
                text
            };
            let request = format!(
                "{}\n",
                serde_json::to_string(&crate::api::RequestLine {
                    v: VERSION,
                    request: Request::Counters,
                })
                .unwrap()
            );
            let (mut a, b) = (connect(), connect());
            std::thread::sleep(Duration::from_millis(100));
            // A third client is refused at once, with a reason.
            let third = line(&connect());
            assert!(third.contains("at most 2 control connections"), "{third}");
            // The first two are served, until they are idle.
            a.write_all(request.as_bytes()).unwrap();
            assert!(line(&a).contains("echo"));
            let idle = line(&b);
            assert!(idle.contains("no request for 300ms"), "{idle}");
            assert_eq!(line(&b), "", "the idle connection is closed");
            // Its place is free again.
            let mut c = connect();
            c.write_all(request.as_bytes()).unwrap();
            assert!(line(&c).contains("echo"));
        })
        .await
        .unwrap();
        server.abort();
    }
}
