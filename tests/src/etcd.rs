//! Real etcd (Debian's `etcd-server`, 3.4) for the fleet tests, never in
//! the host's own network: a management network is a bridge in a namespace
//! of its own ([`Mgmt`]), each etcd member runs in its own namespace on it
//! (198.51.100.250, .251, .252), and hosts (a `Fleet`, later an `sgd`)
//! are further namespaces on the same bridge ([`Mgmt::host`]).
//!
//! Data directories are temporary directories; members are killed on drop
//! (also while a failing test unwinds; deleting their namespace kills
//! whatever still runs there too). A member can be killed and restarted
//! on its data directory, alone or all of them. [`Etcd::single_tls`]
//! serves clients over TLS, with client certificates required
//! ([`Pki`], made with the `openssl` command).

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::netns::{Netns, veth_pair};

/// The management subnet (documentation addresses, TEST-NET-2).
pub const MGMT_PREFIX_LEN: u8 = 24;
/// etcd member `i` is at 198.51.100.(250 + i).
pub fn etcd_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 51, 100, 250 + i as u8)
}
/// The namespace `etcdctl` runs in, for the tests' own reads and writes.
const CTL_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 249);
/// How long a member may take to answer after a (re)start.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// A bridge in a namespace of its own; every namespace attached to it gets
/// an interface `mgmt0` with an address on 198.51.100.0/24.
pub struct Mgmt {
    bridge: Netns,
    ports: AtomicU32,
}

impl Mgmt {
    pub fn new(label: &str) -> Result<Mgmt> {
        let bridge = Netns::new(&format!("{label}-br"))?;
        bridge.ip(&["link", "add", "br0", "type", "bridge"])?;
        bridge.ip(&["link", "set", "br0", "up"])?;
        Ok(Mgmt {
            bridge,
            ports: AtomicU32::new(0),
        })
    }

    /// Puts `ns` on the bridge as `mgmt0` with `address` (198.51.100.x).
    pub fn attach(&self, ns: &Netns, address: Ipv4Addr) -> Result<()> {
        let port = format!("p{}", self.ports.fetch_add(1, Ordering::Relaxed));
        let cidr = format!("{address}/{MGMT_PREFIX_LEN}");
        veth_pair(ns, "mgmt0", &[&cidr], &self.bridge, &port, &[])?;
        self.bridge.ip(&["link", "set", &port, "master", "br0"])?;
        Ok(())
    }

    /// A new namespace on the bridge (a host of the fleet).
    pub fn host(&self, label: &str, address: Ipv4Addr) -> Result<Netns> {
        let ns = Netns::new(label)?;
        self.attach(&ns, address)?;
        Ok(ns)
    }
}

/// One etcd member: its namespace, data directory and process.
struct Member {
    name: String,
    ns: Netns,
    ip: Ipv4Addr,
    child: Option<Child>,
}

/// An etcd cluster (one or three members) on a management bridge.
pub struct Etcd {
    members: Vec<Member>,
    ctl: Netns,
    initial_cluster: String,
    token: String,
    tls: Option<Pki>,
    dir: TempDir,
    // Last: the bridge goes after the members' namespaces.
    mgmt: Mgmt,
}

impl Etcd {
    /// One member at 198.51.100.250.
    pub fn single(label: &str) -> Result<Etcd> {
        Etcd::start(label, 1, false)
    }

    /// One member serving clients over TLS and requiring a client
    /// certificate signed by [`Etcd::pki`]'s CA.
    pub fn single_tls(label: &str) -> Result<Etcd> {
        Etcd::start(label, 1, true)
    }

    /// `n` members at 198.51.100.250.. (static `initial-cluster`).
    pub fn cluster(label: &str, n: usize) -> Result<Etcd> {
        Etcd::start(label, n, false)
    }

    fn start(label: &str, n: usize, tls: bool) -> Result<Etcd> {
        let dir = tempfile::tempdir()?;
        let tls = match tls {
            true => Some(Pki::new(&dir.path().join("pki"), n)?),
            false => None,
        };
        let mgmt = Mgmt::new(label)?;
        let ctl = mgmt.host(&format!("{label}-ctl"), CTL_IP)?;
        let mut members = Vec::new();
        for i in 0..n {
            let ns = mgmt.host(&format!("{label}-e{i}"), etcd_ip(i))?;
            members.push(Member {
                name: format!("e{i}"),
                ns,
                ip: etcd_ip(i),
                child: None,
            });
        }
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://{}:2380", m.name, m.ip))
            .collect::<Vec<_>>()
            .join(",");
        let mut etcd = Etcd {
            members,
            ctl,
            initial_cluster,
            token: format!("sgt-{}-{label}", std::process::id()),
            tls,
            dir,
            mgmt,
        };
        for i in 0..n {
            etcd.spawn(i)?;
        }
        for i in 0..n {
            etcd.wait_ready(i)?;
        }
        Ok(etcd)
    }

    /// The management bridge, to put hosts on.
    pub fn mgmt(&self) -> &Mgmt {
        &self.mgmt
    }

    /// `http://198.51.100.250:2379`, ...
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    pub fn endpoint(&self, i: usize) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}:2379", self.members[i].ip)
    }

    /// The certificates of a TLS etcd.
    pub fn pki(&self) -> Option<&Pki> {
        self.tls.as_ref()
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let m = &self.members[i];
        let data = self.dir.path().join(&m.name);
        let log = self.dir.path().join(format!("{}.log", m.name));
        let log = File::options().create(true).append(true).open(&log)?;
        let (client, peer) = (self.endpoint(i), format!("http://{}:2380", m.ip));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", m.ns.name(), "etcd", "--name", &m.name])
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster])
            // Ignored when the data directory has a member: the same
            // command line restarts it.
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.token])
            // Quicker elections than the default (100/1000 ms), so that a
            // restart or a lost member costs a test well under a second.
            .args(["--heartbeat-interval", "100", "--election-timeout", "600"])
            .args(["--logger", "zap", "--log-outputs", "stderr"]);
        if let Some(pki) = &self.tls {
            cmd.arg("--client-cert-auth")
                .arg("--trusted-ca-file")
                .arg(&pki.ca)
                .arg("--cert-file")
                .arg(&pki.server.0)
                .arg("--key-file")
                .arg(&pki.server.1);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting etcd (Debian package etcd-server)")?;
        self.members[i].child = Some(child);
        Ok(())
    }

    /// Waits until member `i` answers `endpoint health` (it needs a
    /// leader, so a quorum of members running).
    pub fn wait_ready(&self, i: usize) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let answer = self.etcdctl_at(
                &self.endpoint(i),
                &[
                    "--dial-timeout=300ms",
                    "--command-timeout=500ms",
                    "endpoint",
                    "health",
                ],
            );
            match answer {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    bail!("etcd member {i} not ready: {e:#}\n{}", self.log_tail(i))
                }
                Err(_) => thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// SIGKILL member `i` (no-op when it is not running).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again on its data directory (without waiting).
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.kill(i);
        self.spawn(i)
    }

    /// Every member killed, its data removed, and a new cluster (another
    /// token) started on the same addresses: etcd rebuilt or restored from
    /// a backup, its revisions starting over. Waits until it answers.
    pub fn replace_all(&mut self) -> Result<()> {
        self.kill_all();
        for m in &self.members {
            let _ = std::fs::remove_dir_all(self.dir.path().join(&m.name));
        }
        self.token = format!("{}-replaced", self.token);
        self.restart_all()
    }

    pub fn kill_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }

    /// Every member again, then waits until they answer.
    pub fn restart_all(&mut self) -> Result<()> {
        for i in 0..self.members.len() {
            self.restart(i)?;
        }
        for i in 0..self.members.len() {
            self.wait_ready(i)?;
        }
        Ok(())
    }

    /// `etcdctl` against every member, from the tests' own namespace.
    pub fn etcdctl(&self, args: &[&str]) -> Result<String> {
        self.etcdctl_at(&self.endpoints().join(","), args)
    }

    fn etcdctl_at(&self, endpoints: &str, args: &[&str]) -> Result<String> {
        let mut cmd = vec!["etcdctl".to_owned(), format!("--endpoints={endpoints}")];
        if let Some(pki) = &self.tls {
            cmd.push(format!("--cacert={}", pki.ca.display()));
            cmd.push(format!("--cert={}", pki.client.0.display()));
            cmd.push(format!("--key={}", pki.client.1.display()));
        }
        cmd.extend(args.iter().map(|a| a.to_string()));
        self.ctl
            .exec(&cmd.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Puts `key` (from the tests' namespace); the store's new revision.
    pub fn put(&self, key: &str, value: &str) -> Result<i64> {
        self.write(&["put", key, value])?;
        self.revision()
    }

    pub fn delete(&self, key: &str) -> Result<()> {
        self.write(&["del", key])
    }

    /// A write, tried again for a while: one proposed just as the leader
    /// died is lost, and etcd answers it only after its request timeout
    /// (5 s and more; "request timed out, possibly due to previous leader
    /// failure"). Puts and deletes are idempotent here.
    fn write(&self, args: &[&str]) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut cmd = vec!["--command-timeout=1s"];
        cmd.extend_from_slice(args);
        loop {
            match self.etcdctl(&cmd) {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// A key's value, if any.
    pub fn get(&self, key: &str) -> Result<Option<String>> {
        let out = self.etcdctl(&["get", "--print-value-only", key])?;
        Ok((!out.is_empty()).then(|| out.trim_end_matches('\n').to_owned()))
    }

    /// The store's current revision.
    pub fn revision(&self) -> Result<i64> {
        let out = self.etcdctl(&["get", "--write-out=json", "/"])?;
        let json: serde_json::Value = serde_json::from_str(&out)?;
        json["header"]["revision"]
            .as_i64()
            .context("no revision in etcdctl's answer")
    }

    /// Compacts the history up to the current revision.
    pub fn compact(&self) -> Result<i64> {
        let revision = self.revision()?;
        self.etcdctl(&["compact", "--physical", &revision.to_string()])?;
        Ok(revision)
    }

    /// The end of member `i`'s log, for failure messages.
    pub fn log_tail(&self, i: usize) -> String {
        let path = self
            .dir
            .path()
            .join(format!("{}.log", self.members[i].name));
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

/// A CA, a server certificate for the members' addresses and a client
/// certificate (P-256, a day's validity), as PEM files.
pub struct Pki {
    pub ca: PathBuf,
    /// Certificate and key.
    pub server: (PathBuf, PathBuf),
    pub client: (PathBuf, PathBuf),
}

impl Pki {
    fn new(dir: &Path, members: usize) -> Result<Pki> {
        std::fs::create_dir_all(dir)?;
        let sans: Vec<String> = (0..members).map(|i| format!("IP:{}", etcd_ip(i))).collect();
        let script = format!(
            r#"set -e
key="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
openssl req -x509 $key -days 1 -subj /CN=sgt-ca -keyout ca.key -out ca.pem
printf 'subjectAltName={}\nextendedKeyUsage=serverAuth\n' >server.ext
printf 'extendedKeyUsage=clientAuth\n' >client.ext
for n in server client; do
  openssl req $key -subj /CN=$n -keyout $n.key -out $n.csr
  openssl x509 -req -days 1 -in $n.csr -CA ca.pem -CAkey ca.key -CAcreateserial -extfile $n.ext -out $n.pem
done"#,
            sans.join(",")
        );
        let out = Command::new("sh")
            .args(["-c", &script])
            .current_dir(dir)
            .output()
            .context("running openssl")?;
        if !out.status.success() {
            bail!(
                "making certificates: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let pair = |name: &str| {
            (
                dir.join(format!("{name}.pem")),
                dir.join(format!("{name}.key")),
            )
        };
        Ok(Pki {
            ca: dir.join("ca.pem"),
            server: pair("server"),
            client: pair("client"),
        })
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill_all();
    }
}
