//! The traffic of the comparison: two namespaces joined by a veth, a sink
//! socket in the receiver, the one exchange that makes a flow established,
//! and trafgen blasting 64-byte UDP frames from the sender.
//!
//! The sender `tx0` has 198.51.100.2/24, the receiver `rx0` 192.0.2.1/24;
//! each reaches the other's prefix through its veth (on-link routes), so
//! the receiver can answer. Frames are addressed to `rx0`'s MAC and
//! delivered locally, to a UDP socket that is never read after the
//! exchange: every frame that gets through the filter is counted by the
//! receiver's UDP layer (see `measure.rs`) and then dropped for lack of
//! buffer space, which costs every filter alike.

use std::fmt::Write as _;
use std::fs;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use sg_tests::{Netns, veth_pair};
use tempfile::TempDir;

/// The sender's interface and address.
pub const TX_IF: &str = "tx0";
pub const SENDER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// The prefix every accept rule names (the sources of the traffic).
pub const SOURCES: &str = "198.51.100.0/24";
/// The receiver's interface and address.
pub const RX_IF: &str = "rx0";
pub const RECEIVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The source port of the established flow.
pub const FLOW_PORT: u16 = 40000;
/// Rule `i` (1-based) accepts UDP to port `BASE_PORT + i`.
pub const BASE_PORT: u16 = 10000;

/// How long the exchange that establishes the flow may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long trafgen may take to stop after SIGINT before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);

/// The two kinds of traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Traffic {
    /// One flow that the receiver answered before the blast: every filter
    /// holds it as established.
    Established,
    /// Random sources across 198.51.100.0/24 and random source ports
    /// (16.5 million flows, far more than any filter's table holds):
    /// every packet is judged by the rules.
    New,
}

impl Traffic {
    pub fn label(self) -> &'static str {
        match self {
            Traffic::Established => "established flow",
            Traffic::New => "every packet a new flow",
        }
    }

    /// trafgen's packet: Ethernet, IPv4, UDP to `port` and 18 bytes of
    /// payload, 60 bytes (64 on a wire, with the FCS).
    fn trafgen_config(self, rx_mac: &str, tx_mac: &str, port: u16) -> String {
        let mut cfg = String::new();
        // IPv4 UDP may go without a checksum (0); trafgen recomputes the
        // IPv4 header's checksum itself when a field of it varies.
        let (src, sport) = match self {
            Traffic::Established => (format!("sa={SENDER}"), format!("sp={FLOW_PORT}, csum=0")),
            Traffic::New => (
                "sa=198.51.100.0, sa[3]=drnd()".to_owned(),
                "sp=drnd(1024, 65535), csum=0".to_owned(),
            ),
        };
        writeln!(
            cfg,
            "{{ eth(da={rx_mac}, sa={tx_mac}), ipv4({src}, da={RECEIVER}, ttl=64), \
             udp({sport}, dp={port}), fill(0x41, 18) }}"
        )
        .expect("writing to a String");
        cfg
    }
}

/// The sender and the receiver, deleted (with the veth and anything
/// attached to it) when dropped.
pub struct Pair {
    pub tx: Netns,
    pub rx: Netns,
    tx_mac: String,
    rx_mac: String,
}

impl Pair {
    pub fn new() -> Result<Pair> {
        let tx = Netns::new("cmp-tx")?;
        let rx = Netns::new("cmp-rx")?;
        veth_pair(
            &tx,
            TX_IF,
            &[&format!("{SENDER}/24")],
            &rx,
            RX_IF,
            &[&format!("{RECEIVER}/24")],
        )?;
        tx.ip(&["route", "add", "192.0.2.0/24", "dev", TX_IF])?;
        rx.ip(&["route", "add", SOURCES, "dev", RX_IF])?;
        let tx_mac = mac(&tx, TX_IF)?;
        let rx_mac = mac(&rx, RX_IF)?;
        Ok(Pair {
            tx,
            rx,
            tx_mac,
            rx_mac,
        })
    }
}

/// The MAC address of `ifname` in `ns` (`ip -br link`: name, state, MAC).
fn mac(ns: &Netns, ifname: &str) -> Result<String> {
    let out = ns.ip(&["-br", "link", "show", "dev", ifname])?;
    out.split_whitespace()
        .nth(2)
        .filter(|m| m.len() == 17)
        .map(str::to_owned)
        .with_context(|| format!("no MAC address of {ifname} in {out:?}"))
}

/// The receiver's UDP socket on the traffic's port.
pub struct Sink {
    socket: UdpSocket,
}

impl Sink {
    pub fn bind(pair: &Pair, port: u16) -> Result<Sink> {
        let socket = pair
            .rx
            .run_in(|| UdpSocket::bind(SocketAddrV4::new(RECEIVER, port)))
            .with_context(|| format!("binding the sink {RECEIVER}:{port}"))?;
        Ok(Sink { socket })
    }

    /// Makes the flow 198.51.100.2:40000 -> 192.0.2.1:`port` established:
    /// the sender sends one datagram, the receiver answers it, and the
    /// sender must get the answer. Fails if it does not, within a few
    /// tries.
    pub fn establish(&self, pair: &Pair, port: u16) -> Result<()> {
        let flow = SocketAddr::V4(SocketAddrV4::new(SENDER, FLOW_PORT));
        let dst = SocketAddr::V4(SocketAddrV4::new(RECEIVER, port));
        let client = pair
            .tx
            .run_in(|| UdpSocket::bind(flow))
            .with_context(|| format!("binding {flow} in the sender"))?;
        client.set_read_timeout(Some(EXCHANGE_TIMEOUT))?;
        self.socket.set_read_timeout(Some(EXCHANGE_TIMEOUT))?;
        let mut buf = [0u8; 2048];
        for _ in 0..3 {
            client.send_to(b"hello", dst)?;
            let deadline = Instant::now() + EXCHANGE_TIMEOUT;
            let mut got = false;
            while Instant::now() < deadline {
                match self.socket.recv_from(&mut buf) {
                    Ok((_, from)) if from == flow => {
                        got = true;
                        break;
                    }
                    Ok(_) => {}
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        break;
                    }
                    Err(e) => return Err(e).context("receiving in the sink"),
                }
            }
            if !got {
                continue;
            }
            self.socket.send_to(b"hello back", flow)?;
            match client.recv_from(&mut buf) {
                Ok((_, from)) if from == dst => return Ok(()),
                Ok((_, from)) => bail!("the sender got an answer from {from}, not {dst}"),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(e).context("receiving the answer in the sender"),
            }
        }
        bail!("the exchange {flow} <-> {dst} did not complete (the filter dropped it?)")
    }
}

/// trafgen blasting one kind of traffic from the sender, on one CPU;
/// stopped (SIGINT to its process group, then SIGKILL) when dropped.
/// It also stops by itself after `max_packets`, so that even a run killed
/// with SIGKILL leaves no sender going for long (the namespaces it leaves
/// are swept by the next run).
pub struct Blaster {
    child: Child,
    dir: TempDir,
}

impl Blaster {
    pub fn start(pair: &Pair, traffic: Traffic, port: u16, max_packets: u64) -> Result<Blaster> {
        let dir = tempfile::Builder::new().prefix("sg-compare-").tempdir()?;
        let cfg = dir.path().join("packet.cfg");
        fs::write(
            &cfg,
            traffic.trafgen_config(&pair.rx_mac, &pair.tx_mac, port),
        )?;
        let log = fs::File::create(dir.path().join("trafgen.log"))?;
        // -P 1: one process, pinned by trafgen to the first CPU. -A and -Q:
        // trafgen would otherwise retune socket memory limits and IRQ
        // affinities, which are not all per namespace: the host's are left
        // alone.
        let child = Command::new("ip")
            .args(["netns", "exec", pair.tx.name(), "trafgen"])
            .args(["--dev", TX_IF, "--conf"])
            .arg(&cfg)
            .args(["--cpus", "1", "--no-sock-mem", "--notouch-irq"])
            .args(["--num", &max_packets.to_string()])
            .args(["--no-cpu-stats"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: a Ctrl-C at the terminal reaches this
            // program, which stops trafgen (and its fork) on its way out.
            .process_group(0)
            .spawn()
            .context("starting trafgen (run `cargo xtask setup` to install netsniff-ng)")?;
        Ok(Blaster { child, dir })
    }

    fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("trafgen.log")
    }

    /// Fails, with trafgen's output, if it has exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "trafgen exited early ({status}):\n{}",
                self.log().trim_end()
            );
        }
        Ok(())
    }

    /// Stops trafgen and waits for it.
    pub fn stop(&mut self) -> Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let group = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(group, Signal::SIGINT);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = killpg(group, Signal::SIGKILL);
        self.child.wait()?;
        bail!("trafgen ignored SIGINT for {STOP_TIMEOUT:?} and was killed")
    }
}

impl Drop for Blaster {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("sg-compare: {e:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trafgen_packets() {
        let (rx, tx) = ("02:00:00:00:00:01", "02:00:00:00:00:02");
        let one = Traffic::Established.trafgen_config(rx, tx, 10010);
        assert_eq!(
            one.trim(),
            "{ eth(da=02:00:00:00:00:01, sa=02:00:00:00:00:02), ipv4(sa=198.51.100.2, \
             da=192.0.2.1, ttl=64), udp(sp=40000, csum=0, dp=10010), fill(0x41, 18) }"
        );
        let new = Traffic::New.trafgen_config(rx, tx, 11000);
        assert!(new.contains("sa[3]=drnd()"), "{new}");
        assert!(new.contains("sp=drnd(1024, 65535)"), "{new}");
        assert!(new.contains("dp=11000"), "{new}");
    }
}
