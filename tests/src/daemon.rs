//! Running `sgd` inside a namespace the way systemd runs it: in the
//! foreground, with a `NOTIFY_SOCKET` to say when it is ready, SIGHUP to
//! reload and SIGTERM to stop.

use std::fs::{self, File};
use std::io::ErrorKind;
use std::ops::{Deref, DerefMut};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::config::{Group, groups_on};
use crate::netns::{Netns, SERVER_IF, run};

/// How long sgd may take to send `READY=1`, at start and after a reload.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How long sgd may take to exit after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// How often waits look at whether the daemon is still alive.
const POLL: Duration = Duration::from_millis(10);

/// The sgd binary the tests run: `$SGD_BIN` if set, else `sgd` in the debug
/// directory of `$CARGO_TARGET_DIR` or of the workspace's `target`.
///
/// Panics if there is none, since every test that needs it would fail.
pub fn sgd_path() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = match std::env::var_os("SGD_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(|dir| workspace.join(dir))
            .unwrap_or_else(|| workspace.join("target"))
            .join("debug/sgd"),
    };
    assert!(
        path.is_file(),
        "no sgd at {}: build it first with `cargo build -p sg-daemon` or run `cargo xtask test` \
         (or name a binary in SGD_BIN)",
        path.display()
    );
    path.canonicalize().unwrap_or(path)
}

/// The sgd built with the test-only map layout (`cargo build -p sg-daemon
/// --features layout-test`, which `cargo xtask test` copies to
/// `debug/sgd-layout-test`): `$SGD_LAYOUT_TEST_BIN` if set, else
/// `sgd-layout-test` next to [`sgd_path`]. For the tests of upgrades
/// between map layouts.
///
/// Panics if there is none: those tests must not pass without it.
pub fn layout_test_sgd_path() -> PathBuf {
    let path = std::env::var_os("SGD_LAYOUT_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| sgd_path().with_file_name("sgd-layout-test"));
    assert!(
        path.is_file(),
        "no test-layout sgd at {}: run `cargo xtask test`, or build it with `cargo build -p \
         sg-daemon --bin sgd --features layout-test`, copy debug/sgd to debug/sgd-layout-test \
         and rebuild the normal sgd (or name it in SGD_LAYOUT_TEST_BIN)",
        path.display()
    );
    path.canonicalize().unwrap_or(path)
}

/// Validates `config_toml` with `sgd --config FILE --check` and returns
/// whether it passed and what sgd printed (stdout, then stderr).
///
/// The check runs in a throwaway namespace: it should touch nothing, and if
/// a broken build did, the damage stays out of the host's network.
pub fn sgd_check(config_toml: &str) -> (bool, String) {
    let dir = tempfile::Builder::new()
        .prefix("sgd-check-")
        .tempdir()
        .expect("create a temp dir");
    let config = dir.path().join("sg.toml");
    fs::write(&config, config_toml).expect("write the config");
    let ns = Netns::new("check").expect("create a netns for sgd --check");
    let out = Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .arg(sgd_path())
        .arg("--config")
        .arg(&config)
        .arg("--check")
        .stdin(Stdio::null())
        .output()
        .expect("run sgd --check");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// A running daemon, stopped (SIGTERM, then SIGKILL) when dropped.
///
/// Its config file, log and notify socket live in a temporary directory that
/// the value owns, so they are there until the value is dropped, including
/// after [`Sgd::stop`]. When a test panics, dropping the value prints the log.
#[derive(Debug)]
pub struct Sgd {
    child: Child,
    netns: String,
    config: PathBuf,
    notify: UnixDatagram,
    dir: TempDir,
}

impl Sgd {
    /// Starts [`sgd_path`] in `ns` with `config_toml` and waits for `READY=1`.
    pub fn start(ns: &Netns, config_toml: &str) -> Result<Sgd> {
        Sgd::start_binary(&sgd_path(), ns, config_toml)
    }

    /// Like [`Sgd::start`] with another binary that speaks the same protocol,
    /// such as an older sgd for an upgrade test.
    ///
    /// Fails, with the daemon's log in the message, if it exits or stays
    /// silent for [`READY_TIMEOUT`] before sending `READY=1`.
    pub fn start_binary(binary: &Path, ns: &Netns, config_toml: &str) -> Result<Sgd> {
        let dir = tempfile::Builder::new().prefix("sgd-").tempdir()?;
        let config = dir.path().join("sg.toml");
        fs::write(&config, config_toml)?;
        // A path, not an abstract socket: abstract names are per network
        // namespace, paths are not.
        let notify_path = dir.path().join("notify");
        let notify = UnixDatagram::bind(&notify_path)?;
        notify.set_read_timeout(Some(POLL))?;
        let log = File::create(dir.path().join("sgd.log"))?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns.name()])
            .arg(binary)
            .arg("--config")
            .arg(&config)
            .env("NOTIFY_SOCKET", &notify_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn {} in netns {}", binary.display(), ns.name()))?;
        let mut sgd = Sgd {
            child,
            netns: ns.name().to_owned(),
            config,
            notify,
            dir,
        };
        sgd.wait_notify(&["READY=1"])?;
        Ok(sgd)
    }

    /// The daemon's process id (`ip netns exec` replaces itself with it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the daemon has written to stdout and stderr so far.
    pub fn log(&self) -> String {
        let bytes = fs::read(self.dir.path().join("sgd.log")).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The daemon's config file.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Replaces the config file, atomically, so that a daemon reading it at
    /// that moment sees the old file or the new one. Takes effect at the next
    /// [`Sgd::reload`].
    pub fn write_config(&self, config_toml: &str) -> Result<()> {
        let new = self.dir.path().join("sg.toml.new");
        fs::write(&new, config_toml)?;
        fs::rename(&new, &self.config)?;
        Ok(())
    }

    /// Sends SIGHUP and waits for `RELOADING=1` and then `READY=1`.
    pub fn reload(&mut self) -> Result<()> {
        // Leftover messages (a second READY=1, STATUS=...) must not be
        // mistaken for the answer to this reload.
        self.notify.set_nonblocking(true)?;
        while self.notify.recv(&mut [0u8; 4096]).is_ok() {}
        self.notify.set_nonblocking(false)?;
        self.signal(Signal::SIGHUP)?;
        self.wait_notify(&["RELOADING=1", "READY=1"])
    }

    /// Sends SIGTERM and waits up to [`STOP_TIMEOUT`] for the daemon to exit,
    /// then kills it; the latter is an error, since a daemon must stop on
    /// SIGTERM. Returns the exit status; does nothing but return it if the
    /// daemon has already exited.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        self.signal(Signal::SIGTERM)?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            thread::sleep(POLL);
        }
        self.child.kill()?;
        let status = self.child.wait()?;
        bail!(
            "sgd in netns {} ignored SIGTERM for {STOP_TIMEOUT:?} and was killed ({status}); its log:\n{}",
            self.netns,
            self.log()
        )
    }

    /// Runs `sgd --config FILE --detach` on this daemon's file, in its
    /// namespace: sg off every interface for good. Fails with sgd's output
    /// if it fails.
    pub fn detach(&self) -> Result<()> {
        run(Command::new("ip")
            .args(["netns", "exec", &self.netns])
            .arg(sgd_path())
            .arg("--config")
            .arg(&self.config)
            .arg("--detach"))?;
        Ok(())
    }

    fn signal(&self, signal: Signal) -> Result<()> {
        kill(Pid::from_raw(self.child.id() as i32), signal)
            .with_context(|| format!("send {signal} to sgd (pid {})", self.child.id()))
    }

    /// Waits for the notify messages `expected`, in order (other messages in
    /// between are ignored), while the daemon is alive and for at most
    /// [`READY_TIMEOUT`].
    fn wait_notify(&mut self, expected: &[&str]) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut seen = 0;
        let mut buf = [0u8; 4096];
        loop {
            match self.notify.recv(&mut buf) {
                Ok(n) => {
                    for line in String::from_utf8_lossy(&buf[..n]).lines() {
                        if line == expected[seen] {
                            seen += 1;
                            if seen == expected.len() {
                                return Ok(());
                            }
                        }
                    }
                }
                // A signal to this process (EINTR) is no answer either.
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e).context("receive from the notify socket"),
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "sgd in netns {} exited ({status}) before sending {}; its log:\n{}",
                    self.netns,
                    expected[seen],
                    self.log()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "sgd in netns {} sent no {} within {READY_TIMEOUT:?}; its log:\n{}",
                    self.netns,
                    expected[seen],
                    self.log()
                );
            }
        }
    }
}

impl Drop for Sgd {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "--- log of sgd in netns {} ---\n{}--- end of log ---",
                self.netns,
                self.log()
            );
        }
        if let Err(e) = self.stop() {
            eprintln!("sg-tests: {e:#}");
        }
    }
}

/// `sgd` on private directories of its own: how every namespace test runs
/// it. The daemon stops before its directories go.
///
/// Configs are given without the `[daemon]` directories, which this adds
/// ([`DaemonDirs::config`]). It dereferences to the running [`Sgd`].
#[derive(Debug)]
pub struct Daemon {
    // Declared first, so dropped first.
    sgd: Sgd,
    dirs: DaemonDirs,
}

impl Daemon {
    /// Starts sgd in `ns` on `config` (see [`DaemonDirs::config`] for what
    /// `config` may hold) and waits until it is ready.
    pub fn start(ns: &Netns, config: &str) -> Result<Daemon> {
        let dirs = DaemonDirs::new()?;
        let sgd = Sgd::start(ns, &dirs.config(config))?;
        Ok(Daemon { sgd, dirs })
    }

    /// Like [`Daemon::start`] with another sgd binary (an older one, or
    /// one of another map layout), for upgrade tests.
    pub fn start_binary(binary: &Path, ns: &Netns, config: &str) -> Result<Daemon> {
        let dirs = DaemonDirs::new()?;
        let sgd = Sgd::start_binary(binary, ns, &dirs.config(config))?;
        Ok(Daemon { sgd, dirs })
    }

    /// Replaces the config file by `config` and reloads (SIGHUP).
    pub fn reload_with(&mut self, config: &str) -> Result<()> {
        self.sgd.write_config(&self.dirs.config(config))?;
        self.sgd.reload()
    }

    /// Stops the daemon (or reaps it, if it has exited) and starts another
    /// one in `ns` on `config` and the same directories, so on the same
    /// state and pins: a restart.
    pub fn restart(&mut self, ns: &Netns, config: &str) -> Result<()> {
        self.sgd.stop()?;
        self.sgd = Sgd::start(ns, &self.dirs.config(config))?;
        Ok(())
    }

    /// The daemon's directories.
    pub fn dirs(&self) -> &DaemonDirs {
        &self.dirs
    }

    /// `sgctl` pointed at this daemon's control socket.
    pub fn ctl(&self) -> Ctl {
        Ctl::new(self.dirs.socket())
    }
}

/// The Prometheus text a daemon in `ns` serves at `addr` (its
/// `metrics_address`).
pub fn metrics(ns: &Netns, addr: &str) -> Result<String> {
    ns.run_in(|| {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(addr)?;
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: sg\r\n\r\n")?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        Ok(text)
    })
}

/// Starts sgd in `ns` with `groups` bound, in this order, to the server's
/// interface [`SERVER_IF`]; panics if it does not start.
#[track_caller]
pub fn enforce(ns: &Netns, groups: &[Group]) -> Daemon {
    Daemon::start(ns, &groups_on(SERVER_IF, groups)).unwrap_or_else(|e| panic!("{e:#}"))
}

impl Deref for Daemon {
    type Target = Sgd;

    fn deref(&self) -> &Sgd {
        &self.sgd
    }
}

impl DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut Sgd {
        &mut self.sgd
    }
}

/// The sgctl binary the tests run: `$SGCTL_BIN` if set, else `sgctl` next
/// to [`sgd_path`], else in the debug directory of `$CARGO_TARGET_DIR` or
/// of the workspace's `target`.
///
/// Panics if there is none.
pub fn sgctl_path() -> PathBuf {
    if let Some(bin) = std::env::var_os("SGCTL_BIN") {
        return PathBuf::from(bin);
    }
    let beside_sgd = sgd_path().with_file_name("sgctl");
    if beside_sgd.is_file() {
        return beside_sgd;
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| workspace.join(dir))
        .unwrap_or_else(|| workspace.join("target"))
        .join("debug/sgctl");
    assert!(
        path.is_file(),
        "no sgctl at {}: build it with `cargo build -p sg-daemon` (or name it in SGCTL_BIN)",
        path.display()
    );
    path
}

/// What one `sgctl` run did.
#[derive(Debug)]
pub struct CtlOut {
    /// The exit code (-1 if a signal ended it).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// `sgctl` pointed at one daemon's control socket.
#[derive(Debug)]
pub struct Ctl {
    socket: PathBuf,
}

impl Ctl {
    /// `sgctl --socket SOCKET`.
    pub fn new(socket: PathBuf) -> Ctl {
        Ctl { socket }
    }

    /// The socket it talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The command `sgctl --socket SOCKET ARGS`, to adjust before running.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(sgctl_path());
        cmd.arg("--socket").arg(&self.socket).args(args);
        cmd
    }

    /// Runs `cmd` and returns what it did.
    pub fn run_command(mut cmd: Command) -> CtlOut {
        let out = cmd.output().expect("run sgctl");
        CtlOut {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `sgctl ARGS`.
    pub fn run(&self, args: &[&str]) -> CtlOut {
        Ctl::run_command(self.command(args))
    }

    /// Runs and expects success; returns stdout.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.code, 0, "sgctl {args:?} failed: {out:?}");
        out.stdout
    }

    /// Runs and expects the daemon to refuse (exit 1); returns stderr.
    #[track_caller]
    pub fn refused(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.code, 1, "sgctl {args:?} was not refused: {out:?}");
        out.stderr
    }
}

/// Private directories for one daemon's `state_dir`, `runtime_dir` and
/// `bpffs_dir`, so that daemons of parallel tests touch nothing of each other
/// or of a real sgd on the host.
///
/// Kept apart from [`Sgd`] so that they outlive one daemon: a test can stop
/// a daemon and start another on the same state, as a restart or an upgrade
/// does. `bpffs_dir` is a bpffs mounted here, outside `/sys`, because
/// `ip netns exec` gives the daemon a private `/sys` whose pins would vanish
/// with the process; it is unmounted (releasing its pins) on drop.
#[derive(Debug)]
pub struct DaemonDirs {
    root: TempDir,
}

impl DaemonDirs {
    /// Creates the directories and mounts the bpffs.
    pub fn new() -> Result<DaemonDirs> {
        let root = tempfile::Builder::new().prefix("sgd-dirs-").tempdir()?;
        for sub in ["state", "run", "bpf"] {
            fs::create_dir(root.path().join(sub))?;
        }
        let dirs = DaemonDirs { root };
        mount(
            Some("bpf"),
            &dirs.bpffs_dir(),
            Some("bpf"),
            MsFlags::empty(),
            None::<&str>,
        )
        .with_context(|| format!("mount bpffs on {}", dirs.bpffs_dir().display()))?;
        Ok(dirs)
    }

    /// The directory for `daemon.state_dir`.
    pub fn state_dir(&self) -> PathBuf {
        self.root.path().join("state")
    }

    /// The directory for `daemon.runtime_dir`.
    pub fn runtime_dir(&self) -> PathBuf {
        self.root.path().join("run")
    }

    /// The bpffs for `daemon.bpffs_dir`.
    pub fn bpffs_dir(&self) -> PathBuf {
        self.root.path().join("bpf")
    }

    /// The daemon's control socket in [`DaemonDirs::runtime_dir`].
    pub fn socket(&self) -> PathBuf {
        self.runtime_dir().join("sgd.sock")
    }

    /// A config file: a `[daemon]` table naming these directories, followed
    /// by `rest`. Keys at the start of `rest`, before its first table header,
    /// land in that `[daemon]` table (`"block_smtp_egress = false\n..."`), so
    /// `rest` must not have a `[daemon]` header of its own. Line numbers in
    /// sgd's messages are 4 higher than in `rest`.
    pub fn config(&self, rest: &str) -> String {
        format!(
            "[daemon]\nstate_dir = {:?}\nruntime_dir = {:?}\nbpffs_dir = {:?}\n{rest}",
            self.state_dir(),
            self.runtime_dir(),
            self.bpffs_dir()
        )
    }
}

impl Drop for DaemonDirs {
    fn drop(&mut self) {
        // Lazily: a daemon that is still running keeps its pins until it
        // exits, and the directory can be removed now.
        if let Err(e) = umount2(&self.bpffs_dir(), MntFlags::MNT_DETACH) {
            eprintln!(
                "sg-tests: cannot unmount {}: {e}",
                self.bpffs_dir().display()
            );
        }
    }
}

/// The arguments of `sgctl rule add` opening tcp `ports` of `group` to
/// everyone (IPv4).
pub fn open_to_all<'a>(group: &'a str, ports: &'a str) -> [&'a str; 12] {
    [
        "rule",
        "add",
        group,
        "ingress",
        "--policy",
        "accept",
        "--ip-protocol",
        "tcp",
        "--port-range",
        ports,
        "--source-cidr-ip",
        "0.0.0.0/0",
    ]
}
